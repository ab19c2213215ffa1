//! What the audit subsystem keeps behind the barrier: the table of enabled
//! devices (each with its own HMAC salt) and the checkpoint signing key.
//! Both are created on first use and never leave storage unencrypted.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::AuditError;
use crate::crypto::SecretBytes;
use crate::storage::{Storage, StorageError};

const DEVICES_PATH: &str = "core/audit/devices";
const SIGNING_KEY_PATH: &str = "core/audit/signing-key";

/// One enabled device as stored.
#[derive(Clone, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Mount path with trailing `/`.
    pub path: String,
    /// `file` or `stdout`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Device options.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Vault's `local` flag (kept and shown).
    #[serde(default)]
    pub local: bool,
    /// The HMAC salt, base64.
    salt: String,
}

impl std::fmt::Debug for DeviceRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceRecord")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl DeviceRecord {
    /// A new record with a fresh random salt.
    pub fn new(
        path: String,
        kind: String,
        description: String,
        options: BTreeMap<String, String>,
        local: bool,
    ) -> Self {
        let salt = SecretBytes::random(32);
        Self {
            path,
            kind,
            description,
            options,
            local,
            salt: STANDARD.encode(salt.expose_secret()),
        }
    }

    /// The salt.
    pub fn salt(&self) -> Result<SecretBytes, AuditError> {
        STANDARD
            .decode(&self.salt)
            .map(SecretBytes::new)
            .map_err(|_| AuditError::invalid("stored audit device salt is corrupt"))
    }
}

impl Drop for DeviceRecord {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.salt);
    }
}

/// The stored device table.
pub fn load_devices(storage: &Arc<dyn Storage>) -> Result<Vec<DeviceRecord>, AuditError> {
    match storage.get(DEVICES_PATH)? {
        None => Ok(Vec::new()),
        Some(bytes) => {
            let bytes = Zeroizing::new(bytes);
            serde_json::from_slice(&bytes).map_err(|_| {
                AuditError::Storage(StorageError::Corrupt {
                    path: DEVICES_PATH.to_owned(),
                })
            })
        }
    }
}

/// Replaces the stored device table.
pub fn save_devices(
    storage: &Arc<dyn Storage>,
    devices: &[DeviceRecord],
) -> Result<(), AuditError> {
    let bytes = Zeroizing::new(
        serde_json::to_vec(devices).map_err(|e| AuditError::invalid(e.to_string()))?,
    );
    storage.put(DEVICES_PATH, &bytes)?;
    Ok(())
}

/// The checkpoint signing key's seed, created on first use.
pub fn signing_seed(storage: &Arc<dyn Storage>) -> Result<SecretBytes, AuditError> {
    if let Some(bytes) = storage.get(SIGNING_KEY_PATH)? {
        return Ok(SecretBytes::new(bytes));
    }
    let seed = SecretBytes::random(32);
    if storage.compare_and_set(SIGNING_KEY_PATH, None, Some(seed.expose_secret()))? {
        return Ok(seed);
    }
    // Another node created it first: use theirs.
    storage
        .get(SIGNING_KEY_PATH)?
        .map(SecretBytes::new)
        .ok_or_else(|| AuditError::invalid("audit signing key vanished while being created"))
}
