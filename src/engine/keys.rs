//! Key management: create, read, list, delete, configure, rotate, trim, export,
//! backup/restore, BYOK import and the mount-wide keys configuration.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::crypto::asymmetric::{AsymmetricAlgorithm, PrivateKey};
use crate::crypto::{HashAlgorithm, SecretBytes};
use crate::keyring::{
    ConfigUpdate, CreateOptions, ExportKind, ImportOptions, ImportedMaterial, KeyDescription,
    KeyType, Keyring, KeyringError, unwrap_byok,
};

use super::{Engine, EngineError, KeyHandle};

/// Longest key name accepted.
pub const MAX_KEY_NAME_LEN: usize = 512;

/// Mount-wide settings of `config/keys` (reference §4.14).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysConfig {
    /// When true, encrypt never creates keys.
    pub disable_upsert: bool,
}

/// A restore request (reference §4.13).
#[derive(Debug, Clone, Default)]
pub struct RestoreRequest<'a> {
    /// Name to restore under; `None` = the name inside the backup.
    pub name: Option<&'a str>,
    /// The blob from `backup`.
    pub backup: &'a str,
    /// Overwrite an existing key.
    pub force: bool,
}

/// What to import: a BYOK envelope or a public key.
#[derive(Debug, Clone, Copy)]
pub enum ImportPayload<'a> {
    /// `RSA-OAEP(hash)(K) || AES-KWP(K, key)` (decoded from base64).
    Wrapped {
        /// The envelope bytes.
        ciphertext: &'a [u8],
        /// The OAEP hash the client used.
        hash: HashAlgorithm,
    },
    /// A PKIX PEM public key.
    PublicKey(&'a str),
}

/// Checks a key name: non-empty, no `/`, no control characters, bounded length.
pub fn validate_key_name(name: &str) -> Result<(), EngineError> {
    if name.is_empty()
        || name.len() > MAX_KEY_NAME_LEN
        || name.contains('/')
        || name.chars().any(char::is_control)
    {
        return Err(EngineError::InvalidKeyName);
    }
    Ok(())
}

impl Engine {
    const WRAPPING_KEY: &'static str = "wrapping_key";
    const KEYS_CONFIG: &'static str = "config/keys";

    /// Creates a key; if it exists nothing changes and `false` is returned with
    /// the existing key's description (Vault's behaviour, reference §4.1).
    pub fn create_key(
        &self,
        name: &str,
        options: &CreateOptions,
    ) -> Result<(KeyDescription, bool), EngineError> {
        validate_key_name(name)?;
        if let Ok(existing) = self.read_key(name, None) {
            return Ok((existing, false));
        }
        let keyring = Keyring::create(name, options)?;
        let created = self.insert_new(keyring)?;
        let description = self.read_key(name, None)?;
        Ok((description, created))
    }

    /// Stores a brand-new keyring unless the name is taken; returns whether it
    /// was stored (false = an existing key, now loaded, was kept).
    pub(super) fn insert_new(&self, keyring: Keyring) -> Result<bool, EngineError> {
        let name = keyring.name().to_owned();
        let path = self.key_path(&name);
        let bytes = keyring.to_bytes();
        let created = self
            .storage
            .compare_and_set(&path, None, Some(bytes.expose_secret()))?;
        let keyring = if created {
            keyring
        } else {
            // Another writer (or node) created it first: adopt the stored key.
            let stored = self
                .storage
                .get(&path)?
                .ok_or_else(|| EngineError::WriteConflict { name: name.clone() })?;
            Keyring::from_bytes(&stored).map_err(|e| EngineError::StoredKeyUnreadable {
                name: name.clone(),
                reason: e.to_string(),
            })?
        };
        let guard = self.keys.pin();
        let _ = guard.try_insert(name, Arc::new(KeyHandle::new(keyring)));
        Ok(created)
    }

    /// Read-key (reference §4.2).
    pub fn read_key(
        &self,
        name: &str,
        context: Option<&[u8]>,
    ) -> Result<KeyDescription, EngineError> {
        Ok(self.with_key(name, |k| k.describe(context))??)
    }

    /// Every key name, sorted.
    pub fn list_keys(&self) -> Vec<String> {
        let mut names: Vec<String> = self.keys.pin().keys().cloned().collect();
        names.sort();
        names
    }

    /// Deletes a key whose `deletion_allowed` is set (reference §4.4).
    pub fn delete_key(&self, name: &str) -> Result<(), EngineError> {
        let handle = self.handle(name).ok_or_else(|| EngineError::KeyNotFound {
            name: name.to_owned(),
        })?;
        let _write = handle.write.lock();
        if !handle.current.load().config().deletion_allowed {
            return Err(KeyringError::DeletionNotAllowed.into());
        }
        self.storage.delete(&self.key_path(name))?;
        self.keys.pin().remove(name);
        Ok(())
    }

    /// Updates the key's configuration (reference §4.5); returns the new
    /// description and Vault's warnings.
    pub fn update_key_config(
        &self,
        name: &str,
        update: &ConfigUpdate,
    ) -> Result<(KeyDescription, Vec<String>), EngineError> {
        let (keyring, warnings) = self.mutate(name, |k| Ok(k.update_config(update)?))?;
        Ok((keyring.describe(None)?, warnings))
    }

    /// Adds a version (reference §4.6).
    pub fn rotate_key(&self, name: &str) -> Result<KeyDescription, EngineError> {
        let (keyring, ()) = self.mutate(name, |k| Ok((k.rotate()?, ())))?;
        Ok(keyring.describe(None)?)
    }

    /// Destroys versions below `min_available_version` (reference §4.7).
    pub fn trim_key(
        &self,
        name: &str,
        min_available_version: i64,
    ) -> Result<KeyDescription, EngineError> {
        let (keyring, ()) = self.mutate(name, |k| Ok((k.trim(min_available_version)?, ())))?;
        Ok(keyring.describe(None)?)
    }

    /// Exports key material (reference §4.11): the key type and `(version, value)` pairs.
    pub fn export_key(
        &self,
        name: &str,
        kind: ExportKind,
        version: Option<&str>,
    ) -> Result<(KeyType, Vec<(u32, SecretBytes)>), EngineError> {
        self.with_key(name, |k| Ok((k.key_type(), k.export(kind, version)?)))?
    }

    /// A plaintext backup blob (reference §4.12); records `backup_info`.
    pub fn backup_key(&self, name: &str) -> Result<SecretBytes, EngineError> {
        // Check permission before recording anything.
        self.with_key(name, |k| k.backup().map(drop))??;
        let (keyring, ()) = self.mutate(name, |k| Ok((k.with_backup_stamp(), ())))?;
        Ok(keyring.backup()?)
    }

    /// Restores a backup (reference §4.13).
    pub fn restore_key(&self, request: &RestoreRequest<'_>) -> Result<String, EngineError> {
        let restored = Keyring::restore(request.backup)?;
        let name = request.name.unwrap_or(restored.name()).to_owned();
        validate_key_name(&name)?;
        let keyring = restored.renamed(&name).with_restore_stamp();
        if let Some(handle) = self.handle(&name) {
            if !request.force {
                return Err(EngineError::KeyExists { name });
            }
            let _write = handle.write.lock();
            self.persist(&handle, &keyring)?;
            handle.current.store(Arc::new(keyring));
            return Ok(name);
        }
        if !self.insert_new(keyring)? && !request.force {
            return Err(EngineError::KeyExists { name });
        }
        Ok(name)
    }

    /// The mount's BYOK wrapping key as PKIX PEM (reference §4.8), created on first use.
    pub fn wrapping_key_pem(&self) -> Result<String, EngineError> {
        Ok(self.wrapping_key()?.public_key().to_vault_string())
    }

    fn wrapping_key(&self) -> Result<Arc<PrivateKey>, EngineError> {
        let mut slot = self.wrapping_key.lock();
        if let Some(key) = slot.as_ref() {
            return Ok(key.clone());
        }
        let path = format!("{}{}", self.prefix, Self::WRAPPING_KEY);
        let alg = AsymmetricAlgorithm::Rsa4096;
        let parse = |bytes: &[u8]| {
            PrivateKey::from_storage_bytes(alg, bytes).map_err(|e| {
                EngineError::StoredKeyUnreadable {
                    name: Self::WRAPPING_KEY.into(),
                    reason: e.to_string(),
                }
            })
        };
        let key = match self.storage.get(&path)? {
            Some(bytes) => parse(&bytes)?,
            None => {
                let fresh = PrivateKey::generate(alg).map_err(KeyringError::from)?;
                let bytes = fresh.to_storage_bytes();
                if self
                    .storage
                    .compare_and_set(&path, None, Some(bytes.expose_secret()))?
                {
                    fresh
                } else {
                    let stored =
                        self.storage
                            .get(&path)?
                            .ok_or_else(|| EngineError::WriteConflict {
                                name: Self::WRAPPING_KEY.into(),
                            })?;
                    parse(&stored)?
                }
            }
        };
        let key = Arc::new(key);
        *slot = Some(key.clone());
        Ok(key)
    }

    fn imported_material(
        &self,
        payload: ImportPayload<'_>,
    ) -> Result<ImportedMaterial, EngineError> {
        Ok(match payload {
            ImportPayload::Wrapped { ciphertext, hash } => {
                ImportedMaterial::Secret(unwrap_byok(&*self.wrapping_key()?, hash, ciphertext)?)
            }
            ImportPayload::PublicKey(pem) => ImportedMaterial::PublicPem(pem.to_owned()),
        })
    }

    /// BYOK import of a new key (reference §4.9).
    pub fn import_key(
        &self,
        name: &str,
        options: &ImportOptions,
        payload: ImportPayload<'_>,
    ) -> Result<(), EngineError> {
        validate_key_name(name)?;
        if self.handle(name).is_some() {
            return Err(EngineError::KeyExists {
                name: name.to_owned(),
            });
        }
        let keyring = Keyring::import(name, options, self.imported_material(payload)?)?;
        if !self.insert_new(keyring)? {
            return Err(EngineError::KeyExists {
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    /// BYOK import of a new version, or of the private half of a public-only
    /// version (reference §4.10).
    pub fn import_key_version(
        &self,
        name: &str,
        payload: ImportPayload<'_>,
        version: Option<u32>,
    ) -> Result<(), EngineError> {
        let material = self.imported_material(payload)?;
        self.mutate(name, |k| Ok((k.import_version(material, version)?, ())))?;
        Ok(())
    }

    /// The mount-wide keys configuration.
    pub fn keys_config(&self) -> KeysConfig {
        KeysConfig {
            disable_upsert: self.disable_upsert.load(Ordering::Relaxed),
        }
    }

    /// Replaces the mount-wide keys configuration.
    pub fn set_keys_config(&self, config: KeysConfig) -> Result<(), EngineError> {
        let mut bytes = Vec::new();
        // Serializing a plain struct into a Vec cannot fail.
        let _ = ciborium::into_writer(&config, &mut bytes);
        self.storage
            .put(&format!("{}{}", self.prefix, Self::KEYS_CONFIG), &bytes)?;
        self.disable_upsert
            .store(config.disable_upsert, Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn load_config(&self) -> Result<(), EngineError> {
        if let Some(bytes) = self
            .storage
            .get(&format!("{}{}", self.prefix, Self::KEYS_CONFIG))?
        {
            let config: KeysConfig = ciborium::from_reader(bytes.as_slice()).map_err(|_| {
                EngineError::StoredKeyUnreadable {
                    name: Self::KEYS_CONFIG.into(),
                    reason: "not a keys configuration record".into(),
                }
            })?;
            self.disable_upsert
                .store(config.disable_upsert, Ordering::Relaxed);
        }
        Ok(())
    }
}
