//! In-memory storage for `--dev` servers and tests: a `BTreeMap` behind a lock.
//!
//! Nothing is persisted; everything is lost when the value drops.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ops::Bound;

use parking_lot::RwLock;

use super::{Storage, StorageError, check_path, check_prefix, list_children};

/// A [`Storage`] that keeps every entry in memory.
#[derive(Default)]
pub struct MemoryStorage {
    entries: RwLock<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStorage")
            .field("entries", &self.entries.read().len())
            .finish()
    }
}

impl Storage for MemoryStorage {
    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_path(path)?;
        Ok(self.entries.read().get(path).cloned())
    }

    fn put(&self, path: &str, value: &[u8]) -> Result<(), StorageError> {
        check_path(path)?;
        self.entries.write().insert(path.to_owned(), value.to_vec());
        Ok(())
    }

    fn delete(&self, path: &str) -> Result<(), StorageError> {
        check_path(path)?;
        self.entries.write().remove(path);
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        check_prefix(prefix)?;
        let entries = self.entries.read();
        let children: Result<_, Infallible> = list_children(prefix, |bound| {
            Ok(entries
                .range::<str, _>((Bound::Included(bound), Bound::Unbounded))
                .next()
                .map(|(path, _)| path.clone()))
        });
        match children {
            Ok(children) => Ok(children),
        }
    }

    fn compare_and_set(
        &self,
        path: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StorageError> {
        check_path(path)?;
        let mut entries = self.entries.write();
        if entries.get(path).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        match new {
            Some(value) => entries.insert(path.to_owned(), value.to_vec()),
            None => entries.remove(path),
        };
        Ok(true)
    }
}
