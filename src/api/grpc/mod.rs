//! The gRPC adapter (tonic): the `cipherd.v1.Transit` and `cipherd.v1.Sys`
//! services of `proto/cipherd/v1/`, standard health checking
//! (`grpc.health.v1.Health`) and server reflection.
//!
//! Like the REST adapter it only translates: a message is decoded into the
//! engine's request types, authorized and run through
//! [`Service::transit`](crate::service::Service::transit) as the equivalent
//! REST path and capability, and the result encoded back. No operation is
//! implemented here, and errors become statuses in one place,
//! [`grpc_status`](crate::api::error::grpc_status).
//!
//! Layout: `transit` (unary RPCs), `keys` (key management and the `Key`
//! message), `batch` (batch RPCs and the `Bulk` stream), `sys` (seal
//! lifecycle), `health` (serving status that follows the seal), `conn` (the
//! HTTP/2 connections), `fast` (the framing of unary Transit calls, ahead of
//! tonic's generic server).
//!
//! It does not bind sockets of its own choosing, parse configuration, or keep
//! any state beyond the health reporter: [`serve`] is handed a bound listener,
//! [`GrpcServer::serve_connection`] a connection someone else accepted (and
//! whose TLS handshake they ran: the server's accept loop,
//! `server::connections`, is shared with REST).

mod audit_json;
mod batch;
mod conn;
mod fast;
mod health;
mod keys;
mod sys;
mod transit;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::server::graceful::Watcher;
use tokio::net::TcpListener;
use tonic::metadata::MetadataMap;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use crate::api::error::grpc_status;
use crate::audit::{Frame, RequestView, ResponseView};
use crate::auth::Capability;
use crate::engine::{Engine, EngineError, validate_key_name};
use crate::service::{Mount, RequestContext, Service, ServiceError, TransitOp, Transport};

pub use health::HealthWatch;

/// The generated protobuf messages, clients and servers of `cipherd.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("cipherd.v1");

    /// The encoded file descriptor set of `cipherd.v1`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("cipherd_descriptor");

    /// `Debug` that names the type and nothing else, for the messages that
    /// carry plaintexts, inputs, data keys, unseal shares or tokens (build.rs
    /// keeps prost from deriving one for them).
    macro_rules! redacted_debug {
        ($($ty:ty),* $(,)?) => {$(
            impl std::fmt::Debug for $ty {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.debug_struct(stringify!($ty)).finish_non_exhaustive()
                }
            }
        )*};
    }

    redacted_debug!(
        EncryptRequest,
        DecryptResponse,
        DatakeyResponse,
        SignRequest,
        VerifyRequest,
        HmacRequest,
        VerifyHmacRequest,
        HashRequest,
        RandomResponse,
        EncryptItem,
        PlaintextResult,
        plaintext_result::Result,
        SignItem,
        VerifyItem,
        HmacItem,
        BulkItem,
        BulkResult,
        bulk_result::Result,
        InitResponse,
        UnsealRequest,
    );
}

/// The name of the mount used when a request leaves `mount` empty.
pub const DEFAULT_MOUNT: &str = "transit";

/// Largest message accepted or sent (a batch of 100,000 small items fits).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Every gRPC service over `service` as tonic routes (Transit, Sys, health
/// and reflection), and the Transit service they hold, for the unary fast
/// path. The returned [`HealthWatch`] keeps the health status in step with
/// the seal; run [`HealthWatch::run`] beside the server.
fn services(
    service: Arc<Service>,
) -> Result<(Routes, transit::TransitApi, HealthWatch), std::io::Error> {
    let (reporter, health_server) = tonic_health::server::health_reporter();
    let health = HealthWatch::new(service.clone(), reporter);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(std::io::Error::other)?;
    let api = transit::TransitApi::new(service.clone());
    let transit = pb::transit_server::TransitServer::new(api.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let sys = pb::sys_server::SysServer::new(sys::SysApi::new(service, health.clone()));
    let routes = Routes::new(transit)
        .add_service(sys)
        .add_service(health_server)
        .add_service(reflection);
    Ok((routes, api, health))
}

/// Serves the gRPC services on `listener` until `shutdown` completes, then
/// lets the open connections finish their calls.
pub async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), std::io::Error> {
    let (server, health) = GrpcServer::new(service).await?;
    let watch = tokio::spawn(health.run());
    crate::server::connections::serve(listener, None, shutdown, move |stream, remote, watcher| {
        server.clone().serve_connection(stream, remote, watcher)
    })
    .await;
    watch.abort();
    Ok(())
}

/// The gRPC services, ready to serve connections on any number of runtimes:
/// each runtime serves its own connections with a clone (the services share
/// the [`Service`] and the health status).
#[derive(Clone, Debug)]
pub struct GrpcServer {
    services: Arc<conn::Services>,
}

impl GrpcServer {
    /// Builds the services. Run the returned [`HealthWatch`] beside the
    /// servers (once, on any runtime).
    pub async fn new(service: Arc<Service>) -> Result<(Self, HealthWatch), std::io::Error> {
        let (routes, transit, health) = services(service)?;
        health.refresh().await;
        let services = Arc::new(conn::Services {
            transit,
            routes: routes.prepare(),
        });
        Ok((Self { services }, health))
    }

    /// Serves one accepted connection (plain TCP, or TLS whose ALPN picked
    /// `h2`: see [`TlsFiles::grpc_acceptor`](crate::tls::TlsFiles::grpc_acceptor))
    /// until the client closes it, or until `watcher` signals shutdown and
    /// its calls in flight are answered.
    pub async fn serve_connection<IO>(self, io: IO, remote: SocketAddr, watcher: Watcher)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        conn::serve_connection(io, self.services, remote, watcher).await;
    }
}

/// The caller's token: metadata `x-vault-token`, else `authorization: Bearer`.
fn token(metadata: &MetadataMap) -> Option<&str> {
    if let Some(token) = metadata.get("x-vault-token").and_then(|v| v.to_str().ok()) {
        return Some(token);
    }
    let authorization = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Who is calling: the token, and the request's audit frame when auditing.
#[derive(Debug, Clone, Copy)]
pub(super) struct Caller<'a> {
    token: Option<&'a str>,
    audit: Option<&'a Frame>,
}

impl<'a> Caller<'a> {
    fn context(self) -> RequestContext<'a> {
        RequestContext {
            token: self.token,
            transport: Transport::Grpc,
            audit: self.audit,
        }
    }
}

/// A synchronous handler: the service, the caller and the message.
type Handler<Req, Resp> = fn(&Service, Caller<'_>, Req) -> Result<Resp, Status>;

/// Opens the audit frame of a call (when auditing), rendering the message
/// through its descriptor so the log shows the same fields as the proto.
fn audit_frame<Req: prost::Name + prost::Message>(
    service: &Service,
    token: Option<&str>,
    remote: Option<std::net::SocketAddr>,
    message: &Req,
) -> Option<Arc<Frame>> {
    service.audit_frame(
        token,
        || RequestView {
            id: String::new(),
            operation: "update",
            path: String::new(),
            remote,
            transport: Transport::Grpc.name(),
        },
        Some(&audit_json::ProtoData::request(message)),
    )
}

/// Writes the response entry of an audited call; an answer no device could
/// record is replaced by the failure (fail closed).
async fn audit_finish<Resp: prost::Name + prost::Message>(
    service: &Service,
    frame: Option<Arc<Frame>>,
    result: Result<Resp, Status>,
) -> Result<Resp, Status> {
    let Some(frame) = frame else {
        return result;
    };
    let data = result.as_ref().ok().map(audit_json::ProtoData::response);
    let written = service
        .audit_finish(&frame, response_view(&result, data.as_ref()))
        .await;
    fail_closed(result, written)
}

/// [`audit_finish`] on a thread that may block (the blocking pool).
fn audit_finish_blocking<Resp: prost::Name + prost::Message>(
    service: &Service,
    frame: Option<&Frame>,
    result: Result<Resp, Status>,
) -> Result<Resp, Status> {
    let Some(frame) = frame else {
        return result;
    };
    let data = result.as_ref().ok().map(audit_json::ProtoData::response);
    let written = service.audit_finish_blocking(frame, response_view(&result, data.as_ref()));
    fail_closed(result, written)
}

/// What the log records of a call's outcome: the answer's message
/// (rendered through `data`), or the status as the equivalent REST reply.
fn response_view<'a, Resp: prost::Name + prost::Message>(
    result: &'a Result<Resp, Status>,
    data: Option<&'a audit_json::ProtoData<'a, Resp>>,
) -> ResponseView<'a> {
    match result {
        Ok(_) => ResponseView {
            status: 200,
            data: data.map(|data| data as &dyn crate::audit::AuditData),
            ..ResponseView::default()
        },
        Err(status) => ResponseView {
            status: audit_json::http_status(status.code()),
            error: Some(status.message().to_owned()),
            ..ResponseView::default()
        },
    }
}

/// The call's result, unless its audit entries could not be written.
fn fail_closed<Resp>(
    result: Result<Resp, Status>,
    written: Result<(), ServiceError>,
) -> Result<Resp, Status> {
    match written {
        Ok(()) => result,
        Err(error) => Err(grpc_status(&error)),
    }
}

/// Runs `handler` on the calling task (for requests that take microseconds).
async fn inline<Req, Resp>(
    service: &Service,
    request: Request<Req>,
    handler: Handler<Req, Resp>,
) -> Result<Response<Resp>, Status>
where
    Req: prost::Name + prost::Message,
    Resp: prost::Name + prost::Message,
{
    let remote = request.remote_addr();
    // The token is read in place: no copy per call.
    let (metadata, _, message) = request.into_parts();
    let token = token(&metadata);
    let frame = audit_frame(service, token, remote, &message);
    let caller = Caller {
        token,
        audit: frame.as_deref(),
    };
    let result = handler(service, caller, message);
    audit_finish(service, frame, result)
        .await
        .map(Response::new)
}

/// Runs `handler` on the blocking pool: batches (which use every core), key
/// generation (RSA takes up to seconds) and anything else that may block.
async fn blocking<Req, Resp>(
    service: &Arc<Service>,
    request: Request<Req>,
    handler: Handler<Req, Resp>,
) -> Result<Response<Resp>, Status>
where
    Req: prost::Name + prost::Message + Send + 'static,
    Resp: prost::Name + prost::Message + Send + 'static,
{
    let token = token(request.metadata()).map(str::to_owned);
    let remote = request.remote_addr();
    run_blocking(service, token, remote, request.into_inner(), handler)
        .await
        .map(Response::new)
}

/// Audits and runs one message through `handler` on the blocking pool (a
/// unary call, or one batch of the `Bulk` stream).
async fn run_blocking<Req, Resp>(
    service: &Arc<Service>,
    token: Option<String>,
    remote: Option<std::net::SocketAddr>,
    message: Req,
    handler: Handler<Req, Resp>,
) -> Result<Resp, Status>
where
    Req: prost::Name + prost::Message + Send + 'static,
    Resp: prost::Name + prost::Message + Send + 'static,
{
    // The whole call, auditing included, runs on the blocking pool (see
    // `Service::audit_finish_blocking`), and every batch of a connection
    // would otherwise queue on its one runtime.
    let service = service.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let frame = audit_frame(&service, token.as_deref(), remote, &message);
        let caller = Caller {
            token: token.as_deref(),
            audit: frame.as_deref(),
        };
        // A handler that panicked still gets its response entry, as an
        // internal error: the frame must not be dropped unrecorded.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler(&service, caller, message)
        }))
        .unwrap_or_else(|_| {
            tracing::error!("gRPC handler panicked");
            Err(Status::internal("internal error"))
        });
        audit_finish_blocking(&service, frame.as_deref(), result)
    })
    .await;
    match outcome {
        Ok(result) => result,
        Err(error) => {
            tracing::error!(%error, "gRPC handler task failed");
            Err(Status::internal("internal error"))
        }
    }
}

/// Authorizes `op` on `mount` (empty = [`DEFAULT_MOUNT`]) and runs `run` on
/// the mount's engine. Failures of the request itself come back from `run` as
/// statuses; everything else is mapped by [`grpc_status`].
fn run<T>(
    service: &Service,
    caller: Caller<'_>,
    mount: &str,
    op: TransitOp<'_>,
    run: impl FnOnce(&Engine) -> Result<T, Status>,
) -> Result<T, Status> {
    if let Some(key) = op.key() {
        check_key_name(key)?;
    }
    let ctx = caller.context();
    let mount = resolve_mount(service, &ctx, mount, op).map_err(|e| grpc_status(&e))?;
    match service.transit(&ctx, &mount, op, None, |engine| Ok(run(engine))) {
        Ok(outcome) => outcome,
        Err(error) => Err(grpc_status(&error)),
    }
}

/// Key names as the REST paths allow them: a name with `/` would be checked
/// against another path than the key it names.
fn check_key_name(key: &str) -> Result<(), Status> {
    if key.is_empty() {
        return Err(Status::invalid_argument("missing key name"));
    }
    validate_key_name(key).map_err(engine_status)
}

/// The transit mount called `name`. As over REST, a caller that may not use
/// the path learns nothing about the mount table: it gets the denial, not
/// `NOT_FOUND`.
fn resolve_mount(
    service: &Service,
    ctx: &RequestContext<'_>,
    name: &str,
    op: TransitOp<'_>,
) -> Result<Arc<Mount>, ServiceError> {
    let name = match name.trim_matches('/') {
        "" => DEFAULT_MOUNT,
        trimmed => trimmed,
    };
    // Mounts do not nest, so the mount serving `<name>/<op path>` is the one
    // at `<name>/` if there is one: look it up without building the path.
    match service.route(name) {
        Ok((mount, _)) if mount.info.path.trim_end_matches('/') == name => Ok(mount),
        Ok(_) | Err(ServiceError::NoSuchMount { .. }) => {
            let path = format!("{name}/{}", op.canonical_path());
            let any = [
                Capability::Create,
                Capability::Read,
                Capability::Update,
                Capability::Delete,
                Capability::List,
            ];
            service.authorize(ctx, &path, &any)?;
            Err(ServiceError::NoSuchMount { path })
        }
        Err(error) => Err(error),
    }
}

/// The status of an engine failure inside a handler.
fn engine_status(error: EngineError) -> Status {
    grpc_status(&ServiceError::Engine(error))
}

/// `None` for an empty byte field (proto3 has no "absent" for bytes).
fn optional(bytes: &[u8]) -> Option<&[u8]> {
    (!bytes.is_empty()).then_some(bytes)
}

/// `None` for version 0 ("latest").
fn version(number: u32) -> Option<u32> {
    (number != 0).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_either_header() {
        let mut metadata = MetadataMap::new();
        assert_eq!(token(&metadata), None);
        metadata.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(token(&metadata), Some("abc"));
        metadata.insert("x-vault-token", "xyz".parse().unwrap());
        assert_eq!(token(&metadata), Some("xyz"));
        let mut basic = MetadataMap::new();
        basic.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(token(&basic), None);
    }
}
