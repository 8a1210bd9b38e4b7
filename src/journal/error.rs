//! The journal's error type: every error names the database (or directory) path and
//! what was being done. Tokens never appear in one: SQLite's messages name tables and
//! columns, never bound values, and the journal's own messages name sessions only.

use std::path::PathBuf;
use std::sync::Arc;

/// What went wrong in the journal. Cheap to clone (sources are shared), so one failed
/// group commit can be reported to every caller whose Items were in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: cannot create the state directory: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("journal {path}: cannot create the database file: {source}")]
    CreateFile {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("journal {path}: {what}: {source}")]
    Sqlite {
        path: PathBuf,
        what: String,
        #[source]
        source: Arc<rusqlite::Error>,
    },
    #[error("journal {path}: schema version {found} is newer than this program's {supported}")]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("journal {path}: {what}: unreadable value {value:?} in column {column}")]
    Corrupt {
        path: PathBuf,
        what: String,
        column: &'static str,
        value: String,
    },
    #[error("journal {path}: cannot encode an Item of session {session:?} as JSON: {source}")]
    Encode {
        path: PathBuf,
        session: String,
        #[source]
        source: Arc<serde_json::Error>,
    },
    #[error("journal {path}: the ParticipantToken of session {name:?} is already registered as session {existing:?}")]
    TokenInUse {
        path: PathBuf,
        name: String,
        existing: String,
    },
    #[error("journal {path}: cannot start the writer thread: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("journal {path}: the writer thread has stopped")]
    Closed { path: PathBuf },
    /// An earlier append of the same chain failed: this one is refused, so a session's
    /// Items never land with a gap before them.
    #[error("journal {path}: an earlier append of session {session:?} failed; later ones are refused")]
    ChainBroken { path: PathBuf, session: String },
}

impl JournalError {
    pub(crate) fn sqlite(path: &std::path::Path, what: impl Into<String>, source: rusqlite::Error) -> Self {
        JournalError::Sqlite {
            path: path.to_path_buf(),
            what: what.into(),
            source: Arc::new(source),
        }
    }
}

/// Attaches the path and a description to a rusqlite result.
pub(crate) trait Context<T> {
    fn ctx(self, path: &std::path::Path, what: impl FnOnce() -> String) -> Result<T, JournalError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn ctx(self, path: &std::path::Path, what: impl FnOnce() -> String) -> Result<T, JournalError> {
        self.map_err(|e| JournalError::sqlite(path, what(), e))
    }
}
