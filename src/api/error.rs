//! THE mapping from service errors to the wire: HTTP status plus Vault's error
//! text here, gRPC codes beside it. Every variant is matched explicitly so a new
//! error cannot slip through with a default status. Internal details (storage
//! failures) are logged, not sent.

use axum::http::StatusCode;

use crate::auth::AuthError;
use crate::engine::EngineError;
use crate::keyring::ErrorClass;
use crate::seal::SealError;
use crate::service::ServiceError;

use super::rest::reply::{Reply, multierror};

/// The REST reply for a service error. `key_not_found` words a missing key the
/// way the endpoint does in Vault ("encryption key not found", ...); `None`
/// answers 404 `{"errors":[]}` as Vault's read endpoints do.
pub fn rest_reply(error: &ServiceError, key_not_found: Option<&str>) -> Reply {
    match error {
        ServiceError::Sealed => Reply::errors(StatusCode::SERVICE_UNAVAILABLE, vec!["Vault is sealed".into()]),
        ServiceError::NotInitialized => Reply::errors(StatusCode::SERVICE_UNAVAILABLE, vec!["Vault is sealed".into()]),
        ServiceError::PermissionDenied => Reply::errors(StatusCode::FORBIDDEN, vec!["permission denied".into()]),
        ServiceError::NoSuchMount { .. } => Reply::errors(StatusCode::NOT_FOUND, vec![error.to_string()]),
        ServiceError::MountInvalid(message) => Reply::bad_request(message.clone()),
        ServiceError::Auth(auth) => auth_reply(auth),
        ServiceError::Seal(seal) => seal_reply(seal),
        ServiceError::Storage(storage) => {
            tracing::error!(error = %storage, "storage failure");
            Reply::internal("internal error")
        }
        ServiceError::Engine(engine) => engine_reply(engine, key_not_found),
    }
}

fn auth_reply(error: &AuthError) -> Reply {
    match error {
        AuthError::PermissionDenied => Reply::errors(StatusCode::FORBIDDEN, vec![multierror("permission denied")]),
        AuthError::Storage(storage) => {
            tracing::error!(error = %storage, "storage failure in auth");
            Reply::internal("internal error")
        }
        other => Reply::bad_request(other.to_string()),
    }
}

fn seal_reply(error: &SealError) -> Reply {
    match error {
        SealError::Sealed => Reply::errors(StatusCode::SERVICE_UNAVAILABLE, vec!["Vault is sealed".into()]),
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
        EngineError::BatchTooLarge { .. } => Reply::errors(StatusCode::PAYLOAD_TOO_LARGE, vec![error.to_string()]),
        EngineError::BatchEmpty
        | EngineError::BatchContextMixed
        | EngineError::InvalidBitLength
        | EngineError::RandomBytesOutOfRange(_) => Reply::bad_request(error.to_string()),
        EngineError::InvalidKeyName => Reply::internal(error),
        EngineError::KeyExists { .. } => Reply::internal(error),
        EngineError::WriteConflict { .. } => Reply::errors(StatusCode::CONFLICT, vec![error.to_string()]),
        EngineError::Storage(crate::storage::StorageError::Sealed) => {
            Reply::errors(StatusCode::SERVICE_UNAVAILABLE, vec!["Vault is sealed".into()])
        }
        EngineError::StoredKeyUnreadable { .. } | EngineError::Storage(_) => {
            tracing::error!(%error, "engine storage failure");
            Reply::internal("internal error")
        }
    }
}
