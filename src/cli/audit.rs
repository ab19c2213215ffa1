//! `cipherd audit ...`: offline verification of audit logs and usage
//! reports for compliance reviewers (both read files, no server needed), and
//! `audit signing-key`, which fetches the checkpoint public key from a server.
//!
//! `verify` exits 0 when the log is intact and ends with a final checkpoint,
//! 1 when it was tampered with (the first finding is named), and 3 when it is
//! intact so far but its tail is not covered by a signature (a running server,
//! a crash, or a truncation).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::client::Client;
use crate::audit::chain::parse_public_key;
use crate::audit::report::{self, COLUMNS, ReportFilter};
use crate::audit::verify::{self, VerifyReport};

/// `cipherd audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every chain link and checkpoint signature of audit log files.
    Verify(VerifyArgs),
    /// Who used which key and version, how often, with which operations.
    Report(ReportArgs),
    /// Print the server's checkpoint public key (for `audit verify --public-key`).
    SigningKey,
}

/// `cipherd audit verify FILE... --public-key KEY`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Log files in order (rotated files first, the current file last).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The checkpoint public key: base64 (as `sys/audit/signing-key` shows
    /// it), or a file holding it.
    #[arg(long)]
    public_key: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = VerifyFormat::Text)]
    format: VerifyFormat,
}

/// Output of `audit verify`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum VerifyFormat {
    /// A summary and one line per finding.
    Text,
    /// The whole report as JSON.
    Json,
}

/// `cipherd audit report FILE...`
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Log files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Only entries at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Only entries before this RFC 3339 time.
    #[arg(long)]
    until: Option<String>,
    /// Only this key (`name` or `mount/name`).
    #[arg(long)]
    key: Option<String>,
    /// Only this token accessor, as the log holds it (`hmac-sha256:...`;
    /// `sys/audit-hash/<device>` hashes a known accessor).
    #[arg(long)]
    accessor: Option<String>,
    /// Only this operation (`encrypt`, `decrypt`, `rewrap`, `keys/rotate`, ...).
    #[arg(long)]
    op: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    format: ReportFormat,
}

/// Output of `audit report`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReportFormat {
    /// Aligned columns.
    Table,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// JSON.
    Json,
}

/// Runs an audit command.
pub(super) async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify(args) => verify_command(&args),
        AuditCommand::Report(args) => report_command(&args),
        AuditCommand::SigningKey => {
            let client = Client::from_env()?;
            let reply = client.call("GET", "sys/audit/signing-key", None).await?;
            let key = reply["data"]["public_key"]
                .as_str()
                .context("the server's reply has no public_key")?;
            println!("{key}");
            Ok(())
        }
    }
}

fn verify_command(args: &VerifyArgs) -> anyhow::Result<()> {
    let key_text = match std::fs::read_to_string(&args.public_key) {
        Ok(text) => text,
        Err(_) => args.public_key.clone(),
    };
    let public_key = parse_public_key(&key_text).context(
        "--public-key must be the base64 Ed25519 public key from sys/audit/signing-key, or a file holding it",
    )?;
    let files: Vec<&std::path::Path> = args.files.iter().map(PathBuf::as_path).collect();
    let report = verify::verify_files(&files, &public_key)?;
    match args.format {
        VerifyFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        VerifyFormat::Text => print_verify(&report),
    }
    let code = if !report.is_intact() {
        1
    } else if !report.findings.is_empty() {
        3
    } else {
        0
    };
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

fn print_verify(report: &VerifyReport) {
    let verdict = if !report.is_intact() {
        "TAMPERED"
    } else if report.findings.is_empty() {
        "OK"
    } else {
        "INTACT, TAIL UNSIGNED"
    };
    println!("{verdict}");
    println!(
        "  lines {}, entries {}, checkpoints verified {}, seq {}..{}",
        report.lines,
        report.entries,
        report.checkpoints_verified,
        report.first_seq.map_or("-".into(), |s| s.to_string()),
        report.last_seq.map_or("-".into(), |s| s.to_string()),
    );
    for note in &report.notes {
        println!("  note: {note}");
    }
    if let Some(first) = report.findings.iter().find(|f| f.kind.is_tampering()) {
        println!(
            "  first tampering: {}:{}: {}",
            first.file, first.line, first.message
        );
    }
    for finding in &report.findings {
        let place = if finding.line == 0 {
            format!("{} (end)", finding.file)
        } else {
            format!("{}:{}", finding.file, finding.line)
        };
        println!(
            "  {:<13} {place}: {}",
            format!("{:?}", finding.kind).to_lowercase(),
            finding.message
        );
    }
}

fn report_command(args: &ReportArgs) -> anyhow::Result<()> {
    let filter = ReportFilter {
        since: args
            .since
            .as_deref()
            .map(report::parse_time)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        until: args
            .until
            .as_deref()
            .map(report::parse_time)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        key: args.key.clone(),
        accessor: args.accessor.clone(),
        op: args.op.clone(),
    };
    let files: Vec<&std::path::Path> = args.files.iter().map(PathBuf::as_path).collect();
    let report = report::report_files(&files, &filter)?;
    match args.format {
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "entries_read": report.entries_read,
                "unreadable_lines": report.unreadable_lines,
                "rows": report.rows,
            }))?
        ),
        ReportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(std::io::stdout().lock());
            writer.write_record(COLUMNS)?;
            for row in &report.rows {
                writer.write_record(row.cells())?;
            }
            writer.flush()?;
        }
        ReportFormat::Table => {
            let cells: Vec<[String; 13]> = report.rows.iter().map(|r| r.cells()).collect();
            let mut widths: Vec<usize> = COLUMNS.iter().map(|c| c.len()).collect();
            for row in &cells {
                for (width, cell) in widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.chars().count());
                }
            }
            let line = |row: &[String]| {
                row.iter()
                    .zip(&widths)
                    .map(|(cell, width)| format!("{cell:<width$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_owned()
            };
            let header: Vec<String> = COLUMNS.iter().map(|c| (*c).to_owned()).collect();
            println!("{}", line(&header));
            for row in &cells {
                println!("{}", line(row));
            }
            if report.unreadable_lines > 0 {
                eprintln!(
                    "note: {} lines were not audit entries (run `cipherd audit verify`)",
                    report.unreadable_lines
                );
            }
        }
    }
    Ok(())
}
