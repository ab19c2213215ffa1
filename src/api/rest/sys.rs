//! `sys/` endpoints (reference §9): init, unseal, seal, seal-status, health,
//! mounts, ACL policies and audit devices.

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::api::error::rest_reply;
use crate::auth::Capability;
use crate::seal::{SealStatus, parse_share};
use crate::service::{MountInfo, ServiceError};

use super::{Operation, Reply, Request, RestState};

/// The version cipherd reports where Vault reports its own.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub(super) async fn handle(state: &RestState, request: Request) -> Reply {
    let path = request.path.strip_prefix("sys/").unwrap_or("");
    let op = request.operation;
    match (path, op) {
        ("init", Operation::Read) => init_status(state),
        ("init", Operation::Update) => init(state, &request),
        ("init", _) => Reply::errors(StatusCode::METHOD_NOT_ALLOWED, Vec::new()),
        ("unseal", Operation::Update) => unseal(state, &request),
        ("unseal", _) => Reply::errors(StatusCode::METHOD_NOT_ALLOWED, Vec::new()),
        ("seal", Operation::Update) => seal(state, &request),
        ("seal", _) => Reply::errors(StatusCode::METHOD_NOT_ALLOWED, Vec::new()),
        ("seal-status", Operation::Read) => Reply::Raw(
            StatusCode::OK,
            seal_status_json(&state.service.seal_status()),
        ),
        ("seal-status", _) => Reply::errors(StatusCode::METHOD_NOT_ALLOWED, Vec::new()),
        ("health", Operation::Read | Operation::Head) => health(state, &request),
        ("mounts", Operation::Read) => list_mounts(state, &request),
        ("leader", Operation::Read) => match state.service.unsealed() {
            Ok(_) => Reply::Raw(StatusCode::OK, json!({ "ha_enabled": false })),
            Err(error) => rest_reply(&error, None),
        },
        (p, _) if p.starts_with("mounts/") && p.ends_with("/tune") => tune(
            state,
            &request,
            &p["mounts/".len()..p.len() - "/tune".len()],
        ),
        (p, _) if p.starts_with("mounts/") => mount(state, &request, &p["mounts/".len()..]),
        ("policy", Operation::Read | Operation::List) => list_policies(state, &request, true),
        ("policies/acl", Operation::List) => list_policies(state, &request, false),
        (p, _) if p.starts_with("policy/") => policy(state, &request, &p["policy/".len()..], true),
        (p, _) if p.starts_with("policies/acl/") => {
            policy(state, &request, &p["policies/acl/".len()..], false)
        }
        ("capabilities-self", Operation::Update) => capabilities_self(state, &request),
        ("rotate", Operation::Update) => match state.service.rotate_barrier(&request.context()) {
            Ok(_) => Reply::NoContent,
            Err(error) => rest_reply(&error, None),
        },
        ("key-status", Operation::Read) => {
            match state.service.barrier_key_status(&request.context()) {
                Ok(key) => injected(json!({
                    "term": key.term,
                    "install_time": crate::api::rest::fields::rfc3339(key.installed_unix),
                    "encryptions": 0,
                })),
                Err(error) => rest_reply(&error, None),
            }
        }
        ("audit", Operation::Read) => list_audit(state, &request),
        ("audit/signing-key", Operation::Read) => audit_signing_key(state, &request),
        (p, Operation::Update | Operation::Delete) if p.starts_with("audit/") => {
            audit_device(state, &request, &p["audit/".len()..])
        }
        (p, _) if p.starts_with("audit/") => Reply::unsupported_operation(),
        (p, Operation::Update) if p.starts_with("audit-hash/") => {
            audit_hash(state, &request, &p["audit-hash/".len()..])
        }
        ("internal/specs/openapi" | "internal/openapi", Operation::Read) => {
            openapi(state, &request)
        }
        _ => match state.service.unsealed() {
            Err(error) => rest_reply(&error, None),
            Ok(_) => Reply::unsupported_path(),
        },
    }
}

/// The OpenAPI document of the REST API (`openapi/cipherd.json`), parsed once.
static OPENAPI: std::sync::LazyLock<Option<Value>> = std::sync::LazyLock::new(|| {
    serde_json::from_str(include_str!("../../../openapi/cipherd.json")).ok()
});

/// `GET sys/internal/specs/openapi` (Vault's path) and `sys/internal/openapi`:
/// the document itself as the body, for any valid token.
fn openapi(state: &RestState, request: &Request) -> Reply {
    match state.service.token_entry(&request.context()) {
        Ok(_) => match OPENAPI.as_ref() {
            Some(document) => Reply::Raw(StatusCode::OK, document.clone()),
            None => Reply::internal("the bundled OpenAPI document is not valid JSON"),
        },
        Err(error) => rest_reply(&error, None),
    }
}

fn init_status(state: &RestState) -> Reply {
    Reply::Raw(
        StatusCode::OK,
        json!({ "initialized": state.service.seal_status().initialized }),
    )
}

fn init(state: &RestState, request: &Request) -> Reply {
    let fields = request.fields();
    for recovery in ["recovery_shares", "recovery_threshold"] {
        if fields.int(recovery).ok().flatten().unwrap_or(0) != 0 {
            return Reply::bad_request(format!(
                "parameters {recovery} not applicable to seal type shamir"
            ));
        }
    }
    if fields
        .str_list("pgp_keys")
        .ok()
        .flatten()
        .is_some_and(|k| !k.is_empty())
    {
        return Reply::bad_request("PGP-encrypted shares are not supported by cipherd");
    }
    // Returning the root token in clear to a caller that asked for it encrypted
    // would be a silent downgrade: refuse instead.
    if fields
        .str("root_token_pgp_key")
        .ok()
        .flatten()
        .is_some_and(|k| !k.is_empty())
    {
        return Reply::bad_request("PGP-encrypted root tokens are not supported by cipherd");
    }
    let shares = match fields.int("secret_shares") {
        Ok(v) => v.unwrap_or(0),
        Err(e) => return Reply::bad_request(e.to_string()),
    };
    let threshold = match fields.int("secret_threshold") {
        Ok(v) => v.unwrap_or(0),
        Err(e) => return Reply::bad_request(e.to_string()),
    };
    let clamp = |v: i64| u8::try_from(v.clamp(0, 256)).unwrap_or(u8::MAX);
    if shares > 255 {
        return Reply::bad_request("invalid seal configuration: shares must be less than 256");
    }
    if threshold > 255 {
        return Reply::bad_request("invalid seal configuration: threshold must be less than 256");
    }
    match state.service.init(clamp(shares), clamp(threshold), None) {
        Ok(result) => {
            let hex: Vec<String> = result
                .shares
                .iter()
                .map(|s| hex::encode(s.expose_secret()))
                .collect();
            let b64: Vec<String> = result
                .shares
                .iter()
                .map(|s| STANDARD.encode(s.expose_secret()))
                .collect();
            let root = result.root_token.token.expose_secret().to_owned();
            Reply::Raw(
                StatusCode::OK,
                json!({ "keys": hex, "keys_base64": b64, "root_token": root }),
            )
        }
        Err(error) => rest_reply(&error, None),
    }
}

/// Field names of `sys/unseal` match case-insensitively (reference §9.3).
fn field_ci<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn unseal(state: &RestState, request: &Request) -> Reply {
    let reset = match field_ci(&request.fields, "reset") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        _ => false,
    };
    if reset {
        if !state.service.seal_status().sealed {
            return Reply::bad_request("vault is unsealed");
        }
        return Reply::Raw(
            StatusCode::OK,
            seal_status_json(&state.service.unseal_reset()),
        );
    }
    let Some(key) = field_ci(&request.fields, "key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
    else {
        return Reply::bad_request(
            "'key' must be specified in request body as JSON, or 'reset' set to true",
        );
    };
    let share = match parse_share(key) {
        Ok(share) => share,
        Err(error) => return rest_reply(&ServiceError::Seal(error), None),
    };
    match state.service.unseal(share.expose_secret()) {
        Ok(status) => Reply::Raw(StatusCode::OK, seal_status_json(&status)),
        // Vault silently ignores a share already submitted in this round.
        Err(ServiceError::Seal(crate::seal::SealError::DuplicateShare)) => Reply::Raw(
            StatusCode::OK,
            seal_status_json(&state.service.seal_status()),
        ),
        Err(error) => rest_reply(&error, None),
    }
}

fn seal(state: &RestState, request: &Request) -> Reply {
    let status = state.service.seal_status();
    if status.sealed || !status.initialized {
        return Reply::NoContent;
    }
    match state.service.seal(&request.context()) {
        Ok(()) => Reply::NoContent,
        Err(error) => rest_reply(&error, None),
    }
}

/// The seal-status object (reference §9.4), in OpenBao's key order.
pub fn seal_status_json(status: &SealStatus) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), json!("shamir"));
    out.insert("initialized".into(), json!(status.initialized));
    out.insert("sealed".into(), json!(status.sealed));
    out.insert("t".into(), json!(status.threshold));
    out.insert("n".into(), json!(status.shares));
    out.insert("progress".into(), json!(status.progress));
    out.insert("nonce".into(), json!(status.nonce));
    out.insert("recovery_seal".into(), json!(false));
    out.insert("version".into(), json!(VERSION));
    out.insert("build_date".into(), json!(""));
    out.insert("migration".into(), json!(false));
    if let (Some(name), Some(id)) = (&status.cluster_name, &status.cluster_id) {
        out.insert("cluster_name".into(), json!(name));
        out.insert("cluster_id".into(), json!(id));
    }
    out.insert("storage_type".into(), json!("cipherd"));
    Value::Object(out)
}

fn health(state: &RestState, request: &Request) -> Reply {
    let fields = request.fields();
    let code = |name: &str, default: u16| -> Result<u16, ()> {
        match fields.int(name) {
            Ok(None) => Ok(default),
            Ok(Some(v)) => u16::try_from(v).map_err(|_| ()),
            Err(_) => Err(()),
        }
    };
    let codes = (|| {
        Ok::<_, ()>((
            code("activecode", 200)?,
            code("sealedcode", 503)?,
            code("uninitcode", 501)?,
        ))
    })();
    let Ok((active, sealed_code, uninit)) = codes else {
        return Reply::errors(StatusCode::BAD_REQUEST, Vec::new());
    };
    if fields.bool("standbyok").is_err() {
        return Reply::errors(StatusCode::BAD_REQUEST, Vec::new());
    }
    let status = state.service.seal_status();
    let chosen = if !status.initialized {
        uninit
    } else if status.sealed {
        sealed_code
    } else {
        active
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut body = json!({
        "initialized": status.initialized,
        "sealed": status.sealed,
        "standby": status.sealed,
        "performance_standby": false,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": now,
        "version": VERSION,
    });
    if let (Some(name), Some(id)) = (&status.cluster_name, &status.cluster_id) {
        body["cluster_name"] = json!(name);
        body["cluster_id"] = json!(id);
    }
    let status_code = StatusCode::from_u16(chosen).unwrap_or(StatusCode::OK);
    if request.operation == Operation::Head {
        return Reply::Raw(status_code, Value::Null).head();
    }
    Reply::Raw(status_code, body)
}

fn mount_json(info: &MountInfo) -> Value {
    json!({
        "accessor": info.accessor,
        "config": {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false},
        "description": info.description,
        "external_entropy_access": false,
        "local": false,
        "options": {},
        "plugin_version": "",
        "running_plugin_version": format!("v{VERSION}+builtin.cipherd"),
        "running_sha256": "",
        "seal_wrap": false,
        "type": info.kind,
        "uuid": info.uuid,
        "deprecation_status": "supported",
    })
}

fn list_mounts(state: &RestState, request: &Request) -> Reply {
    let ctx = request.context();
    match state
        .service
        .authorize(&ctx, "sys/mounts", &[Capability::Read])
    {
        Ok((unsealed, _)) => {
            let mut data = Map::new();
            for info in unsealed.mounts.list() {
                data.insert(info.path.clone(), mount_json(&info));
            }
            data.insert(
                "sys/".into(),
                json!({"type": "system", "description": "system endpoints used for control, policy and debugging", "accessor": "system", "config": {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false}, "local": false, "seal_wrap": false, "options": null, "uuid": ""}),
            );
            injected(Value::Object(data))
        }
        Err(error) => rest_reply(&error, None),
    }
}

fn mount(state: &RestState, request: &Request, path: &str) -> Reply {
    let ctx = request.context();
    let acl_path = format!("sys/mounts/{path}");
    let normalized = crate::service::mounts::normalize_path(path);
    match request.operation {
        Operation::Update => {
            let fields = request.fields();
            let kind = fields.str("type").ok().flatten().unwrap_or_default();
            let description = fields.str("description").ok().flatten().unwrap_or_default();
            let result = state
                .service
                .authorize(&ctx, &acl_path, &[Capability::Create, Capability::Update])
                .and_then(|(unsealed, _)| unsealed.mounts.enable(path, &kind, &description));
            match result {
                Ok(_) => Reply::NoContent,
                Err(error) => rest_reply(&error, None),
            }
        }
        Operation::Delete => {
            let result = state
                .service
                .authorize(&ctx, &acl_path, &[Capability::Delete])
                .and_then(|(unsealed, _)| unsealed.mounts.disable(path));
            match result {
                Ok(()) => Reply::NoContent,
                Err(error) => rest_reply(&error, None),
            }
        }
        Operation::Read => match state
            .service
            .authorize(&ctx, &acl_path, &[Capability::Read])
        {
            Ok((unsealed, _)) => match unsealed
                .mounts
                .list()
                .into_iter()
                .find(|m| m.path == normalized)
            {
                Some(info) => injected(mount_json(&info)),
                None => Reply::bad_request(format!("No secret engine mount at {normalized}")),
            },
            Err(error) => rest_reply(&error, None),
        },
        Operation::List | Operation::Head => Reply::unsupported_operation(),
    }
}

/// `sys/mounts/:path/tune`: transit issues no leases, so the TTLs are the
/// system defaults and only `description` can change (reference §9.7).
fn tune(state: &RestState, request: &Request, path: &str) -> Reply {
    const SYSTEM_TTL: u64 = 32 * 24 * 3600;
    let ctx = request.context();
    let acl_path = format!("sys/mounts/{path}/tune");
    let normalized = crate::service::mounts::normalize_path(path);
    let capability = match request.operation {
        Operation::Read => Capability::Read,
        Operation::Update => Capability::Update,
        Operation::Delete | Operation::List | Operation::Head => {
            return Reply::unsupported_operation();
        }
    };
    let unsealed = match state.service.authorize(&ctx, &acl_path, &[capability]) {
        Ok((unsealed, _)) => unsealed,
        Err(error) => return rest_reply(&error, None),
    };
    let Some(info) = unsealed
        .mounts
        .list()
        .into_iter()
        .find(|m| m.path == normalized)
    else {
        return Reply::bad_request(format!("No secret engine mount at {normalized}"));
    };
    match request.operation {
        Operation::Update => {
            let fields = request.fields();
            let tune = match (
                fields.duration_secs("default_lease_ttl"),
                fields.duration_secs("max_lease_ttl"),
            ) {
                (Ok(default_lease_ttl), Ok(max_lease_ttl)) => crate::service::MountTune {
                    description: fields.str("description").ok().flatten(),
                    default_lease_ttl,
                    max_lease_ttl,
                },
                (Err(error), _) | (_, Err(error)) => return Reply::bad_request(error.to_string()),
            };
            match unsealed.mounts.tune(&normalized, &tune) {
                Ok(()) => Reply::NoContent,
                Err(error) => rest_reply(&error, None),
            }
        }
        _ => Reply::data(json!({
            "default_lease_ttl": if info.default_lease_ttl == 0 { SYSTEM_TTL } else { info.default_lease_ttl },
            "max_lease_ttl": if info.max_lease_ttl == 0 { SYSTEM_TTL } else { info.max_lease_ttl },
            "force_no_cache": false,
            "description": info.description,
        })),
    }
}

/// `GET sys/audit`: the devices keyed by path (reference §9.9).
fn list_audit(state: &RestState, request: &Request) -> Reply {
    match state.service.audit_devices(&request.context()) {
        Ok(devices) => {
            let listing: Map<String, Value> = devices
                .into_iter()
                .map(|device| {
                    let info = json!({
                        "type": device.kind,
                        "description": device.description,
                        "options": device.options,
                        "local": device.local,
                        "path": device.path,
                    });
                    (device.path, info)
                })
                .collect();
            injected(Value::Object(listing))
        }
        Err(error) => rest_reply(&error, None),
    }
}

/// `GET sys/audit/signing-key`: the Ed25519 public key that signs checkpoints,
/// for `cipherd audit verify --public-key`.
fn audit_signing_key(state: &RestState, request: &Request) -> Reply {
    match state.service.audit_signing_key(&request.context()) {
        Ok((public_key, key_id)) => injected(json!({
            "algorithm": "ed25519",
            "public_key": public_key,
            "key_id": key_id,
        })),
        Err(error) => rest_reply(&error, None),
    }
}

/// `PUT/POST sys/audit/:path` (enable) and `DELETE sys/audit/:path`.
fn audit_device(state: &RestState, request: &Request, path: &str) -> Reply {
    let ctx = request.context();
    if request.operation == Operation::Delete {
        return match state.service.disable_audit(&ctx, path) {
            Ok(()) => Reply::NoContent,
            Err(error) => rest_reply(&error, None),
        };
    }
    let fields = request.fields();
    let spec = (|| {
        let kind = fields
            .str("type")
            .map_err(|e| e.to_string())?
            .filter(|t| !t.is_empty())
            .ok_or_else(|| "type is required".to_owned())?;
        let options = match fields.raw("options") {
            None | Some(Value::Null) => Default::default(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(name, value)| {
                    let text = match value {
                        Value::String(text) => text.clone(),
                        Value::Bool(_) | Value::Number(_) => value.to_string(),
                        _ => return Err(format!("option {name:?} must be a string")),
                    };
                    Ok((name.clone(), text))
                })
                .collect::<Result<_, String>>()?,
            Some(_) => return Err("options must be an object of strings".to_owned()),
        };
        Ok::<_, String>(crate::audit::DeviceSpec {
            path: path.to_owned(),
            kind,
            description: fields
                .str("description")
                .map_err(|e| e.to_string())?
                .unwrap_or_default(),
            options,
            local: fields
                .bool("local")
                .map_err(|e| e.to_string())?
                .unwrap_or(false),
        })
    })();
    let spec = match spec {
        Ok(spec) => spec,
        Err(message) => return Reply::bad_request(message),
    };
    match state.service.enable_audit(&ctx, &spec) {
        Ok(()) => Reply::NoContent,
        Err(error) => rest_reply(&error, None),
    }
}

/// `POST sys/audit-hash/:path {"input": ...}`.
fn audit_hash(state: &RestState, request: &Request, path: &str) -> Reply {
    let input = match request.fields().str("input") {
        Ok(Some(input)) if !input.is_empty() => input,
        Ok(_) => return Reply::bad_request("the \"input\" parameter is empty"),
        Err(error) => return Reply::bad_request(error.to_string()),
    };
    match state.service.audit_hash(&request.context(), path, &input) {
        Ok(hash) => injected(json!({ "hash": hash })),
        Err(error) => rest_reply(&error, None),
    }
}

fn injected(data: Value) -> Reply {
    match Reply::data(data) {
        Reply::Envelope {
            status,
            data,
            warnings,
            auth,
            ..
        } => Reply::Envelope {
            status,
            data,
            warnings,
            auth,
            inject: true,
        },
        other => other,
    }
}

fn list_policies(state: &RestState, request: &Request, legacy: bool) -> Reply {
    let ctx = request.context();
    let path = if legacy {
        "sys/policy"
    } else {
        "sys/policies/acl"
    };
    let capability = if legacy && request.operation == Operation::Read {
        Capability::Read
    } else {
        Capability::List
    };
    match state.service.authorize(
        &ctx,
        path,
        &[capability, Capability::Read, Capability::List],
    ) {
        Ok((unsealed, _)) => {
            let mut names = unsealed.auth.list_policies();
            if legacy {
                // OpenBao lists root last.
                names.retain(|n| n != "root");
                names.push("root".into());
                injected(json!({ "keys": names, "policies": names }))
            } else {
                names.retain(|n| n != "root");
                Reply::data(json!({ "keys": names }))
            }
        }
        Err(error) => rest_reply(&error, None),
    }
}

fn policy(state: &RestState, request: &Request, name: &str, legacy: bool) -> Reply {
    let ctx = request.context();
    let prefix = if legacy {
        "sys/policy/"
    } else {
        "sys/policies/acl/"
    };
    let acl_path = format!("{prefix}{name}");
    let name = name.to_lowercase();
    match request.operation {
        Operation::Read => match state
            .service
            .authorize(&ctx, &acl_path, &[Capability::Read])
        {
            Ok((unsealed, _)) => match unsealed.auth.policy(&name) {
                Some(text) if legacy => injected(json!({ "name": name, "rules": text })),
                Some(text) => Reply::data(json!({ "name": name, "policy": text })),
                None => Reply::not_found(),
            },
            Err(error) => rest_reply(&error, None),
        },
        Operation::Update => {
            let fields = request.fields();
            let mut warnings = Vec::new();
            let mut text = fields.str("policy").ok().flatten().unwrap_or_default();
            if text.is_empty()
                && legacy
                && let Some(rules) = fields.str("rules").ok().flatten()
            {
                text = rules;
                warnings.push("'rules' is deprecated, please use 'policy' instead".to_owned());
            }
            if text.trim().is_empty() {
                return Reply::bad_request("'policy' parameter not supplied or empty");
            }
            // The policy text may arrive base64-encoded (reference §9.8).
            if let Ok(decoded) = STANDARD.decode(text.trim())
                && let Ok(decoded) = String::from_utf8(decoded)
            {
                text = decoded;
            }
            if name == "root" {
                return Reply::bad_request("cannot update \"root\" policy");
            }
            let result = state
                .service
                .authorize(&ctx, &acl_path, &[Capability::Create, Capability::Update])
                .and_then(|(unsealed, _)| Ok(unsealed.auth.put_policy(&name, &text)?));
            match result {
                Ok(()) => Reply::NoContent.with_warnings(warnings),
                Err(error) => rest_reply(&error, None),
            }
        }
        Operation::Delete => {
            if name == "root" {
                return Reply::bad_request("cannot delete \"root\" policy");
            }
            if name == "default" {
                return Reply::bad_request("cannot delete default policy");
            }
            let result = state
                .service
                .authorize(&ctx, &acl_path, &[Capability::Delete])
                .and_then(|(unsealed, _)| Ok(unsealed.auth.delete_policy(&name)?));
            match result {
                Ok(()) => Reply::NoContent,
                Err(error) => rest_reply(&error, None),
            }
        }
        Operation::List | Operation::Head => Reply::unsupported_operation(),
    }
}

fn capabilities_self(state: &RestState, request: &Request) -> Reply {
    let ctx = request.context();
    let paths = match request.fields().str_list("paths") {
        Ok(Some(p)) => p,
        _ => match request.fields().str("path") {
            Ok(Some(p)) => vec![p],
            _ => return Reply::bad_request("missing required 'paths' parameter"),
        },
    };
    let result = state.service.token_entry(&ctx).and_then(|(unsealed, _)| {
        let token = ctx.token.unwrap_or_default();
        let mut data = Map::new();
        let mut all = Vec::new();
        for path in &paths {
            let caps = unsealed.auth.capabilities(token, path)?;
            all = caps.clone();
            data.insert(path.clone(), json!(caps));
        }
        data.insert("capabilities".into(), json!(all));
        Ok(Value::Object(data))
    });
    match result {
        Ok(data) => injected(data),
        Err(error) => rest_reply(&error, None),
    }
}
