//! What one audit entry says, and how it is rendered for one device.
//!
//! The shape follows Vault's audit log (reference §12) so existing pipelines
//! can read it: `time`, `type` (`request`/`response`), `auth` (accessor and
//! policies, never the token), `request` (id, operation, mount, path, remote
//! address, data), `response` (status, data) and a top-level `error`. cipherd
//! adds a `cipherd` object: the transport, the key, the key versions used and
//! the item count of a batch. Every string inside request and response data,
//! the token and the accessor are hashed with the device's [`Hasher`].

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde_json::{Map, Value};

use super::hasher::{Hasher, Protected};

/// Who made a request, as far as the token tells (filled by the service).
#[derive(Debug, Clone, Default)]
pub struct AuthView {
    /// The client token as sent (only its hash is written).
    pub client_token: Option<String>,
    /// Its accessor (hashed unless the device sets `hmac_accessor=false`).
    pub accessor: Option<String>,
    /// `token`, `root`, `token-<name>`.
    pub display_name: Option<String>,
    /// The token's policies.
    pub policies: Vec<String>,
    /// Token metadata.
    pub metadata: Vec<(String, String)>,
    /// Creation TTL in seconds (omitted for 0).
    pub token_ttl: u64,
    /// Creation time as RFC 3339.
    pub token_issue_time: Option<String>,
    /// Whether the ACL allowed the request (`None` = not checked).
    pub allowed: Option<bool>,
}

/// What was asked (filled by the adapter).
#[derive(Debug, Clone)]
pub struct RequestView {
    /// The request id (REST: the reply's `request_id`).
    pub id: String,
    /// `create`, `read`, `update`, `delete` or `list`.
    pub operation: &'static str,
    /// The path, without `v1/` (gRPC: the equivalent REST path).
    pub path: String,
    /// The client's address.
    pub remote: Option<SocketAddr>,
    /// The request's fields, unhashed (hashed per device at render time).
    pub data: Option<Value>,
    /// `rest` or `grpc`.
    pub transport: &'static str,
}

/// What was answered, borrowed from the reply (hashed while it is rendered,
/// never copied).
#[derive(Debug, Clone, Default)]
pub struct ResponseView<'a> {
    /// HTTP status (gRPC: the HTTP status of the equivalent REST reply).
    pub status: u16,
    /// The response data, unhashed.
    pub data: Option<&'a Value>,
    /// Warnings.
    pub warnings: &'a [String],
    /// The error, in clear (error messages never carry secrets).
    pub error: Option<String>,
}

/// cipherd's own fields.
#[derive(Debug, Clone, Default)]
pub struct CipherdView {
    /// The mount the request went to (`transit/`).
    pub mount: Option<String>,
    /// The key the request used.
    pub key: Option<String>,
    /// The key versions used (from ciphertexts read and versions reported).
    pub key_versions: BTreeSet<u32>,
    /// Items in a batch.
    pub items: Option<usize>,
}

/// Options of a device that change rendering.
#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    /// Hash the accessor too (Vault's default).
    pub hmac_accessor: bool,
}

/// The time of an entry, RFC 3339 in UTC with nanoseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// `{"id": "root"}`: Vault's namespace field.
#[derive(serde::Serialize)]
struct Namespace {
    id: &'static str,
}

/// A request entry's `request` object, in Vault's field order.
#[derive(serde::Serialize)]
struct RequestOut<'a> {
    id: &'a str,
    operation: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mount_point: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mount_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_token_accessor: Option<&'a str>,
    namespace: Namespace,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Protected<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_port: Option<u16>,
}

/// A response entry's `response` object.
#[derive(serde::Serialize)]
struct ResponseOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    mount_point: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mount_type: Option<&'static str>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Protected<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

/// One entry: `time`, `type`, `auth`, `request`, [`response`], [`error`], `cipherd`.
#[derive(serde::Serialize)]
struct EntryOut<'a> {
    time: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    auth: AuthOut<'a>,
    request: RequestOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<ResponseOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    cipherd: Value,
}

/// Renders a `request` or `response` entry for one device: a JSON object's
/// text without the closing brace (the chain adds `seq` and `prev_hash`).
/// Data is hashed while it is serialized, without copying it.
#[allow(clippy::too_many_arguments)]
pub fn render(
    kind: &str,
    time: &str,
    auth: &AuthView,
    request: &RequestView,
    response: Option<&ResponseView<'_>>,
    cipherd: &CipherdView,
    hasher: &Hasher,
    options: RenderOptions,
) -> String {
    let mount_point = cipherd.mount.as_deref();
    let mount_type = mount_point.map(|_| "transit");
    // Each hashed once per entry, shown in both `auth` and `request`.
    let client_token = auth.client_token.as_deref().map(|t| hasher.protect(t));
    let accessor = auth
        .accessor
        .as_deref()
        .map(|a| accessor_text(a, hasher, options));
    let entry = EntryOut {
        time,
        kind,
        auth: AuthOut {
            client_token: client_token.as_deref(),
            accessor: accessor.as_deref(),
            display_name: auth.display_name.as_deref(),
            policies: &auth.policies,
            token_policies: &auth.policies,
            policy_results: auth.allowed.map(|allowed| PolicyResults { allowed }),
            metadata: Metadata(&auth.metadata),
            token_type: if auth.accessor.is_some() {
                "service"
            } else {
                "default"
            },
            token_ttl: auth.token_ttl,
            token_issue_time: auth.token_issue_time.as_deref(),
        },
        request: RequestOut {
            id: &request.id,
            operation: request.operation,
            mount_point,
            mount_type,
            client_token: client_token.as_deref(),
            client_token_accessor: accessor.as_deref(),
            namespace: Namespace { id: "root" },
            path: &request.path,
            data: request.data.as_ref().map(|d| hasher.protected(d)),
            remote_address: request.remote.map(|r| r.ip().to_string()),
            remote_port: request.remote.map(|r| r.port()),
        },
        response: response.map(|response| ResponseOut {
            mount_point,
            mount_type,
            status: response.status,
            data: response.data.map(|d| hasher.protected(d)),
            warnings: response.warnings,
        }),
        error: response.and_then(|r| r.error.as_deref()),
        cipherd: cipherd_json(request, cipherd),
    };
    let mut text = serde_json::to_string(&entry).unwrap_or_else(|_| "{}".into());
    // Drop the closing brace: the chain appends its fields and closes the object.
    text.pop();
    text
}

/// `{"allowed": bool}`.
#[derive(serde::Serialize)]
struct PolicyResults {
    allowed: bool,
}

/// The `auth` object, in Vault's field order.
#[derive(serde::Serialize)]
struct AuthOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    client_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accessor: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    policies: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    token_policies: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_results: Option<PolicyResults>,
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    metadata: Metadata<'a>,
    token_type: &'static str,
    #[serde(skip_serializing_if = "is_zero")]
    token_ttl: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_issue_time: Option<&'a str>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Token metadata as a JSON object.
struct Metadata<'a>(&'a [(String, String)]);

impl Metadata<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl serde::Serialize for Metadata<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

fn accessor_text(accessor: &str, hasher: &Hasher, options: RenderOptions) -> String {
    if options.hmac_accessor {
        hasher.protect(accessor)
    } else {
        accessor.to_owned()
    }
}

fn cipherd_json(request: &RequestView, cipherd: &CipherdView) -> Value {
    let mut fields = Map::new();
    fields.insert("transport".into(), request.transport.into());
    if let Some(key) = &cipherd.key {
        fields.insert("key".into(), key.as_str().into());
    }
    if !cipherd.key_versions.is_empty() {
        let versions: Vec<Value> = cipherd.key_versions.iter().map(|&v| v.into()).collect();
        fields.insert("key_versions".into(), Value::Array(versions));
    }
    if let Some(items) = cipherd.items {
        fields.insert("items".into(), items.into());
    }
    Value::Object(fields)
}

/// Adds the key versions `value` names: `vault:vN:` strings (ciphertexts,
/// signatures, HMACs read or produced) and `key_version` numbers.
pub fn collect_versions(value: &Value, out: &mut BTreeSet<u32>) {
    match value {
        Value::String(text) => {
            if let Some(version) = vault_version(text) {
                out.insert(version);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_versions(item, out)),
        Value::Object(fields) => {
            for (name, field) in fields {
                if name == "key_version"
                    && let Some(version) = field.as_u64().and_then(|v| u32::try_from(v).ok())
                    && version > 0
                {
                    out.insert(version);
                } else {
                    collect_versions(field, out);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The version of a `vault:vN:...` string.
fn vault_version(text: &str) -> Option<u32> {
    let rest = text.strip_prefix("vault:v")?;
    let (digits, _) = rest.split_once(':')?;
    digits.parse().ok().filter(|&v| v > 0)
}

/// The item count of a batch request (`batch_input` over REST, `items` over gRPC).
pub fn batch_items(data: &Value) -> Option<usize> {
    ["batch_input", "items"]
        .iter()
        .find_map(|name| data.get(name).and_then(Value::as_array).map(Vec::len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretBytes;

    #[test]
    fn renders_vaults_shape_with_secrets_hashed() {
        let hasher = Hasher::new(&SecretBytes::from_slice(b"k"), false);
        let auth = AuthView {
            client_token: Some("hvs.secret-token".into()),
            accessor: Some("acc123".into()),
            display_name: Some("token".into()),
            policies: vec!["default".into(), "payments".into()],
            allowed: Some(true),
            ..AuthView::default()
        };
        let request = RequestView {
            id: "id-1".into(),
            operation: "update",
            path: "transit/encrypt/orders".into(),
            remote: Some("127.0.0.1:5000".parse().unwrap()),
            data: Some(serde_json::json!({"plaintext": "c2VjcmV0"})),
            transport: "rest",
        };
        let data = serde_json::json!({"ciphertext": "vault:v3:abc", "key_version": 3});
        let response = ResponseView {
            status: 200,
            data: Some(&data),
            ..ResponseView::default()
        };
        let mut cipherd = CipherdView {
            mount: Some("transit/".into()),
            key: Some("orders".into()),
            ..CipherdView::default()
        };
        collect_versions(response.data.as_ref().unwrap(), &mut cipherd.key_versions);
        let body = render(
            "response",
            "2026-01-01T00:00:00Z",
            &auth,
            &request,
            Some(&response),
            &cipherd,
            &hasher,
            RenderOptions {
                hmac_accessor: true,
            },
        );
        let entry: Value = serde_json::from_str(&format!("{body}}}")).unwrap();
        assert!(!body.contains("hvs.secret-token"));
        assert!(!body.contains("c2VjcmV0"));
        assert!(!body.contains("acc123"));
        assert!(!body.contains("vault:v3:abc"));
        assert_eq!(
            entry["auth"]["client_token"],
            hasher.hash_str("hvs.secret-token")
        );
        assert_eq!(
            entry["request"]["data"]["plaintext"],
            hasher.hash_str("c2VjcmV0")
        );
        assert_eq!(entry["response"]["data"]["key_version"], 3);
        assert_eq!(entry["cipherd"]["key_versions"], serde_json::json!([3]));
        assert_eq!(entry["cipherd"]["key"], "orders");
        assert_eq!(entry["request"]["remote_address"], "127.0.0.1");
    }

    #[test]
    fn versions_come_from_ciphertexts_and_key_version_fields() {
        let mut versions = BTreeSet::new();
        collect_versions(
            &serde_json::json!({"batch_input": [{"ciphertext": "vault:v1:x"}, {"ciphertext": "vault:v12:y"}, {"ciphertext": "nope"}], "key_version": 4}),
            &mut versions,
        );
        assert_eq!(versions.into_iter().collect::<Vec<_>>(), vec![1, 4, 12]);
        assert_eq!(
            batch_items(&serde_json::json!({"batch_input": [1, 2]})),
            Some(2)
        );
        assert_eq!(batch_items(&serde_json::json!({"plaintext": "x"})), None);
    }
}
