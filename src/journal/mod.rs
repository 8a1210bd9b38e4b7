//! The daemon's journal: one SQLite database, `journal.sqlite3` (WAL mode) under the
//! state directory, holding the sessions registry, every Item of every session in one
//! global order, and each consumer's position. An Item is committed before any consumer
//! sees it, and a session's cursor *is* its last journalled Item, so a SIGKILL can
//! neither lose nor repeat an Item.
//!
//! One writer thread owns the writing connection and commits whatever is waiting, from
//! all sessions, in one transaction (group commit); readers use their own connections.
//!
//! # The schema, as an operator sees it with `sqlite3`
//!
//! Opening the file read-only is always safe (`sqlite3 -readonly journal.sqlite3`); the
//! file holds ParticipantTokens, so it is created 0600 in a 0700 directory.
//!
//! * `schema_version(version)`: the schema's version (1).
//! * `sessions`: one row per chat the daemon holds.
//!   `name` (primary key) the session's name; `participant_token` the token a restart
//!   resumes with (secret); `token_fingerprint` hex SHA-1 of the token (unique: the same
//!   token twice is one session); `source` `config` or `api`; `history` `all` or `none`
//!   (journal the transcript first, or live Items only); `labels` a JSON object of
//!   strings; `contact_id`, `participant_id` as the service reported them; `state` the
//!   supervisor's state; `last_error` why it last failed; `created_at`, `updated_at`,
//!   `ended_at` (RFC 3339 UTC; `ended_at` NULL while the chat lives);
//!   `connection_token` (secret) and `connection_expiry` the current ConnectionToken.
//! * `items`: every journalled Item, in order. `seq` a global sequence over all sessions,
//!   strictly increasing and never reused (AUTOINCREMENT, even after retention deletes
//!   the newest rows); `session` the session's name; `item_id` the Item's `Id` (NULL if
//!   it had none; unique with its session and `absolute_time` otherwise — a replayed Item
//!   is skipped, never
//!   duplicated); `absolute_time` its `AbsoluteTime`; `ephemeral` 1 for typing
//!   indicators, receipts and acks (live only, never a resume point); `json` the Item
//!   exactly as the service sent it; `committed_at` when it was journalled.
//! * `answers`: the answers to control requests that carried an `Idempotency-Key`:
//!   `session`, `key`, `status`, `body` (JSON), `created_at`; kept for the retention
//!   period, at most 100 000.
//! * `consumers`: `name`, `position` (the seq of the last Item it has finished with),
//!   `updated_at`.
//!
//! A session's resume point: `SELECT item_id, absolute_time FROM items WHERE session = ?
//! AND ephemeral = 0 ORDER BY seq DESC LIMIT 1`.
//!
//! # What each fsync mode survives
//!
//! * `always` (`synchronous=FULL`, one transaction per Item): every Item is on disk
//!   before its `append` resolves. A power loss loses nothing committed; of an `append`
//!   in flight, the Items already committed stay.
//! * `batch` (default; `synchronous=FULL`, group commit): a process crash loses nothing
//!   committed; a power loss loses at most the last batch — the few milliseconds of Items
//!   whose commit was under way (their `append` had not resolved, so their sessions
//!   fetch them again from the transcript).
//! * `never` (`synchronous=NORMAL`): a process crash loses nothing committed; a power
//!   loss can lose recent commits (WAL frames not yet checkpointed to disk), though the
//!   database stays consistent.
//!
//! # Feeding consumers
//!
//! [`Journal::subscribe`] broadcasts committed entries in seq order. A consumer
//! subscribes first, reads the database with [`Journal::entries_after`] from its
//! position, then follows the broadcast, skipping seqs it has already seen. A receiver
//! that lags (`RecvError::Lagged`) has lost broadcast entries, not Items: it goes back to
//! `entries_after` from the last seq it handled.
//!
//! Writes are `async` (they resolve once committed); reads are short synchronous
//! queries on a pooled connection (use `spawn_blocking` for large `limit`s).

mod error;
mod ops;
mod reader;
mod registry;
mod schema;
mod settings;
mod writer;

#[cfg(test)]
mod registry_tests;
#[cfg(test)]
mod tests;

pub use error::JournalError;
pub use registry::{fingerprint, History, SessionRecord, SessionSource};
pub use schema::{FILE_NAME, SCHEMA_VERSION};
pub use settings::{Fsync, JournalSettings};
pub use writer::JournalStats;

use crate::api::model::Item;
use crate::clock::format_timestamp;
use crate::secret::Secret;
use crate::session::delivery::Cursor;
use reader::ReadPool;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, oneshot};
use writer::{Command, Counters, NewItem, Op, Writer};

/// A position in the journal: the global sequence number of an Item.
pub type Seq = i64;

/// How many commands may wait for the writer before `append` waits (backpressure).
const COMMAND_CAPACITY: usize = 256;

/// How many entries the broadcast keeps for slow receivers before they lag.
pub const BROADCAST_CAPACITY: usize = 4096;

/// A committed Item, as consumers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub seq: Seq,
    pub session: String,
    pub item_id: Option<String>,
    pub absolute_time: Option<String>,
    /// The Item's JSON, as the service sent it.
    pub json: Arc<str>,
}

/// The identity of one writer of a session's Items (a session's runner): its appends
/// commit in order, and after a failed one the rest are refused. A new chain starts
/// clean, so a session re-added under the same name is not held to an old failure.
#[derive(Debug)]
pub struct AppendChain(u64);

impl AppendChain {
    pub fn new() -> AppendChain {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        AppendChain(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

impl Default for AppendChain {
    fn default() -> Self {
        AppendChain::new()
    }
}

/// An append the writer has taken: resolves to each Item's seq (`None`: already
/// journalled) once committed.
#[derive(Debug)]
pub struct PendingAppend {
    answer: oneshot::Receiver<Result<Vec<Option<Seq>>, JournalError>>,
    path: PathBuf,
}

impl std::future::Future for PendingAppend {
    type Output = Result<Vec<Option<Seq>>, JournalError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.answer).poll(cx).map(|r| {
            r.unwrap_or_else(|_| {
                Err(JournalError::Closed {
                    path: self.path.clone(),
                })
            })
        })
    }
}

/// A handle on the journal: cheap to clone, shared by every task. When the last handle
/// is dropped the writer finishes what it was given and the database is closed; that
/// drop waits for the writer thread (normally one commit, at most the busy timeout).
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    settings: JournalSettings,
    commands: Option<mpsc::Sender<Command>>,
    entries: broadcast::Sender<Arc<JournalEntry>>,
    reads: ReadPool,
    counters: Arc<Counters>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.commands.take();
        if let Some(writer) = self.writer.take() {
            _ = writer.join();
        }
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.inner.path)
            .field("settings", &self.inner.settings)
            .finish()
    }
}

impl Journal {
    /// Opens (creating if needed) `journal.sqlite3` under `state_dir` and starts the
    /// writer thread.
    pub fn open(state_dir: &Path, settings: JournalSettings) -> Result<Journal, JournalError> {
        let path = schema::prepare_files(state_dir)?;
        let conn = schema::open_writer(&path, settings.fsync)?;
        let (entries, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (commands, rx) = mpsc::channel(COMMAND_CAPACITY);
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            counters: counters.clone(),
            conn,
            path: path.clone(),
            fsync: settings.fsync,
            entries: entries.clone(),
            broken_chains: Default::default(),
        };
        let writer = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| JournalError::Spawn {
                path: path.clone(),
                source: Arc::new(e),
            })?;
        let journal = Journal {
            inner: Arc::new(Inner {
                reads: ReadPool::new(path.clone()),
                path,
                settings,
                commands: Some(commands),
                entries,
                counters,
                writer: Some(writer),
            }),
        };
        // Consumers' lag is measured from here before this run's first commit.
        if let Ok(Some(last)) = journal.last_seq() {
            crate::metrics::global().journal_at(last);
        }
        Ok(journal)
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn settings(&self) -> &JournalSettings {
        &self.inner.settings
    }

    /// The writer's counters (commits, Items journalled and skipped).
    pub fn stats(&self) -> JournalStats {
        self.inner.counters.snapshot()
    }

    // ------------------------------------------------------------------ writes

    /// Journals a session's Items, in order, and resolves once they are committed.
    /// Returns each Item's seq, or `None` for an Item whose (session, Id) was already
    /// journalled (skipped). Waits while the writer is behind; never drops.
    pub async fn append(&self, session: &str, items: Vec<Item>) -> Result<Vec<Option<Seq>>, JournalError> {
        self.enqueue_append(None, session, items).await?.await
    }

    /// Hands a session's Items to the writer and returns at once (waiting only while
    /// the writer's queue is full): the [`PendingAppend`] resolves once they are
    /// committed, as [`append`](Self::append) does. Appends of one `chain` (see
    /// [`AppendChain`]) commit in the order they were enqueued, and once one of them
    /// fails every later one is refused ([`JournalError::ChainBroken`]), so a session
    /// can keep several appends in flight and never see a gap in the journal.
    pub async fn enqueue_append(
        &self,
        chain: Option<&AppendChain>,
        session: &str,
        items: Vec<Item>,
    ) -> Result<PendingAppend, JournalError> {
        let (reply, answer) = oneshot::channel();
        if items.is_empty() {
            _ = reply.send(Ok(Vec::new()));
            return Ok(self.pending(answer));
        }
        let items = items
            .iter()
            .map(|item| {
                let json: Arc<str> = match item.wire_json() {
                    Some(text) => Arc::from(text),
                    None => Arc::from(serde_json::to_string(item).map_err(|e| JournalError::Encode {
                        path: self.inner.path.clone(),
                        session: session.to_string(),
                        source: Arc::new(e),
                    })?),
                };
                Ok(NewItem {
                    item_id: item.id.clone(),
                    absolute_time: item.absolute_time.clone(),
                    ephemeral: item.is_ephemeral(),
                    json,
                })
            })
            .collect::<Result<Vec<_>, JournalError>>()?;
        let cmd = Command::Append {
            chain: chain.map(|c| c.0),
            session: session.to_string(),
            items,
            reply,
        };
        self.submit(cmd).await?;
        Ok(self.pending(answer))
    }

    fn pending(&self, answer: oneshot::Receiver<Result<Vec<Option<Seq>>, JournalError>>) -> PendingAppend {
        PendingAppend {
            answer,
            path: self.inner.path.clone(),
        }
    }

    fn closed(&self) -> JournalError {
        JournalError::Closed {
            path: self.inner.path.clone(),
        }
    }

    /// Inserts the session, or replaces the one of the same name (keeping its
    /// `created_at`). Refused ([`JournalError::TokenInUse`]) if its ParticipantToken is
    /// registered under another name.
    pub async fn put_session(&self, record: &SessionRecord) -> Result<(), JournalError> {
        self.op(Op::PutSession(Box::new(record.clone()))).await.map(drop)
    }

    /// Records a session's state and last error; `ended` stamps `ended_at` (the first
    /// time only). `false` if there is no such session.
    pub async fn set_session_state(
        &self,
        name: &str,
        state: &str,
        last_error: Option<&str>,
        ended: bool,
    ) -> Result<bool, JournalError> {
        let op = Op::SetState {
            name: name.to_string(),
            state: state.to_string(),
            last_error: last_error.map(str::to_string),
            ended,
        };
        self.op(op).await.map(|n| n > 0)
    }

    /// Stores a session's current ConnectionToken and its expiry. `false` if there is no
    /// such session.
    pub async fn set_connection(
        &self,
        name: &str,
        token: &Secret,
        expiry: &str,
    ) -> Result<bool, JournalError> {
        let op = Op::SetConnection {
            name: name.to_string(),
            token: token.clone(),
            expiry: expiry.to_string(),
        };
        self.op(op).await.map(|n| n > 0)
    }

    /// Deletes a session's registry row; its Items stay until retention removes them.
    /// `false` if there was no such session.
    pub async fn remove_session(&self, name: &str) -> Result<bool, JournalError> {
        self.op(Op::RemoveSession(name.to_string())).await.map(|n| n > 0)
    }

    /// Records a consumer's position (the seq of the last entry it has finished with).
    pub async fn set_position(&self, name: &str, seq: Seq) -> Result<(), JournalError> {
        let op = Op::SetPosition {
            name: name.to_string(),
            seq,
        };
        self.op(op).await.map(drop)
    }

    /// Remembers the answer to a request carrying an Idempotency-Key, so a retry (also
    /// after a restart) gets it again instead of posting twice. The first answer stays.
    pub async fn remember_answer(
        &self,
        session: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), JournalError> {
        let op = Op::RememberAnswer {
            session: session.to_string(),
            key: key.to_string(),
            status,
            body: body.to_string(),
        };
        self.op(op).await.map(drop)
    }

    /// Retention: deletes the Items and registry rows of sessions that ended more than
    /// `retention` before `now`, and the Items of unregistered sessions whose newest Item
    /// was committed more than `retention` before `now`. Returns the Items deleted.
    pub async fn purge(&self, now: OffsetDateTime) -> Result<usize, JournalError> {
        let cutoff = now - self.inner.settings.retention;
        self.op(Op::Purge {
            cutoff: format_timestamp(cutoff),
        })
        .await
    }

    async fn op(&self, op: Op) -> Result<usize, JournalError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Op { op, reply }, answer).await
    }

    async fn send<T>(
        &self,
        cmd: Command,
        answer: oneshot::Receiver<Result<T, JournalError>>,
    ) -> Result<T, JournalError> {
        self.submit(cmd).await?;
        answer.await.map_err(|_| self.closed())?
    }

    /// Queues a command for the writer (waiting while its queue is full).
    async fn submit(&self, cmd: Command) -> Result<(), JournalError> {
        let commands = self.inner.commands.as_ref().ok_or_else(|| self.closed())?;
        commands.send(cmd).await.map_err(|_| self.closed())
    }

    // ------------------------------------------------------------------ reads

    /// Committed entries from now on, in seq order. A receiver that lags must go back to
    /// [`entries_after`](Self::entries_after) (see the module documentation).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<JournalEntry>> {
        self.inner.entries.subscribe()
    }

    /// Every registered session, by name.
    pub fn sessions(&self) -> Result<Vec<SessionRecord>, JournalError> {
        self.inner.reads.with(|c, p| reader::sessions(c, p, None))
    }

    pub fn session(&self, name: &str) -> Result<Option<SessionRecord>, JournalError> {
        let found = self
            .inner
            .reads
            .with(|c, p| reader::sessions(c, p, Some(("name = ?1", name))))?;
        Ok(found.into_iter().next())
    }

    /// The session holding the ParticipantToken of this [`fingerprint`].
    pub fn session_by_fingerprint(&self, fingerprint: &str) -> Result<Option<SessionRecord>, JournalError> {
        let cond = Some(("token_fingerprint = ?1", fingerprint));
        let found = self.inner.reads.with(|c, p| reader::sessions(c, p, cond))?;
        Ok(found.into_iter().next())
    }

    /// The session's resume point: its last journalled non-ephemeral Item with an Id.
    pub fn cursor(&self, session: &str) -> Result<Option<Cursor>, JournalError> {
        self.inner.reads.with(|c, p| reader::cursor(c, p, session))
    }

    /// Up to `limit` entries after `after` (from the start if `None`), of one session or
    /// of all, in seq order.
    pub fn entries_after(
        &self,
        after: Option<Seq>,
        session: Option<&str>,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        self.inner
            .reads
            .with(|c, p| reader::entries_after(c, p, after, session, limit))
    }

    /// The seq of a session's Item, by its Id (to resume a stream after that Item).
    pub fn seq_of(&self, session: &str, item_id: &str) -> Result<Option<Seq>, JournalError> {
        self.inner
            .reads
            .with(|c, p| reader::seq_of(c, p, session, item_id))
    }

    /// The newest seq in the journal.
    pub fn last_seq(&self) -> Result<Option<Seq>, JournalError> {
        self.inner.reads.with(reader::last_seq)
    }

    /// A consumer's position, if it has one.
    pub fn position(&self, name: &str) -> Result<Option<Seq>, JournalError> {
        self.inner.reads.with(|c, p| reader::position(c, p, name))
    }

    /// The remembered answer to an Idempotency-Key of a session: (status, body).
    pub fn answer(&self, session: &str, key: &str) -> Result<Option<(u16, String)>, JournalError> {
        self.inner.reads.with(|c, p| reader::answer(c, p, session, key))
    }
}
