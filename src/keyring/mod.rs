//! A named key: its type, versions, rotation, minimum versions and configuration,
//! and the cryptographic operations over them.
//!
//! A [`Keyring`] is a plain value: it does no I/O, knows nothing of storage,
//! HTTP, gRPC or JSON, and is never mutated in place once shared. Every change
//! ([`Keyring::rotate`], [`Keyring::update_config`], [`Keyring::trim`]) is made on
//! a clone that the engine persists and then publishes; versions are shared
//! between clones through `Arc`, so a clone is cheap and a version's encryption
//! counter survives the change.

mod error;
mod export;
mod import;
mod key_type;
mod ops;
mod record;
mod version;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use error::{Encoded, ErrorClass, KeyringError, VersionUse};
pub use export::ExportKind;
pub use import::{ImportOptions, ImportedMaterial, WRAPPED_EPHEMERAL_LEN, unwrap_byok};
pub use key_type::{KeyFamily, KeyType, UnknownKeyType};
pub use ops::{
    DecryptRequest, EncryptRequest, Encrypted, HmacRequest, SignRequest, Signed, VerifyRequest,
};
pub use record::BACKUP_FORMAT;
pub use version::{CONVERGENT_VERSION, KeyVersion};

use crate::crypto::SecretBytes;
use crate::crypto::asymmetric::PublicKey;

/// Smallest non-zero auto-rotation period Vault accepts.
pub const MIN_AUTO_ROTATE_SECS: u64 = 3600;

/// How derived keys are computed from a version's key (reference §8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kdf {
    /// HKDF-SHA256 with the context as info (every key created since Vault 0.6.2).
    Hkdf,
    /// The legacy SP 800-108 counter-mode KDF (old keys, imported derived keys).
    LegacyCounter,
}

impl Kdf {
    /// Vault's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hkdf => "hkdf_sha256",
            Self::LegacyCounter => "hmac-sha256-counter",
        }
    }
}

/// When a backup was taken or restored: `{time, version}` on read-key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupStamp {
    /// Nanoseconds since the Unix epoch.
    pub unix_nanos: i128,
    /// The latest version at that time.
    pub version: u32,
}

/// The configuration of a keyring (everything but its versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfig {
    /// Keys are derived per request from a context.
    pub derived: bool,
    /// The KDF used when `derived`.
    pub kdf: Kdf,
    /// Deterministic encryption (requires `derived`).
    pub convergent: bool,
    /// Key material may be exported (one-way switch).
    pub exportable: bool,
    /// A plaintext backup may be taken (one-way switch).
    pub allow_plaintext_backup: bool,
    /// The key may be deleted.
    pub deletion_allowed: bool,
    /// Seconds between automatic rotations; 0 disables.
    pub auto_rotate_period_secs: u64,
    /// Ciphertexts, signatures and HMACs below this version are refused.
    pub min_decryption_version: u32,
    /// Explicit `key_version` requests below this are refused; 0 = no bound.
    pub min_encryption_version: u32,
    /// Versions below this have been trimmed away; 0 = never trimmed.
    pub min_available_version: u32,
    /// Material came from BYOK import.
    pub imported: bool,
    /// An imported key may still be rotated by cipherd.
    pub allow_imported_rotation: bool,
    /// Key size in bytes (hmac keys only; 0 otherwise).
    pub key_size: usize,
    /// The last backup, if any.
    pub backup_info: Option<BackupStamp>,
    /// The last restore, if any.
    pub restore_info: Option<BackupStamp>,
}

impl Default for KeyConfig {
    fn default() -> Self {
        Self {
            derived: false,
            kdf: Kdf::Hkdf,
            convergent: false,
            exportable: false,
            allow_plaintext_backup: false,
            deletion_allowed: false,
            auto_rotate_period_secs: 0,
            min_decryption_version: 1,
            min_encryption_version: 0,
            min_available_version: 0,
            imported: false,
            allow_imported_rotation: false,
            key_size: 0,
            backup_info: None,
            restore_info: None,
        }
    }
}

/// Options of `POST keys/:name` (reference §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    /// The key type.
    pub key_type: KeyType,
    /// Per-request derivation.
    pub derived: bool,
    /// Convergent encryption.
    pub convergent: bool,
    /// Allow export.
    pub exportable: bool,
    /// Allow plaintext backup.
    pub allow_plaintext_backup: bool,
    /// Auto-rotation period in seconds (0 = off).
    pub auto_rotate_period_secs: u64,
    /// Key size in bytes for `hmac` keys (None = 32).
    pub key_size: Option<usize>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            key_type: KeyType::Aes256Gcm96,
            derived: false,
            convergent: false,
            exportable: false,
            allow_plaintext_backup: false,
            auto_rotate_period_secs: 0,
            key_size: None,
        }
    }
}

/// Fields of `POST keys/:name/config` (reference §4.5); `None` leaves a field as is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigUpdate {
    /// New minimum decryption version (0 is coerced to 1 with a warning).
    pub min_decryption_version: Option<i64>,
    /// New minimum encryption version (0 = no bound).
    pub min_encryption_version: Option<i64>,
    /// Allow or forbid deletion.
    pub deletion_allowed: Option<bool>,
    /// Allow export (only `true` has an effect).
    pub exportable: Option<bool>,
    /// Allow plaintext backup (only `true` has an effect).
    pub allow_plaintext_backup: Option<bool>,
    /// Auto-rotation period in seconds.
    pub auto_rotate_period_secs: Option<u64>,
}

/// What read-key reports about one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDescription {
    /// Version number.
    pub number: u32,
    /// Creation time in nanoseconds since the Unix epoch.
    pub created_unix_nanos: i128,
    /// Asymmetric keys: the curve or modulus name (`P-256`, `ed25519`, `rsa-2048`).
    pub algorithm_name: Option<&'static str>,
    /// Asymmetric keys: the public key in Vault's read format (`""` for derived
    /// Ed25519 without a context).
    pub public_key: Option<String>,
    /// Encryptions performed with this version.
    pub encryptions: u64,
}

/// Everything read-key reports (reference §4.2), independent of any wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDescription {
    /// Key name.
    pub name: String,
    /// Key type.
    pub key_type: KeyType,
    /// Configuration.
    pub config: KeyConfig,
    /// Newest version.
    pub latest_version: u32,
    /// Versions from `min_decryption_version` to `latest_version`.
    pub versions: Vec<VersionDescription>,
}

/// A named, versioned key.
#[derive(Debug, Clone)]
pub struct Keyring {
    name: String,
    key_type: KeyType,
    config: KeyConfig,
    /// Every version at or above `min_available_version` (older ones were trimmed).
    versions: BTreeMap<u32, Arc<KeyVersion>>,
    latest: u32,
}

/// The current time in nanoseconds since the Unix epoch.
pub fn now_unix_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

impl Keyring {
    /// Creates a key with a freshly generated version 1.
    pub fn create(name: &str, options: &CreateOptions) -> Result<Self, KeyringError> {
        let key_size = validate_create(options)?;
        let config = KeyConfig {
            derived: options.derived,
            convergent: options.convergent,
            exportable: options.exportable,
            allow_plaintext_backup: options.allow_plaintext_backup,
            auto_rotate_period_secs: options.auto_rotate_period_secs,
            key_size,
            ..KeyConfig::default()
        };
        let first = KeyVersion::generate(1, options.key_type, key_size, now_unix_nanos())?;
        Ok(Self::from_versions(
            name,
            options.key_type,
            config,
            vec![first],
        ))
    }

    pub(crate) fn from_versions(
        name: &str,
        key_type: KeyType,
        config: KeyConfig,
        versions: Vec<KeyVersion>,
    ) -> Self {
        let versions: BTreeMap<u32, Arc<KeyVersion>> = versions
            .into_iter()
            .map(|v| (v.number, Arc::new(v)))
            .collect();
        let latest = versions.keys().next_back().copied().unwrap_or(0);
        Self {
            name: name.to_owned(),
            key_type,
            config,
            versions,
            latest,
        }
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The key's configuration.
    pub fn config(&self) -> &KeyConfig {
        &self.config
    }

    /// The newest version number.
    pub fn latest_version(&self) -> u32 {
        self.latest
    }

    /// A version, if it is still in the keyring.
    pub fn version(&self, number: u32) -> Option<&Arc<KeyVersion>> {
        self.versions.get(&number)
    }

    /// Every version still held, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = &Arc<KeyVersion>> {
        self.versions.values()
    }

    /// Renames the key (restore under a new name).
    pub fn renamed(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// A copy with one more version of fresh material (reference §4.6).
    pub fn rotate(&self) -> Result<Self, KeyringError> {
        if self.config.imported && !self.config.allow_imported_rotation {
            return Err(KeyringError::ImportedKeyRotationNotAllowed(
                self.name.clone(),
            ));
        }
        let number = self.latest + 1;
        let version = KeyVersion::generate(
            number,
            self.key_type,
            self.config.key_size,
            now_unix_nanos(),
        )?;
        let mut next = self.clone();
        next.versions.insert(number, Arc::new(version));
        next.latest = number;
        // A rotated imported key now holds material cipherd made (reference §4.6).
        next.config.imported = false;
        Ok(next)
    }

    /// A copy with `version` added as the new latest version (BYOK import_version
    /// and import).
    pub(crate) fn with_version(&self, version: KeyVersion) -> Self {
        let mut next = self.clone();
        next.latest = next.latest.max(version.number);
        next.versions.insert(version.number, Arc::new(version));
        next
    }

    /// True when auto-rotation is on and the latest version is older than the period.
    pub fn needs_auto_rotation(&self, now_unix_nanos: i128) -> bool {
        let period = self.config.auto_rotate_period_secs;
        if period == 0 || (self.config.imported && !self.config.allow_imported_rotation) {
            return false;
        }
        let created = self
            .version(self.latest)
            .map_or(0, |v| v.created_unix_nanos);
        now_unix_nanos > created + i128::from(period) * 1_000_000_000
    }

    /// A copy with `update` applied, plus Vault's warnings (reference §4.5). All
    /// or nothing: on error nothing changes.
    pub fn update_config(
        &self,
        update: &ConfigUpdate,
    ) -> Result<(Self, Vec<String>), KeyringError> {
        let mut warnings = Vec::new();
        let mut config = self.config.clone();
        if let Some(min) = update.min_decryption_version {
            if min < 0 {
                return Err(KeyringError::ConfigInvalid(
                    "min decryption version cannot be negative".into(),
                ));
            }
            let mut min = min;
            if min == 0 {
                min = 1;
                warnings.push(
                    "since Vault 0.3, transit key numbering starts at 1; forcing minimum to 1"
                        .to_owned(),
                );
            }
            if min > i64::from(self.latest) {
                return Err(KeyringError::ConfigInvalid(format!(
                    "cannot set min decryption version of {min}, latest key version is {}",
                    self.latest
                )));
            }
            config.min_decryption_version = min as u32;
        }
        if let Some(min) = update.min_encryption_version {
            if min < 0 {
                return Err(KeyringError::ConfigInvalid(
                    "min encryption version cannot be negative".into(),
                ));
            }
            if min > i64::from(self.latest) {
                return Err(KeyringError::ConfigInvalid(format!(
                    "cannot set min encryption version of {min}, latest key version is {}",
                    self.latest
                )));
            }
            config.min_encryption_version = min as u32;
        }
        if config.min_encryption_version > 0
            && config.min_encryption_version < config.min_decryption_version
        {
            return Err(KeyringError::ConfigInvalid(format!(
                "cannot set min encryption/decryption values; min encryption version of {} must be greater than or equal to min decryption version of {}",
                config.min_encryption_version, config.min_decryption_version
            )));
        }
        if config.min_available_version > 0
            && config.min_decryption_version < config.min_available_version
        {
            return Err(KeyringError::ConfigInvalid(
                "min decryption version should not be less then min available version".into(),
            ));
        }
        if config.min_available_version > 0
            && config.min_encryption_version > 0
            && config.min_encryption_version < config.min_available_version
        {
            return Err(KeyringError::ConfigInvalid(
                "min encryption version should not be less than min available version".into(),
            ));
        }
        if let Some(allowed) = update.deletion_allowed {
            config.deletion_allowed = allowed;
        }
        if update.exportable == Some(true) {
            config.exportable = true;
        }
        if update.allow_plaintext_backup == Some(true) {
            config.allow_plaintext_backup = true;
        }
        if let Some(period) = update.auto_rotate_period_secs {
            if period != 0 && period < MIN_AUTO_ROTATE_SECS {
                return Err(KeyringError::AutoRotatePeriodTooShort);
            }
            config.auto_rotate_period_secs = period;
        }
        let mut next = self.clone();
        next.config = config;
        Ok((next, warnings))
    }

    /// A copy with every version below `min_available_version` destroyed
    /// (reference §4.7).
    pub fn trim(&self, min_available_version: i64) -> Result<Self, KeyringError> {
        let current = i64::from(self.config.min_available_version);
        if min_available_version < current {
            return Err(KeyringError::TrimInvalid(
                "minimum available version cannot be decremented",
            ));
        }
        if min_available_version < 0 {
            return Err(KeyringError::TrimInvalid(
                "minimum available version cannot be negative",
            ));
        }
        if min_available_version == 0 {
            return Err(KeyringError::TrimInvalid(
                "minimum available version should be positive",
            ));
        }
        if self.config.min_encryption_version == 0 {
            return Err(KeyringError::TrimInvalid(
                "minimum available version cannot be set when minimum encryption version is not set",
            ));
        }
        if self.config.min_decryption_version == 0 {
            return Err(KeyringError::TrimInvalid(
                "minimum available version cannot be set when minimum decryption version is not set",
            ));
        }
        if min_available_version > i64::from(self.config.min_encryption_version) {
            return Err(KeyringError::TrimInvalid(
                "minimum available version cannot be greater than minmum encryption version",
            ));
        }
        if min_available_version > i64::from(self.config.min_decryption_version) {
            return Err(KeyringError::TrimInvalid(
                "minimum available version cannot be greater than minimum decryption version",
            ));
        }
        let min = min_available_version as u32;
        let mut next = self.clone();
        next.versions.retain(|&number, _| number >= min);
        next.config.min_available_version = min;
        Ok(next)
    }

    /// A copy that records a backup taken now.
    pub fn with_backup_stamp(&self) -> Self {
        let mut next = self.clone();
        next.config.backup_info = Some(BackupStamp {
            unix_nanos: now_unix_nanos(),
            version: self.latest,
        });
        next
    }

    /// Read-key's view (reference §4.2). For a derived Ed25519 key, `context`
    /// selects which derived public key to show.
    pub fn describe(&self, context: Option<&[u8]>) -> Result<KeyDescription, KeyringError> {
        let mut versions = Vec::new();
        for version in self
            .versions
            .values()
            .filter(|v| v.number >= self.config.min_decryption_version)
        {
            let algorithm_name = match self.key_type.family() {
                KeyFamily::Asymmetric(alg) => Some(alg.vault_key_name()),
                KeyFamily::Aead(_) | KeyFamily::Hmac => None,
            };
            let public_key = if algorithm_name.is_none() {
                None
            } else if self.config.derived && self.key_type == KeyType::Ed25519 {
                match context {
                    Some(ctx) if !ctx.is_empty() => Some(
                        self.derived_ed25519(version, ctx)?
                            .public_key()
                            .to_vault_string(),
                    ),
                    _ => Some(String::new()),
                }
            } else {
                version.public_key().map(|k: PublicKey| k.to_vault_string())
            };
            versions.push(VersionDescription {
                number: version.number,
                created_unix_nanos: version.created_unix_nanos,
                algorithm_name,
                public_key,
                encryptions: version.encryptions(),
            });
        }
        Ok(KeyDescription {
            name: self.name.clone(),
            key_type: self.key_type,
            config: self.config.clone(),
            latest_version: self.latest,
            versions,
        })
    }
}

/// Checks create options; returns the HMAC key size to use (0 for other types).
fn validate_create(options: &CreateOptions) -> Result<usize, KeyringError> {
    let key_type = options.key_type;
    if options.convergent && !options.derived {
        return Err(KeyringError::ConvergentRequiresDerivation);
    }
    if options.derived && !key_type.supports_derivation() {
        return Err(KeyringError::DerivationNotSupported(key_type));
    }
    if options.convergent && !key_type.supports_convergent() {
        return Err(KeyringError::ConvergentNotSupported(key_type));
    }
    if options.auto_rotate_period_secs != 0
        && options.auto_rotate_period_secs < MIN_AUTO_ROTATE_SECS
    {
        return Err(KeyringError::AutoRotatePeriodTooShort);
    }
    match (key_type, options.key_size) {
        (KeyType::Hmac, None) => Ok(32),
        (KeyType::Hmac, Some(size)) if (32..=512).contains(&size) => Ok(size),
        (KeyType::Hmac, Some(size)) => Err(KeyringError::KeySizeInvalid(format!(
            "invalid key_size {size}"
        ))),
        (_, None | Some(0)) => Ok(0),
        (other, Some(_)) => Err(KeyringError::KeySizeInvalid(format!(
            "key_size is not valid for algorithm {other}"
        ))),
    }
}

/// Raw key bytes for a symmetric import, checked against the type.
pub(crate) fn check_symmetric_len(
    key_type: KeyType,
    key: &SecretBytes,
) -> Result<(), KeyringError> {
    let ok = match key_type.family() {
        KeyFamily::Aead(alg) => key.len() == alg.key_len(),
        KeyFamily::Hmac => (32..=512).contains(&key.len()),
        KeyFamily::Asymmetric(_) => true,
    };
    if ok {
        Ok(())
    } else {
        Err(KeyringError::ImportInvalid(format!(
            "invalid key size {} bytes for key type {key_type}",
            key.len()
        )))
    }
}

#[cfg(test)]
mod tests;
