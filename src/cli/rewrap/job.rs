//! A rewrap job from the command line to its summary: the source checked,
//! the key read, the checkpoint found (or refused), one of the pipelines run
//! ([`super::job_pg`], [`super::job_file`], or a [`super::scan`] for a dry
//! run), and the report printed. Also what the pipelines share: how an
//! answer becomes outcomes, and which error of several tasks to show.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::bulk::Connection;
use super::checkpoint::{Checkpoint, Position, job_id};
use super::job_file::{FileJob, run_file};
use super::job_pg::run_postgres;
use super::report::{Report, ReportHeader};
use super::scan::scan_source;
use super::source_file::format_of;
use super::source_pg::TableSpec;
use super::{Action, FileFormat, RewrapError, Settings, SourceArgs, default_checkpoint};

/// How often the checkpoint is rewritten at most (and always at the end).
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// A source, checked.
pub(super) enum Source {
    Postgres(TableSpec),
    File {
        input: PathBuf,
        output: Option<PathBuf>,
        field: String,
        format: FileFormat,
    },
}

impl Source {
    pub(super) fn from_args(args: &SourceArgs) -> Result<Self, RewrapError> {
        let missing = |flag: &str, with: &str| RewrapError::Usage(format!("{with} needs {flag}"));
        if let Some(url) = &args.postgres {
            return Ok(Self::Postgres(TableSpec {
                url: url.clone(),
                table: args
                    .table
                    .clone()
                    .ok_or_else(|| missing("--table", "--postgres"))?,
                column: args
                    .column
                    .clone()
                    .ok_or_else(|| missing("--column", "--postgres"))?,
                key_column: args
                    .key_column
                    .clone()
                    .ok_or_else(|| missing("--key-column", "--postgres"))?,
                where_sql: args.where_sql.clone(),
            }));
        }
        let Some(input) = &args.input else {
            return Err(RewrapError::Usage(
                "name a source: --postgres URL ... or --input FILE".into(),
            ));
        };
        Ok(Self::File {
            input: input.clone(),
            output: args.output.clone(),
            field: args
                .field
                .clone()
                .ok_or_else(|| missing("--field", "--input"))?,
            format: format_of(input, args.file_format),
        })
    }

    fn label(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::File { .. } => "file",
        }
    }
}

/// What became of one value.
pub(super) enum Outcome {
    /// Left as it was, nothing to report.
    Keep,
    /// Left as it was: it could not be rewrapped.
    Failed(String),
    /// The server's new ciphertext for it.
    New(String),
}

/// Pairs the classified values of a batch with the server's answers, in
/// order (only the values sent got an answer).
pub(super) fn settle(actions: &[Action], results: Vec<Result<String, String>>) -> Vec<Outcome> {
    let mut results = results.into_iter();
    actions
        .iter()
        .map(|action| match action {
            Action::Skip => Outcome::Keep,
            Action::Fail(reason) => Outcome::Failed((*reason).to_owned()),
            Action::Rewrap => match results.next() {
                Some(Ok(new)) => Outcome::New(new),
                Some(Err(reason)) => Outcome::Failed(reason),
                None => Outcome::Failed("the server sent no result for this value".into()),
            },
        })
        .collect()
}

/// Runs a rewrap job.
pub(super) async fn run(args: &SourceArgs, settings: Settings) -> Result<(), RewrapError> {
    let source = Source::from_args(args)?;
    let started = Instant::now();
    // A dry run with an explicit target needs no server.
    let connection = if settings.dry_run && settings.target_version.is_some() {
        None
    } else {
        Some(
            Connection::open(
                &settings.grpc_addr,
                settings.ca_cert.clone(),
                &settings.token,
                &settings.mount,
                &settings.key,
            )
            .await?,
        )
    };
    let target = match (&connection, settings.target_version) {
        (Some(connection), wanted) => target_version(connection, &settings.key, wanted).await?,
        (None, Some(wanted)) => wanted,
        (None, None) => return Err(RewrapError::Protocol("no server to read the key from")),
    };

    let report = match (&source, connection) {
        (_, _) if settings.dry_run => {
            if let Source::File {
                output: Some(_), ..
            } = &source
            {
                eprintln!("rewrap: dry run: --output is not written");
            }
            scan_source(&source, Some(target), settings.batch_size).await?
        }
        (Source::Postgres(spec), Some(connection)) => {
            postgres_job(spec, &settings, connection, target).await?
        }
        (Source::File { .. }, Some(connection)) => {
            file_job(&source, &settings, connection, target).await?
        }
        (_, None) => return Err(RewrapError::Protocol("no server connection")),
    };

    println!("{}", report.table(settings.dry_run));
    if let Some(path) = &settings.report_json {
        let header = ReportHeader {
            source: source.label(),
            mount: &settings.mount,
            key: &settings.key,
            target_version: target,
            dry_run: settings.dry_run,
            resumed: settings.resume,
        };
        report.write_json(path, &header, started.elapsed())?;
    }
    let failed = report.totals().failed;
    // A dry run reports what would fail; only a real run fails for it.
    if failed > 0 && !settings.dry_run {
        return Err(RewrapError::ItemsFailed { count: failed });
    }
    Ok(())
}

/// The version to rewrap to: `wanted`, or the key's latest; checked against
/// the key (which must encrypt and must not be derived).
async fn target_version(
    connection: &Connection,
    key_name: &str,
    wanted: Option<u32>,
) -> Result<u32, RewrapError> {
    let key = connection.read_key().await?;
    if key.derived {
        return Err(RewrapError::Usage(format!(
            "key {key_name} is derived: rewrapping needs each value's context, which bulk rewrap does not take"
        )));
    }
    if !key.supports_decryption {
        return Err(RewrapError::Usage(format!(
            "key {key_name} does not encrypt"
        )));
    }
    let target = wanted.unwrap_or(key.latest_version);
    if target > key.latest_version || target < key.min_decryption_version {
        return Err(RewrapError::Usage(format!(
            "--target-version {target} is outside the key's versions {}..={}",
            key.min_decryption_version, key.latest_version
        )));
    }
    Ok(target)
}

/// A PostgreSQL job: its checkpoint, then the pipeline.
async fn postgres_job(
    spec: &TableSpec,
    settings: &Settings,
    connection: Connection,
    target: u32,
) -> Result<Report, RewrapError> {
    let checkpoint = checkpoint_for(
        settings,
        &[
            "postgres",
            &spec.identity()?,
            &spec.table,
            &spec.column,
            &spec.key_column,
            spec.where_sql.as_deref().unwrap_or(""),
        ],
        target,
    );
    let resume_key = match resume_position(&checkpoint, settings.resume)? {
        None => None,
        Some(Position::Postgres { last_key }) => last_key,
        Some(Position::File { .. }) => {
            return Err(RewrapError::BadCheckpoint {
                path: checkpoint.path().to_owned(),
                why: "it was written by a file job",
            });
        }
    };
    run_postgres(spec, settings, connection, target, &checkpoint, resume_key).await
}

/// A file job: its output and checkpoint checked, then the pipeline.
async fn file_job(
    source: &Source,
    settings: &Settings,
    connection: Connection,
    target: u32,
) -> Result<Report, RewrapError> {
    let Source::File {
        input,
        output,
        field,
        format,
    } = source
    else {
        return Err(RewrapError::Protocol("a file job without a file source"));
    };
    let output = output
        .as_deref()
        .ok_or_else(|| RewrapError::Usage("--input needs --output (or --dry-run)".into()))?;
    check_distinct(input, output)?;
    let checkpoint = checkpoint_for(
        settings,
        &[
            "file",
            &absolute(input).display().to_string(),
            &absolute(output).display().to_string(),
            field,
            &format!("{format:?}"),
        ],
        target,
    );
    let resume = match resume_position(&checkpoint, settings.resume)? {
        None => None,
        Some(Position::File {
            input_offset,
            output_offset,
            records,
        }) => Some((input_offset, output_offset, records)),
        Some(Position::Postgres { .. }) => {
            return Err(RewrapError::BadCheckpoint {
                path: checkpoint.path().to_owned(),
                why: "it was written by a PostgreSQL job",
            });
        }
    };
    let files = FileJob {
        input: input.clone(),
        output: output.to_owned(),
        field: field.clone(),
        format: *format,
    };
    run_file(files, settings, connection, target, &checkpoint, resume).await
}

/// The checkpoint of this job.
fn checkpoint_for(settings: &Settings, source: &[&str], target: u32) -> Checkpoint {
    let target = target.to_string();
    let mut parts = source.to_vec();
    parts.extend([settings.mount.as_str(), settings.key.as_str(), &target]);
    let id = job_id(&parts);
    let path = settings
        .checkpoint
        .clone()
        .unwrap_or_else(|| default_checkpoint(&id));
    Checkpoint::new(path, id)
}

/// The position to resume from, if `--resume` and a checkpoint exists.
fn resume_position(checkpoint: &Checkpoint, resume: bool) -> Result<Option<Position>, RewrapError> {
    match (checkpoint.load()?, resume) {
        (Some(position), true) => {
            eprintln!("rewrap: resuming from {}", checkpoint.path().display());
            Ok(Some(position))
        }
        (Some(_), false) => Err(RewrapError::CheckpointExists {
            path: checkpoint.path().to_owned(),
        }),
        (None, true) => {
            eprintln!(
                "rewrap: no checkpoint at {}: starting from the beginning",
                checkpoint.path().display()
            );
            Ok(None)
        }
        (None, false) => Ok(None),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Refuses to write the output over the input.
fn check_distinct(input: &Path, output: &Path) -> Result<(), RewrapError> {
    let same = match (input.canonicalize(), output.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => absolute(input) == absolute(output),
    };
    if same {
        return Err(RewrapError::Usage(
            "--output must be another file than --input".into(),
        ));
    }
    Ok(())
}

/// The first error worth showing: a root cause rather than the "stream
/// ended" that the other tasks see after it.
pub(super) fn first_error(errors: Vec<RewrapError>) -> Option<RewrapError> {
    let root = errors
        .iter()
        .position(|e| !matches!(e, RewrapError::Protocol(_)));
    let mut errors = errors;
    match root {
        Some(index) => Some(errors.swap_remove(index)),
        None => errors.into_iter().next(),
    }
}

pub(super) async fn joined(task: JoinHandle<Result<(), RewrapError>>) -> Result<(), RewrapError> {
    task.await
        .unwrap_or(Err(RewrapError::Protocol("a task of the job died")))
}
