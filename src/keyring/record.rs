//! The stored form of a keyring and the backup blob.
//!
//! Records are CBOR (self-describing, so fields can be added later with serde
//! defaults). Serialized bytes that hold key material are returned as
//! [`SecretBytes`] so they are zeroized after use; the engine writes them only
//! through the storage barrier.
//!
//! The backup blob is `base64(MAGIC || CBOR record || SHA-256(MAGIC || CBOR))`:
//! versioned by its magic, and integrity-checked so a truncated or corrupted
//! blob is refused. Like Vault's plaintext backups it is not encrypted and not
//! authenticated against forgery: whoever holds it holds the key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::crypto::asymmetric::PublicKey;
use crate::crypto::{HashAlgorithm, SecretBytes};

use super::version::{KeyVersion, Material, aead_material, private_material};
use super::{BackupStamp, Kdf, KeyConfig, KeyFamily, KeyType, Keyring, KeyringError};

/// The backup format this build writes and reads.
pub const BACKUP_FORMAT: u32 = 1;

const BACKUP_MAGIC: &[u8; 8] = b"CPHDBK01";
const CHECKSUM_LEN: usize = 32;

#[derive(Serialize, Deserialize)]
struct KeyringRecord {
    format: u32,
    name: String,
    key_type: String,
    derived: bool,
    legacy_kdf: bool,
    convergent: bool,
    exportable: bool,
    allow_plaintext_backup: bool,
    deletion_allowed: bool,
    auto_rotate_period_secs: u64,
    min_decryption_version: u32,
    min_encryption_version: u32,
    min_available_version: u32,
    imported: bool,
    allow_imported_rotation: bool,
    key_size: usize,
    backup_info: Option<(i128, u32)>,
    restore_info: Option<(i128, u32)>,
    versions: Vec<VersionRecord>,
}

#[derive(Serialize, Deserialize)]
struct VersionRecord {
    number: u32,
    created_unix_nanos: i128,
    /// 0 = AEAD raw key, 1 = asymmetric private key, 2 = public key only, 3 = HMAC only.
    kind: u8,
    #[serde(with = "serde_bytes")]
    material: Vec<u8>,
    #[serde(with = "serde_bytes")]
    hmac_key: Vec<u8>,
    convergent_version: u8,
    encryptions: u64,
}

impl Drop for VersionRecord {
    fn drop(&mut self) {
        self.material.zeroize();
        self.hmac_key.zeroize();
    }
}

const KIND_AEAD: u8 = 0;
const KIND_PRIVATE: u8 = 1;
const KIND_PUBLIC: u8 = 2;
const KIND_HMAC: u8 = 3;

impl Keyring {
    /// The stored form of this keyring (CBOR), including encryption counts.
    pub fn to_bytes(&self) -> SecretBytes {
        let record = self.to_record();
        let mut out = Vec::with_capacity(256);
        // Serializing plain structs into a Vec cannot fail.
        if ciborium::into_writer(&record, &mut out).is_err() {
            out.clear();
        }
        SecretBytes::new(out)
    }

    /// Parses [`to_bytes`](Self::to_bytes) output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyringError> {
        let record: KeyringRecord = ciborium::from_reader(bytes)
            .map_err(|_| KeyringError::BackupInvalid("stored key record is not readable"))?;
        Self::from_record(record)
    }

    /// A plaintext backup blob (reference §4.12). The caller checks nothing:
    /// this enforces `exportable` and `allow_plaintext_backup` itself.
    pub fn backup(&self) -> Result<SecretBytes, KeyringError> {
        if !self.config.exportable {
            return Err(KeyringError::BackupNotAllowed(
                "exporting is disallowed on the policy",
            ));
        }
        if !self.config.allow_plaintext_backup {
            return Err(KeyringError::BackupNotAllowed(
                "plaintext backup is disallowed on the policy",
            ));
        }
        let body = self.to_bytes();
        let mut raw = Vec::with_capacity(BACKUP_MAGIC.len() + body.len() + CHECKSUM_LEN);
        raw.extend_from_slice(BACKUP_MAGIC);
        raw.extend_from_slice(body.expose_secret());
        let checksum = HashAlgorithm::Sha2_256.digest(&raw);
        raw.extend_from_slice(&checksum);
        let blob = STANDARD.encode(&raw);
        raw.zeroize();
        Ok(SecretBytes::new(blob.into_bytes()))
    }

    /// Reads a backup blob. The restored keyring keeps the name inside the blob;
    /// callers rename it with [`renamed`](Self::renamed) and stamp
    /// `restore_info` with [`with_restore_stamp`](Self::with_restore_stamp).
    pub fn restore(blob: &str) -> Result<Self, KeyringError> {
        let raw = SecretBytes::new(
            STANDARD
                .decode(blob.trim())
                .map_err(|_| KeyringError::BackupInvalid("backup is not valid base64"))?,
        );
        let raw = raw.expose_secret();
        if raw.len() < BACKUP_MAGIC.len() + CHECKSUM_LEN || !raw.starts_with(BACKUP_MAGIC) {
            return Err(KeyringError::BackupInvalid(
                "not a cipherd backup of a known format",
            ));
        }
        let (signed, checksum) = raw.split_at(raw.len() - CHECKSUM_LEN);
        if HashAlgorithm::Sha2_256.digest(signed) != checksum {
            return Err(KeyringError::BackupInvalid(
                "checksum mismatch: the backup is corrupted or truncated",
            ));
        }
        Self::from_bytes(&signed[BACKUP_MAGIC.len()..])
    }

    /// A copy that records a restore performed now.
    pub fn with_restore_stamp(mut self) -> Self {
        self.config.restore_info = Some(BackupStamp {
            unix_nanos: super::now_unix_nanos(),
            version: self.latest,
        });
        self
    }

    fn to_record(&self) -> KeyringRecord {
        let stamp = |s: &Option<BackupStamp>| s.map(|s| (s.unix_nanos, s.version));
        let c = &self.config;
        KeyringRecord {
            format: 1,
            name: self.name.clone(),
            key_type: self.key_type.name().to_owned(),
            derived: c.derived,
            legacy_kdf: c.kdf == Kdf::LegacyCounter,
            convergent: c.convergent,
            exportable: c.exportable,
            allow_plaintext_backup: c.allow_plaintext_backup,
            deletion_allowed: c.deletion_allowed,
            auto_rotate_period_secs: c.auto_rotate_period_secs,
            min_decryption_version: c.min_decryption_version,
            min_encryption_version: c.min_encryption_version,
            min_available_version: c.min_available_version,
            imported: c.imported,
            allow_imported_rotation: c.allow_imported_rotation,
            key_size: c.key_size,
            backup_info: stamp(&c.backup_info),
            restore_info: stamp(&c.restore_info),
            versions: self.versions.values().map(|v| version_record(v)).collect(),
        }
    }

    fn from_record(record: KeyringRecord) -> Result<Self, KeyringError> {
        if record.format != 1 {
            return Err(KeyringError::BackupInvalid("unknown key record format"));
        }
        let key_type: KeyType = record
            .key_type
            .parse()
            .map_err(|_| KeyringError::BackupInvalid("unknown key type in record"))?;
        let stamp = |s: Option<(i128, u32)>| {
            s.map(|(unix_nanos, version)| BackupStamp {
                unix_nanos,
                version,
            })
        };
        let config = KeyConfig {
            derived: record.derived,
            kdf: if record.legacy_kdf {
                Kdf::LegacyCounter
            } else {
                Kdf::Hkdf
            },
            convergent: record.convergent,
            exportable: record.exportable,
            allow_plaintext_backup: record.allow_plaintext_backup,
            deletion_allowed: record.deletion_allowed,
            auto_rotate_period_secs: record.auto_rotate_period_secs,
            min_decryption_version: record.min_decryption_version.max(1),
            min_encryption_version: record.min_encryption_version,
            min_available_version: record.min_available_version,
            imported: record.imported,
            allow_imported_rotation: record.allow_imported_rotation,
            key_size: record.key_size,
            backup_info: stamp(record.backup_info),
            restore_info: stamp(record.restore_info),
        };
        let versions = record
            .versions
            .iter()
            .map(|v| version_from_record(key_type, v))
            .collect::<Result<Vec<_>, _>>()?;
        if versions.is_empty() {
            return Err(KeyringError::BackupInvalid("key record has no versions"));
        }
        Ok(Self::from_versions(
            &record.name,
            key_type,
            config,
            versions,
        ))
    }
}

fn version_record(version: &KeyVersion) -> VersionRecord {
    let (kind, material) = match &version.material {
        Material::Aead { raw, .. } => (KIND_AEAD, raw.expose_secret().to_vec()),
        Material::Private(key) => (
            KIND_PRIVATE,
            key.to_storage_bytes().expose_secret().to_vec(),
        ),
        Material::Public(key) => (KIND_PUBLIC, key.to_storage_bytes()),
        Material::HmacOnly => (KIND_HMAC, Vec::new()),
    };
    VersionRecord {
        number: version.number,
        created_unix_nanos: version.created_unix_nanos,
        kind,
        material,
        hmac_key: version.hmac_key.expose_secret().to_vec(),
        convergent_version: version.convergent_version,
        encryptions: version.encryptions(),
    }
}

fn version_from_record(
    key_type: KeyType,
    record: &VersionRecord,
) -> Result<KeyVersion, KeyringError> {
    let invalid = || KeyringError::BackupInvalid("key material does not match the key type");
    let material = match (record.kind, key_type.family()) {
        (KIND_AEAD, KeyFamily::Aead(alg)) => {
            aead_material(alg, SecretBytes::from_slice(&record.material)).map_err(|_| invalid())?
        }
        (KIND_PRIVATE, KeyFamily::Asymmetric(alg)) => {
            private_material(alg, &record.material).map_err(|_| invalid())?
        }
        (KIND_PUBLIC, KeyFamily::Asymmetric(alg)) => Material::Public(
            PublicKey::from_storage_bytes(alg, &record.material).map_err(|_| invalid())?,
        ),
        (KIND_HMAC, KeyFamily::Hmac) => Material::HmacOnly,
        _ => return Err(invalid()),
    };
    if record.number == 0 || record.hmac_key.is_empty() {
        return Err(invalid());
    }
    Ok(KeyVersion::from_parts(
        record.number,
        record.created_unix_nanos,
        material,
        SecretBytes::from_slice(&record.hmac_key),
        record.convergent_version,
        record.encryptions,
    ))
}
