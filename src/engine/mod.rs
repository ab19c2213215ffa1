//! The transit engine: named keyrings kept ready in memory, persisted through the
//! [`Storage`] trait, and the operations of reference §4–§6 over them, single and
//! batched.
//!
//! The engine owns the key cache and the order of writes: every change to a key
//! is made on a copy, written to storage (compare-and-set for creation), and only
//! then published, so a failed write changes nothing and a rotation is visible
//! to the next request. Reads take no locks: the name lookup is a lock-free hash
//! map and each key's current keyring sits behind an `ArcSwap`.
//!
//! It knows nothing of HTTP, gRPC, JSON, tokens or audit; it is handed a
//! `Storage` (in production the sealed barrier) and never touches files itself.

mod batch;
mod error;
mod keys;
mod ops;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

pub use batch::{BatchResult, PARALLEL_BATCH_THRESHOLD};
pub use error::EngineError;
pub use keys::{ImportPayload, KeysConfig, MAX_KEY_NAME_LEN, RestoreRequest, validate_key_name};
pub use ops::{
    Datakey, DatakeyRequest, MAX_RANDOM_BYTES, RewrapRequest, UpsertOptions, hash, random_bytes,
};

use crate::crypto::asymmetric::PrivateKey;
use crate::keyring::Keyring;
use crate::storage::Storage;

/// Tunables of an engine (one per mount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// Rotate a key automatically when its latest version has performed this
    /// many encryptions (random-nonce AES-GCM is safe for about 2^32 per key).
    /// `None` disables.
    pub rotate_after_encryptions: Option<u64>,
    /// Largest accepted batch.
    pub max_batch_items: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            // 2^32 minus a margin of 2^28 for encryptions in flight and for
            // counts lost between counter flushes.
            rotate_after_encryptions: Some((1u64 << 32) - (1u64 << 28)),
            max_batch_items: 100_000,
        }
    }
}

/// One cached key: its current keyring and the lock that orders its writes.
struct KeyHandle {
    current: ArcSwap<Keyring>,
    write: Mutex<()>,
    /// Total encryptions as last persisted, to know when counters need a flush.
    persisted_encryptions: AtomicU64,
}

impl KeyHandle {
    fn new(keyring: Keyring) -> Self {
        let total = total_encryptions(&keyring);
        Self {
            current: ArcSwap::from_pointee(keyring),
            write: Mutex::new(()),
            persisted_encryptions: AtomicU64::new(total),
        }
    }
}

fn total_encryptions(keyring: &Keyring) -> u64 {
    keyring.versions().map(|v| v.encryptions()).sum()
}

/// The transit engine of one mount.
pub struct Engine {
    storage: Arc<dyn Storage>,
    prefix: String,
    options: EngineOptions,
    keys: papaya::HashMap<String, Arc<KeyHandle>>,
    disable_upsert: AtomicBool,
    wrapping_key: Mutex<Option<Arc<PrivateKey>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("prefix", &self.prefix)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the engine stored under `prefix` (e.g. `"transit/"`; must be empty
    /// or end with `/`) and loads every key into memory.
    pub fn open(
        storage: Arc<dyn Storage>,
        prefix: &str,
        options: EngineOptions,
    ) -> Result<Self, EngineError> {
        let engine = Self {
            storage,
            prefix: prefix.to_owned(),
            options,
            keys: papaya::HashMap::new(),
            disable_upsert: AtomicBool::new(false),
            wrapping_key: Mutex::new(None),
        };
        engine.load_config()?;
        engine.load_keys()?;
        Ok(engine)
    }

    /// The engine's options.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Number of keys in memory.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    fn key_path(&self, name: &str) -> String {
        format!("{}keys/{name}", self.prefix)
    }

    fn load_keys(&self) -> Result<(), EngineError> {
        use rayon::prelude::*;
        let names = self.storage.list(&format!("{}keys/", self.prefix))?;
        let loaded: Vec<Result<(String, Keyring), EngineError>> = names
            .par_iter()
            .filter(|name| !name.ends_with('/'))
            .map(|name| {
                let bytes = self.storage.get(&self.key_path(name))?;
                let Some(bytes) = bytes else {
                    return Err(EngineError::StoredKeyUnreadable {
                        name: name.clone(),
                        reason: "listed but absent".into(),
                    });
                };
                let keyring =
                    Keyring::from_bytes(&bytes).map_err(|e| EngineError::StoredKeyUnreadable {
                        name: name.clone(),
                        reason: e.to_string(),
                    })?;
                Ok((name.clone(), keyring))
            })
            .collect();
        let guard = self.keys.pin();
        for entry in loaded {
            let (name, keyring) = entry?;
            guard.insert(name, Arc::new(KeyHandle::new(keyring)));
        }
        Ok(())
    }

    /// Runs `f` on the current keyring of `name` without taking a lock.
    fn with_key<T>(&self, name: &str, f: impl FnOnce(&Keyring) -> T) -> Result<T, EngineError> {
        let guard = self.keys.guard();
        let handle = self
            .keys
            .get(name, &guard)
            .ok_or_else(|| EngineError::KeyNotFound {
                name: name.to_owned(),
            })?;
        let keyring = handle.current.load();
        Ok(f(&keyring))
    }

    fn handle(&self, name: &str) -> Option<Arc<KeyHandle>> {
        self.keys.pin().get(name).cloned()
    }

    /// Applies `change` to the key under its write lock, persists the result and
    /// publishes it. Nothing is published if the change or the write fails.
    fn mutate<T>(
        &self,
        name: &str,
        change: impl FnOnce(&Keyring) -> Result<(Keyring, T), EngineError>,
    ) -> Result<(Arc<Keyring>, T), EngineError> {
        let handle = self.handle(name).ok_or_else(|| EngineError::KeyNotFound {
            name: name.to_owned(),
        })?;
        let _write = handle.write.lock();
        let current = handle.current.load_full();
        let (next, extra) = change(&current)?;
        self.persist(&handle, &next)?;
        let next = Arc::new(next);
        handle.current.store(next.clone());
        Ok((next, extra))
    }

    fn persist(&self, handle: &KeyHandle, keyring: &Keyring) -> Result<(), EngineError> {
        let total = total_encryptions(keyring);
        let bytes = keyring.to_bytes();
        self.storage
            .put(&self.key_path(keyring.name()), bytes.expose_secret())?;
        handle.persisted_encryptions.store(total, Ordering::Relaxed);
        Ok(())
    }

    /// Writes the encryption counters of every key whose counts changed since
    /// the last write. The server calls this periodically and on shutdown.
    pub fn flush_counters(&self) -> Result<usize, EngineError> {
        let handles: Vec<Arc<KeyHandle>> = self.keys.pin().iter().map(|(_, v)| v.clone()).collect();
        let mut flushed = 0;
        for handle in handles {
            let _write = handle.write.lock();
            let current = handle.current.load_full();
            if total_encryptions(&current) != handle.persisted_encryptions.load(Ordering::Relaxed) {
                self.persist(&handle, &current)?;
                flushed += 1;
            }
        }
        Ok(flushed)
    }

    /// Rotates every key whose `auto_rotate_period` has elapsed; returns the names
    /// rotated. The server calls this periodically.
    pub fn rotate_due_keys(&self, now_unix_nanos: i128) -> Result<Vec<String>, EngineError> {
        let due: Vec<String> = self
            .keys
            .pin()
            .iter()
            .filter(|(_, h)| h.current.load().needs_auto_rotation(now_unix_nanos))
            .map(|(k, _)| k.clone())
            .collect();
        let mut rotated = Vec::new();
        for name in due {
            let outcome = self.mutate(&name, |k| {
                if k.needs_auto_rotation(now_unix_nanos) {
                    Ok((k.rotate()?, true))
                } else {
                    Ok((k.clone(), false))
                }
            });
            match outcome {
                Ok((_, true)) => rotated.push(name),
                Ok((_, false)) | Err(EngineError::KeyNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(rotated)
    }

    /// Rotates `name` if its latest version has reached the encryption limit.
    fn rotate_if_exhausted(&self, name: &str) {
        let Some(limit) = self.options.rotate_after_encryptions else {
            return;
        };
        let outcome = self.mutate(name, |k| {
            let exhausted = k
                .version(k.latest_version())
                .is_some_and(|v| v.encryptions() >= limit);
            if exhausted {
                Ok((k.rotate()?, true))
            } else {
                Ok((k.clone(), false))
            }
        });
        match outcome {
            Ok((keyring, true)) => tracing::warn!(
                key = name,
                version = keyring.latest_version(),
                "key rotated automatically: the previous version reached its encryption limit"
            ),
            Ok((_, false)) => {}
            Err(error) => {
                tracing::error!(key = name, %error, "automatic rotation at the encryption limit failed")
            }
        }
    }
}

impl Engine {
    /// True when `name` exists (a lock-free lookup).
    pub fn has_key(&self, name: &str) -> bool {
        self.keys.pin().contains_key(name)
    }
}
