//! Offline verification of audit logs: `cipherd audit verify FILE...`.
//!
//! Reads the given files in order as one log, checks every chain link and
//! every checkpoint signature, and reports where the log was altered, where
//! entries were removed, reordered or inserted, and what at its end is not
//! covered by a signature. Links are checked by sequence number, not by
//! position, so a reordering is reported once, as a reordering, and a forged
//! entry that duplicates a sequence number is told apart from the genuine one
//! by the link the next entry carries.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufRead;
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;
use serde_json::Value;

use super::chain::{self, CHECKPOINT_TYPE, CheckpointClaim, GENESIS};

/// What kind of problem a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A line is not a chained entry (bad JSON, missing fields).
    Malformed,
    /// An entry's bytes changed after it was written.
    Altered,
    /// Entries are missing.
    Removed,
    /// An entry is out of order.
    Reordered,
    /// An entry was added that the server did not write.
    Inserted,
    /// A checkpoint's signature does not verify.
    BadSignature,
    /// The log ends with entries no signature covers, or without a final
    /// checkpoint (truncated, or the server did not stop cleanly).
    UnsignedTail,
}

impl FindingKind {
    /// True for findings that prove tampering (an unsigned tail may be a
    /// running server or a crash).
    pub fn is_tampering(self) -> bool {
        self != Self::UnsignedTail
    }
}

/// Where a finding is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What is wrong.
    pub kind: FindingKind,
    /// The file.
    pub file: String,
    /// 1-based line number in that file.
    pub line: usize,
    /// The entry's sequence number, when known.
    pub seq: Option<u64>,
    /// A sentence for the operator.
    pub message: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Lines read.
    pub lines: u64,
    /// Request and response entries.
    pub entries: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints_verified: u64,
    /// The first and last sequence numbers seen.
    pub first_seq: Option<u64>,
    /// See `first_seq`.
    pub last_seq: Option<u64>,
    /// Where the last valid checkpoint is (file, line, seq).
    pub last_checkpoint: Option<(String, usize, u64)>,
    /// Whether the log ends with a final (shutdown) checkpoint.
    pub ends_with_final_checkpoint: bool,
    /// Notes that are not problems (where the log starts, chain restarts).
    pub notes: Vec<String>,
    /// Problems, in the order of the log.
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    /// True when nothing was altered, removed, reordered or inserted.
    pub fn is_intact(&self) -> bool {
        !self.findings.iter().any(|f| f.kind.is_tampering())
    }
}

/// Why verification could not run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read.
    #[error("{path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

#[derive(Debug, Clone)]
struct Location {
    file: usize,
    line: usize,
}

/// An entry seen with a sequence number (several when forged copies exist).
#[derive(Debug, Clone)]
struct Seen {
    hash: [u8; 32],
    at: Location,
}

struct Verifier<'k> {
    public_key: &'k VerifyingKey,
    files: Vec<String>,
    report: VerifyReport,
    /// Hashes by sequence number.
    seen: HashMap<u64, Vec<Seen>>,
    /// Links not yet checkable: seq → (the hash its successor expects, where the successor is).
    awaiting: HashMap<u64, ([u8; 32], Location, u64)>,
    /// Sequence numbers skipped so far, with where the gap was noticed.
    missing: BTreeMap<u64, Location>,
    highest: Option<u64>,
    entries_since_checkpoint: u64,
    /// Whether the entry count since the last checkpoint is known (the log
    /// starts at seq 0, or a checkpoint was seen).
    counting: bool,
    last_was_checkpoint: bool,
    last_checkpoint_final: bool,
    flagged_altered: BTreeSet<u64>,
}

/// Verifies `files` (in order, as one log) against the checkpoint public key.
pub fn verify_files(
    files: &[&Path],
    public_key: &VerifyingKey,
) -> Result<VerifyReport, VerifyError> {
    let mut verifier = Verifier {
        public_key,
        files: files.iter().map(|p| p.display().to_string()).collect(),
        report: VerifyReport::default(),
        seen: HashMap::new(),
        awaiting: HashMap::new(),
        missing: BTreeMap::new(),
        highest: None,
        entries_since_checkpoint: 0,
        counting: false,
        last_was_checkpoint: false,
        last_checkpoint_final: false,
        flagged_altered: BTreeSet::new(),
    };
    for (index, path) in files.iter().enumerate() {
        let read_error = |e: std::io::Error| VerifyError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut reader = std::io::BufReader::new(file);
        let mut buf = Vec::new();
        let mut line = 0;
        loop {
            buf.clear();
            let read = reader.read_until(b'\n', &mut buf).map_err(read_error)?;
            if read == 0 {
                break;
            }
            line += 1;
            let complete = buf.last() == Some(&b'\n');
            if complete {
                buf.pop();
            }
            if buf.is_empty() {
                continue;
            }
            verifier.line(&buf, Location { file: index, line }, complete);
        }
    }
    Ok(verifier.finish())
}

impl Verifier<'_> {
    fn finding(&mut self, kind: FindingKind, at: &Location, seq: Option<u64>, message: String) {
        self.report.findings.push(Finding {
            kind,
            file: self.files[at.file].clone(),
            line: at.line,
            seq,
            message,
        });
    }

    fn line(&mut self, bytes: &[u8], at: Location, complete: bool) {
        self.report.lines += 1;
        let hash = chain::line_hash(bytes);
        let parsed: Option<Value> = serde_json::from_slice(bytes).ok();
        let fields = parsed.as_ref().and_then(|entry| {
            let seq = entry.get("seq")?.as_u64()?;
            let prev = chain::parse_hash_text(entry.get("prev_hash")?.as_str()?)?;
            Some((seq, prev))
        });
        let Some((seq, prev_hash)) = fields else {
            let message = if !complete {
                "the last line is incomplete: the log was cut in the middle of an entry".to_owned()
            } else if parsed.is_none() {
                "not valid JSON: the line was altered, or is not a cipherd audit entry".to_owned()
            } else {
                "no seq/prev_hash: not an entry cipherd wrote (inserted or altered)".to_owned()
            };
            let kind = if complete {
                FindingKind::Malformed
            } else {
                FindingKind::UnsignedTail
            };
            self.finding(kind, &at, None, message);
            self.last_was_checkpoint = false;
            return;
        };
        let entry = parsed.unwrap_or(Value::Null);
        self.report.first_seq.get_or_insert(seq);
        if seq == 0 && prev_hash == GENESIS && self.highest.is_some() {
            self.report.notes.push(format!(
                "{}:{}: a new chain starts (the device was re-enabled or its file replaced)",
                self.files[at.file], at.line
            ));
            self.restart_chain();
        }
        if self.is_exact_copy(seq, hash, &at) {
            return;
        }
        self.check_sequence(seq, &at);
        self.check_link(seq, prev_hash, &at);
        self.resolve_awaiting(seq, hash, &at);
        self.seen.entry(seq).or_default().push(Seen {
            hash,
            at: at.clone(),
        });
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        self.report.last_seq = self.highest;
        if entry.get("type").and_then(Value::as_str) == Some(CHECKPOINT_TYPE) {
            self.checkpoint(&entry, seq, prev_hash, &at);
        } else {
            self.report.entries += 1;
            self.entries_since_checkpoint += 1;
            self.last_was_checkpoint = false;
        }
    }

    fn restart_chain(&mut self) {
        self.close_gaps();
        self.seen.clear();
        self.awaiting.clear();
        self.highest = None;
        self.entries_since_checkpoint = 0;
        self.counting = true;
    }

    /// A byte-for-byte repeat of an entry already read: inserted, and
    /// otherwise ignored so it cannot confuse the links around it.
    fn is_exact_copy(&mut self, seq: u64, hash: [u8; 32], at: &Location) -> bool {
        let Some(original) = self
            .seen
            .get(&seq)
            .and_then(|c| c.iter().find(|c| c.hash == hash))
            .map(|c| c.at.clone())
        else {
            return false;
        };
        let message = format!(
            "a copy of entry seq {seq} (first at {}:{}) was inserted",
            self.files[original.file], original.line
        );
        self.finding(FindingKind::Inserted, at, Some(seq), message);
        self.last_was_checkpoint = false;
        true
    }

    fn check_sequence(&mut self, seq: u64, at: &Location) {
        let Some(highest) = self.highest else {
            if seq == 0 {
                self.counting = true;
            } else {
                self.report.notes.push(format!(
                    "the log starts at seq {seq}: earlier entries are not in the files given"
                ));
            }
            return;
        };
        if seq > highest + 1 {
            for missing in highest + 1..seq {
                self.missing.insert(missing, at.clone());
            }
        } else if seq <= highest {
            if self.missing.remove(&seq).is_some() {
                self.finding(
                    FindingKind::Reordered,
                    at,
                    Some(seq),
                    format!("entry seq {seq} appears after seq {highest}: entries were reordered"),
                );
            } else if !self.seen.contains_key(&seq) {
                // Seen before a chain restart, or never: nothing to compare with.
            } else {
                // A duplicate: decided when the successor's link names the genuine one.
            }
        }
    }

    fn check_link(&mut self, seq: u64, prev_hash: [u8; 32], at: &Location) {
        if seq == 0 {
            if prev_hash != GENESIS {
                self.finding(
                    FindingKind::Altered,
                    at,
                    Some(0),
                    "the first entry of the chain does not link to the chain's start".into(),
                );
            }
            return;
        }
        match self.seen.get(&(seq - 1)) {
            Some(candidates) => {
                let genuine: Vec<Seen> = candidates
                    .iter()
                    .filter(|c| c.hash == prev_hash)
                    .cloned()
                    .collect();
                let forged: Vec<Seen> = candidates
                    .iter()
                    .filter(|c| c.hash != prev_hash)
                    .cloned()
                    .collect();
                if genuine.is_empty() {
                    let target = forged.last().map(|c| c.at.clone()).unwrap_or(at.clone());
                    if self.flagged_altered.insert(seq - 1) {
                        self.finding(
                            FindingKind::Altered,
                            &target,
                            Some(seq - 1),
                            format!(
                                "entry seq {} no longer matches the hash entry seq {seq} recorded for it: it was changed",
                                seq - 1
                            ),
                        );
                    }
                } else if candidates.len() > 1 {
                    for copy in forged {
                        self.finding(
                            FindingKind::Inserted,
                            &copy.at,
                            Some(seq - 1),
                            format!(
                                "a second entry with seq {}: the chain links to the other one, so this one was inserted",
                                seq - 1
                            ),
                        );
                    }
                }
            }
            None => {
                self.awaiting.insert(seq - 1, (prev_hash, at.clone(), seq));
            }
        }
    }

    fn resolve_awaiting(&mut self, seq: u64, hash: [u8; 32], at: &Location) {
        if let Some((expected, _, successor)) = self.awaiting.remove(&seq)
            && expected != hash
            && self.flagged_altered.insert(seq)
        {
            self.finding(
                FindingKind::Altered,
                at,
                Some(seq),
                format!(
                    "entry seq {seq} no longer matches the hash entry seq {successor} recorded for it: it was changed"
                ),
            );
        }
    }

    fn checkpoint(&mut self, entry: &Value, seq: u64, prev_hash: [u8; 32], at: &Location) {
        let checkpoint = entry.get("checkpoint");
        let text = |name: &str| {
            checkpoint
                .and_then(|c| c.get(name))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let device = text("device");
        let signature = text("signature");
        let time = entry
            .get("time")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let entries = checkpoint
            .and_then(|c| c.get("entries"))
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        let is_final = checkpoint
            .and_then(|c| c.get("final"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let claim = CheckpointClaim {
            device: &device,
            seq,
            prev_hash,
            time,
            entries,
            is_final,
        };
        if !chain::verify_checkpoint(self.public_key, &claim, &signature) {
            let key_id = text("key_id");
            let expected = chain::key_id(self.public_key);
            let message = if key_id != expected {
                format!(
                    "checkpoint seq {seq} is signed by key {key_id}, not by the key given ({expected})"
                )
            } else {
                format!(
                    "checkpoint seq {seq}: the signature does not verify: the checkpoint or the chain before it was rewritten"
                )
            };
            self.finding(FindingKind::BadSignature, at, Some(seq), message);
            self.last_was_checkpoint = false;
            return;
        }
        if self.counting && entries != self.entries_since_checkpoint {
            let kind = if entries < self.entries_since_checkpoint {
                FindingKind::Inserted
            } else {
                FindingKind::Removed
            };
            self.finding(
                kind,
                at,
                Some(seq),
                format!(
                    "checkpoint seq {seq} signs {entries} entries since the previous checkpoint, but the log holds {}",
                    self.entries_since_checkpoint
                ),
            );
        }
        self.counting = true;
        self.entries_since_checkpoint = 0;
        self.report.checkpoints_verified += 1;
        self.report.last_checkpoint = Some((self.files[at.file].clone(), at.line, seq));
        self.last_was_checkpoint = true;
        self.last_checkpoint_final = is_final;
    }

    fn close_gaps(&mut self) {
        let missing = std::mem::take(&mut self.missing);
        // Report each run of consecutive missing numbers once.
        let mut runs: Vec<(u64, u64, Location)> = Vec::new();
        for (seq, at) in missing {
            match runs.last_mut() {
                Some((_, end, _)) if *end + 1 == seq => *end = seq,
                _ => runs.push((seq, seq, at)),
            }
        }
        for (start, end, at) in runs {
            let message = if start == end {
                format!("entry seq {start} is missing: it was removed")
            } else {
                format!("entries seq {start} to {end} are missing: they were removed")
            };
            self.finding(FindingKind::Removed, &at, Some(start), message);
        }
    }

    fn finish(mut self) -> VerifyReport {
        self.close_gaps();
        if self.report.lines > 0 {
            self.report.ends_with_final_checkpoint =
                self.last_was_checkpoint && self.last_checkpoint_final;
            if !self.report.ends_with_final_checkpoint {
                let tail = self.entries_since_checkpoint;
                let last_file = self.files.len() - 1;
                let message = match &self.report.last_checkpoint {
                    Some((file, line, seq)) => format!(
                        "{tail} entries after the last checkpoint ({file}:{line}, seq {seq}) are not covered by a signature, and the log does not end with a final checkpoint: it was truncated, or the server is running or did not stop cleanly"
                    ),
                    None => format!(
                        "no valid checkpoint at all: none of the {tail} entries is covered by a signature"
                    ),
                };
                let at = Location {
                    file: last_file,
                    line: 0,
                };
                self.finding(FindingKind::UnsignedTail, &at, self.highest, message);
            }
        }
        let order: HashMap<String, usize> = self
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), i))
            .collect();
        self.report.findings.sort_by_key(|f| {
            (
                order.get(&f.file).copied().unwrap_or(usize::MAX),
                if f.line == 0 { usize::MAX } else { f.line },
            )
        });
        self.report
    }
}
