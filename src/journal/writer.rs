//! The journal's one writer: a thread that owns the writing connection, takes commands
//! from a bounded channel, and commits them — every command waiting in the channel, from
//! all sessions, in one transaction (group commit), or each Item on its own with
//! [`Fsync::Always`]. Each command runs in a savepoint, so one that fails is rolled back
//! and reported alone while the rest of its group commits. After a commit the new
//! entries go out on the broadcast channel, in seq order, and then the callers hear back.

use super::error::{Context, JournalError};
use super::ops::run_op;
use super::registry::SessionRecord;
use super::{Fsync, JournalEntry, Seq};
use crate::clock::format_timestamp;
use crate::secret::Secret;
use rusqlite::{params, Connection};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, oneshot};

/// A group commit stops taking commands once it holds this many Items (a single
/// command is never split, however large).
pub(crate) const MAX_BATCH_ITEMS: usize = 512;

/// An Item ready to be journalled (its JSON already encoded by the caller's task).
pub(crate) struct NewItem {
    pub item_id: Option<String>,
    pub absolute_time: Option<String>,
    pub ephemeral: bool,
    pub json: Arc<str>,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, JournalError>>;

pub(crate) enum Command {
    Append {
        /// The [`AppendChain`](super::AppendChain) it belongs to, if any.
        chain: Option<u64>,
        session: String,
        items: Vec<NewItem>,
        reply: Reply<Vec<Option<Seq>>>,
    },
    Op {
        op: Op,
        reply: Reply<usize>,
    },
}

/// A write other than an append; its result is a count of rows (changed or deleted).
pub(crate) enum Op {
    PutSession(Box<SessionRecord>),
    SetState {
        name: String,
        state: String,
        last_error: Option<String>,
        ended: bool,
    },
    SetConnection {
        name: String,
        token: Secret,
        expiry: String,
    },
    RemoveSession(String),
    SetPosition {
        name: String,
        seq: Seq,
    },
    /// Remembers the answer to a request with an Idempotency-Key.
    RememberAnswer {
        session: String,
        key: String,
        status: u16,
        body: String,
    },
    /// Deletes what retention allows, for a cutoff time in RFC 3339.
    Purge {
        cutoff: String,
    },
}

/// The writer's counters, shared with [`Journal::stats`](super::Journal::stats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    commits: AtomicU64,
    appended: AtomicU64,
    skipped: AtomicU64,
}

/// What the writer has done since the journal was opened (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Transactions committed.
    pub commits: u64,
    /// Items journalled.
    pub appended: u64,
    /// Items skipped as already journalled.
    pub skipped: u64,
}

impl Counters {
    pub fn snapshot(&self) -> JournalStats {
        JournalStats {
            commits: self.commits.load(Ordering::Relaxed),
            appended: self.appended.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }

    /// A transaction begun at `started` committed: `appended` Items, the last at `last`.
    fn committed(&self, started: std::time::Instant, appended: usize, skipped: usize, last: Option<Seq>) {
        crate::metrics::global().journal_committed(started.elapsed(), appended, last);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.appended.fetch_add(appended as u64, Ordering::Relaxed);
        self.skipped.fetch_add(skipped as u64, Ordering::Relaxed);
    }
}

impl Command {
    fn weight(&self) -> usize {
        match self {
            Command::Append { items, .. } => items.len().max(1),
            Command::Op { .. } => 1,
        }
    }
}

pub(crate) struct Writer {
    pub conn: Connection,
    pub path: PathBuf,
    pub fsync: Fsync,
    pub entries: broadcast::Sender<Arc<JournalEntry>>,
    pub counters: Arc<Counters>,
    /// Chains with a failed append: their later appends are refused (few: one per
    /// failure, so it never needs pruning).
    pub broken_chains: std::collections::HashSet<u64>,
}

/// A command's result, held until its transaction commits.
enum Done {
    Append(Reply<Vec<Option<Seq>>>, Result<Vec<Option<Seq>>, JournalError>),
    Op(Reply<usize>, Result<usize, JournalError>),
}

impl Writer {
    /// Runs until every sender is gone and the channel is drained.
    pub fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(first) = rx.blocking_recv() {
            let mut weight = first.weight();
            let mut batch = vec![first];
            while weight < MAX_BATCH_ITEMS {
                match rx.try_recv() {
                    Ok(cmd) => {
                        weight += cmd.weight();
                        batch.push(cmd);
                    }
                    Err(_) => break,
                }
            }
            match self.fsync {
                Fsync::Always => batch.into_iter().for_each(|cmd| self.commit_alone(cmd)),
                Fsync::Batch | Fsync::Never => self.commit_group(batch),
            }
        }
        tracing::debug!(path = %self.path.display(), "journal writer stopped");
    }

    /// One transaction for the whole batch, a savepoint per command.
    fn commit_group(&mut self, batch: Vec<Command>) {
        let started = std::time::Instant::now();
        let now = format_timestamp(OffsetDateTime::now_utc());
        let mut done = Vec::with_capacity(batch.len());
        let mut published = Vec::new();
        let path = self.path.clone();
        // If the group as a whole fails, every chain in it is broken.
        let chains: Vec<u64> = batch.iter().filter_map(Command::chain).collect();
        let mut broken = Vec::new();
        let mut tx = match self
            .conn
            .transaction()
            .ctx(&path, || "begin a group commit".into())
        {
            Ok(tx) => tx,
            Err(e) => {
                self.broken_chains.extend(chains);
                return fail_all(batch, e);
            }
        };
        for cmd in batch {
            let chain = cmd.chain();
            let mut sp = match tx.savepoint().ctx(&path, || "begin a savepoint".into()) {
                Ok(sp) => sp,
                Err(e) => {
                    broken.extend(chain);
                    done.push(fail(cmd, e));
                    continue;
                }
            };
            let mut entries = Vec::new();
            let outcome = match cmd {
                Command::Append {
                    chain,
                    session,
                    items,
                    reply,
                } => {
                    let r = match refuse(&self.broken_chains, &broken, chain, &path, &session) {
                        Some(e) => Err(e),
                        None => items
                            .into_iter()
                            .map(|item| insert(&sp, &path, &session, item, &now, &mut entries))
                            .collect::<Result<Vec<_>, _>>(),
                    };
                    Done::Append(reply, r)
                }
                Command::Op { op, reply } => Done::Op(reply, run_op(&sp, &path, op, &now)),
            };
            let ok = match &outcome {
                Done::Append(_, r) => r.is_ok(),
                Done::Op(_, r) => r.is_ok(),
            };
            let finished = if ok {
                sp.commit().ctx(&path, || "release a savepoint".into())
            } else {
                sp.rollback().ctx(&path, || "roll back a savepoint".into())
            };
            if !ok || finished.is_err() {
                broken.extend(chain);
            }
            match (finished, outcome) {
                (Ok(()), outcome) => {
                    if ok {
                        published.append(&mut entries);
                    }
                    done.push(outcome);
                }
                (Err(e), Done::Append(reply, _)) => done.push(Done::Append(reply, Err(e))),
                (Err(e), Done::Op(reply, _)) => done.push(Done::Op(reply, Err(e))),
            }
        }
        let committed = tx.commit().ctx(&path, || "commit".into());
        self.broken_chains.extend(broken);
        match committed {
            Ok(()) => {
                let skipped = done.iter().map(Done::skipped).sum();
                let last = published.last().map(|e| e.seq);
                self.counters.committed(started, published.len(), skipped, last);
                self.publish(published);
                done.into_iter().for_each(Done::send);
            }
            Err(e) => {
                tracing::error!(error = %e, "journal group commit failed");
                self.broken_chains.extend(chains);
                for d in done {
                    match d {
                        Done::Append(reply, _) => _ = reply.send(Err(e.clone())),
                        Done::Op(reply, _) => _ = reply.send(Err(e.clone())),
                    }
                }
            }
        }
    }

    /// [`Fsync::Always`]: a transaction (and so an fsync) per Item and per operation.
    fn commit_alone(&mut self, cmd: Command) {
        let now = format_timestamp(OffsetDateTime::now_utc());
        let path = self.path.clone();
        match cmd {
            Command::Append {
                chain,
                session,
                items,
                reply,
            } => {
                if let Some(e) = refuse(&self.broken_chains, &[], chain, &path, &session) {
                    _ = reply.send(Err(e));
                    return;
                }
                let mut seqs = Vec::with_capacity(items.len());
                for item in items {
                    let started = std::time::Instant::now();
                    let mut entries = Vec::new();
                    let r = self
                        .conn
                        .transaction()
                        .ctx(&path, || "begin".into())
                        .and_then(|tx| {
                            let seq = insert(&tx, &path, &session, item, &now, &mut entries)?;
                            tx.commit().ctx(&path, || "commit".into())?;
                            Ok(seq)
                        });
                    match r {
                        Ok(seq) => {
                            let last = entries.last().map(|e| e.seq);
                            self.counters
                                .committed(started, entries.len(), usize::from(seq.is_none()), last);
                            self.publish(entries);
                            seqs.push(seq);
                        }
                        Err(e) => {
                            self.broken_chains.extend(chain);
                            _ = reply.send(Err(e));
                            return;
                        }
                    }
                }
                _ = reply.send(Ok(seqs));
            }
            Command::Op { op, reply } => {
                let started = std::time::Instant::now();
                let r = self
                    .conn
                    .transaction()
                    .ctx(&path, || "begin".into())
                    .and_then(|tx| {
                        let n = run_op(&tx, &path, op, &now)?;
                        tx.commit().ctx(&path, || "commit".into())?;
                        Ok(n)
                    });
                if r.is_ok() {
                    self.counters.committed(started, 0, 0, None);
                }
                _ = reply.send(r);
            }
        }
    }

    fn publish(&self, entries: Vec<JournalEntry>) {
        for entry in entries {
            // An error only means nobody is subscribed.
            _ = self.entries.send(Arc::new(entry));
        }
    }
}

impl Done {
    fn skipped(&self) -> usize {
        match self {
            Done::Append(_, Ok(seqs)) => seqs.iter().filter(|s| s.is_none()).count(),
            _ => 0,
        }
    }

    fn send(self) {
        match self {
            Done::Append(reply, r) => _ = reply.send(r),
            Done::Op(reply, r) => _ = reply.send(r),
        }
    }
}

impl Command {
    fn chain(&self) -> Option<u64> {
        match self {
            Command::Append { chain, .. } => *chain,
            Command::Op { .. } => None,
        }
    }
}

/// The error for an append of a chain that has already failed (before, or earlier in
/// this group: `broken_now`).
fn refuse(
    broken: &std::collections::HashSet<u64>,
    broken_now: &[u64],
    chain: Option<u64>,
    path: &std::path::Path,
    session: &str,
) -> Option<JournalError> {
    chain
        .filter(|c| broken.contains(c) || broken_now.contains(c))
        .map(|_| JournalError::ChainBroken {
            path: path.to_path_buf(),
            session: session.to_string(),
        })
}

fn fail(cmd: Command, e: JournalError) -> Done {
    match cmd {
        Command::Append { reply, .. } => Done::Append(reply, Err(e)),
        Command::Op { reply, .. } => Done::Op(reply, Err(e)),
    }
}

fn fail_all(batch: Vec<Command>, e: JournalError) {
    tracing::error!(error = %e, "journal group commit failed");
    batch.into_iter().for_each(|cmd| fail(cmd, e.clone()).send());
}

/// Journals one Item unless its (session, Id) already is: `Some(seq)`, or `None` if
/// skipped. A journalled Item is added to `entries`, for publishing after the commit.
fn insert(
    conn: &Connection,
    path: &std::path::Path,
    session: &str,
    item: NewItem,
    now: &str,
    entries: &mut Vec<JournalEntry>,
) -> Result<Option<Seq>, JournalError> {
    let what = || format!("append an Item to session {session:?}");
    let mut stmt = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO items (session, item_id, absolute_time, ephemeral, json, committed_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .ctx(path, what)?;
    let changed = stmt
        .execute(params![
            session,
            item.item_id,
            item.absolute_time,
            item.ephemeral,
            &*item.json,
            now
        ])
        .ctx(path, what)?;
    if changed == 0 {
        return Ok(None);
    }
    let seq = conn.last_insert_rowid();
    entries.push(JournalEntry {
        seq,
        session: session.to_string(),
        item_id: item.item_id,
        absolute_time: item.absolute_time,
        json: item.json,
    });
    Ok(Some(seq))
}
