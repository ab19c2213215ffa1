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
    /// A valid token whose policies do not allow the request (an ACL denial).
    #[error("permission denied")]
    PermissionDenied,
    /// The token is unknown, expired, revoked or has no uses left. Which one is
    /// deliberately not said; the message is the same as an ACL denial's, only
    /// the REST body differs (plain, where a denial is multierror-wrapped, as in
    /// OpenBao).
    #[error("permission denied")]
    UnknownToken,
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
