//! The service's side of auditing: opening a request's [`Frame`], filling in
//! who the token belongs to at the ACL check, writing the response entry, and
//! the `sys/audit*` operations (enable, disable, list, hash, signing key).

use std::sync::Arc;

use super::{RequestContext, Service, ServiceError, Unsealed};
use crate::audit::{
    AuditData, AuditError, DeviceInfo, DeviceSpec, Frame, RequestView, ResponseEntries,
    ResponseView,
};
use crate::auth::{Capability, TokenEntry};

/// Vault's audit `operation` for a capability.
pub fn operation_name(capability: Capability) -> &'static str {
    match capability {
        Capability::Create => "create",
        Capability::Read => "read",
        Capability::Delete => "delete",
        Capability::List => "list",
        Capability::Patch => "patch",
        Capability::Update | Capability::Sudo | Capability::Deny => "update",
    }
}

/// Fills the frame's `auth` from the ACL decision: the token entry when the
/// token is valid (looked up without spending a use when the ACL said no).
pub(super) fn record_auth(
    frame: &Frame,
    state: &Unsealed,
    token: Option<&str>,
    decision: &Result<Arc<TokenEntry>, ServiceError>,
) {
    let entry = match decision {
        Ok(entry) => Some(entry.clone()),
        Err(_) => token.and_then(|t| state.auth.lookup(t).ok()),
    };
    let allowed = match decision {
        Ok(_) => Some(true),
        Err(ServiceError::PermissionDenied | ServiceError::Auth(_)) => Some(false),
        Err(_) => None,
    };
    frame.set_auth(|auth| {
        auth.allowed = allowed;
        if let Some(entry) = entry {
            fill_token(auth, &entry);
        }
    });
}

fn fill_token(auth: &mut crate::audit::AuthView, entry: &TokenEntry) {
    auth.accessor = Some(entry.accessor.clone());
    auth.display_name = Some(entry.display_name.clone());
    auth.policies.clone_from(&entry.policies);
    auth.metadata = entry
        .meta
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    auth.token_ttl = entry.creation_ttl_secs;
    auth.token_issue_time = Some(crate::audit::entry::rfc3339(entry.creation_time_unix, 0));
}

impl Service {
    /// A frame for a request, or `None` when nothing is audited (sealed, or
    /// no device enabled): then auditing costs one atomic load per request.
    /// `describe` is only called when a frame is made; `data` (the request's
    /// fields) is rendered for each device then, not kept.
    pub fn audit_frame(
        &self,
        token: Option<&str>,
        describe: impl FnOnce() -> RequestView,
        data: Option<&dyn AuditData>,
    ) -> Option<Arc<Frame>> {
        let state = self.unsealed.load();
        let state = state.as_ref()?;
        let devices = state.audit.devices();
        if devices.is_empty() {
            return None;
        }
        Some(Arc::new(Frame::new(describe(), data, token, &devices)))
    }

    /// Writes the response entry (and the request entry, if the request never
    /// reached an ACL check) and waits until a device has written both. An
    /// error means the answer must not be released.
    pub async fn audit_finish(
        &self,
        frame: &Frame,
        response: ResponseView<'_>,
    ) -> Result<(), ServiceError> {
        Ok(self.audit_entries(frame, response)?.write().await?)
    }

    /// [`Service::audit_finish`] for a thread that may block: the blocking
    /// pool. A large batch's entries (two HMACs and a few hundred bytes of
    /// chain per item) are rendered and hashed there, where the batch ran,
    /// instead of on the connection's one runtime.
    pub fn audit_finish_blocking(
        &self,
        frame: &Frame,
        response: ResponseView<'_>,
    ) -> Result<(), ServiceError> {
        Ok(self.audit_entries(frame, response)?.write_blocking()?)
    }

    fn audit_entries(
        &self,
        frame: &Frame,
        response: ResponseView<'_>,
    ) -> Result<ResponseEntries, ServiceError> {
        let Some(state) = self.unsealed.load_full() else {
            // Sealed while the request ran: the devices are closed, and the
            // answer cannot be audited.
            return Err(ServiceError::Audit(AuditError::Unavailable));
        };
        if !frame.request_logged() {
            let token = frame.client_token();
            if let Some(token) = token.as_deref()
                && let Ok(entry) = state.auth.lookup(token)
            {
                frame.set_auth(|auth| fill_token(auth, &entry));
            }
        }
        Ok(state.audit.render_response(frame, response)?)
    }

    /// `GET sys/audit`.
    pub fn audit_devices(&self, ctx: &RequestContext<'_>) -> Result<Vec<DeviceInfo>, ServiceError> {
        let (state, _) = self.authorize_sudo(ctx, "sys/audit", Capability::Read)?;
        Ok(state.audit.list())
    }

    /// `PUT sys/audit/:path`.
    pub fn enable_audit(
        &self,
        ctx: &RequestContext<'_>,
        spec: &DeviceSpec,
    ) -> Result<(), ServiceError> {
        let path = format!("sys/audit/{}", spec.path.trim_matches('/'));
        let (state, _) = self.authorize_sudo(ctx, &path, Capability::Update)?;
        Ok(state.audit.enable(spec)?)
    }

    /// `DELETE sys/audit/:path`.
    pub fn disable_audit(&self, ctx: &RequestContext<'_>, path: &str) -> Result<(), ServiceError> {
        let acl_path = format!("sys/audit/{}", path.trim_matches('/'));
        let (state, _) = self.authorize_sudo(ctx, &acl_path, Capability::Delete)?;
        Ok(state.audit.disable(path)?)
    }

    /// `POST sys/audit-hash/:path`.
    pub fn audit_hash(
        &self,
        ctx: &RequestContext<'_>,
        path: &str,
        input: &str,
    ) -> Result<String, ServiceError> {
        let acl_path = format!("sys/audit-hash/{}", path.trim_matches('/'));
        let (state, _) = self.authorize_sudo(ctx, &acl_path, Capability::Update)?;
        Ok(state.audit.hash(path, input)?)
    }

    /// `GET sys/audit/signing-key`: the checkpoint public key (base64) and its id.
    pub fn audit_signing_key(
        &self,
        ctx: &RequestContext<'_>,
    ) -> Result<(String, String), ServiceError> {
        let (state, _) = self.authorize_sudo(ctx, "sys/audit/signing-key", Capability::Read)?;
        Ok(state.audit.signing_key())
    }
}
