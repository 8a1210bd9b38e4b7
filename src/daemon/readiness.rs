//! Whether the daemon is ready: systemd's `READY=1` (once the control API listens, the
//! cluster, if any, is reached and every configured session has subscribed) and what
//! `/readyz` answers afterwards (503 while a session has not been live for longer than
//! `http.readyz_grace`, and once shutdown has begun).

use super::{Daemon, Entry};

/// Default of `http.readyz_grace`.
pub const DEFAULT_READYZ_GRACE: std::time::Duration = std::time::Duration::from_secs(120);

/// What `/readyz` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not yet listening, or a configured session has not subscribed yet.
    Starting,
    /// Sessions connecting, subscribing or reconnecting for longer than `grace`.
    NotLive {
        sessions: usize,
        grace: std::time::Duration,
    },
    Stopping,
}

impl Daemon {
    /// True once the control API listens and every configured session has started,
    /// until shutdown begins.
    pub fn is_ready(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.ready.load(Relaxed) && !self.closing.load(Relaxed)
    }

    pub(crate) fn set_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The configuration's sessions (at start and after each reload).
    pub(crate) fn set_configured(&self, names: Vec<String>) {
        *self.configured.lock().expect("configured lock") = names;
    }

    pub fn set_readyz_grace(&self, grace: std::time::Duration) {
        *self.readyz_grace.lock().expect("grace lock") = grace;
    }

    /// Ready in systemd's sense: the control API listens and every configured session
    /// has subscribed at least once (or finished).
    /// Once true it stays true (until shutdown): later trouble is `/readyz`'s
    /// [`Readiness::NotLive`], not a new start.
    pub fn has_started(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.is_ready() {
            return false;
        }
        if self.started.load(Relaxed) {
            return true;
        }
        if self.cluster().is_some_and(|c| !c.is_connected()) {
            return false;
        }
        let names = self.configured.lock().expect("configured lock").clone();
        let sessions = self.sessions.lock().expect("sessions lock");
        let all = names.iter().all(|n| match sessions.get(n) {
            Some(Entry::Running(s)) => !matches!(s.state(), "connecting" | "subscribing"),
            _ => true,
        });
        if all {
            self.started.store(true, Relaxed);
        }
        all
    }

    /// What `/readyz` answers.
    pub fn readiness(&self) -> Readiness {
        if self.closing.load(std::sync::atomic::Ordering::Relaxed) {
            return Readiness::Stopping;
        }
        if !self.has_started() {
            return Readiness::Starting;
        }
        let grace = *self.readyz_grace.lock().expect("grace lock");
        let sessions = self.sessions.lock().expect("sessions lock");
        let stuck = sessions
            .values()
            .filter(|e| matches!(e, Entry::Running(s) if s.not_live_for().is_some_and(|d| d > grace)))
            .count();
        if stuck > 0 {
            Readiness::NotLive {
                sessions: stuck,
                grace,
            }
        } else {
            Readiness::Ready
        }
    }
}
