//! The error type every adapter sees. `api::error` maps it to HTTP statuses and
//! gRPC codes in one place.

use thiserror::Error;

use crate::auth::AuthError;
use crate::engine::EngineError;
use crate::seal::SealError;
use crate::storage::StorageError;

/// Why a request failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// Token and policy failures (including permission denied).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Transit engine failures (including per-key errors).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A request that names a mount which does not exist or is not transit.
    #[error("no handler for route \"{path}\". route entry not found.")]
    NoSuchMount {
        /// The request path.
        path: String,
    },
    /// A mount path that is taken or invalid.
    #[error("{0}")]
    MountInvalid(String),
    /// The token is missing, unknown, expired or not allowed.
    #[error("permission denied")]
    PermissionDenied,
    /// The server is not initialized yet.
    #[error("Vault is not initialized")]
    NotInitialized,
    /// Seal, unseal and init failures.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The server is sealed: every request but init/unseal/status gets this.
    #[error("Vault is sealed")]
    Sealed,
    /// The storage backend failed.
    #[error(transparent)]
    Storage(StorageError),
    /// An audit device failed, or an audit operation was refused.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

impl From<StorageError> for ServiceError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Sealed => Self::Sealed,
            other => Self::Storage(other),
        }
    }
}
