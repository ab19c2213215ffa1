//! Why an auth operation failed. Messages never contain a token.

use thiserror::Error;

use crate::storage::StorageError;

/// Why an auth operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A policy document did not parse or uses something cipherd refuses; the
    /// message is Vault's `failed to parse policy: <reason>`.
    #[error("failed to parse policy: {reason}")]
    InvalidPolicy {
        /// What is wrong, with the line and column for syntax errors.
        reason: String,
    },
    /// A request Vault answers with 400: the message is Vault's text (for example
    /// `child policies must be subset of parent`).
    #[error("{0}")]
    InvalidRequest(String),
    /// Renewal of a token that is not renewable or never expires.
    #[error("lease is not renewable")]
    NotRenewable,
    /// Unknown, expired, revoked or exhausted token, or an ACL denial. Which one
    /// is deliberately not said.
    #[error("permission denied")]
    PermissionDenied,
    /// The storage backend (through the barrier) failed, or a stored auth record
    /// is malformed ([`StorageError::Corrupt`]).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl AuthError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest(message.into())
    }
}
