//! Errors of the keyring layer. Display texts are Vault's own messages (reference
//! §4–§5), so the REST adapter can pass them through unchanged; none carries
//! plaintext, ciphertext or key bytes.

use thiserror::Error;

use super::KeyType;
use crate::crypto::CryptoError;
use crate::crypto::format::FormatError;

/// Which operation asked for a key version that is out of bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionUse {
    /// Encrypt / datakey / rewrap target.
    Encryption,
    /// Sign.
    Signing,
}

impl VersionUse {
    fn word(self) -> &'static str {
        match self {
            Self::Encryption => "encryption",
            Self::Signing => "signing",
        }
    }
}

/// What kind of versioned string was malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoded {
    /// A `vault:vN:` ciphertext.
    Ciphertext,
    /// A `vault:vN:` signature.
    Signature,
    /// A `vault:vN:` HMAC.
    Hmac,
}

/// Whether an error is the caller's fault (HTTP 400) or the server's (500), as
/// Vault classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Bad input: Vault answers 400.
    User,
    /// Vault answers 500 (internal or "plain" errors, some of them quirks).
    Internal,
}

/// Why a keyring operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// `associated_data` on a non-AEAD key.
    #[error("associated_data provided for non-AEAD cipher suite {0}")]
    AssociatedDataNotSupported(KeyType),
    /// An AEAD tag, or another integrity check, failed.
    #[error("cipher: message authentication failed")]
    AuthenticationFailed,
    /// The auto-rotation period is positive but under an hour.
    #[error("auto rotate period must be 0 to disable or at least an hour")]
    AutoRotatePeriodTooShort,
    /// The backup blob could not be read.
    #[error("invalid backup: {0}")]
    BackupInvalid(&'static str),
    /// Backup needs both `exportable` and `allow_plaintext_backup`.
    #[error("{0}")]
    BackupNotAllowed(&'static str),
    /// The ciphertext is shorter than the nonce and tag.
    #[error("invalid ciphertext length")]
    CiphertextTooShort,
    /// `min_*_version` values that contradict each other or the key.
    #[error("{0}")]
    ConfigInvalid(String),
    /// Convergent encryption without derivation.
    #[error("convergent encryption requires derivation to be enabled")]
    ConvergentRequiresDerivation,
    /// Convergent encryption on a type that cannot do it.
    #[error("convergent encryption not supported for keys of type {0}")]
    ConvergentNotSupported(KeyType),
    /// A primitive failed for a reason other than authentication.
    #[error("{0}")]
    Crypto(CryptoError),
    /// Decryption on a type that cannot decrypt.
    #[error("message decryption not supported for key type {0}")]
    DecryptionNotSupported(KeyType),
    /// Deleting a key whose `deletion_allowed` is false.
    #[error("deletion is not allowed for this key")]
    DeletionNotAllowed,
    /// Derivation on a type that cannot do it.
    #[error("key derivation and convergent encryption not supported for keys of type {0}")]
    DerivationNotSupported(KeyType),
    /// Encryption on a type that cannot encrypt.
    #[error("message encryption not supported for key type {0}")]
    EncryptionNotSupported(KeyType),
    /// An export the key type cannot produce (Vault answers 500).
    #[error("{0}")]
    ExportUnsupported(String),
    /// An export request that the key or its type does not allow.
    #[error("{0}")]
    ExportNotAllowed(String),
    /// `hash_algorithm=none` without `prehashed` and PKCS#1 v1.5.
    #[error("hash_algorithm=none requires both prehashed=true and signature_algorithm=pkcs1v15")]
    HashNoneRequiresPkcs1Prehashed,
    /// HMAC generation with a version below `min_encryption_version`.
    #[error("cannot generate HMAC: version is too old (disallowed by policy)")]
    HmacVersionTooOld,
    /// HMAC generation with a version above the latest.
    #[error("key version does not exist; latest key version is {latest}")]
    HmacVersionMissing {
        /// The key's latest version.
        latest: u32,
    },
    /// Imported key material of the wrong size or encoding for the type.
    #[error("error importing key: {0}")]
    ImportInvalid(String),
    /// Rotating an imported key that does not allow it.
    #[error("imported key {0} does not allow rotation within Vault")]
    ImportedKeyRotationNotAllowed(String),
    /// A key-size option on a type that has none, or out of range.
    #[error("{0}")]
    KeySizeInvalid(String),
    /// A ciphertext, signature or HMAC string that is malformed.
    #[error("{}", malformed_message(*.0, *.1))]
    Malformed(Encoded, FormatError),
    /// A derived key used without a context.
    #[error(
        "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key"
    )]
    MissingContext,
    /// The requested key version was trimmed or never existed.
    #[error("no such key version")]
    NoSuchVersion,
    /// The operation needs a private key the version lacks (public-only import).
    #[error("key version {0} has no private key material")]
    PublicKeyOnly(u32),
    /// RSA decryption failed (Vault classifies it as internal).
    #[error("failed to RSA decrypt the ciphertext: {0}")]
    RsaDecrypt(CryptoError),
    /// RSA encryption failed, e.g. a plaintext too long for OAEP.
    #[error("failed to RSA encrypt the plaintext: {0}")]
    RsaEncrypt(CryptoError),
    /// Signing on a type that cannot sign.
    #[error("key type {0} does not support signing")]
    SigningNotSupported(KeyType),
    /// A trim that breaks one of Vault's rules.
    #[error("{0}")]
    TrimInvalid(&'static str),
    /// Verification on a type that cannot verify.
    #[error("key type {0} does not support verification")]
    VerificationNotSupported(KeyType),
    /// An explicit key version outside the allowed window.
    #[error("requested version for {} is {}", .0.word(), .1)]
    VersionOutOfRange(VersionUse, &'static str),
    /// A ciphertext/signature/HMAC from a version newer than the latest.
    #[error("{}", too_new_message(*.0))]
    VersionTooNew(Encoded),
    /// A ciphertext/signature/HMAC from below `min_decryption_version`.
    #[error("{}", too_old_message(*.0))]
    VersionTooOld(Encoded),
}

impl KeyringError {
    /// Vault's status class for this error (reference §4–§5; quirks noted there).
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::BackupInvalid(_)
            | Self::BackupNotAllowed(_)
            | Self::Crypto(
                CryptoError::AuthenticationFailed
                | CryptoError::RsaDecryptionFailed
                | CryptoError::CiphertextTooShort
                | CryptoError::InvalidKeyLength { .. }
                | CryptoError::InvalidNonceLength { .. }
                | CryptoError::InvalidKeyEncoding(_)
                | CryptoError::MessageTooLong
                | CryptoError::InvalidSaltLength(_)
                | CryptoError::PublicKeyOnly
                | CryptoError::InvalidOutputLength(_)
                | CryptoError::KeyGeneration
                | CryptoError::SigningFailed,
            )
            | Self::DerivationNotSupported(_)
            | Self::ExportUnsupported(_)
            | Self::ImportInvalid(_)
            | Self::ImportedKeyRotationNotAllowed(_)
            | Self::PublicKeyOnly(_)
            | Self::RsaDecrypt(_)
            | Self::RsaEncrypt(_) => ErrorClass::Internal,
            Self::AssociatedDataNotSupported(_)
            | Self::AuthenticationFailed
            | Self::AutoRotatePeriodTooShort
            | Self::CiphertextTooShort
            | Self::ConfigInvalid(_)
            | Self::ConvergentRequiresDerivation
            | Self::ConvergentNotSupported(_)
            | Self::Crypto(
                CryptoError::MalformedSignature
                | CryptoError::UnsupportedHash(_)
                | CryptoError::InvalidDigestLength { .. },
            )
            | Self::DecryptionNotSupported(_)
            | Self::DeletionNotAllowed
            | Self::EncryptionNotSupported(_)
            | Self::ExportNotAllowed(_)
            | Self::HashNoneRequiresPkcs1Prehashed
            | Self::HmacVersionTooOld
            | Self::HmacVersionMissing { .. }
            | Self::KeySizeInvalid(_)
            | Self::Malformed(..)
            | Self::MissingContext
            | Self::NoSuchVersion
            | Self::SigningNotSupported(_)
            | Self::TrimInvalid(_)
            | Self::VerificationNotSupported(_)
            | Self::VersionOutOfRange(..)
            | Self::VersionTooNew(_)
            | Self::VersionTooOld(_) => ErrorClass::User,
        }
    }
}

impl From<CryptoError> for KeyringError {
    fn from(err: CryptoError) -> Self {
        match err {
            CryptoError::AuthenticationFailed => Self::AuthenticationFailed,
            CryptoError::CiphertextTooShort => Self::CiphertextTooShort,
            other => Self::Crypto(other),
        }
    }
}

fn malformed_message(what: Encoded, err: FormatError) -> String {
    match (what, err) {
        (Encoded::Ciphertext, e) => format!("invalid ciphertext: {e}"),
        (Encoded::Signature, FormatError::BadBase64) => "invalid base64 signature value".to_owned(),
        (Encoded::Signature, e) => format!("invalid signature: {e}"),
        (Encoded::Hmac, FormatError::NoPrefix) => "invalid HMAC to verify: no prefix".to_owned(),
        (Encoded::Hmac, FormatError::BadBase64) => {
            "unable to decode verification HMAC as base64".to_owned()
        }
        (Encoded::Hmac, e) => format!("invalid HMAC: {e}"),
    }
}

fn too_new_message(what: Encoded) -> &'static str {
    match what {
        Encoded::Ciphertext => "invalid ciphertext: version is too new",
        Encoded::Signature => "invalid signature: version is too new",
        Encoded::Hmac => "invalid HMAC: version is too new",
    }
}

fn too_old_message(what: Encoded) -> &'static str {
    match what {
        Encoded::Ciphertext | Encoded::Signature => {
            "ciphertext or signature version is disallowed by policy (too old)"
        }
        Encoded::Hmac => "cannot verify HMAC: version is too old (disallowed by policy)",
    }
}
