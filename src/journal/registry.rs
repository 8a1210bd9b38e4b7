//! The sessions registry: every chat the daemon holds, with what a restart needs to
//! resume it (the ParticipantToken, the current ConnectionToken) and what an operator
//! wants to see (state, last error, labels). Rows are read through the readers' pool
//! and written by the writer thread; this module holds the record and its SQL.

use super::error::{Context, JournalError};
use crate::clock::{format_timestamp, parse_timestamp};
use crate::secret::Secret;
use rusqlite::{params, Connection, OptionalExtension, Row};
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use time::OffsetDateTime;

/// Where a session came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionSource {
    /// The configuration file (removed when it leaves the file).
    Config,
    /// The control API.
    Api,
}

/// How much of the transcript a new session journals before its live Items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum History {
    /// The whole transcript, then live Items.
    #[default]
    All,
    /// Live Items only.
    None,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident = $text:literal),* }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),* }
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($ty::$variant),)*
                    other => Err(other.to_string()),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
text_enum!(SessionSource { Config = "config", Api = "api" });
text_enum!(History { All = "all", None = "none" });

/// One row of the `sessions` table. `Debug` shows the tokens as `***` (they are
/// [`Secret`]s); the token's fingerprint is derived, see [`fingerprint`].
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub name: String,
    pub participant_token: Secret,
    pub source: SessionSource,
    pub history: History,
    pub labels: BTreeMap<String, String>,
    pub contact_id: Option<String>,
    pub participant_id: Option<String>,
    /// The supervisor's state as text (`connecting`, `connected`, `ended`, `failed`, …).
    pub state: String,
    pub last_error: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub ended_at: Option<OffsetDateTime>,
    pub connection_token: Option<Secret>,
    /// The ConnectionToken's expiry as the service wrote it (RFC 3339).
    pub connection_expiry: Option<String>,
    /// Automatic delivered receipts for incoming messages.
    pub receipts: bool,
}

impl SessionRecord {
    /// A new session in state `new`, created and updated now.
    pub fn new(
        name: impl Into<String>,
        participant_token: Secret,
        source: SessionSource,
        history: History,
    ) -> SessionRecord {
        let now = OffsetDateTime::now_utc();
        SessionRecord {
            name: name.into(),
            participant_token,
            source,
            history,
            labels: BTreeMap::new(),
            contact_id: None,
            participant_id: None,
            state: "new".into(),
            last_error: None,
            created_at: now,
            updated_at: now,
            ended_at: None,
            connection_token: None,
            connection_expiry: None,
            receipts: false,
        }
    }

    /// The fingerprint of this session's ParticipantToken.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.participant_token)
    }
}

/// The hex SHA-1 of a ParticipantToken: how "the same token twice" is recognised
/// without comparing (or logging) tokens.
pub fn fingerprint(token: &Secret) -> String {
    Sha1::digest(token.expose().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) const COLUMNS: &str = "name, participant_token, source, history, labels, contact_id, \
     participant_id, state, last_error, created_at, updated_at, ended_at, connection_token, \
     connection_expiry, receipts";

/// Decodes a row selected with [`COLUMNS`]. A value that cannot be decoded is reported
/// by column, never by the row's tokens.
pub(crate) fn from_row(row: &Row<'_>, path: &Path) -> Result<SessionRecord, JournalError> {
    let name: String = row.get(0).ctx(path, || "read a session".into())?;
    let what = || format!("read session {name:?}");
    let corrupt = |column: &'static str, value: String| JournalError::Corrupt {
        path: path.to_path_buf(),
        what: what(),
        column,
        value,
    };
    let text = |i: usize| -> Result<String, JournalError> { row.get(i).ctx(path, what) };
    let opt = |i: usize| -> Result<Option<String>, JournalError> { row.get(i).ctx(path, what) };
    let time = |column: &'static str, s: String| parse_timestamp(&s).map_err(|_| corrupt(column, s));
    let source = text(2)?;
    let history = text(3)?;
    let labels = text(4)?;
    Ok(SessionRecord {
        participant_token: Secret::new(text(1)?),
        source: source.parse().map_err(|v| corrupt("source", v))?,
        history: history.parse().map_err(|v| corrupt("history", v))?,
        labels: serde_json::from_str(&labels).map_err(|_| corrupt("labels", labels.clone()))?,
        contact_id: opt(5)?,
        participant_id: opt(6)?,
        state: text(7)?,
        last_error: opt(8)?,
        created_at: time("created_at", text(9)?)?,
        updated_at: time("updated_at", text(10)?)?,
        ended_at: opt(11)?.map(|s| time("ended_at", s)).transpose()?,
        connection_token: opt(12)?.map(Secret::new),
        connection_expiry: opt(13)?,
        receipts: row.get::<_, bool>(14).ctx(path, what)?,
        name,
    })
}

/// Inserts the record, or replaces the row of the same name (keeping its `created_at`).
/// A token already registered under another name is refused.
pub(crate) fn put(conn: &Connection, path: &Path, r: &SessionRecord) -> Result<usize, JournalError> {
    let fp = r.fingerprint();
    let what = || format!("put session {:?}", r.name);
    let existing: Option<String> = conn
        .query_row(
            "SELECT name FROM sessions WHERE token_fingerprint = ?1 AND name <> ?2",
            params![fp, r.name],
            |row| row.get(0),
        )
        .optional()
        .ctx(path, what)?;
    if let Some(existing) = existing {
        return Err(JournalError::TokenInUse {
            path: path.to_path_buf(),
            name: r.name.clone(),
            existing,
        });
    }
    let labels = serde_json::to_string(&r.labels).expect("a map of strings always encodes");
    conn.execute(
        "INSERT INTO sessions (name, participant_token, token_fingerprint, source, history, labels, \
            contact_id, participant_id, state, last_error, created_at, updated_at, ended_at, \
            connection_token, connection_expiry, receipts) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
         ON CONFLICT (name) DO UPDATE SET participant_token = excluded.participant_token, \
            token_fingerprint = excluded.token_fingerprint, source = excluded.source, \
            history = excluded.history, labels = excluded.labels, contact_id = excluded.contact_id, \
            participant_id = excluded.participant_id, state = excluded.state, \
            last_error = excluded.last_error, updated_at = excluded.updated_at, \
            ended_at = excluded.ended_at, connection_token = excluded.connection_token, \
            connection_expiry = excluded.connection_expiry, receipts = excluded.receipts",
        params![
            r.name,
            r.participant_token.expose(),
            fp,
            r.source.as_str(),
            r.history.as_str(),
            labels,
            r.contact_id,
            r.participant_id,
            r.state,
            r.last_error,
            format_timestamp(r.created_at),
            format_timestamp(r.updated_at),
            r.ended_at.map(format_timestamp),
            r.connection_token.as_ref().map(Secret::expose),
            r.connection_expiry,
            r.receipts,
        ],
    )
    .ctx(path, what)
}

/// Sets state and last error; `ended` stamps `ended_at` (once: a later call keeps the
/// first time). Returns the number of rows changed (0: no such session).
pub(crate) fn set_state(
    conn: &Connection,
    path: &Path,
    name: &str,
    state: &str,
    last_error: Option<&str>,
    ended: bool,
) -> Result<usize, JournalError> {
    let now = format_timestamp(OffsetDateTime::now_utc());
    conn.execute(
        "UPDATE sessions SET state = ?2, last_error = ?3, updated_at = ?4, \
            ended_at = CASE WHEN ?5 THEN coalesce(ended_at, ?4) ELSE ended_at END \
         WHERE name = ?1",
        params![name, state, last_error, now, ended],
    )
    .ctx(path, || format!("set the state of session {name:?}"))
}

/// Stores the current ConnectionToken and its expiry.
pub(crate) fn set_connection(
    conn: &Connection,
    path: &Path,
    name: &str,
    token: &Secret,
    expiry: &str,
) -> Result<usize, JournalError> {
    let now = format_timestamp(OffsetDateTime::now_utc());
    conn.execute(
        "UPDATE sessions SET connection_token = ?2, connection_expiry = ?3, updated_at = ?4 \
         WHERE name = ?1",
        params![name, token.expose(), expiry, now],
    )
    .ctx(path, || format!("set the connection of session {name:?}"))
}

/// Deletes the registry row (its Items stay until retention removes them).
pub(crate) fn remove(conn: &Connection, path: &Path, name: &str) -> Result<usize, JournalError> {
    conn.execute("DELETE FROM sessions WHERE name = ?1", [name])
        .ctx(path, || format!("remove session {name:?}"))
}
