//! `cipherd rewrap --postgres` against a real PostgreSQL and a real server:
//! a full rewrap of 100,000 rows across three key versions, a run SIGKILLed
//! halfway and resumed, application writes racing the job, and corrupted
//! values.
//!
//! Its own `main` (harness = false) owns the cluster guard, so the cluster
//! started for this binary is stopped however the tests end; each test
//! catches its own panic, and the closing line has cargo's format.

#[path = "common/postgres.rs"]
mod postgres;
#[path = "common/process.rs"]
mod process;
#[path = "common/rewrap.rs"]
mod rewrap;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use postgres::{Cluster, connect};
use rewrap::{Job, JobFiles, KEY, Server, assert_success, version};

/// Rows of the big tables.
const ROWS: i64 = 100_000;

struct Context {
    cluster: Cluster,
    runtime: tokio::runtime::Runtime,
}

type Test = fn(&Context);

const TESTS: &[(&str, Test)] = &[
    (
        "full_rewrap_of_100k_rows_across_three_versions",
        full_rewrap,
    ),
    (
        "killed_run_resumes_and_rewraps_each_row_once",
        killed_and_resumed,
    ),
    (
        "application_writes_during_the_job_are_kept",
        concurrent_updates,
    ),
    (
        "corrupted_values_are_reported_and_left_alone",
        corrupted_values,
    ),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in TESTS {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    // Positional arguments filter by substring, as libtest does; flags (and
    // the values of the flags that take one) are ignored.
    let mut filters = Vec::new();
    let mut skip_value = false;
    for arg in &args {
        if skip_value {
            skip_value = false;
        } else if matches!(
            arg.as_str(),
            "--skip" | "--test-threads" | "--format" | "--color" | "--logfile"
        ) {
            skip_value = true;
        } else if !arg.starts_with('-') {
            filters.push(arg.clone());
        }
    }
    let selected: Vec<_> = TESTS
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    let started = Instant::now();
    println!("\nrunning {} tests", selected.len());
    let (mut passed, mut failed) = (0, Vec::new());
    if !selected.is_empty() {
        let context = Context {
            cluster: Cluster::start(),
            runtime: tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime"),
        };
        for (name, test) in &selected {
            let began = Instant::now();
            match std::panic::catch_unwind(AssertUnwindSafe(|| test(&context))) {
                Ok(()) => {
                    println!(
                        "test {name} ... ok ({:.1} s)",
                        began.elapsed().as_secs_f64()
                    );
                    passed += 1;
                }
                Err(_) => {
                    println!("test {name} ... FAILED");
                    failed.push(*name);
                }
            }
        }
        // The cluster guard drops here, before the process exits.
    }
    let outcome = if failed.is_empty() { "ok" } else { "FAILED" };
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {outcome}. {passed} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        failed.len(),
        TESTS.len() - selected.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The plaintext of row `id`.
fn plaintext(id: i64) -> String {
    format!("row-{id}")
}

/// Creates table `t (id bigint primary key, c text)` in a fresh database
/// with rows `1..=rows`, row `id` encrypted under version `id % 3 + 1`;
/// returns the database URL.
async fn table(context: &Context, server: &Server, name: &str, rows: i64) -> String {
    let url = context.cluster.database(name).await;
    let client = connect(&url).await;
    client
        .batch_execute("CREATE TABLE t (id bigint PRIMARY KEY, c text)")
        .await
        .expect("create table");
    let items: Vec<(String, u32)> = (1..=rows)
        .map(|id| (plaintext(id), (id % 3) as u32 + 1))
        .collect();
    let ciphertexts = server.encrypt(KEY, &items).await;
    let ids: Vec<i64> = (1..=rows).collect();
    for (ids, values) in ids.chunks(20_000).zip(ciphertexts.chunks(20_000)) {
        client
            .execute(
                "INSERT INTO t (id, c) SELECT * FROM unnest($1::bigint[], $2::text[])",
                &[&ids, &values],
            )
            .await
            .expect("insert rows");
    }
    url
}

/// Every row, by id.
async fn rows(url: &str) -> HashMap<i64, Option<String>> {
    connect(url)
        .await
        .query("SELECT id, c FROM t", &[])
        .await
        .expect("select rows")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// Asserts that every row in `ids` is at version 3 and decrypts to `expect(id)`.
async fn assert_rows(
    server: &Server,
    rows: &HashMap<i64, Option<String>>,
    ids: impl Iterator<Item = i64>,
    expect: impl Fn(i64) -> String,
    at_version: Option<u32>,
) {
    let ids: Vec<i64> = ids.collect();
    let values: Vec<String> = ids
        .iter()
        .map(|id| {
            rows.get(id)
                .unwrap_or_else(|| panic!("row {id} is missing"))
                .clone()
                .unwrap_or_else(|| panic!("row {id} is NULL"))
        })
        .collect();
    if let Some(wanted) = at_version {
        for (id, value) in ids.iter().zip(&values) {
            assert_eq!(version(value), wanted, "row {id} is not at v{wanted}");
        }
    }
    let plaintexts = server.decrypt(&values).await;
    for (id, plaintext) in ids.iter().zip(plaintexts) {
        assert_eq!(plaintext, Some(expect(*id)), "row {id} decrypts wrongly");
    }
}

/// One test's server, table and job files.
struct Scenario {
    server: Server,
    url: String,
    files: JobFiles,
}

impl Scenario {
    /// A server, and table `t` of `rows` rows in a new database `name`.
    async fn new(context: &Context, name: &str, rows: i64) -> Self {
        let server = Server::start().await;
        let url = table(context, &server, name, rows).await;
        Self {
            server,
            url,
            files: JobFiles::new(),
        }
    }

    /// The source flags of table `t`.
    fn source(&self) -> [&str; 8] {
        [
            "--postgres",
            &self.url,
            "--table",
            "t",
            "--column",
            "c",
            "--key-column",
            "id",
        ]
    }

    fn command(&self, extra: &[&str]) -> std::process::Command {
        self.files.command(&self.server, &self.source(), extra)
    }

    /// Runs the job to its end.
    fn run(&self, extra: &[&str]) -> std::process::Output {
        self.command(extra).output().expect("run cipherd rewrap")
    }

    /// The last JSON report.
    fn report(&self) -> serde_json::Value {
        self.files.report()
    }

    /// The checkpoint's last key, if there is a checkpoint with one.
    fn last_key(&self) -> Option<i64> {
        self.files
            .checkpoint()
            .and_then(|c| c["position"]["last_key"].as_str().map(str::to_owned))
            .and_then(|key| key.parse().ok())
    }
}

fn full_rewrap(context: &Context) {
    context.runtime.block_on(async {
        let scenario = Scenario::new(context, "rewrap_full", ROWS).await;
        let (server, url) = (&scenario.server, &scenario.url);

        // versions-in-use sees the three versions.
        let mut scan = vec!["key", "versions-in-use", "--key", KEY];
        scan.extend(scenario.source());
        let scan = server.run(&scan);
        assert_success(&scan);
        let scan = String::from_utf8_lossy(&scan.stdout);
        for expected in ["| v1 | 33333 |", "| v2 | 33334 |", "| v3 | 33333 |"] {
            assert!(scan.contains(expected), "{expected} missing from\n{scan}");
        }
        assert!(scan.contains("rewrap them before raising"), "{scan}");

        // A dry run counts and writes nothing.
        assert_success(&scenario.run(&["--dry-run"]));
        let dry = scenario.report();
        assert_eq!(dry["totals"]["rewrapped"], 66_667);
        assert_eq!(dry["totals"]["skipped"], 33_333);
        assert_eq!(
            rows(url)
                .await
                .values()
                .flatten()
                .filter(|c| version(c) == 3)
                .count(),
            33_333
        );

        let output = scenario.run(&["--batch-size", "1000"]);
        assert_success(&output);
        // Not a terminal: plain progress lines on stderr, the last one final.
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(log.contains("rewrap: 100000 rows of 100000;"), "{log}");
        let summary = String::from_utf8_lossy(&output.stdout);
        assert!(
            summary.contains("| total | 100000 | 66667 | 33333 | 0 | 0 |"),
            "{summary}"
        );
        let done = scenario.report();
        assert_eq!(done["totals"]["seen"], 100_000);
        assert_eq!(done["totals"]["rewrapped"], 66_667);
        assert_eq!(done["totals"]["failed"], 0);
        assert!(
            !scenario.files.checkpoint.exists(),
            "a finished job leaves no checkpoint"
        );

        let after = rows(url).await;
        assert_eq!(after.len(), ROWS as usize);
        assert_rows(server, &after, 1..=ROWS, plaintext, Some(3)).await;

        // A second run finds nothing to do.
        assert_success(&scenario.run(&[]));
        assert_eq!(scenario.report()["totals"]["rewrapped"], 0);
        assert_eq!(rows(url).await, after);
    });
}

fn killed_and_resumed(context: &Context) {
    context.runtime.block_on(async {
        let scenario = Scenario::new(context, "rewrap_resume", ROWS).await;
        let (server, url) = (&scenario.server, &scenario.url);

        // Slowed down so that the kill lands mid-way.
        let mut job = Job::spawn(scenario.command(&["--rate", "20000", "--batch-size", "500"]));
        job.wait_until(Duration::from_secs(120), || {
            scenario.last_key().is_some_and(|key| key >= 20_000)
        });
        job.kill();
        let last_key = scenario.last_key().expect("checkpoint after the kill");

        let killed = rows(url).await;
        assert_eq!(killed.len(), ROWS as usize);
        let at_latest: Vec<i64> = killed
            .iter()
            .filter(|(_, c)| c.as_deref().is_some_and(|c| version(c) == 3))
            .map(|(id, _)| *id)
            .collect();
        let remaining = ROWS as usize - at_latest.len();
        assert!(
            at_latest.len() > 33_333 && remaining > 0,
            "the kill did not land mid-way: {} rows at v3",
            at_latest.len()
        );

        assert_success(&scenario.run(&["--resume"]));
        let resumed = scenario.report();
        // Exactly the rows the first run had not rewrapped are rewrapped now.
        assert_eq!(resumed["totals"]["rewrapped"], remaining as u64);
        assert_eq!(resumed["totals"]["failed"], 0);
        assert_eq!(resumed["resumed"], true);
        // It started after the checkpoint, not from the top.
        assert_eq!(resumed["totals"]["seen"], (ROWS - last_key) as u64);

        let after = rows(url).await;
        assert_eq!(after.len(), ROWS as usize, "no row may be lost");
        // Rows already at v3 when the first run died were not touched again.
        for id in &at_latest {
            assert_eq!(after[id], killed[id], "row {id} was rewrapped twice");
        }
        assert_rows(server, &after, 1..=ROWS, plaintext, Some(3)).await;
        assert!(!scenario.files.checkpoint.exists());
    });
}

fn concurrent_updates(context: &Context) {
    context.runtime.block_on(async {
        let scenario = Scenario::new(context, "rewrap_race", ROWS).await;
        let (server, url) = (&scenario.server, &scenario.url);

        // The application's new values: plaintext app-<id>, written under v1
        // so that a job overwriting them would be visible as a v3 row-<id>.
        let app = |id: i64| format!("app-{id}");
        let locked: Vec<i64> = (40_001..=40_100).collect();
        let ahead: Vec<i64> = (90_001..=90_300).collect();
        let app_items: Vec<(String, u32)> =
            locked.iter().chain(&ahead).map(|id| (app(*id), 1)).collect();
        let app_values = server.encrypt(KEY, &app_items).await;
        let (locked_values, ahead_values) = app_values.split_at(locked.len());

        // The application holds these rows in an open transaction: the job
        // reads the old values and blocks when it writes them.
        let mut writer = connect(url).await;
        let transaction = writer.transaction().await.expect("begin");
        transaction
            .execute(
                "UPDATE t SET c = v.c FROM unnest($1::bigint[], $2::text[]) AS v(id, c) WHERE t.id = v.id",
                &[&locked, &locked_values],
            )
            .await
            .expect("application update");

        let mut job = Job::spawn(scenario.command(&["--batch-size", "500", "--rate", "40000"]));
        // More application writes while the job runs, row by row.
        let other = connect(url).await;
        for (id, value) in ahead.iter().zip(ahead_values) {
            other
                .execute("UPDATE t SET c = $2 WHERE id = $1", &[id, value])
                .await
                .expect("application update");
        }
        // Commit once a job writer waits for the application's row locks.
        let watcher = connect(url).await;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE%RETURNING%'",
                    &[],
                )
                .await
                .expect("pg_stat_activity")
                .get(0);
            if waiting > 0 {
                break;
            }
            assert!(
                job.child.try_wait().expect("try_wait").is_none(),
                "the job ended without waiting for the locked rows"
            );
            assert!(Instant::now() < deadline, "no job writer waited for the locks");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        transaction.commit().await.expect("commit");

        let status = tokio::task::spawn_blocking(move || {
            let status = job.child.wait().expect("wait for the job");
            drop(job);
            status
        })
        .await
        .expect("join");
        assert!(status.success(), "the job failed: {status}");

        let done = scenario.report();
        // Of the 100 locked rows, those that needed a rewrap (version 1 or 2
        // when read) were rewrapped by the job but not written.
        // Rows written by the application ahead of the job may add to the
        // count, when the job read them first.
        let needed = locked.iter().filter(|id| *id % 3 != 2).count() as u64;
        let changed = done["totals"]["changed"].as_u64().expect("changed count");
        assert!(
            (needed..=needed + ahead.len() as u64).contains(&changed),
            "{changed} changed rows, expected {needed} or a few more: {done}"
        );
        assert_eq!(done["totals"]["failed"], 0);

        let after = rows(url).await;
        assert_eq!(after.len(), ROWS as usize);
        // The application's values survive (the locked rows keep their v1).
        assert_rows(server, &after, locked.iter().copied(), app, Some(1)).await;
        assert_rows(server, &after, ahead.iter().copied(), app, None).await;
        let untouched = (1..=ROWS).filter(|id| !locked.contains(id) && !ahead.contains(id));
        assert_rows(server, &after, untouched, plaintext, Some(3)).await;
        drop(writer);
    });
}

fn corrupted_values(context: &Context) {
    context.runtime.block_on(async {
        let scenario = Scenario::new(context, "rewrap_corrupt", 3_000).await;
        let (server, url) = (&scenario.server, &scenario.url);
        let client = connect(url).await;
        // Another key's ciphertexts decrypt with no version of this one.
        let mut transit = server.transit().await;
        transit
            .create_key(rewrap::request(cipherd::api::grpc::pb::CreateKeyRequest {
                key: "other".into(),
                ..Default::default()
            }))
            .await
            .expect("create other key");
        let foreign: Vec<(String, u32)> = (31..=40).map(|id| (plaintext(id), 0)).collect();
        let foreign = server.encrypt("other", &foreign).await;
        let foreign_ids: Vec<i64> = (31..=40).collect();
        client
            .batch_execute(
                "UPDATE t SET c = 'not a ciphertext ' || id WHERE id BETWEEN 1 AND 10;
                 UPDATE t SET c = 'vault:v1:!!!not base64!!!' WHERE id BETWEEN 11 AND 20;
                 UPDATE t SET c = left(c, 30) WHERE id BETWEEN 21 AND 30 AND id % 3 = 0;
                 UPDATE t SET c = NULL WHERE id BETWEEN 41 AND 45;",
            )
            .await
            .expect("corrupt rows");
        client
            .execute(
                "UPDATE t SET c = v.c FROM unnest($1::bigint[], $2::text[]) AS v(id, c) WHERE t.id = v.id",
                &[&foreign_ids, &foreign],
            )
            .await
            .expect("foreign ciphertexts");
        let before = rows(url).await;

        let output = scenario.run(&["--batch-size", "256"]);
        assert!(!output.status.success(), "failed values must fail the run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("could not be rewrapped"), "{stderr}");
        // Nothing secret in what the job printed.
        assert!(!stderr.contains(rewrap::TOKEN), "{stderr}");

        let truncated = (21..=30).filter(|id| id % 3 == 0).count() as u64;
        let done = scenario.report();
        assert_eq!(done["totals"]["failed"], 10 + 10 + truncated + 10, "{done}");
        assert_eq!(done["failures"].as_array().map(Vec::len), Some(30 + truncated as usize));
        let locations: Vec<&str> = done["failures"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["location"].as_str())
            .collect();
        assert!(locations.contains(&"key=1") && locations.contains(&"key=40"), "{locations:?}");

        let after = rows(url).await;
        let bad: Vec<i64> = (1..=20)
            .chain((21..=30).filter(|id| id % 3 == 0))
            .chain(31..=45)
            .collect();
        for id in &bad {
            assert_eq!(after[id], before[id], "corrupted row {id} was written");
        }
        let good = (1..=3_000).filter(|id| !bad.contains(id) && !(21..=30).contains(id));
        assert_rows(server, &after, good, plaintext, Some(3)).await;
    });
}
