//! The session supervisor: one participant's connection, kept alive for the life of
//! the chat.
//!
//! ```text
//! Connecting ─▶ Subscribing ─▶ Backfilling ─▶ Live ─┬─ renewal due ─▶ Renewing ─▶ Live
//!     ▲                                             ├─ socket lost ─▶ Reconnecting ─┐
//!     └──────────────────────── backoff ◀───────────┘                               │
//!     ◀─────────────────────────────────────────────────────────────────────────────┘
//! Live ─ chat-ended Item, or 403 after the chat was live ─▶ Ended
//! ```
//!
//! * CreateParticipantConnection asks for the websocket and fresh ConnectionCredentials
//!   together, so every renewal also renews the ConnectionToken.
//! * The presigned URL is dialled inside its connect window, or a new one is fetched.
//! * Renewal is make-before-break: the new socket subscribes, then the old one is closed
//!   and drained to its close handshake, then a backfill from the cursor picks up what a
//!   server dropped from the old socket's queue, all before the new one's Items are
//!   read, so the switch neither loses nor reorders anything.
//! * After every (re)subscribe, GetTranscript pages FORWARD from the last delivered
//!   Item's Id until NextToken is empty, so Items published while no socket was
//!   subscribed are delivered, in order, once.
//! * Throttling and 5xx are retried with capped, jittered backoff, forever; a 403 on the
//!   first CreateParticipantConnection is a rejected token and ends the session at once.

//!
//! * [`supervisor`]: the state machine itself, the live loop and renewal;
//! * [`connector`]: CreateParticipantConnection, the dial, when to renew;
//! * [`backfill`]: GetTranscript paging after every (re)subscribe;
//! * [`delivery`]: exactly once, in order: dedup by Id, the cursor, the consumer's channel;
//! * [`store`]: `tail --state-dir`'s durable cursor.

mod backfill;
mod connector;
pub mod delivery;
pub mod store;
mod supervisor;

pub use backfill::{AfterPage, Paging};
pub use supervisor::{Supervisor, ITEM_CHANNEL};

use crate::api::model::Item;
use crate::api::ApiError;
use crate::secret::Secret;
use crate::socket::SocketConfig;
use delivery::{Cursor, SessionStats, StatsSnapshot};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};

/// What to deliver from before the session started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum History {
    /// The whole transcript first, then live Items.
    #[default]
    All,
    /// Only Items that arrive after the start.
    None,
}

#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub history: History,
    /// Sets `ConnectParticipant: true` on CreateParticipantConnection.
    pub connect_participant: bool,
    /// How long a presigned URL stays dialable (the service says 100 s); a URL older than
    /// this minus `connect_margin` is replaced rather than dialled.
    pub connect_window: Duration,
    pub connect_margin: Duration,
    /// Renew this long before ConnectionExpiry (at most a quarter of the lifetime)…
    pub renew_lead: Duration,
    /// …minus a random part of up to this (at most a tenth of the lifetime), so many
    /// sessions do not renew in lockstep…
    pub renew_jitter: Duration,
    /// …and never later than this after a dial, whatever the expiry says.
    pub max_socket_age: Duration,
    /// Reconnect backoff: first delay and cap (jitter adds up to one more delay).
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// A socket that lived this long resets the reconnect backoff.
    pub stable_after: Duration,
    /// Items per GetTranscript page (at most 100).
    pub page_size: i64,
    /// GetTranscript calls one backfill makes at most; the next backfill goes on from
    /// the cursor.
    pub max_backfill_pages: u32,
    /// Ids remembered for de-duplication (see `delivery`).
    pub recent_ids: usize,
    /// Items that may wait between the supervisor and its consumer (default
    /// [`ITEM_CHANNEL`]); the daemon, which journals them in groups, takes more.
    pub item_channel: usize,
    pub socket: SocketConfig,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            history: History::All,
            connect_participant: false,
            connect_window: Duration::from_secs(100),
            connect_margin: Duration::from_secs(10),
            renew_lead: Duration::from_secs(60),
            renew_jitter: Duration::from_secs(30),
            max_socket_age: Duration::from_secs(55 * 60),
            reconnect_min: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(30),
            page_size: 100,
            max_backfill_pages: 1000,
            recent_ids: crate::session::delivery::RECENT_IDS,
            item_channel: ITEM_CHANNEL,
            socket: SocketConfig::default(),
        }
    }
}

/// Where the session is; published on a `watch` channel and logged on every change.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionState {
    Starting,
    Connecting,
    Subscribing,
    Backfilling,
    Live,
    Renewing,
    Reconnecting { attempt: u32, delay: Duration },
    Ended,
    Stopped,
}

/// How a session finished without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOutcome {
    /// The chat ended (its end Item was delivered, or the service said so).
    ChatEnded,
    /// A shutdown was requested.
    Shutdown,
    /// The consumer of Items went away (e.g. stdout closed).
    ConsumerGone,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// 403 on the first CreateParticipantConnection: nothing to retry.
    #[error("the participant token was rejected: {0}")]
    TokenRejected(#[source] ApiError),
    /// A non-retryable error (400, 404, …).
    #[error("the service refused the session: {0}")]
    Fatal(#[source] ApiError),
    /// The session's task panicked (a bug): that session ends, nothing else does.
    #[error("the session failed unexpectedly: {0}")]
    Panicked(String),
}

/// The ConnectionToken and when it expires.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    pub token: Secret,
    pub expiry: OffsetDateTime,
}

/// What a previous run of this session left behind (`--state-dir`).
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// The last Item delivered: the session continues after it.
    pub cursor: Option<Cursor>,
    /// The last ConnectionToken, to read the transcript of a chat that ended meanwhile.
    pub credentials: Option<Credentials>,
}

/// A session's Items, in order, as its consumer receives them. They travel boxed: tokio
/// allocates a channel's first block of 32 slots up front, which for ~500-byte Items
/// was 16 KiB per idle session.
#[derive(Debug)]
pub struct ItemReceiver(mpsc::Receiver<Box<Item>>);

impl ItemReceiver {
    pub(crate) fn new(rx: mpsc::Receiver<Box<Item>>) -> ItemReceiver {
        ItemReceiver(rx)
    }

    /// The next Item; `None` once the session has finished and every Item was read.
    pub async fn recv(&mut self) -> Option<Item> {
        self.0.recv().await.map(|b| *b)
    }

    pub fn try_recv(&mut self) -> Result<Item, mpsc::error::TryRecvError> {
        self.0.try_recv().map(|b| *b)
    }

    /// As [`recv`](Self::recv), still boxed: a task that waits here does not hold room
    /// for a whole Item while it is idle.
    pub async fn recv_boxed(&mut self) -> Option<Box<Item>> {
        self.0.recv().await
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A running session: its Items, its state and a way to stop it.
pub struct SessionHandle {
    pub items: ItemReceiver,
    pub state: watch::Receiver<SessionState>,
    pub stats: Arc<SessionStats>,
    /// The current ConnectionToken (for `--state-dir`).
    pub credentials: watch::Receiver<Option<Credentials>>,
    shutdown: watch::Sender<bool>,
    task: SessionJoin,
}

/// The session's task, aborted if its owner is dropped (a killed `tail` leaves no
/// session running behind it).
struct SessionJoin(Option<tokio::task::JoinHandle<Result<SessionOutcome, SessionError>>>);

impl SessionJoin {
    async fn join(mut self) -> Result<SessionOutcome, SessionError> {
        let handle = self.0.as_mut().expect("joined once");
        let result = match handle.await {
            Ok(result) => result,
            Err(e) => {
                let why = match e.try_into_panic() {
                    Ok(p) => p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into()),
                    Err(_) => "the task was cancelled".into(),
                };
                Err(SessionError::Panicked(why))
            }
        };
        self.0 = None;
        result
    }
}

impl Drop for SessionJoin {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

impl SessionHandle {
    /// Asks the session to close its sockets and finish.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Waits for the session's result.
    pub async fn join(self) -> Result<SessionOutcome, SessionError> {
        let SessionHandle { items, task, .. } = self;
        drop(items);
        task.join().await
    }

    /// Waits for the session's result while the caller keeps the Item receiver.
    pub fn into_parts(self) -> (ItemReceiver, SessionTask) {
        (
            self.items,
            SessionTask {
                task: self.task,
                shutdown: self.shutdown,
                state: self.state,
                stats: self.stats,
                credentials: self.credentials,
            },
        )
    }
}

/// Asks a session to shut down, as [`SessionTask::shutdown`] does.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

/// The session without its Item receiver.
pub struct SessionTask {
    task: SessionJoin,
    shutdown: watch::Sender<bool>,
    pub state: watch::Receiver<SessionState>,
    pub stats: Arc<SessionStats>,
    pub credentials: watch::Receiver<Option<Credentials>>,
}

impl SessionTask {
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Another handle that shuts the session down (the daemon's, while the task itself
    /// is owned by the session's runner).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    pub async fn join(self) -> Result<SessionOutcome, SessionError> {
        self.task.join().await
    }
}
