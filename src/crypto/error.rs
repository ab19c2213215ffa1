//! The error type of the crypto layer.
//!
//! Format errors name the defect; a failed authentication tag is one opaque
//! variant with one fixed message (the same text Vault uses), whatever the cause.

use thiserror::Error;

/// Why a primitive refused its input. Never carries secret bytes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// An AEAD tag, HMAC or key-unwrap integrity check failed. Deliberately opaque.
    #[error("cipher: message authentication failed")]
    AuthenticationFailed,
    /// An RSA decryption (OAEP) failed. Deliberately opaque (Manger's attack).
    #[error("crypto/rsa: decryption error")]
    RsaDecryptionFailed,
    /// The ciphertext is shorter than the nonce plus tag.
    #[error("invalid ciphertext length")]
    CiphertextTooShort,
    /// A key of the wrong length for the algorithm.
    #[error("invalid key size {got} bytes for {algorithm}")]
    InvalidKeyLength {
        /// Algorithm name.
        algorithm: &'static str,
        /// Length supplied.
        got: usize,
    },
    /// A nonce of the wrong length.
    #[error("invalid nonce length {got} for {algorithm}")]
    InvalidNonceLength {
        /// Algorithm name.
        algorithm: &'static str,
        /// Length supplied.
        got: usize,
    },
    /// Key material that could not be parsed (PKCS#8, PEM, SEC1, raw point...).
    #[error("invalid key encoding: {0}")]
    InvalidKeyEncoding(&'static str),
    /// A signature that is structurally malformed (bad DER, wrong length).
    #[error("supplied signature is invalid")]
    MalformedSignature,
    /// The message does not fit the RSA modulus with this padding.
    #[error("crypto/rsa: message too long for RSA key size")]
    MessageTooLong,
    /// The requested RSA-PSS salt length is out of range for the key.
    #[error("requested salt length {0} is invalid")]
    InvalidSaltLength(i64),
    /// A hash algorithm that cannot be used for this operation.
    #[error("unsupported hash algorithm {0} for this operation")]
    UnsupportedHash(&'static str),
    /// A prehashed digest whose length does not match the hash algorithm.
    #[error("prehashed input has length {got}, expected {expected}")]
    InvalidDigestLength {
        /// Length supplied.
        got: usize,
        /// Length required by the hash algorithm.
        expected: usize,
    },
    /// The operation needs a private key but only the public half is present.
    #[error("key version has no private key material")]
    PublicKeyOnly,
    /// A requested output length that the primitive cannot produce.
    #[error("invalid output length {0}")]
    InvalidOutputLength(usize),
    /// Key generation failed inside the underlying library.
    #[error("key generation failed")]
    KeyGeneration,
    /// Signing failed inside the underlying library.
    #[error("signing failed")]
    SigningFailed,
}
