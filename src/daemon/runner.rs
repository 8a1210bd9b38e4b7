//! A daemon session's runner: the task between the supervisor and the journal. It
//! appends the supervisor's Items in groups (up to a few appends committing at once),
//! records state, counters, credentials and the outcome in the session's progress and
//! the registry, and hands incoming messages to the receipts task once committed.

use super::receipts::{Receipts, Sent};
use super::session::*;
use crate::api::model::Item;
use crate::journal::{AppendChain, Journal, JournalError, PendingAppend};
use crate::session::{SessionError, SessionOutcome};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// Appends of one session that may be committing at once.
const APPENDS_IN_FLIGHT: usize = 4;

/// An append handed to the writer, with the incoming messages that get receipts once
/// it commits.
struct InFlight {
    pending: PendingAppend,
    incoming: Vec<(usize, String)>,
}

pub(super) struct Runner {
    pub(super) name: String,
    pub(super) journal: Journal,
    pub(super) progress: Arc<Mutex<Progress>>,
    pub(super) receipts: Option<Receipts>,
    pub(super) receipts_after: Option<OffsetDateTime>,
    pub(super) sent: Arc<Mutex<Sent>>,
}

impl Runner {
    // Not an `async fn`, which would hold its arguments twice (as arguments and as the
    // locals they move into) in every idle session's task.
    pub(super) fn run(
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

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
