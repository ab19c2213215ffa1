//! Transit requests: which path and capability each operation is checked as,
//! and the one function that authorizes and runs it against a mount's engine.

use std::sync::Arc;

use crate::auth::Capability;
use crate::engine::{Engine, EngineError};

use super::{Mount, RequestContext, Service, ServiceError, audit};

/// A transit operation, named the way the ACL sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitOp<'a> {
    /// `POST encrypt/:key` (create when the key is missing: upsert).
    Encrypt(&'a str),
    /// `POST decrypt/:key`.
    Decrypt(&'a str),
    /// `POST rewrap/:key`.
    Rewrap(&'a str),
    /// `POST datakey/:plaintext|wrapped/:key`.
    Datakey(&'a str, &'a str),
    /// `POST sign/:key`.
    Sign(&'a str),
    /// `POST verify/:key`.
    Verify(&'a str),
    /// `POST hmac/:key`.
    Hmac(&'a str),
    /// `POST hash`.
    Hash,
    /// `POST random`.
    Random,
    /// `GET keys/:key`.
    ReadKey(&'a str),
    /// `LIST keys`.
    ListKeys,
    /// `POST keys/:key`.
    CreateKey(&'a str),
    /// `DELETE keys/:key`.
    DeleteKey(&'a str),
    /// `POST keys/:key/config`.
    ConfigureKey(&'a str),
    /// `POST keys/:key/rotate`.
    RotateKey(&'a str),
    /// `POST keys/:key/trim`.
    TrimKey(&'a str),
    /// `POST keys/:key/import` and `import_version`.
    ImportKey(&'a str),
    /// `GET export/:type/:key`.
    Export(&'a str, &'a str),
    /// `GET backup/:key`.
    Backup(&'a str),
    /// `POST restore(/:key)`.
    Restore(Option<&'a str>),
    /// `GET wrapping_key`.
    WrappingKey,
    /// `GET config/keys`, `GET cache-config`.
    ReadConfig,
    /// `POST config/keys`, `POST cache-config`.
    WriteConfig,
}

impl TransitOp<'_> {
    /// The path under the mount that gRPC requests are checked as (REST uses the
    /// request's own path).
    pub fn canonical_path(&self) -> String {
        match self {
            Self::Encrypt(k) => format!("encrypt/{k}"),
            Self::Decrypt(k) => format!("decrypt/{k}"),
            Self::Rewrap(k) => format!("rewrap/{k}"),
            Self::Datakey(kind, k) => format!("datakey/{kind}/{k}"),
            Self::Sign(k) => format!("sign/{k}"),
            Self::Verify(k) => format!("verify/{k}"),
            Self::Hmac(k) => format!("hmac/{k}"),
            Self::Hash => "hash".into(),
            Self::Random => "random".into(),
            Self::ReadKey(k) | Self::CreateKey(k) | Self::DeleteKey(k) => format!("keys/{k}"),
            Self::ListKeys => "keys".into(),
            Self::ConfigureKey(k) => format!("keys/{k}/config"),
            Self::RotateKey(k) => format!("keys/{k}/rotate"),
            Self::TrimKey(k) => format!("keys/{k}/trim"),
            Self::ImportKey(k) => format!("keys/{k}/import"),
            Self::Export(kind, k) => format!("export/{kind}/{k}"),
            Self::Backup(k) => format!("backup/{k}"),
            Self::Restore(Some(k)) => format!("restore/{k}"),
            Self::Restore(None) => "restore".into(),
            Self::WrappingKey => "wrapping_key".into(),
            Self::ReadConfig | Self::WriteConfig => "config/keys".into(),
        }
    }

    /// The key the operation touches, if any.
    pub fn key(&self) -> Option<&str> {
        match *self {
            Self::Encrypt(k)
            | Self::Decrypt(k)
            | Self::Rewrap(k)
            | Self::Datakey(_, k)
            | Self::Sign(k)
            | Self::Verify(k)
            | Self::Hmac(k)
            | Self::ReadKey(k)
            | Self::CreateKey(k)
            | Self::DeleteKey(k)
            | Self::ConfigureKey(k)
            | Self::RotateKey(k)
            | Self::TrimKey(k)
            | Self::ImportKey(k)
            | Self::Export(_, k)
            | Self::Backup(k) => Some(k),
            Self::Restore(k) => k,
            Self::Hash
            | Self::Random
            | Self::ListKeys
            | Self::WrappingKey
            | Self::ReadConfig
            | Self::WriteConfig => None,
        }
    }

    /// Whether the operation changes nothing stored (so its audit request
    /// entry need not be durable before it runs). An encrypt that creates its
    /// key (`create`) changes state.
    fn is_read_only(&self, capability: Capability) -> bool {
        match self {
            Self::Encrypt(_) => capability != Capability::Create,
            Self::Decrypt(_)
            | Self::Rewrap(_)
            | Self::Datakey(..)
            | Self::Sign(_)
            | Self::Verify(_)
            | Self::Hmac(_)
            | Self::Hash
            | Self::Random
            | Self::ReadKey(_)
            | Self::ListKeys
            | Self::Export(..)
            | Self::Backup(_)
            | Self::WrappingKey
            | Self::ReadConfig => true,
            Self::CreateKey(_)
            | Self::DeleteKey(_)
            | Self::ConfigureKey(_)
            | Self::RotateKey(_)
            | Self::TrimKey(_)
            | Self::ImportKey(_)
            | Self::Restore(_)
            | Self::WriteConfig => false,
        }
    }

    /// The capability Vault checks (reference §3).
    fn capability(&self, engine: &Engine) -> Capability {
        match self {
            Self::Encrypt(key) => {
                if engine.has_key(key) {
                    Capability::Update
                } else {
                    Capability::Create
                }
            }
            Self::ReadKey(_)
            | Self::Export(..)
            | Self::Backup(_)
            | Self::WrappingKey
            | Self::ReadConfig => Capability::Read,
            Self::ListKeys => Capability::List,
            Self::DeleteKey(_) => Capability::Delete,
            Self::Decrypt(_)
            | Self::Rewrap(_)
            | Self::Datakey(..)
            | Self::Sign(_)
            | Self::Verify(_)
            | Self::Hmac(_)
            | Self::Hash
            | Self::Random
            | Self::CreateKey(_)
            | Self::ConfigureKey(_)
            | Self::RotateKey(_)
            | Self::TrimKey(_)
            | Self::ImportKey(_)
            | Self::Restore(_)
            | Self::WriteConfig => Capability::Update,
        }
    }
}

impl Service {
    /// Finds the mount serving `path` (no `v1/` prefix) and the rest of the path.
    pub fn route<'p>(&self, path: &'p str) -> Result<(Arc<Mount>, &'p str), ServiceError> {
        let state = self.unsealed()?;
        state
            .mounts
            .route(path)
            .ok_or_else(|| ServiceError::NoSuchMount {
                path: path.to_owned(),
            })
    }

    /// Authorizes `op` as `request_path` (relative to the mount; `None` = the
    /// op's canonical path) and runs `run` against the mount's engine.
    pub fn transit<T>(
        &self,
        ctx: &RequestContext<'_>,
        mount: &Mount,
        op: TransitOp<'_>,
        request_path: Option<&str>,
        run: impl FnOnce(&Engine) -> Result<T, EngineError>,
    ) -> Result<T, ServiceError> {
        // One allocation for the ACL path on the hot path.
        let path = match request_path {
            Some(relative) => format!("{}{relative}", mount.info.path),
            None => format!("{}{}", mount.info.path, op.canonical_path()),
        };
        let capability = op.capability(&mount.engine);
        if let Some(frame) = ctx.audit {
            frame.set_target(
                &path,
                audit::operation_name(capability),
                Some(&mount.info.path),
                op.key(),
                op.is_read_only(capability),
            );
        }
        self.authorize(ctx, &path, &[capability])?;
        Ok(run(&mount.engine)?)
    }
}
