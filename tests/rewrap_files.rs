//! `cipherd rewrap --input/--output` on JSON-lines and CSV files against a
//! real server: only the ciphertext changes, bad records are reported and
//! copied, a killed run resumes without redoing or losing records, and a
//! file of about 200 MB goes through in bounded memory (peak RSS of the job
//! process, from /proc).

#[path = "common/process.rs"]
mod process;
#[path = "common/rewrap.rs"]
mod rewrap;

use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rewrap::{Job, JobFiles, KEY, Server, assert_success, version};

/// Encrypts `row-<i>` for `i` in `ids` at version `i % 3 + 1`.
async fn ciphertexts(server: &Server, ids: impl Iterator<Item = u64>) -> Vec<String> {
    let items: Vec<(String, u32)> = ids
        .map(|i| (format!("row-{i}"), (i % 3) as u32 + 1))
        .collect();
    server.encrypt(KEY, &items).await
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// One test's input, output and job files.
struct Files {
    input: PathBuf,
    output: PathBuf,
    job: JobFiles,
}

impl Files {
    /// Files named `in.<ext>` and `out.<ext>`.
    fn new(ext: &str) -> Self {
        let job = JobFiles::new();
        Self {
            input: job.dir.path().join(format!("in.{ext}")),
            output: job.dir.path().join(format!("out.{ext}")),
            job,
        }
    }

    /// `cipherd rewrap` of field `ct` from input to output.
    fn command(&self, server: &Server, extra: &[&str]) -> std::process::Command {
        let source = [
            "--input",
            path_arg(&self.input),
            "--output",
            path_arg(&self.output),
            "--field",
            "ct",
        ];
        self.job.command(server, &source, extra)
    }

    fn run(&self, server: &Server, extra: &[&str]) -> std::process::Output {
        self.command(server, extra)
            .output()
            .expect("run cipherd rewrap")
    }

    fn report(&self) -> serde_json::Value {
        self.job.report()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jsonl_changes_only_the_ciphertexts() {
    let server = Server::start().await;
    let cts = ciphertexts(&server, [3u64, 4, 6].into_iter()).await; // v1, v2, v1
    let v3 = ciphertexts(&server, [5u64].into_iter()).await.remove(0);
    let lines = [
        format!(
            r#"{{"id": 1, "ct": "{}", "n": 1.50, "u": "h\u00e9"}}"#,
            cts[0]
        ),
        String::new(),
        r#"{"id":2,"ct":null}"#.to_owned(),
        "not json".to_owned(),
        format!(r#"{{"ct": "{v3}", "x": [1,2]}}"#),
        format!(r#"{{"a":{{"ct":"x"}},"ct":"{}"}}"#, cts[1]),
        r#"{"id":7,"ct":"vault:v1:AAAA"}"#.to_owned(),
        format!(r#"{{"id":8,"ct":"{}"}}"#, cts[2]),
    ];
    let files = Files::new("jsonl");
    // The last line has no newline: it must not get one.
    std::fs::write(&files.input, lines.join("\n")).expect("write input");

    let run = files.run(&server, &[]);
    assert!(!run.status.success(), "two bad records must fail the run");
    let done = files.report();
    assert_eq!(done["totals"]["rewrapped"], 3, "{done}");
    assert_eq!(done["totals"]["failed"], 2, "{done}");
    assert_eq!(done["totals"]["skipped"], 2, "{done}");
    let locations: Vec<&str> = done["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .filter_map(|f| f["location"].as_str())
        .collect();
    assert_eq!(locations, ["line 4", "line 7"]);

    let written = std::fs::read_to_string(&files.output).expect("read output");
    assert!(!written.ends_with('\n'));
    let out_lines: Vec<&str> = written.split('\n').collect();
    assert_eq!(out_lines.len(), lines.len());
    let mut new = Vec::new();
    for (index, (before, after)) in lines.iter().zip(&out_lines).enumerate() {
        if [0, 5, 7].contains(&index) {
            let value: serde_json::Value = serde_json::from_str(after).expect("JSON line");
            let ct = value["ct"].as_str().expect("ct").to_owned();
            assert_eq!(version(&ct), 3);
            let old = cts[[0, 5, 7].iter().position(|i| *i == index).expect("index")].as_str();
            // Everything but the value is byte for byte the input.
            assert_eq!(after.replace(&ct, old), *before);
            new.push(ct);
        } else {
            assert_eq!(after, before, "line {} changed", index + 1);
        }
    }
    let plaintexts = server.decrypt(&new).await;
    assert_eq!(
        plaintexts,
        ["row-3", "row-4", "row-6"].map(|p| Some(p.to_owned()))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_rewraps_one_column() {
    let server = Server::start().await;
    let cts = ciphertexts(&server, [3u64, 4].into_iter()).await;
    let files = Files::new("csv");
    let text = format!(
        "id,ct,note\n1,{},\"a, b\"\n2,,empty\n3,garbage,\"say \"\"hi\"\"\"\n4,{},\"two\nlines\"\n",
        cts[0], cts[1]
    );
    std::fs::write(&files.input, &text).expect("write input");
    // The key as the positional KEY, as in single mode.
    let command = files.command(&server, &[]);
    let args: Vec<&std::ffi::OsStr> = command.get_args().filter(|a| *a != "--key").collect();
    let run = server.run(
        &args
            .iter()
            .map(|a| a.to_str().expect("UTF-8"))
            .collect::<Vec<_>>(),
    );
    assert!(!run.status.success(), "the garbage value must fail the run");
    let done = files.report();
    assert_eq!(done["totals"]["rewrapped"], 2, "{done}");
    assert_eq!(done["failures"][0]["location"], "record 3");

    let mut reader = csv::Reader::from_path(&files.output).expect("open output");
    assert_eq!(reader.headers().expect("header"), vec!["id", "ct", "note"]);
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
    assert_eq!(records.len(), 4);
    let column = |i: usize| -> Vec<&str> { records.iter().map(|r| &r[i]).collect() };
    assert_eq!(column(0), ["1", "2", "3", "4"]);
    assert_eq!(column(2), ["a, b", "empty", "say \"hi\"", "two\nlines"]);
    assert_eq!(records[1][1].len(), 0);
    assert_eq!(&records[2][1], "garbage");
    let new = vec![records[0][1].to_owned(), records[3][1].to_owned()];
    assert!(new.iter().all(|c| version(c) == 3));
    assert_eq!(
        server.decrypt(&new).await,
        [Some("row-3".to_owned()), Some("row-4".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_file_job_resumes_where_it_stopped() {
    stopped_then_resumed(Stop::Kill).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn terminated_file_job_stops_cleanly_and_resumes() {
    stopped_then_resumed(Stop::Terminate).await;
}

/// How the first run of a job is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGKILL: nothing runs in the job.
    Kill,
    /// SIGTERM: the job finishes the batches in flight and checkpoints them.
    Terminate,
}

/// A rate-limited job stopped once it has checkpointed 6,000 records, then
/// resumed: every line once, in order, rewrapped; what was written before
/// the checkpoint untouched.
async fn stopped_then_resumed(stop: Stop) {
    const LINES: u64 = 30_000;
    let server = Server::start().await;
    let cts = ciphertexts(&server, 1..=LINES).await;
    let files = Files::new("jsonl");
    let mut text = String::new();
    for (i, ct) in (1..=LINES).zip(&cts) {
        text.push_str(&format!("{{\"id\":{i},\"ct\":\"{ct}\"}}\n"));
    }
    std::fs::write(&files.input, &text).expect("write input");

    let mut job = Job::spawn(files.command(&server, &["--batch-size", "500", "--rate", "8000"]));
    job.wait_until(Duration::from_secs(120), || {
        files
            .job
            .checkpoint()
            .and_then(|c| c["position"]["records"].as_u64())
            .is_some_and(|records| records >= 6_000)
    });
    match stop {
        Stop::Kill => job.kill(),
        Stop::Terminate => {
            let sent = std::process::Command::new("kill")
                .args(["-TERM", &job.child.id().to_string()])
                .status()
                .expect("run kill");
            assert!(sent.success());
            let status = job.child.wait().expect("wait for the job");
            assert_eq!(status.code(), Some(1), "a stopped job is not a success");
        }
    }
    let position = files.job.checkpoint().expect("checkpoint after the stop");
    let records = position["position"]["records"].as_u64().expect("records");
    let output_offset = position["position"]["output_offset"]
        .as_u64()
        .expect("offset") as usize;
    assert!(records < LINES, "the kill did not land mid-way");
    let partial = std::fs::read(&files.output).expect("partial output");
    assert!(partial.len() >= output_offset);
    if stop == Stop::Terminate {
        // A clean stop checkpoints everything it wrote.
        assert_eq!(partial.len(), output_offset);
    }

    assert_success(&files.run(&server, &["--batch-size", "500", "--resume"]));
    let done = files.report();
    let remaining = (records + 1..=LINES).filter(|i| i % 3 != 2).count() as u64;
    assert_eq!(done["totals"]["rewrapped"], remaining, "{done}");
    assert_eq!(done["totals"]["seen"], LINES - records);

    let written = std::fs::read(&files.output).expect("output");
    // What the first run wrote before its checkpoint is kept as it was.
    assert_eq!(written[..output_offset], partial[..output_offset]);
    let written = String::from_utf8(written).expect("UTF-8 output");
    let mut ids = Vec::new();
    let mut new = Vec::new();
    for line in written.lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        ids.push(value["id"].as_u64().expect("id"));
        let ct = value["ct"].as_str().expect("ct").to_owned();
        assert_eq!(version(&ct), 3);
        new.push(ct);
    }
    assert_eq!(
        ids,
        (1..=LINES).collect::<Vec<_>>(),
        "lines lost or repeated"
    );
    let plaintexts = server.decrypt(&new).await;
    for (i, plaintext) in (1..=LINES).zip(plaintexts) {
        assert_eq!(plaintext, Some(format!("row-{i}")));
    }
    assert!(!files.job.checkpoint.exists());
}

/// Peak resident set of process `pid` in KiB (VmHWM), while it lives.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_200_mb_file_goes_through_in_bounded_memory() {
    const LINES: usize = 200_000;
    const LIMIT_KIB: u64 = 100 * 1024;
    let server = Server::start().await;
    // A tenth of the lines need a rewrap, under 1,000 distinct ciphertexts.
    let old = server
        .encrypt(
            KEY,
            &(0..1000)
                .map(|i| (format!("old-{i}"), 1))
                .collect::<Vec<_>>(),
        )
        .await;
    let current = ciphertexts(&server, [5u64].into_iter()).await.remove(0);
    let files = Files::new("jsonl");
    {
        let mut file = BufWriter::new(std::fs::File::create(&files.input).expect("create input"));
        let pad = "x".repeat(920);
        for i in 0..LINES {
            let ct = if i % 10 == 0 {
                &old[i / 10 % 1000]
            } else {
                &current
            };
            writeln!(file, "{{\"id\":{i},\"pad\":\"{pad}\",\"ct\":\"{ct}\"}}").expect("write");
        }
        file.flush().expect("flush");
    }
    let size = std::fs::metadata(&files.input).expect("input size").len();
    assert!(size > 190_000_000, "input is only {size} bytes");

    let mut job = Job::spawn(files.command(&server, &[]));
    let pid = job.child.id();
    let mut peak = 0;
    let mut samples = 0;
    let deadline = Instant::now() + Duration::from_secs(170);
    let status = loop {
        if let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
            samples += 1;
        }
        if let Some(status) = job.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the job took too long");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the job failed: {status}");
    assert!(samples >= 5, "only {samples} memory samples");
    eprintln!("peak RSS {peak} KiB over {samples} samples for a {size}-byte file");
    assert!(
        peak < LIMIT_KIB,
        "peak RSS {peak} KiB for a {size}-byte file: not bounded"
    );
    let done = files.report();
    assert_eq!(done["totals"]["seen"], LINES as u64);
    assert_eq!(done["totals"]["rewrapped"], (LINES / 10) as u64);
    assert_eq!(
        std::fs::metadata(&files.output).expect("output size").len(),
        size,
        "same-length ciphertexts: the output is as long as the input"
    );
}
