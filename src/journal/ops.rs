//! The writes other than appends, as the writer runs them inside its transaction:
//! registry changes, consumer positions and retention.

use super::error::{Context, JournalError};
use super::registry;
use super::writer::Op;
use rusqlite::{params, Connection};

pub(crate) fn run_op(
    conn: &Connection,
    path: &std::path::Path,
    op: Op,
    now: &str,
) -> Result<usize, JournalError> {
    match op {
        Op::PutSession(record) => registry::put(conn, path, &record),
        Op::SetState {
            name,
            state,
            last_error,
            ended,
        } => registry::set_state(conn, path, &name, &state, last_error.as_deref(), ended),
        Op::SetConnection { name, token, expiry } => {
            registry::set_connection(conn, path, &name, &token, &expiry)
        }
        Op::RemoveSession(name) => registry::remove(conn, path, &name),
        Op::SetPosition { name, seq } => conn
            .execute(
                "INSERT INTO consumers (name, position, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position, \
                    updated_at = excluded.updated_at",
                params![name, seq, now],
            )
            .ctx(path, || format!("set the position of consumer {name:?}")),
        Op::RememberAnswer {
            session,
            key,
            status,
            body,
        } => conn
            .execute(
                "INSERT OR IGNORE INTO answers (session, key, status, body, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![session, key, status, body, now],
            )
            .ctx(path, || format!("remember an answer of session {session:?}")),
        Op::Purge { cutoff } => purge(conn, path, &cutoff),
    }
}

/// Retention: the Items and registry rows of sessions that ended before `cutoff`, and
/// the Items of sessions no longer registered whose newest Item was committed before
/// `cutoff`. Returns the number of Items deleted.
fn purge(conn: &Connection, path: &std::path::Path, cutoff: &str) -> Result<usize, JournalError> {
    let what = || "purge".to_string();
    const ENDED: &str = "SELECT name FROM sessions \
        WHERE ended_at IS NOT NULL AND julianday(ended_at) < julianday(?1)";
    let ended = conn
        .execute(&format!("DELETE FROM items WHERE session IN ({ENDED})"), [cutoff])
        .ctx(path, what)?;
    conn.execute(&format!("DELETE FROM sessions WHERE name IN ({ENDED})"), [cutoff])
        .ctx(path, what)?;
    let orphaned = conn
        .execute(
            "DELETE FROM items WHERE session IN (\
                SELECT session FROM items WHERE session NOT IN (SELECT name FROM sessions) \
                GROUP BY session HAVING julianday(max(committed_at)) < julianday(?1))",
            [cutoff],
        )
        .ctx(path, what)?;
    // Answers to idempotent requests: kept for the retention period, and never more
    // than MAX_ANSWERS (the oldest go first).
    conn.execute(
        "DELETE FROM answers WHERE julianday(created_at) < julianday(?1)",
        [cutoff],
    )
    .ctx(path, what)?;
    conn.execute(
        "DELETE FROM answers WHERE rowid IN (SELECT rowid FROM answers ORDER BY created_at DESC \
         LIMIT -1 OFFSET ?1)",
        [MAX_ANSWERS],
    )
    .ctx(path, what)?;
    Ok(ended + orphaned)
}

/// The most answers to idempotent requests kept.
pub(crate) const MAX_ANSWERS: i64 = 100_000;
