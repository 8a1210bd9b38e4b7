//! The cluster's controller, one task per instance: it connects to NATS (retrying while
//! it is down), keeps this instance's key alive, mirrors the sessions bucket, and once
//! a second (or on a change) compares who should follow each session with who does:
//!
//! * a session this instance should follow, unowned or owned by an instance that is
//!   gone, is taken by compare-and-set on its revision, then followed from after the
//!   last Item the stream holds for it;
//! * a session it follows but should not (a new instance won it) is let go: socket
//!   closed, its last Items published, then the owner cleared, so the winner can take
//!   it: break before make;
//! * a session whose entry names another owner, or is gone, is stopped at once.
//!
//! On shutdown ([`release_all`]) every owned session is cleared for the others and the
//! instance key deleted, so they take over without waiting for `instance_ttl`.

use super::entry::SessionEntry;
use super::{assign, Cluster, ClusterError};
use crate::daemon::{Daemon, NewSession};
use crate::journal::{History, SessionRecord, SessionSource};
use crate::session::delivery::Cursor;
use async_nats::jetstream::{self, kv, stream};
use futures_util::StreamExt;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the controller compares, at least.
const TICK: Duration = Duration::from_secs(1);
/// The position key of the consumer that publishes to the stream.
pub const PUBLISHER: &str = "nats:cluster";
/// How long a released session waits for its last Items to be published.
const PUBLISH_WAIT: Duration = Duration::from_secs(3);

struct Connected {
    instances: kv::Store,
    stream: stream::Stream,
}

async fn connect(cluster: &Cluster) -> Result<Connected, String> {
    let cfg = &cluster.cfg;
    let opts = match &cfg.token {
        Some(t) => async_nats::ConnectOptions::with_token(t.expose().to_string()),
        None => async_nats::ConnectOptions::new(),
    };
    let client = opts
        .name(format!("connect-chatd cluster {}", cfg.instance))
        .connect(cfg.nats.as_str())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", cfg.nats))?;
    let js = jetstream::new(client);
    let sessions = bucket(&js, &cfg.bucket, Duration::ZERO).await?;
    let instances = bucket(&js, &cfg.instances_bucket(), cfg.instance_ttl).await?;
    let stream = js
        .get_or_create_stream(stream_config(cfg))
        .await
        .map_err(|e| format!("cannot create the stream {:?}: {e}", cfg.stream))?;
    cluster.connected(sessions, instances.clone());
    Ok(Connected { instances, stream })
}

/// The stream every instance publishes to (and the publisher creates alike).
pub fn stream_config(cfg: &super::ClusterConfig) -> stream::Config {
    stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![crate::sink::nats::subjects_of(&cfg.subject)],
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// The stream's duplicate window: a re-publish of an Item within it is dropped.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// Gets or creates a key-value bucket. Its stream is created here, as the client
/// library would (one subject per key, rollups, direct gets, `discard: new`), because
/// the library's own path first asks for account details that nats-server 2.9
/// (Debian's) answers in a shape it does not parse.
async fn bucket(js: &jetstream::Context, name: &str, max_age: Duration) -> Result<kv::Store, String> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    let config = stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    js.get_or_create_stream(config)
        .await
        .map_err(|e| format!("cannot create the bucket {name:?}: {e}"))?;
    js.get_key_value(name)
        .await
        .map_err(|e| format!("cannot open the bucket {name:?}: {e}"))
}

/// Runs until `stop` is set. `configured`: the configuration file's sessions, registered
/// in the bucket (unless their names are there already).
pub async fn run(
    cluster: Arc<Cluster>,
    daemon: Arc<Daemon>,
    configured: Vec<(String, NewSession)>,
    mut stop: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(250);
    loop {
        let connected = tokio::select! {
            c = connect(&cluster) => c,
            _ = crate::stop::stopped(&mut stop) => return,
        };
        let connected = match connected {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "the cluster's NATS is not reachable; sessions keep running, takeovers wait");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = crate::stop::stopped(&mut stop) => return,
                }
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        delay = Duration::from_millis(250);
        tracing::info!(instance = %cluster.instance(), nats = %cluster.cfg.nats, "joined the cluster");
        for (name, new) in &configured {
            if cluster.entry(name).is_some() {
                continue;
            }
            let entry = cluster.new_entry(new, name);
            match cluster.register(&entry).await {
                Ok(super::Registered::Created) => {
                    tracing::info!(session = %name, "registered a configured session")
                }
                Ok(super::Registered::NameTaken) => {}
                Ok(super::Registered::Held(other)) if other.name != *name => tracing::warn!(
                    session = %name,
                    held_by = %other.name,
                    "the token of this configured session is followed as another session; not added twice"
                ),
                Ok(super::Registered::Held(_)) => {}
                Err(e) => tracing::warn!(session = %name, error = %e, "cannot register a configured session"),
            }
        }
        match follow(&cluster, &daemon, &connected, &mut stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "lost the cluster's NATS; sessions keep running, reconnecting")
            }
        }
    }
}

/// The controller's loop while connected; `Ok` when stopping.
async fn follow(
    cluster: &Arc<Cluster>,
    daemon: &Arc<Daemon>,
    c: &Connected,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), ClusterError> {
    let store = cluster.store()?;
    let mut watch = store
        .watch_with_history(">")
        .await
        .map_err(|e| ClusterError::Nats(e.to_string()))?;
    let nats = |e: &dyn std::fmt::Display| ClusterError::Nats(e.to_string());
    let beat_every = cluster.cfg.instance_ttl / 3;
    let mut gone = Gone::new(cluster.cfg.instance_ttl);
    let mut last_beat: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = crate::stop::stopped(stop) => return Ok(()),
            change = watch.next() => match change {
                Some(Ok(e)) => {
                    apply(cluster, e);
                    // Take what else is ready before comparing.
                    continue;
                }
                Some(Err(e)) => return Err(nats(&e)),
                None => return Err(ClusterError::Nats("the bucket's watch ended".into())),
            },
            _ = tick.tick() => {}
            _ = cluster.wake.notified() => {}
        }
        if last_beat.is_none_or(|t| t.elapsed() >= beat_every) {
            c.instances
                .put(&cluster.cfg.instance, crate::daemon::session::now_text().into())
                .await
                .map_err(|e| nats(&e))?;
            last_beat = Some(tokio::time::Instant::now());
        }
        let mut live: BTreeSet<String> = BTreeSet::new();
        let mut keys = c.instances.keys().await.map_err(|e| nats(&e))?;
        while let Some(k) = keys.next().await {
            live.insert(k.map_err(|e| nats(&e))?);
        }
        live.insert(cluster.cfg.instance.clone());
        *cluster.live.lock().expect("live lock") = live.clone();
        gone.observe(
            &live,
            cluster.entries().iter().filter_map(|(e, _)| e.owner.as_deref()),
        );
        reconcile(cluster, daemon, &c.stream, &live, &gone).await?;
    }
}

/// Which owners are gone for good. An instance key missing from the bucket is not
/// enough: right after this instance (re)connects, or after the NATS server restarted
/// and dropped expired keys, a live instance may not have refreshed its key yet. An
/// owner counts as gone once this instance, connected for a whole `instance_ttl`, has
/// seen its key missing for half of one more: a live instance refreshes every third.
struct Gone {
    ttl: Duration,
    connected_at: tokio::time::Instant,
    missing_since: std::collections::BTreeMap<String, tokio::time::Instant>,
}

impl Gone {
    fn new(ttl: Duration) -> Gone {
        Gone {
            ttl,
            connected_at: tokio::time::Instant::now(),
            missing_since: Default::default(),
        }
    }

    fn observe<'a>(&mut self, live: &BTreeSet<String>, owners: impl Iterator<Item = &'a str>) {
        let now = tokio::time::Instant::now();
        let missing: BTreeSet<&str> = owners.filter(|o| !live.contains(*o)).collect();
        self.missing_since.retain(|o, _| missing.contains(o.as_str()));
        for o in missing {
            self.missing_since.entry(o.to_string()).or_insert(now);
        }
    }

    fn is_gone(&self, owner: &str) -> bool {
        self.connected_at.elapsed() >= self.ttl
            && self
                .missing_since
                .get(owner)
                .is_some_and(|t| t.elapsed() >= self.ttl / 2)
    }
}

fn apply(cluster: &Cluster, e: kv::Entry) {
    if e.key.starts_with(super::TOKEN_PREFIX) {
        return;
    }
    match e.operation {
        kv::Operation::Put => match SessionEntry::from_bytes(&e.value) {
            Some(entry) => cluster.seen(entry, e.revision),
            None => tracing::warn!(key = %e.key, "an entry in the sessions bucket does not parse; ignored"),
        },
        kv::Operation::Delete | kv::Operation::Purge => cluster.forget(&e.key, e.revision),
    }
}

/// One comparison of who should follow each session with who does.
async fn reconcile(
    cluster: &Cluster,
    daemon: &Arc<Daemon>,
    stream: &stream::Stream,
    live: &BTreeSet<String>,
    gone: &Gone,
) -> Result<(), ClusterError> {
    let me = cluster.cfg.instance.clone();
    let metrics = crate::metrics::global();
    // Followed here but gone from the bucket: stop.
    for name in daemon.local_names() {
        if cluster.entry(&name).is_none() && daemon.local(&name).is_some() {
            tracing::info!(session = %name, "the session left the cluster; stopping it");
            daemon.release(&name).await;
        }
    }
    // Sessions won by another instance: all their sockets close first, then their last
    // Items are published once for all, then the owner is cleared for each.
    let mut handing_over = Vec::new();
    for (entry, revision) in cluster.entries() {
        let name = entry.name.clone();
        let local = daemon.local(&name);
        let should = assign::owner(live.iter().map(String::as_str), &name) == Some(me.as_str());
        match local {
            Some(s) if entry.owner.as_deref() != Some(me.as_str()) => {
                if !s.is_finished() {
                    metrics.cluster_conflicts.inc();
                    tracing::warn!(session = %name, owner = ?entry.owner, "another instance owns this session; stopping it here");
                }
                daemon.release(&name).await;
            }
            Some(s) if entry.disconnect => {
                let _ = daemon.remove(&name, true).await;
                drop(s);
                if let Err(e) = cluster.delete(&entry).await {
                    tracing::warn!(session = %name, error = %e, "cannot delete a disconnected session");
                }
            }
            Some(s) if !should && !s.is_finished() => {
                tracing::info!(session = %name, "handing the session over to the instance that won it");
                s.stop();
                handing_over.push(name);
            }
            Some(s) => report(cluster, &entry, revision, &s.view()).await?,
            None if entry.is_finished() => {}
            None if entry.owner.as_deref() == Some(me.as_str()) && !should => {
                // Ours (from before a restart) but won by another: let it go.
                clear_owner(cluster, &name).await?;
            }
            None => {
                let free = match entry.owner.as_deref() {
                    None => true,
                    Some(o) => o == me || gone.is_gone(o),
                };
                if should && free {
                    take(cluster, daemon, stream, entry, revision).await?;
                }
            }
        }
    }
    if !handing_over.is_empty() {
        for name in &handing_over {
            daemon.release(name).await;
        }
        published().await;
        for name in &handing_over {
            clear_owner(cluster, name).await?;
        }
    }
    Ok(())
}

/// Takes a session by compare-and-set, then follows it.
async fn take(
    cluster: &Cluster,
    daemon: &Arc<Daemon>,
    stream: &stream::Stream,
    entry: SessionEntry,
    revision: u64,
) -> Result<(), ClusterError> {
    let me = cluster.cfg.instance.clone();
    let previous = entry.owner.clone();
    let token = match cluster.cfg.key.open(&entry.name, &entry.token) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(session = %entry.name, error = %e, "cannot take the session");
            return Ok(());
        }
    };
    let mut mine = entry.clone();
    mine.owner = Some(me.clone());
    mine.state = "connecting".into();
    if cluster.update(&mine, revision).await?.is_none() {
        crate::metrics::global().cluster_conflicts.inc();
        tracing::debug!(session = %entry.name, "another instance changed the session first");
        return Ok(());
    }
    if previous.as_deref().is_some_and(|p| p != me) {
        crate::metrics::global().cluster_takeovers.inc();
        tracing::info!(session = %entry.name, from = ?previous, "took over the session of an instance that is gone");
    }
    let cursor = last_published(cluster, stream, &entry).await;
    let mut rec = SessionRecord::new(
        entry.name.clone(),
        token,
        if entry.source == "config" {
            SessionSource::Config
        } else {
            SessionSource::Api
        },
        if entry.history == "none" {
            History::None
        } else {
            History::All
        },
    );
    rec.labels = entry.labels.clone();
    rec.receipts = entry.receipts;
    rec.contact_id = entry.contact_id.clone();
    rec.participant_id = entry.participant_id.clone();
    rec.state = "connecting".into();
    tracing::info!(session = %entry.name, after = ?cursor.as_ref().map(|c| &c.id), "following the session");
    if let Err(e) = daemon.adopt(rec, cursor).await {
        tracing::warn!(session = %entry.name, error = %e, "cannot follow the session here");
        clear_owner(cluster, &entry.name).await?;
    }
    Ok(())
}

/// The last Item the stream holds for `entry`'s session.
async fn last_published(cluster: &Cluster, stream: &stream::Stream, entry: &SessionEntry) -> Option<Cursor> {
    let template = &cluster.cfg.subject;
    let mut subjects = vec![crate::sink::nats::subject(
        template,
        &entry.name,
        entry.contact_id.as_deref(),
    )];
    if entry.contact_id.is_none() && template.contains("{contact_id}") {
        subjects.push(crate::sink::nats::subject(template, &entry.name, None).replace(".unknown.", ".*."));
    }
    for subject in subjects {
        let Ok(msg) = stream.get_last_raw_message_by_subject(&subject).await else {
            continue;
        };
        #[derive(serde::Deserialize)]
        struct Envelope {
            item: ItemPosition,
        }
        #[derive(serde::Deserialize)]
        struct ItemPosition {
            #[serde(rename = "Id")]
            id: Option<String>,
            #[serde(rename = "AbsoluteTime")]
            absolute_time: Option<String>,
        }
        if let Ok(Envelope { item }) = serde_json::from_slice::<Envelope>(&msg.payload) {
            if let Some(id) = item.id {
                return Some(Cursor {
                    id,
                    absolute_time: item.absolute_time,
                });
            }
        }
    }
    None
}

/// Writes what the owner sees of a session into its entry, when it changed.
async fn report(
    cluster: &Cluster,
    entry: &SessionEntry,
    revision: u64,
    view: &crate::daemon::session::SessionView,
) -> Result<(), ClusterError> {
    let changed = entry.state != view.state
        || entry.contact_id != view.contact_id
        || entry.participant_id != view.participant_id
        || entry.last_error != view.last_error;
    if !changed {
        return Ok(());
    }
    let mut next = entry.clone();
    next.state = view.state.to_string();
    next.contact_id = view.contact_id.clone();
    next.participant_id = view.participant_id.clone();
    next.last_error = view.last_error.clone();
    next.last_item_at = view.last_item_at.clone();
    // A conflict means the entry moved on (a delete, a disconnect): the next tick sees it.
    cluster.update(&next, revision).await.map(|_| ())
}

/// Clears this instance's ownership of `name`, so the instance that won it takes it.
async fn clear_owner(cluster: &Cluster, name: &str) -> Result<(), ClusterError> {
    for _ in 0..5 {
        let store = cluster.store()?;
        let Some(current) = store
            .entry(name)
            .await
            .map_err(|e| ClusterError::Nats(e.to_string()))?
        else {
            return Ok(());
        };
        if current.operation != kv::Operation::Put {
            return Ok(());
        }
        let Some(mut entry) = SessionEntry::from_bytes(&current.value) else {
            return Ok(());
        };
        if entry.owner.as_deref() != Some(cluster.instance()) {
            return Ok(());
        }
        entry.owner = None;
        if !entry.is_finished() {
            entry.state = "connecting".into();
        }
        if cluster.update(&entry, current.revision).await?.is_some() {
            return Ok(());
        }
    }
    Err(ClusterError::Nats(format!(
        "cannot release {name:?}: it keeps changing"
    )))
}

/// Waits (a little) until what the journal holds is published to the stream.
async fn published() {
    let metrics = crate::metrics::global();
    let position = metrics.consumer_position(PUBLISHER);
    let until = tokio::time::Instant::now() + PUBLISH_WAIT;
    while position.load(std::sync::atomic::Ordering::Relaxed) < metrics.journal_head()
        && tokio::time::Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// On shutdown, after the sessions have stopped: waits for their last Items to be
/// published, clears this instance's ownership of each, and deletes its instance key,
/// so the others take over at once.
pub async fn release_all(cluster: &Cluster) {
    published().await;
    let me = cluster.instance().to_string();
    for (entry, _) in cluster.entries() {
        if entry.owner.as_deref() == Some(me.as_str()) && !entry.is_finished() {
            if let Err(e) = clear_owner(cluster, &entry.name).await {
                tracing::warn!(session = %entry.name, error = %e, "cannot hand the session over");
            }
        }
    }
    let instances = cluster.instances.read().expect("store lock").clone();
    if let Some(instances) = instances {
        let _ = instances.delete(&me).await;
    }
    tracing::info!(instance = %me, "left the cluster");
}
