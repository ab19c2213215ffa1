//! [`ClientError`]: gRPC statuses mapped to a small set of variants.

use tonic::{Code, Status};

/// An error from a cipherd call.
///
/// Messages come from the server's status (or the transport) and never
/// include a plaintext, data key or token passed to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// `PERMISSION_DENIED` or `UNAUTHENTICATED`: no token, a bad token, or a
    /// policy that does not allow the operation.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// `NOT_FOUND`: no such key or mount.
    #[error("not found: {0}")]
    NotFound(String),
    /// `UNAVAILABLE`: the server is sealed (or not serving yet).
    #[error("server unavailable (sealed): {0}")]
    Sealed(String),
    /// `INVALID_ARGUMENT`: bad input or a failed decryption; also a failed
    /// item of a batch, and invalid client configuration.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// `RESOURCE_EXHAUSTED`: a batch or message over the server's limits.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// The connection could not be made or broke.
    #[error("transport error: {0}")]
    Transport(String),
    /// Any other status (for example `INTERNAL`), or a local failure.
    #[error("{code:?}: {message}")]
    Other {
        /// The gRPC status code (`Code::Unknown` for local failures).
        code: Code,
        /// The status message.
        message: String,
    },
}

impl ClientError {
    /// Whether retrying the call may help (`UNAVAILABLE` or a transport
    /// failure).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Sealed(_) | Self::Transport(_))
    }

    pub(crate) fn local(message: impl Into<String>) -> Self {
        Self::Other {
            code: Code::Unknown,
            message: message.into(),
        }
    }
}

fn caused_by_transport(status: &Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(err) = source {
        if err.is::<tonic::transport::Error>() || err.is::<crate::transport::TransportError>() {
            return true;
        }
        source = err.source();
    }
    false
}

impl From<Status> for ClientError {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::PermissionDenied | Code::Unauthenticated => Self::PermissionDenied(message),
            Code::NotFound => Self::NotFound(message),
            Code::Unavailable if caused_by_transport(&status) => Self::Transport(message),
            Code::Unavailable => Self::Sealed(message),
            Code::InvalidArgument => Self::InvalidArgument(message),
            Code::ResourceExhausted => Self::ResourceExhausted(message),
            code => Self::Other { code, message },
        }
    }
}

impl From<tonic::transport::Error> for ClientError {
    fn from(err: tonic::transport::Error) -> Self {
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::Transport(message)
    }
}

/// The result of a cipherd call.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
