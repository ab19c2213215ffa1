//! The checkpoint file of a rewrap job: which job it belongs to and how far
//! the job got — the last primary key whose batch committed (PostgreSQL), or
//! the byte offsets of the input read and the output written (files).
//!
//! Writes are atomic (a temporary file beside it, synced, then renamed over
//! it), so a job killed at any instant leaves either the old or the new
//! checkpoint, never a torn one. This module knows nothing of sources: the
//! caller decides when a position is safe to record.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::RewrapError;

/// Layout version of the file.
const FORMAT: u32 = 1;

/// How far a job got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Position {
    /// Every row with a key up to and including `last_key` (in key order) is
    /// done; `None` means none yet.
    Postgres { last_key: Option<String> },
    /// The input up to `input_offset` is processed and the output holds
    /// exactly its `output_offset` first bytes for it; `records` counts the
    /// records before `input_offset` (for line numbers in the report).
    File {
        input_offset: u64,
        output_offset: u64,
        records: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    format: u32,
    job: String,
    position: Position,
}

/// A job's checkpoint file.
#[derive(Debug, Clone)]
pub(super) struct Checkpoint {
    path: PathBuf,
    job: String,
}

impl Checkpoint {
    /// The checkpoint at `path` of the job identified by `job` (see
    /// [`job_id`]).
    pub(super) fn new(path: PathBuf, job: String) -> Self {
        Self { path, job }
    }

    /// Where the checkpoint lives.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The recorded position; `None` when there is no checkpoint file. A file
    /// written for another job, or unreadable, is an error: resuming from it
    /// could skip rows.
    pub(super) fn load(&self) -> Result<Option<Position>, RewrapError> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RewrapError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let stored: Stored =
            serde_json::from_slice(&text).map_err(|_| RewrapError::BadCheckpoint {
                path: self.path.clone(),
                why: "it is not a rewrap checkpoint",
            })?;
        if stored.format != FORMAT {
            return Err(RewrapError::BadCheckpoint {
                path: self.path.clone(),
                why: "it was written by another version of cipherd",
            });
        }
        if stored.job != self.job {
            return Err(RewrapError::BadCheckpoint {
                path: self.path.clone(),
                why: "it belongs to another job (other source, key or target version)",
            });
        }
        Ok(Some(stored.position))
    }

    /// Records `position`, atomically.
    pub(super) fn store(&self, position: &Position) -> Result<(), RewrapError> {
        let stored = Stored {
            format: FORMAT,
            job: self.job.clone(),
            position: position.clone(),
        };
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let io = |source| RewrapError::Io {
            path: temporary.clone(),
            source,
        };
        let mut file = std::fs::File::create(&temporary).map_err(io)?;
        let bytes = serde_json::to_vec(&stored).map_err(|e| io(std::io::Error::other(e)))?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_data().map_err(io)?;
        std::fs::rename(&temporary, &self.path).map_err(|source| RewrapError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Removes the file (a finished job leaves none behind).
    pub(super) fn remove(&self) -> Result<(), RewrapError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RewrapError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

/// A stable identifier of a job: a hash of everything that decides which
/// values it visits and what it writes (never a password: callers pass the
/// PostgreSQL address without it).
pub(super) fn job_id(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hex::encode(&hash.finalize()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_then_load_and_reject_another_job() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.checkpoint");
        let checkpoint = Checkpoint::new(path.clone(), job_id(&["a", "b"]));
        assert_eq!(checkpoint.load().unwrap(), None);
        let position = Position::Postgres {
            last_key: Some("42".into()),
        };
        checkpoint.store(&position).unwrap();
        assert_eq!(checkpoint.load().unwrap(), Some(position));

        let other = Checkpoint::new(path.clone(), job_id(&["ab", ""]));
        assert!(matches!(
            other.load(),
            Err(RewrapError::BadCheckpoint { .. })
        ));
        std::fs::write(&path, b"not json").unwrap();
        assert!(matches!(
            checkpoint.load(),
            Err(RewrapError::BadCheckpoint { .. })
        ));
        checkpoint.remove().unwrap();
        assert_eq!(checkpoint.load().unwrap(), None);
    }
}
