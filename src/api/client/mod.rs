//! The async client for all eleven Participant Service operations.
//!
//! Authentication is the `X-Amz-Bearer` header (ParticipantToken for
//! CreateParticipantConnection, ConnectionToken for the rest); there is no SigV4.
//! Throttling, 5xx and transport errors are retried with capped, jittered exponential
//! backoff; 400/402/403/404/409 never are. SendMessage, SendEvent and the other
//! operations with a `ClientToken` get one UUID per logical call, kept across retries,
//! so a retry can never post twice.

use super::endpoint::Endpoint;
use super::error::{decode_error, ApiError};
use super::limiter::RateLimiter;
use crate::clock::{parse_http_date, Clock};
use crate::egress::Egress;
use crate::secret::Secret;
use backon::{ExponentialBuilder, Retryable};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

mod operations;

/// A server `Date` further than this from the local clock is ignored.
const MAX_PLAUSIBLE_SKEW_MS: u128 = 24 * 3600 * 1000;

pub const USER_AGENT: &str = concat!("connect-chatd/", env!("CARGO_PKG_VERSION"));

/// The operations of the API model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    CreateParticipantConnection,
    GetTranscript,
    SendMessage,
    SendEvent,
    DisconnectParticipant,
    StartAttachmentUpload,
    CompleteAttachmentUpload,
    GetAttachment,
    GetAuthenticationUrl,
    CancelParticipantAuthentication,
    DescribeView,
}

impl Operation {
    pub const ALL: [Operation; 11] = [
        Operation::CreateParticipantConnection,
        Operation::GetTranscript,
        Operation::SendMessage,
        Operation::SendEvent,
        Operation::DisconnectParticipant,
        Operation::StartAttachmentUpload,
        Operation::CompleteAttachmentUpload,
        Operation::GetAttachment,
        Operation::GetAuthenticationUrl,
        Operation::CancelParticipantAuthentication,
        Operation::DescribeView,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operation::CreateParticipantConnection => "CreateParticipantConnection",
            Operation::GetTranscript => "GetTranscript",
            Operation::SendMessage => "SendMessage",
            Operation::SendEvent => "SendEvent",
            Operation::DisconnectParticipant => "DisconnectParticipant",
            Operation::StartAttachmentUpload => "StartAttachmentUpload",
            Operation::CompleteAttachmentUpload => "CompleteAttachmentUpload",
            Operation::GetAttachment => "GetAttachment",
            Operation::GetAuthenticationUrl => "GetAuthenticationUrl",
            Operation::CancelParticipantAuthentication => "CancelParticipantAuthentication",
            Operation::DescribeView => "DescribeView",
        }
    }

    /// The request path (DescribeView's ViewToken is appended by the caller).
    pub fn path(self) -> &'static str {
        match self {
            Operation::CreateParticipantConnection => "/participant/connection",
            Operation::GetTranscript => "/participant/transcript",
            Operation::SendMessage => "/participant/message",
            Operation::SendEvent => "/participant/event",
            Operation::DisconnectParticipant => "/participant/disconnect",
            Operation::StartAttachmentUpload => "/participant/start-attachment-upload",
            Operation::CompleteAttachmentUpload => "/participant/complete-attachment-upload",
            Operation::GetAttachment => "/participant/attachment",
            Operation::GetAuthenticationUrl => "/participant/authentication-url",
            Operation::CancelParticipantAuthentication => "/participant/cancel-authentication",
            Operation::DescribeView => "/participant/views/",
        }
    }
}

/// How one API call is retried: `max_attempts` in all, delays growing from `min_delay`
/// by doubling up to `max_delay`, each with random jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// The SDKs' standard mode: 3 attempts, delays capped at 20 s. The first delay is
    /// short because CreateParticipantConnection must succeed within minutes of the
    /// chat's start.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_jitter()
    }
}

pub struct ApiClientBuilder {
    endpoint: Endpoint,
    retry: RetryPolicy,
    timeout: Duration,
    clock: Clock,
    limiter: RateLimiter,
    egress: Egress,
}

impl ApiClientBuilder {
    /// The proxies and trust for every call (default: direct, the OS store); the
    /// websocket dials of sessions using this client take the same.
    pub fn egress(mut self, egress: Egress) -> Self {
        self.egress = egress;
        self
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The timeout of one HTTP attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Every attempt of every call (retries too) waits for this limiter first; clones
    /// of the client, and clients built with clones of the limiter, share it.
    pub fn rate_limiter(mut self, limiter: RateLimiter) -> Self {
        self.limiter = limiter;
        self
    }

    pub fn build(self) -> Result<ApiClient, ApiError> {
        let http = super::transport::http_client(&self.egress, self.timeout)?;
        Ok(ApiClient {
            inner: Arc::new(Inner {
                http,
                egress: self.egress,
                endpoint: self.endpoint,
                retry: self.retry,
                clock: self.clock,
                limiter: self.limiter,
                server_offset_ms: AtomicI64::new(0),
            }),
        })
    }
}

struct Inner {
    http: reqwest::Client,
    egress: Egress,
    endpoint: Endpoint,
    retry: RetryPolicy,
    clock: Clock,
    limiter: RateLimiter,
    /// The server's clock minus ours, from the last response's `Date` header.
    server_offset_ms: AtomicI64,
}

/// A cheap-to-clone handle on the API.
#[derive(Clone)]
pub struct ApiClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("endpoint", &self.inner.endpoint.base().as_str())
            .field("retry", &self.inner.retry)
            .field("limiter", &self.inner.limiter)
            .field("egress", &self.inner.egress)
            .finish()
    }
}

impl ApiClient {
    pub fn builder(endpoint: Endpoint) -> ApiClientBuilder {
        ApiClientBuilder {
            endpoint,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            clock: Clock::new(),
            limiter: RateLimiter::unlimited(),
            egress: Egress::default(),
        }
    }

    /// The proxies and trust this client uses (and its sessions' websockets).
    pub fn egress(&self) -> &Egress {
        &self.inner.egress
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// The HTTP client itself, for presigned URLs (attachments), which take no bearer.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    /// Our best estimate of the server's current time: the local clock corrected by the
    /// offset seen in the last response's `Date` header (1 s resolution).
    pub fn server_now(&self) -> OffsetDateTime {
        let offset = self.inner.server_offset_ms.load(Ordering::Relaxed);
        let now = self.inner.clock.now();
        now.checked_add(time::Duration::milliseconds(offset))
            .unwrap_or(now)
    }

    /// One logical call: serialise once, then send with retries.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        op: Operation,
        path_param: Option<&str>,
        bearer: &Secret,
        body: Option<&Req>,
    ) -> Result<Resp, ApiError> {
        let body = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| ApiError::Decode {
                operation: op.name(),
                message: format!("could not encode the request: {e}"),
            })?),
            None => None,
        };
        let mut url = self.inner.endpoint.url(op.path());
        if let Some(p) = path_param {
            url.path_segments_mut()
                .map_err(|_| ApiError::Decode {
                    operation: op.name(),
                    message: "endpoint URL cannot take a path".into(),
                })?
                .pop_if_empty()
                .push(p);
        }
        let method = if op == Operation::DescribeView {
            Method::GET
        } else {
            Method::POST
        };
        let metrics = crate::metrics::global();
        let attempt = || async {
            let asked = tokio::time::Instant::now();
            self.inner.limiter.acquire(op).await;
            metrics.limiter_waited(op.name(), asked.elapsed());
            let r = self
                .send_once::<Resp>(op, method.clone(), url.clone(), bearer, body.as_deref())
                .await;
            metrics.api_call(op.name(), crate::metrics::outcome(&r));
            r
        };
        attempt
            .retry(self.inner.retry.backoff())
            .sleep(tokio::time::sleep)
            .when(ApiError::is_retryable)
            .notify(|err, delay| {
                tracing::warn!(operation = op.name(), error = %err, ?delay, "retrying API call");
            })
            .await
    }

    async fn send_once<Resp: DeserializeOwned>(
        &self,
        op: Operation,
        method: Method,
        url: reqwest::Url,
        bearer: &Secret,
        body: Option<&[u8]>,
    ) -> Result<Resp, ApiError> {
        let mut req = self
            .inner
            .http
            .request(method, url)
            .header("X-Amz-Bearer", bearer.expose())
            .header("Accept", "application/json");
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b.to_vec());
        }
        let transport = |e: reqwest::Error| super::transport::error(op.name(), e);
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        self.note_server_date(&headers);
        let bytes = resp.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let (code, message) = decode_error(status, &headers, &bytes);
            let request_id = headers
                .get("x-amzn-requestid")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            return Err(ApiError::Service {
                operation: op.name(),
                status: status.as_u16(),
                code,
                message,
                request_id,
            });
        }
        decode_response(op, &bytes)
    }

    fn note_server_date(&self, headers: &reqwest::header::HeaderMap) {
        if let Some(server) = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date)
        {
            // The header has whole seconds: add half a second so the estimate is centred.
            let server = server + time::Duration::milliseconds(500);
            let offset = (server - self.inner.clock.now()).whole_milliseconds();
            // More than a day apart is a broken header, not skew: keep the last estimate.
            if offset.unsigned_abs() > MAX_PLAUSIBLE_SKEW_MS {
                tracing::debug!(offset_ms = %offset, "ignoring an implausible Date header");
                return;
            }
            self.inner
                .server_offset_ms
                .store(offset as i64, Ordering::Relaxed);
        }
    }
}

/// Decodes a successful answer's body (empty is `{}`) as `op`'s response.
pub fn decode_response<Resp: DeserializeOwned>(op: Operation, bytes: &[u8]) -> Result<Resp, ApiError> {
    let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { bytes };
    serde_json::from_slice(bytes).map_err(|e| ApiError::Decode {
        operation: op.name(),
        message: e.to_string(),
    })
}

/// A fresh idempotency token.
pub fn new_client_token() -> String {
    uuid::Uuid::new_v4().to_string()
}
