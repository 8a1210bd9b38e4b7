//! The Participant Service HTTP API: typed models, endpoint resolution, the client,
//! error decoding, retry policy and the per-operation rate limiter. It knows nothing of
//! websockets or sessions.

pub mod client;
pub mod endpoint;
pub mod error;
pub mod limiter;
pub mod model;
pub mod outbound;
mod transport;

pub use client::{ApiClient, ApiClientBuilder, Operation, RetryPolicy};
pub use endpoint::{Endpoint, EndpointError, EndpointVariant};
pub use error::{ApiError, ErrorCode};
pub use limiter::{Limit, RateLimiter};
