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
use crate::api::model::Item;
use crate::api::ApiClient;
use crate::journal::{AppendChain, Journal, JournalError, PendingAppend};
use crate::secret::Secret;
use crate::session::delivery::StatsSnapshot;
use crate::session::{Resume, SessionError, SessionOutcome, SessionState, Supervisor, SupervisorConfig};
use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;
use tokio::sync::watch;

/// Items journalled in one append at most, and so the supervisor's channel: a busy
/// chat is committed in groups this large (an idle one allocates none of it).
pub const APPEND_BATCH: usize = 512;

/// Appends of one session that may be committing at once.
const APPENDS_IN_FLIGHT: usize = 4;

/// An append handed to the writer, with the incoming messages that get receipts once
/// it commits.
struct InFlight {
    pending: PendingAppend,
    incoming: Vec<(usize, String)>,
}

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
fn waiting(state: &str) -> bool {
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
    fn starting() -> Progress {
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
        let runner = Runner {
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

struct Runner {
    name: String,
    journal: Journal,
    progress: Arc<Mutex<Progress>>,
    receipts: Option<Receipts>,
    receipts_after: Option<OffsetDateTime>,
    sent: Arc<Mutex<Sent>>,
}

impl Runner {
    // Not an `async fn`, which would hold its arguments twice (as arguments and as the
    // locals they move into) in every idle session's task.
    fn run(
        self,
        items: crate::session::ItemReceiver,
        task: crate::session::SessionTask,
        done: Arc<tokio::sync::Notify>,
    ) -> impl std::future::Future<Output = ()> + Send {
        let mut items = items;
        async move {
            let mut state = task.state.clone();
            let mut creds = task.credentials.clone();
            let stats = task.stats.clone();
            let mut journal_failed = None;
            // Appends in flight, oldest first: the next batch is read and handed to the
            // writer while earlier ones commit, so a busy chat never waits for a commit
            // with its socket idle. One chain: a failed append refuses the later ones, so
            // the journal never holds a session's Items with a gap before them.
            let chain = AppendChain::new();
            let mut in_flight: VecDeque<InFlight> = VecDeque::new();
            loop {
                tokio::select! {
                    item = items.recv_boxed(), if in_flight.len() < APPENDS_IN_FLIGHT => {
                        let Some(item) = item else { break };
                        let mut batch = Vec::with_capacity(items.len() + 1);
                        batch.push(*item);
                        while batch.len() < APPEND_BATCH {
                            match items.try_recv() {
                                Ok(item) => batch.push(item),
                                Err(_) => break,
                            }
                        }
                        self.note_items(&batch);
                        let incoming = self.incoming(&batch);
                        // Boxed, as every wait in this loop's arms: the idle task stays small.
                        match Box::pin(self.journal.enqueue_append(Some(&chain), &self.name, batch)).await {
                            Ok(pending) => in_flight.push_back(InFlight { pending, incoming }),
                            Err(e) => {
                                journal_failed = Some(self.journal_failed(e, &task));
                                break;
                            }
                        }
                    }
                    appended = async { (&mut in_flight.front_mut().expect("guarded").pending).await }, if !in_flight.is_empty() => {
                        let InFlight { incoming, .. } = in_flight.pop_front().expect("guarded");
                        if in_flight.is_empty() && items.is_empty() {
                            // Idle again: an idle session keeps no queue.
                            in_flight = VecDeque::new();
                        }
                        if let Err(e) = self.committed(appended, incoming, &stats) {
                            journal_failed = Some(self.journal_failed(e, &task));
                            break;
                        }
                    }
                    Ok(()) = state.changed() => {
                        let s = state_name(&state.borrow_and_update());
                        // The end is shown and recorded only once the last Items are
                        // journalled (below): a session recorded as ended before that
                        // would not be resumed after a crash, and its last Items lost.
                        if matches!(s, "ended" | "stopped") {
                            continue;
                        }
                        {
                            let mut p = self.progress.lock().expect("progress lock");
                            p.state = s;
                            if !waiting(s) {
                                p.not_live_since = None;
                            } else if p.not_live_since.is_none() {
                                p.not_live_since = Some(tokio::time::Instant::now());
                            }
                        }
                        if let Err(e) = Box::pin(self.journal.set_session_state(&self.name, s, None, false)).await {
                            tracing::warn!(session = %self.name, error = %e, "cannot record the session's state");
                        }
                    }
                    Ok(()) = creds.changed() => {
                        let c = creds.borrow_and_update().clone();
                        if let Some(c) = c {
                            let expiry = crate::clock::format_timestamp(c.expiry);
                            if let Err(e) = Box::pin(self.journal.set_connection(&self.name, &c.token, &expiry)).await {
                                tracing::warn!(session = %self.name, error = %e, "cannot record the ConnectionToken");
                            }
                        }
                    }
                }
            }
            drop(items);
            Box::pin(self.finish(task, in_flight, journal_failed, done)).await;
        }
    }

    /// After the loop: what is in flight commits, the supervisor's outcome is recorded,
    /// and `done` is set.
    async fn finish(
        self,
        task: crate::session::SessionTask,
        in_flight: VecDeque<InFlight>,
        mut journal_failed: Option<String>,
        done: Arc<tokio::sync::Notify>,
    ) {
        let stats = task.stats.clone();
        // What is still in flight commits (or, after a failure, is refused) before the
        // end is recorded.
        for InFlight { pending, incoming } in in_flight {
            let appended = pending.await;
            if journal_failed.is_none() {
                if let Err(e) = self.committed(appended, incoming, &stats) {
                    journal_failed = Some(self.journal_failed(e, &task));
                }
            }
        }
        let outcome = task.join().await;
        let stats = stats.snapshot();
        let (finished, error) = match (&journal_failed, &outcome) {
            (Some(e), _) => ("failed", Some(format!("journal: {e}"))),
            (None, Ok(SessionOutcome::ChatEnded)) => ("ended", None),
            (None, Ok(SessionOutcome::Shutdown | SessionOutcome::ConsumerGone)) => ("stopped", None),
            (None, Err(e)) => ("failed", Some(error_text(e))),
        };
        match &error {
            Some(e) => tracing::warn!(session = %self.name, state = finished, error = %e, "session finished"),
            None => tracing::info!(session = %self.name, state = finished, "session finished"),
        }
        if let Err(e) = self
            .journal
            .set_session_state(&self.name, finished, error.as_deref(), finished != "stopped")
            .await
        {
            tracing::warn!(session = %self.name, error = %e, "cannot record the session's end");
        }
        {
            let mut p = self.progress.lock().expect("progress lock");
            p.finished = Some(finished);
            p.last_error = error;
            p.counters = stats.into();
        }
        done.notify_waiters();
    }

    /// An append has committed (or failed): receipts for what was new, and counters.
    fn committed(
        &self,
        appended: Result<Vec<Option<crate::journal::Seq>>, JournalError>,
        incoming: Vec<(usize, String)>,
        stats: &crate::session::delivery::SessionStats,
    ) -> Result<(), JournalError> {
        let seqs = appended?;
        if let Some(r) = &self.receipts {
            // Only Items new to the journal: a replay gets no second receipt.
            for (i, id) in incoming {
                if seqs.get(i).is_some_and(Option::is_some) {
                    r.offer(&id);
                }
            }
        }
        self.progress.lock().expect("progress lock").counters = stats.snapshot().into();
        Ok(())
    }

    /// Without the journal nothing can be delivered: the session stops (its cursor stays
    /// at the last committed Item). Returns the reason to record.
    fn journal_failed(&self, e: JournalError, task: &crate::session::SessionTask) -> String {
        tracing::error!(session = %self.name, error = %e, "cannot journal Items; stopping the session");
        task.shutdown();
        e.to_string()
    }

    /// The incoming messages of a batch (index, Id), when receipts are on.
    fn incoming(&self, batch: &[Item]) -> Vec<(usize, String)> {
        if self.receipts.is_none() {
            return Vec::new();
        }
        let own = self
            .progress
            .lock()
            .expect("progress lock")
            .participant_id
            .clone();
        let sent = self.sent.lock().expect("receipts lock");
        batch
            .iter()
            .enumerate()
            .filter(|(_, item)| item.item_type == Some(crate::api::model::ChatItemType::Message))
            .filter(|(_, item)| own.is_none() || item.participant_id != own)
            .filter(|(_, item)| {
                let at = item
                    .absolute_time
                    .as_deref()
                    .and_then(|t| crate::clock::parse_timestamp(t).ok());
                match (self.receipts_after, at) {
                    (Some(after), Some(at)) => at >= after,
                    _ => true,
                }
            })
            .filter_map(|(i, item)| {
                let id = item.id.clone()?;
                (!sent.is_own(&id)).then_some((i, id))
            })
            .collect()
    }

    fn note_items(&self, batch: &[Item]) {
        let mut p = self.progress.lock().expect("progress lock");
        for item in batch {
            if p.contact_id.is_none() {
                p.contact_id = item.contact_id.clone();
            }
            // The connection acknowledgement, and the messages this daemon sent, are
            // this participant's own: they tell its ParticipantId.
            let own_message = item
                .id
                .as_deref()
                .is_some_and(|id| self.sent.lock().expect("receipts lock").is_own(id));
            if p.participant_id.is_none()
                && (own_message
                    || item.content_type.as_deref() == Some(crate::api::model::CONTENT_TYPE_CONNECTION_ACK))
            {
                p.participant_id = item.participant_id.clone();
            }
            if item.absolute_time.is_some() {
                p.last_item_at = item.absolute_time.clone();
            }
        }
    }
}

/// A session error as recorded: the kind and the service's message, never a token.
fn error_text(e: &SessionError) -> String {
    match e {
        SessionError::TokenRejected(_) => format!("token_rejected: {e}"),
        SessionError::Fatal(_) => format!("fatal: {e}"),
        SessionError::Panicked(_) => format!("panic: {e}"),
    }
}

/// Now, in the journal's timestamp form.
pub fn now_text() -> String {
    crate::clock::format_timestamp(OffsetDateTime::now_utc())
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
