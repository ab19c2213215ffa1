//! Usage reports for compliance reviewers: `cipherd audit report FILE...`.
//!
//! Reads `response` entries (one per answered request, so nothing is counted
//! twice) and totals them by key, key version, token accessor and operation:
//! requests, batch items, failures and denials, with the first and last time
//! each was seen. Filters narrow the window (`--since`, `--until`) or the
//! subject (`--key`, `--accessor`, `--op`). Accessors are shown as the log
//! holds them: hashed unless the device was enabled with
//! `hmac_accessor=false`; `sys/audit-hash/<device>` turns a known accessor
//! into the value to filter on.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What to include.
#[derive(Debug, Clone, Default)]
pub struct ReportFilter {
    /// Entries at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Entries before this time.
    pub until: Option<OffsetDateTime>,
    /// Only this key.
    pub key: Option<String>,
    /// Only this accessor (as logged, or raw when the log holds it raw).
    pub accessor: Option<String>,
    /// Only this operation (`encrypt`, `decrypt`, `keys/rotate`, ...).
    pub op: Option<String>,
}

/// Parses an RFC 3339 time for `--since`/`--until`.
pub fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time (2026-01-31T00:00:00Z): {e}"))
}

/// One row: a key version used by one accessor for one operation.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReportRow {
    /// `mount/key`, or `-` for requests without a key.
    pub key: String,
    /// The key version, or `-`.
    pub version: String,
    /// The token accessor as logged.
    pub accessor: String,
    /// The token's display name.
    pub display_name: String,
    /// The token's policies.
    pub policies: String,
    /// The operation (`encrypt`, `decrypt`, `sys/policy`, ...).
    pub op: String,
    /// `rest` or `grpc`.
    pub transport: String,
    /// Requests answered.
    pub requests: u64,
    /// Items processed (a batch counts its items, a single request 1).
    pub items: u64,
    /// Requests that failed for another reason than a denial.
    pub failures: u64,
    /// Requests the ACL refused.
    pub denials: u64,
    /// First time seen.
    pub first: String,
    /// Last time seen.
    pub last: String,
}

/// The report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Response entries read (before filters).
    pub entries_read: u64,
    /// Lines that were not audit entries.
    pub unreadable_lines: u64,
    /// Rows, sorted by key, version, accessor, op.
    pub rows: Vec<ReportRow>,
}

/// Why the report could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ReportError {
    /// The file.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// Builds the report over `files`.
pub fn report_files(files: &[&Path], filter: &ReportFilter) -> Result<Report, ReportError> {
    let mut report = Report::default();
    let mut rows: BTreeMap<(String, String, String, String, String), ReportRow> = BTreeMap::new();
    for path in files {
        let error = |e: std::io::Error| ReportError {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let reader = std::io::BufReader::new(std::fs::File::open(path).map_err(error)?);
        for line in reader.split(b'\n') {
            let line = line.map_err(error)?;
            if line.is_empty() {
                continue;
            }
            let Ok(entry) = serde_json::from_slice::<Value>(&line) else {
                report.unreadable_lines += 1;
                continue;
            };
            if entry.get("type").and_then(Value::as_str) != Some("response") {
                continue;
            }
            report.entries_read += 1;
            add_entry(&entry, filter, &mut rows);
        }
    }
    report.rows = rows.into_values().collect();
    Ok(report)
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    let mut at = value;
    for name in path {
        match at.get(name) {
            Some(next) => at = next,
            None => return "",
        }
    }
    at.as_str().unwrap_or("")
}

/// The operation a path names: the path under the mount for transit
/// (`encrypt`, `keys/rotate`), the path itself otherwise.
fn operation(entry: &Value) -> String {
    let path = text(entry, &["request", "path"]);
    let mount = text(entry, &["request", "mount_point"]);
    match path.strip_prefix(mount) {
        Some(rest) if !mount.is_empty() => {
            let key = text(entry, &["cipherd", "key"]);
            let mut segments: Vec<&str> = rest.split('/').filter(|s| *s != key).collect();
            // `datakey/plaintext/k` → `datakey/plaintext`; `keys/k/rotate` → `keys/rotate`.
            segments.retain(|s| !s.is_empty());
            segments.join("/")
        }
        _ => path.to_owned(),
    }
}

fn add_entry(
    entry: &Value,
    filter: &ReportFilter,
    rows: &mut BTreeMap<(String, String, String, String, String), ReportRow>,
) {
    let time = text(entry, &["time"]);
    let parsed_time = OffsetDateTime::parse(time, &Rfc3339).ok();
    if let Some(since) = filter.since
        && parsed_time.is_none_or(|t| t < since)
    {
        return;
    }
    if let Some(until) = filter.until
        && parsed_time.is_none_or(|t| t >= until)
    {
        return;
    }
    let mount = text(entry, &["request", "mount_point"]);
    let key_name = text(entry, &["cipherd", "key"]);
    let key = if key_name.is_empty() {
        "-".to_owned()
    } else {
        format!("{mount}{key_name}")
    };
    if let Some(wanted) = &filter.key
        && wanted != key_name
        && wanted != &key
    {
        return;
    }
    let accessor = text(entry, &["auth", "accessor"]).to_owned();
    if let Some(wanted) = &filter.accessor
        && wanted != &accessor
    {
        return;
    }
    let op = operation(entry);
    if let Some(wanted) = &filter.op
        && wanted != &op
    {
        return;
    }
    let status = entry
        .pointer("/response/status")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let denied =
        status == 403 || entry.pointer("/auth/policy_results/allowed") == Some(&Value::Bool(false));
    let failed = !denied && (status >= 400 || entry.get("error").is_some());
    let items = entry
        .pointer("/cipherd/items")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let versions: Vec<String> = match entry
        .pointer("/cipherd/key_versions")
        .and_then(Value::as_array)
    {
        Some(list) if !list.is_empty() => list.iter().map(|v| v.to_string()).collect(),
        _ => vec!["-".to_owned()],
    };
    let policies = entry
        .pointer("/auth/policies")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let transport = text(entry, &["cipherd", "transport"]).to_owned();
    for version in versions {
        let slot = rows
            .entry((
                key.clone(),
                version.clone(),
                accessor.clone(),
                op.clone(),
                transport.clone(),
            ))
            .or_insert_with(|| ReportRow {
                key: key.clone(),
                version,
                accessor: accessor.clone(),
                display_name: text(entry, &["auth", "display_name"]).to_owned(),
                policies: policies.clone(),
                op: op.clone(),
                transport: transport.clone(),
                first: time.to_owned(),
                ..ReportRow::default()
            });
        slot.requests += 1;
        slot.items += items;
        slot.failures += u64::from(failed);
        slot.denials += u64::from(denied);
        if slot.first.is_empty() || time < slot.first.as_str() {
            time.clone_into(&mut slot.first);
        }
        if time > slot.last.as_str() {
            time.clone_into(&mut slot.last);
        }
    }
}

/// The columns of the table and CSV outputs.
pub const COLUMNS: [&str; 13] = [
    "key",
    "version",
    "accessor",
    "display_name",
    "policies",
    "op",
    "transport",
    "requests",
    "items",
    "failures",
    "denials",
    "first",
    "last",
];

impl ReportRow {
    /// The row's cells, in [`COLUMNS`] order.
    pub fn cells(&self) -> [String; 13] {
        [
            self.key.clone(),
            self.version.clone(),
            self.accessor.clone(),
            self.display_name.clone(),
            self.policies.clone(),
            self.op.clone(),
            self.transport.clone(),
            self.requests.to_string(),
            self.items.to_string(),
            self.failures.to_string(),
            self.denials.to_string(),
            self.first.clone(),
            self.last.clone(),
        ]
    }
}
