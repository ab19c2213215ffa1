//! One version of a key: its secret material, the ready-to-use cipher built from
//! it, its per-version HMAC key, and its encryption counter.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::crypto::SecretBytes;
use crate::crypto::aead::{AeadAlgorithm, AeadKey};
use crate::crypto::asymmetric::{AsymmetricAlgorithm, PrivateKey, PublicKey};

use super::{KeyFamily, KeyType, KeyringError};

/// Convergent-encryption scheme version written for new versions (reference §8.4).
pub const CONVERGENT_VERSION: u8 = 3;

/// Length of the independent HMAC key every version of every type carries.
pub const HMAC_KEY_LEN: usize = 32;

/// The secret (or public-only) material of a version.
// Versions live behind `Arc`, so the size of the AEAD variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Material {
    /// An AEAD key: the raw bytes (for export and derivation) and the expanded
    /// cipher for non-derived use.
    Aead { raw: SecretBytes, cipher: AeadKey },
    /// An asymmetric key pair.
    Private(PrivateKey),
    /// Only the public half (public-key import): verify and RSA-encrypt only.
    Public(PublicKey),
    /// `type=hmac`: the version's HMAC key is the whole key.
    HmacOnly,
}

/// One version of a keyring.
pub struct KeyVersion {
    pub(crate) number: u32,
    /// Creation time, nanoseconds since the Unix epoch.
    pub(crate) created_unix_nanos: i128,
    pub(crate) material: Material,
    pub(crate) hmac_key: SecretBytes,
    pub(crate) convergent_version: u8,
    pub(crate) encryptions: AtomicU64,
}

impl fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVersion")
            .field("number", &self.number)
            .field("created_unix_nanos", &self.created_unix_nanos)
            .field("encryptions", &self.encryptions())
            .finish_non_exhaustive()
    }
}

impl KeyVersion {
    /// Fresh random material for `key_type`. `hmac_key_size` is the key size of
    /// `type=hmac` keys (ignored for other types).
    pub(crate) fn generate(
        number: u32,
        key_type: KeyType,
        hmac_key_size: usize,
        created_unix_nanos: i128,
    ) -> Result<Self, KeyringError> {
        let (material, hmac_key) = match key_type.family() {
            KeyFamily::Aead(alg) => (
                aead_material(alg, SecretBytes::random(alg.key_len()))?,
                SecretBytes::random(HMAC_KEY_LEN),
            ),
            KeyFamily::Asymmetric(alg) => (
                Material::Private(PrivateKey::generate(alg)?),
                SecretBytes::random(HMAC_KEY_LEN),
            ),
            KeyFamily::Hmac => (Material::HmacOnly, SecretBytes::random(hmac_key_size)),
        };
        Ok(Self::from_parts(
            number,
            created_unix_nanos,
            material,
            hmac_key,
            CONVERGENT_VERSION,
            0,
        ))
    }

    pub(crate) fn from_parts(
        number: u32,
        created_unix_nanos: i128,
        material: Material,
        hmac_key: SecretBytes,
        convergent_version: u8,
        encryptions: u64,
    ) -> Self {
        Self {
            number,
            created_unix_nanos,
            material,
            hmac_key,
            convergent_version,
            encryptions: AtomicU64::new(encryptions),
        }
    }

    /// The version number (1-based).
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Creation time in nanoseconds since the Unix epoch.
    pub fn created_unix_nanos(&self) -> i128 {
        self.created_unix_nanos
    }

    /// How many encryptions this version has performed (including ones restored
    /// from storage).
    pub fn encryptions(&self) -> u64 {
        self.encryptions.load(Ordering::Relaxed)
    }

    /// Counts `n` encryptions and returns the new total.
    pub(crate) fn count_encryptions(&self, n: u64) -> u64 {
        self.encryptions.fetch_add(n, Ordering::Relaxed) + n
    }

    /// The public key of an asymmetric version.
    pub fn public_key(&self) -> Option<PublicKey> {
        match &self.material {
            Material::Private(key) => Some(key.public_key()),
            Material::Public(key) => Some(key.clone()),
            Material::Aead { .. } | Material::HmacOnly => None,
        }
    }

    /// True when the private half is absent (public-key import).
    pub fn is_public_only(&self) -> bool {
        matches!(self.material, Material::Public(_))
    }
}

/// Builds AEAD material (raw bytes plus expanded cipher) from raw key bytes.
pub(crate) fn aead_material(
    alg: AeadAlgorithm,
    raw: SecretBytes,
) -> Result<Material, KeyringError> {
    let cipher = AeadKey::new(alg, raw.expose_secret())?;
    Ok(Material::Aead { raw, cipher })
}

/// Parses imported or stored private material for an asymmetric algorithm.
pub(crate) fn private_material(
    alg: AsymmetricAlgorithm,
    bytes: &[u8],
) -> Result<Material, KeyringError> {
    Ok(Material::Private(PrivateKey::from_storage_bytes(
        alg, bytes,
    )?))
}
