//! What a rewrap job (or a scan) saw, per source version: the counters behind
//! the progress display, the summary table printed at the end, and the
//! `--report-json` file. Failures are listed by location (primary key or
//! line number) with the server's reason; values never appear here.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::RewrapError;

/// Failures listed one by one in the report; past this only the count grows.
const MAX_LISTED_FAILURES: usize = 1000;

/// The group a value falls into, by what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Bucket {
    /// A `vault:v<N>:` string of version N.
    Version(u32),
    /// Something that is not a `vault:v<N>:` string.
    Malformed,
    /// NULL, an empty string, or a record without the field.
    Empty,
}

impl Bucket {
    fn label(self) -> String {
        match self {
            Self::Version(n) => format!("v{n}"),
            Self::Malformed => "not vault:vN:".to_owned(),
            Self::Empty => "empty".to_owned(),
        }
    }
}

/// Counters of one bucket.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub(super) struct Counts {
    /// Values read.
    pub seen: u64,
    /// Values rewritten with a new ciphertext (or, in a dry run, that would be).
    pub rewrapped: u64,
    /// Values left alone: already at (or past) the target version, or empty.
    pub skipped: u64,
    /// Values that could not be rewrapped; left untouched.
    pub failed: u64,
    /// Rewrapped values not written because the row changed meanwhile.
    pub changed: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.seen += other.seen;
        self.rewrapped += other.rewrapped;
        self.skipped += other.skipped;
        self.failed += other.failed;
        self.changed += other.changed;
    }
}

/// One value that could not be rewrapped.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Failure {
    /// `key=<primary key>` or `line <n>`.
    pub location: String,
    /// Its version, when it had one.
    pub version: Option<u32>,
    /// Why (the server's message, or what is wrong with the value).
    pub reason: String,
}

/// Everything counted so far.
#[derive(Debug, Default)]
pub(super) struct Report {
    buckets: BTreeMap<Bucket, Counts>,
    failures: Vec<Failure>,
    unlisted_failures: u64,
}

impl Report {
    /// Counters of `bucket`, for updating.
    pub(super) fn counts(&mut self, bucket: Bucket) -> &mut Counts {
        self.buckets.entry(bucket).or_default()
    }

    /// Records a failure in `bucket`.
    pub(super) fn fail(&mut self, bucket: Bucket, location: String, reason: String) {
        self.counts(bucket).failed += 1;
        if self.failures.len() < MAX_LISTED_FAILURES {
            let version = match bucket {
                Bucket::Version(n) => Some(n),
                Bucket::Malformed | Bucket::Empty => None,
            };
            self.failures.push(Failure {
                location,
                version,
                reason,
            });
        } else {
            self.unlisted_failures += 1;
        }
    }

    /// The sum over all buckets.
    pub(super) fn totals(&self) -> Counts {
        let mut total = Counts::default();
        for counts in self.buckets.values() {
            total.add(counts);
        }
        total
    }

    /// The summary table (Markdown-style, readable as plain text).
    pub(super) fn table(&self, dry_run: bool) -> String {
        let rewrapped = if dry_run { "would rewrap" } else { "rewrapped" };
        let mut out = format!(
            "| source version | seen | {rewrapped} | skipped | failed | changed meanwhile |\n|---|---:|---:|---:|---:|---:|\n"
        );
        let row = |out: &mut String, label: &str, c: &Counts| {
            out.push_str(&format!(
                "| {label} | {} | {} | {} | {} | {} |\n",
                c.seen, c.rewrapped, c.skipped, c.failed, c.changed
            ));
        };
        for (bucket, counts) in &self.buckets {
            row(&mut out, &bucket.label(), counts);
        }
        row(&mut out, "total", &self.totals());
        out
    }

    /// The table of `key versions-in-use`: values per version.
    pub(super) fn versions_table(&self) -> String {
        let mut out = String::from("| version | values |\n|---|---:|\n");
        for (bucket, counts) in &self.buckets {
            out.push_str(&format!("| {} | {} |\n", bucket.label(), counts.seen));
        }
        out
    }

    /// The lowest version any value is under.
    pub(super) fn lowest_version(&self) -> Option<u32> {
        self.buckets.keys().find_map(|bucket| match bucket {
            Bucket::Version(n) => Some(*n),
            Bucket::Malformed | Bucket::Empty => None,
        })
    }

    /// Writes the JSON report to `path`.
    pub(super) fn write_json(
        &self,
        path: &Path,
        header: &ReportHeader<'_>,
        elapsed: Duration,
    ) -> Result<(), RewrapError> {
        #[derive(Serialize)]
        struct Row<'a> {
            source_version: String,
            #[serde(flatten)]
            counts: &'a Counts,
        }
        #[derive(Serialize)]
        struct Json<'a> {
            #[serde(flatten)]
            header: &'a ReportHeader<'a>,
            elapsed_seconds: f64,
            totals: Counts,
            by_version: Vec<Row<'a>>,
            failures: &'a [Failure],
            failures_not_listed: u64,
        }
        let json = Json {
            header,
            elapsed_seconds: elapsed.as_secs_f64(),
            totals: self.totals(),
            by_version: self
                .buckets
                .iter()
                .map(|(bucket, counts)| Row {
                    source_version: bucket.label(),
                    counts,
                })
                .collect(),
            failures: &self.failures,
            failures_not_listed: self.unlisted_failures,
        };
        let io = |source| RewrapError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::File::create(path).map_err(io)?;
        serde_json::to_writer_pretty(&mut file, &json).map_err(|e| io(std::io::Error::other(e)))?;
        file.write_all(b"\n").map_err(io)
    }
}

/// What the job was, for the JSON report.
#[derive(Debug, Serialize)]
pub(super) struct ReportHeader<'a> {
    pub source: &'static str,
    pub mount: &'a str,
    pub key: &'a str,
    pub target_version: u32,
    pub dry_run: bool,
    pub resumed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_table_follow_the_buckets() {
        let mut report = Report::default();
        report.counts(Bucket::Version(1)).seen += 3;
        report.counts(Bucket::Version(1)).rewrapped += 2;
        report.fail(Bucket::Version(1), "line 3".into(), "bad".into());
        report.counts(Bucket::Version(3)).seen += 1;
        report.counts(Bucket::Version(3)).skipped += 1;
        let totals = report.totals();
        assert_eq!(
            (totals.seen, totals.rewrapped, totals.skipped, totals.failed),
            (4, 2, 1, 1)
        );
        let table = report.table(false);
        assert!(table.contains("| v1 | 3 | 2 | 0 | 1 | 0 |"), "{table}");
        assert!(table.contains("| total | 4 | 2 | 1 | 1 | 0 |"), "{table}");
        assert_eq!(report.lowest_version(), Some(1));
    }
}
