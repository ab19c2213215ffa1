//! Why an audit operation failed. `api::error` maps these to HTTP and gRPC.

use thiserror::Error;

use crate::storage::StorageError;

/// An audit failure.
#[derive(Debug, Error)]
pub enum AuditError {
    /// A device option or path is invalid (400).
    #[error("{0}")]
    Invalid(String),
    /// `sys/audit/:path` is already enabled (400).
    #[error("path already in use")]
    PathInUse,
    /// No device at that path (400, as Vault's audit-hash).
    #[error("unknown audit backend")]
    NoSuchDevice,
    /// No enabled device could write the entry: the request is refused.
    #[error("the audit log cannot be written, so the request was refused")]
    Unavailable,
    /// A file could not be opened or read.
    #[error("{context}: {reason}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The device table or signing key could not be stored.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl AuditError {
    /// An invalid option.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    /// An I/O failure while doing `context`.
    pub fn io(context: impl Into<String>, error: &std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            reason: error.to_string(),
        }
    }
}
