//! The Vault-compatible REST adapter (axum).
//!
//! One catch-all route receives every `/v1/...` request, turns it into a
//! [`Request`] (logical operation, path, fields, token) and dispatches on the
//! path: `sys/...`, `auth/token/...`, or a transit mount found by longest
//! prefix. Replies are Vault's envelope (`reply`). Limits on body size are
//! enforced before anything else, as Vault does.

// Handlers return `Result<Reply, Reply>` so `?` can short-circuit with a ready
// error reply; a reply is a response, and boxing it would only add noise.
#![allow(clippy::result_large_err)]

pub mod fields;
pub mod reply;
mod sys;
mod token;
mod transit;

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Map, Value};

pub use fields::Fields;
pub use reply::Reply;

use crate::audit::{AuditData, Frame, RequestView, ResponseView};
use crate::service::{RequestContext, Service, ServiceError, Transport};

/// Request limits (issue: configurable with safe defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body in bytes (Vault's default: 32 MiB).
    pub max_body_bytes: usize,
    /// Largest request head (request line plus headers) in bytes. The
    /// default, 1 MiB, is Go's `http.DefaultMaxHeaderBytes`, which OpenBao
    /// 2.7.2 uses: heads over it get 431 there too.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 * 1024 * 1024,
            max_header_bytes: 1024 * 1024,
        }
    }
}

impl Limits {
    /// The smallest `max_header_bytes` accepted: below this, ordinary client
    /// requests would be refused.
    pub const MIN_HEADER_BYTES: usize = 1024;

    /// The hard cap on a request head that the HTTP layer enforces before the
    /// router sees the request (hyper's HTTP/1 read buffer and HTTP/2 header
    /// list size). Heads over [`max_header_bytes`](Self::max_header_bytes)
    /// but within this cap get 431 with Vault's JSON error shape from the
    /// router; a head over the cap is cut off by hyper with a bare 431. Twice
    /// the limit (and at least hyper's 8 KiB minimum) keeps the memory one
    /// connection may hold bounded while leaving room for the clear answer.
    pub fn header_buffer_bytes(&self) -> usize {
        self.max_header_bytes.saturating_mul(2).max(8192)
    }
}

/// Shared state of the REST adapter.
#[derive(Clone)]
pub struct RestState {
    /// The service every request goes to.
    pub service: Arc<Service>,
    /// Limits in force.
    pub limits: Limits,
}

/// Vault's logical operation for an HTTP method (reference §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// GET.
    Read,
    /// POST or PUT.
    Update,
    /// DELETE.
    Delete,
    /// LIST, or GET with `?list=true`.
    List,
    /// HEAD.
    Head,
}

/// A decoded REST request.
#[derive(Debug)]
pub struct Request {
    /// Logical operation.
    pub operation: Operation,
    /// Path after `/v1/`, without a trailing slash.
    pub path: String,
    /// Body fields (POST/PUT) or query parameters (GET/DELETE/LIST).
    pub fields: Map<String, Value>,
    /// The client token.
    pub token: Option<String>,
    /// The audit frame, when audit devices are enabled.
    pub audit: Option<Arc<Frame>>,
}

impl Request {
    /// The request context for the service.
    pub fn context(&self) -> RequestContext<'_> {
        RequestContext {
            token: self.token.as_deref(),
            transport: Transport::Rest,
            audit: self.audit.as_deref(),
        }
    }

    /// Typed access to the fields.
    pub fn fields(&self) -> Fields<'_> {
        Fields::new(&self.fields)
    }
}

/// The transit path table as OpenAPI templates under `/{mount}`, one per path
/// shape, with their methods (`list` = LIST); `tests/openapi.rs` checks
/// `openapi/cipherd.json` against it.
#[doc(hidden)]
pub fn transit_route_templates() -> Vec<(&'static str, Vec<&'static str>)> {
    transit::route_templates()
}

/// The template and methods of the transit route `rest` (a path under a mount)
/// parses to, if any; for `tests/openapi.rs`.
#[doc(hidden)]
pub fn transit_route_for(rest: &str) -> Option<(&'static str, Vec<&'static str>)> {
    transit::resolve_route(rest)
}

/// The router: every Vault path under `/v1/`.
pub fn router(service: Arc<Service>, limits: Limits) -> Router {
    Router::new()
        .route("/v1/{*path}", any(handle))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            limits.max_header_bytes,
            limit_header_size,
        ))
        .with_state(RestState { service, limits })
}

/// Refuses a request whose head is over `max_header_bytes` with 431 and
/// Vault's JSON error shape, before anything else runs.
async fn limit_header_size(
    State(max_header_bytes): State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let size = head_size(&request);
    if size > max_header_bytes {
        return Reply::errors(
            axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            vec![format!(
                "request header fields too large: the request line and headers take \
                 {size} bytes, over the limit of {max_header_bytes} bytes"
            )],
        )
        .into_response();
    }
    next.run(request).await
}

/// The size of a request's head as HTTP/1.1 sends it: the request line
/// (`METHOD target HTTP/1.1`) and every `name: value` line with its CRLF.
fn head_size<B>(request: &axum::http::Request<B>) -> usize {
    let target = request
        .uri()
        .path_and_query()
        .map_or(1, |target| target.as_str().len());
    let request_line = request.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + ": ".len() + value.len() + "\r\n".len())
        .sum();
    request_line + headers + "\r\n".len()
}

async fn handle(
    State(state): State<RestState>,
    remote: Option<Extension<ConnectInfo<crate::tls::RemoteAddr>>>,
    method: Method,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        // The only way reading a body fails here is the size limit (or a client
        // that hangs up): answer as Vault does, in its JSON error shape.
        Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            return Reply::errors(
                rejection.status(),
                vec!["http: request body too large".into()],
            )
            .into_response();
        }
        Err(rejection) => return Reply::bad_request(rejection.body_text()).into_response(),
    };
    let mut request = match decode(&method, path, query.as_deref(), &headers, &body) {
        Ok(request) => request,
        Err(reply) => return reply.into_response(),
    };
    let remote = remote.map(|Extension(ConnectInfo(address))| address.0);
    let audited = is_audited(&request.path);
    if is_transit(&request.path) && transit::is_heavy(&request) {
        // Key generation (RSA above all), BYOK unwrapping and large batches
        // take milliseconds to seconds: they run on the blocking pool, and are
        // audited there too (see `Service::audit_finish_blocking`).
        return tokio::task::spawn_blocking(move || {
            transit_on_pool(&state, request, remote, audited)
        })
        .await
        .unwrap_or_else(|_| Reply::internal("internal error").into_response());
    }
    let frame = if audited {
        open_frame(&state, &request, remote)
    } else {
        None
    };
    let Some(frame) = frame else {
        return dispatch(state, request).await.into_response();
    };
    request.audit = Some(frame.clone());
    let service = state.service.clone();
    let reply = dispatch(state, request).await;
    let mut token_reply = None;
    let written = service
        .audit_finish(&frame, audit_view(&reply, &mut token_reply))
        .await;
    released(reply, &frame, written)
}

/// A heavy transit request, run (and audited, when `audited`) on a
/// blocking-pool thread.
fn transit_on_pool(
    state: &RestState,
    mut request: Request,
    remote: Option<std::net::SocketAddr>,
    audited: bool,
) -> Response {
    let frame = if audited {
        open_frame(state, &request, remote)
    } else {
        None
    };
    let Some(frame) = frame else {
        return transit::respond(state, &request).into_response();
    };
    request.audit = Some(frame.clone());
    // A handler that panicked still gets its response entry, as an internal
    // error: the frame must not be dropped unrecorded.
    let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        transit::respond(state, &request)
    }))
    .unwrap_or_else(|_| {
        tracing::error!("REST transit handler panicked");
        Reply::internal("internal error")
    });
    let mut token_reply = None;
    let written = state
        .service
        .audit_finish_blocking(&frame, audit_view(&reply, &mut token_reply));
    released(reply, &frame, written)
}

/// The audit frame of `request`, when some device audits it.
fn open_frame(
    state: &RestState,
    request: &Request,
    remote: Option<std::net::SocketAddr>,
) -> Option<Arc<Frame>> {
    state.service.audit_frame(
        request.token.as_deref(),
        || RequestView {
            id: String::new(),
            operation: request.operation.audit_name(),
            path: request.path.clone(),
            remote,
            transport: Transport::Rest.name(),
        },
        (!request.fields.is_empty()).then_some(&request.fields as &dyn AuditData),
    )
}

/// The reply, unless its audit entries could not be written (fail closed:
/// an answer no device could record is not released).
fn released(reply: Reply, frame: &Frame, written: Result<(), ServiceError>) -> Response {
    let reply = match written {
        Ok(()) => reply,
        Err(error) => crate::api::error::rest_reply(&error, None),
    };
    reply.into_response_with_id(Some(frame.request_id()))
}

/// Paths the transit adapter serves (everything but `sys/` and `auth/token/`).
fn is_transit(path: &str) -> bool {
    !(path == "sys" || path.starts_with("sys/") || path.starts_with("auth/token/"))
}

/// Vault does not audit the seal lifecycle and health endpoints (reference §12).
fn is_audited(path: &str) -> bool {
    !matches!(
        path,
        "sys/init" | "sys/seal-status" | "sys/seal" | "sys/unseal" | "sys/leader" | "sys/health"
    )
}

/// What the audit log records of a reply, borrowed from it. A token reply's
/// secret is in `auth`: it is logged (hashed) beside `data`, in an object
/// built into `token_reply`.
fn audit_view<'a>(reply: &'a Reply, token_reply: &'a mut Option<Value>) -> ResponseView<'a> {
    match reply {
        Reply::Envelope {
            status,
            data,
            warnings,
            auth,
            ..
        } => ResponseView {
            status: status.as_u16(),
            data: match (data, auth) {
                (data, None) => data.as_ref().map(|data| data as &dyn AuditData),
                (data, Some(auth)) => Some(
                    &*token_reply.insert(serde_json::json!({ "data": data, "auth": auth }))
                        as &dyn AuditData,
                ),
            },
            warnings,
            error: None,
        },
        Reply::Raw(status, value) => ResponseView {
            status: status.as_u16(),
            data: (!value.is_null()).then_some(value as &dyn AuditData),
            ..ResponseView::default()
        },
        Reply::NoContent => ResponseView {
            status: 204,
            ..ResponseView::default()
        },
        Reply::Errors(status, messages) => ResponseView {
            status: status.as_u16(),
            error: Some(if messages.is_empty() {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                messages.join("; ")
            }),
            ..ResponseView::default()
        },
    }
}

impl Operation {
    /// Vault's audit `operation` (transit requests refine it by capability).
    fn audit_name(self) -> &'static str {
        match self {
            Self::Read | Self::Head => "read",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::List => "list",
        }
    }
}

/// Routes a decoded request to its handler.
async fn dispatch(state: RestState, request: Request) -> Reply {
    if is_transit(&request.path) {
        // Heavy requests went to the blocking pool in `handle`.
        return transit::respond(&state, &request);
    }
    if request.path.starts_with("auth/token/") {
        return token::handle(&state, request).await;
    }
    sys::handle(&state, request).await
}

fn decode(
    method: &Method,
    path: String,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Request, Reply> {
    // Response wrapping is not implemented; silently ignoring the header would
    // hand a secret to a caller that expects a single-use wrapping token (§2.1).
    if headers
        .get("x-vault-wrap-ttl")
        .is_some_and(|v| !v.is_empty())
    {
        return Err(Reply::bad_request(
            "response wrapping (X-Vault-Wrap-TTL) is not supported by cipherd",
        ));
    }
    let token = token_from_headers(headers);
    let query_fields = parse_query(query.unwrap_or(""));
    let mut operation = match method.as_str() {
        "GET" => Operation::Read,
        "POST" | "PUT" => Operation::Update,
        "DELETE" => Operation::Delete,
        "LIST" => Operation::List,
        "HEAD" => Operation::Head,
        _ => return Err(Reply::unsupported_operation()),
    };
    if operation == Operation::Read {
        match Fields::new(&query_fields).bool("list") {
            Ok(Some(true)) => operation = Operation::List,
            Ok(_) => {}
            Err(_) => {
                return Err(Reply::errors(
                    axum::http::StatusCode::BAD_REQUEST,
                    Vec::new(),
                ));
            }
        }
    }
    let fields = match operation {
        Operation::Update => parse_body(headers, body)?,
        Operation::Read | Operation::Delete | Operation::List | Operation::Head => query_fields,
    };
    let path = path.trim_end_matches('/').to_owned();
    Ok(Request {
        operation,
        path,
        fields,
        token,
        audit: None,
    })
}

/// `X-Vault-Token` wins over `Authorization: Bearer` (reference §1.4).
fn token_from_headers(headers: &HeaderMap) -> Option<String> {
    if let Some(token) = headers.get("x-vault-token").and_then(|v| v.to_str().ok())
        && !token.is_empty()
    {
        return Some(token.to_owned());
    }
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

fn parse_query(query: &str) -> Map<String, Value> {
    let mut fields = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        fields.insert(percent_decode(key), Value::String(percent_decode(value)));
    }
    fields
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// JSON object bodies (empty = no fields); form bodies only when declared and
/// not JSON-looking (reference §1.3).
fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, Reply> {
    let trimmed = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&body[..0], |start| &body[start..]);
    if trimmed.is_empty() {
        return Ok(Map::new());
    }
    let is_form = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form && !matches!(trimmed[0], b'{' | b'[') {
        return Ok(parse_query(&String::from_utf8_lossy(trimmed)));
    }
    match serde_json::from_slice::<Value>(trimmed) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Array(_)) => Err(Reply::bad_request(
            "failed to decode JSON input: json: cannot unmarshal array into Go value of type map[string]interface {}",
        )),
        Ok(_) => Err(Reply::bad_request(
            "failed to decode JSON input: expected a JSON object",
        )),
        Err(error) => Err(Reply::bad_request(format!(
            "failed to decode JSON input: {error}"
        ))),
    }
}
