//! The read-only scans of `--dry-run` and `key versions-in-use`: every value
//! of a source counted by version, and (dry run) by what a job would do.

use super::job::Source;
use super::report::{Bucket, Report};
use super::source_file::{RecordReader, Value};
use super::source_pg::{self, Pager, TableSql};
use super::{Action, RewrapError, SourceArgs, classify};

/// Counts the values of a source by version (`key versions-in-use`).
pub(super) async fn scan(args: &SourceArgs) -> Result<Report, RewrapError> {
    let source = Source::from_args(args)?;
    scan_source(&source, None, 1000).await
}

/// Reads a source without writing. With `target` (a dry run) it also counts
/// what a job would rewrap, skip or fail; without, only values per version.
pub(super) async fn scan_source(
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
