//! What the cluster ([`crate::cluster`]) asks of the daemon: to follow a session whose
//! ownership it has taken (right after the last Item the shared stream holds), to let
//! one go (socket closed with a close frame, its Items kept), and what it follows.

use super::session::RunningSession;
use super::{Daemon, DaemonError, Entry};
use crate::journal::SessionRecord;
use crate::session::delivery::Cursor;
use crate::session::Resume;
use std::sync::Arc;

impl Daemon {
    /// Follows `rec` from after `cursor` (`None`: as a new session, by its history).
    pub(crate) async fn adopt(&self, rec: SessionRecord, cursor: Option<Cursor>) -> Result<(), DaemonError> {
        if self.closing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(DaemonError::ShuttingDown);
        }
        self.journal.put_session(&rec).await?;
        let resume = cursor.map(|c| Resume {
            cursor: Some(c),
            credentials: None,
        });
        self.launch(&rec, resume);
        Ok(())
    }

    /// Stops following `name` here (socket closed, last Items journalled) and forgets
    /// it locally; the journal keeps its Items. False if it was not here.
    pub(crate) async fn release(&self, name: &str) -> bool {
        let entry = self.sessions.lock().expect("sessions lock").remove(name);
        let Some(entry) = entry else { return false };
        if let Entry::Running(s) = entry {
            s.stop();
            s.finished().await;
        }
        if let Err(e) = self.journal.remove_session(name).await {
            tracing::warn!(session = name, error = %e, "cannot forget a released session locally");
        }
        true
    }

    /// The session `name` if this daemon follows it (running or finished).
    pub(crate) fn local(&self, name: &str) -> Option<Arc<RunningSession>> {
        match self.sessions.lock().expect("sessions lock").get(name) {
            Some(Entry::Running(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// The names of every session this daemon holds.
    pub(crate) fn local_names(&self) -> Vec<String> {
        self.sessions
            .lock()
            .expect("sessions lock")
            .keys()
            .cloned()
            .collect()
    }
}
