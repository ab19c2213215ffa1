//! Runs a cipherd server: opens storage, builds the service, binds the
//! listeners (REST, and gRPC unless disabled), starts the I/O runtimes that
//! serve the connections (`runtimes`: one per core by default), prints the
//! listen line, serves both until `shutdown` resolves, lets the requests in
//! flight finish, joins the runtime threads, then seals (flushing encryption
//! counters and zeroizing keys).
//!
//! `--dev` uses the in-memory store, initializes with one share, unseals
//! itself and prints the root token. Otherwise the server starts sealed (or
//! uninitialized) on the embedded store in the data directory.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt as _;

use crate::api::grpc;
use crate::api::rest::{self, Limits};
use crate::service::{Service, ServiceError, ServiceOptions};
use crate::storage::{MemoryStorage, RedbStorage, Storage, StorageError};

pub(crate) mod connections;
mod runtimes;

pub use runtimes::IoRuntimes;
use runtimes::Runtimes;

/// How often background housekeeping runs (counter flush, auto-rotation,
/// expired tokens).
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(10);

/// Validated server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// REST listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// gRPC listen address (port 0 picks a free port); `None` serves no gRPC.
    pub grpc_listen: Option<SocketAddr>,
    /// Embedded store directory (ignored with `dev`).
    pub data_dir: Option<PathBuf>,
    /// In-memory, auto-unsealed development server.
    pub dev: bool,
    /// Fixed root token for `--dev`.
    pub dev_root_token: Option<String>,
    /// File holding the master key for unattended unseal (see README warning).
    pub unseal_key_file: Option<PathBuf>,
    /// TLS certificate and key for both listeners (`None` = plain HTTP).
    pub tls: Option<crate::tls::TlsFiles>,
    /// REST limits.
    pub limits: Limits,
    /// Service tunables.
    pub service: ServiceOptions,
    /// Where connections are served: one runtime per core by default.
    pub io_runtimes: IoRuntimes,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Neither `--dev` nor `--data-dir` was given.
    #[error("either --dev or --data-dir is required")]
    NoStorage,
    /// The store could not be opened.
    #[error("cannot open storage: {0}")]
    Storage(#[from] StorageError),
    /// Init/unseal at start-up failed.
    #[error("{0}")]
    Service(#[from] ServiceError),
    /// Binding or serving failed.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The unseal key file is unreadable or malformed.
    #[error("unseal key file: {0}")]
    UnsealKeyFile(String),
}

/// Starts the server and serves until `shutdown` completes.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let storage: Arc<dyn Storage> = if config.dev {
        Arc::new(MemoryStorage::new())
    } else {
        let dir = config.data_dir.as_ref().ok_or(ServerError::NoStorage)?;
        std::fs::create_dir_all(dir)?;
        Arc::new(RedbStorage::open(dir)?)
    };
    let service = Arc::new(Service::new(storage, config.service.clone())?);
    if config.dev {
        start_dev(&service, config.dev_root_token.as_deref())?;
    } else if let Some(file) = &config.unseal_key_file {
        unseal_from_file(&service, file)?;
    }

    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let address = listener.local_addr()?;
    let grpc_listener = match config.grpc_listen {
        Some(grpc_address) => Some(tokio::net::TcpListener::bind(grpc_address).await?),
        None => None,
    };
    // Load TLS before announcing anything, so a bad certificate fails start-up.
    let acceptor = config
        .tls
        .as_ref()
        .map(crate::tls::TlsFiles::acceptor)
        .transpose()?;
    let grpc_tls = config
        .tls
        .as_ref()
        .map(crate::tls::TlsFiles::grpc_acceptor)
        .transpose()?;
    let grpc_server = match &grpc_listener {
        Some(_) => Some(grpc::GrpcServer::new(service.clone()).await?),
        None => None,
    };
    let runtimes = Runtimes::start(config.io_runtimes)?;

    let housekeeping = {
        let service = service.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                let service = service.clone();
                let _ = tokio::task::spawn_blocking(move || service.housekeeping()).await;
            }
        })
    };
    // One shutdown signal, heard by the acceptors and every server; a server
    // that fails raises it too, so that the others stop.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop = Arc::new(stop);
    let signal = {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            stop.send_replace(true);
        })
    };
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };

    // Every runtime serves the connections handed to it, on both listeners.
    let count = runtimes.handles().len();
    let mut servers = tokio::task::JoinSet::new();
    let mut acceptors = tokio::task::JoinSet::new();
    let app = rest::router(service.clone(), config.limits);
    let builder = rest_builder(config.limits);
    let (outlets, incomings) = runtimes::channels(count);
    for (handle, incoming) in runtimes.handles().iter().zip(incomings) {
        let (app, builder) = (app.clone(), builder.clone());
        let served = connections::serve(
            incoming,
            acceptor.clone(),
            until_stopped(stopped.clone()),
            move |stream, remote, watcher| {
                serve_rest_connection(builder.clone(), stream, remote, app.clone(), watcher)
            },
        );
        servers.spawn_on(served, handle);
    }
    acceptors.spawn(runtimes::accept(listener, outlets, stopped.clone()));
    let mut health = None;
    if let (Some(grpc_listener), Some((grpc_server, watch))) = (grpc_listener, grpc_server) {
        let grpc_address = grpc_listener.local_addr()?;
        let (outlets, incomings) = runtimes::channels(count);
        for (handle, incoming) in runtimes.handles().iter().zip(incomings) {
            let grpc_server = grpc_server.clone();
            let served = connections::serve(
                incoming,
                grpc_tls.clone(),
                until_stopped(stopped.clone()),
                move |stream, remote, watcher| {
                    grpc_server
                        .clone()
                        .serve_connection(stream, remote, watcher)
                },
            );
            servers.spawn_on(served, handle);
        }
        acceptors.spawn(runtimes::accept(grpc_listener, outlets, stopped.clone()));
        health = Some((tokio::spawn(watch.run()), grpc_address));
    }

    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // Scripts and tests find the server by this line: `rest=` first, then
    // `grpc=` when gRPC is served.
    match &health {
        Some((_, grpc_address)) => {
            println!("cipherd listening rest={scheme}://{address} grpc={scheme}://{grpc_address}");
        }
        None => println!("cipherd listening rest={scheme}://{address}"),
    }

    // The servers end once stopped and drained. One that panicked stops the
    // others; the first such error is the one reported.
    let mut served = Ok(());
    while let Some(joined) = servers.join_next().await {
        if let Err(error) = joined {
            stop.send_replace(true);
            if served.is_ok() {
                served = Err(std::io::Error::other(error));
            }
        }
    }
    acceptors.shutdown().await;
    signal.abort();
    if let Some((health, _)) = health {
        health.abort();
    }
    let joined = runtimes.stop().await;
    housekeeping.abort();
    service.seal_now();
    served?;
    joined?;
    Ok(())
}

/// hyper's server for REST: HTTP/1.1, and HTTP/2 where TLS ALPN picks it (or
/// a client speaks it with prior knowledge), with the request head bounded by
/// [`Limits::header_buffer_bytes`], which `axum::serve` does not expose.
fn rest_builder(limits: Limits) -> auto::Builder<TokioExecutor> {
    let cap = limits.header_buffer_bytes();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).max_buf_size(cap);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(cap).unwrap_or(u32::MAX));
    builder
}

/// Serves the REST router on one connection (plain TCP or TLS) until the
/// client closes it, or until shutdown and its requests in flight are
/// answered. Every request carries the client address as
/// `ConnectInfo<RemoteAddr>` for the audit log.
async fn serve_rest_connection(
    builder: auto::Builder<TokioExecutor>,
    stream: connections::Stream,
    remote: SocketAddr,
    app: axum::Router,
    watcher: Watcher,
) {
    let info = axum::extract::ConnectInfo(crate::tls::RemoteAddr(remote));
    let service = app.map_request(
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(info);
            request
        },
    );
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%error, %remote, "REST connection ended with an error");
    }
}

fn start_dev(service: &Service, root_token: Option<&str>) -> Result<(), ServerError> {
    let init = service.init(1, 1, root_token)?;
    let key = init
        .shares
        .first()
        .ok_or_else(|| ServerError::UnsealKeyFile("init returned no share".into()))?;
    service.unseal_with_master_key(key.expose_secret())?;
    let token = init.root_token.token.expose_secret().to_owned();
    println!("WARNING: dev mode: in-memory storage, already unsealed; nothing survives a restart.");
    println!("Unseal Key: {}", STANDARD.encode(key.expose_secret()));
    println!("Root Token: {token}");
    Ok(())
}

/// Submits the unseal shares in `file` (one per line, hex or base64) until the
/// server is unsealed.
fn unseal_from_file(service: &Service, file: &PathBuf) -> Result<(), ServerError> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(file).map_err(|e| ServerError::UnsealKeyFile(e.to_string()))?,
    );
    if !service.seal_status().initialized {
        tracing::warn!(
            "--unseal-key-file given but the server is not initialized yet; ignoring it"
        );
        return Ok(());
    }
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let share = crate::seal::parse_share(line)
            .map_err(|e| ServerError::UnsealKeyFile(e.to_string()))?;
        if !service.unseal(share.expose_secret())?.sealed {
            tracing::warn!(
                "unsealed from --unseal-key-file: anyone who can read that file can read every key"
            );
            return Ok(());
        }
    }
    Err(ServerError::UnsealKeyFile(
        "the file holds fewer shares than the unseal threshold".into(),
    ))
}
