//! The barrier: a [`Storage`] decorator that encrypts every value.
//!
//! # Entry format
//!
//! A logical path `p` is stored at physical path `data/p` in the backend as
//!
//! ```text
//! 0x01 (format) | term u32 BE | nonce (12) | AES-256-GCM ciphertext | tag (16)
//! ```
//!
//! with associated data `0x01 | term | p`, so an entry copied or moved to another
//! path, or relabelled with another term, fails to open. Any entry that fails to
//! open is a [`StorageError::Corrupt`] naming its path; nothing is ever skipped.
//!
//! # Keys
//!
//! The barrier keyring (every term of the barrier key) is sealed under the master
//! key in the seal record (see `record.rs`). Rotation adds a term; old entries
//! keep opening with their own term and are never re-encrypted. A term this node
//! does not know (another node rotated) makes the barrier reload the keyring once.
//!
//! While sealed the barrier holds no key, and every call answers
//! [`StorageError::Sealed`] without touching the backend. Sealing drops the keys
//! (all [`SecretBytes`], zeroized on drop) and waits for calls in flight, so once
//! [`Barrier::seal`] returns no call is using a key. AES key schedules are
//! expanded per call and never cached, so none outlives the call (ring does not
//! zeroize them; see `crypto::aead`).

use std::sync::Arc;

use parking_lot::RwLock;
use zeroize::Zeroizing;

use super::SealError;
use super::record::{KEY_LEN, Keyring, KeyringOpenError, SEAL_PATH, SealRecord};
use crate::crypto::SecretBytes;
use crate::crypto::aead::{AeadAlgorithm, AeadKey, TAG_LEN};
use crate::crypto::secret::ct_eq;
use crate::storage::{Storage, StorageError, check_path, check_prefix};

/// Backend prefix of every barrier entry.
pub(crate) const DATA_PREFIX: &str = "data/";

const ENTRY_FORMAT: u8 = 1;
const ENTRY_HEADER_LEN: usize = 1 + 4;
const GCM_NONCE_LEN: usize = 12;
/// How many times `rotate` retries when another writer changed the seal record.
const ROTATE_ATTEMPTS: usize = 16;

/// Status of the active barrier key (Vault's `sys/key-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyStatus {
    /// The active term: new writes are encrypted under it.
    pub term: u32,
    /// When that term was installed, in Unix seconds.
    pub installed_unix: u64,
}

/// Encrypting [`Storage`] over a backend. One `Arc<Barrier>` stays valid across
/// seal and unseal; it answers [`StorageError::Sealed`] while sealed.
pub struct Barrier {
    inner: Arc<dyn Storage>,
    keys: RwLock<Option<Keys>>,
}

/// Everything the unsealed barrier holds.
struct Keys {
    master: SecretBytes,
    keyring: Keyring,
}

/// Why one attempt at an operation did not finish.
enum Failure {
    Storage(StorageError),
    /// An entry under a term this keyring does not have: reload and retry once.
    UnknownTerm {
        path: String,
    },
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("sealed", &self.is_sealed())
            .finish_non_exhaustive()
    }
}

impl Barrier {
    /// A sealed barrier over `inner`.
    pub(crate) fn new(inner: Arc<dyn Storage>) -> Self {
        Self {
            inner,
            keys: RwLock::new(None),
        }
    }

    /// True while the barrier holds no key.
    pub fn is_sealed(&self) -> bool {
        self.keys.read().is_none()
    }

    /// The active barrier key term and its install time, when unsealed.
    pub fn key_status(&self) -> Option<KeyStatus> {
        let keys = self.keys.read();
        let keyring = &keys.as_ref()?.keyring;
        let active = keyring.active()?;
        Some(KeyStatus {
            term: keyring.active_term(),
            installed_unix: active.installed_unix(),
        })
    }

    /// Opens the stored keyring with `master` and holds both. Already unsealed: no-op.
    pub(crate) fn unseal(&self, master: SecretBytes) -> Result<(), SealError> {
        let mut keys = self.keys.write();
        if keys.is_some() {
            return Ok(());
        }
        if master.len() != KEY_LEN {
            return Err(SealError::WrongShares);
        }
        let (record, _) = SealRecord::load(&*self.inner)?.ok_or(SealError::NotInitialized)?;
        let keyring = Keyring::open(&master, &record.keyring).map_err(|e| match e {
            KeyringOpenError::WrongKey => SealError::WrongShares,
            KeyringOpenError::Malformed => corrupt(SEAL_PATH).into(),
        })?;
        *keys = Some(Keys { master, keyring });
        Ok(())
    }

    /// Drops (and so zeroizes) every key. Waits for calls in flight.
    pub(crate) fn seal(&self) {
        *self.keys.write() = None;
    }

    /// Adds a new barrier key term and makes it active; returns the new term. The
    /// new keyring is stored (durably) before any entry is written under it.
    pub(crate) fn rotate(&self) -> Result<u32, SealError> {
        let mut guard = self.keys.write();
        let keys = guard.as_mut().ok_or(SealError::Sealed)?;
        for _ in 0..ROTATE_ATTEMPTS {
            let (mut record, raw) =
                SealRecord::load(&*self.inner)?.ok_or(SealError::NotInitialized)?;
            // Start from the stored keyring: another node may have rotated already.
            let mut keyring =
                Keyring::open(&keys.master, &record.keyring).map_err(|_| corrupt(SEAL_PATH))?;
            let term = keyring.add_term()?;
            record.keyring = keyring.seal(&keys.master)?;
            if self
                .inner
                .compare_and_set(SEAL_PATH, Some(&raw), Some(&record.encode()?))?
            {
                keys.keyring = keyring;
                return Ok(term);
            }
        }
        Err(StorageError::backend(
            "rotate the barrier key",
            std::io::Error::other("the seal record kept changing concurrently"),
        )
        .into())
    }

    /// Re-reads the stored keyring (after another node rotated).
    fn reload_keyring(&self) -> Result<(), StorageError> {
        let mut guard = self.keys.write();
        let keys = guard.as_mut().ok_or(StorageError::Sealed)?;
        let (record, _) = SealRecord::load(&*self.inner)?.ok_or_else(|| corrupt(SEAL_PATH))?;
        keys.keyring =
            Keyring::open(&keys.master, &record.keyring).map_err(|_| corrupt(SEAL_PATH))?;
        Ok(())
    }

    /// Runs `op` with the keys; on an unknown term, reloads the keyring and runs it
    /// once more. The read lock is held for the whole call, so `seal` waits for it.
    fn with_keys<T>(&self, op: impl Fn(&Keys) -> Result<T, Failure>) -> Result<T, StorageError> {
        let attempt = || {
            let guard = self.keys.read();
            let keys = guard.as_ref().ok_or(StorageError::Sealed)?;
            op(keys)
        };
        match attempt() {
            Err(Failure::UnknownTerm { .. }) => self.reload_keyring()?,
            other => return other.map_err(Failure::into_storage),
        }
        attempt().map_err(Failure::into_storage)
    }
}

#[cfg(test)]
impl Barrier {
    /// Test hook: copies of the master key and the active barrier key, if unsealed.
    pub(super) fn key_copies(&self) -> Option<(SecretBytes, SecretBytes)> {
        let keys = self.keys.read();
        let keys = keys.as_ref()?;
        Some((
            keys.master.duplicate(),
            keys.keyring.active()?.key().duplicate(),
        ))
    }
}

impl Failure {
    fn into_storage(self) -> StorageError {
        match self {
            Self::Storage(e) => e,
            Self::UnknownTerm { path } => StorageError::Corrupt { path },
        }
    }
}

impl Keys {
    /// Encrypts `value` for `path` under the active term.
    fn seal_entry(&self, path: &str, value: &[u8]) -> Result<Vec<u8>, StorageError> {
        let term = self.keyring.active_term();
        let key = self.keyring.active().ok_or_else(|| corrupt(SEAL_PATH))?;
        let cipher = AeadKey::new(AeadAlgorithm::Aes256Gcm, key.key().expose_secret())
            .map_err(|_| corrupt(SEAL_PATH))?;
        let mut header = [0u8; ENTRY_HEADER_LEN];
        header[0] = ENTRY_FORMAT;
        header[1..].copy_from_slice(&term.to_be_bytes());
        // Exact capacity: the plaintext is copied into `out` and encrypted in place,
        // so no reallocation may leave a plaintext copy behind.
        let mut out = Vec::with_capacity(ENTRY_HEADER_LEN + GCM_NONCE_LEN + value.len() + TAG_LEN);
        out.extend_from_slice(&header);
        cipher.seal_with_random_nonce(&entry_aad(&header, path), value, &mut out);
        Ok(out)
    }

    /// Decrypts the stored entry `raw` of `path`.
    fn open_entry(&self, path: &str, raw: &[u8]) -> Result<Zeroizing<Vec<u8>>, Failure> {
        let Some((header, body)) = raw.split_at_checked(ENTRY_HEADER_LEN) else {
            return Err(corrupt(path).into());
        };
        if header[0] != ENTRY_FORMAT {
            return Err(corrupt(path).into());
        }
        let mut term = [0u8; 4];
        term.copy_from_slice(&header[1..]);
        let Some(key) = self.keyring.term(u32::from_be_bytes(term)) else {
            return Err(Failure::UnknownTerm {
                path: path.to_owned(),
            });
        };
        let cipher = AeadKey::new(AeadAlgorithm::Aes256Gcm, key.key().expose_secret())
            .map_err(|_| corrupt(SEAL_PATH))?;
        cipher
            .open_prefixed(&entry_aad(header, path), body)
            .map(Zeroizing::new)
            .map_err(|_| corrupt(path).into())
    }
}

impl Storage for Barrier {
    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_path(path)?;
        self.with_keys(|keys| {
            let Some(raw) = self.inner.get(&physical(path))? else {
                return Ok(None);
            };
            let mut value = keys.open_entry(path, &raw)?;
            // Hand the buffer itself to the caller (no copy left behind).
            Ok(Some(std::mem::take(&mut *value)))
        })
    }

    fn put(&self, path: &str, value: &[u8]) -> Result<(), StorageError> {
        check_path(path)?;
        self.with_keys(|keys| {
            let sealed = keys.seal_entry(path, value)?;
            self.inner.put(&physical(path), &sealed)?;
            Ok(())
        })
    }

    fn delete(&self, path: &str) -> Result<(), StorageError> {
        check_path(path)?;
        self.with_keys(|_| Ok(self.inner.delete(&physical(path))?))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        check_prefix(prefix)?;
        self.with_keys(|_| Ok(self.inner.list(&physical(prefix))?))
    }

    fn compare_and_set(
        &self,
        path: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StorageError> {
        check_path(path)?;
        let physical = physical(path);
        self.with_keys(|keys| {
            let sealed_new = new.map(|value| keys.seal_entry(path, value)).transpose()?;
            // Compare plaintexts, then swap ciphertexts with the backend's own CAS; if
            // the ciphertext changed in between (a concurrent write), look again.
            loop {
                let current_raw = self.inner.get(&physical)?;
                let current = current_raw
                    .as_deref()
                    .map(|raw| keys.open_entry(path, raw))
                    .transpose()?;
                let matches = match (current.as_deref(), expected) {
                    (None, None) => true,
                    (Some(current), Some(expected)) => ct_eq(current, expected),
                    _ => false,
                };
                if !matches {
                    return Ok(false);
                }
                if self.inner.compare_and_set(
                    &physical,
                    current_raw.as_deref(),
                    sealed_new.as_deref(),
                )? {
                    return Ok(true);
                }
            }
        })
    }
}

/// Backend path of logical `path` (or list prefix).
fn physical(path: &str) -> String {
    let mut out = String::with_capacity(DATA_PREFIX.len() + path.len());
    out.push_str(DATA_PREFIX);
    out.push_str(path);
    out
}

/// Associated data of an entry: its header and logical path.
fn entry_aad(header: &[u8], path: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + path.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(path.as_bytes());
    aad
}

fn corrupt(path: &str) -> StorageError {
    StorageError::Corrupt {
        path: path.to_owned(),
    }
}
