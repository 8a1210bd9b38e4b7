//! A durable consumer of the journal: it reads every committed Item after its own
//! position, in journal order, hands each to its target (a webhook, a NATS JetStream
//! stream) and moves its position only once the target has accepted the Item — or
//! rejected it for good (then the Item goes to the consumer's dead-letter file). An
//! outage of the target therefore loses nothing: the consumer waits, retrying, and
//! goes on where it stopped, also after a restart of the daemon.
//!
//! One Item is in flight at a time, so Items reach the target in order (per session,
//! and across sessions in journal order). The position is saved every 64 Items and
//! whenever the consumer has caught up: after a crash, at most those Items go again.

use super::feed::{self, Start};
use crate::journal::{Journal, JournalEntry};
use crate::stop::stopped;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;

/// What a target did with an Item.
#[derive(Debug)]
pub enum Outcome {
    /// Accepted: the position moves past it.
    Accepted,
    /// Rejected for good (why): recorded as a dead letter, then the position moves on.
    Rejected(String),
    /// The consumer is stopping; the Item stays unconsumed.
    Stopped,
}

/// Where a consumer's Items go.
pub trait Target: Send {
    /// Delivers one Item, retrying what can be retried until it is accepted, rejected
    /// for good, or `stop` is set.
    fn deliver(
        &mut self,
        item: &Delivery<'_>,
        stop: &mut watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = Outcome> + Send;
}

/// One Item as consumers see it.
#[derive(Debug)]
pub struct Delivery<'a> {
    pub entry: &'a JournalEntry,
    /// The Item's `ContactId`, when it has one.
    pub contact_id: Option<String>,
}

impl Delivery<'_> {
    /// `{"session": NAME, "contact_id": ID, "item": {…}}`, the Item as the service sent it.
    pub fn envelope(&self) -> String {
        let mut out = String::with_capacity(self.entry.json.len() + 96);
        out.push_str("{\"session\":");
        out.push_str(&serde_json::to_string(&self.entry.session).expect("a string serialises"));
        out.push_str(",\"contact_id\":");
        out.push_str(&serde_json::to_string(&self.contact_id).expect("a string serialises"));
        out.push_str(",\"item\":");
        out.push_str(&self.entry.json);
        out.push('}');
        out
    }

    /// The Item's Id (`#SEQ` for an Item without one).
    pub fn item_id(&self) -> String {
        self.entry
            .item_id
            .clone()
            .unwrap_or_else(|| format!("#{}", self.entry.seq))
    }
}

/// A consumer's settings common to every kind.
#[derive(Debug, Clone)]
pub struct Common {
    /// The consumer's name (its position is kept as `KIND:NAME`).
    pub name: String,
    pub kind: &'static str,
    /// Only these sessions' Items (`None`: every session's).
    pub sessions: Option<BTreeSet<String>>,
    /// Only the Items of sessions this instance owns in the cluster (the cluster's
    /// publisher: after a handover the new owner publishes from the stream's last Item).
    pub owned_in: Option<std::sync::Arc<crate::cluster::Cluster>>,
    /// Where rejected Items are written, one JSON line each.
    pub dead_letters: PathBuf,
}

impl Common {
    pub fn position_key(&self) -> String {
        format!("{}:{}", self.kind, self.name)
    }
}

/// Runs a consumer until `stop` is set (or the journal closes).
pub async fn run<T: Target>(
    journal: Journal,
    common: Common,
    mut target: T,
    mut stop: watch::Receiver<bool>,
) {
    let key = common.position_key();
    let position = match journal.position(&key) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(consumer = %key, error = %e, "cannot read the consumer's position; it does not run");
            return;
        }
    };
    tracing::info!(consumer = %key, position = ?position, "consumer started");
    let lag = crate::metrics::global().consumer_position(&key);
    lag.store(position.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    let mut entries = feed::follow(journal.clone(), None, position.map_or(Start::Start, Start::After));
    // Handled Items not yet saved as the position: saved every SAVE_EVERY Items and
    // whenever the consumer has caught up (or stops), not once per Item — a position
    // write is a commit. A crash in between sends those few Items again (at least once).
    let mut handled: Option<crate::journal::Seq> = None;
    let mut unsaved = 0usize;
    loop {
        let entry = tokio::select! {
            e = entries.recv() => e,
            _ = stopped(&mut stop) => None,
        };
        let Some(entry) = entry else {
            save(&journal, &key, handled).await;
            return;
        };
        let wanted = common
            .sessions
            .as_ref()
            .is_none_or(|s| s.contains(&entry.session))
            && common.owned_in.as_ref().is_none_or(|c| c.owns(&entry.session));
        if wanted {
            let delivery = Delivery {
                contact_id: contact_id(&entry.json),
                entry: &entry,
            };
            match target.deliver(&delivery, &mut stop).await {
                Outcome::Accepted => {}
                Outcome::Rejected(why) => dead_letter(&common, &delivery, &why),
                Outcome::Stopped => {
                    save(&journal, &key, handled).await;
                    return;
                }
            }
        }
        handled = Some(entry.seq);
        lag.store(entry.seq, std::sync::atomic::Ordering::Relaxed);
        unsaved += 1;
        if unsaved >= SAVE_EVERY || entries.is_empty() {
            save(&journal, &key, handled.take()).await;
            unsaved = 0;
        }
    }
}

/// Items handled between two saves of a consumer's position, at most.
const SAVE_EVERY: usize = 64;

async fn save(journal: &Journal, key: &str, seq: Option<crate::journal::Seq>) {
    if let Some(seq) = seq {
        if let Err(e) = journal.set_position(key, seq).await {
            tracing::warn!(consumer = %key, error = %e, "cannot save the consumer's position");
        }
    }
}

fn contact_id(json: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "ContactId")]
        contact_id: Option<String>,
    }
    serde_json::from_str::<Probe>(json)
        .ok()
        .and_then(|p| p.contact_id)
}

/// Appends a rejected Item to `<state_dir>/dead-letters/<kind>-<name>.jsonl`.
fn dead_letter(common: &Common, d: &Delivery<'_>, why: &str) {
    use std::io::Write;
    tracing::warn!(consumer = %common.position_key(), session = %d.entry.session, item = %d.item_id(), reason = why, "the target rejected an Item; it goes to the dead-letter file");
    let line = format!(
        "{{\"consumer\":{},\"session\":{},\"seq\":{},\"reason\":{},\"at\":{},\"item\":{}}}\n",
        serde_json::to_string(&common.name).expect("serialises"),
        serde_json::to_string(&d.entry.session).expect("serialises"),
        d.entry.seq,
        serde_json::to_string(why).expect("serialises"),
        serde_json::to_string(&crate::clock::format_timestamp(time::OffsetDateTime::now_utc()))
            .expect("serialises"),
        d.entry.json,
    );
    let write = || -> std::io::Result<()> {
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
        if let Some(parent) = common.dead_letters.parent() {
            dir.create(parent)?;
        }
        let mut f = std::fs::OpenOptions::new();
        f.create(true).append(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut f, 0o600);
        f.open(&common.dead_letters)?.write_all(line.as_bytes())
    };
    if let Err(e) = write() {
        tracing::error!(path = %common.dead_letters.display(), error = %e, "cannot write the dead-letter file");
    }
}

/// Capped, jittered exponential backoff for retrying a target: 250 ms doubling to 30 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_millis(250),
        }
    }
}

impl Backoff {
    pub const MAX: Duration = Duration::from_secs(30);

    /// The next delay (jittered to 50–100 %), or `at_least` when the target asked.
    pub fn delay(&mut self, at_least: Option<Duration>) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        let jittered = base.mul_f64(0.5 + fastrand::f64() / 2.0);
        match at_least {
            Some(d) => d.min(Duration::from_secs(300)).max(jittered),
            None => jittered,
        }
    }
}

/// Sleeps `d` unless `stop` is set first; false if stopping.
pub async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stopped(stop) => false,
    }
}

/// A configured consumer.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub common: Common,
    pub target: TargetConfig,
}

#[derive(Debug, Clone)]
pub enum TargetConfig {
    Webhook(super::webhook::WebhookConfig),
    Nats(super::nats::NatsConfig),
}

/// Starts a consumer in a task of its own; it runs until `stop` is set.
pub fn spawn(
    journal: Journal,
    cfg: ConsumerConfig,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let span = tracing::info_span!("consumer", consumer = %cfg.common.position_key());
    let task = async move {
        match cfg.target {
            TargetConfig::Webhook(w) => match super::webhook::Webhook::new(w) {
                Ok(target) => run(journal, cfg.common, target, stop).await,
                Err(e) => tracing::error!(error = %e, "the webhook consumer cannot start"),
            },
            TargetConfig::Nats(n) => run(journal, cfg.common, super::nats::Nats::new(n), stop).await,
        }
    };
    tokio::spawn(tracing::Instrument::instrument(task, span))
}
