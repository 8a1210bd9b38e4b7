//! The control API's sessions in cluster mode: every session of the cluster, each with
//! its `owner` beside the fields of a single daemon's view. A session followed here is
//! shown as this daemon sees it (live counters); one followed elsewhere as its owner
//! last reported it in the bucket (counters are the owner's to show).

use super::entry::SessionEntry;
use super::{Cluster, ClusterError, Registered};
use crate::daemon::{Daemon, DaemonError, NewSession};
use serde_json::{json, Value};

fn remote(e: &SessionEntry) -> Value {
    json!({
        "name": e.name,
        "state": e.state,
        "contact_id": e.contact_id,
        "participant_id": e.participant_id,
        "labels": e.labels,
        "receipts": e.receipts,
        "counters": {"delivered": 0, "backfilled": 0, "duplicates": 0, "reconnects": 0, "renewals": 0},
        "last_item_at": e.last_item_at,
        "last_error": e.last_error,
        "owner": e.owner,
    })
}

impl Cluster {
    /// One session as the control API shows it.
    pub fn view(&self, daemon: &Daemon, e: &SessionEntry) -> Value {
        let local = daemon
            .local(&e.name)
            .filter(|_| e.owner.as_deref() == Some(self.instance()));
        match local {
            Some(s) => {
                let mut v = serde_json::to_value(s.view()).expect("a view serialises");
                v["owner"] = json!(e.owner);
                v
            }
            None => remote(e),
        }
    }

    pub fn list(&self, daemon: &Daemon) -> Vec<Value> {
        self.entries().iter().map(|(e, _)| self.view(daemon, e)).collect()
    }

    pub fn get(&self, daemon: &Daemon, name: &str) -> Option<Value> {
        self.entry(name).map(|(e, _)| self.view(daemon, &e))
    }

    /// Registers a session (`true`), or returns the one holding that token (`false`).
    pub async fn add(&self, daemon: &Daemon, new: NewSession) -> Result<(Value, bool), DaemonError> {
        if let Some(existing) = self.holding(&new.participant_token) {
            return Ok((self.view(daemon, &existing), false));
        }
        let name = match &new.name {
            Some(n) if !crate::daemon::valid_session_name(n) => {
                return Err(DaemonError::Invalid {
                    field: "name",
                    message: format!("{n:?} must be 1-64 characters of A-Z a-z 0-9 . _ -"),
                })
            }
            Some(n) => n.clone(),
            None => format!("session-{:08x}", fastrand::u32(..)),
        };
        let entry = self.new_entry(&new, &name);
        match self.register(&entry).await.map_err(unavailable)? {
            Registered::Created => Ok((remote(&entry), true)),
            Registered::Held(existing) => Ok((self.view(daemon, &existing), false)),
            Registered::NameTaken => Err(DaemonError::NameTaken(name)),
        }
    }

    /// Stops following a session anywhere in the cluster (its entry is deleted; its
    /// owner closes the socket). With `disconnect`, the owner calls
    /// DisconnectParticipant first (here if this instance owns it).
    pub async fn remove(&self, daemon: &Daemon, name: &str, disconnect: bool) -> Result<(), DaemonError> {
        let Some((mut entry, revision)) = self.entry(name) else {
            return Err(DaemonError::NotFound(name.to_string()));
        };
        let owner_here = entry.owner.as_deref() == Some(self.instance()) && daemon.local(name).is_some();
        if disconnect && !owner_here && entry.owner.is_some() && !entry.is_finished() {
            entry.disconnect = true;
            return match self.update(&entry, revision).await.map_err(unavailable)? {
                Some(_) => Ok(()),
                None => Err(DaemonError::Invalid {
                    field: "name",
                    message: "the session changed meanwhile; try again".into(),
                }),
            };
        }
        if owner_here {
            let _ = daemon.remove(name, disconnect).await;
        }
        self.delete(&entry).await.map_err(unavailable)
    }
}

fn unavailable(e: ClusterError) -> DaemonError {
    DaemonError::Cluster(e.to_string())
}
