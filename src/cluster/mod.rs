//! Several daemon instances sharing the chats through NATS JetStream (`[cluster]`).
//!
//! * the sessions live in a JetStream key-value bucket (`bucket`), one key per session,
//!   the ParticipantToken sealed with the key every instance reads from `key_file`
//!   ([`entry`]);
//! * each instance announces itself with a key in `BUCKET-instances`, refreshed every
//!   third of `instance_ttl` and gone `instance_ttl` after it stops;
//! * every instance computes who should follow each session from the live instances by
//!   rendezvous hashing ([`assign`]) and takes a session only by compare-and-set on its
//!   key's revision, once its owner has let it go or died: never two owners, and never
//!   two instances' sockets for one participant (break before make);
//! * every Item goes to the stream (`stream`, subject from `subject`, `Nats-Msg-Id` = the
//!   Item's Id): a new owner starts after the last Item the stream holds for the session
//!   and backfills the gap from the transcript ([`controller`]).
//!
//! NATS unavailable: sessions keep running on their owner, Items wait in the local
//! journal and are published when NATS is back; takeovers wait.

pub mod assign;
pub mod controller;
pub mod entry;
mod views;

use crate::secret::Secret;
use async_nats::jetstream::kv;
use entry::{ClusterKey, SessionEntry};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

/// The default `[cluster] bucket`.
pub const DEFAULT_BUCKET: &str = "connect-chatd-sessions";
/// The default `[cluster] stream`.
pub const DEFAULT_STREAM: &str = "CONNECT_CHATD";
/// The default `[cluster] instance_ttl`.
pub const DEFAULT_INSTANCE_TTL: Duration = Duration::from_secs(10);

/// `[cluster]`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The NATS server URL(s), comma-separated.
    pub nats: String,
    /// This instance's name (default: the host name).
    pub instance: String,
    /// NATS authentication token (from `token_file`).
    pub token: Option<Secret>,
    /// Seals ParticipantTokens in the bucket (from `key_file`).
    pub key: ClusterKey,
    pub bucket: String,
    pub stream: String,
    /// The stream's subject template (`{contact_id}`, `{session}`).
    pub subject: String,
    /// An instance that has not refreshed its key for this long is gone.
    pub instance_ttl: Duration,
}

impl ClusterConfig {
    /// The bucket of live instances.
    pub fn instances_bucket(&self) -> String {
        format!("{}-instances", self.bucket)
    }
}

/// The host name, made a valid instance name (`[A-Za-z0-9._-]`, at most 64).
pub fn default_instance() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "connect-chatd".into()
    } else {
        name
    }
}

/// The consumer that publishes this instance's Items to the cluster's stream: the
/// NATS consumer (`Nats-Msg-Id` = Item Id, the position moving on the stream's ack),
/// limited to the sessions this instance owns.
pub fn publisher(
    cluster: std::sync::Arc<Cluster>,
    journal: &crate::journal::Journal,
) -> crate::sink::consumer::ConsumerConfig {
    use crate::sink::consumer::{Common, ConsumerConfig, TargetConfig};
    use crate::sink::nats::{NatsAuth, NatsConfig};
    let cfg = &cluster.cfg;
    let target = NatsConfig {
        name: "cluster".into(),
        url: cfg.nats.clone(),
        subject: cfg.subject.clone(),
        stream: cfg.stream.clone(),
        create_stream: true,
        subjects: vec![crate::sink::nats::subjects_of(&cfg.subject)],
        duplicate_window: controller::DUPLICATE_WINDOW,
        memory_storage: false,
        replicas: 1,
        auth: cfg.token.clone().map_or(NatsAuth::None, NatsAuth::Token),
        tls_ca_file: None,
    };
    let dead_letters = journal
        .path()
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("dead-letters")
        .join("nats-cluster.jsonl");
    ConsumerConfig {
        common: Common {
            name: "cluster".into(),
            kind: "nats",
            sessions: None,
            owned_in: Some(cluster.clone()),
            dead_letters,
        },
        target: TargetConfig::Nats(target),
    }
}

/// Keys of the sessions bucket that claim a token rather than hold a session (`=` is
/// not allowed in session names, so the two never meet).
pub const TOKEN_PREFIX: &str = "token=";

fn token_key(fingerprint: &str) -> String {
    format!("{TOKEN_PREFIX}{fingerprint}")
}

/// What [`Cluster::register`] did.
#[derive(Debug)]
pub enum Registered {
    Created,
    /// Another session holds this token.
    Held(Box<SessionEntry>),
    /// The name is another session's.
    NameTaken,
}

/// What the control API asks of the cluster, and what its controller keeps current.
pub struct Cluster {
    pub cfg: ClusterConfig,
    /// Every session of the cluster as the bucket says, with its key's revision.
    cache: Mutex<BTreeMap<String, (SessionEntry, u64)>>,
    /// The bucket, once connected.
    store: RwLock<Option<kv::Store>>,
    /// The bucket of live instances, once connected.
    instances: RwLock<Option<kv::Store>>,
    /// Live instances, as last read.
    live: Mutex<BTreeSet<String>>,
    /// Wakes the controller (a change in the bucket, a session added here).
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("instance", &self.cfg.instance)
            .field("nats", &self.cfg.nats)
            .finish_non_exhaustive()
    }
}

/// Why the cluster refused a request.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("the cluster's NATS server is not reachable yet; try again in a moment")]
    Unavailable,
    #[error("NATS: {0}")]
    Nats(String),
}

impl Cluster {
    pub fn new(cfg: ClusterConfig) -> Cluster {
        Cluster {
            cfg,
            cache: Mutex::new(BTreeMap::new()),
            store: RwLock::new(None),
            instances: RwLock::new(None),
            live: Mutex::new(BTreeSet::new()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// True once the controller has reached NATS (and since).
    pub fn is_connected(&self) -> bool {
        self.store.read().expect("store lock").is_some()
    }

    pub fn instance(&self) -> &str {
        &self.cfg.instance
    }

    /// The sessions bucket of the current connection.
    fn store(&self) -> Result<kv::Store, ClusterError> {
        self.store
            .read()
            .expect("store lock")
            .clone()
            .ok_or(ClusterError::Unavailable)
    }

    /// The buckets of a new connection.
    fn connected(&self, sessions: kv::Store, instances: kv::Store) {
        *self.store.write().expect("store lock") = Some(sessions);
        *self.instances.write().expect("store lock") = Some(instances);
    }

    /// The entry of `name` with its revision, as last seen.
    pub fn entry(&self, name: &str) -> Option<(SessionEntry, u64)> {
        self.cache.lock().expect("cache lock").get(name).cloned()
    }

    /// Every entry, as last seen.
    pub fn entries(&self) -> Vec<(SessionEntry, u64)> {
        self.cache.lock().expect("cache lock").values().cloned().collect()
    }

    /// The entry holding this token, if any.
    pub fn holding(&self, token: &Secret) -> Option<SessionEntry> {
        let fingerprint = self.cfg.key.fingerprint(token);
        self.cache
            .lock()
            .expect("cache lock")
            .values()
            .find(|(e, _)| e.fingerprint == fingerprint)
            .map(|(e, _)| e.clone())
    }

    /// Sessions this instance owns, as the bucket says.
    pub fn owned(&self) -> usize {
        self.cache
            .lock()
            .expect("cache lock")
            .values()
            .filter(|(e, _)| e.owner.as_deref() == Some(self.instance()))
            .count()
    }

    /// A new entry for a session (unassigned).
    pub fn new_entry(&self, new: &crate::daemon::NewSession, name: &str) -> SessionEntry {
        SessionEntry {
            name: name.to_string(),
            token: self.cfg.key.seal(name, &new.participant_token),
            fingerprint: self.cfg.key.fingerprint(&new.participant_token),
            history: match new.history {
                crate::session::History::All => "all",
                crate::session::History::None => "none",
            }
            .into(),
            labels: new.labels.clone(),
            receipts: new.receipts,
            source: match new.source {
                crate::journal::SessionSource::Config => "config",
                crate::journal::SessionSource::Api => "api",
            }
            .into(),
            owner: None,
            state: "connecting".into(),
            contact_id: None,
            participant_id: None,
            last_item_at: None,
            last_error: None,
            disconnect: false,
        }
    }

    /// Registers `entry` unless its name is taken: `Ok(false)` when it was.
    pub async fn create(&self, entry: &SessionEntry) -> Result<bool, ClusterError> {
        let store = self.store()?;
        match store.create(&entry.name, entry.to_bytes()).await {
            Ok(revision) => {
                self.seen(entry.clone(), revision);
                self.wake.notify_one();
                Ok(true)
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(ClusterError::Nats(e.to_string())),
        }
    }

    /// Registers a new session, claiming its token first (a key `token=FINGERPRINT`
    /// naming the session, created only if absent), so that the same token added at
    /// once through two instances gives one session.
    pub async fn register(&self, entry: &SessionEntry) -> Result<Registered, ClusterError> {
        let store = self.store()?;
        let nats = |e: &dyn std::fmt::Display| ClusterError::Nats(e.to_string());
        let index = token_key(&entry.fingerprint);
        let name: axum::body::Bytes = entry.name.clone().into_bytes().into();
        match store.create(&index, name.clone()).await {
            Ok(_) => {}
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let holder = store.get(&index).await.map_err(|e| nats(&e))?;
                let holder = holder.map(|b| String::from_utf8_lossy(&b).into_owned());
                if let Some(holder) = holder {
                    if let Some(held) = self.fetch(&holder).await? {
                        return Ok(Registered::Held(Box::new(held)));
                    }
                }
                // The session that held it is gone: the token is free again.
                store.put(&index, name).await.map_err(|e| nats(&e))?;
            }
            Err(e) => return Err(nats(&e)),
        }
        if self.create(entry).await? {
            Ok(Registered::Created)
        } else {
            let _ = store.delete(&index).await;
            Ok(Registered::NameTaken)
        }
    }

    /// The entry of `name` as the bucket holds it now (and remembered).
    async fn fetch(&self, name: &str) -> Result<Option<SessionEntry>, ClusterError> {
        let found = self
            .store()?
            .entry(name)
            .await
            .map_err(|e| ClusterError::Nats(e.to_string()))?;
        Ok(found
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| Some((SessionEntry::from_bytes(&e.value)?, e.revision)))
            .map(|(entry, revision)| {
                self.seen(entry.clone(), revision);
                entry
            }))
    }

    /// Replaces the entry at `revision` (compare-and-set): the new revision, or `None`
    /// when someone else changed it first.
    pub async fn update(&self, entry: &SessionEntry, revision: u64) -> Result<Option<u64>, ClusterError> {
        let store = self.store()?;
        match store.update(&entry.name, entry.to_bytes(), revision).await {
            Ok(rev) => {
                self.seen(entry.clone(), rev);
                Ok(Some(rev))
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(ClusterError::Nats(e.to_string())),
        }
    }

    /// Deletes a session's entry: its owner stops following it.
    pub async fn delete(&self, entry: &SessionEntry) -> Result<(), ClusterError> {
        let store = self.store()?;
        store
            .delete(&entry.name)
            .await
            .map_err(|e| ClusterError::Nats(e.to_string()))?;
        // The token may be added again (a leftover claim would be taken over anyway).
        let _ = store.delete(token_key(&entry.fingerprint)).await;
        self.cache.lock().expect("cache lock").remove(&entry.name);
        self.wake.notify_one();
        Ok(())
    }

    /// Records what the bucket holds for a key (newer revisions win).
    fn seen(&self, entry: SessionEntry, revision: u64) {
        let mut cache = self.cache.lock().expect("cache lock");
        match cache.get(&entry.name) {
            Some((_, r)) if *r >= revision => {}
            _ => {
                cache.insert(entry.name.clone(), (entry, revision));
            }
        }
    }

    fn forget(&self, name: &str, revision: u64) {
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.get(name).is_some_and(|(_, r)| *r <= revision) {
            cache.remove(name);
        }
    }

    /// True while the bucket names this instance the owner of `session`.
    pub fn owns(&self, session: &str) -> bool {
        self.cache
            .lock()
            .expect("cache lock")
            .get(session)
            .is_some_and(|(e, _)| e.owner.as_deref() == Some(self.instance()))
    }

    pub fn live_instances(&self) -> BTreeSet<String> {
        self.live.lock().expect("live lock").clone()
    }
}
