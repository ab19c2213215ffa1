//! The service layer: one request = seal check + auth check + engine call +
//! audit record.
//!
//! This is the only thing the REST and gRPC adapters talk to, so no operation is
//! implemented twice and both transports are authorized and audited the same
//! way: a request is checked as its REST path (`transit/encrypt/<key>`) and
//! capability, and its audit request entry is written at that check (see
//! [`crate::audit`] for when an operation waits for it). It owns the lifecycle
//! around the seal (what is loaded on unseal, what is dropped on seal), the
//! mount table and the audit devices. It knows nothing of HTTP or protobuf
//! encodings.

mod audit;
mod error;
pub mod mounts;
mod transit;

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;

pub use error::ServiceError;
pub use mounts::{Mount, MountInfo, MountTune, Mounts};
pub use transit::TransitOp;

use crate::audit::{AuditLog, DeviceSpec, Frame};
use crate::auth::{Auth, AuthError, Capability, IssuedToken, TokenEntry, TokenRequest};
use crate::crypto::SecretBytes;
use crate::engine::EngineOptions;
use crate::seal::{SealManager, SealStatus};
use crate::storage::Storage;

/// Which adapter a request came through (for audit and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP/JSON (Vault-compatible).
    Rest,
    /// gRPC.
    Grpc,
}

impl Transport {
    /// The name audit entries use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rest => "rest",
            Self::Grpc => "grpc",
        }
    }
}

/// Who is asking, and over what.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// The client token, if any.
    pub token: Option<&'a str>,
    /// The adapter.
    pub transport: Transport,
    /// The request's audit frame, when audit devices are enabled.
    pub audit: Option<&'a Frame>,
}

/// What `init` returns, once.
#[derive(Debug)]
pub struct InitResult {
    /// Unseal shares (raw bytes; the adapter renders hex and base64).
    pub shares: Vec<SecretBytes>,
    /// The initial root token.
    pub root_token: IssuedToken,
}

/// Everything that only exists while unsealed.
pub struct Unsealed {
    /// Tokens and policies.
    pub auth: Auth,
    /// Transit mounts.
    pub mounts: Mounts,
    /// Audit devices.
    pub audit: AuditLog,
}

/// Tunables of the service.
#[derive(Debug, Clone, Default)]
pub struct ServiceOptions {
    /// Options of every transit engine.
    pub engine: EngineOptions,
    /// Audit devices declared at start (enabled on unseal if not enabled yet).
    pub audit_devices: Vec<DeviceSpec>,
}

/// The service: shared by every adapter through an `Arc`.
pub struct Service {
    seal: SealManager,
    barrier: Arc<dyn Storage>,
    options: ServiceOptions,
    unsealed: ArcSwapOption<Unsealed>,
    /// Serializes unseal/seal transitions.
    lifecycle: Mutex<()>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("seal", &self.seal)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A sealed service over `backend` (the raw store; the barrier wraps it).
    pub fn new(backend: Arc<dyn Storage>, options: ServiceOptions) -> Result<Self, ServiceError> {
        let seal = SealManager::new(backend)?;
        let barrier: Arc<dyn Storage> = seal.barrier();
        Ok(Self {
            seal,
            barrier,
            options,
            unsealed: ArcSwapOption::empty(),
            lifecycle: Mutex::new(()),
        })
    }

    /// `sys/seal-status`. The server reports itself unsealed only once tokens,
    /// policies and mounts are loaded, so a health check never sends traffic to
    /// a server that would still answer 503.
    pub fn seal_status(&self) -> SealStatus {
        let mut status = self.seal.status();
        if !status.sealed && self.unsealed.load().is_none() {
            status.sealed = true;
            status.cluster_name = None;
            status.cluster_id = None;
        }
        status
    }

    /// `sys/init`: creates the master key, its shares and a root token
    /// (`root_token_id` fixes the token, for `--dev`). Leaves the server sealed.
    pub fn init(
        &self,
        shares: u8,
        threshold: u8,
        root_token_id: Option<&str>,
    ) -> Result<InitResult, ServiceError> {
        let (output, root_token) = self.seal.init_with_setup(shares, threshold, |barrier| {
            let storage: Arc<dyn Storage> = barrier.clone();
            let auth = Auth::open(storage.clone()).map_err(auth_to_storage)?;
            let token = auth
                .create_root_token(root_token_id)
                .map_err(auth_to_storage)?;
            Ok(token)
        })?;
        Ok(InitResult {
            shares: output.shares,
            root_token,
        })
    }

    /// `sys/unseal`: one share; loads tokens, policies and mounts when the
    /// threshold is reached.
    pub fn unseal(&self, share: &[u8]) -> Result<SealStatus, ServiceError> {
        let _lifecycle = self.lifecycle.lock();
        let status = self.seal.unseal(share)?;
        self.load_if_unsealed(&status)?;
        Ok(self.seal_status())
    }

    /// Unseals with the master key itself (`--dev`, `--unseal-key-file`).
    pub fn unseal_with_master_key(&self, key: &[u8]) -> Result<SealStatus, ServiceError> {
        let _lifecycle = self.lifecycle.lock();
        let status = self.seal.unseal_with_master_key(key)?;
        self.load_if_unsealed(&status)?;
        Ok(self.seal_status())
    }

    /// `sys/unseal` with `reset`.
    pub fn unseal_reset(&self) -> SealStatus {
        self.seal.unseal_reset()
    }

    fn load_if_unsealed(&self, status: &SealStatus) -> Result<(), ServiceError> {
        if status.sealed || self.unsealed.load().is_some() {
            return Ok(());
        }
        let loaded = Auth::open(self.barrier.clone())
            .map_err(ServiceError::from)
            .and_then(|auth| {
                Ok(Unsealed {
                    auth,
                    mounts: Mounts::load(self.barrier.clone(), self.options.engine.clone())?,
                    audit: AuditLog::open(self.barrier.clone(), &self.options.audit_devices)?,
                })
            });
        match loaded {
            Ok(unsealed) => {
                self.unsealed.store(Some(Arc::new(unsealed)));
                Ok(())
            }
            Err(error) => {
                // Never stay half-unsealed: a store we cannot load is sealed again.
                let _ = self.seal.seal();
                Err(error)
            }
        }
    }

    /// `sys/seal`: needs a token with `sudo` (or root) on `sys/seal`. Flushes
    /// counters, then drops (and so zeroizes) every key.
    pub fn seal(&self, ctx: &RequestContext<'_>) -> Result<(), ServiceError> {
        self.authorize(ctx, "sys/seal", &[Capability::Sudo])?;
        self.seal_now();
        Ok(())
    }

    /// `sys/rotate`: adds a barrier key term that new writes use (needs `sudo`
    /// on `sys/rotate`). Old entries keep opening with their term.
    pub fn rotate_barrier(&self, ctx: &RequestContext<'_>) -> Result<u32, ServiceError> {
        self.authorize(ctx, "sys/rotate", &[Capability::Sudo])?;
        Ok(self.seal.rotate()?)
    }

    /// `sys/key-status`: the active barrier term (needs `read` on the path).
    pub fn barrier_key_status(
        &self,
        ctx: &RequestContext<'_>,
    ) -> Result<crate::seal::KeyStatus, ServiceError> {
        self.authorize(ctx, "sys/key-status", &[Capability::Read])?;
        self.seal.status().key.ok_or(ServiceError::Sealed)
    }

    /// Seals without an auth check (shutdown).
    pub fn seal_now(&self) {
        let _lifecycle = self.lifecycle.lock();
        if let Some(unsealed) = self.unsealed.swap(None) {
            unsealed.mounts.flush_counters();
            // Final checkpoints now, not when the last in-flight request lets go.
            unsealed.audit.close();
        }
        let _ = self.seal.seal();
    }

    /// The unsealed state, or why there is none.
    pub fn unsealed(&self) -> Result<Arc<Unsealed>, ServiceError> {
        match self.unsealed.load_full() {
            Some(state) => Ok(state),
            None if !self.seal.status().initialized => Err(ServiceError::NotInitialized),
            None => Err(ServiceError::Sealed),
        }
    }

    /// Checks that the request's token may use any of `capabilities` on `path`
    /// (no `v1/` prefix). Returns the state and the token entry.
    pub fn authorize(
        &self,
        ctx: &RequestContext<'_>,
        path: &str,
        capabilities: &[Capability],
    ) -> Result<(Arc<Unsealed>, Arc<TokenEntry>), ServiceError> {
        self.check(ctx, |auth, token| {
            auth.authorize_any(token, path, capabilities)
        })
    }

    /// [`Service::authorize`] for root-protected paths: the token needs
    /// `sudo` as well as `capability` on `path`.
    pub fn authorize_sudo(
        &self,
        ctx: &RequestContext<'_>,
        path: &str,
        capability: Capability,
    ) -> Result<(Arc<Unsealed>, Arc<TokenEntry>), ServiceError> {
        self.check(ctx, |auth, token| {
            auth.authorize_all(token, path, &[capability, Capability::Sudo])
        })
    }

    /// Runs an ACL check and writes the request's audit entry with its outcome
    /// (fail closed: an entry no device can write refuses the request).
    fn check(
        &self,
        ctx: &RequestContext<'_>,
        decide: impl FnOnce(&Auth, &str) -> Result<Arc<TokenEntry>, AuthError>,
    ) -> Result<(Arc<Unsealed>, Arc<TokenEntry>), ServiceError> {
        let state = self.unsealed()?;
        let decision = match ctx.token {
            Some(token) => decide(&state.auth, token).map_err(ServiceError::from),
            None => Err(ServiceError::PermissionDenied),
        };
        if let Some(frame) = ctx.audit
            && !frame.request_logged()
        {
            audit::record_auth(frame, &state, ctx.token, &decision);
            state.audit.log_request(frame)?;
        }
        decision.map(|entry| (state, entry))
    }

    /// Resolves the token itself (for `lookup-self`, `renew-self`, ...), no ACL.
    pub fn token_entry(
        &self,
        ctx: &RequestContext<'_>,
    ) -> Result<(Arc<Unsealed>, Arc<TokenEntry>), ServiceError> {
        let state = self.unsealed()?;
        let token = ctx.token.ok_or(ServiceError::PermissionDenied)?;
        Ok((state.clone(), state.auth.lookup(token)?))
    }

    /// Creates a child (or, with `orphan`, an orphan) token of the caller.
    pub fn create_token(
        &self,
        ctx: &RequestContext<'_>,
        path: &str,
        request: &TokenRequest,
    ) -> Result<IssuedToken, ServiceError> {
        let (state, parent) =
            self.authorize(ctx, path, &[Capability::Create, Capability::Update])?;
        Ok(state.auth.create_token(&parent, request)?)
    }

    /// Background housekeeping: flush counters, auto-rotate keys, drop expired
    /// tokens. The server calls this periodically.
    pub fn housekeeping(&self) {
        if let Some(state) = self.unsealed.load_full() {
            state.mounts.flush_counters();
            state.mounts.rotate_due_keys();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            state.auth.tidy_expired(now);
        }
    }
}

fn auth_to_storage(error: crate::auth::AuthError) -> crate::storage::StorageError {
    match error {
        crate::auth::AuthError::Storage(storage) => storage,
        other => crate::storage::StorageError::backend(
            "initialize authentication",
            std::io::Error::other(other.to_string()),
        ),
    }
}
