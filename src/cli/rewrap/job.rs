//! The pipelines of a rewrap job, from a source through the Bulk stream to a
//! sink, and the read-only scans of `--dry-run` and `key versions-in-use`.
//!
//! PostgreSQL: a reader task pages through the table and submits each page
//! to the stream; a dispatcher takes the answers in order and hands them to
//! `--concurrency` writers, each with its own connection and one transaction
//! per batch; the tracker (this task) records what the writers committed and
//! advances the checkpoint only over an unbroken run of committed batches,
//! so it never passes a batch that has not committed, whatever order the
//! writers finish in.
//!
//! Files: a reader thread, the stream, and a writer thread that writes every
//! record in input order and checkpoints the offsets after syncing the
//! output.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use super::bulk::{Answered, Completions, Connection, Outgoing, Submitter};
use super::checkpoint::{Checkpoint, Position, job_id};
use super::progress::{Progress, Unit};
use super::report::{Bucket, Report, ReportHeader};
use super::source_file::{Record, RecordReader, RecordWriter, Value, format_of};
use super::source_pg::{self, Change, Pager, TableSpec, TableSql, Writer};
use super::{Action, FileFormat, RewrapError, Settings, SourceArgs, classify, default_checkpoint};

/// How often the checkpoint is rewritten at most (and always at the end).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// A source, checked.
enum Source {
    Postgres(TableSpec),
    File {
        input: PathBuf,
        output: Option<PathBuf>,
        field: String,
        format: FileFormat,
    },
}

impl Source {
    fn from_args(args: &SourceArgs) -> Result<Self, RewrapError> {
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
enum Outcome {
    /// Left as it was, nothing to report.
    Keep,
    /// Left as it was: it could not be rewrapped.
    Failed(String),
    /// The server's new ciphertext for it.
    New(String),
}

/// Pairs the classified values of a batch with the server's answers, in
/// order (only the values sent got an answer).
fn settle(actions: &[Action], results: Vec<Result<String, String>>) -> Vec<Outcome> {
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
    let target = match &connection {
        Some(connection) => {
            let key = connection.read_key().await?;
            if key.derived {
                return Err(RewrapError::Usage(format!(
                    "key {} is derived: rewrapping needs each value's context, which bulk rewrap does not take",
                    settings.key
                )));
            }
            if !key.supports_decryption {
                return Err(RewrapError::Usage(format!(
                    "key {} does not encrypt",
                    settings.key
                )));
            }
            let target = settings.target_version.unwrap_or(key.latest_version);
            if target > key.latest_version || target < key.min_decryption_version {
                return Err(RewrapError::Usage(format!(
                    "--target-version {target} is outside the key's versions {}..={}",
                    key.min_decryption_version, key.latest_version
                )));
            }
            target
        }
        // A dry run with an explicit target needs no server.
        None => settings.target_version.unwrap_or(1),
    };

    let header = ReportHeader {
        source: source.label(),
        mount: &settings.mount,
        key: &settings.key,
        target_version: target,
        dry_run: settings.dry_run,
        resumed: settings.resume,
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
        (_, None) => return Err(RewrapError::Protocol("no server connection")),
        (Source::Postgres(spec), Some(connection)) => {
            let checkpoint = checkpoint_for(
                &settings,
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
            run_postgres(spec, &settings, connection, target, &checkpoint, resume_key).await?
        }
        (
            Source::File {
                input,
                output,
                field,
                format,
            },
            Some(connection),
        ) => {
            let output = output.as_deref().ok_or_else(|| {
                RewrapError::Usage("--input needs --output (or --dry-run)".into())
            })?;
            check_distinct(input, output)?;
            let checkpoint = checkpoint_for(
                &settings,
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
            run_file(files, &settings, connection, target, &checkpoint, resume).await?
        }
    };

    println!("{}", report.table(settings.dry_run));
    if let Some(path) = &settings.report_json {
        report.write_json(path, &header, started.elapsed())?;
    }
    let failed = report.totals().failed;
    // A dry run reports what would fail; only a real run fails for it.
    if failed > 0 && !settings.dry_run {
        return Err(RewrapError::ItemsFailed { count: failed });
    }
    Ok(())
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
fn first_error(errors: Vec<RewrapError>) -> Option<RewrapError> {
    let root = errors
        .iter()
        .position(|e| !matches!(e, RewrapError::Protocol(_)));
    let mut errors = errors;
    match root {
        Some(index) => Some(errors.swap_remove(index)),
        None => errors.into_iter().next(),
    }
}

async fn joined(task: JoinHandle<Result<(), RewrapError>>) -> Result<(), RewrapError> {
    task.await
        .unwrap_or(Err(RewrapError::Protocol("a task of the job died")))
}

// ---------------------------------------------------------------------------
// PostgreSQL

/// A page on its way through the stream.
struct PgBatch {
    sequence: u64,
    rows: Vec<source_pg::Row>,
    buckets: Vec<Bucket>,
    actions: Vec<Action>,
}

/// A page with its outcomes, on its way to (and back from) a writer.
struct PgSettled {
    sequence: u64,
    rows: Vec<source_pg::Row>,
    buckets: Vec<Bucket>,
    outcomes: Vec<Outcome>,
    /// Keys of the rows the writer updated.
    updated: HashSet<String>,
}

async fn run_postgres(
    spec: &TableSpec,
    settings: &Settings,
    connection: Connection,
    target: u32,
    checkpoint: &Checkpoint,
    resume_key: Option<String>,
) -> Result<Report, RewrapError> {
    let admin = source_pg::connect(&spec.url).await?;
    let sql = TableSql::prepare(&admin, spec).await?;
    let total = sql.count(&admin, resume_key.as_deref()).await?;
    let pager = Pager::new(admin, &sql).await?;
    let mut writers = Vec::with_capacity(settings.concurrency);
    for _ in 0..settings.concurrency {
        writers.push(Writer::new(source_pg::connect(&spec.url).await?, &sql).await?);
    }
    let (submitter, completions) = connection
        .bulk::<PgBatch>(target, settings.concurrency, settings.rate)
        .await?;

    let reader = tokio::spawn(read_pages(
        pager,
        submitter,
        resume_key.clone(),
        settings.batch_size,
        target,
    ));
    let (work_tx, work_rx) = mpsc::channel::<PgSettled>(settings.concurrency);
    let dispatcher = tokio::spawn(dispatch_pages(completions, work_tx));
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, mut done_rx) = mpsc::channel::<PgSettled>(settings.concurrency * 2);
    let writer_tasks: Vec<_> = writers
        .into_iter()
        .map(|writer| tokio::spawn(write_pages(writer, work_rx.clone(), done_tx.clone())))
        .collect();
    drop(done_tx);

    // The tracker: batches may commit out of order; the checkpoint moves
    // only across an unbroken run of committed sequence numbers.
    let mut report = Report::default();
    let mut progress = Progress::new(Unit::Rows, Some(total), 0, settings.log_interval);
    let mut committed: BTreeMap<u64, String> = BTreeMap::new();
    let mut next_sequence = 0u64;
    let mut last_key = resume_key;
    let mut dirty = false;
    let mut last_store = Instant::now();
    let mut rows_done = 0u64;
    while let Some(batch) = done_rx.recv().await {
        rows_done += batch.rows.len() as u64;
        record_page(&mut report, &batch);
        if let Some(row) = batch.rows.last() {
            committed.insert(batch.sequence, row.key.clone());
        }
        while let Some(key) = committed.remove(&next_sequence) {
            last_key = Some(key);
            next_sequence += 1;
            dirty = true;
        }
        if dirty && last_store.elapsed() >= CHECKPOINT_EVERY {
            checkpoint.store(&Position::Postgres {
                last_key: last_key.clone(),
            })?;
            dirty = false;
            last_store = Instant::now();
        }
        progress.update(rows_done, &report.totals());
    }
    progress.finish(rows_done, &report.totals());

    let mut errors = Vec::new();
    for task in [reader, dispatcher].into_iter().chain(writer_tasks) {
        if let Err(error) = joined(task).await {
            errors.push(error);
        }
    }
    if let Some(error) = first_error(errors) {
        if dirty {
            checkpoint.store(&Position::Postgres { last_key })?;
        }
        return Err(error);
    }
    checkpoint.remove()?;
    Ok(report)
}

/// Counts one committed page into the report.
fn record_page(report: &mut Report, batch: &PgSettled) {
    for ((row, bucket), outcome) in batch.rows.iter().zip(&batch.buckets).zip(&batch.outcomes) {
        report.counts(*bucket).seen += 1;
        match outcome {
            Outcome::Keep => report.counts(*bucket).skipped += 1,
            Outcome::Failed(reason) => {
                report.fail(*bucket, format!("key={}", row.key), reason.clone())
            }
            Outcome::New(_) if batch.updated.contains(&row.key) => {
                report.counts(*bucket).rewrapped += 1
            }
            Outcome::New(_) => report.counts(*bucket).changed += 1,
        }
    }
}

/// The reader task: pages in key order, classified, into the stream.
async fn read_pages(
    pager: Pager,
    mut submitter: Submitter<PgBatch>,
    mut after: Option<String>,
    batch_size: usize,
    target: u32,
) -> Result<(), RewrapError> {
    let mut sequence = 0u64;
    loop {
        let rows = pager.page(after.as_deref(), batch_size).await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = Some(last.key.clone());
        let (buckets, actions): (Vec<_>, Vec<_>) = rows
            .iter()
            .map(|row| classify(row.value.as_deref(), target))
            .unzip();
        let ciphertexts = rows
            .iter()
            .zip(&actions)
            .filter(|(_, action)| **action == Action::Rewrap)
            .filter_map(|(row, _)| row.value.clone())
            .collect();
        let full = rows.len() == batch_size;
        submitter
            .submit(Outgoing {
                payload: PgBatch {
                    sequence,
                    rows,
                    buckets,
                    actions,
                },
                ciphertexts,
            })
            .await?;
        sequence += 1;
        if !full {
            return Ok(());
        }
    }
}

/// The dispatcher task: answers in order, settled, to the writers.
async fn dispatch_pages(
    mut completions: Completions<PgBatch>,
    work: mpsc::Sender<PgSettled>,
) -> Result<(), RewrapError> {
    while let Some(Answered { payload, results }) = completions.next().await? {
        let outcomes = settle(&payload.actions, results);
        let settled = PgSettled {
            sequence: payload.sequence,
            rows: payload.rows,
            buckets: payload.buckets,
            outcomes,
            updated: HashSet::new(),
        };
        if work.send(settled).await.is_err() {
            return Err(RewrapError::Protocol("every database writer stopped"));
        }
    }
    Ok(())
}

/// A writer task: one transaction per batch, then to the tracker.
async fn write_pages(
    mut writer: Writer,
    work: Arc<Mutex<mpsc::Receiver<PgSettled>>>,
    done: mpsc::Sender<PgSettled>,
) -> Result<(), RewrapError> {
    loop {
        // The lock is held only while waiting for the next batch.
        let next = work.lock().await.recv().await;
        let Some(mut batch) = next else {
            return Ok(());
        };
        let changes: Vec<Change> = batch
            .rows
            .iter()
            .zip(&batch.outcomes)
            .filter_map(|(row, outcome)| match (outcome, &row.value) {
                (Outcome::New(new), Some(old)) => Some(Change {
                    key: row.key.clone(),
                    old: old.clone(),
                    new: new.clone(),
                }),
                _ => None,
            })
            .collect();
        batch.updated = writer.write(&changes).await?;
        if done.send(batch).await.is_err() {
            return Err(RewrapError::Protocol("the tracker stopped"));
        }
    }
}

// ---------------------------------------------------------------------------
// Files

struct FileJob {
    input: PathBuf,
    output: PathBuf,
    field: String,
    format: FileFormat,
}

/// Records on their way through the stream.
struct FileBatch {
    records: Vec<Record>,
    buckets: Vec<Bucket>,
    actions: Vec<Action>,
    /// Input offset and record count after the batch.
    end: (u64, u64),
}

struct FileSettled {
    records: Vec<Record>,
    buckets: Vec<Bucket>,
    outcomes: Vec<Outcome>,
    end: (u64, u64),
}

/// Sorts a file record: blank lines and bad records are never sent.
fn classify_record(record: &Record, target: u32) -> (Bucket, Action) {
    match &record.value {
        Value::Blank => (Bucket::Empty, Action::Skip),
        Value::Bad(reason) => (Bucket::Malformed, Action::Fail(reason)),
        Value::Text(text) => classify(text.as_deref(), target),
    }
}

async fn run_file(
    job: FileJob,
    settings: &Settings,
    connection: Connection,
    target: u32,
    checkpoint: &Checkpoint,
    resume: Option<(u64, u64, u64)>,
) -> Result<Report, RewrapError> {
    let reader = RecordReader::open(
        &job.input,
        job.format,
        &job.field,
        resume.map(|(input, _, records)| (input, records)),
    )?;
    let writer = RecordWriter::create(
        &job.output,
        job.format,
        reader.header(),
        resume.map(|(_, output, _)| output),
    )?;
    let total = reader.len();
    let start = reader.offset();
    let (submitter, completions) = connection
        .bulk::<FileBatch>(target, settings.concurrency, settings.rate)
        .await?;

    // The reader thread hands batches to the submitting task.
    let (batches_tx, mut batches_rx) = mpsc::channel::<FileBatch>(2);
    let batch_size = settings.batch_size;
    let read =
        tokio::task::spawn_blocking(move || read_records(reader, batches_tx, batch_size, target));
    let submit = tokio::spawn(async move {
        let mut submitter = submitter;
        while let Some(batch) = batches_rx.recv().await {
            let ciphertexts = batch
                .records
                .iter()
                .zip(&batch.actions)
                .filter(|(_, action)| **action == Action::Rewrap)
                .filter_map(|(record, _)| match &record.value {
                    Value::Text(Some(text)) => Some(text.clone()),
                    _ => None,
                })
                .collect();
            submitter
                .submit(Outgoing {
                    payload: batch,
                    ciphertexts,
                })
                .await?;
        }
        Ok(())
    });

    let (settled_tx, settled_rx) = mpsc::channel::<FileSettled>(2);
    let sink = FileSink {
        writer,
        progress: Progress::new(Unit::Bytes, Some(total), start, settings.log_interval),
        format: job.format,
        checkpoint: checkpoint.clone(),
        report: Report::default(),
    };
    let write = tokio::task::spawn_blocking(move || sink.run(settled_rx));

    // This task: answers in order, settled, to the writer thread.
    let mut completions = completions;
    let answered = async {
        while let Some(Answered { payload, results }) = completions.next().await? {
            let outcomes = settle(&payload.actions, results);
            let settled = FileSettled {
                records: payload.records,
                buckets: payload.buckets,
                outcomes,
                end: payload.end,
            };
            if settled_tx.send(settled).await.is_err() {
                return Err(RewrapError::Protocol("the output writer stopped"));
            }
        }
        Ok(())
    }
    .await;
    drop(settled_tx);
    drop(completions);

    let mut errors = Vec::new();
    if let Err(error) = answered {
        errors.push(error);
    }
    for task in [read, submit] {
        if let Err(error) = joined(task).await {
            errors.push(error);
        }
    }
    let report = match write.await {
        Ok(Ok(report)) => Some(report),
        Ok(Err(error)) => {
            errors.push(error);
            None
        }
        Err(_) => {
            errors.push(RewrapError::Protocol("the output writer died"));
            None
        }
    };
    if let Some(error) = first_error(errors) {
        return Err(error);
    }
    checkpoint.remove()?;
    report.ok_or(RewrapError::Protocol(
        "the output writer returned no report",
    ))
}

/// The reader thread: records in batches, classified, to the submitter.
fn read_records(
    mut reader: RecordReader,
    batches: mpsc::Sender<FileBatch>,
    batch_size: usize,
    target: u32,
) -> Result<(), RewrapError> {
    loop {
        let mut records = Vec::with_capacity(batch_size);
        while records.len() < batch_size {
            match reader.next()? {
                Some(record) => records.push(record),
                None => break,
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        let last = records.len() < batch_size;
        let (buckets, actions) = records
            .iter()
            .map(|record| classify_record(record, target))
            .unzip();
        let batch = FileBatch {
            records,
            buckets,
            actions,
            end: (reader.offset(), reader.records()),
        };
        if batches.blocking_send(batch).is_err() {
            return Err(RewrapError::Protocol("the stream stopped taking batches"));
        }
        if last {
            return Ok(());
        }
    }
}

/// The writer thread's state: output, counters, display, checkpoint.
struct FileSink {
    writer: RecordWriter,
    progress: Progress,
    format: FileFormat,
    checkpoint: Checkpoint,
    report: Report,
}

impl FileSink {
    /// Writes every settled batch in order; checkpoints after syncing the
    /// output, and once more when the batches end (however the job ends).
    fn run(mut self, mut settled: mpsc::Receiver<FileSettled>) -> Result<Report, RewrapError> {
        let mut last_store = Instant::now();
        let mut end = None;
        let mut dirty = false;
        while let Some(batch) = settled.blocking_recv() {
            for ((record, bucket), outcome) in batch
                .records
                .iter()
                .zip(&batch.buckets)
                .zip(&batch.outcomes)
            {
                if record.value == Value::Blank {
                    self.writer.write(record, None)?;
                    continue;
                }
                self.report.counts(*bucket).seen += 1;
                match outcome {
                    Outcome::Keep => {
                        self.report.counts(*bucket).skipped += 1;
                        self.writer.write(record, None)?;
                    }
                    Outcome::Failed(reason) => {
                        self.report
                            .fail(*bucket, record.location(self.format), reason.clone());
                        self.writer.write(record, None)?;
                    }
                    Outcome::New(new) => {
                        self.writer.write(record, Some(new))?;
                        self.report.counts(*bucket).rewrapped += 1;
                    }
                }
            }
            end = Some(batch.end);
            dirty = true;
            if last_store.elapsed() >= CHECKPOINT_EVERY {
                self.store(batch.end)?;
                dirty = false;
                last_store = Instant::now();
            }
            self.progress.update(batch.end.0, &self.report.totals());
        }
        match end {
            Some(end) if dirty => self.store(end)?,
            _ => {
                self.writer.sync()?;
            }
        }
        let position = end.map(|(offset, _)| offset).unwrap_or(0);
        self.progress.finish(position, &self.report.totals());
        Ok(self.report)
    }

    fn store(&mut self, (input_offset, records): (u64, u64)) -> Result<(), RewrapError> {
        let output_offset = self.writer.sync()?;
        self.checkpoint.store(&Position::File {
            input_offset,
            output_offset,
            records,
        })
    }
}

// ---------------------------------------------------------------------------
// Scans

/// Counts the values of a source by version (`key versions-in-use`).
pub(super) async fn scan(args: &SourceArgs) -> Result<Report, RewrapError> {
    let source = Source::from_args(args)?;
    scan_source(&source, None, 1000).await
}

/// Reads a source without writing. With `target` (a dry run) it also counts
/// what a job would rewrap, skip or fail; without, only values per version.
async fn scan_source(
    source: &Source,
    target: Option<u32>,
    batch_size: usize,
) -> Result<Report, RewrapError> {
    let mut report = Report::default();
    match source {
        Source::Postgres(spec) => {
            let client = source_pg::connect(&spec.url).await?;
            let sql = TableSql::prepare(&client, spec).await?;
            let pager = Pager::new(client, &sql).await?;
            let mut after: Option<String> = None;
            loop {
                let rows = pager.page(after.as_deref(), batch_size).await?;
                for row in &rows {
                    tally(&mut report, row.value.as_deref(), target, || {
                        format!("key={}", row.key)
                    });
                }
                match rows.last() {
                    Some(last) if rows.len() == batch_size => after = Some(last.key.clone()),
                    _ => break,
                }
            }
        }
        Source::File {
            input,
            field,
            format,
            ..
        } => {
            let (input, field, format) = (input.clone(), field.clone(), *format);
            report = tokio::task::spawn_blocking(move || {
                let mut reader = RecordReader::open(&input, format, &field, None)?;
                while let Some(record) = reader.next()? {
                    match &record.value {
                        Value::Blank => {}
                        Value::Bad(reason) => {
                            report.counts(Bucket::Malformed).seen += 1;
                            if target.is_some() {
                                report.fail(
                                    Bucket::Malformed,
                                    record.location(format),
                                    (*reason).to_owned(),
                                );
                            }
                        }
                        Value::Text(text) => tally(&mut report, text.as_deref(), target, || {
                            record.location(format)
                        }),
                    }
                }
                Ok::<_, RewrapError>(report)
            })
            .await
            .map_err(|_| RewrapError::Protocol("the scan died"))??;
        }
    }
    Ok(report)
}

/// Counts one value of a scan.
fn tally(
    report: &mut Report,
    value: Option<&str>,
    target: Option<u32>,
    location: impl FnOnce() -> String,
) {
    let (bucket, action) = classify(value, target.unwrap_or(u32::MAX));
    report.counts(bucket).seen += 1;
    if target.is_none() {
        return;
    }
    match action {
        Action::Rewrap => report.counts(bucket).rewrapped += 1,
        Action::Skip => report.counts(bucket).skipped += 1,
        Action::Fail(reason) => report.fail(bucket, location(), reason.to_owned()),
    }
}
