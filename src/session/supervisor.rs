//! The supervisor's state machine: connect, subscribe, backfill, live; renew before
//! expiry (make-before-break); reconnect with backoff after any loss; decide the end.

use super::backfill::{BackfillError, Backfilled};
use super::connector::{verdict, ConnectFailure, Connection, Connector, Verdict};
use super::delivery::{ConsumerGone, Delivery, Offered, SessionStats, Source};
use super::*;
use crate::api::model::*;
use crate::api::{ApiClient, ApiError};
use crate::socket::{CloseReason, SocketEvent};
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use std::future::Future;
use std::pin::Pin;
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{debug, info, warn};

/// Why the live loop returned.
pub(super) enum LiveExit {
    Ended,
    Shutdown,
    ConsumerGone,
    Lost(CloseReason),
    Denied(ApiError),
    Fatal(ApiError),
}

/// Resolves when a shutdown is requested (never, if the sender is gone).
pub(super) async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub(super) type Renewal = Pin<Box<dyn Future<Output = Result<Connection, ConnectFailure>> + Send>>;

pub struct Supervisor {
    pub(super) api: ApiClient,
    pub(super) connector: Connector,
    pub(super) cfg: Arc<SupervisorConfig>,
    pub(super) delivery: Delivery,
    pub(super) state: watch::Sender<SessionState>,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) stats: Arc<SessionStats>,
    pub(super) credentials: Option<Credentials>,
    pub(super) credentials_tx: watch::Sender<Option<Credentials>>,
    pub(super) backoff: ExponentialBackoff,
    pub(super) was_live: bool,
    /// Started from a previous run's state: the chat was live before.
    pub(super) resumed: bool,
    pub(super) anchored: bool,
    /// When the last reconnect went out at once (one per `stable_after` at most).
    pub(super) last_immediate: Option<Instant>,
}

/// Reads of an ended chat's transcript before giving up (with reconnect backoff between).
pub(super) const FINAL_BACKFILL_ATTEMPTS: u32 = 20;

/// Backfills of `max_backfill_pages` in a row when reading an ended chat's transcript.
pub(super) const FINAL_BACKFILL_ROUNDS: u32 = 1000;

/// Jitter of an immediate reconnect, in milliseconds.
pub(super) const IMMEDIATE_JITTER_MS: u64 = 10;

/// How many Items may wait between the supervisor and its consumer.
pub const ITEM_CHANNEL: usize = 64;

impl Supervisor {
    /// Starts a session in a task of its own.
    pub fn spawn(
        api: ApiClient,
        participant_token: Secret,
        cfg: impl Into<Arc<SupervisorConfig>>,
    ) -> SessionHandle {
        Self::spawn_resumed(api, participant_token, cfg, None)
    }

    /// Starts a session that continues a previous run: Items up to `resume.cursor` count
    /// as delivered.
    pub fn spawn_resumed(
        api: ApiClient,
        participant_token: Secret,
        cfg: impl Into<Arc<SupervisorConfig>>,
        resume: Option<Resume>,
    ) -> SessionHandle {
        // Shared, not copied: a daemon passes one configuration to all its sessions.
        let cfg: Arc<SupervisorConfig> = cfg.into();
        let (tx, rx) = mpsc::channel(cfg.item_channel.max(1));
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
            items: ItemReceiver::new(rx),
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
        cfg: impl Into<Arc<SupervisorConfig>>,
        out: mpsc::Sender<Box<Item>>,
        shutdown: watch::Receiver<bool>,
    ) -> (Supervisor, watch::Receiver<SessionState>) {
        let cfg: Arc<SupervisorConfig> = cfg.into();
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

    pub(super) fn fresh_backoff(cfg: &SupervisorConfig) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(cfg.reconnect_min)
            .with_max_delay(cfg.reconnect_max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }

    pub(super) fn set_state(&self, next: SessionState) {
        self.state.send_if_modified(|s| {
            if *s == next {
                return false;
            }
            info!(from = ?s, to = ?next, "session state");
            *s = next;
            true
        });
    }

    pub(super) fn set_credentials(&mut self, creds: &Credentials) {
        self.credentials = Some(creds.clone());
        self.credentials_tx.send_replace(Some(creds.clone()));
    }

    // Not an `async fn`: one of those would hold `self` twice (as its argument and as
    // the local it moves into), 600 bytes more in every idle session's task.
    pub fn run(self) -> impl std::future::Future<Output = Result<SessionOutcome, SessionError>> + Send {
        let mut this = self;
        async move {
            let result = this.run_inner().await;
            match &result {
                Ok(SessionOutcome::ChatEnded) => this.set_state(SessionState::Ended),
                _ => this.set_state(SessionState::Stopped),
            }
            result
        }
    }

    pub(super) async fn run_inner(&mut self) -> Result<SessionOutcome, SessionError> {
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
                r = Box::pin(connector.create()) => r,
                _ = shutdown_requested(&mut self.shutdown) => return Ok(SessionOutcome::Shutdown),
            };
            let created = match created {
                Ok(c) => c,
                Err(e) => match verdict(e) {
                    Verdict::Retry(why) => {
                        warn!(error = %why, "no connection yet; backing off");
                        continue;
                    }
                    Verdict::Denied(e) => return Box::pin(self.on_denied(e)).await,
                    Verdict::Fatal(e) => return Err(SessionError::Fatal(e)),
                },
            };
            self.set_credentials(&created.creds);

            if self.cfg.history == History::None && !self.anchored && self.delivery.cursor().is_none() {
                if let Err(e) = Box::pin(self.anchor(&created.creds.token)).await {
                    match verdict(ConnectFailure::Api(e)) {
                        Verdict::Retry(why) => {
                            warn!(error = %why, "reading the transcript's end failed; backing off");
                            continue;
                        }
                        Verdict::Denied(e) => return Box::pin(self.on_denied(e)).await,
                        Verdict::Fatal(e) => return Err(SessionError::Fatal(e)),
                    }
                }
            }

            self.set_state(SessionState::Subscribing);
            let dialled = tokio::select! {
                r = Box::pin(connector.dial(created)) => r,
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
                r = Box::pin(self.backfill(&conn.creds.token)) => r,
                _ = shutdown_requested(&mut stop) => {
                    Box::pin(self.close_quietly(conn)).await;
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
                    Verdict::Denied(e) => return Box::pin(self.on_denied(e)).await,
                    Verdict::Fatal(e) => return Err(SessionError::Fatal(e)),
                },
            }

            self.set_state(SessionState::Live);
            let live_since = Instant::now();
            match Box::pin(self.live(&mut conn)).await {
                LiveExit::Ended => {
                    conn.socket.request_close();
                    return Ok(SessionOutcome::ChatEnded);
                }
                LiveExit::Shutdown => {
                    Box::pin(self.close_quietly(conn)).await;
                    return Ok(SessionOutcome::Shutdown);
                }
                LiveExit::ConsumerGone => return Ok(SessionOutcome::ConsumerGone),
                LiveExit::Lost(reason) => {
                    warn!(%reason, "websocket lost; reconnecting");
                    SessionStats::bump(&self.stats.reconnects);
                    crate::metrics::global().reconnect(crate::metrics::cause(&reason));
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
                LiveExit::Denied(e) => return Box::pin(self.on_denied(e)).await,
                LiveExit::Fatal(e) => return Err(SessionError::Fatal(e)),
            }
        }
    }

    /// A 403: before the chat was ever live, the token is bad; after, the chat ended.
    /// Either way nothing is retried. For an ended chat, what the transcript still
    /// holds (the end Item, say) is fetched with the last ConnectionToken. A session
    /// resumed from saved state counts as having been live if that token still reads
    /// the transcript.
    pub(super) async fn on_denied(&mut self, e: ApiError) -> Result<SessionOutcome, SessionError> {
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
            match Box::pin(self.backfill(&creds.token)).await {
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

    /// Streams Items from the socket until it is lost, the chat ends or a shutdown;
    /// renews the connection make-before-break when due.
    pub(super) async fn live(&mut self, conn: &mut Connection) -> LiveExit {
        let mut renewal: Option<Renewal> = None;
        let mut renew_at = conn.renew_at;
        let mut renew_failures: u32 = 0;
        loop {
            tokio::select! {
                _ = shutdown_requested(&mut self.shutdown) => return LiveExit::Shutdown,
                ev = conn.socket.recv() => match ev {
                    Some(SocketEvent::Item(item)) => match self.delivery.offer(item, Source::Live).await {
                        Ok(Offered::Ended) => return LiveExit::Ended,
                        Ok(_) => {}
                        Err(ConsumerGone) => return LiveExit::ConsumerGone,
                    },
                    Some(SocketEvent::Closed(reason)) => return LiveExit::Lost(*reason),
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
                            if let Err(exit) = Box::pin(self.retire(old)).await {
                                return exit;
                            }
                            // A server may drop frames it had queued for the old socket
                            // when it answers our close, and an Item published just before
                            // the new socket subscribed went only to the old one: read the
                            // transcript from the cursor before the new socket's Items.
                            let token = conn.creds.token.clone();
                            match Box::pin(self.backfill(&token)).await {
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
                            crate::metrics::global().renewals.inc();
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
    pub(super) async fn retire(&mut self, mut old: Connection) -> Result<(), LiveExit> {
        old.socket.request_close();
        while let Some(event) = old.socket.recv().await {
            match event {
                SocketEvent::Item(item) => match self.delivery.offer(item, Source::Live).await {
                    Ok(Offered::Ended) => return Err(LiveExit::Ended),
                    Ok(_) => {}
                    Err(ConsumerGone) => return Err(LiveExit::ConsumerGone),
                },
                SocketEvent::Closed(reason) if *reason == CloseReason::Requested => break,
                SocketEvent::Closed(reason) => {
                    debug!(%reason, "replaced socket did not close cleanly");
                    break;
                }
            }
        }
        Ok(())
    }

    /// On shutdown: close the socket and wait (briefly) for the close handshake.
    pub(super) async fn close_quietly(&mut self, mut conn: Connection) {
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
mod size_tests {
    /// A session's task is allocated once per chat and lives as long as the chat: its
    /// phases (connect, backfill, live, end) are boxed so it holds one of them at a
    /// time, not all of them side by side (it was 14 KiB; 10 000 idle chats paid that),
    /// and `run` holds the supervisor once, not twice (2.2 KiB before that).
    #[tokio::test]
    async fn the_session_future_stays_small() {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let endpoint = crate::api::Endpoint::from_url("http://127.0.0.1:9").unwrap();
        let api = crate::api::ApiClient::builder(endpoint).build().unwrap();
        let token = crate::secret::Secret::new("t");
        let (sup, _) = super::Supervisor::new(
            api,
            token,
            crate::session::SupervisorConfig::default(),
            tx,
            stop_rx,
        );
        let run = sup.run();
        assert!(
            std::mem::size_of_val(&run) <= 2048,
            "{} bytes",
            std::mem::size_of_val(&run)
        );
    }
}
