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

use crate::api::model::*;
use crate::api::{ApiClient, ApiError};
use crate::clock::until;
use crate::delivery::{ConsumerGone, Cursor, Delivery, Offered, SessionStats, Source, StatsSnapshot};
use crate::secret::{PresignedUrl, Secret};
use crate::socket::{self, CloseReason, SocketConfig, SocketError, SocketEvent, SocketHandle};
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{debug, info, warn};

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
            recent_ids: crate::delivery::RECENT_IDS,
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

/// A CreateParticipantConnection answer, not dialled yet.
struct Created {
    url: PresignedUrl,
    ws_expiry: OffsetDateTime,
    creds: Credentials,
    received_at: Instant,
    server_now: OffsetDateTime,
}

/// A subscribed socket and what it was created with.
struct Connection {
    socket: SocketHandle,
    creds: Credentials,
    renew_at: Instant,
}

#[derive(Debug, thiserror::Error)]
enum ConnectFailure {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("CreateParticipantConnection's answer has no {0}")]
    Missing(&'static str),
    #[error("the presigned URL's connect window passed before it could be dialled")]
    WindowPassed,
}

/// Makes connections; cheap to clone into a renewal future.
#[derive(Clone)]
struct Connector {
    api: ApiClient,
    participant_token: Secret,
    cfg: Arc<SupervisorConfig>,
}

impl Connector {
    async fn create(&self) -> Result<Created, ConnectFailure> {
        let request = CreateParticipantConnectionRequest {
            connection_types: Some(vec![
                ConnectionType::Websocket,
                ConnectionType::ConnectionCredentials,
            ]),
            connect_participant: self.cfg.connect_participant.then_some(true),
        };
        let resp = self
            .api
            .create_participant_connection(&self.participant_token, &request)
            .await?;
        let received_at = Instant::now();
        let ws = resp.websocket.ok_or(ConnectFailure::Missing("Websocket"))?;
        let creds = resp
            .connection_credentials
            .ok_or(ConnectFailure::Missing("ConnectionCredentials"))?;
        Ok(Created {
            url: ws.url,
            ws_expiry: ws.connection_expiry.0,
            creds: Credentials {
                token: creds.connection_token,
                expiry: creds.expiry.0,
            },
            received_at,
            server_now: self.api.server_now(),
        })
    }

    async fn dial(&self, created: Created) -> Result<Connection, ConnectFailure> {
        let usable_for = self.cfg.connect_window.saturating_sub(self.cfg.connect_margin);
        if created.received_at.elapsed() > usable_for {
            return Err(ConnectFailure::WindowPassed);
        }
        let socket = socket::open(&created.url, &self.cfg.socket).await?;
        let renew_at = self.renew_at(&created);
        Ok(Connection {
            socket,
            creds: created.creds,
            renew_at,
        })
    }

    async fn connect(self) -> Result<Connection, ConnectFailure> {
        let created = self.create().await?;
        self.dial(created).await
    }

    /// When to renew: before the websocket or the token expires (by the server's
    /// clock, so local skew does not matter), with a lead and a jitter scaled to the
    /// lifetime, and no later than `max_socket_age`.
    fn renew_at(&self, c: &Created) -> Instant {
        let ttl = until(c.server_now, c.ws_expiry).min(until(c.server_now, c.creds.expiry));
        let lead = self.cfg.renew_lead.min(ttl / 4);
        let jitter_cap = self.cfg.renew_jitter.min(ttl / 10);
        let jitter = jitter_cap.mul_f64(fastrand::f64());
        let by_expiry = ttl.saturating_sub(lead + jitter);
        let by_age = self.cfg.max_socket_age.saturating_sub(jitter);
        c.received_at + by_expiry.min(by_age).max(Duration::from_secs(1))
    }
}

/// Why the live loop returned.
enum LiveExit {
    Ended,
    Shutdown,
    ConsumerGone,
    Lost(CloseReason),
    Denied(ApiError),
    Fatal(ApiError),
}

/// How a backfill finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backfilled {
    /// Up to the transcript's end.
    Complete,
    /// The chat-ended Item was delivered.
    Ended,
    /// `max_backfill_pages` calls made and more to read: the next backfill goes on
    /// from the cursor (after a reconnect, so the socket's Items wait on the server).
    Truncated,
}

enum BackfillError {
    Api(ApiError),
    ConsumerGone,
}

impl From<ConsumerGone> for BackfillError {
    fn from(_: ConsumerGone) -> Self {
        BackfillError::ConsumerGone
    }
}

/// How a failed step is handled.
enum Verdict {
    /// Back off and try again (the failure, for the log).
    Retry(ConnectFailure),
    Denied(ApiError),
    Fatal(ApiError),
}

fn verdict(e: ConnectFailure) -> Verdict {
    match e {
        ConnectFailure::Api(e) if e.is_access_denied() => Verdict::Denied(e),
        ConnectFailure::Api(e) if !e.is_retryable() => Verdict::Fatal(e),
        other => Verdict::Retry(other),
    }
}

/// Resolves when a shutdown is requested (never, if the sender is gone).
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

type Renewal = Pin<Box<dyn Future<Output = Result<Connection, ConnectFailure>> + Send>>;

pub struct Supervisor {
    api: ApiClient,
    connector: Connector,
    cfg: Arc<SupervisorConfig>,
    delivery: Delivery,
    state: watch::Sender<SessionState>,
    shutdown: watch::Receiver<bool>,
    stats: Arc<SessionStats>,
    credentials: Option<Credentials>,
    credentials_tx: watch::Sender<Option<Credentials>>,
    backoff: ExponentialBackoff,
    was_live: bool,
    /// Started from a previous run's state: the chat was live before.
    resumed: bool,
    anchored: bool,
    /// When the last reconnect went out at once (one per `stable_after` at most).
    last_immediate: Option<Instant>,
}

/// A running session: its Items, its state and a way to stop it.
pub struct SessionHandle {
    pub items: mpsc::Receiver<Item>,
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
    pub fn into_parts(self) -> (mpsc::Receiver<Item>, SessionTask) {
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

    pub async fn join(self) -> Result<SessionOutcome, SessionError> {
        self.task.join().await
    }
}

/// Reads of an ended chat's transcript before giving up (with reconnect backoff between).
const FINAL_BACKFILL_ATTEMPTS: u32 = 20;

/// Backfills of `max_backfill_pages` in a row when reading an ended chat's transcript.
const FINAL_BACKFILL_ROUNDS: u32 = 1000;

/// Jitter of an immediate reconnect, in milliseconds.
const IMMEDIATE_JITTER_MS: u64 = 10;

/// How many Items may wait between the supervisor and its consumer.
pub const ITEM_CHANNEL: usize = 64;

impl Supervisor {
    /// Starts a session in a task of its own.
    pub fn spawn(api: ApiClient, participant_token: Secret, cfg: SupervisorConfig) -> SessionHandle {
        Self::spawn_resumed(api, participant_token, cfg, None)
    }

    /// Starts a session that continues a previous run: Items up to `resume.cursor` count
    /// as delivered.
    pub fn spawn_resumed(
        api: ApiClient,
        participant_token: Secret,
        cfg: SupervisorConfig,
        resume: Option<Resume>,
    ) -> SessionHandle {
        let (tx, rx) = mpsc::channel(ITEM_CHANNEL);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (mut sup, state) = Supervisor::new(api, participant_token, cfg, tx, shutdown_rx);
        if let Some(r) = resume {
            if let Some(c) = r.cursor {
                sup.delivery.resume_from(c);
            }
            sup.credentials = r.credentials;
            sup.resumed = true;
        }
        let stats = sup.stats.clone();
        let credentials = sup.credentials_tx.subscribe();
        // The caller's span (the daemon's `session`) follows the task and its logs.
        let task = SessionJoin(Some(tokio::spawn(tracing::Instrument::in_current_span(
            sup.run(),
        ))));
        SessionHandle {
            items: rx,
            state,
            stats,
            credentials,
            shutdown: shutdown_tx,
            task,
        }
    }

    pub fn new(
        api: ApiClient,
        participant_token: Secret,
        cfg: SupervisorConfig,
        out: mpsc::Sender<Item>,
        shutdown: watch::Receiver<bool>,
    ) -> (Supervisor, watch::Receiver<SessionState>) {
        let cfg = Arc::new(cfg);
        let stats = Arc::new(SessionStats::default());
        let (state, state_rx) = watch::channel(SessionState::Starting);
        let sup = Supervisor {
            connector: Connector {
                api: api.clone(),
                participant_token,
                cfg: cfg.clone(),
            },
            api,
            delivery: Delivery::with_memory(out, stats.clone(), cfg.recent_ids),
            backoff: Self::fresh_backoff(&cfg),
            cfg,
            state,
            shutdown,
            stats,
            credentials: None,
            credentials_tx: watch::channel(None).0,
            was_live: false,
            resumed: false,
            anchored: false,
            last_immediate: None,
        };
        (sup, state_rx)
    }

    fn fresh_backoff(cfg: &SupervisorConfig) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(cfg.reconnect_min)
            .with_max_delay(cfg.reconnect_max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }

    fn set_state(&self, next: SessionState) {
        self.state.send_if_modified(|s| {
            if *s == next {
                return false;
            }
            info!(from = ?s, to = ?next, "session state");
            *s = next;
            true
        });
    }

    fn set_credentials(&mut self, creds: &Credentials) {
        self.credentials = Some(creds.clone());
        self.credentials_tx.send_replace(Some(creds.clone()));
    }

    pub async fn run(mut self) -> Result<SessionOutcome, SessionError> {
        let result = self.run_inner().await;
        match &result {
            Ok(SessionOutcome::ChatEnded) => self.set_state(SessionState::Ended),
            _ => self.set_state(SessionState::Stopped),
        }
        result
    }

    async fn run_inner(&mut self) -> Result<SessionOutcome, SessionError> {
        let mut attempt: u32 = 0;
        let mut backfill_denials = 0;
        let mut immediate = false;
        loop {
            if attempt > 0 {
                let delay = if std::mem::take(&mut immediate) {
                    // The first try after a live socket goes out at once (a little
                    // jitter keeps many sessions dropped together from dialling in
                    // lockstep); the backoff starts from the second.
                    Duration::from_millis(fastrand::u64(0..=IMMEDIATE_JITTER_MS))
                } else {
                    self.backoff.next().unwrap_or(self.cfg.reconnect_max)
                };
                self.set_state(SessionState::Reconnecting { attempt, delay });
                tokio::select! {
                    _ = sleep(delay) => {}
                    _ = shutdown_requested(&mut self.shutdown) => return Ok(SessionOutcome::Shutdown),
                }
            }
            attempt += 1;

            self.set_state(SessionState::Connecting);
            let connector = self.connector.clone();
            let created = tokio::select! {
                r = connector.create() => r,
                _ = shutdown_requested(&mut self.shutdown) => return Ok(SessionOutcome::Shutdown),
            };
            let created = match created {
                Ok(c) => c,
                Err(e) => match verdict(e) {
                    Verdict::Retry(why) => {
                        warn!(error = %why, "no connection yet; backing off");
                        continue;
                    }
                    Verdict::Denied(e) => return self.on_denied(e).await,
                    Verdict::Fatal(e) => return Err(SessionError::Fatal(e)),
                },
            };
            self.set_credentials(&created.creds);

            if self.cfg.history == History::None && !self.anchored && self.delivery.cursor().is_none() {
                if let Err(e) = self.anchor(&created.creds.token).await {
                    match verdict(ConnectFailure::Api(e)) {
                        Verdict::Retry(why) => {
                            warn!(error = %why, "reading the transcript's end failed; backing off");
                            continue;
                        }
                        Verdict::Denied(e) => return self.on_denied(e).await,
                        Verdict::Fatal(e) => return Err(SessionError::Fatal(e)),
                    }
                }
            }

            self.set_state(SessionState::Subscribing);
            let dialled = tokio::select! {
                r = connector.dial(created) => r,
                _ = shutdown_requested(&mut self.shutdown) => return Ok(SessionOutcome::Shutdown),
            };
            let mut conn = match dialled {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "could not open the websocket; will fetch a new URL");
                    continue;
                }
            };
            SessionStats::bump(&self.stats.connections);
            // A subscribed socket means the service took the token: a 403 from here on
            // means the chat ended, not a bad token.
            self.was_live = true;

            self.set_state(SessionState::Backfilling);
            // A long backfill (a big transcript, a throttled API) must not hold up a shutdown.
            let mut stop = self.shutdown.clone();
            let backfilled = tokio::select! {
                r = self.backfill(&conn.creds.token) => r,
                _ = shutdown_requested(&mut stop) => {
                    self.close_quietly(conn).await;
                    return Ok(SessionOutcome::Shutdown);
                }
            };
            match backfilled {
                Ok(Backfilled::Ended) => {
                    conn.socket.request_close();
                    return Ok(SessionOutcome::ChatEnded);
                }
                Ok(Backfilled::Truncated) => {
                    // Going live now would move the cursor past what is still unread.
                    conn.socket.request_close();
                    continue;
                }
                Ok(Backfilled::Complete) => backfill_denials = 0,
                Err(BackfillError::ConsumerGone) => return Ok(SessionOutcome::ConsumerGone),
                Err(BackfillError::Api(e)) if e.is_access_denied() && backfill_denials < 2 => {
                    // Maybe an expired token: a fresh connection will tell.
                    backfill_denials += 1;
                    warn!(error = %e, "backfill denied; reconnecting with fresh credentials");
                    continue;
                }
                Err(BackfillError::Api(e)) => match verdict(ConnectFailure::Api(e)) {
                    Verdict::Retry(why) => {
                        warn!(error = %why, "backfill failed; reconnecting");
                        continue;
                    }
                    Verdict::Denied(e) => return self.on_denied(e).await,
                    Verdict::Fatal(e) => return Err(SessionError::Fatal(e)),
                },
            }

            self.set_state(SessionState::Live);
            let live_since = Instant::now();
            match self.live(&mut conn).await {
                LiveExit::Ended => {
                    conn.socket.request_close();
                    return Ok(SessionOutcome::ChatEnded);
                }
                LiveExit::Shutdown => {
                    self.close_quietly(conn).await;
                    return Ok(SessionOutcome::Shutdown);
                }
                LiveExit::ConsumerGone => return Ok(SessionOutcome::ConsumerGone),
                LiveExit::Lost(reason) => {
                    warn!(%reason, "websocket lost; reconnecting");
                    SessionStats::bump(&self.stats.reconnects);
                    if live_since.elapsed() >= self.cfg.stable_after {
                        self.backoff = Self::fresh_backoff(&self.cfg);
                        attempt = 1;
                    }
                    // At once, unless the last immediate reconnect was recent (a socket
                    // that keeps failing gets the backoff, not a tight loop).
                    let now = Instant::now();
                    if self
                        .last_immediate
                        .is_none_or(|t| now - t >= self.cfg.stable_after)
                    {
                        self.last_immediate = Some(now);
                        immediate = true;
                    }
                }
                LiveExit::Denied(e) => return self.on_denied(e).await,
                LiveExit::Fatal(e) => return Err(SessionError::Fatal(e)),
            }
        }
    }

    /// A 403: before the chat was ever live, the token is bad; after, the chat ended.
    /// Either way nothing is retried. For an ended chat, what the transcript still
    /// holds (the end Item, say) is fetched with the last ConnectionToken. A session
    /// resumed from saved state counts as having been live if that token still reads
    /// the transcript.
    async fn on_denied(&mut self, e: ApiError) -> Result<SessionOutcome, SessionError> {
        let live_before = self.was_live || (self.resumed && self.credentials.is_some());
        if !live_before {
            return Err(SessionError::TokenRejected(e));
        }
        info!(error = %e, "access denied after the chat was live: the chat has ended");
        let Some(creds) = self.credentials.clone() else {
            return Ok(SessionOutcome::ChatEnded);
        };
        // The transcript holds what was missed (the end Item, say): a throttled or
        // failing read is retried, since giving up here would lose the chat's last Items.
        let mut attempt = 0;
        let mut rounds = 0u32;
        loop {
            attempt += 1;
            match self.backfill(&creds.token).await {
                // Each round delivered something new: go on to the end.
                Ok(Backfilled::Truncated) if rounds < FINAL_BACKFILL_ROUNDS => {
                    rounds += 1;
                    attempt = 0;
                }
                Ok(_) => return Ok(SessionOutcome::ChatEnded),
                Err(BackfillError::ConsumerGone) => return Ok(SessionOutcome::ConsumerGone),
                Err(BackfillError::Api(e2)) if e2.is_retryable() && attempt < FINAL_BACKFILL_ATTEMPTS => {
                    let delay = self.backoff.next().unwrap_or(self.cfg.reconnect_max);
                    warn!(error = %e2, ?delay, "reading the ended chat's transcript failed; retrying");
                    tokio::select! {
                        _ = sleep(delay) => {}
                        _ = shutdown_requested(&mut self.shutdown) => return Ok(SessionOutcome::Shutdown),
                    }
                }
                Err(BackfillError::Api(e2)) if !self.was_live => {
                    debug!(error = %e2, "the saved ConnectionToken does not work either");
                    return Err(SessionError::TokenRejected(e));
                }
                Err(BackfillError::Api(e2)) if e2.is_retryable() => return Err(SessionError::Fatal(e2)),
                Err(BackfillError::Api(e2)) => {
                    // The token cannot read the transcript any more: nothing left to fetch.
                    warn!(error = %e2, "the ended chat's transcript cannot be read");
                    return Ok(SessionOutcome::ChatEnded);
                }
            }
        }
    }

    /// `--history none`: remembers the transcript's last Item as the starting point,
    /// before the first dial, so nothing published after it can be missed.
    async fn anchor(&mut self, token: &Secret) -> Result<(), ApiError> {
        let req = GetTranscriptRequest {
            max_results: Some(10),
            scan_direction: Some(ScanDirection::Backward),
            sort_order: Some(SortKey::Descending),
            start_position: Some(StartPosition {
                most_recent: Some(10),
                ..Default::default()
            }),
            ..Default::default()
        };
        let resp = self.api.get_transcript(token, &req).await?;
        if let Some(last) = resp
            .transcript
            .iter()
            .find(|i| !i.is_ephemeral() && i.id.is_some())
        {
            debug!(id = ?last.id, "history none: starting after the transcript's last Item");
            self.delivery.skip(last);
        }
        self.anchored = true;
        Ok(())
    }

    /// Pages the transcript FORWARD from the cursor until NextToken is empty, delivering
    /// what is new. Paging also stops when a page brings nothing new (a service that
    /// hands out a NextToken at the end of the transcript: complete), and after
    /// `max_backfill_pages` calls (truncated).
    async fn backfill(&mut self, token: &Secret) -> Result<Backfilled, BackfillError> {
        let mut start = self.delivery.cursor().map(|c| StartPosition {
            id: Some(c.id.clone()),
            ..Default::default()
        });
        let mut next_token: Option<String> = None;
        let mut pages = 0u64;
        loop {
            let req = GetTranscriptRequest {
                max_results: Some(self.cfg.page_size),
                scan_direction: Some(ScanDirection::Forward),
                sort_order: Some(SortKey::Ascending),
                start_position: start.clone(),
                next_token: next_token.take(),
                contact_id: None,
            };
            let resp = match self.api.get_transcript(token, &req).await {
                Ok(r) => r,
                Err(e)
                    if e.is_validation() && pages == 0 && start.as_ref().is_some_and(|s| s.id.is_some()) =>
                {
                    // The cursor's Item is not in the transcript (it should be): fall back
                    // to its time, and let de-duplication drop what we already have.
                    let time = self.delivery.cursor().and_then(|c| c.absolute_time.clone());
                    let Some(time) = time else {
                        return Err(BackfillError::Api(e));
                    };
                    warn!(error = %e, "transcript does not know the cursor's Id; resuming from its time");
                    start = Some(StartPosition {
                        absolute_time: Some(time),
                        ..Default::default()
                    });
                    pages += 1;
                    continue;
                }
                Err(e) => return Err(BackfillError::Api(e)),
            };
            pages += 1;
            let mut fresh = 0u32;
            for item in resp.transcript {
                match self.delivery.offer(item, Source::Transcript).await? {
                    Offered::Ended => return Ok(Backfilled::Ended),
                    Offered::Delivered => fresh += 1,
                    Offered::Duplicate => {}
                }
            }
            match resp.next_token.filter(|t| !t.is_empty()) {
                Some(_) if fresh == 0 => {
                    debug!(
                        pages,
                        "a transcript page brought nothing new; the backfill is complete"
                    );
                    break;
                }
                Some(_) if pages >= u64::from(self.cfg.max_backfill_pages.max(1)) => {
                    warn!(
                        pages,
                        "stopping this backfill at its page limit; the next one goes on from the cursor"
                    );
                    return Ok(Backfilled::Truncated);
                }
                Some(t) => next_token = Some(t),
                None => break,
            }
        }
        Ok(Backfilled::Complete)
    }

    /// Streams Items from the socket until it is lost, the chat ends or a shutdown;
    /// renews the connection make-before-break when due.
    async fn live(&mut self, conn: &mut Connection) -> LiveExit {
        let mut renewal: Option<Renewal> = None;
        let mut renew_at = conn.renew_at;
        let mut renew_failures: u32 = 0;
        loop {
            tokio::select! {
                _ = shutdown_requested(&mut self.shutdown) => return LiveExit::Shutdown,
                ev = conn.socket.recv() => match ev {
                    Some(SocketEvent::Item(item)) => match self.delivery.offer(*item, Source::Live).await {
                        Ok(Offered::Ended) => return LiveExit::Ended,
                        Ok(_) => {}
                        Err(ConsumerGone) => return LiveExit::ConsumerGone,
                    },
                    Some(SocketEvent::Closed(reason)) => return LiveExit::Lost(reason),
                    None => return LiveExit::Lost(CloseReason::Error("socket task ended".into())),
                },
                _ = sleep_until(renew_at), if renewal.is_none() => {
                    self.set_state(SessionState::Renewing);
                    renewal = Some(Box::pin(self.connector.clone().connect()));
                }
                res = async { renewal.as_mut().expect("guarded by is_some").await }, if renewal.is_some() => {
                    renewal = None;
                    match res {
                        Ok(fresh) => {
                            SessionStats::bump(&self.stats.connections);
                            self.set_credentials(&fresh.creds);
                            let old = std::mem::replace(conn, fresh);
                            if let Err(exit) = self.retire(old).await {
                                return exit;
                            }
                            // A server may drop frames it had queued for the old socket
                            // when it answers our close, and an Item published just before
                            // the new socket subscribed went only to the old one: read the
                            // transcript from the cursor before the new socket's Items.
                            let token = conn.creds.token.clone();
                            match self.backfill(&token).await {
                                Ok(Backfilled::Ended) => return LiveExit::Ended,
                                Ok(Backfilled::Complete) => {}
                                Ok(Backfilled::Truncated) => {
                                    return LiveExit::Lost(CloseReason::Error(
                                        "the backfill after renewal reached its page limit".into(),
                                    ))
                                }
                                Err(BackfillError::ConsumerGone) => return LiveExit::ConsumerGone,
                                Err(BackfillError::Api(e)) => {
                                    return LiveExit::Lost(CloseReason::Error(format!(
                                        "backfill after renewal failed: {e}"
                                    )))
                                }
                            }
                            SessionStats::bump(&self.stats.renewals);
                            renew_at = conn.renew_at;
                            renew_failures = 0;
                            self.set_state(SessionState::Live);
                        }
                        Err(e) => match verdict(e) {
                            Verdict::Denied(e) => return LiveExit::Denied(e),
                            Verdict::Fatal(e) => return LiveExit::Fatal(e),
                            Verdict::Retry(why) => {
                                debug!(error = %why, "renewal failed");
                                renew_failures += 1;
                                let delay = Duration::from_secs(2u64 << renew_failures.min(4));
                                warn!(attempt = renew_failures, ?delay, "renewal failed; the current socket stays in use");
                                renew_at = Instant::now() + delay;
                                self.set_state(SessionState::Live);
                            }
                        },
                    }
                }
            }
        }
    }

    /// Closes a replaced socket and delivers what it still carried, up to its close
    /// handshake (or its end, if it does not close cleanly).
    async fn retire(&mut self, mut old: Connection) -> Result<(), LiveExit> {
        old.socket.request_close();
        while let Some(event) = old.socket.recv().await {
            match event {
                SocketEvent::Item(item) => match self.delivery.offer(*item, Source::Live).await {
                    Ok(Offered::Ended) => return Err(LiveExit::Ended),
                    Ok(_) => {}
                    Err(ConsumerGone) => return Err(LiveExit::ConsumerGone),
                },
                SocketEvent::Closed(CloseReason::Requested) => break,
                SocketEvent::Closed(reason) => {
                    debug!(%reason, "replaced socket did not close cleanly");
                    break;
                }
            }
        }
        Ok(())
    }

    /// On shutdown: close the socket and wait (briefly) for the close handshake.
    async fn close_quietly(&mut self, mut conn: Connection) {
        conn.socket.request_close();
        let wait = async {
            while let Some(ev) = conn.socket.recv().await {
                if matches!(ev, SocketEvent::Closed(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(self.cfg.socket.close_timeout + Duration::from_secs(1), wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Endpoint;

    fn created(now: OffsetDateTime, ws_ttl: i64, token_ttl: i64) -> Created {
        Created {
            url: PresignedUrl::new("ws://127.0.0.1:1/x"),
            ws_expiry: now + time::Duration::seconds(ws_ttl),
            creds: Credentials {
                token: Secret::new("t"),
                expiry: now + time::Duration::seconds(token_ttl),
            },
            received_at: Instant::now(),
            server_now: now,
        }
    }

    fn connector() -> Connector {
        Connector {
            api: ApiClient::builder(Endpoint::from_url("http://127.0.0.1:1").unwrap())
                .build()
                .unwrap(),
            participant_token: Secret::new("p"),
            cfg: Arc::new(SupervisorConfig::default()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn renewal_is_early_enough_and_jittered() {
        let c = connector();
        let now = OffsetDateTime::now_utc();
        let mut delays = Vec::new();
        for _ in 0..200 {
            let cr = created(now, 3600, 86400);
            delays.push((c.renew_at(&cr) - cr.received_at).as_secs_f64());
        }
        let (min, max) = delays
            .iter()
            .fold((f64::MAX, 0f64), |(a, b), d| (a.min(*d), b.max(*d)));
        // One hour of ConnectionExpiry: the 55-minute cap, minus up to 30 s of jitter.
        assert!(min >= 3300.0 - 30.0 && max <= 3300.0, "{min}..{max}");
        assert!(
            max - min > 15.0,
            "renewals are spread, not in lockstep: {min}..{max}"
        );
        // A short expiry scales lead and jitter down but still renews before it.
        for _ in 0..50 {
            let cr = created(now, 15, 86400);
            let d = (c.renew_at(&cr) - cr.received_at).as_secs_f64();
            assert!((9.75..=11.25).contains(&d), "{d}");
        }
        // A token expiring before the socket wins.
        let cr = created(now, 3600, 600);
        let d = (c.renew_at(&cr) - cr.received_at).as_secs_f64();
        assert!((600.0 - 60.0 - 30.0..=540.0).contains(&d), "{d}");
    }
}
