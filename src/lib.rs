//! connect-chatd: a participant-side chat client for the Amazon Connect Participant
//! Service that keeps chats connected and delivers every Item exactly once, plus a
//! faithful local emulator of the service.
//!
//! One folder a concern:
//!
//! * [`api`]: the Participant Service's HTTP API (models, endpoint, errors, the client,
//!   the process-wide rate limiter);
//! * [`socket`]: the websocket: its JSON frames and one socket's task;
//! * [`session`]: one chat: the supervisor (connect, renew, reconnect, backfill) and
//!   delivery (exactly once, in order);
//! * [`journal`]: the daemon's SQLite store: registry, Items, consumer positions;
//! * [`daemon`]: many chats in one process, and the control API;
//! * [`cluster`]: daemon instances sharing the chats through NATS JetStream;
//! * [`sink`]: where Items go: `tail`'s stdout writer, and the journal's consumers
//!   (stdout, SSE streams);
//! * [`emulator`]: the fake service, a peer of the client;
//! * [`cli`]: the binary's edge: commands, configuration, exit codes, logging;
//! * [`metrics`]: the process's Prometheus series (the daemon serves them at `/metrics`);
//! * [`egress`], [`tls`]: how connections leave: proxies (CONNECT tunnels), trust;
//! * [`secret`], [`clock`], [`stop`]: shared plumbing.

pub mod api;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod daemon;
pub mod egress;
pub mod emulator;
#[doc(hidden)]
pub mod fuzzing;
pub mod journal;
pub mod metrics;
pub mod secret;
pub mod session;
pub mod sink;
pub mod socket;
pub mod stop;
pub mod tls;
