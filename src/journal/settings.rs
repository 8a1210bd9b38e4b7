//! The journal's settings: when commits reach the disk ([`Fsync`]) and how long the
//! Items of finished sessions are kept.

use std::time::Duration;

/// When commits reach the disk; see the module documentation for what each survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Each Item is committed (and fsynced) on its own. For low volume.
    Always,
    /// Group commit, one fsync per group.
    #[default]
    Batch,
    /// Group commit; the operating system decides when the WAL reaches the disk.
    Never,
}

impl Fsync {
    /// The configuration spelling (`always`, `batch`, `never`).
    pub fn as_str(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Batch => "batch",
            Fsync::Never => "never",
        }
    }
}

/// How the journal behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSettings {
    pub fsync: Fsync,
    /// How long the Items of an ended (or removed) session are kept.
    pub retention: Duration,
}

impl Default for JournalSettings {
    fn default() -> Self {
        JournalSettings {
            fsync: Fsync::Batch,
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}
