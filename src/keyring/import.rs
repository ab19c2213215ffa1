//! BYOK import (reference §4.9, §4.10, §8.8): unwrapping the RSA-OAEP + AES-KWP
//! envelope and turning the key bytes into a keyring or a new version.

use crate::crypto::asymmetric::{PrivateKey, PublicKey};
use crate::crypto::wrap::aes_kwp_unwrap;
use crate::crypto::{HashAlgorithm, SecretBytes};

use super::version::{HMAC_KEY_LEN, KeyVersion, Material, aead_material};
use super::{
    CONVERGENT_VERSION, Kdf, KeyConfig, KeyFamily, KeyType, Keyring, KeyringError,
    MIN_AUTO_ROTATE_SECS, check_symmetric_len, now_unix_nanos,
};

/// Byte length of the RSA-4096 OAEP block that carries the ephemeral AES key.
pub const WRAPPED_EPHEMERAL_LEN: usize = 512;

/// Options of `POST keys/:name/import`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// The key type of the imported material.
    pub key_type: KeyType,
    /// Per-request derivation (imported derived keys use Vault's legacy KDF, as OpenBao does).
    pub derived: bool,
    /// Convergent encryption: always refused for imports, as in Vault.
    pub convergent: bool,
    /// Allow export.
    pub exportable: bool,
    /// Allow plaintext backup.
    pub allow_plaintext_backup: bool,
    /// Allow cipherd to rotate the key later.
    pub allow_rotation: bool,
    /// Auto-rotation period in seconds (requires `allow_rotation`).
    pub auto_rotate_period_secs: u64,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            key_type: KeyType::Aes256Gcm96,
            derived: false,
            convergent: false,
            exportable: false,
            allow_plaintext_backup: false,
            allow_rotation: false,
            auto_rotate_period_secs: 0,
        }
    }
}

/// Key material to import.
#[derive(Debug)]
pub enum ImportedMaterial {
    /// Unwrapped key bytes: raw for symmetric and HMAC types, PKCS#8 DER for
    /// asymmetric ones.
    Secret(SecretBytes),
    /// Only a public key (PKIX PEM): the key can verify and RSA-encrypt.
    PublicPem(String),
}

/// Opens a BYOK envelope: `RSA-OAEP(wrapping key, hash)(K) || AES-KWP(K, key)`.
pub fn unwrap_byok(
    wrapping_key: &PrivateKey,
    hash: HashAlgorithm,
    ciphertext: &[u8],
) -> Result<SecretBytes, KeyringError> {
    if ciphertext.len() <= WRAPPED_EPHEMERAL_LEN {
        return Err(KeyringError::ImportInvalid(
            "provided ciphertext is too short".into(),
        ));
    }
    let (wrapped_ephemeral, wrapped_key) = ciphertext.split_at(WRAPPED_EPHEMERAL_LEN);
    let ephemeral = wrapping_key
        .rsa_decrypt_oaep(hash, wrapped_ephemeral)
        .map_err(|_| KeyringError::ImportInvalid("failed to decrypt the ephemeral key".into()))?;
    if ephemeral.len() != 32 {
        return Err(KeyringError::ImportInvalid(
            "expected ephemeral AES key to be 256-bit".into(),
        ));
    }
    aes_kwp_unwrap(ephemeral.expose_secret(), wrapped_key)
        .map_err(|_| KeyringError::ImportInvalid("failed to unwrap the target key".into()))
}

impl Keyring {
    /// A new keyring from imported material (version 1).
    pub fn import(
        name: &str,
        options: &ImportOptions,
        material: ImportedMaterial,
    ) -> Result<Self, KeyringError> {
        if options.convergent {
            return Err(KeyringError::ImportInvalid(
                "import cannot be used on keys with convergent encryption enabled".into(),
            ));
        }
        if options.derived && !options.key_type.supports_derivation() {
            return Err(KeyringError::DerivationNotSupported(options.key_type));
        }
        if options.auto_rotate_period_secs != 0 {
            if !options.allow_rotation {
                return Err(KeyringError::ImportInvalid(
                    "allow_rotation must be set to true if auto-rotation is enabled".into(),
                ));
            }
            if options.auto_rotate_period_secs < MIN_AUTO_ROTATE_SECS {
                return Err(KeyringError::AutoRotatePeriodTooShort);
            }
        }
        let (version, key_size) = imported_version(options.key_type, 1, material)?;
        let config = KeyConfig {
            derived: options.derived,
            kdf: if options.derived {
                Kdf::LegacyCounter
            } else {
                Kdf::Hkdf
            },
            exportable: options.exportable,
            allow_plaintext_backup: options.allow_plaintext_backup,
            auto_rotate_period_secs: options.auto_rotate_period_secs,
            imported: true,
            allow_imported_rotation: options.allow_rotation,
            key_size,
            ..KeyConfig::default()
        };
        Ok(Self::from_versions(
            name,
            options.key_type,
            config,
            vec![version],
        ))
    }

    /// A copy with imported material as a new latest version, or, with
    /// `version`, completing the private half of a public-only version.
    pub fn import_version(
        &self,
        material: ImportedMaterial,
        version: Option<u32>,
    ) -> Result<Self, KeyringError> {
        if !self.config.imported {
            return Err(KeyringError::ImportInvalid(
                "the import_version endpoint can only be used with an imported key".into(),
            ));
        }
        let number = match version {
            Some(n) => {
                let existing = self.version(n).ok_or_else(|| {
                    KeyringError::ImportInvalid(format!(
                        "cannot import into version {n}: no such version"
                    ))
                })?;
                if !existing.is_public_only() {
                    return Err(KeyringError::ImportInvalid(format!(
                        "cannot import into version {n}: it already holds a private key"
                    )));
                }
                n
            }
            None => self.latest + 1,
        };
        let (new_version, _) = imported_version(self.key_type, number, material)?;
        if let (Some(existing), Some(new_public)) = (
            version.and_then(|n| self.version(n)),
            new_version.public_key(),
        ) {
            let matches = existing
                .public_key()
                .is_some_and(|old| old.to_storage_bytes() == new_public.to_storage_bytes());
            if !matches {
                return Err(KeyringError::ImportInvalid(
                    "the private key does not match the version's public key".into(),
                ));
            }
        }
        Ok(self.with_version(new_version))
    }
}

/// Builds a version from imported material; returns it and the HMAC key size.
fn imported_version(
    key_type: KeyType,
    number: u32,
    material: ImportedMaterial,
) -> Result<(KeyVersion, usize), KeyringError> {
    let created = now_unix_nanos();
    let (material, hmac_key, key_size) = match (key_type.family(), material) {
        (KeyFamily::Aead(alg), ImportedMaterial::Secret(raw)) => {
            check_symmetric_len(key_type, &raw)?;
            (
                aead_material(alg, raw)?,
                SecretBytes::random(HMAC_KEY_LEN),
                0,
            )
        }
        (KeyFamily::Hmac, ImportedMaterial::Secret(raw)) => {
            check_symmetric_len(key_type, &raw)?;
            let size = raw.len();
            (Material::HmacOnly, raw, size)
        }
        (KeyFamily::Asymmetric(alg), ImportedMaterial::Secret(der)) => {
            let key = PrivateKey::from_pkcs8_der(alg, der.expose_secret()).map_err(|e| {
                KeyringError::ImportInvalid(format!("failed to parse the private key: {e}"))
            })?;
            (Material::Private(key), SecretBytes::random(HMAC_KEY_LEN), 0)
        }
        (KeyFamily::Asymmetric(alg), ImportedMaterial::PublicPem(pem)) => {
            let key = PublicKey::from_pem(alg, &pem).map_err(|e| {
                KeyringError::ImportInvalid(format!("failed to parse the public key: {e}"))
            })?;
            (Material::Public(key), SecretBytes::random(HMAC_KEY_LEN), 0)
        }
        (_, ImportedMaterial::PublicPem(_)) => {
            return Err(KeyringError::ImportInvalid(
                "provided type does not support public_key import".into(),
            ));
        }
    };
    Ok((
        KeyVersion::from_parts(number, created, material, hmac_key, CONVERGENT_VERSION, 0),
        key_size,
    ))
}
