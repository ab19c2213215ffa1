//! `auth/token/` endpoints (reference §10): create, lookup, renew, revoke.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::api::error::rest_reply;
use crate::auth::{AuthError, Capability, IssuedToken, TokenEntry, TokenRequest};
use crate::service::ServiceError;

use super::fields::rfc3339;
use super::{Operation, Reply, Request, RestState};

pub(super) async fn handle(state: &RestState, request: Request) -> Reply {
    let sub = request
        .path
        .strip_prefix("auth/token/")
        .unwrap_or("")
        .to_owned();
    let result = match (sub.as_str(), request.operation) {
        ("create" | "create-orphan", Operation::Update) => {
            create(state, &request, sub == "create-orphan")
        }
        ("lookup-self", Operation::Read | Operation::Update) => lookup_self(state, &request),
        ("lookup", Operation::Update | Operation::Read) => lookup(state, &request),
        ("lookup-accessor", Operation::Update) => lookup_accessor(state, &request),
        ("renew-self", Operation::Update) => renew_self(state, &request),
        ("renew", Operation::Update) => renew(state, &request),
        ("renew-accessor", Operation::Update) => renew_accessor(state, &request),
        ("revoke-self", Operation::Update) => revoke_self(state, &request),
        ("revoke", Operation::Update) => revoke(state, &request, false),
        ("revoke-orphan", Operation::Update) => revoke(state, &request, true),
        ("revoke-accessor", Operation::Update) => revoke_accessor(state, &request),
        ("accessors", Operation::List) => accessors(state, &request),
        (p, _) if p.starts_with("lookup/") || p.starts_with("renew/") => {
            let (kind, token) = p.split_once('/').unwrap_or((p, ""));
            if kind == "lookup" {
                lookup_token(state, &request, token)
            } else {
                renew_token(state, &request, token)
            }
        }
        _ => Err(unknown(state, &request)),
    };
    result.unwrap_or_else(|reply| reply)
}

type Handled = Result<Reply, Reply>;

fn fail(error: ServiceError) -> Reply {
    rest_reply(&error, None)
}

fn unknown(state: &RestState, request: &Request) -> Reply {
    match state.service.token_entry(&request.context()) {
        Err(error) => fail(error),
        Ok(_) => Reply::unsupported_path(),
    }
}

fn field_error(error: impl std::fmt::Display) -> Reply {
    Reply::bad_request(error.to_string())
}

fn create(state: &RestState, request: &Request, orphan: bool) -> Handled {
    let fields = request.fields();
    let meta = match fields.raw("meta") {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
            .collect(),
        _ => Default::default(),
    };
    if fields
        .str("type")
        .map_err(field_error)?
        .is_some_and(|t| t == "batch")
    {
        return Err(Reply::bad_request(
            "batch tokens are not supported by cipherd",
        ));
    }
    let token_request = TokenRequest {
        id: fields
            .str("id")
            .map_err(field_error)?
            .filter(|s| !s.is_empty()),
        policies: fields
            .str_list("policies")
            .map_err(field_error)?
            .unwrap_or_default(),
        no_default_policy: fields
            .bool("no_default_policy")
            .map_err(field_error)?
            .unwrap_or(false),
        no_parent: fields
            .bool("no_parent")
            .map_err(field_error)?
            .unwrap_or(false),
        orphan,
        ttl_secs: match fields.duration_secs("ttl").map_err(field_error)? {
            Some(ttl) => Some(ttl),
            None => fields.duration_secs("lease").map_err(field_error)?,
        },
        explicit_max_ttl_secs: fields
            .duration_secs("explicit_max_ttl")
            .map_err(field_error)?,
        period_secs: fields.duration_secs("period").map_err(field_error)?,
        renewable: fields.bool("renewable").map_err(field_error)?,
        num_uses: fields
            .int("num_uses")
            .map_err(field_error)?
            .unwrap_or(0)
            .max(0) as u64,
        display_name: fields.str("display_name").map_err(field_error)?,
        meta,
    };
    let issued = state
        .service
        .create_token(&request.context(), &request.path, &token_request)
        .map_err(fail)?;
    Ok(auth_reply(
        &issued.entry,
        Some(&issued),
        issued.warnings.clone(),
    ))
}

fn auth_reply(entry: &TokenEntry, issued: Option<&IssuedToken>, warnings: Vec<String>) -> Reply {
    let client_token = issued
        .map(|i| i.token.expose_secret().to_owned())
        .unwrap_or_default();
    let meta = if entry.meta.is_empty() {
        Value::Null
    } else {
        json!(entry.meta)
    };
    let auth = json!({
        "client_token": client_token,
        "accessor": entry.accessor,
        "policies": entry.policies,
        "token_policies": entry.policies,
        "metadata": meta,
        "lease_duration": entry.ttl_secs,
        "renewable": entry.renewable,
        "entity_id": "",
        "token_type": "service",
        "orphan": entry.orphan,
        "mfa_requirement": null,
        "num_uses": entry.num_uses,
    });
    Reply::Envelope {
        status: StatusCode::OK,
        data: None,
        warnings,
        auth: Some(auth),
        inject: false,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lookup_data(entry: &TokenEntry, id: &str) -> Value {
    let now = now();
    let meta = if entry.meta.is_empty() {
        Value::Null
    } else {
        json!(entry.meta)
    };
    json!({
        "accessor": entry.accessor,
        "creation_time": entry.creation_time_unix,
        "creation_ttl": entry.creation_ttl_secs,
        "display_name": entry.display_name,
        "entity_id": "",
        "expire_time": entry.expire_time_unix.map(rfc3339),
        "explicit_max_ttl": entry.explicit_max_ttl_secs,
        "id": id,
        "issue_time": rfc3339(entry.creation_time_unix),
        "meta": meta,
        "num_uses": entry.num_uses,
        "orphan": entry.orphan,
        "path": entry.path,
        "policies": entry.policies,
        "renewable": entry.renewable,
        "ttl": entry.remaining_ttl_secs(now),
        "type": "service",
    })
}

fn with_period(mut data: Value, entry: &TokenEntry) -> Value {
    if entry.period_secs > 0 {
        data["period"] = json!(entry.period_secs);
    }
    data
}

fn lookup_self(state: &RestState, request: &Request) -> Handled {
    let ctx = request.context();
    let (_, entry) = state
        .service
        .authorize(
            &ctx,
            "auth/token/lookup-self",
            &[Capability::Read, Capability::Update],
        )
        .map_err(fail)?;
    Ok(Reply::data(with_period(
        lookup_data(&entry, ctx.token.unwrap_or_default()),
        &entry,
    )))
}

fn lookup(state: &RestState, request: &Request) -> Handled {
    let token = request
        .fields()
        .str("token")
        .map_err(field_error)?
        .unwrap_or_default();
    if token.is_empty() {
        // OpenBao answers an empty lookup with the calling token.
        return lookup_self(state, request);
    }
    lookup_token(state, request, &token)
}

fn lookup_token(state: &RestState, request: &Request, token: &str) -> Handled {
    let ctx = request.context();
    let (unsealed, _) = state
        .service
        .authorize(
            &ctx,
            "auth/token/lookup",
            &[Capability::Update, Capability::Read],
        )
        .map_err(fail)?;
    match unsealed.auth.lookup(token) {
        Ok(entry) => Ok(Reply::data(with_period(lookup_data(&entry, token), &entry))),
        Err(AuthError::UnknownToken) => Err(Reply::errors(
            StatusCode::FORBIDDEN,
            vec!["bad token".into()],
        )),
        Err(error) => Err(fail(error.into())),
    }
}

fn lookup_accessor(state: &RestState, request: &Request) -> Handled {
    let ctx = request.context();
    let accessor = request
        .fields()
        .str("accessor")
        .map_err(field_error)?
        .unwrap_or_default();
    let (unsealed, _) = state
        .service
        .authorize(&ctx, "auth/token/lookup-accessor", &[Capability::Update])
        .map_err(fail)?;
    match unsealed.auth.lookup_accessor(&accessor) {
        Ok(entry) => Ok(Reply::data(with_period(lookup_data(&entry, ""), &entry))),
        Err(AuthError::PermissionDenied) => Err(Reply::bad_request("invalid accessor")),
        Err(error) => Err(fail(error.into())),
    }
}

fn increment(request: &Request) -> Result<Option<u64>, Reply> {
    request
        .fields()
        .duration_secs("increment")
        .map_err(field_error)
}

fn renew_self(state: &RestState, request: &Request) -> Handled {
    let ctx = request.context();
    let increment = increment(request)?;
    let (unsealed, _) = state
        .service
        .authorize(&ctx, "auth/token/renew-self", &[Capability::Update])
        .map_err(fail)?;
    let entry = unsealed
        .auth
        .renew(ctx.token.unwrap_or_default(), increment)
        .map_err(|e| fail(e.into()))?;
    Ok(auth_reply(&entry, None, Vec::new()).with_client_token(ctx.token.unwrap_or_default()))
}

fn renew(state: &RestState, request: &Request) -> Handled {
    let token = request
        .fields()
        .str("token")
        .map_err(field_error)?
        .unwrap_or_default();
    renew_token(state, request, &token)
}

fn renew_token(state: &RestState, request: &Request, token: &str) -> Handled {
    let ctx = request.context();
    let increment = increment(request)?;
    let (unsealed, _) = state
        .service
        .authorize(&ctx, "auth/token/renew", &[Capability::Update])
        .map_err(fail)?;
    let entry = unsealed
        .auth
        .renew(token, increment)
        .map_err(|e| fail(e.into()))?;
    Ok(auth_reply(&entry, None, Vec::new()).with_client_token(token))
}

fn renew_accessor(state: &RestState, request: &Request) -> Handled {
    let ctx = request.context();
    let increment = increment(request)?;
    let accessor = request
        .fields()
        .str("accessor")
        .map_err(field_error)?
        .unwrap_or_default();
    let (unsealed, _) = state
        .service
        .authorize(&ctx, "auth/token/renew-accessor", &[Capability::Update])
        .map_err(fail)?;
    let entry = unsealed
        .auth
        .renew_accessor(&accessor, increment)
        .map_err(|e| fail(e.into()))?;
    Ok(auth_reply(&entry, None, Vec::new()))
}

fn revoke_self(state: &RestState, request: &Request) -> Handled {
    let ctx = request.context();
    let (unsealed, _) = state
        .service
        .authorize(&ctx, "auth/token/revoke-self", &[Capability::Update])
        .map_err(fail)?;
    unsealed
        .auth
        .revoke(ctx.token.unwrap_or_default())
        .map_err(|e| fail(e.into()))?;
    Ok(Reply::NoContent)
}

fn revoke(state: &RestState, request: &Request, orphan: bool) -> Handled {
    let ctx = request.context();
    let token = request
        .fields()
        .str("token")
        .map_err(field_error)?
        .unwrap_or_default();
    if token.is_empty() {
        return Err(Reply::bad_request("missing token"));
    }
    let path = if orphan {
        "auth/token/revoke-orphan"
    } else {
        "auth/token/revoke"
    };
    let capabilities: &[Capability] = if orphan {
        &[Capability::Sudo]
    } else {
        &[Capability::Update]
    };
    let (unsealed, _) = state
        .service
        .authorize(&ctx, path, capabilities)
        .map_err(fail)?;
    let outcome = if orphan {
        unsealed.auth.revoke_orphan(&token)
    } else {
        unsealed.auth.revoke(&token)
    };
    match outcome {
        // Revoking an unknown token is not an error in Vault.
        Ok(()) | Err(AuthError::UnknownToken) => Ok(Reply::NoContent),
        Err(error) => Err(fail(error.into())),
    }
}

fn revoke_accessor(state: &RestState, request: &Request) -> Handled {
    let ctx = request.context();
    let accessor = request
        .fields()
        .str("accessor")
        .map_err(field_error)?
        .unwrap_or_default();
    let (unsealed, _) = state
        .service
        .authorize(&ctx, "auth/token/revoke-accessor", &[Capability::Update])
        .map_err(fail)?;
    match unsealed.auth.revoke_accessor(&accessor) {
        Ok(()) => Ok(Reply::NoContent),
        Err(AuthError::PermissionDenied) => Err(Reply::bad_request("invalid accessor")),
        Err(error) => Err(fail(error.into())),
    }
}

fn accessors(state: &RestState, request: &Request) -> Handled {
    let ctx = request.context();
    let (unsealed, _) = state
        .service
        .authorize(&ctx, "auth/token/accessors", &[Capability::Sudo])
        .map_err(fail)?;
    let mut keys = unsealed.auth.accessors();
    keys.sort();
    if keys.is_empty() {
        return Ok(Reply::not_found());
    }
    Ok(Reply::data(json!({ "keys": keys })))
}

impl Reply {
    /// Fills `auth.client_token` (renewals echo the renewed token).
    fn with_client_token(self, token: &str) -> Self {
        match self {
            Self::Envelope {
                status,
                data,
                warnings,
                auth: Some(mut auth),
                inject,
            } => {
                auth["client_token"] = json!(token);
                Self::Envelope {
                    status,
                    data,
                    warnings,
                    auth: Some(auth),
                    inject,
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fields::rfc3339;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
