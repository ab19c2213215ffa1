//! The PostgreSQL pipeline of a rewrap job: a reader task pages through the
//! table and submits each page to the stream; a dispatcher takes the answers
//! in order and hands them to `--concurrency` writers, each with its own
//! connection and one transaction per batch; the tracker (the calling task)
//! records what the writers committed and advances the checkpoint only over
//! an unbroken run of committed batches, so it never passes a batch that has
//! not committed, whatever order the writers finish in.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Mutex, mpsc};

use super::bulk::{Answered, Completions, Connection, Outgoing, Submitter};
use super::checkpoint::{Checkpoint, Position};
use super::job::{CHECKPOINT_EVERY, Outcome, first_error, joined, settle};
use super::progress::{Progress, Unit};
use super::report::{Bucket, Report};
use super::source_pg::{self, Change, Pager, TableSpec, TableSql, Writer};
use super::stop::Stop;
use super::{Action, RewrapError, Settings, classify};

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

pub(super) async fn run_postgres(
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
        (settings.batch_size, target),
        settings.stop.clone(),
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
    let outcome = first_error(errors);
    if outcome.is_some() || settings.stop.requested() {
        if dirty {
            checkpoint.store(&Position::Postgres { last_key })?;
        }
        return Err(outcome.unwrap_or_else(|| RewrapError::Interrupted {
            checkpoint: checkpoint.path().to_owned(),
        }));
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
    (batch_size, target): (usize, u32),
    stop: Stop,
) -> Result<(), RewrapError> {
    let mut sequence = 0u64;
    // On a stop request, read no further: what was read still completes.
    while !stop.requested() {
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
    Ok(())
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
