//! Key management (reference §4): create, read, list, delete, config, rotate,
//! trim, BYOK import, wrapping key, export, backup and restore, and Vault's
//! read-key JSON (§4.2).

use serde_json::{Map, Value};

use crate::api::error::rest_reply;
use crate::crypto::HashAlgorithm;
use crate::engine::{EngineError, ImportPayload, RestoreRequest};
use crate::keyring::{
    BackupStamp, ConfigUpdate, CreateOptions, ExportKind, ImportOptions, Kdf, KeyDescription,
    KeyFamily, KeyType, KeyringError,
};
use crate::service::ServiceError;

use super::super::fields::decode_base64;
use super::{Call, Fail, Outcome, Reply, bad, internal, is_key_name, non_empty, object, text};

/// A reply for an engine failure other than "not found", or `None` to use the
/// shared mapping.
fn engine_error(error: &ServiceError) -> Option<&EngineError> {
    match error {
        ServiceError::Engine(engine) => Some(engine),
        _ => None,
    }
}

/// `LIST keys` (and `GET keys?list=true`): 404 `{"errors":[]}` when empty;
/// internal entries (names ending in `/`) are never listed.
pub(super) fn list(call: &Call<'_>) -> Reply {
    let fields = call.fields;
    call.run_default(None, |engine| -> Outcome {
        let after = text(&fields, "after")?;
        let limit = fields.int("limit")?.filter(|l| *l > 0);
        let mut names: Vec<String> = engine
            .list_keys()
            .into_iter()
            .filter(|n| !n.ends_with('/'))
            .filter(|n| {
                after
                    .as_deref()
                    .is_none_or(|a| a.is_empty() || n.as_str() > a)
            })
            .collect();
        if let Some(limit) = limit {
            names.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        if names.is_empty() {
            return Ok(Reply::not_found());
        }
        Ok(Reply::data(object([("keys", Value::from(names))])))
    })
}

/// `GET keys/:name` (`?context=` selects a derived Ed25519 public key).
pub(super) fn read(call: &Call<'_>, name: &str) -> Reply {
    let fields = call.fields;
    call.run_default(None, |engine| -> Outcome {
        let context = non_empty(&fields, "context")?;
        let context = match context {
            Some(text) => {
                Some(decode_base64(&text).map_err(|_| bad("failed to base64-decode context"))?)
            }
            None => None,
        };
        let description = engine.read_key(name, context.as_deref())?;
        Ok(Reply::data(key_json(&description)))
    })
}

/// `POST keys/:name`: creates the key, or answers the existing one unchanged.
pub(super) fn create(call: &Call<'_>, name: &str) -> Reply {
    let fields = call.fields;
    let map = |error: &ServiceError| match engine_error(error) {
        // Vault returns this as a plain error (reference §4.1 quirk).
        Some(EngineError::Keyring(e @ KeyringError::ConvergentNotSupported(_))) => {
            Reply::internal(e)
        }
        _ => rest_reply(error, None),
    };
    call.run(map, |engine| -> Outcome {
        let type_name = non_empty(&fields, "type")?;
        let key_type = match type_name.as_deref() {
            None => KeyType::Aes256Gcm96,
            Some(name) => name.parse::<KeyType>().map_err(|e| bad(e.to_string()))?,
        };
        let key_size = match fields.int("key_size")? {
            None | Some(0) => None,
            Some(size) if size < 0 => {
                return Err(bad(if key_type == KeyType::Hmac {
                    format!("invalid key_size {size}")
                } else {
                    format!("key_size is not valid for algorithm {key_type}")
                }));
            }
            Some(size) => Some(usize::try_from(size).unwrap_or(usize::MAX)),
        };
        let options = CreateOptions {
            key_type,
            derived: fields.bool("derived")?.unwrap_or(false),
            convergent: fields.bool("convergent_encryption")?.unwrap_or(false),
            exportable: fields.bool("exportable")?.unwrap_or(false),
            allow_plaintext_backup: fields.bool("allow_plaintext_backup")?.unwrap_or(false),
            auto_rotate_period_secs: fields.duration_secs("auto_rotate_period")?.unwrap_or(0),
            key_size,
        };
        let (description, _created) = engine.create_key(name, &options)?;
        Ok(Reply::data(key_json(&description)))
    })
}

/// `DELETE keys/:name` (needs `deletion_allowed`; a missing key is a 400).
pub(super) fn delete(call: &Call<'_>, name: &str) -> Reply {
    let map = |error: &ServiceError| match engine_error(error) {
        Some(EngineError::KeyNotFound { .. }) => Reply::bad_request(format!(
            "error deleting policy {name}: could not delete key; not found"
        )),
        Some(EngineError::Keyring(e @ KeyringError::DeletionNotAllowed)) => {
            Reply::bad_request(format!("error deleting policy {name}: {e}"))
        }
        _ => rest_reply(error, None),
    };
    call.run(map, |engine| {
        engine.delete_key(name)?;
        Ok(Reply::NoContent)
    })
}

/// `POST keys/:name/config`.
pub(super) fn configure(call: &Call<'_>, name: &str) -> Reply {
    let fields = call.fields;
    let map = |error: &ServiceError| match engine_error(error) {
        Some(EngineError::KeyNotFound { .. }) => {
            Reply::bad_request(format!("no existing key named {name} could be found"))
        }
        _ => rest_reply(error, None),
    };
    call.run(map, |engine| -> Outcome {
        let update = ConfigUpdate {
            min_decryption_version: fields.int("min_decryption_version")?,
            min_encryption_version: fields.int("min_encryption_version")?,
            deletion_allowed: fields.bool("deletion_allowed")?,
            exportable: fields.bool("exportable")?,
            allow_plaintext_backup: fields.bool("allow_plaintext_backup")?,
            auto_rotate_period_secs: fields.duration_secs("auto_rotate_period")?,
        };
        let (description, warnings) = engine.update_key_config(name, &update)?;
        Ok(Reply::data_with_warnings(
            Some(key_json(&description)),
            warnings,
        ))
    })
}

/// `POST keys/:name/rotate`.
pub(super) fn rotate(call: &Call<'_>, name: &str) -> Reply {
    call.run_default(Some("key not found"), |engine| {
        let description = engine.rotate_key(name)?;
        Ok(Reply::data(key_json(&description)))
    })
}

/// `POST keys/:name/trim`.
pub(super) fn trim(call: &Call<'_>, name: &str) -> Reply {
    let fields = call.fields;
    call.run_default(Some("invalid key name"), |engine| -> Outcome {
        let Some(min) = fields.int("min_available_version")? else {
            return Err(bad("missing min_available_version"));
        };
        let description = engine.trim_key(name, min)?;
        Ok(Reply::data(key_json(&description)))
    })
}

/// `GET wrapping_key`: the mount's RSA-4096 BYOK key (created on first use).
pub(super) fn wrapping_key(call: &Call<'_>) -> Reply {
    call.run_default(None, |engine| {
        let pem = engine.wrapping_key_pem()?;
        Ok(Reply::data(object([("public_key", Value::String(pem))])))
    })
}

/// The OAEP hash of a BYOK envelope (`SHA256`, case-insensitive; hyphenated
/// names accepted too).
fn import_hash(fields: &super::super::Fields<'_>) -> Result<HashAlgorithm, Fail> {
    let Some(name) = non_empty(fields, "hash_function")? else {
        return Ok(HashAlgorithm::Sha2_256);
    };
    let normalized = name.to_ascii_uppercase().replace('-', "");
    Ok(match normalized.as_str() {
        "SHA1" => HashAlgorithm::Sha1,
        "SHA224" => HashAlgorithm::Sha2_224,
        "SHA256" => HashAlgorithm::Sha2_256,
        "SHA384" => HashAlgorithm::Sha2_384,
        "SHA512" => HashAlgorithm::Sha2_512,
        _ => return Err(bad(format!("unknown hash function: {name}"))),
    })
}

/// The material of an import: the decoded envelope, or a public key PEM.
enum Material<'a> {
    Wrapped(Vec<u8>),
    PublicKey(std::borrow::Cow<'a, str>),
}

fn import_material<'a>(fields: &super::super::Fields<'a>) -> Result<Material<'a>, Fail> {
    if let Some(ciphertext) = non_empty(fields, "ciphertext")? {
        // Vault answers undecodable envelopes with plain errors (500).
        return Ok(Material::Wrapped(
            decode_base64(&ciphertext).map_err(internal)?,
        ));
    }
    match non_empty(fields, "public_key")? {
        Some(pem) => Ok(Material::PublicKey(pem)),
        None => Err(internal("provided type does not support public_key import")),
    }
}

/// Import failures are plain errors (500) in Vault; only the size check keeps
/// the `error importing key:` prefix.
fn map_import(error: &ServiceError) -> Reply {
    match engine_error(error) {
        Some(EngineError::Keyring(KeyringError::ImportInvalid(message)))
            if !message.starts_with("invalid key size") =>
        {
            Reply::internal(message)
        }
        _ => rest_reply(error, None),
    }
}

/// `POST keys/:name/import`.
pub(super) fn import(call: &Call<'_>, name: &str) -> Reply {
    let fields = call.fields;
    let map = |error: &ServiceError| match engine_error(error) {
        Some(EngineError::KeyExists { .. }) => Reply::internal(
            "the import path cannot be used with an existing key; use import-version to rotate an existing imported key",
        ),
        _ => map_import(error),
    };
    call.run(map, |engine| -> Outcome {
        let key_type = match non_empty(&fields, "type")? {
            None => KeyType::Aes256Gcm96,
            Some(name) => name
                .parse::<KeyType>()
                .map_err(|_| bad(format!("unknown key type: {name}")))?,
        };
        let hash = import_hash(&fields)?;
        if fields.has("convergent_encryption") {
            return Err(internal(
                "import cannot be used on keys with convergent encryption enabled",
            ));
        }
        let allow_rotation = fields.bool("allow_rotation")?.unwrap_or(false);
        let auto_rotate_period_secs = fields.duration_secs("auto_rotate_period")?.unwrap_or(0);
        if auto_rotate_period_secs != 0 && !allow_rotation {
            return Err(internal(
                "allow_rotation must be set to true if auto-rotation is enabled",
            ));
        }
        let options = ImportOptions {
            key_type,
            derived: fields.bool("derived")?.unwrap_or(false),
            convergent: false,
            exportable: fields.bool("exportable")?.unwrap_or(false),
            allow_plaintext_backup: fields.bool("allow_plaintext_backup")?.unwrap_or(false),
            allow_rotation,
            auto_rotate_period_secs,
        };
        if engine.has_key(name) {
            return Err(EngineError::KeyExists {
                name: name.to_owned(),
            }
            .into());
        }
        match import_material(&fields)? {
            Material::Wrapped(ciphertext) => engine.import_key(
                name,
                &options,
                ImportPayload::Wrapped {
                    ciphertext: &ciphertext,
                    hash,
                },
            )?,
            Material::PublicKey(pem) => {
                engine.import_key(name, &options, ImportPayload::PublicKey(&pem))?
            }
        }
        Ok(Reply::NoContent)
    })
}

/// `POST keys/:name/import_version`.
pub(super) fn import_version(call: &Call<'_>, name: &str) -> Reply {
    let fields = call.fields;
    let map = |error: &ServiceError| match engine_error(error) {
        Some(EngineError::KeyNotFound { .. }) => Reply::internal(format!(
            "no key found with name {name}; to import a new key, use the import/ endpoint"
        )),
        _ => map_import(error),
    };
    call.run(map, |engine| -> Outcome {
        let hash = import_hash(&fields)?;
        let version = match fields.int("version")? {
            None | Some(0) => None,
            Some(v) => Some(u32::try_from(v).map_err(|_| bad(format!("invalid version {v}")))?),
        };
        if !engine.has_key(name) {
            return Err(EngineError::KeyNotFound {
                name: name.to_owned(),
            }
            .into());
        }
        match import_material(&fields)? {
            Material::Wrapped(ciphertext) => engine.import_key_version(
                name,
                ImportPayload::Wrapped {
                    ciphertext: &ciphertext,
                    hash,
                },
                version,
            )?,
            Material::PublicKey(pem) => {
                engine.import_key_version(name, ImportPayload::PublicKey(&pem), version)?
            }
        }
        Ok(Reply::NoContent)
    })
}

/// `GET export/:type/:name(/:version)`.
pub(super) fn export(call: &Call<'_>, kind: &str, name: &str, version: Option<&str>) -> Reply {
    call.run_default(None, |engine| -> Outcome {
        let Some(export_kind) = ExportKind::parse(kind) else {
            return Err(bad(format!("invalid export type: {kind}")));
        };
        let (key_type, values) = engine.export_key(name, export_kind, version)?;
        let mut keys = Map::new();
        for (number, value) in values {
            keys.insert(
                number.to_string(),
                Value::String(String::from_utf8_lossy(value.expose_secret()).into_owned()),
            );
        }
        Ok(Reply::data(object([
            ("keys", Value::Object(keys)),
            ("name", Value::from(name)),
            ("type", Value::from(key_type.name())),
        ])))
    })
}

/// `GET backup/:name`: refusals are plain errors (500), as in Vault.
pub(super) fn backup(call: &Call<'_>, name: &str) -> Reply {
    let map = |error: &ServiceError| match engine_error(error) {
        Some(e @ EngineError::KeyNotFound { .. }) => Reply::internal(e),
        _ => rest_reply(error, None),
    };
    call.run(map, |engine| {
        let blob = engine.backup_key(name)?;
        let text = String::from_utf8_lossy(blob.expose_secret()).into_owned();
        Ok(Reply::data(object([("backup", Value::String(text))])))
    })
}

/// `POST restore(/:name)`: the name comes from the URL only (a body `name`
/// is replaced by the capture, as in Vault).
pub(super) fn restore(call: &Call<'_>, name: Option<&str>) -> Reply {
    let fields = call.fields;
    call.run_default(None, |engine| -> Outcome {
        let Some(backup) = non_empty(&fields, "backup")? else {
            return Err(bad("'backup' must be supplied"));
        };
        let force = fields.bool("force")?.unwrap_or(false);
        if let Some(name) = name
            && !name.contains('/')
            && !is_key_name(name)
        {
            // A key no other path could reach.
            return Ok(Reply::unsupported_path());
        }
        engine.restore_key(&RestoreRequest {
            name,
            backup: &backup,
            force,
        })?;
        Ok(Reply::NoContent)
    })
}

/// Read-key's `data` (reference §4.2), plus cipherd's `encryption_counts`
/// (per version, for types that encrypt) outside `keys`, where clients do not
/// look.
pub(super) fn key_json(description: &KeyDescription) -> Value {
    let config = &description.config;
    let key_type = description.key_type;
    let mut data = Map::new();
    let mut put = |key: &str, value: Value| {
        data.insert(key.to_owned(), value);
    };
    put("name", Value::from(description.name.as_str()));
    put("type", Value::from(key_type.name()));
    put("derived", Value::Bool(config.derived));
    put("deletion_allowed", Value::Bool(config.deletion_allowed));
    put("exportable", Value::Bool(config.exportable));
    put(
        "allow_plaintext_backup",
        Value::Bool(config.allow_plaintext_backup),
    );
    put("latest_version", Value::from(description.latest_version));
    put(
        "min_decryption_version",
        Value::from(config.min_decryption_version),
    );
    put(
        "min_encryption_version",
        Value::from(config.min_encryption_version),
    );
    put(
        "min_available_version",
        Value::from(config.min_available_version),
    );
    put(
        "supports_encryption",
        Value::Bool(key_type.supports_encryption()),
    );
    put(
        "supports_decryption",
        Value::Bool(key_type.supports_encryption()),
    );
    put("supports_signing", Value::Bool(key_type.supports_signing()));
    put(
        "supports_derivation",
        Value::Bool(key_type.supports_derivation()),
    );
    put(
        "auto_rotate_period",
        Value::from(config.auto_rotate_period_secs),
    );
    put("imported_key", Value::Bool(config.imported));
    put("soft_deleted", Value::Bool(false));
    if config.imported {
        put(
            "imported_key_allow_rotation",
            Value::Bool(config.allow_imported_rotation),
        );
    }
    if config.key_size != 0 {
        put("key_size", Value::from(config.key_size));
    }
    if config.derived {
        put("kdf", Value::from(config.kdf.name()));
        if config.kdf == Kdf::LegacyCounter {
            put("kdf_mode", Value::from(Kdf::LegacyCounter.name()));
        }
        put("convergent_encryption", Value::Bool(config.convergent));
        if config.convergent {
            put("convergent_encryption_version", Value::from(-1));
        }
    }
    if let Some(stamp) = config.backup_info {
        put("backup_info", stamp_json(stamp));
    }
    if let Some(stamp) = config.restore_info {
        put("restore_info", stamp_json(stamp));
    }
    let mut keys = Map::new();
    for version in &description.versions {
        let value = match key_type.family() {
            KeyFamily::Hmac => continue,
            KeyFamily::Aead(_) => {
                Value::from(version.created_unix_nanos.div_euclid(1_000_000_000) as i64)
            }
            KeyFamily::Asymmetric(_) => object([
                ("certificate_chain", Value::from("")),
                (
                    "creation_time",
                    Value::String(rfc3339_nanos(version.created_unix_nanos)),
                ),
                ("name", Value::from(version.algorithm_name.unwrap_or(""))),
                (
                    "public_key",
                    Value::String(version.public_key.clone().unwrap_or_default()),
                ),
            ]),
        };
        keys.insert(version.number.to_string(), value);
    }
    if key_type != KeyType::Hmac {
        put("keys", Value::Object(keys));
    }
    if key_type.supports_encryption() {
        let counts: Map<String, Value> = description
            .versions
            .iter()
            .map(|v| (v.number.to_string(), Value::from(v.encryptions)))
            .collect();
        put("encryption_counts", Value::Object(counts));
    }
    Value::Object(data)
}

/// `{"time": <RFC3339Nano>, "version": N}`.
fn stamp_json(stamp: BackupStamp) -> Value {
    object([
        ("time", Value::String(rfc3339_nanos(stamp.unix_nanos))),
        ("version", Value::from(stamp.version)),
    ])
}

/// Go's `time.RFC3339Nano` in UTC: fractional seconds without trailing zeros.
pub(super) fn rfc3339_nanos(unix_nanos: i128) -> String {
    let seconds = unix_nanos.div_euclid(1_000_000_000) as i64;
    let nanos = unix_nanos.rem_euclid(1_000_000_000) as u32;
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    );
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_go() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nanos(1_735_787_045_123_456_789),
            "2025-01-02T03:04:05.123456789Z"
        );
        assert_eq!(
            rfc3339_nanos(1_735_787_045_120_000_000),
            "2025-01-02T03:04:05.12Z"
        );
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_000),
            "2000-02-29T00:00:00Z"
        );
    }
}
