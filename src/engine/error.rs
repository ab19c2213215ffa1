//! Errors of the engine layer.

use thiserror::Error;

use crate::keyring::KeyringError;
use crate::storage::StorageError;

/// Why an engine request failed as a whole (per-item batch failures are
/// [`KeyringError`]s inside the batch result instead).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EngineError {
    /// An empty `batch_input`.
    #[error("missing batch input to process")]
    BatchEmpty,
    /// A batch larger than the configured limit.
    #[error("batch of {got} items exceeds the limit of {limit}")]
    BatchTooLarge {
        /// Items sent.
        got: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// `context` present in some batch items but not all.
    #[error("context should be set either in all the request blocks or in none")]
    BatchContextMixed,
    /// A datakey size other than 128, 256 or 512 bits.
    #[error("invalid bit length")]
    InvalidBitLength,
    /// A random-bytes request outside 1..=131072.
    #[error("{0}")]
    RandomBytesOutOfRange(&'static str),
    /// A key name that cannot be used (empty, or containing `/`).
    #[error("key names cannot be paths")]
    InvalidKeyName,
    /// The key already exists (import, restore without force).
    #[error("key \"{name}\" already exists")]
    KeyExists {
        /// Key name.
        name: String,
    },
    /// The key does not exist. The adapter words the message per endpoint as
    /// Vault does ("encryption key not found", "signing key not found", ...).
    #[error("key \"{name}\" not found")]
    KeyNotFound {
        /// Key name.
        name: String,
    },
    /// The keyring refused the operation.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// A stored key record could not be read.
    #[error("stored key {name:?} could not be read: {reason}")]
    StoredKeyUnreadable {
        /// Key name.
        name: String,
        /// Why (no secret material).
        reason: String,
    },
    /// The storage backend failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Another node changed the key at the same time, repeatedly.
    #[error("key \"{name}\" was changed concurrently; retry the request")]
    WriteConflict {
        /// Key name.
        name: String,
    },
}
