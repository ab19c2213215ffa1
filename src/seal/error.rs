//! The error type of the seal layer.
//!
//! Messages follow Vault's wording where the reference gives one (the REST layer
//! may pass them through), and never contain key material or share bytes.

use thiserror::Error;

use crate::storage::StorageError;

/// Why a seal operation (init, unseal, seal, rotate) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SealError {
    /// `init` on a store that already has a seal configuration.
    #[error("Vault is already initialized")]
    AlreadyInitialized,
    /// The same share was already submitted in this unseal attempt. Progress is
    /// unchanged. (Vault silently ignores such a share; the REST layer may map this
    /// to the current status to match.)
    #[error("this unseal key share was already submitted")]
    DuplicateShare,
    /// `secret_shares` / `secret_threshold` outside Vault's limits.
    #[error("invalid seal configuration: {defect}")]
    InvalidParameters {
        /// Which limit was broken.
        defect: ConfigDefect,
    },
    /// A share that cannot be part of this seal: bad encoding, wrong length, bad
    /// index. Progress is unchanged.
    #[error("invalid key: {defect}")]
    InvalidShare {
        /// What is wrong with the share.
        defect: ShareDefect,
    },
    /// No seal configuration in storage: `init` has not run.
    #[error("Vault is not initialized")]
    NotInitialized,
    /// The operation needs the barrier unsealed.
    #[error("Vault is sealed")]
    Sealed,
    /// The storage backend failed, or the stored seal record is damaged.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The shares combined into a key that does not open the stored keyring (wrong
    /// shares, or shares from different initialisations). Progress was reset and the
    /// barrier stays sealed.
    #[error(
        "unable to retrieve stored keys: invalid key: failed to decrypt keys from storage: \
         cipher: message authentication failed"
    )]
    WrongShares,
}

/// A `secret_shares` / `secret_threshold` combination Vault refuses (reference §9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigDefect {
    /// `secret_shares` is zero.
    #[error("shares must be at least one")]
    SharesTooFew,
    /// `secret_shares` is above 255.
    #[error("shares must be less than 256")]
    SharesTooMany,
    /// `secret_threshold` is above `secret_shares`.
    #[error("threshold cannot be larger than shares")]
    ThresholdAboveShares,
    /// `secret_threshold` is one while `secret_shares` is more than one.
    #[error("threshold must be greater than one for multiple shares")]
    ThresholdOneWithManyShares,
    /// `secret_threshold` is zero.
    #[error("threshold must be at least one")]
    ThresholdTooFew,
    /// `secret_threshold` is above 255.
    #[error("threshold must be less than 256")]
    ThresholdTooMany,
}

/// What is wrong with an unseal share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ShareDefect {
    /// The text is neither hex nor standard base64.
    #[error("'key' must be a valid hex or base64 string")]
    Encoding,
    /// A different share with the same x-coordinate (index) was already submitted.
    #[error("a different share with the same index was already submitted")]
    IndexReused,
    /// The share does not have the length this seal's shares have.
    #[error("key is {got} bytes, expected {expected}")]
    LengthMismatch {
        /// The length shares of this seal have.
        expected: usize,
        /// The length submitted.
        got: usize,
    },
    /// No shares were given to combine.
    #[error("no shares to combine")]
    NoShares,
    /// The decoded share is longer than any share can be.
    #[error("key is longer than maximum {max} bytes")]
    TooLong {
        /// The maximum.
        max: usize,
    },
    /// The decoded share is shorter than any share can be.
    #[error("key is shorter than minimum {min} bytes")]
    TooShort {
        /// The minimum.
        min: usize,
    },
    /// The share's x-coordinate is zero, which Shamir's scheme never hands out.
    #[error("share index is zero")]
    ZeroIndex,
}
