//! The file pipeline of a rewrap job: a reader thread, the stream, and a
//! writer thread that writes every record in input order and checkpoints the
//! offsets after syncing the output.

use std::path::PathBuf;
use std::time::Instant;

use tokio::sync::mpsc;

use super::bulk::{Answered, Connection, Outgoing};
use super::checkpoint::{Checkpoint, Position};
use super::job::{CHECKPOINT_EVERY, Outcome, first_error, joined, settle};
use super::progress::{Progress, Unit};
use super::report::{Bucket, Report};
use super::source_file::{Record, RecordReader, RecordWriter, Value};
use super::stop::Stop;
use super::{Action, FileFormat, RewrapError, Settings, classify};

pub(super) struct FileJob {
    pub input: PathBuf,
    pub output: PathBuf,
    pub field: String,
    pub format: FileFormat,
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

pub(super) async fn run_file(
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
    let stop = settings.stop.clone();
    let read = tokio::task::spawn_blocking(move || {
        read_records(reader, batches_tx, (batch_size, target), stop)
    });
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
    if settings.stop.requested() {
        // The writer thread stored the checkpoint when the batches ended.
        return Err(RewrapError::Interrupted {
            checkpoint: checkpoint.path().to_owned(),
        });
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
    (batch_size, target): (usize, u32),
    stop: Stop,
) -> Result<(), RewrapError> {
    // On a stop request, read no further: what was read is still written.
    while !stop.requested() {
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
    Ok(())
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
