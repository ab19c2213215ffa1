//! THE mapping from service errors to the wire: HTTP status plus Vault's error
//! text here, gRPC codes beside it. Every variant is matched explicitly so a new
//! error cannot slip through with a default status. Internal details (storage
//! failures) are logged, not sent.

use axum::http::StatusCode;
use tonic::{Code, Status};

use crate::audit::AuditError;
use crate::auth::AuthError;
use crate::crypto::CryptoError;
use crate::engine::EngineError;
use crate::keyring::{ErrorClass, KeyringError};
use crate::seal::SealError;
use crate::service::ServiceError;
use crate::storage::StorageError;

use super::rest::reply::{Reply, multierror};

/// The REST reply for a service error. `key_not_found` words a missing key the
/// way the endpoint does in Vault ("encryption key not found", ...); `None`
/// answers 404 `{"errors":[]}` as Vault's read endpoints do.
pub fn rest_reply(error: &ServiceError, key_not_found: Option<&str>) -> Reply {
    match error {
        ServiceError::Sealed => Reply::errors(
            StatusCode::SERVICE_UNAVAILABLE,
            vec!["Vault is sealed".into()],
        ),
        ServiceError::NotInitialized => Reply::errors(
            StatusCode::SERVICE_UNAVAILABLE,
            vec!["Vault is sealed".into()],
        ),
        ServiceError::PermissionDenied => {
            Reply::errors(StatusCode::FORBIDDEN, vec!["permission denied".into()])
        }
        ServiceError::NoSuchMount { .. } => {
            Reply::errors(StatusCode::NOT_FOUND, vec![error.to_string()])
        }
        ServiceError::MountInvalid(message) => Reply::bad_request(message.clone()),
        ServiceError::Auth(auth) => auth_reply(auth),
        ServiceError::Seal(seal) => seal_reply(seal),
        ServiceError::Storage(storage) => {
            tracing::error!(error = %storage, "storage failure");
            Reply::internal("internal error")
        }
        ServiceError::Engine(engine) => engine_reply(engine, key_not_found),
        ServiceError::Audit(audit) => audit_reply(audit),
    }
}

fn audit_reply(error: &AuditError) -> Reply {
    match error {
        AuditError::Invalid(_) | AuditError::PathInUse | AuditError::NoSuchDevice => {
            Reply::bad_request(error.to_string())
        }
        AuditError::Io { .. } => Reply::bad_request(error.to_string()),
        AuditError::Unavailable => {
            tracing::error!("request refused: no audit device could write its entry");
            Reply::internal(error)
        }
        AuditError::Storage(storage) => {
            tracing::error!(error = %storage, "storage failure in audit");
            Reply::internal("internal error")
        }
    }
}

fn auth_reply(error: &AuthError) -> Reply {
    match error {
        // OpenBao 2.7.2 (reference §2.2): an ACL denial travels as a Go error
        // (multierror-wrapped); a token that does not resolve is refused
        // before the request is routed, with the plain text.
        AuthError::PermissionDenied => {
            Reply::errors(StatusCode::FORBIDDEN, vec![multierror("permission denied")])
        }
        AuthError::UnknownToken => {
            Reply::errors(StatusCode::FORBIDDEN, vec!["permission denied".into()])
        }
        AuthError::Storage(storage) => {
            tracing::error!(error = %storage, "storage failure in auth");
            Reply::internal("internal error")
        }
        other => Reply::bad_request(other.to_string()),
    }
}

fn seal_reply(error: &SealError) -> Reply {
    match error {
        SealError::Sealed => Reply::errors(
            StatusCode::SERVICE_UNAVAILABLE,
            vec!["Vault is sealed".into()],
        ),
        SealError::Storage(storage) => {
            tracing::error!(error = %storage, "storage failure in seal");
            Reply::internal("internal error")
        }
        SealError::AlreadyInitialized
        | SealError::DuplicateShare
        | SealError::InvalidParameters { .. }
        | SealError::InvalidShare { .. }
        | SealError::NotInitialized
        | SealError::WrongShares => Reply::bad_request(error.to_string()),
    }
}

fn engine_reply(error: &EngineError, key_not_found: Option<&str>) -> Reply {
    match error {
        EngineError::KeyNotFound { .. } => match key_not_found {
            Some(message) => Reply::bad_request(message),
            None => Reply::not_found(),
        },
        EngineError::Keyring(keyring) => match keyring.class() {
            ErrorClass::User => Reply::bad_request(keyring.to_string()),
            ErrorClass::Internal => Reply::internal(keyring),
        },
        EngineError::BatchTooLarge { .. } => {
            Reply::errors(StatusCode::PAYLOAD_TOO_LARGE, vec![error.to_string()])
        }
        EngineError::BatchEmpty
        | EngineError::BatchContextMixed
        | EngineError::InvalidBitLength
        | EngineError::RandomBytesOutOfRange(_) => Reply::bad_request(error.to_string()),
        EngineError::InvalidKeyName => Reply::internal(error),
        EngineError::KeyExists { .. } => Reply::internal(error),
        EngineError::WriteConflict { .. } => {
            Reply::errors(StatusCode::CONFLICT, vec![error.to_string()])
        }
        EngineError::Storage(crate::storage::StorageError::Sealed) => Reply::errors(
            StatusCode::SERVICE_UNAVAILABLE,
            vec!["Vault is sealed".into()],
        ),
        EngineError::StoredKeyUnreadable { .. } | EngineError::Storage(_) => {
            tracing::error!(%error, "engine storage failure");
            Reply::internal("internal error")
        }
    }
}

// ---------------------------------------------------------------------------
// gRPC

/// The message of every `INTERNAL` status: the details go to the log only.
const GRPC_INTERNAL: &str = "internal error";

/// The gRPC status for a service error: `INVALID_ARGUMENT` for bad input (and
/// failed decryption), `PERMISSION_DENIED`, `NOT_FOUND` for a missing key or
/// mount, `UNAVAILABLE` while sealed, `RESOURCE_EXHAUSTED` for a batch over the
/// limit, `FAILED_PRECONDITION` when the key or server is not in a state that
/// allows the request, and `INTERNAL` with a generic message for everything
/// that is the server's fault (logged here, never sent).
pub fn grpc_status(error: &ServiceError) -> Status {
    match error {
        ServiceError::Sealed => Status::unavailable("Vault is sealed"),
        ServiceError::NotInitialized => Status::unavailable(error.to_string()),
        ServiceError::PermissionDenied => Status::permission_denied("permission denied"),
        ServiceError::NoSuchMount { .. } => Status::not_found(error.to_string()),
        ServiceError::MountInvalid(message) => Status::invalid_argument(message.clone()),
        ServiceError::Auth(auth) => auth_status(auth),
        ServiceError::Seal(seal) => seal_status(seal),
        ServiceError::Storage(storage) => storage_status(storage),
        ServiceError::Engine(engine) => engine_status(engine),
        ServiceError::Audit(audit) => audit_status(audit),
    }
}

fn audit_status(error: &AuditError) -> Status {
    match error {
        AuditError::Invalid(_)
        | AuditError::PathInUse
        | AuditError::NoSuchDevice
        | AuditError::Io { .. } => Status::invalid_argument(error.to_string()),
        // Retrying may succeed once the device can write again.
        AuditError::Unavailable => Status::unavailable(error.to_string()),
        AuditError::Storage(storage) => internal_status(storage, "audit"),
    }
}

fn internal_status(error: &dyn std::fmt::Display, layer: &'static str) -> Status {
    tracing::error!(%error, layer, "internal failure");
    Status::internal(GRPC_INTERNAL)
}

fn storage_status(error: &StorageError) -> Status {
    match error {
        StorageError::Sealed => Status::unavailable("Vault is sealed"),
        StorageError::Backend { .. }
        | StorageError::Corrupt { .. }
        | StorageError::InvalidPath { .. } => internal_status(error, "storage"),
    }
}

fn auth_status(error: &AuthError) -> Status {
    match error {
        AuthError::PermissionDenied | AuthError::UnknownToken => {
            Status::permission_denied("permission denied")
        }
        AuthError::InvalidPolicy { .. } | AuthError::InvalidRequest(_) => {
            Status::invalid_argument(error.to_string())
        }
        AuthError::NotRenewable => Status::failed_precondition(error.to_string()),
        AuthError::Storage(storage) => storage_status(storage),
    }
}

fn seal_status(error: &SealError) -> Status {
    match error {
        SealError::Sealed => Status::unavailable("Vault is sealed"),
        SealError::Storage(storage) => storage_status(storage),
        SealError::AlreadyInitialized | SealError::NotInitialized => {
            Status::failed_precondition(error.to_string())
        }
        SealError::DuplicateShare
        | SealError::InvalidParameters { .. }
        | SealError::InvalidShare { .. }
        | SealError::WrongShares => Status::invalid_argument(error.to_string()),
    }
}

fn engine_status(error: &EngineError) -> Status {
    match error {
        EngineError::KeyNotFound { .. } => Status::not_found(error.to_string()),
        EngineError::KeyExists { .. } => Status::already_exists(error.to_string()),
        EngineError::Keyring(keyring) => keyring_status(keyring),
        EngineError::BatchTooLarge { .. } => Status::resource_exhausted(error.to_string()),
        EngineError::BatchEmpty
        | EngineError::BatchContextMixed
        | EngineError::InvalidBitLength
        | EngineError::InvalidKeyName
        | EngineError::RandomBytesOutOfRange(_) => Status::invalid_argument(error.to_string()),
        // Safe to retry: another writer changed the key at the same moment.
        EngineError::WriteConflict { .. } => Status::aborted(error.to_string()),
        EngineError::Storage(storage) => storage_status(storage),
        EngineError::StoredKeyUnreadable { .. } => internal_status(error, "engine"),
    }
}

/// Keyring errors carry Vault's texts, which name the defect and never hold
/// key material, plaintext or ciphertext.
fn keyring_status(error: &KeyringError) -> Status {
    let code = match error {
        KeyringError::Crypto(crypto) => match crypto {
            CryptoError::KeyGeneration | CryptoError::SigningFailed => {
                return internal_status(error, "keyring");
            }
            CryptoError::AuthenticationFailed
            | CryptoError::RsaDecryptionFailed
            | CryptoError::CiphertextTooShort
            | CryptoError::InvalidKeyLength { .. }
            | CryptoError::InvalidNonceLength { .. }
            | CryptoError::InvalidKeyEncoding(_)
            | CryptoError::MalformedSignature
            | CryptoError::MessageTooLong
            | CryptoError::InvalidSaltLength(_)
            | CryptoError::UnsupportedHash(_)
            | CryptoError::InvalidDigestLength { .. }
            | CryptoError::PublicKeyOnly
            | CryptoError::InvalidOutputLength(_) => Code::InvalidArgument,
        },
        // The key's configuration forbids the request.
        KeyringError::BackupNotAllowed(_)
        | KeyringError::DeletionNotAllowed
        | KeyringError::ExportNotAllowed(_)
        | KeyringError::ImportedKeyRotationNotAllowed(_) => Code::FailedPrecondition,
        KeyringError::AssociatedDataNotSupported(_)
        | KeyringError::AuthenticationFailed
        | KeyringError::AutoRotatePeriodTooShort
        | KeyringError::BackupInvalid(_)
        | KeyringError::CiphertextTooShort
        | KeyringError::ConfigInvalid(_)
        | KeyringError::ConvergentRequiresDerivation
        | KeyringError::ConvergentNotSupported(_)
        | KeyringError::DecryptionNotSupported(_)
        | KeyringError::DerivationNotSupported(_)
        | KeyringError::EncryptionNotSupported(_)
        | KeyringError::ExportUnsupported(_)
        | KeyringError::HashNoneRequiresPkcs1Prehashed
        | KeyringError::HmacVersionTooOld
        | KeyringError::HmacVersionMissing { .. }
        | KeyringError::ImportInvalid(_)
        | KeyringError::KeySizeInvalid(_)
        | KeyringError::Malformed(..)
        | KeyringError::MissingContext
        | KeyringError::NoSuchVersion
        | KeyringError::PublicKeyOnly(_)
        | KeyringError::RsaDecrypt(_)
        | KeyringError::RsaEncrypt(_)
        | KeyringError::SigningNotSupported(_)
        | KeyringError::TrimInvalid(_)
        | KeyringError::VerificationNotSupported(_)
        | KeyringError::VersionOutOfRange(..)
        | KeyringError::VersionTooNew(_)
        | KeyringError::VersionTooOld(_) => Code::InvalidArgument,
    };
    Status::new(code, error.to_string())
}

/// A per-item failure in a gRPC batch: the text a failed item carries (the
/// status message the same failure would have as a single call).
pub fn grpc_item_error(error: &KeyringError) -> String {
    keyring_status(error).message().to_owned()
}
