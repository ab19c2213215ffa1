//! The default backend: one [redb](https://www.redb.org) database file in the
//! data directory.
//!
//! redb is an embedded, copy-on-write B-tree store with ACID transactions. Every
//! write here is one write transaction committed with redb's default
//! `Durability::Immediate`, which fsyncs before `commit` returns: an acknowledged
//! write survives a crash or power loss. redb allows one write transaction at a
//! time, which is what makes [`compare_and_set`](Storage::compare_and_set)
//! atomic; reads run concurrently on snapshots and never block writers.
//!
//! The file is checked on open (every page checksum, see
//! `Builder::set_check_integrity_on_open`), so a damaged file is reported as an
//! error instead of being trusted. One process at a time may open it.

use std::path::{Path, PathBuf};

use ::redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Storage, StorageError, check_path, check_prefix, list_children};

/// Name of the database file inside the data directory.
pub const FILE_NAME: &str = "cipherd.redb";

/// The single table: path -> opaque value.
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");

/// A [`Storage`] backed by one redb file in a directory.
pub struct RedbStorage {
    db: Database,
    file: PathBuf,
}

impl std::fmt::Debug for RedbStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStorage")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl RedbStorage {
    /// Opens (or creates) the database file [`FILE_NAME`] in `dir`, creating the
    /// directory if needed. Fails if another process has the file open.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::backend("create the data directory", e))?;
        let file = dir.join(FILE_NAME);
        let db = Database::builder()
            .set_check_integrity_on_open(true)
            .create(&file)
            .map_err(|e| StorageError::backend("open the database", e))?;
        let txn = db
            .begin_write()
            .map_err(|e| StorageError::backend("begin a write transaction", e))?;
        txn.open_table(ENTRIES)
            .map_err(|e| StorageError::backend("open the entries table", e))?;
        txn.commit()
            .map_err(|e| StorageError::backend("commit a write", e))?;
        Ok(Self { db, file })
    }

    /// The path of the database file.
    pub fn file_path(&self) -> &Path {
        &self.file
    }

    /// Runs `apply` on the entries table inside one write transaction and commits
    /// it (durably) if `apply` returns `Ok(true)`; aborts it otherwise.
    fn write(
        &self,
        apply: impl FnOnce(&mut ::redb::Table<'_, &str, &[u8]>) -> Result<bool, ::redb::StorageError>,
    ) -> Result<bool, StorageError> {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| StorageError::backend("begin a write transaction", e))?;
        let changed = {
            let mut table = txn
                .open_table(ENTRIES)
                .map_err(|e| StorageError::backend("open the entries table", e))?;
            apply(&mut table).map_err(|e| StorageError::backend("write an entry", e))?
        };
        if changed {
            txn.commit()
                .map_err(|e| StorageError::backend("commit a write", e))?;
        } else {
            txn.abort()
                .map_err(|e| StorageError::backend("abort a write", e))?;
        }
        Ok(changed)
    }

    fn read_table(
        &self,
    ) -> Result<::redb::ReadOnlyTable<&'static str, &'static [u8]>, StorageError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| StorageError::backend("begin a read transaction", e))?;
        txn.open_table(ENTRIES)
            .map_err(|e| StorageError::backend("open the entries table", e))
    }
}

impl Storage for RedbStorage {
    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_path(path)?;
        let table = self.read_table()?;
        let value = table
            .get(path)
            .map_err(|e| StorageError::backend("read an entry", e))?;
        Ok(value.map(|guard| guard.value().to_vec()))
    }

    fn put(&self, path: &str, value: &[u8]) -> Result<(), StorageError> {
        check_path(path)?;
        self.write(|table| table.insert(path, value).map(|_| true))?;
        Ok(())
    }

    fn delete(&self, path: &str) -> Result<(), StorageError> {
        check_path(path)?;
        // Commit only when something was removed: deleting a missing path costs no fsync.
        self.write(|table| table.remove(path).map(|old| old.is_some()))?;
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        check_prefix(prefix)?;
        let table = self.read_table()?;
        list_children(prefix, |bound| {
            let mut range = table
                .range(bound..)
                .map_err(|e| StorageError::backend("list entries", e))?;
            match range.next() {
                Some(Ok((path, _))) => Ok(Some(path.value().to_owned())),
                Some(Err(e)) => Err(StorageError::backend("list entries", e)),
                None => Ok(None),
            }
        })
    }

    fn compare_and_set(
        &self,
        path: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StorageError> {
        check_path(path)?;
        self.write(|table| {
            let matches = {
                let current = table.get(path)?;
                current.as_ref().map(|guard| guard.value()) == expected
            };
            if !matches {
                return Ok(false);
            }
            match new {
                Some(value) => table.insert(path, value).map(|_| ()),
                None => table.remove(path).map(|_| ()),
            }?;
            Ok(true)
        })
    }
}
