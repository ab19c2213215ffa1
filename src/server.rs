//! Runs a cipherd server: opens storage, builds the service, binds the
//! listeners (REST, and gRPC unless disabled), prints the listen line, serves
//! both until `shutdown` resolves, then seals (flushing encryption counters and
//! zeroizing keys).
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

use crate::api::grpc;
use crate::api::rest::{self, Limits};
use crate::service::{Service, ServiceError, ServiceOptions};
use crate::storage::{MemoryStorage, RedbStorage, Storage, StorageError};

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
        .map(crate::tls::TlsFiles::read_pem)
        .transpose()?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // Scripts and tests find the server by this line: `rest=` first, then
    // `grpc=` when gRPC is served.
    match &grpc_listener {
        Some(grpc_listener) => {
            let grpc_address = grpc_listener.local_addr()?;
            println!("cipherd listening rest={scheme}://{address} grpc={scheme}://{grpc_address}");
        }
        None => println!("cipherd listening rest={scheme}://{address}"),
    }

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
    // One shutdown signal, heard by both servers.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let app = rest::router(service.clone(), config.limits);
    let rest_stopped = until_stopped(stopped.clone());
    let rest_served = async {
        match acceptor {
            Some(acceptor) => {
                let listener = crate::tls::TlsListener::new(listener, acceptor)?;
                serve_rest(listener, app, config.limits, rest_stopped).await
            }
            None => {
                use axum::serve::ListenerExt as _;
                // Small replies must not wait for Nagle's algorithm (the TLS
                // listener sets this on its own connections).
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                serve_rest(listener, app, config.limits, rest_stopped).await
            }
        }
    };
    let grpc_served = async {
        match grpc_listener {
            Some(grpc_listener) => {
                grpc::serve_with_tls(
                    grpc_listener,
                    service.clone(),
                    grpc_tls,
                    until_stopped(stopped.clone()),
                )
                .await
            }
            None => Ok(()),
        }
    };
    // The first server to fail stops the other (its future is dropped).
    let served = tokio::try_join!(rest_served, grpc_served);
    housekeeping.abort();
    service.seal_now();
    served?;
    Ok(())
}

/// Serves the REST router on `listener` (HTTP/1.1, and HTTP/2 where TLS ALPN
/// picks it) until `shutdown` completes, then lets the open connections
/// finish their requests. This is `axum::serve` with the request head bounded
/// by [`Limits::header_buffer_bytes`], which axum does not expose; every
/// request carries the client address as `ConnectInfo<RemoteAddr>` for the
/// audit log.
async fn serve_rest<L>(
    mut listener: L,
    app: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), std::io::Error>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt as _;

    let cap = limits.header_buffer_bytes();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).max_buf_size(cap);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(cap).unwrap_or(u32::MAX));
    // Each connection task holds a `closed` receiver and watches `signal`:
    // when shutdown comes, every connection finishes its requests in flight,
    // and the sender's `closed()` resolves once the last task is gone.
    let (signal, signalled) = tokio::sync::watch::channel(());
    let (close, closed) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, remote) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let info = axum::extract::ConnectInfo(crate::tls::RemoteAddr(remote));
        let service = app.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(info);
                request
            },
        );
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service))
            .into_owned();
        let mut signalled = signalled.clone();
        let closed = closed.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = signalled.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%error, %remote, "REST connection ended with an error");
            }
            drop(closed);
        });
    }
    // Stop accepting, then wait for the requests in flight.
    drop(listener);
    let _ = signal.send(());
    drop(closed);
    close.closed().await;
    Ok(())
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
