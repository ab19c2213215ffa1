//! The key types cipherd supports and what each can do (reference §7).

use std::fmt;
use std::str::FromStr;

use crate::crypto::aead::AeadAlgorithm;
use crate::crypto::asymmetric::AsymmetricAlgorithm;

/// A key type by its Vault name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// AES-128-GCM with 96-bit random nonces.
    Aes128Gcm96,
    /// AES-256-GCM with 96-bit random nonces (the default).
    Aes256Gcm96,
    /// ChaCha20-Poly1305.
    ChaCha20Poly1305,
    /// XChaCha20-Poly1305 (OpenBao's addition).
    XChaCha20Poly1305,
    /// Ed25519 signatures.
    Ed25519,
    /// ECDSA over P-256.
    EcdsaP256,
    /// ECDSA over P-384.
    EcdsaP384,
    /// ECDSA over P-521.
    EcdsaP521,
    /// RSA-2048 (OAEP encryption, PSS / PKCS#1 v1.5 signatures).
    Rsa2048,
    /// RSA-3072.
    Rsa3072,
    /// RSA-4096.
    Rsa4096,
    /// A bare HMAC key of 32..=512 bytes.
    Hmac,
}

/// What kind of material a key type holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// A symmetric AEAD key.
    Aead(AeadAlgorithm),
    /// An asymmetric key pair.
    Asymmetric(AsymmetricAlgorithm),
    /// Only an HMAC key.
    Hmac,
}

/// The type name is not one cipherd knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key type {0}")]
pub struct UnknownKeyType(pub String);

impl KeyType {
    /// Every key type, in a stable order.
    pub const ALL: [KeyType; 12] = [
        Self::Aes128Gcm96,
        Self::Aes256Gcm96,
        Self::ChaCha20Poly1305,
        Self::XChaCha20Poly1305,
        Self::Ed25519,
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::EcdsaP521,
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
        Self::Hmac,
    ];

    /// Vault's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes128Gcm96 => "aes128-gcm96",
            Self::Aes256Gcm96 => "aes256-gcm96",
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
            Self::XChaCha20Poly1305 => "xchacha20-poly1305",
            Self::Ed25519 => "ed25519",
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::EcdsaP521 => "ecdsa-p521",
            Self::Rsa2048 => "rsa-2048",
            Self::Rsa3072 => "rsa-3072",
            Self::Rsa4096 => "rsa-4096",
            Self::Hmac => "hmac",
        }
    }

    /// The family and algorithm of the key material.
    pub fn family(self) -> KeyFamily {
        match self {
            Self::Aes128Gcm96 => KeyFamily::Aead(AeadAlgorithm::Aes128Gcm),
            Self::Aes256Gcm96 => KeyFamily::Aead(AeadAlgorithm::Aes256Gcm),
            Self::ChaCha20Poly1305 => KeyFamily::Aead(AeadAlgorithm::ChaCha20Poly1305),
            Self::XChaCha20Poly1305 => KeyFamily::Aead(AeadAlgorithm::XChaCha20Poly1305),
            Self::Ed25519 => KeyFamily::Asymmetric(AsymmetricAlgorithm::Ed25519),
            Self::EcdsaP256 => KeyFamily::Asymmetric(AsymmetricAlgorithm::EcdsaP256),
            Self::EcdsaP384 => KeyFamily::Asymmetric(AsymmetricAlgorithm::EcdsaP384),
            Self::EcdsaP521 => KeyFamily::Asymmetric(AsymmetricAlgorithm::EcdsaP521),
            Self::Rsa2048 => KeyFamily::Asymmetric(AsymmetricAlgorithm::Rsa2048),
            Self::Rsa3072 => KeyFamily::Asymmetric(AsymmetricAlgorithm::Rsa3072),
            Self::Rsa4096 => KeyFamily::Asymmetric(AsymmetricAlgorithm::Rsa4096),
            Self::Hmac => KeyFamily::Hmac,
        }
    }

    /// True for RSA types.
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096)
    }

    /// True for the AEAD types.
    pub fn is_aead(self) -> bool {
        matches!(self.family(), KeyFamily::Aead(_))
    }

    /// Encrypt/decrypt support (AEAD and RSA).
    pub fn supports_encryption(self) -> bool {
        self.is_aead() || self.is_rsa()
    }

    /// Sign/verify support (Ed25519, ECDSA, RSA).
    pub fn supports_signing(self) -> bool {
        matches!(self.family(), KeyFamily::Asymmetric(_))
    }

    /// Per-request key derivation support (AEAD and Ed25519).
    pub fn supports_derivation(self) -> bool {
        self.is_aead() || self == Self::Ed25519
    }

    /// Convergent encryption support (AEAD only).
    pub fn supports_convergent(self) -> bool {
        self.is_aead()
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyType {
    type Err = UnknownKeyType;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| UnknownKeyType(name.to_owned()))
    }
}
