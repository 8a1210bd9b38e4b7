//! One chat inside the daemon: a [`Supervisor`] whose Items go to the journal, and a
//! watcher that records its state, counters, ConnectionToken and outcome.
//!
//! The session's cursor *is* its last journalled Item: a restart resumes right after
//! it, so nothing is lost or repeated. Items reach consumers only through the journal,
//! after they are committed. When the journal falls behind, `append` waits, the
//! supervisor's channel fills and the socket stops being read (backpressure): nothing
//! is dropped. A rejected token, a fatal answer or a panic ends this session alone,
//! with the reason recorded.

use super::receipts::{Receipts, Sent};
use crate::api::ApiClient;
use crate::journal::Journal;
use crate::secret::Secret;
use crate::session::delivery::StatsSnapshot;
use crate::session::{Resume, SessionState, Supervisor, SupervisorConfig};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;
use tokio::sync::watch;

/// Items journalled in one append at most, and so the supervisor's channel: a busy
/// chat is committed in groups this large (an idle one allocates none of it).
pub const APPEND_BATCH: usize = 512;

/// What the control API shows of a session.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SessionView {
    pub name: String,
    pub state: &'static str,
    pub contact_id: Option<String>,
    pub participant_id: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Automatic delivered receipts on.
    pub receipts: bool,
    pub counters: Counters,
    pub last_item_at: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub delivered: u64,
    pub backfilled: u64,
    pub duplicates: u64,
    pub reconnects: u64,
    pub renewals: u64,
}

impl From<StatsSnapshot> for Counters {
    fn from(s: StatsSnapshot) -> Counters {
        Counters {
            delivered: s.delivered,
            backfilled: s.backfilled,
            duplicates: s.duplicates,
            reconnects: s.reconnects,
            renewals: s.renewals,
        }
    }
}

/// A session's state as the control API names it.
pub fn state_name(state: &SessionState) -> &'static str {
    match state {
        SessionState::Starting | SessionState::Connecting => "connecting",
        SessionState::Subscribing => "subscribing",
        SessionState::Backfilling => "backfilling",
        SessionState::Live => "live",
        SessionState::Renewing => "renewing",
        SessionState::Reconnecting { .. } => "reconnecting",
        SessionState::Ended => "ended",
        SessionState::Stopped => "stopped",
    }
}

/// True for the states of a session that is not subscribed.
pub(super) fn waiting(state: &str) -> bool {
    matches!(state, "connecting" | "subscribing" | "reconnecting")
}

/// What changes while a session runs, shared with the control API.
#[derive(Debug)]
pub struct Progress {
    pub contact_id: Option<String>,
    pub participant_id: Option<String>,
    pub last_item_at: Option<String>,
    pub last_error: Option<String>,
    /// The supervisor's state while it runs (never a terminal one: see `finished`).
    pub state: &'static str,
    /// Since when the session has been connecting, subscribing or reconnecting without
    /// being subscribed in between (`None` while it is; for `/readyz`).
    pub not_live_since: Option<tokio::time::Instant>,
    /// Set once the session has finished and its last Items are journalled: `ended`,
    /// `stopped` or `failed`.
    pub finished: Option<&'static str>,
    pub counters: Counters,
}

impl Progress {
    /// A session that has just started: nothing known yet.
    pub(super) fn starting() -> Progress {
        Progress {
            contact_id: None,
            participant_id: None,
            last_item_at: None,
            last_error: None,
            state: "connecting",
            not_live_since: Some(tokio::time::Instant::now()),
            finished: None,
            counters: Counters::default(),
        }
    }
}

/// A running (or finished) session held by the daemon.
pub struct RunningSession {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub fingerprint: String,
    /// The current ConnectionToken (for DisconnectParticipant on removal).
    pub credentials: watch::Receiver<Option<crate::session::Credentials>>,
    progress: Arc<Mutex<Progress>>,
    /// Shuts the supervisor down; the runner then journals what is left and finishes.
    stop: crate::session::ShutdownHandle,
    /// Notified once `progress.finished` is set (a `Notify`, not a `watch`: a tenth of
    /// the memory, in every session).
    done: Arc<tokio::sync::Notify>,
    /// Typing events: one per [`TYPING_EVERY`] at most.
    pub(crate) typing: LeadingEdge,
    /// Receipts and own messages sent (shared with the receipts task).
    pub(crate) sent: Arc<Mutex<Sent>>,
    pub receipts: bool,
}

/// The least time between two typing events of one session.
pub const TYPING_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// A leading-edge throttle: the first call passes, the next only `every` later.
#[derive(Debug)]
pub struct LeadingEdge {
    every: std::time::Duration,
    last: Mutex<Option<tokio::time::Instant>>,
}

impl LeadingEdge {
    pub fn new(every: std::time::Duration) -> LeadingEdge {
        LeadingEdge {
            every,
            last: Mutex::new(None),
        }
    }

    /// True (and the window restarts) if the last pass was `every` ago or more.
    pub fn pass(&self) -> bool {
        let now = tokio::time::Instant::now();
        let mut last = self.last.lock().expect("throttle lock");
        match *last {
            Some(t) if now.duration_since(t) < self.every => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

/// How to start a session.
pub struct SessionStart {
    pub name: String,
    pub participant_token: Secret,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    /// Shared by the daemon's sessions of the same history setting.
    pub cfg: Arc<SupervisorConfig>,
    pub resume: Option<Resume>,
    /// Automatic delivered receipts for incoming messages.
    pub receipts: bool,
}

impl RunningSession {
    /// Starts the session in tasks of its own.
    pub fn start(api: ApiClient, journal: Journal, start: SessionStart) -> RunningSession {
        let SessionStart {
            name,
            participant_token,
            fingerprint,
            labels,
            cfg,
            resume,
            receipts,
        } = start;
        // A new session's first history is not "incoming": receipts start with what
        // arrives from now on. A resumed one's new Items are all incoming.
        let receipts_after = resume.is_none().then(OffsetDateTime::now_utc);
        // Every log line of this chat (supervisor, socket) names the session.
        let span = tracing::info_span!("session", session = %name);
        let handle = span.in_scope(|| Supervisor::spawn_resumed(api.clone(), participant_token, cfg, resume));
        let (items, task) = handle.into_parts();
        let credentials = task.credentials.clone();
        let sent = Arc::new(Mutex::new(Sent::default()));
        let receipts_on = receipts;
        let receipts =
            receipts.then(|| span.in_scope(|| Receipts::spawn(api, credentials.clone(), sent.clone())));
        let progress = Arc::new(Mutex::new(Progress::starting()));
        let stop = task.shutdown_handle();
        let done = Arc::new(tokio::sync::Notify::new());
        let runner = super::runner::Runner {
            name: name.clone(),
            journal,
            progress: progress.clone(),
            receipts,
            receipts_after,
            sent: sent.clone(),
        };
        tokio::spawn(tracing::Instrument::instrument(
            runner.run(items, task, done.clone()),
            span,
        ));
        RunningSession {
            name,
            labels,
            fingerprint,
            credentials,
            progress,
            stop,
            done,
            typing: LeadingEdge::new(TYPING_EVERY),
            sent,
            receipts: receipts_on,
        }
    }

    /// Asks the session to close its socket (with a close frame) and finish.
    pub fn stop(&self) {
        self.stop.shutdown();
    }

    /// Resolves once the session has finished and its last Items are journalled.
    pub async fn finished(&self) {
        loop {
            // Registered before the check, so a finish in between is not missed.
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_finished() {
                return;
            }
            notified.await;
        }
    }

    /// The current ConnectionToken, once the session has connected.
    pub fn connection_token(&self) -> Option<Secret> {
        self.credentials.borrow().as_ref().map(|c| c.token.clone())
    }

    /// How long the session has been connecting, subscribing or reconnecting; `None`
    /// while it is subscribed (or finished).
    pub fn not_live_for(&self) -> Option<std::time::Duration> {
        let p = self.progress.lock().expect("progress lock");
        p.not_live_since
            .filter(|_| p.finished.is_none())
            .map(|t| t.elapsed())
    }

    pub fn is_finished(&self) -> bool {
        self.progress.lock().expect("progress lock").finished.is_some()
    }

    /// The state `view` shows, without building the view.
    pub fn state(&self) -> &'static str {
        let p = self.progress.lock().expect("progress lock");
        p.finished.unwrap_or(p.state)
    }

    pub fn view(&self) -> SessionView {
        let p = self.progress.lock().expect("progress lock");
        SessionView {
            name: self.name.clone(),
            state: p.finished.unwrap_or(p.state),
            contact_id: p.contact_id.clone(),
            participant_id: p.participant_id.clone(),
            labels: self.labels.clone(),
            receipts: self.receipts,
            counters: p.counters,
            last_item_at: p.last_item_at.clone(),
            last_error: p.last_error.clone(),
        }
    }
}

/// Now, in the journal's timestamp form.
pub fn now_text() -> String {
    crate::clock::format_timestamp(OffsetDateTime::now_utc())
}
