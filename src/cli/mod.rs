//! The command line: `server`, `operator`, key and crypto commands for scripts,
//! `token` and `policy`, the bulk `rewrap` job. Client commands talk to a
//! server over its REST API and read `CIPHERD_ADDR`/`VAULT_ADDR` and
//! `CIPHERD_TOKEN`/`VAULT_TOKEN`; the bulk rewrap job uses the gRPC API at
//! `--grpc-addr` (`CIPHERD_GRPC_ADDR`, default `http://127.0.0.1:8250`).

mod audit;
mod bench;
mod client;
mod commands;
mod rewrap;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::api::rest::Limits;
use crate::engine::EngineOptions;
use crate::server::{self, IoRuntimes, ServerConfig};
use crate::service::ServiceOptions;

/// cipherd: encryption as a service, compatible with Vault's Transit engine.
#[derive(Debug, Parser)]
#[command(name = "cipherd", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a server.
    Server(ServerArgs),
    /// Initialize, unseal, seal, and inspect a server.
    #[command(subcommand)]
    Operator(commands::OperatorCommand),
    /// Manage keys.
    #[command(subcommand)]
    Key(commands::KeyCommand),
    /// Encrypt a plaintext with a key.
    Encrypt(commands::EncryptArgs),
    /// Decrypt a ciphertext.
    Decrypt(commands::DecryptArgs),
    /// Move a ciphertext to the key's latest version; or, with --postgres or
    /// --input, every ciphertext of a table column or a file (resumable).
    Rewrap(commands::RewrapArgs),
    /// Sign an input.
    Sign(commands::SignArgs),
    /// Verify a signature.
    Verify(commands::VerifyArgs),
    /// Manage tokens.
    #[command(subcommand)]
    Token(commands::TokenCommand),
    /// Manage ACL policies.
    #[command(subcommand)]
    Policy(commands::PolicyCommand),
    /// Load-test a local server's gRPC (and optionally REST) encrypt paths.
    Bench(bench::BenchArgs),
    /// Verify audit logs offline, and report key usage from them.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

/// Flags of `cipherd server`.
#[derive(Debug, Args)]
struct ServerArgs {
    /// In-memory storage, initialized and unsealed at start; prints the root token.
    #[arg(long)]
    dev: bool,
    /// Root token to use in dev mode (default: random).
    #[arg(long, env = "CIPHERD_DEV_ROOT_TOKEN")]
    dev_root_token: Option<String>,
    /// Directory of the embedded store.
    #[arg(long, env = "CIPHERD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// REST listen address; port 0 picks a free port.
    #[arg(long, env = "CIPHERD_LISTEN", default_value = "127.0.0.1:8200")]
    listen: SocketAddr,
    /// gRPC listen address; port 0 picks a free port.
    #[arg(long, env = "CIPHERD_GRPC_LISTEN", default_value = "127.0.0.1:8250")]
    grpc_listen: SocketAddr,
    /// File of unseal shares (one per line) for unattended restarts. Anyone who
    /// can read it can read every key: see the README before using it.
    #[arg(long, env = "CIPHERD_UNSEAL_KEY_FILE")]
    unseal_key_file: Option<PathBuf>,
    /// PEM certificate chain: serve REST and gRPC over TLS (with --tls-key).
    #[arg(long, env = "CIPHERD_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "CIPHERD_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Largest request head (request line and headers) in bytes; larger ones
    /// get 431. The default is OpenBao's (Go's 1 MiB).
    #[arg(long, default_value_t = Limits::default().max_header_bytes)]
    max_header_bytes: usize,
    /// Largest batch_input accepted.
    #[arg(long, default_value_t = EngineOptions::default().max_batch_items)]
    max_batch_items: usize,
    /// Enable a `file` audit device at `file/` writing to this path (like an
    /// `audit "file"` stanza in Vault's config; kept across restarts).
    #[arg(long, env = "CIPHERD_AUDIT_FILE")]
    audit_file: Option<PathBuf>,
    /// Enable a `stdout` audit device at `stdout/`.
    #[arg(long)]
    audit_stdout: bool,
    /// Options for the --audit-file device, `name=value` (fsync=always,
    /// batch_window=200us, rotate_bytes=104857600, ...); repeatable.
    #[arg(long = "audit-option", value_name = "NAME=VALUE")]
    audit_options: Vec<String>,
    /// Threads serving connections, each with a runtime of its own that serves
    /// its connections wholly (accepted connections are dealt out in turn);
    /// 0: one per core.
    #[arg(long, env = "CIPHERD_IO_THREADS", default_value_t = 0)]
    io_threads: usize,
    /// Serve every connection on one shared multi-thread runtime instead (as
    /// before --io-threads; its size follows TOKIO_WORKER_THREADS).
    #[arg(long, conflicts_with = "io_threads")]
    shared_runtime: bool,
}

/// The devices the `--audit-*` flags declare.
fn declared_audit_devices(args: &ServerArgs) -> anyhow::Result<Vec<crate::audit::DeviceSpec>> {
    let mut devices = Vec::new();
    if let Some(path) = &args.audit_file {
        let path = std::path::absolute(path)?;
        let mut options = std::collections::BTreeMap::new();
        options.insert("file_path".to_owned(), path.display().to_string());
        for option in &args.audit_options {
            let (name, value) = option.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("--audit-option takes name=value, got {option:?}")
            })?;
            options.insert(name.to_owned(), value.to_owned());
        }
        devices.push(crate::audit::DeviceSpec {
            path: "file".into(),
            kind: "file".into(),
            description: "declared by --audit-file".into(),
            options,
            local: false,
        });
    } else if !args.audit_options.is_empty() {
        anyhow::bail!("--audit-option needs --audit-file");
    }
    if args.audit_stdout {
        devices.push(crate::audit::DeviceSpec {
            path: "stdout".into(),
            kind: "stdout".into(),
            description: "declared by --audit-stdout".into(),
            options: std::collections::BTreeMap::new(),
            local: false,
        });
    }
    Ok(devices)
}

/// Entry point of the binary.
pub fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CIPHERD_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Vault's CLI spells output flags with one dash (`-format=json`); accept that too.
    let args = std::env::args().map(|a| {
        if a.starts_with("-format") {
            format!("-{a}")
        } else {
            a
        }
    });
    let cli = Cli::parse_from(args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Server(args) => runtime.block_on(run_server(args)),
        Command::Operator(cmd) => runtime.block_on(commands::operator(cmd)),
        Command::Key(cmd) => runtime.block_on(commands::key(cmd)),
        Command::Encrypt(args) => runtime.block_on(commands::encrypt(args)),
        Command::Decrypt(args) => runtime.block_on(commands::decrypt(args)),
        Command::Rewrap(args) => runtime.block_on(commands::rewrap(args)),
        Command::Sign(args) => runtime.block_on(commands::sign(args)),
        Command::Verify(args) => runtime.block_on(commands::verify(args)),
        Command::Token(cmd) => runtime.block_on(commands::token(cmd)),
        Command::Policy(cmd) => runtime.block_on(commands::policy(cmd)),
        Command::Bench(args) => runtime.block_on(bench::run(args)),
        Command::Audit(cmd) => runtime.block_on(audit::run(cmd)),
    }
}

async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let audit_devices = declared_audit_devices(&args)?;
    let config = ServerConfig {
        listen: args.listen,
        grpc_listen: Some(args.grpc_listen),
        data_dir: args.data_dir,
        dev: args.dev,
        dev_root_token: args.dev_root_token,
        unseal_key_file: args.unseal_key_file,
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles { cert, key }),
            (None, None) => None,
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        },
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_header_bytes: match args.max_header_bytes {
                bytes if bytes < Limits::MIN_HEADER_BYTES => anyhow::bail!(
                    "--max-header-bytes must be at least {}",
                    Limits::MIN_HEADER_BYTES
                ),
                bytes => bytes,
            },
        },
        service: ServiceOptions {
            engine: EngineOptions {
                max_batch_items: args.max_batch_items,
                ..EngineOptions::default()
            },
            audit_devices,
        },
        io_runtimes: if args.shared_runtime {
            IoRuntimes::Shared
        } else {
            IoRuntimes::PerCore(args.io_threads)
        },
    };
    server::run(config, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
