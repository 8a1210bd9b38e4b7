//! Durable session state for `--state-dir`: the cursor of the last Item written out and
//! the current ConnectionToken with its expiry, so a process killed and restarted with
//! the same directory continues after the last Item it delivered.
//!
//! The file is replaced atomically (write a temporary file with mode 0600, fsync, rename,
//! fsync the directory), so a crash leaves either the old state or the new one. A state
//! file that cannot be read or parsed, or that belongs to another ParticipantToken, is
//! reported and ignored: the session then starts with a full backfill, never a crash.

use crate::api::model::Timestamp;
use crate::secret::Secret;
use crate::session::delivery::Cursor;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const FILE: &str = "session.json";
const TMP: &str = "session.json.tmp";
const VERSION: u32 = 1;

/// What a state directory remembers.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedState {
    pub cursor: Option<Cursor>,
    pub connection_token: Option<Secret>,
    pub connection_expiry: Option<Timestamp>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OnDisk {
    version: u32,
    /// A fingerprint of the ParticipantToken (not the token): state from another chat is
    /// never resumed.
    participant: String,
    cursor_id: Option<String>,
    cursor_time: Option<String>,
    connection_token: Option<Secret>,
    connection_expiry: Option<Timestamp>,
}

/// The result of reading a state directory.
#[derive(Debug)]
pub enum Loaded {
    /// No state yet.
    Fresh,
    Resumed(SavedState),
    /// Unusable state; the reason has been logged.
    Unusable(String),
}

#[derive(Debug, thiserror::Error)]
#[error("state directory {path}: {source}")]
pub struct StoreError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// A state directory bound to one ParticipantToken.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
    participant: String,
}

fn fingerprint(token: &Secret) -> String {
    let digest = Sha1::digest(token.expose().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl StateStore {
    /// Opens (creating with mode 0700 if needed) a state directory and checks that it
    /// can be written.
    pub fn open(dir: impl Into<PathBuf>, participant_token: &Secret) -> Result<StateStore, StoreError> {
        let dir = dir.into();
        let err = |source| StoreError {
            path: dir.clone(),
            source,
        };
        if !dir.exists() {
            let mut b = fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(&dir).map_err(err)?;
        }
        if !dir.is_dir() {
            return Err(err(io::Error::other("not a directory")));
        }
        let probe = dir.join(".write-test");
        File::create(&probe)
            .and_then(|_| fs::remove_file(&probe))
            .map_err(err)?;
        Ok(StateStore {
            dir,
            participant: fingerprint(participant_token),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    pub fn load(&self) -> Loaded {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::Fresh,
            Err(e) => return Loaded::Unusable(format!("cannot read {}: {e}", path.display())),
        };
        let disk: OnDisk = match serde_json::from_slice(&bytes) {
            Ok(d) => d,
            Err(e) => return Loaded::Unusable(format!("{} is not valid state: {e}", path.display())),
        };
        if disk.version != VERSION {
            return Loaded::Unusable(format!(
                "{} has version {}, expected {VERSION}",
                path.display(),
                disk.version
            ));
        }
        if disk.participant != self.participant {
            return Loaded::Unusable(format!("{} belongs to another participant token", path.display()));
        }
        Loaded::Resumed(SavedState {
            cursor: disk.cursor_id.map(|id| Cursor {
                id,
                absolute_time: disk.cursor_time,
            }),
            connection_token: disk.connection_token,
            connection_expiry: disk.connection_expiry,
        })
    }

    /// Replaces the state atomically and durably.
    pub fn save(&self, state: &SavedState) -> Result<(), StoreError> {
        let disk = OnDisk {
            version: VERSION,
            participant: self.participant.clone(),
            cursor_id: state.cursor.as_ref().map(|c| c.id.clone()),
            cursor_time: state.cursor.as_ref().and_then(|c| c.absolute_time.clone()),
            connection_token: state.connection_token.clone(),
            connection_expiry: state.connection_expiry,
        };
        let bytes = serde_json::to_vec(&disk).expect("state serialises");
        let tmp = self.dir.join(TMP);
        let err = |source| StoreError {
            path: self.dir.clone(),
            source,
        };
        write_private(&tmp, &bytes).map_err(err)?;
        fs::rename(&tmp, self.path()).map_err(err)?;
        sync_dir(&self.dir).map_err(err)?;
        Ok(())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: &str) -> SavedState {
        SavedState {
            cursor: Some(Cursor {
                id: id.into(),
                absolute_time: Some("2026-11-25T12:00:00.000Z".into()),
            }),
            connection_token: Some(Secret::new("ct-abc")),
            connection_expiry: None,
        }
    }

    #[test]
    fn saves_atomically_privately_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let token = Secret::new("pt-1");
        let store = StateStore::open(dir.path().join("s"), &token).unwrap();
        assert!(matches!(store.load(), Loaded::Fresh));
        store.save(&state("a")).unwrap();
        store.save(&state("b")).unwrap();
        match store.load() {
            Loaded::Resumed(s) => assert_eq!(s, state("b")),
            other => panic!("{other:?}"),
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let dmode = fs::metadata(dir.path().join("s")).unwrap().permissions().mode() & 0o777;
            assert_eq!(dmode, 0o700);
        }
        assert!(!dir.path().join("s").join(TMP).exists());
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(!text.contains("pt-1"), "the participant token is not stored");
    }

    #[test]
    fn corrupt_or_foreign_state_is_unusable_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), &Secret::new("pt-1")).unwrap();
        fs::write(store.path(), b"{\"Version\":1, trunc").unwrap();
        assert!(matches!(store.load(), Loaded::Unusable(_)));
        store.save(&state("a")).unwrap();
        let other = StateStore::open(dir.path(), &Secret::new("pt-2")).unwrap();
        match other.load() {
            Loaded::Unusable(why) => assert!(why.contains("another participant")),
            l => panic!("{l:?}"),
        }
    }

    #[test]
    fn an_unwritable_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        assert!(StateStore::open(&file, &Secret::new("t")).is_err());
    }
}
