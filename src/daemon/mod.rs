//! `connect-chatd run`: many chats in one process. The [`Daemon`] holds every session
//! (from the configuration file and from the control API), persists them in the
//! journal's registry so a restart resumes each one right after its last journalled
//! Item, and shares one API client (one connection pool, one rate limiter) between
//! them.
//!
//! * [`session`]: one chat — a supervisor whose Items are journalled;
//! * [`control`]: the control API (sessions, probes) and `streams` (its SSE streams);
//! * [`metrics`]: `/metrics`, the Prometheus exposition;
//! * [`outbound`]: its talking-back routes (messages, events, attachments, disconnect);
//! * [`reload`]: a re-read configuration (SIGHUP) applied to the running sessions;
//! * [`notify`]: systemd's `READY=1`, `STATUS=`, `WATCHDOG=1`, `RELOADING=1`, `STOPPING=1`;
//! * [`server`]: HTTP/1.1 for both, within the [`Capacity`] limits;
//! * [`run`]: putting it together until a shutdown.
//!
//! Its consumers (stdout, SSE) are in [`crate::sink`]; the CLI's client of a running
//! daemon is in [`crate::cli`].

mod adopt;
pub mod control;
mod readiness;
mod runner;
mod streams;
pub use readiness::{Readiness, DEFAULT_READYZ_GRACE};
pub mod metrics;
pub mod notify;
pub mod outbound;
pub mod receipts;
pub mod reload;
pub mod run;
pub mod server;
pub mod session;

use crate::api::model::DisconnectParticipantRequest;
use crate::api::ApiClient;
use crate::journal::{self, Journal, SessionRecord, SessionSource};
use crate::secret::Secret;
use crate::session::{Credentials, History, Resume, SupervisorConfig};
use session::{RunningSession, SessionStart, SessionView};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Why the daemon refused a request about sessions.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("no session named {0:?}")]
    NotFound(String),
    #[error("the name {0:?} is taken by another chat")]
    NameTaken(String),
    #[error("journal: {0}")]
    Journal(#[from] journal::JournalError),
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("the chat of session {0:?} has ended")]
    Ended(String),
    #[error("session {0:?} has no connection yet; try again in a moment")]
    NotConnected(String),
    #[error("the daemon holds {0} sessions, as many as limits.max_sessions allows")]
    TooManySessions(usize),
    #[error("cluster: {0}")]
    Cluster(String),
}

/// How much the daemon takes on, and how long a control client may dawdle
/// (`[limits]`: `max_sessions`, `max_body`, `max_connections`, `max_streams`,
/// `header_timeout`, `idle_timeout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    /// Sessions followed at once (ended and retired ones do not count); more are
    /// refused with `503 too_many_sessions`.
    pub max_sessions: usize,
    /// Largest control request body, in bytes (`413 payload_too_large`); attachments
    /// have their own bound.
    pub max_body: usize,
    /// Open control connections per listener (`503 too_many_connections`).
    pub max_connections: usize,
    /// SSE streams open at once (`429 too_many_streams`).
    pub max_streams: usize,
    /// A request head must be complete this long after its first byte.
    pub header_timeout: std::time::Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: std::time::Duration,
}

impl Default for Capacity {
    fn default() -> Capacity {
        Capacity {
            max_sessions: 10_000,
            max_body: 64 * 1024,
            max_connections: 256,
            max_streams: 64,
            header_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// A session to add.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub participant_token: Secret,
    pub name: Option<String>,
    pub history: History,
    pub labels: BTreeMap<String, String>,
    /// Automatic delivered receipts for incoming messages.
    pub receipts: bool,
    pub source: SessionSource,
}

/// True for a valid session name: 1–64 characters of `[A-Za-z0-9._-]`.
pub fn valid_session_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A session the daemon knows: running, or finished and kept for reading.
enum Entry {
    Running(Arc<RunningSession>),
    /// Ended or failed before this process started: shown from the registry.
    Retired(SessionView),
}

impl Entry {
    fn view(&self) -> SessionView {
        match self {
            Entry::Running(s) => s.view(),
            Entry::Retired(v) => v.clone(),
        }
    }
}

pub struct Daemon {
    api: ApiClient,
    journal: Journal,
    /// Every session's supervisor configuration, shared: `[history all, history none]`.
    configs: [Arc<SupervisorConfig>; 2],
    sessions: Mutex<BTreeMap<String, Entry>>,
    /// Serialises additions, so one token can never get two sessions.
    adding: tokio::sync::Mutex<()>,
    closing: std::sync::atomic::AtomicBool,
    /// Set once the control API listens (see [`Daemon::has_started`] for the sessions).
    ready: std::sync::atomic::AtomicBool,
    capacity: Capacity,
    /// The configuration's session names, for readiness.
    configured: Mutex<Vec<String>>,
    /// Latched by [`Daemon::has_started`].
    started: std::sync::atomic::AtomicBool,
    /// `/readyz` answers 503 while a session has not been live for longer than this.
    readyz_grace: Mutex<std::time::Duration>,
    /// `/metrics` names sessions in labels.
    metrics_per_session: std::sync::atomic::AtomicBool,
    /// One permit per SSE stream that may open.
    streams: Arc<tokio::sync::Semaphore>,
    /// `[cluster]`: the sessions are the cluster's, this daemon follows those it owns.
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl Daemon {
    pub fn new(api: ApiClient, journal: Journal, supervisor: SupervisorConfig) -> Arc<Daemon> {
        Daemon::with_capacity(api, journal, supervisor, Capacity::default())
    }

    pub fn with_capacity(
        api: ApiClient,
        journal: Journal,
        supervisor: SupervisorConfig,
        capacity: Capacity,
    ) -> Arc<Daemon> {
        let with = |history| {
            Arc::new(SupervisorConfig {
                history,
                // Room for a whole journal group between the socket and the journal.
                item_channel: supervisor.item_channel.max(session::APPEND_BATCH),
                ..supervisor.clone()
            })
        };
        Arc::new(Daemon {
            api,
            journal,
            configs: [with(History::All), with(History::None)],
            sessions: Mutex::new(BTreeMap::new()),
            adding: tokio::sync::Mutex::new(()),
            closing: std::sync::atomic::AtomicBool::new(false),
            ready: std::sync::atomic::AtomicBool::new(false),
            configured: Mutex::new(Vec::new()),
            started: std::sync::atomic::AtomicBool::new(false),
            readyz_grace: Mutex::new(DEFAULT_READYZ_GRACE),
            metrics_per_session: std::sync::atomic::AtomicBool::new(false),
            streams: Arc::new(tokio::sync::Semaphore::new(capacity.max_streams)),
            cluster: std::sync::OnceLock::new(),
            capacity,
        })
    }

    /// The cluster this daemon is part of, if any.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.get()
    }

    pub fn set_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    pub fn capacity(&self) -> &Capacity {
        &self.capacity
    }

    /// A place for one more SSE stream, held until the stream ends; `None` when
    /// `max_streams` are open.
    pub(crate) fn stream_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.streams.clone().try_acquire_owned().ok()
    }

    /// True when `max_sessions` sessions are being followed (not ended, failed or
    /// retired).
    fn at_capacity(&self) -> bool {
        let max = self.capacity.max_sessions;
        let sessions = self.sessions.lock().expect("sessions lock");
        // Counting is needed only when the finished ones might not leave room.
        sessions.len() >= max
            && sessions
                .values()
                .filter(|e| matches!(e, Entry::Running(s) if !s.is_finished()))
                .count()
                >= max
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Starts every session the registry holds that had not finished, each right after
    /// its last journalled Item; finished ones are kept for reading.
    pub async fn resume_all(&self) -> Result<usize, DaemonError> {
        let _guard = self.adding.lock().await;
        let mut resumed = 0;
        for rec in self.journal.sessions()? {
            if self
                .sessions
                .lock()
                .expect("sessions lock")
                .contains_key(&rec.name)
            {
                continue;
            }
            if matches!(rec.state.as_str(), "ended" | "failed") {
                let view = retired_view(&rec);
                self.sessions
                    .lock()
                    .expect("sessions lock")
                    .insert(rec.name.clone(), Entry::Retired(view));
                continue;
            }
            let resume = Resume {
                cursor: self.journal.cursor(&rec.name)?,
                credentials: rec.connection_token.clone().and_then(|token| {
                    let expiry = crate::clock::parse_timestamp(rec.connection_expiry.as_deref()?).ok()?;
                    Some(Credentials { token, expiry })
                }),
            };
            self.launch(&rec, Some(resume));
            resumed += 1;
        }
        Ok(resumed)
    }

    /// Adds a session, or returns the one that already holds this ParticipantToken
    /// (`false`: nothing new was started).
    pub async fn add(&self, new: NewSession) -> Result<(SessionView, bool), DaemonError> {
        if self.closing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(DaemonError::ShuttingDown);
        }
        let _guard = self.adding.lock().await;
        let fingerprint = journal::fingerprint(&new.participant_token);
        if let Some(view) = self.held_by(&fingerprint)? {
            return Ok((view, false));
        }
        // The configuration's sessions were counted against the limit when it was
        // validated; only the API's wait for room.
        if new.source == SessionSource::Api && self.at_capacity() {
            return Err(DaemonError::TooManySessions(self.capacity.max_sessions));
        }
        let name = match new.name {
            Some(n) if !valid_session_name(&n) => {
                return Err(DaemonError::Invalid {
                    field: "name",
                    message: format!("{n:?} must be 1-64 characters of A-Z a-z 0-9 . _ -"),
                })
            }
            Some(n) => n,
            None => self.generated_name(),
        };
        if self.sessions.lock().expect("sessions lock").contains_key(&name)
            || self.journal.session(&name)?.is_some()
        {
            return Err(DaemonError::NameTaken(name));
        }
        let history = match new.history {
            History::All => journal::History::All,
            History::None => journal::History::None,
        };
        let mut rec = SessionRecord::new(name, new.participant_token, new.source, history);
        rec.labels = new.labels;
        rec.receipts = new.receipts;
        rec.state = "connecting".into();
        self.journal.put_session(&rec).await?;
        let running = self.launch(&rec, None);
        Ok((running.view(), true))
    }

    fn launch(&self, rec: &SessionRecord, resume: Option<Resume>) -> Arc<RunningSession> {
        let cfg = match rec.history {
            journal::History::All => self.configs[0].clone(),
            journal::History::None => self.configs[1].clone(),
        };
        let running = Arc::new(RunningSession::start(
            self.api.clone(),
            self.journal.clone(),
            SessionStart {
                name: rec.name.clone(),
                participant_token: rec.participant_token.clone(),
                fingerprint: rec.fingerprint(),
                labels: rec.labels.clone(),
                cfg,
                resume,
                receipts: rec.receipts,
            },
        ));
        self.sessions
            .lock()
            .expect("sessions lock")
            .insert(rec.name.clone(), Entry::Running(running.clone()));
        running
    }

    /// The session that holds this token fingerprint, if any: running, or finished and
    /// still kept (a chat is never followed twice).
    fn held_by(&self, fingerprint: &str) -> Result<Option<SessionView>, DaemonError> {
        let running = {
            let sessions = self.sessions.lock().expect("sessions lock");
            sessions.values().find_map(|e| match e {
                Entry::Running(s) if s.fingerprint == fingerprint => Some(s.view()),
                _ => None,
            })
        };
        if running.is_some() {
            return Ok(running);
        }
        Ok(self
            .journal
            .session_by_fingerprint(fingerprint)?
            .and_then(|rec| self.get(&rec.name)))
    }

    /// Retention: the journal forgets what ended more than `retention` ago, and so does
    /// the daemon. Returns the Items deleted.
    pub async fn purge_expired(&self) -> Result<usize, DaemonError> {
        let deleted = self.journal.purge(time::OffsetDateTime::now_utc()).await?;
        let finished: Vec<String> = {
            let sessions = self.sessions.lock().expect("sessions lock");
            sessions
                .iter()
                .filter(|(_, e)| match e {
                    Entry::Running(s) => s.is_finished(),
                    Entry::Retired(_) => true,
                })
                .map(|(name, _)| name.clone())
                .collect()
        };
        for name in finished {
            if self.journal.session(&name)?.is_none() {
                self.sessions.lock().expect("sessions lock").remove(&name);
            }
        }
        Ok(deleted)
    }

    fn generated_name(&self) -> String {
        let sessions = self.sessions.lock().expect("sessions lock");
        loop {
            let name = format!("session-{:08x}", fastrand::u32(..));
            if !sessions.contains_key(&name) {
                return name;
            }
        }
    }

    pub fn list(&self) -> Vec<SessionView> {
        let sessions = self.sessions.lock().expect("sessions lock");
        sessions.values().map(Entry::view).collect()
    }

    /// A session that is still running, to talk through.
    pub fn running(&self, name: &str) -> Result<Arc<RunningSession>, DaemonError> {
        match self.sessions.lock().expect("sessions lock").get(name) {
            None => Err(DaemonError::NotFound(name.to_string())),
            Some(Entry::Running(s)) if !s.is_finished() => Ok(s.clone()),
            Some(_) => Err(DaemonError::Ended(name.to_string())),
        }
    }

    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    pub fn get(&self, name: &str) -> Option<SessionView> {
        self.sessions
            .lock()
            .expect("sessions lock")
            .get(name)
            .map(Entry::view)
    }

    /// True if the journal may hold Items of `name` (a session known now or before).
    pub fn knows(&self, name: &str) -> bool {
        self.sessions.lock().expect("sessions lock").contains_key(name)
    }

    /// Stops following a session: its socket is closed with a close frame, it leaves
    /// the registry (a restart does not resume it), and its Items stay in the journal
    /// for the retention period. With `disconnect`, DisconnectParticipant is called
    /// first.
    pub async fn remove(&self, name: &str, disconnect: bool) -> Result<(), DaemonError> {
        let entry = self
            .sessions
            .lock()
            .expect("sessions lock")
            .remove(name)
            .ok_or_else(|| DaemonError::NotFound(name.to_string()))?;
        if let Entry::Running(s) = entry {
            if disconnect {
                let creds = s.credentials.borrow().clone();
                if let Some(c) = creds {
                    let req = DisconnectParticipantRequest { client_token: None };
                    if let Err(e) = self.api.disconnect_participant(&c.token, &req).await {
                        tracing::warn!(session = name, error = %e, "DisconnectParticipant failed");
                    }
                }
            }
            s.stop();
            s.finished().await;
        }
        self.journal.remove_session(name).await?;
        Ok(())
    }

    /// Stops every session (sockets closed with close frames) and waits for their last
    /// Items to be journalled. Sessions stay in the registry: a restart resumes them.
    pub async fn shutdown(&self) {
        self.closing.store(true, std::sync::atomic::Ordering::Relaxed);
        let running: Vec<_> = {
            let sessions = self.sessions.lock().expect("sessions lock");
            sessions
                .values()
                .filter_map(|e| match e {
                    Entry::Running(s) => Some(s.clone()),
                    Entry::Retired(_) => None,
                })
                .collect()
        };
        for s in &running {
            s.stop();
        }
        for s in &running {
            s.finished().await;
        }
    }
}

fn retired_view(rec: &SessionRecord) -> SessionView {
    SessionView {
        name: rec.name.clone(),
        state: if rec.state == "ended" { "ended" } else { "failed" },
        contact_id: rec.contact_id.clone(),
        participant_id: rec.participant_id.clone(),
        labels: rec.labels.clone(),
        receipts: rec.receipts,
        counters: Default::default(),
        last_item_at: None,
        last_error: rec.last_error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names() {
        for good in ["a", "chat-1", "A.b_c-9", &"x".repeat(64)] {
            assert!(valid_session_name(good), "{good}");
        }
        for bad in ["", "has space", "slash/y", "é", &"x".repeat(65)] {
            assert!(!valid_session_name(bad), "{bad}");
        }
    }
}
