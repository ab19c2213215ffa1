//! What one audit entry says, and how it is rendered for one device.
//!
//! The shape follows Vault's audit log (reference §12) so existing pipelines
//! can read it: `time`, `type` (`request`/`response`), `auth` (accessor and
//! policies, never the token), `request` (id, operation, mount, path, remote
//! address, data), `response` (status, data) and a top-level `error`. cipherd
//! adds a `cipherd` object: the transport, the key, the key versions used and
//! the item count of a batch. Every string inside request and response data,
//! the token and the accessor are hashed with the device's [`Hasher`].
//!
//! A request's two entries repeat the same `auth` and `request` objects, so
//! those are rendered once per device ([`render_head`]) and copied into both
//! ([`render_entry`]); the request's data is rendered even earlier, when the
//! request arrives, so the adapter need not keep a copy of it.

use std::net::SocketAddr;

use super::data::DataFacts;
use super::hasher::{Hasher, Identity, IdentityCache};
use super::json;

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

/// What was asked (filled by the adapter; its data is handed over separately,
/// see [`crate::audit::AuditData`]).
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
    /// `rest` or `grpc`.
    pub transport: &'static str,
}

/// What was answered, borrowed from the reply (hashed while it is rendered,
/// never copied).
#[derive(Clone, Default)]
pub struct ResponseView<'a> {
    /// HTTP status (gRPC: the HTTP status of the equivalent REST reply).
    pub status: u16,
    /// The response data, unhashed.
    pub data: Option<&'a dyn super::AuditData>,
    /// Warnings.
    pub warnings: &'a [String],
    /// The error, in clear (error messages never carry secrets).
    pub error: Option<String>,
}

impl std::fmt::Debug for ResponseView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseView")
            .field("status", &self.status)
            .field("data", &self.data.map(|_| "[data]"))
            .field("warnings", &self.warnings)
            .field("error", &self.error)
            .finish()
    }
}

/// cipherd's own fields.
#[derive(Debug, Clone, Default)]
pub struct CipherdView {
    /// The mount the request went to (`transit/`).
    pub mount: Option<String>,
    /// The key the request used.
    pub key: Option<String>,
    /// Key versions used and the batch item count.
    pub facts: DataFacts,
}

/// Options of a device that change rendering.
#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    /// Hash the accessor too (Vault's default).
    pub hmac_accessor: bool,
}

/// The time of an entry, RFC 3339 in UTC with nanoseconds.
pub fn now_rfc3339() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_nanos())
}

/// `secs.nanos` after the Unix epoch as RFC 3339 in UTC, exactly as the `time`
/// crate writes it (fraction without trailing zeros, none for whole
/// seconds). Every entry carries one or two times, so the date and time of
/// day are formatted once per second per thread and only the fraction per
/// call.
pub fn rfc3339(secs: u64, nanos: u32) -> String {
    /// The two seconds formatted last on this thread (the current one, and
    /// the issue time of the token in use), and which slot to replace next.
    struct Seconds {
        slots: [(u64, String); 2],
        next: usize,
    }
    thread_local! {
        static SECONDS: std::cell::RefCell<Seconds> = const {
            std::cell::RefCell::new(Seconds {
                slots: [(u64::MAX, String::new()), (u64::MAX, String::new())],
                next: 0,
            })
        };
    }
    let mut out = String::with_capacity(32);
    SECONDS.with(|seconds| {
        let mut seconds = seconds.borrow_mut();
        let slot = match seconds.slots.iter().position(|(cached, _)| *cached == secs) {
            Some(slot) => slot,
            None => {
                let whole = i64::try_from(secs)
                    .ok()
                    .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
                    .and_then(|at| {
                        at.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    });
                let Some(mut whole) = whole else {
                    // Past year 9999: RFC 3339 cannot say it.
                    out.push_str(&secs.to_string());
                    return;
                };
                whole.pop(); // the `Z`
                let slot = seconds.next;
                seconds.slots[slot] = (secs, whole);
                seconds.next = 1 - slot;
                slot
            }
        };
        out.push_str(&seconds.slots[slot].1);
        if nanos != 0 {
            let mut digits = itoa::Buffer::new();
            let digits = digits.format(nanos);
            out.push('.');
            for _ in digits.len()..9 {
                out.push('0');
            }
            out.push_str(digits);
            while out.ends_with('0') {
                out.pop();
            }
        }
        out.push('Z');
    });
    out
}

/// Renders `"auth":{...},"request":{...}`: the part a request's entries
/// share. `data` is the request's data as this device shows it (already
/// protected).
pub fn render_head(
    auth: &AuthView,
    request: &RequestView,
    mount: Option<&str>,
    data: Option<&str>,
    hasher: &Hasher,
    identities: &IdentityCache,
    options: RenderOptions,
) -> String {
    // A head without data is about 800 bytes (787 for a root token's
    // encrypt: the hashed token and accessor appear twice each).
    let mut out = String::with_capacity(1024 + data.map_or(0, str::len));
    // Each protected once per token, shown in both `auth` and `request`.
    let protect_accessor = |accessor: &str| {
        if options.hmac_accessor {
            hasher.protect(accessor)
        } else {
            accessor.to_owned()
        }
    };
    // A token that resolved has an accessor: its pair is cached per device.
    // Otherwise (no token, or one that did not resolve) each is protected here.
    let cached;
    let uncached;
    let identity: &Identity = match (auth.client_token.as_deref(), auth.accessor.as_deref()) {
        (Some(token), Some(accessor)) => {
            cached = identities.get_or_protect(accessor, || Identity {
                token: hasher.protect(token),
                accessor: protect_accessor(accessor),
            });
            &cached
        }
        (token, accessor) => {
            uncached = Identity {
                token: token.map(|t| hasher.protect(t)).unwrap_or_default(),
                accessor: accessor.map(protect_accessor).unwrap_or_default(),
            };
            &uncached
        }
    };
    let client_token = auth
        .client_token
        .is_some()
        .then_some(identity.token.as_str());
    let accessor = auth
        .accessor
        .is_some()
        .then_some(identity.accessor.as_str());

    out.push_str("\"auth\":{");
    let mut fields = Fields::new(&mut out);
    if let Some(token) = client_token {
        fields.str("client_token", token);
    }
    if let Some(accessor) = accessor {
        fields.str("accessor", accessor);
    }
    if let Some(name) = &auth.display_name {
        fields.str("display_name", name);
    }
    if !auth.policies.is_empty() {
        fields.strs("policies", &auth.policies);
        fields.strs("token_policies", &auth.policies);
    }
    if let Some(allowed) = auth.allowed {
        fields.raw(
            "policy_results",
            if allowed {
                "{\"allowed\":true}"
            } else {
                "{\"allowed\":false}"
            },
        );
    }
    if !auth.metadata.is_empty() {
        let out = fields.open("metadata");
        out.push('{');
        for (at, (name, value)) in auth.metadata.iter().enumerate() {
            if at > 0 {
                out.push(',');
            }
            json::push_key(out, name);
            json::push_str(out, value);
        }
        out.push('}');
    }
    fields.str(
        "token_type",
        if auth.accessor.is_some() {
            "service"
        } else {
            "default"
        },
    );
    if auth.token_ttl != 0 {
        json::push_u64(fields.open("token_ttl"), auth.token_ttl);
    }
    if let Some(issued) = &auth.token_issue_time {
        fields.str("token_issue_time", issued);
    }

    out.push_str("},\"request\":{");
    let mut fields = Fields::new(&mut out);
    fields.str("id", &request.id);
    fields.str("operation", request.operation);
    if let Some(mount) = mount {
        fields.str("mount_point", mount);
        fields.str("mount_type", "transit");
    }
    if let Some(token) = client_token {
        fields.str("client_token", token);
    }
    if let Some(accessor) = accessor {
        fields.str("client_token_accessor", accessor);
    }
    fields.raw("namespace", "{\"id\":\"root\"}");
    fields.str("path", &request.path);
    if let Some(data) = data {
        fields.raw("data", data);
    }
    if let Some(remote) = request.remote {
        fields.str("remote_address", &remote.ip().to_string());
        json::push_u64(fields.open("remote_port"), u64::from(remote.port()));
    }
    out.push('}');
    out
}

/// Renders a `request` or `response` entry from its shared `head`: a JSON
/// object's text without the closing brace (the chain adds `seq` and
/// `prev_hash`). `response_data` is the response's data as this device shows
/// it (already protected).
pub fn render_entry(
    kind: &str,
    time: &str,
    head: &str,
    response: Option<(&ResponseView<'_>, Option<&str>)>,
    cipherd: &CipherdView,
    transport: &str,
) -> String {
    let data_len = response.and_then(|(_, data)| data).map_or(0, str::len);
    let mut out = String::with_capacity(head.len() + data_len + 256);
    out.push_str("{\"time\":");
    json::push_str(&mut out, time);
    out.push_str(",\"type\":");
    json::push_str(&mut out, kind);
    out.push(',');
    out.push_str(head);
    if let Some((response, data)) = response {
        out.push_str(",\"response\":{");
        let mut fields = Fields::new(&mut out);
        if let Some(mount) = &cipherd.mount {
            fields.str("mount_point", mount);
            fields.str("mount_type", "transit");
        }
        json::push_u64(fields.open("status"), u64::from(response.status));
        if let Some(data) = data {
            fields.raw("data", data);
        }
        if !response.warnings.is_empty() {
            fields.strs("warnings", response.warnings);
        }
        out.push('}');
        if let Some(error) = &response.error {
            out.push_str(",\"error\":");
            json::push_str(&mut out, error);
        }
    }
    out.push_str(",\"cipherd\":{");
    let mut fields = Fields::new(&mut out);
    fields.str("transport", transport);
    if let Some(key) = &cipherd.key {
        fields.str("key", key);
    }
    if !cipherd.facts.key_versions.is_empty() {
        let out = fields.open("key_versions");
        out.push('[');
        for (at, version) in cipherd.facts.key_versions.iter().enumerate() {
            if at > 0 {
                out.push(',');
            }
            json::push_u64(out, u64::from(*version));
        }
        out.push(']');
    }
    if let Some(items) = cipherd.facts.items {
        json::push_u64(fields.open("items"), items as u64);
    }
    out.push('}');
    out
}

/// The members of one JSON object being written: commas between them.
struct Fields<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Fields<'a> {
    fn new(out: &'a mut String) -> Self {
        Self { out, first: true }
    }

    /// Writes `"name":` (after a comma unless first) and returns the text to
    /// write the value into.
    fn open(&mut self, name: &'static str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        // Member names here are cipherd's own literals: nothing to escape,
        // so they skip the escape scan.
        debug_assert!(!name.contains(['"', '\\']) && !name.contains(char::is_control));
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
        self.out
    }

    fn str(&mut self, name: &'static str, value: &str) {
        json::push_str(self.open(name), value);
    }

    /// A member whose value is JSON text already.
    fn raw(&mut self, name: &'static str, value: &str) {
        self.open(name).push_str(value);
    }

    fn strs(&mut self, name: &'static str, values: &[String]) {
        let out = self.open(name);
        out.push('[');
        for (at, value) in values.iter().enumerate() {
            if at > 0 {
                out.push(',');
            }
            json::push_str(out, value);
        }
        out.push(']');
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::audit::AuditData;
    use crate::crypto::SecretBytes;

    #[test]
    fn renders_vaults_shape_with_secrets_hashed() {
        let hasher = Hasher::new(&SecretBytes::from_slice(b"k"), false);
        let auth = AuthView {
            client_token: Some("hvs.secret-token".into()),
            accessor: Some("acc123".into()),
            display_name: Some("token".into()),
            policies: vec!["default".into(), "payments".into()],
            metadata: vec![("team".into(), "a \"quoted\" name".into())],
            token_ttl: 3600,
            token_issue_time: Some("2026-01-01T00:00:00Z".into()),
            allowed: Some(true),
        };
        let request = RequestView {
            id: "id-1".into(),
            operation: "update",
            path: "transit/encrypt/orders".into(),
            remote: Some("127.0.0.1:5000".parse().unwrap()),
            transport: "rest",
        };
        let request_data = serde_json::json!({"plaintext": "c2VjcmV0"});
        let data = serde_json::json!({"ciphertext": "vault:v3:abc", "key_version": 3});
        let response = ResponseView {
            status: 200,
            data: Some(&data),
            warnings: &["careful".to_owned()],
            error: None,
        };
        let mut cipherd = CipherdView {
            mount: Some("transit/".into()),
            key: Some("orders".into()),
            ..CipherdView::default()
        };
        let mut request_text = String::new();
        request_data.write_protected(&hasher, &mut request_text, Some(&mut cipherd.facts));
        let mut response_text = String::new();
        data.write_protected(&hasher, &mut response_text, Some(&mut cipherd.facts));
        let options = RenderOptions {
            hmac_accessor: true,
        };
        let head = render_head(
            &auth,
            &request,
            cipherd.mount.as_deref(),
            Some(&request_text),
            &hasher,
            &IdentityCache::default(),
            options,
        );
        let body = render_entry(
            "response",
            "2026-01-01T00:00:01Z",
            &head,
            Some((&response, Some(&response_text))),
            &cipherd,
            request.transport,
        );
        let entry: Value = serde_json::from_str(&format!("{body}}}")).unwrap();
        assert!(!body.contains("hvs.secret-token"));
        assert!(!body.contains("c2VjcmV0"));
        assert!(!body.contains("acc123"));
        assert!(!body.contains("vault:v3:abc"));
        let token = hasher.hash_str("hvs.secret-token");
        let accessor = hasher.hash_str("acc123");
        let expected = serde_json::json!({
            "time": "2026-01-01T00:00:01Z",
            "type": "response",
            "auth": {
                "client_token": token,
                "accessor": accessor,
                "display_name": "token",
                "policies": ["default", "payments"],
                "token_policies": ["default", "payments"],
                "policy_results": {"allowed": true},
                "metadata": {"team": "a \"quoted\" name"},
                "token_type": "service",
                "token_ttl": 3600,
                "token_issue_time": "2026-01-01T00:00:00Z",
            },
            "request": {
                "id": "id-1",
                "operation": "update",
                "mount_point": "transit/",
                "mount_type": "transit",
                "client_token": token,
                "client_token_accessor": accessor,
                "namespace": {"id": "root"},
                "path": "transit/encrypt/orders",
                "data": {"plaintext": hasher.hash_str("c2VjcmV0")},
                "remote_address": "127.0.0.1",
                "remote_port": 5000,
            },
            "response": {
                "mount_point": "transit/",
                "mount_type": "transit",
                "status": 200,
                "data": {"ciphertext": hasher.hash_str("vault:v3:abc"), "key_version": 3},
                "warnings": ["careful"],
            },
            "cipherd": {"transport": "rest", "key": "orders", "key_versions": [3]},
        });
        assert_eq!(entry, expected);
        // Vault's field order, which log pipelines may rely on.
        let keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["time", "type", "auth", "request", "response", "cipherd"]
        );
    }

    #[test]
    fn times_are_written_as_the_time_crate_writes_them() {
        for (secs, nanos) in [
            (0, 0),
            (1_764_900_000, 0),
            (1_764_900_000, 1),
            (1_764_900_000, 415_892_036),
            (1_764_900_000, 415_892_000),
            (1_764_900_001, 100_000_000),
            (253_402_300_799, 999_999_999),
        ] {
            let at = time::OffsetDateTime::from_unix_timestamp(secs)
                .unwrap()
                .replace_nanosecond(nanos)
                .unwrap();
            let expected = at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            assert_eq!(rfc3339(secs.try_into().unwrap(), nanos), expected);
        }
        let now = now_rfc3339();
        assert!(
            time::OffsetDateTime::parse(&now, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{now}"
        );
    }

    #[test]
    fn renders_a_bare_request_entry_and_an_error() {
        let hasher = Hasher::new(&SecretBytes::from_slice(b"k"), false);
        let request = RequestView {
            id: "id-2".into(),
            operation: "read",
            path: "sys/mounts".into(),
            remote: None,
            transport: "grpc",
        };
        let options = RenderOptions {
            hmac_accessor: false,
        };
        let head = render_head(
            &AuthView::default(),
            &request,
            None,
            None,
            &hasher,
            &IdentityCache::default(),
            options,
        );
        let cipherd = CipherdView::default();
        let body = render_entry("request", "t", &head, None, &cipherd, "grpc");
        let entry: Value = serde_json::from_str(&format!("{body}}}")).unwrap();
        assert_eq!(
            entry,
            serde_json::json!({
                "time": "t",
                "type": "request",
                "auth": {"token_type": "default"},
                "request": {"id": "id-2", "operation": "read", "namespace": {"id": "root"}, "path": "sys/mounts"},
                "cipherd": {"transport": "grpc"},
            })
        );
        let response = ResponseView {
            status: 403,
            error: Some("permission denied".into()),
            ..ResponseView::default()
        };
        let body = render_entry(
            "response",
            "t",
            &head,
            Some((&response, None)),
            &cipherd,
            "grpc",
        );
        let entry: Value = serde_json::from_str(&format!("{body}}}")).unwrap();
        assert_eq!(entry["response"], serde_json::json!({"status": 403}));
        assert_eq!(entry["error"], "permission denied");
    }
}
