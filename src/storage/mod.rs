//! Persistence of opaque byte values by path.
//!
//! [`Storage`] is the one port every stateful layer writes through: get / put /
//! delete / list, plus an atomic [`compare_and_set`](Storage::compare_and_set).
//! Two backends implement it: [`MemoryStorage`] (for `--dev` and tests) and
//! [`RedbStorage`] (the default: one embedded, file-backed ACID database in
//! `--data-dir`, fsynced on every commit).
//!
//! # What this layer does not do
//!
//! It knows no crypto and holds no keys: values are opaque bytes, and encryption is
//! the job of [`crate::seal::Barrier`], a decorator that is itself a [`Storage`].
//! It does no async: the calls block (a redb commit waits for `fsync`), so async
//! callers run them on a blocking thread. It never puts a value in an error message.
//!
//! # Paths
//!
//! A path is a non-empty UTF-8 string that does not end with `/`; `/` separates
//! "directories" for [`list`](Storage::list), as in Vault. List prefixes are `""`
//! or end with `/`. Backends reject anything else with
//! [`StorageError::InvalidPath`].

pub mod memory;
pub mod redb;

pub use memory::MemoryStorage;
pub use redb::RedbStorage;

use thiserror::Error;

/// A store of opaque byte values by path. Every method is atomic on its own, and
/// safe to call from many threads at once.
pub trait Storage: Send + Sync {
    /// The value at `path`, or `None` when there is none.
    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Sets the value at `path`. The write is durable when this returns `Ok`.
    fn put(&self, path: &str, value: &[u8]) -> Result<(), StorageError>;

    /// Removes the value at `path`. Deleting a missing path is `Ok`.
    fn delete(&self, path: &str) -> Result<(), StorageError>;

    /// Vault-style listing: the immediate children of `prefix` (which is `""` or
    /// ends with `/`): leaf names, and `"dir/"` for deeper paths, sorted,
    /// deduplicated.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;

    /// Atomically: if the current value equals `expected` (`None` = absent), set it
    /// to `new` (`None` = delete) and return `Ok(true)`; else `Ok(false)` and change
    /// nothing. A successful write is durable when this returns.
    fn compare_and_set(
        &self,
        path: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StorageError>;
}

/// Why a storage call failed. Messages name paths and operations, never values.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The backend failed (I/O, a locked or damaged database file, ...).
    #[error("storage backend failed to {operation}: {source}")]
    Backend {
        /// What was being done, e.g. `"open the database"` or `"commit a write"`.
        operation: &'static str,
        /// The backend's own error (it carries no stored values).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The entry at `path` failed to decrypt or authenticate through the barrier,
    /// or has a malformed envelope: it was altered, moved from another path, or
    /// written under a key this keyring does not have.
    #[error("storage entry at {path:?} failed to decrypt or authenticate")]
    Corrupt {
        /// The logical path of the entry.
        path: String,
    },
    /// A path or list prefix that breaks the rules in the module doc.
    #[error("invalid storage path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path or prefix.
        path: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The barrier is sealed: no key is in memory, so nothing can be read or written.
    #[error("Vault is sealed")]
    Sealed,
}

impl StorageError {
    /// Wraps a backend error with what was being done.
    pub(crate) fn backend(
        operation: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend {
            operation,
            source: Box::new(source),
        }
    }
}

/// Checks an entry path: non-empty and not ending with `/`.
pub(crate) fn check_path(path: &str) -> Result<(), StorageError> {
    let reason = if path.is_empty() {
        "path is empty"
    } else if path.ends_with('/') {
        "path ends with '/'"
    } else {
        return Ok(());
    };
    Err(StorageError::InvalidPath {
        path: path.to_owned(),
        reason,
    })
}

/// Checks a list prefix: `""` or ending with `/`.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), StorageError> {
    if prefix.is_empty() || prefix.ends_with('/') {
        Ok(())
    } else {
        Err(StorageError::InvalidPath {
            path: prefix.to_owned(),
            reason: "list prefix must be empty or end with '/'",
        })
    }
}

/// The listing algorithm shared by the backends, over an ordered key space.
///
/// `seek(bound)` returns the smallest stored path `>= bound`, if any. Each child
/// costs one seek: after a leaf we seek just past it, after a directory `d/` we
/// seek to `d0` (`'0'` is the byte after `'/'`), skipping the whole subtree.
pub(crate) fn list_children<E>(
    prefix: &str,
    mut seek: impl FnMut(&str) -> Result<Option<String>, E>,
) -> Result<Vec<String>, E> {
    let mut children = Vec::new();
    let mut bound = prefix.to_owned();
    while let Some(path) = seek(&bound)? {
        let Some(rest) = path.strip_prefix(prefix) else {
            break;
        };
        match rest.find('/') {
            Some(slash) => {
                children.push(rest[..=slash].to_owned());
                bound = format!("{prefix}{}0", &rest[..slash]);
            }
            None => {
                children.push(rest.to_owned());
                bound = path;
                bound.push('\0');
            }
        }
    }
    Ok(children)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::convert::Infallible;

    use super::*;

    fn list(paths: &[&str], prefix: &str) -> Vec<String> {
        let set: BTreeSet<String> = paths.iter().map(|p| (*p).to_owned()).collect();
        let result: Result<_, Infallible> = list_children(prefix, |bound| {
            Ok(set.range(bound.to_owned()..).next().cloned())
        });
        match result {
            Ok(children) => children,
        }
    }

    #[test]
    fn list_children_groups_directories() {
        let paths = ["a", "b/c", "b/d/e", "b0", "b.x", "c", "z/y/x"];
        assert_eq!(list(&paths, ""), ["a", "b.x", "b/", "b0", "c", "z/"]);
        assert_eq!(list(&paths, "b/"), ["c", "d/"]);
        assert_eq!(list(&paths, "b/d/"), ["e"]);
        assert!(list(&paths, "nope/").is_empty());
    }

    #[test]
    fn path_rules() {
        assert!(check_path("a/b").is_ok());
        assert!(check_path("").is_err());
        assert!(check_path("a/").is_err());
        assert!(check_prefix("").is_ok());
        assert!(check_prefix("a/").is_ok());
        assert!(check_prefix("a").is_err());
    }
}
