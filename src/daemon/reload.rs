//! Applying a re-read configuration (SIGHUP) to a running daemon: sessions new to the
//! file start, sessions gone from it stop (their Items stay for the retention period),
//! sessions whose token, history, labels or receipts changed restart with the new
//! values, and the rest keep their sockets. Reading the file and the log level are the
//! binary's part (`cli::run`); a file that does not load never gets here.

use super::run::ConfiguredSession;
use super::{Daemon, DaemonError, NewSession};
use crate::journal::{self, SessionSource};

/// A configuration re-read on SIGHUP: what the daemon applies of it.
#[derive(Debug)]
pub struct Reload {
    pub sessions: Vec<ConfiguredSession>,
}

/// What a reload did, for the log and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: usize,
}

/// True when `a` and `b` would run the same session.
fn same(a: &ConfiguredSession, b: &ConfiguredSession) -> bool {
    journal::fingerprint(&a.participant_token) == journal::fingerprint(&b.participant_token)
        && a.history == b.history
        && a.labels == b.labels
        && a.receipts == b.receipts
}

fn new_session(s: &ConfiguredSession) -> NewSession {
    NewSession {
        participant_token: s.participant_token.clone(),
        name: Some(s.name.clone()),
        history: s.history,
        labels: s.labels.clone(),
        receipts: s.receipts,
        source: SessionSource::Config,
    }
}

/// Moves the daemon from the `current` configured sessions to `next`; `current`
/// becomes what now runs. A session that cannot start is logged and left out.
pub async fn apply(
    daemon: &Daemon,
    current: &mut Vec<ConfiguredSession>,
    next: Vec<ConfiguredSession>,
) -> Applied {
    let mut applied = Applied::default();
    for old in current.iter() {
        let kept = next.iter().find(|n| n.name == old.name);
        match kept {
            Some(n) if same(old, n) => applied.unchanged += 1,
            Some(_) => applied.restarted.push(old.name.clone()),
            None => applied.stopped.push(old.name.clone()),
        }
    }
    for name in applied.stopped.iter().chain(&applied.restarted) {
        match daemon.remove(name, false).await {
            Ok(()) | Err(DaemonError::NotFound(_)) => {}
            Err(e) => tracing::warn!(session = %name, error = %e, "reload: cannot stop the session"),
        }
    }
    for n in &next {
        let known = current.iter().any(|c| c.name == n.name);
        if known && !applied.restarted.contains(&n.name) {
            continue;
        }
        match daemon.add(new_session(n)).await {
            Ok((_, true)) => {
                if !known {
                    applied.started.push(n.name.clone());
                }
            }
            Ok((view, false)) => tracing::warn!(
                session = %n.name,
                held_by = %view.name,
                "reload: this token is already followed by another session"
            ),
            Err(e) => tracing::warn!(session = %n.name, error = %e, "reload: cannot start the session"),
        }
    }
    *current = next;
    tracing::info!(
        started = ?applied.started,
        stopped = ?applied.stopped,
        restarted = ?applied.restarted,
        unchanged = applied.unchanged,
        "configuration reloaded"
    );
    applied
}
