//! Reading the journal: a small pool of read-only connections (WAL lets them read while
//! the writer commits) and the queries behind [`Journal`](super::Journal)'s read methods.

use super::error::{Context, JournalError};
use super::registry::{self, SessionRecord};
use super::schema;
use super::{JournalEntry, Seq};
use crate::session::delivery::Cursor;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How many idle reading connections are kept open; more are opened when needed and
/// closed after use.
const MAX_IDLE: usize = 4;

/// Reading connections, opened on demand and reused.
pub(crate) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub fn new(path: PathBuf) -> ReadPool {
        ReadPool {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on an idle connection (or a new one), then puts it back.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&Connection, &Path) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let conn = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => schema::open_reader(&self.path)?,
        };
        let out = f(&conn, &self.path);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        out
    }
}

fn entry(row: &Row<'_>) -> rusqlite::Result<JournalEntry> {
    Ok(JournalEntry {
        seq: row.get(0)?,
        session: row.get(1)?,
        item_id: row.get(2)?,
        absolute_time: row.get(3)?,
        json: Arc::from(row.get_ref(4)?.as_str()?),
    })
}

pub(crate) fn entries_after(
    conn: &Connection,
    path: &Path,
    after: Option<Seq>,
    session: Option<&str>,
    limit: usize,
) -> Result<Vec<JournalEntry>, JournalError> {
    let after = after.unwrap_or(0);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let what = || "read Items".to_string();
    const COLS: &str = "SELECT seq, session, item_id, absolute_time, json FROM items";
    // Two statements, so that each uses its index (the primary key, or (session, seq)).
    match session {
        Some(s) => {
            let sql = format!("{COLS} WHERE session = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3");
            let mut stmt = conn.prepare_cached(&sql).ctx(path, what)?;
            let rows = stmt.query_map(params![s, after, limit], entry).ctx(path, what)?;
            rows.collect::<Result<_, _>>().ctx(path, what)
        }
        None => {
            let sql = format!("{COLS} WHERE seq > ?1 ORDER BY seq LIMIT ?2");
            let mut stmt = conn.prepare_cached(&sql).ctx(path, what)?;
            let rows = stmt.query_map(params![after, limit], entry).ctx(path, what)?;
            rows.collect::<Result<_, _>>().ctx(path, what)
        }
    }
}

pub(crate) fn cursor(conn: &Connection, path: &Path, session: &str) -> Result<Option<Cursor>, JournalError> {
    conn.prepare_cached(
        "SELECT item_id, absolute_time FROM items \
         WHERE session = ?1 AND ephemeral = 0 AND item_id IS NOT NULL ORDER BY seq DESC LIMIT 1",
    )
    .and_then(|mut stmt| {
        stmt.query_row([session], |r| {
            Ok(Cursor {
                id: r.get(0)?,
                absolute_time: r.get(1)?,
            })
        })
        .optional()
    })
    .ctx(path, || format!("read the cursor of session {session:?}"))
}

pub(crate) fn seq_of(
    conn: &Connection,
    path: &Path,
    session: &str,
    item_id: &str,
) -> Result<Option<Seq>, JournalError> {
    conn.prepare_cached("SELECT seq FROM items WHERE session = ?1 AND item_id = ?2")
        .and_then(|mut stmt| stmt.query_row([session, item_id], |r| r.get(0)).optional())
        .ctx(path, || format!("find an Item of session {session:?}"))
}

pub(crate) fn last_seq(conn: &Connection, path: &Path) -> Result<Option<Seq>, JournalError> {
    conn.query_row("SELECT max(seq) FROM items", [], |r| r.get(0))
        .ctx(path, || "read the last seq".into())
}

pub(crate) fn position(conn: &Connection, path: &Path, name: &str) -> Result<Option<Seq>, JournalError> {
    conn.prepare_cached("SELECT position FROM consumers WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |r| r.get(0)).optional())
        .ctx(path, || format!("read the position of consumer {name:?}"))
}

/// The remembered answer to `key` of `session`: (status, body).
pub(crate) fn answer(
    conn: &Connection,
    path: &Path,
    session: &str,
    key: &str,
) -> Result<Option<(u16, String)>, JournalError> {
    conn.prepare_cached("SELECT status, body FROM answers WHERE session = ?1 AND key = ?2")
        .and_then(|mut stmt| {
            stmt.query_row([session, key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .ctx(path, || format!("read an answer of session {session:?}"))
}

/// Sessions matching `filter` (an SQL condition on `sessions` with one parameter, or
/// none), by name.
pub(crate) fn sessions(
    conn: &Connection,
    path: &Path,
    filter: Option<(&str, &str)>,
) -> Result<Vec<SessionRecord>, JournalError> {
    let what = || "read sessions".to_string();
    let cols = registry::COLUMNS;
    let (sql, param) = match filter {
        Some((cond, p)) => (
            format!("SELECT {cols} FROM sessions WHERE {cond} ORDER BY name"),
            Some(p),
        ),
        None => (format!("SELECT {cols} FROM sessions ORDER BY name"), None),
    };
    let mut stmt = conn.prepare_cached(&sql).ctx(path, what)?;
    let mut rows = match param {
        Some(p) => stmt.query([p]),
        None => stmt.query([]),
    }
    .ctx(path, what)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().ctx(path, what)? {
        out.push(registry::from_row(row, path)?);
    }
    Ok(out)
}
