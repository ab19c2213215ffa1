//! Pure cryptographic primitives: AEAD, signatures, HMAC and hashes, KDFs, key
//! wrapping, randomness, and Vault's `vault:v<N>:` string format.
//!
//! This layer does no I/O, has no async, knows nothing of HTTP, gRPC, JSON,
//! storage or key lifecycles. Every primitive here is tested against public
//! vectors (Wycheproof, RFCs) in `tests/vectors*.rs`. Key material is held in
//! [`SecretBytes`] or in library types that zeroize on drop, and nothing here
//! implements `Debug` in a way that prints it.

pub mod aead;
pub mod asymmetric;
pub mod error;
pub mod format;
pub mod hash;
pub mod kdf;
pub mod random;
pub mod secret;
pub mod wrap;

pub use error::CryptoError;
pub use hash::HashAlgorithm;
pub use secret::SecretBytes;
