//! Transit endpoints (reference §3–§8): routing under a mount, method checks,
//! Vault's field rules (weak typing, unknown and replaced parameters), and the
//! JSON shapes of every answer.
//!
//! Every request goes through [`Service::transit`](crate::service::Service::transit),
//! which checks the token and ACL before the handler runs; nothing here calls the
//! engine on its own. Errors become replies through
//! [`rest_reply`](crate::api::error::rest_reply), with the per-endpoint wording
//! (and the few per-endpoint status quirks) Vault uses.
//!
//! Layout: `route` (paths → [`Route`]), `batch` (decoding `batch_input` and
//! batch statuses), `keys` (key management), `crypt` (encrypt, decrypt,
//! rewrap, datakey), `sign` (sign, verify, HMAC), `util` (hash, random,
//! mount-wide configuration).

mod batch;
mod crypt;
mod keys;
mod route;
mod sign;
mod util;

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::api::error::rest_reply;
use crate::auth::Capability;
use crate::engine::{Engine, EngineError};
use crate::service::{Mount, RequestContext, ServiceError, TransitOp};

use super::fields::FieldError;
use super::{Fields, Operation, Reply, Request, RestState};

use route::Route;
pub(super) use route::{resolve as resolve_route, templates as route_templates};

/// Batches at least this long run on the blocking pool rather than a runtime
/// worker. Below it the hop costs more than the work: an AEAD item is ~1–2 µs,
/// while the hand-off to the pool measured 45–130 µs (BENCHMARKS.md, REST
/// load section). From this size on the engine also spreads work over all cores.
const BLOCKING_BATCH_LEN: usize = crate::engine::PARALLEL_BATCH_THRESHOLD;

/// Signing batches are costly per item (an RSA-4096 signature is milliseconds),
/// so they leave the worker threads much sooner.
const BLOCKING_SIGN_BATCH_LEN: usize = 4;

/// A cheap look at the request (no routing) for work that may block for long.
/// A false positive only costs a hop to the blocking pool.
pub(super) fn is_heavy(request: &Request) -> bool {
    if let Some(Value::Array(items)) = request.fields.get("batch_input") {
        let signing = request.path.contains("/sign/") || request.path.contains("/verify/");
        let limit = if signing {
            BLOCKING_SIGN_BATCH_LEN
        } else {
            BLOCKING_BATCH_LEN
        };
        return items.len() >= limit;
    }
    let mut segments = request.path.rsplit('/');
    let last = segments.next().unwrap_or("");
    let before = segments.next().unwrap_or("");
    match request.operation {
        Operation::Update => {
            matches!(last, "rotate" | "import" | "import_version" | "restore")
                || before == "keys"
                || before == "restore"
                || request
                    .fields
                    .get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.starts_with("rsa"))
        }
        Operation::Read => last == "wrapping_key",
        Operation::Delete | Operation::List | Operation::Head => false,
    }
}

pub(super) fn respond(state: &RestState, request: &Request) -> Reply {
    let ctx = request.context();
    let (mount, rest) = match state.service.route(&request.path) {
        Ok(found) => found,
        Err(error @ ServiceError::NoSuchMount { .. }) => {
            // A bad token learns nothing about the mount table (reference §1.1).
            return precheck(state, &ctx, &request.path, request.operation)
                .unwrap_or_else(|| rest_reply(&error, None));
        }
        Err(error) => return rest_reply(&error, None),
    };
    let route = match Route::parse(rest) {
        // Vault appends '/' to a LIST path, which only `keys/` accepts.
        Some(route) if request.operation != Operation::List || route == Route::ListKeys => route,
        _ => {
            return precheck(state, &ctx, &request.path, request.operation)
                .unwrap_or_else(Reply::unsupported_path);
        }
    };
    if !route.allows(request.operation) {
        return precheck(state, &ctx, &request.path, request.operation)
            .unwrap_or_else(Reply::unsupported_operation);
    }
    let fields = Fields::new(&request.fields);
    let warnings = field_warnings(&request.fields, route.spec(), request.operation);
    let acl_path = if route == Route::ListKeys {
        "keys/"
    } else {
        rest
    };
    let op = route.op(request.operation);
    let call = Call {
        state,
        ctx,
        mount: &mount,
        acl_path,
        op,
        fields,
    };
    let reply = route.dispatch(&call, request.operation);
    finish(reply, warnings)
}

/// The token check Vault runs before routing, for requests that end in 404/405:
/// a missing or unusable token gets 403 rather than learning about the routes.
/// Returns the denial, if any.
fn precheck(
    state: &RestState,
    ctx: &RequestContext<'_>,
    path: &str,
    operation: Operation,
) -> Option<Reply> {
    let capability = match operation {
        Operation::Read | Operation::Head => Capability::Read,
        Operation::Update => Capability::Update,
        Operation::Delete => Capability::Delete,
        Operation::List => Capability::List,
    };
    let path: Cow<'_, str> = if operation == Operation::List {
        format!("{path}/").into()
    } else {
        path.into()
    };
    state
        .service
        .authorize(ctx, &path, &[capability])
        .err()
        .map(|error| rest_reply(&error, None))
}

/// Which fields an endpoint declares, and which of them are URL captures.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spec {
    /// Body or query fields the endpoint reads.
    known: &'static [&'static str],
    /// Names captured from the path; a body value for one is overwritten.
    captures: &'static [&'static str],
}

/// Vault's two field warnings (reference §1.3): unknown parameters are ignored,
/// and body values for URL captures are replaced. Names are sorted.
fn field_warnings(fields: &Map<String, Value>, spec: Spec, operation: Operation) -> Vec<String> {
    let mut unknown: Vec<&str> = Vec::new();
    let mut replaced: Vec<&str> = Vec::new();
    for (name, value) in fields {
        let name = name.as_str();
        if spec.captures.contains(&name) {
            if !value.is_null() {
                replaced.push(name);
            }
        } else if !(spec.known.contains(&name)
            || (name == "list" && matches!(operation, Operation::List | Operation::Read)))
        {
            unknown.push(name);
        }
    }
    unknown.sort_unstable();
    replaced.sort_unstable();
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        warnings.push(format!(
            "Endpoint ignored these unrecognized parameters: [{}]",
            unknown.join(" ")
        ));
    }
    if !replaced.is_empty() {
        warnings.push(format!(
            "Endpoint replaced the value of these parameters with the values captured from the endpoint's path: [{}]",
            replaced.join(" ")
        ));
    }
    warnings
}

/// Adds field warnings to a reply that has a body. As in Vault, a 204 stays a
/// 204 and an error reply carries only its errors.
fn finish(reply: Reply, extra: Vec<String>) -> Reply {
    match reply {
        Reply::Envelope {
            status,
            data,
            mut warnings,
            auth,
            inject,
        } if !extra.is_empty() => {
            warnings.extend(extra);
            Reply::Envelope {
                status,
                data,
                warnings,
                auth,
                inject,
            }
        }
        other => other,
    }
}

/// One transit request, routed and method-checked, ready for its handler.
pub(super) struct Call<'a> {
    state: &'a RestState,
    ctx: RequestContext<'a>,
    mount: &'a Mount,
    /// The path under the mount the ACL is checked against.
    acl_path: &'a str,
    /// The operation the ACL sees.
    op: TransitOp<'a>,
    /// The request's fields.
    fields: Fields<'a>,
}

impl Call<'_> {
    /// Authorizes the request and runs `handler` against the mount's engine;
    /// failures become replies through `map` (usually [`rest_reply`] with the
    /// endpoint's wording for a missing key).
    fn run(
        &self,
        map: impl FnOnce(&ServiceError) -> Reply,
        handler: impl FnOnce(&Engine) -> Outcome,
    ) -> Reply {
        let outcome = self.state.service.transit(
            &self.ctx,
            self.mount,
            self.op,
            Some(self.acl_path),
            |engine| Ok(handler(engine)),
        );
        match outcome {
            Ok(Ok(reply)) => reply,
            Ok(Err(Fail::Reply(reply))) => *reply,
            Ok(Err(Fail::Service(error))) => map(&error),
            Err(error) => map(&error),
        }
    }

    /// [`Call::run`] with the shared mapping and `key_not_found` wording.
    fn run_default(
        &self,
        key_not_found: Option<&str>,
        handler: impl FnOnce(&Engine) -> Outcome,
    ) -> Reply {
        self.run(|error| rest_reply(error, key_not_found), handler)
    }
}

/// Why a handler stopped early: a finished reply (a 400 for a bad field, ...)
/// or an error for the mapping.
/// Boxed: the happy path carries only the `Ok` side.
pub(super) enum Fail {
    /// Answer this.
    Reply(Box<Reply>),
    /// Map this through the endpoint's error mapping.
    Service(Box<ServiceError>),
}

/// What a handler returns.
pub(super) type Outcome = Result<Reply, Fail>;

impl From<FieldError> for Fail {
    fn from(error: FieldError) -> Self {
        Self::Reply(Box::new(Reply::bad_request(error.to_string())))
    }
}

impl From<EngineError> for Fail {
    fn from(error: EngineError) -> Self {
        Self::Service(Box::new(ServiceError::Engine(error)))
    }
}

impl From<Reply> for Fail {
    fn from(reply: Reply) -> Self {
        Self::Reply(Box::new(reply))
    }
}

/// A 400 with `message`.
fn bad(message: impl Into<String>) -> Fail {
    Reply::bad_request(message).into()
}

/// A 500 with `message` in Vault's plain-error form.
fn internal(message: impl std::fmt::Display) -> Fail {
    Reply::internal(message).into()
}

/// A string field, borrowed when it is one (the hot path), rendered when it is
/// a number or boolean (Vault's weak typing); `null` is `""`.
fn text<'a>(fields: &Fields<'a>, name: &str) -> Result<Option<Cow<'a, str>>, FieldError> {
    match fields.raw(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(Cow::Borrowed(s.as_str()))),
        Some(Value::Null) => Ok(Some(Cow::Borrowed(""))),
        Some(_) => fields.str(name).map(|s| s.map(Cow::Owned)),
    }
}

/// A non-empty string field (absent and `""` are both `None`).
fn non_empty<'a>(fields: &Fields<'a>, name: &str) -> Result<Option<Cow<'a, str>>, FieldError> {
    Ok(text(fields, name)?.filter(|s| !s.is_empty()))
}

/// A JSON object from key/value pairs.
fn object<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut map = Map::new();
    for (key, value) in pairs {
        map.insert(key.to_owned(), value);
    }
    Value::Object(map)
}

/// A key version from an integer field: `None` for 0 (latest), an error text
/// for a negative number; numbers past `u32` can never exist, so they clamp.
fn key_version(value: Option<i64>) -> Result<Option<u32>, ()> {
    match value {
        None | Some(0) => Ok(None),
        Some(v) if v < 0 => Err(()),
        Some(v) => Ok(Some(u32::try_from(v).unwrap_or(u32::MAX))),
    }
}

/// Vault's key-name pattern `\w(([\w-.]+)?\w)?` (ASCII word characters).
fn is_key_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    match bytes {
        [] => false,
        [only] => word(only),
        [first, inner @ .., last] => {
            word(first) && word(last) && inner.iter().all(|b| word(b) || *b == b'-' || *b == b'.')
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_follow_vaults_pattern() {
        for ok in ["a", "a1", "my-key", "bad..name", "x_y.z", "rotate", "_"] {
            assert!(is_key_name(ok), "{ok}");
        }
        for bad in ["", "-x", "name.", ".a", "a b", "a/b", "é", "-"] {
            assert!(!is_key_name(bad), "{bad}");
        }
    }

    #[test]
    fn warnings_are_sorted_and_skip_captures() {
        let body = serde_json::json!({"zzz": 1, "bogus": 2, "input": "", "name": "k", "urlalgorithm": null});
        let spec = Spec {
            known: &["input"],
            captures: &["name", "urlalgorithm"],
        };
        let warnings = field_warnings(body.as_object().unwrap(), spec, Operation::Update);
        assert_eq!(
            warnings,
            vec![
                "Endpoint ignored these unrecognized parameters: [bogus zzz]".to_owned(),
                "Endpoint replaced the value of these parameters with the values captured from the endpoint's path: [name]"
                    .to_owned(),
            ]
        );
    }
}
