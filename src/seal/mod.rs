//! Master key, Shamir unseal shares, and the barrier: the only holder of the master
//! and barrier keys.
//!
//! # States
//!
//! - **Not initialized**: no seal record in storage. No key anywhere.
//! - **Sealed**: a seal record exists (configuration in the clear, barrier keyring
//!   encrypted under the master key). No key in memory; only the shares submitted so
//!   far in the current unseal attempt, which [`SealManager::unseal_reset`] and
//!   [`SealManager::seal`] zeroize.
//! - **Unsealed**: the [`Barrier`] holds the master key and the barrier keyring.
//!
//! [`SealManager::init`] creates a random 32-byte master key and a first barrier
//! key, stores the record, splits the master key into shares and returns them; the
//! shares and the master key are never stored. As in Vault, `init` leaves the server
//! **sealed**. Unsealing collects shares one at a time; at the threshold it combines
//! them and tries to open the keyring with the result. A wrong combination is
//! detected there (AES-GCM authentication), resets progress, and leaves it sealed.
//!
//! Physical layout in the backend: `core/seal` (the seal record) and `data/...`
//! (barrier entries). Barrier users cannot reach `core/`.
//!
//! # What this layer does not do
//!
//! No HTTP, no JSON, no tokens: rendering shares as hex/base64, the root token and
//! the Vault response shapes belong to the layers above. No auto-unseal yet
//! ([`SealManager::unseal_with_master_key`] is the hook for it and for `--dev`).
//! The calls block on storage; async callers use a blocking thread.

pub mod barrier;
pub mod error;
mod record;
pub mod shamir;

pub use barrier::{Barrier, KeyStatus};
pub use error::{ConfigDefect, SealError, ShareDefect};

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine as _;
use parking_lot::Mutex;

use crate::crypto::SecretBytes;
use crate::storage::{Storage, StorageError};
use record::{KEY_LEN, Keyring, SEAL_PATH, SealRecord};

/// Shortest share the text form may decode to (Vault's minimum key length).
pub const MIN_SHARE_LEN: usize = 16;
/// Longest share the text form may decode to (a 32-byte key plus its x-coordinate).
pub const MAX_SHARE_LEN: usize = KEY_LEN + 1;

/// What `sys/seal-status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealStatus {
    /// A seal record exists.
    pub initialized: bool,
    /// No key is in memory.
    pub sealed: bool,
    /// Shares needed to unseal (Vault's `t`; 0 before init).
    pub threshold: u8,
    /// Shares handed out at init (Vault's `n`; 0 before init).
    pub shares: u8,
    /// Shares submitted in the current unseal attempt.
    pub progress: u8,
    /// Identifier of the current unseal attempt (a UUID), `""` when none.
    pub nonce: String,
    /// The active barrier key, when unsealed.
    pub key: Option<KeyStatus>,
    /// Cluster name (`vault-cluster-<8 hex>`), when unsealed.
    pub cluster_name: Option<String>,
    /// Cluster id (a UUID), when unsealed.
    pub cluster_id: Option<String>,
}

/// What `init` hands back: the unseal shares, in order. They exist nowhere else.
#[derive(Debug)]
pub struct InitOutput {
    /// The shares (33 bytes each, or the raw 32-byte master key when there is one
    /// share). Render each as hex and as base64 for `keys` / `keys_base64`.
    pub shares: Vec<SecretBytes>,
}

/// Owns the seal state of one server. `Send + Sync`; share it in an `Arc`.
pub struct SealManager {
    backend: Arc<dyn Storage>,
    barrier: Arc<Barrier>,
    state: Mutex<State>,
}

/// The mutable part, behind one lock so that unseal steps are serialised.
#[derive(Default)]
struct State {
    /// The non-secret part of the seal record, once known.
    config: Option<Config>,
    /// Shares of the current unseal attempt (zeroized on drop).
    pending: Vec<SecretBytes>,
    /// Current unseal attempt id, `""` when none.
    nonce: String,
}

#[derive(Clone)]
struct Config {
    shares: u8,
    threshold: u8,
    cluster_name: String,
    cluster_id: String,
}

impl From<&SealRecord> for Config {
    fn from(record: &SealRecord) -> Self {
        Self {
            shares: record.secret_shares,
            threshold: record.secret_threshold,
            cluster_name: record.cluster_name.clone(),
            cluster_id: record.cluster_id.clone(),
        }
    }
}

/// The storage `init_with_setup` hands out: the private barrier, remembering which
/// paths were written so that a failed init can remove them.
struct Recorder {
    barrier: Arc<Barrier>,
    written: Mutex<BTreeSet<String>>,
}

impl Storage for Recorder {
    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.barrier.get(path)
    }

    fn put(&self, path: &str, value: &[u8]) -> Result<(), StorageError> {
        self.written.lock().insert(path.to_owned());
        self.barrier.put(path, value)
    }

    fn delete(&self, path: &str) -> Result<(), StorageError> {
        self.barrier.delete(path)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.barrier.list(prefix)
    }

    fn compare_and_set(
        &self,
        path: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StorageError> {
        if new.is_some() {
            self.written.lock().insert(path.to_owned());
        }
        self.barrier.compare_and_set(path, expected, new)
    }
}

impl std::fmt::Debug for SealManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.status();
        f.debug_struct("SealManager")
            .field("initialized", &status.initialized)
            .field("sealed", &status.sealed)
            .field("progress", &status.progress)
            .finish_non_exhaustive()
    }
}

impl SealManager {
    /// A sealed manager over `backend`. Reads the seal record, if any (so a damaged
    /// record is reported here).
    pub fn new(backend: Arc<dyn Storage>) -> Result<Self, SealError> {
        let config = SealRecord::load(&*backend)?.map(|(record, _)| Config::from(&record));
        Ok(Self {
            barrier: Arc::new(Barrier::new(backend.clone())),
            backend,
            state: Mutex::new(State {
                config,
                ..State::default()
            }),
        })
    }

    /// The barrier: an encrypting [`Storage`] that stays valid across seal and
    /// unseal and answers [`StorageError::Sealed`](crate::storage::StorageError::Sealed)
    /// while sealed. Coerces to `Arc<dyn Storage>`.
    pub fn barrier(&self) -> Arc<Barrier> {
        self.barrier.clone()
    }

    /// Current state, as `sys/seal-status` reports it.
    pub fn status(&self) -> SealStatus {
        self.status_locked(&self.state.lock())
    }

    /// Initializes: checks the parameters (Vault's limits), creates the master key
    /// and the first barrier key, stores the seal record, and returns the shares.
    /// Leaves the server sealed. Already initialized: [`SealError::AlreadyInitialized`].
    pub fn init(&self, secret_shares: u8, secret_threshold: u8) -> Result<InitOutput, SealError> {
        self.init_with_setup(secret_shares, secret_threshold, |_| Ok(()))
            .map(|(output, ())| output)
    }

    /// Like [`init`](Self::init), and also runs `setup` against a private barrier,
    /// unsealed with the new keys, before returning (the shared barrier stays sealed
    /// throughout, and the private one is sealed when `setup` returns). This is how
    /// the layer above stores what Vault creates at init, such as the root token.
    ///
    /// If `setup` fails, init is rolled back (best effort): the entries `setup` wrote
    /// and the seal record are deleted, since nobody will ever see these shares, and
    /// the error is returned. The store is then uninitialized again.
    pub fn init_with_setup<T>(
        &self,
        secret_shares: u8,
        secret_threshold: u8,
        setup: impl FnOnce(&Arc<dyn Storage>) -> Result<T, StorageError>,
    ) -> Result<(InitOutput, T), SealError> {
        shamir::check_config(secret_shares.into(), secret_threshold.into())
            .map_err(|defect| SealError::InvalidParameters { defect })?;
        // Held to the end: no unseal or second init interleaves with this one.
        let mut state = self.state.lock();
        self.refresh_config(&mut state)?;
        if state.config.is_some() {
            return Err(SealError::AlreadyInitialized);
        }
        let master = SecretBytes::random(KEY_LEN);
        let record = SealRecord::new(secret_shares, secret_threshold, &Keyring::first(), &master)?;
        let encoded = record.encode()?;
        let shares = shamir::split(master.expose_secret(), secret_shares, secret_threshold)?;
        if !self
            .backend
            .compare_and_set(SEAL_PATH, None, Some(&encoded))?
        {
            // Another node initialized this backend first.
            self.refresh_config(&mut state)?;
            return Err(SealError::AlreadyInitialized);
        }

        let private = Arc::new(Barrier::new(self.backend.clone()));
        let recorder = Arc::new(Recorder {
            barrier: private.clone(),
            written: Mutex::new(BTreeSet::new()),
        });
        let result = private.unseal(master).and_then(|()| {
            let storage: Arc<dyn Storage> = recorder.clone();
            setup(&storage).map_err(SealError::from)
        });
        match result {
            Ok(value) => {
                private.seal();
                state.config = Some(Config::from(&record));
                state.pending.clear();
                state.nonce.clear();
                Ok((InitOutput { shares }, value))
            }
            Err(err) => {
                // Best effort: the original error is what the caller needs to see.
                for path in recorder.written.lock().iter() {
                    let _ = private.delete(path);
                }
                private.seal();
                let _ = self
                    .backend
                    .compare_and_set(SEAL_PATH, Some(&encoded), None);
                Err(err)
            }
        }
    }

    /// Submits one share (raw bytes; see [`parse_share`] for the text forms).
    ///
    /// A share of the wrong length, with a bad index, or already submitted is
    /// refused with progress unchanged. At the threshold the shares are combined and
    /// the progress is cleared whatever happens next: if the result does not open the
    /// keyring the answer is [`SealError::WrongShares`] and the server stays sealed.
    /// Already unsealed: returns the status.
    pub fn unseal(&self, share: &[u8]) -> Result<SealStatus, SealError> {
        let mut state = self.state.lock();
        let config = self
            .refresh_config(&mut state)?
            .ok_or(SealError::NotInitialized)?;
        if !self.barrier.is_sealed() {
            return Ok(self.status_locked(&state));
        }
        let invalid = |defect| SealError::InvalidShare { defect };
        let expected = if config.shares == 1 {
            KEY_LEN
        } else {
            KEY_LEN + 1
        };
        if share.len() != expected {
            return Err(invalid(ShareDefect::LengthMismatch {
                expected,
                got: share.len(),
            }));
        }
        if config.shares > 1 {
            let index = share[KEY_LEN];
            if index == 0 {
                return Err(invalid(ShareDefect::ZeroIndex));
            }
            for pending in &state.pending {
                if pending.ct_eq(share) {
                    return Err(SealError::DuplicateShare);
                }
                if pending.expose_secret()[KEY_LEN] == index {
                    return Err(invalid(ShareDefect::IndexReused));
                }
            }
        }
        state.pending.push(SecretBytes::from_slice(share));
        if state.pending.len() == 1 {
            state.nonce = record::uuid_v4();
        }
        if state.pending.len() < usize::from(config.threshold) {
            return Ok(self.status_locked(&state));
        }
        let pending = std::mem::take(&mut state.pending);
        state.nonce.clear();
        let master = shamir::combine(&pending)?;
        drop(pending);
        self.barrier.unseal(master)?;
        Ok(self.status_locked(&state))
    }

    /// Unseals with the master key itself: for `--dev` (one share, which is the
    /// key) and a future auto-unseal. Clears any unseal progress on success.
    pub fn unseal_with_master_key(&self, key: &[u8]) -> Result<SealStatus, SealError> {
        let mut state = self.state.lock();
        self.refresh_config(&mut state)?
            .ok_or(SealError::NotInitialized)?;
        if !self.barrier.is_sealed() {
            return Ok(self.status_locked(&state));
        }
        if key.len() != KEY_LEN {
            return Err(SealError::InvalidShare {
                defect: ShareDefect::LengthMismatch {
                    expected: KEY_LEN,
                    got: key.len(),
                },
            });
        }
        self.barrier.unseal(SecretBytes::from_slice(key))?;
        state.pending.clear();
        state.nonce.clear();
        Ok(self.status_locked(&state))
    }

    /// Discards (and zeroizes) the shares of the current unseal attempt. Returns the
    /// status. (Vault answers `400 vault is unsealed` to a reset while unsealed; the
    /// REST layer can tell from the status.)
    pub fn unseal_reset(&self) -> SealStatus {
        let mut state = self.state.lock();
        state.pending.clear();
        state.nonce.clear();
        self.status_locked(&state)
    }

    /// Seals: drops and zeroizes every key and any unseal progress. Sealing a sealed
    /// or uninitialized server is `Ok` (Vault answers 204 there too).
    pub fn seal(&self) -> Result<(), SealError> {
        let mut state = self.state.lock();
        state.pending.clear();
        state.nonce.clear();
        self.barrier.seal();
        Ok(())
    }

    /// Rotates the barrier key (`sys/rotate`): adds a term that new writes use; old
    /// entries keep opening with theirs. Returns the new term.
    pub fn rotate(&self) -> Result<u32, SealError> {
        self.barrier.rotate()
    }

    /// Reads the seal record if this manager has not seen one yet (another node, or
    /// another manager over the same backend, may have initialized it).
    fn refresh_config(&self, state: &mut State) -> Result<Option<Config>, SealError> {
        if state.config.is_none() {
            state.config =
                SealRecord::load(&*self.backend)?.map(|(record, _)| Config::from(&record));
        }
        Ok(state.config.clone())
    }

    fn status_locked(&self, state: &State) -> SealStatus {
        let key = self.barrier.key_status();
        let sealed = key.is_none();
        let config = state.config.as_ref();
        let cluster =
            |field: fn(&Config) -> &String| config.filter(|_| !sealed).map(|c| field(c).clone());
        SealStatus {
            initialized: config.is_some(),
            sealed,
            threshold: config.map_or(0, |c| c.threshold),
            shares: config.map_or(0, |c| c.shares),
            // At most 255 shares are ever pending (threshold is a u8).
            progress: u8::try_from(state.pending.len()).unwrap_or(u8::MAX),
            nonce: state.nonce.clone(),
            key,
            cluster_name: cluster(|c| &c.cluster_name),
            cluster_id: cluster(|c| &c.cluster_id),
        }
    }
}

/// Decodes a share as `sys/unseal` receives it: hex first (when it decodes to a
/// plausible length), else standard base64, then Vault's length bounds
/// ([`MIN_SHARE_LEN`]..=[`MAX_SHARE_LEN`]).
pub fn parse_share(text: &str) -> Result<SecretBytes, SealError> {
    let invalid = |defect| SealError::InvalidShare { defect };
    let plausible = |len: usize| (MIN_SHARE_LEN..=MAX_SHARE_LEN).contains(&len);
    let bytes = match hex::decode(text) {
        Ok(bytes) if plausible(bytes.len()) => SecretBytes::new(bytes),
        other => {
            drop(other.map(SecretBytes::new));
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(SecretBytes::new)
                .map_err(|_| invalid(ShareDefect::Encoding))?
        }
    };
    if bytes.len() < MIN_SHARE_LEN {
        return Err(invalid(ShareDefect::TooShort { min: MIN_SHARE_LEN }));
    }
    if bytes.len() > MAX_SHARE_LEN {
        return Err(invalid(ShareDefect::TooLong { max: MAX_SHARE_LEN }));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    fn manager() -> (Arc<MemoryStorage>, SealManager) {
        let backend = Arc::new(MemoryStorage::new());
        let manager = SealManager::new(backend.clone()).expect("manager");
        (backend, manager)
    }

    #[test]
    fn sealed_barrier_holds_no_key_and_raw_store_has_none() {
        let (backend, manager) = manager();
        let out = manager.init(1, 1).expect("init");
        manager
            .unseal(out.shares[0].expose_secret())
            .expect("unseal");
        let barrier = manager.barrier();
        barrier.put("a/b", b"value").expect("put");
        let (master, barrier_key) = barrier.key_copies().expect("unsealed");
        for path in ["core/seal", "data/a/b"] {
            let raw = backend.get(path).expect("get").expect("present");
            for secret in [&master, &barrier_key] {
                assert!(!raw.windows(KEY_LEN).any(|w| secret.ct_eq(w)), "{path}");
            }
            assert!(!raw.windows(5).any(|w| w == b"value"));
        }
        manager.seal().expect("seal");
        assert!(barrier.key_copies().is_none());
        assert!(matches!(barrier.get("a/b"), Err(StorageError::Sealed)));
    }

    #[test]
    fn parse_share_follows_vault() {
        let share = [7u8; 33];
        let hex_form = hex::encode(share);
        let b64 = base64::engine::general_purpose::STANDARD.encode(share);
        assert_eq!(parse_share(&hex_form).expect("hex").expose_secret(), share);
        assert_eq!(parse_share(&b64).expect("b64").expose_secret(), share);
        let short = |e| {
            matches!(
                e,
                Err(SealError::InvalidShare {
                    defect: ShareDefect::TooShort { min: 16 }
                })
            )
        };
        assert!(short(parse_share("zzzz")));
        let long = base64::engine::general_purpose::STANDARD.encode([1u8; 36]);
        assert!(matches!(
            parse_share(&long),
            Err(SealError::InvalidShare {
                defect: ShareDefect::TooLong { max: 33 }
            })
        ));
        assert!(matches!(
            parse_share("not hex or base64!"),
            Err(SealError::InvalidShare {
                defect: ShareDefect::Encoding
            })
        ));
    }
}
