//! `cipherd rewrap` in bulk mode and `cipherd key versions-in-use`: move every
//! ciphertext stored in a PostgreSQL column or a JSON-lines/CSV file to a key
//! version (default: the latest), over the gRPC `Bulk` stream, resumably.
//!
//! Layout: [`bulk`] (the gRPC stream with its window and rate limit),
//! [`source_pg`] (reading pages and writing batches of a table),
//! [`source_file`] (reading and writing records of a file), [`stop`] (what a
//! signal does), [`job`] (a job
//! from flags to summary), [`job_pg`] and [`job_file`] (the pipelines that
//! connect a source, the stream and a sink), [`scan`] (dry runs and
//! `versions-in-use`), [`checkpoint`], [`progress`] and [`report`].
//!
//! What it guarantees: a value is written only with a ciphertext the server
//! returned for it, and (PostgreSQL) only if the row still holds the value
//! that was read; values already at the target version are not sent; values
//! that fail are reported and left as they were. It does not hold a
//! plaintext: the server rewraps without returning one. Derived keys (which
//! need a per-value context) are refused.

mod bulk;
mod checkpoint;
mod job;
mod job_file;
mod job_pg;
mod progress;
mod report;
mod scan;
mod source_file;
mod source_pg;
mod stop;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::crypto::format::Versioned;
use report::Bucket;

/// Default gRPC address of the server (the server's default `--grpc-listen`).
const DEFAULT_GRPC_ADDR: &str = "http://127.0.0.1:8250";

/// Where the values are: a PostgreSQL column or a file. Shared by `rewrap`
/// and `key versions-in-use`.
#[derive(Args, Clone, Default)]
pub struct SourceArgs {
    /// PostgreSQL connection URL (postgres://user@127.0.0.1/db); the table's
    /// column is updated in place.
    #[arg(long)]
    postgres: Option<String>,
    /// Table (optionally schema.table) holding the ciphertexts.
    #[arg(long, requires = "postgres")]
    table: Option<String>,
    /// Column holding the ciphertexts (text or varchar).
    #[arg(long, requires = "postgres")]
    column: Option<String>,
    /// Unique column that orders the rows (usually the primary key).
    #[arg(long, requires = "postgres")]
    key_column: Option<String>,
    /// Extra SQL condition selecting the rows to visit (trusted: it is
    /// pasted into the query as written).
    #[arg(long = "where", requires = "postgres")]
    where_sql: Option<String>,
    /// Input file: JSON lines (one object per line) or CSV with a header.
    #[arg(long, conflicts_with = "postgres")]
    input: Option<PathBuf>,
    /// Output file for `rewrap` (every input record, in order, rewrapped
    /// where possible).
    #[arg(long, requires = "input")]
    output: Option<PathBuf>,
    /// The JSON field or CSV column holding the ciphertexts.
    #[arg(long, requires = "input")]
    field: Option<String>,
    /// File format; by default from the input's extension (.csv is CSV,
    /// anything else JSON lines).
    #[arg(long, value_enum, requires = "input")]
    file_format: Option<FileFormat>,
}

// The PostgreSQL URL may carry a password: never print it.
impl std::fmt::Debug for SourceArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceArgs")
            .field("postgres", &self.postgres.as_ref().map(|_| "[redacted]"))
            .field("table", &self.table)
            .field("column", &self.column)
            .field("key_column", &self.key_column)
            .field("input", &self.input)
            .field("output", &self.output)
            .field("field", &self.field)
            .finish_non_exhaustive()
    }
}

impl SourceArgs {
    /// Whether a bulk source was named at all.
    pub fn is_given(&self) -> bool {
        self.postgres.is_some() || self.input.is_some()
    }
}

/// A file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

/// The flags of bulk `cipherd rewrap`.
#[derive(Debug, Args, Clone, Default)]
pub struct JobArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Key name (instead of the positional KEY).
    #[arg(long = "key", id = "key_flag", value_name = "NAME")]
    key: Option<String>,
    /// gRPC address of the server.
    #[arg(long, env = "CIPHERD_GRPC_ADDR", default_value = DEFAULT_GRPC_ADDR)]
    grpc_addr: String,
    /// Values per Bulk batch (and per database transaction).
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Batches in flight on the stream; also the number of database writers.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// At most this many values per second go to the server.
    #[arg(long)]
    rate: Option<u64>,
    /// Rewrap to this version (default: the key's latest). Values at or past
    /// it are skipped.
    #[arg(long)]
    target_version: Option<u32>,
    /// Checkpoint file (default: .cipherd-rewrap-<job id>.json in the
    /// current directory).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Continue from the checkpoint of an interrupted run.
    #[arg(long)]
    resume: bool,
    /// Count what would change, by version; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    report_json: Option<PathBuf>,
    /// Seconds between progress lines when stderr is not a terminal.
    #[arg(long, default_value_t = 5.0)]
    log_interval: f64,
}

impl JobArgs {
    /// Whether the command line asks for bulk mode.
    pub fn is_bulk(&self) -> bool {
        self.source.is_given()
    }
}

/// Why a job stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RewrapError {
    /// The server answered a call with an error status.
    #[error("{during}: {}", .status.message())]
    Server {
        /// What the job was doing.
        during: &'static str,
        /// The status.
        status: tonic::Status,
    },
    /// The checkpoint file cannot be used.
    #[error("checkpoint {}: {why}", .path.display())]
    BadCheckpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: &'static str,
    },
    /// A checkpoint exists but `--resume` was not given.
    #[error(
        "checkpoint {} exists from an earlier run: pass --resume to continue it, or delete it to start over",
        .path.display()
    )]
    CheckpointExists {
        /// The file.
        path: PathBuf,
    },
    /// The gRPC server could not be reached.
    #[error("cannot reach {address}: {source}")]
    Connect {
        /// The address.
        address: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// A CSV file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// Why.
        source: csv::Error,
    },
    /// Some values could not be rewrapped (the job ran to the end).
    #[error("{count} value(s) could not be rewrapped and were left as they were (see the report)")]
    ItemsFailed {
        /// How many.
        count: u64,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// PostgreSQL refused a statement or the connection.
    #[error("PostgreSQL, {during}: {source}")]
    Postgres {
        /// What the job was doing.
        during: &'static str,
        /// Why (tokio-postgres never puts the password in it).
        source: tokio_postgres::Error,
    },
    /// The server broke the Bulk protocol, or a task of the job died.
    #[error("{0}")]
    Protocol(&'static str),
    /// The table cannot be rewrapped safely.
    #[error("table {table}: {why}")]
    Table {
        /// The table.
        table: String,
        /// What is wrong.
        why: String,
    },
    /// The job stopped on a signal before the end; it can be resumed.
    #[error(
        "stopped on a signal: progress is in {}; continue with --resume",
        .checkpoint.display()
    )]
    Interrupted {
        /// The checkpoint file.
        checkpoint: PathBuf,
    },
    /// The command line is incomplete or contradictory.
    #[error("{0}")]
    Usage(String),
}

/// What to do with one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Send it to the server.
    Rewrap,
    /// Leave it: empty, or already at (or past) the target version.
    Skip,
    /// Leave it and report it: it cannot be a ciphertext of this key.
    Fail(&'static str),
}

/// Sorts a value into its bucket and decides what to do with it.
fn classify(value: Option<&str>, target_version: u32) -> (Bucket, Action) {
    match value {
        None | Some("") => (Bucket::Empty, Action::Skip),
        Some(text) => match Versioned::parse(text) {
            Err(_) => (
                Bucket::Malformed,
                Action::Fail("not a vault:v<N>: ciphertext"),
            ),
            Ok(v) if v.version >= target_version => (Bucket::Version(v.version), Action::Skip),
            Ok(v) => (Bucket::Version(v.version), Action::Rewrap),
        },
    }
}

/// Everything a job needs besides its source.
struct Settings {
    mount: String,
    key: String,
    grpc_addr: String,
    token: String,
    ca_cert: Option<Vec<u8>>,
    batch_size: usize,
    concurrency: usize,
    rate: Option<u64>,
    target_version: Option<u32>,
    checkpoint: Option<PathBuf>,
    resume: bool,
    dry_run: bool,
    report_json: Option<PathBuf>,
    log_interval: Duration,
    stop: stop::Stop,
}

/// Runs bulk `cipherd rewrap`. `positional_key` is the KEY argument, if any.
pub async fn run(
    args: JobArgs,
    positional_key: Option<String>,
    mount: &str,
) -> Result<(), RewrapError> {
    let key = match (args.key, positional_key) {
        (Some(_), Some(_)) => {
            return Err(RewrapError::Usage(
                "name the key once: --key NAME or the positional KEY".into(),
            ));
        }
        (Some(key), None) | (None, Some(key)) => key,
        (None, None) => return Err(RewrapError::Usage("--key NAME is required".into())),
    };
    if args.batch_size == 0 || args.batch_size > 100_000 {
        return Err(RewrapError::Usage(
            "--batch-size must be between 1 and 100000".into(),
        ));
    }
    if args.concurrency == 0 || args.concurrency > 64 {
        return Err(RewrapError::Usage(
            "--concurrency must be between 1 and 64".into(),
        ));
    }
    if args.rate == Some(0) {
        return Err(RewrapError::Usage("--rate must be at least 1".into()));
    }
    if args.target_version == Some(0) {
        return Err(RewrapError::Usage(
            "--target-version must be at least 1".into(),
        ));
    }
    if !(args.log_interval.is_finite() && args.log_interval > 0.0) {
        return Err(RewrapError::Usage(
            "--log-interval must be a positive number of seconds".into(),
        ));
    }
    let token = env_pair("CIPHERD_TOKEN", "VAULT_TOKEN")
        .ok_or_else(|| RewrapError::Usage("no token: set CIPHERD_TOKEN (or VAULT_TOKEN)".into()))?;
    let ca_cert = match env_pair("CIPHERD_CACERT", "VAULT_CACERT") {
        Some(path) => Some(std::fs::read(&path).map_err(|source| RewrapError::Io {
            path: PathBuf::from(path),
            source,
        })?),
        None => None,
    };
    let settings = Settings {
        mount: mount.to_owned(),
        key,
        grpc_addr: args.grpc_addr,
        token,
        ca_cert,
        batch_size: args.batch_size,
        concurrency: args.concurrency,
        rate: args.rate,
        target_version: args.target_version,
        checkpoint: args.checkpoint,
        resume: args.resume,
        dry_run: args.dry_run,
        report_json: args.report_json,
        log_interval: Duration::from_secs_f64(args.log_interval),
        stop: stop::Stop::on_signals(),
    };
    job::run(&args.source, settings).await
}

/// Runs `cipherd key versions-in-use`: prints values per version. With
/// `key_facts` (the key's latest and minimum decryption versions, read by the
/// caller) it also says how far `min_decryption_version` can be raised.
pub async fn versions_in_use(
    source: &SourceArgs,
    key_facts: Option<(u32, u32)>,
) -> Result<(), RewrapError> {
    if source.output.is_some() {
        return Err(RewrapError::Usage(
            "versions-in-use only reads: drop --output".into(),
        ));
    }
    let report = scan::scan(source).await?;
    print!("{}", report.versions_table());
    let totals = report.totals();
    println!();
    println!("{} values scanned", totals.seen);
    if let Some((latest, min_decryption)) = key_facts {
        println!("key: latest version {latest}, min_decryption_version {min_decryption}");
        match report.lowest_version() {
            Some(lowest) if lowest > min_decryption => println!(
                "every value decrypts with version {lowest} or later: min_decryption_version can be raised to {lowest}"
            ),
            Some(lowest) => println!(
                "values under version {lowest} are still in use: rewrap them before raising min_decryption_version"
            ),
            None => println!("no ciphertexts found"),
        }
    }
    Ok(())
}

/// The first of two environment variables that is set and not empty.
fn env_pair(a: &str, b: &str) -> Option<String> {
    std::env::var(a)
        .or_else(|_| std::env::var(b))
        .ok()
        .filter(|v| !v.is_empty())
}

/// The default checkpoint path of job `id`.
fn default_checkpoint(id: &str) -> PathBuf {
    Path::new(&format!(".cipherd-rewrap-{id}.json")).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_sorts_values() {
        assert_eq!(classify(None, 3), (Bucket::Empty, Action::Skip));
        assert_eq!(classify(Some(""), 3), (Bucket::Empty, Action::Skip));
        assert_eq!(
            classify(Some("vault:v1:abcd"), 3),
            (Bucket::Version(1), Action::Rewrap)
        );
        assert_eq!(
            classify(Some("vault:v3:abcd"), 3),
            (Bucket::Version(3), Action::Skip)
        );
        assert_eq!(
            classify(Some("vault:v4:abcd"), 3),
            (Bucket::Version(4), Action::Skip)
        );
        assert!(matches!(
            classify(Some("plain text"), 3),
            (Bucket::Malformed, Action::Fail(_))
        ));
        assert!(matches!(
            classify(Some("vault:vx:abcd"), 3),
            (Bucket::Malformed, Action::Fail(_))
        ));
    }
}
