//! Key management handlers and the `Key` message (read-key's description).

use crate::keyring::{ConfigUpdate, CreateOptions, KeyDescription, KeyType};
use crate::service::{Service, TransitOp};

use super::{Caller, engine_status, optional, pb, run};

/// `KeyDescription` → `Key`.
fn key_message(description: KeyDescription) -> pb::Key {
    let config = &description.config;
    let key_type = description.key_type;
    pb::Key {
        name: description.name.clone(),
        r#type: key_type.name().to_owned(),
        derived: config.derived,
        kdf: if config.derived {
            config.kdf.name().to_owned()
        } else {
            String::new()
        },
        convergent_encryption: config.convergent,
        exportable: config.exportable,
        allow_plaintext_backup: config.allow_plaintext_backup,
        deletion_allowed: config.deletion_allowed,
        latest_version: description.latest_version,
        min_decryption_version: config.min_decryption_version,
        min_encryption_version: config.min_encryption_version,
        min_available_version: config.min_available_version,
        auto_rotate_period_seconds: config.auto_rotate_period_secs,
        supports_encryption: key_type.supports_encryption(),
        supports_decryption: key_type.supports_encryption(),
        supports_signing: key_type.supports_signing(),
        supports_derivation: key_type.supports_derivation(),
        imported_key: config.imported,
        key_size: u32::try_from(config.key_size).unwrap_or(u32::MAX),
        versions: description
            .versions
            .into_iter()
            .map(|version| pb::KeyVersion {
                version: version.number,
                // i64 nanoseconds reach the year 2262.
                created_unix_nanos: i64::try_from(version.created_unix_nanos).unwrap_or(i64::MAX),
                algorithm: version.algorithm_name.unwrap_or_default().to_owned(),
                public_key: version.public_key.unwrap_or_default(),
                encryptions: version.encryptions,
            })
            .collect(),
    }
}

pub(super) fn create(
    service: &Service,
    token: Caller<'_>,
    message: pb::CreateKeyRequest,
) -> Result<pb::CreateKeyResponse, tonic::Status> {
    let key = &message.key;
    run(
        service,
        token,
        &message.mount,
        TransitOp::CreateKey(key),
        |engine| {
            let key_type = match message.r#type.as_str() {
                "" => KeyType::Aes256Gcm96,
                name => name
                    .parse::<KeyType>()
                    .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?,
            };
            let options = CreateOptions {
                key_type,
                derived: message.derived,
                convergent: message.convergent_encryption,
                exportable: message.exportable,
                allow_plaintext_backup: message.allow_plaintext_backup,
                auto_rotate_period_secs: message.auto_rotate_period_seconds,
                key_size: (message.key_size != 0).then_some(message.key_size as usize),
            };
            let (description, created) = engine.create_key(key, &options).map_err(engine_status)?;
            Ok(pb::CreateKeyResponse {
                key: Some(key_message(description)),
                created,
            })
        },
    )
}

pub(super) fn read(
    service: &Service,
    token: Caller<'_>,
    message: pb::ReadKeyRequest,
) -> Result<pb::ReadKeyResponse, tonic::Status> {
    let key = &message.key;
    run(
        service,
        token,
        &message.mount,
        TransitOp::ReadKey(key),
        |engine| {
            let description = engine
                .read_key(key, optional(&message.context))
                .map_err(engine_status)?;
            Ok(pb::ReadKeyResponse {
                key: Some(key_message(description)),
            })
        },
    )
}

pub(super) fn list(
    service: &Service,
    token: Caller<'_>,
    message: pb::ListKeysRequest,
) -> Result<pb::ListKeysResponse, tonic::Status> {
    run(
        service,
        token,
        &message.mount,
        TransitOp::ListKeys,
        |engine| {
            // Names ending in '/' are the engine's own entries, never listed.
            let keys = engine
                .list_keys()
                .into_iter()
                .filter(|n| !n.ends_with('/'))
                .collect();
            Ok(pb::ListKeysResponse { keys })
        },
    )
}

pub(super) fn rotate(
    service: &Service,
    token: Caller<'_>,
    message: pb::RotateKeyRequest,
) -> Result<pb::RotateKeyResponse, tonic::Status> {
    let key = &message.key;
    run(
        service,
        token,
        &message.mount,
        TransitOp::RotateKey(key),
        |engine| {
            let description = engine.rotate_key(key).map_err(engine_status)?;
            Ok(pb::RotateKeyResponse {
                key: Some(key_message(description)),
            })
        },
    )
}

pub(super) fn update_config(
    service: &Service,
    token: Caller<'_>,
    message: pb::UpdateKeyConfigRequest,
) -> Result<pb::UpdateKeyConfigResponse, tonic::Status> {
    let key = &message.key;
    run(
        service,
        token,
        &message.mount,
        TransitOp::ConfigureKey(key),
        |engine| {
            let update = ConfigUpdate {
                min_decryption_version: message.min_decryption_version,
                min_encryption_version: message.min_encryption_version,
                deletion_allowed: message.deletion_allowed,
                exportable: message.exportable,
                allow_plaintext_backup: message.allow_plaintext_backup,
                auto_rotate_period_secs: message.auto_rotate_period_seconds,
            };
            let (description, warnings) = engine
                .update_key_config(key, &update)
                .map_err(engine_status)?;
            Ok(pb::UpdateKeyConfigResponse {
                key: Some(key_message(description)),
                warnings,
            })
        },
    )
}

pub(super) fn trim(
    service: &Service,
    token: Caller<'_>,
    message: pb::TrimKeyRequest,
) -> Result<pb::TrimKeyResponse, tonic::Status> {
    let key = &message.key;
    run(
        service,
        token,
        &message.mount,
        TransitOp::TrimKey(key),
        |engine| {
            let description = engine
                .trim_key(key, message.min_available_version)
                .map_err(engine_status)?;
            Ok(pb::TrimKeyResponse {
                key: Some(key_message(description)),
            })
        },
    )
}

pub(super) fn delete(
    service: &Service,
    token: Caller<'_>,
    message: pb::DeleteKeyRequest,
) -> Result<pb::DeleteKeyResponse, tonic::Status> {
    let key = &message.key;
    run(
        service,
        token,
        &message.mount,
        TransitOp::DeleteKey(key),
        |engine| {
            engine.delete_key(key).map_err(engine_status)?;
            Ok(pb::DeleteKeyResponse {})
        },
    )
}
