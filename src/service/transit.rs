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
        let mut path = String::new();
        self.push_canonical_path(&mut path);
        path
    }

    /// Appends [`canonical_path`](Self::canonical_path) to `out` (so the hot
    /// path builds the ACL path in one allocation).
    pub fn push_canonical_path(&self, out: &mut String) {
        use std::fmt::Write as _;
        // Writing into a String cannot fail.
        let _ = match *self {
            Self::Encrypt(k) => write!(out, "encrypt/{k}"),
            Self::Decrypt(k) => write!(out, "decrypt/{k}"),
            Self::Rewrap(k) => write!(out, "rewrap/{k}"),
            Self::Datakey(kind, k) => write!(out, "datakey/{kind}/{k}"),
            Self::Sign(k) => write!(out, "sign/{k}"),
            Self::Verify(k) => write!(out, "verify/{k}"),
            Self::Hmac(k) => write!(out, "hmac/{k}"),
            Self::Hash => write!(out, "hash"),
            Self::Random => write!(out, "random"),
            Self::ReadKey(k) | Self::CreateKey(k) | Self::DeleteKey(k) => write!(out, "keys/{k}"),
            Self::ListKeys => write!(out, "keys"),
            Self::ConfigureKey(k) => write!(out, "keys/{k}/config"),
            Self::RotateKey(k) => write!(out, "keys/{k}/rotate"),
            Self::TrimKey(k) => write!(out, "keys/{k}/trim"),
            Self::ImportKey(k) => write!(out, "keys/{k}/import"),
            Self::Export(kind, k) => write!(out, "export/{kind}/{k}"),
            Self::Backup(k) => write!(out, "backup/{k}"),
            Self::Restore(Some(k)) => write!(out, "restore/{k}"),
            Self::Restore(None) => write!(out, "restore"),
            Self::WrappingKey => write!(out, "wrapping_key"),
            Self::ReadConfig | Self::WriteConfig => write!(out, "config/keys"),
        };
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
            None => {
                let mut path = String::with_capacity(mount.info.path.len() + 64);
                path.push_str(&mount.info.path);
                op.push_canonical_path(&mut path);
                path
            }
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

#[cfg(test)]
mod tests {
    use super::TransitOp;

    #[test]
    fn canonical_paths_are_the_rest_paths() {
        let cases = [
            (TransitOp::Encrypt("k"), "encrypt/k"),
            (TransitOp::Decrypt("k"), "decrypt/k"),
            (TransitOp::Rewrap("k"), "rewrap/k"),
            (TransitOp::Datakey("wrapped", "k"), "datakey/wrapped/k"),
            (TransitOp::Sign("k"), "sign/k"),
            (TransitOp::Verify("k"), "verify/k"),
            (TransitOp::Hmac("k"), "hmac/k"),
            (TransitOp::Hash, "hash"),
            (TransitOp::Random, "random"),
            (TransitOp::ReadKey("k"), "keys/k"),
            (TransitOp::CreateKey("k"), "keys/k"),
            (TransitOp::DeleteKey("k"), "keys/k"),
            (TransitOp::ListKeys, "keys"),
            (TransitOp::ConfigureKey("k"), "keys/k/config"),
            (TransitOp::RotateKey("k"), "keys/k/rotate"),
            (TransitOp::TrimKey("k"), "keys/k/trim"),
            (TransitOp::ImportKey("k"), "keys/k/import"),
            (
                TransitOp::Export("encryption-key", "k"),
                "export/encryption-key/k",
            ),
            (TransitOp::Backup("k"), "backup/k"),
            (TransitOp::Restore(Some("k")), "restore/k"),
            (TransitOp::Restore(None), "restore"),
            (TransitOp::WrappingKey, "wrapping_key"),
            (TransitOp::ReadConfig, "config/keys"),
            (TransitOp::WriteConfig, "config/keys"),
        ];
        for (op, expected) in cases {
            assert_eq!(op.canonical_path(), expected, "{op:?}");
            let mut appended = String::from("transit/");
            op.push_canonical_path(&mut appended);
            assert_eq!(appended, format!("transit/{expected}"), "{op:?}");
        }
    }
}
