//! Creating and opening the journal's database: the state directory (0700) and the file
//! (0600, which SQLite's `-wal` and `-shm` files inherit), the pragmas (WAL,
//! `synchronous`, `busy_timeout`) and the schema, versioned in `schema_version`.

use super::error::{Context, JournalError};
use super::Fsync;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::fs::{DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The database's file name under the state directory.
pub const FILE_NAME: &str = "journal.sqlite3";

/// The schema version this program writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

/// How long a connection waits for a lock held by another before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    name              TEXT PRIMARY KEY,
    participant_token TEXT NOT NULL,
    token_fingerprint TEXT NOT NULL UNIQUE,
    source            TEXT NOT NULL,
    history           TEXT NOT NULL,
    labels            TEXT NOT NULL DEFAULT '{}',
    contact_id        TEXT,
    participant_id    TEXT,
    state             TEXT NOT NULL,
    last_error        TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    ended_at          TEXT,
    connection_token  TEXT,
    connection_expiry TEXT,
    receipts          INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS items (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    session       TEXT NOT NULL,
    item_id       TEXT,
    absolute_time TEXT,
    ephemeral     INTEGER NOT NULL,
    json          TEXT NOT NULL,
    committed_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_session_seq ON items (session, seq);
DROP INDEX IF EXISTS items_session_item_id;
CREATE UNIQUE INDEX IF NOT EXISTS items_session_time_id ON items (session, absolute_time, item_id)
    WHERE item_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS answers (
    session    TEXT NOT NULL,
    key        TEXT NOT NULL,
    status     INTEGER NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (session, key)
);
CREATE TABLE IF NOT EXISTS consumers (
    name       TEXT PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
";

/// Creates the state directory (mode 0700, only if missing) and the database file (mode
/// 0600, only if missing). Existing ones are left as they are; a database file readable
/// by others is reported once in the log.
pub fn prepare_files(state_dir: &Path) -> Result<std::path::PathBuf, JournalError> {
    if !state_dir.is_dir() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|e| JournalError::CreateDir {
                path: state_dir.to_path_buf(),
                source: Arc::new(e),
            })?;
    }
    let path = state_dir.join(FILE_NAME);
    // An empty file is a valid empty database; SQLite gives `-wal` and `-shm` the
    // permissions of the database file, so they are 0600 too.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            if let Ok(meta) = std::fs::metadata(&path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        path = %path.display(),
                        mode = format!("{mode:o}"),
                        "the journal holds ParticipantTokens and is accessible to other users; \
                         consider chmod 600"
                    );
                }
            }
        }
        Err(e) => {
            return Err(JournalError::CreateFile {
                path,
                source: Arc::new(e),
            })
        }
    }
    Ok(path)
}

/// Opens the writing connection: pragmas, then the schema (created or checked).
pub fn open_writer(path: &Path, fsync: Fsync) -> Result<Connection, JournalError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).ctx(path, || "open".into())?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx(path, || "set busy_timeout".into())?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .ctx(path, || "set journal_mode=WAL".into())?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(JournalError::sqlite(
            path,
            format!("set journal_mode=WAL (the database stayed in {mode})"),
            rusqlite::Error::InvalidQuery,
        ));
    }
    let synchronous = match fsync {
        Fsync::Always | Fsync::Batch => "FULL",
        Fsync::Never => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", synchronous)
        .ctx(path, || format!("set synchronous={synchronous}"))?;
    // Savepoint journals stay in memory (they spilled to a temp file once per commit).
    // Inserts land at the right edge of the table and of its time-ordered index, so a
    // modest page cache holds all they touch (8 MiB at most, used as needed: it held a
    // kilobyte per idle session of registry pages when it was 64 MiB).
    conn.pragma_update(None, "temp_store", "MEMORY")
        .ctx(path, || "set temp_store=MEMORY".into())?;
    conn.pragma_update(None, "cache_size", -8192)
        .ctx(path, || "set cache_size".into())?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Creates the schema in an empty database, or checks the version of an existing one.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), JournalError> {
    let tx = conn
        .transaction()
        .ctx(path, || "begin schema transaction".into())?;
    tx.execute_batch(SCHEMA)
        .ctx(path, || "create the schema".into())?;
    let found: Option<i64> = tx
        .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
        .optional()
        .ctx(path, || "read schema_version".into())?
        .flatten();
    match found {
        None => {
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [SCHEMA_VERSION],
            )
            .ctx(path, || "write schema_version".into())?;
        }
        Some(v) if v > SCHEMA_VERSION => {
            return Err(JournalError::NewerSchema {
                path: path.to_path_buf(),
                found: v,
                supported: SCHEMA_VERSION,
            })
        }
        // Version 1 is the first: nothing to migrate yet. Later versions add their
        // steps here, each in this same transaction.
        Some(_) => {}
    }
    tx.commit().ctx(path, || "commit the schema".into())
}

/// Opens a reading connection (the database already exists, with its schema).
pub fn open_reader(path: &Path) -> Result<Connection, JournalError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).ctx(path, || "open a reader".into())?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx(path, || "set busy_timeout".into())?;
    conn.pragma_update(None, "query_only", true)
        .ctx(path, || "set query_only".into())?;
    Ok(conn)
}
