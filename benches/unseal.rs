//! Unseal time with many keys (issue 3 goal: under 2 s for 100,000 keys).
//!
//! Unsealing opens the barrier keyring, then loads every transit key: list the
//! key paths, read each entry from redb, open it through the barrier
//! (AES-256-GCM) and parse the keyring. This bench builds an embedded store with
//! N `aes256-gcm96` keys and times `Service::unseal` with the one share (1/1
//! init), in process, then also end to end: a spawned `cipherd server` and
//! `PUT /v1/sys/unseal` over HTTP. It prints a rough profile of where the time
//! goes (raw storage reads, barrier decrypts, keyring parsing).
//!
//! Set-up: creating 100,000 keys through a redb-backed service would cost
//! 100,000 fsynced commits (minutes), so the keys are created through the real
//! service and barrier over in-memory storage, and the resulting raw entries are
//! copied into the redb file in one transaction. The bench checks that the
//! service then sees an initialized store with all N keys.
//!
//! Run: `cargo bench --bench unseal` (`UNSEAL_BENCH_KEYS=1000,5000` to choose
//! the sizes, `UNSEAL_BENCH_RUNS=5` for the repetitions).

#[path = "../tests/common/process.rs"]
mod process;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde_json::json;

use cipherd::crypto::SecretBytes;
use cipherd::keyring::{CreateOptions, Keyring};
use cipherd::seal::SealManager;
use cipherd::service::{Service, ServiceOptions};
use cipherd::storage::{MemoryStorage, RedbStorage, Storage};

/// Must match `cipherd::storage::redb`'s private table (checked after the copy).
const REDB_ENTRIES: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("entries");

fn sizes() -> Vec<usize> {
    std::env::var("UNSEAL_BENCH_KEYS")
        .ok()
        .map(|s| {
            s.split(',')
                .filter_map(|n| n.trim().replace('_', "").parse().ok())
                .collect()
        })
        .unwrap_or_else(|| {
            if benchmarking() {
                vec![10_000, 100_000]
            } else {
                // `cargo test --all-targets` runs bench targets without
                // `--bench`: a small smoke run checks the bench still works.
                vec![200]
            }
        })
}

/// True under `cargo bench` (which passes `--bench`), false under `cargo test`.
fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn runs() -> usize {
    std::env::var("UNSEAL_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if benchmarking() { 3 } else { 1 })
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Every physical entry of `storage`, walking its listing.
fn dump(storage: &dyn Storage, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
    for child in storage.list(prefix).expect("list") {
        let path = format!("{prefix}{child}");
        if child.ends_with('/') {
            dump(storage, &path, out);
        } else {
            let value = storage.get(&path).expect("get").expect("listed entry");
            out.push((path, value));
        }
    }
}

/// Builds a store with `n` keys in `dir`; returns the unseal share (the master
/// key, since there is one share) and the logical prefix of the transit keys.
fn populate(dir: &Path, n: usize) -> (SecretBytes, String) {
    let memory = Arc::new(MemoryStorage::new());
    let service = Service::new(memory.clone(), ServiceOptions::default()).expect("service");
    let init = service.init(1, 1, None).expect("init");
    let share = init.shares.into_iter().next().expect("one share");
    assert!(
        !service
            .unseal(share.expose_secret())
            .expect("unseal")
            .sealed
    );
    let unsealed = service.unsealed().expect("unsealed");
    let (mount, _) = unsealed
        .mounts
        .route("transit/")
        .expect("default transit mount");
    let prefix = format!("logical/{}/keys/", mount.info.uuid);
    (0..n).into_par_iter().for_each(|i| {
        let (_, created) = mount
            .engine
            .create_key(&format!("key-{i:06}"), &CreateOptions::default())
            .expect("create key");
        assert!(created);
    });
    assert_eq!(mount.engine.key_count(), n);
    drop(unsealed);
    service.seal_now();

    let mut entries = Vec::new();
    dump(&*memory, "", &mut entries);
    let db = redb::Database::create(dir.join(cipherd::storage::redb::FILE_NAME))
        .expect("create redb file");
    let txn = db.begin_write().expect("begin write");
    {
        let mut table = txn.open_table(REDB_ENTRIES).expect("open table");
        for (path, value) in &entries {
            table
                .insert(path.as_str(), value.as_slice())
                .expect("insert");
        }
    }
    txn.commit().expect("commit");
    drop(db);
    (share, prefix)
}

struct Figures {
    keys: usize,
    file_mb: f64,
    setup: Duration,
    open: Duration,
    first_unseal: Duration,
    unseal_runs: Vec<Duration>,
    http_unseal: Duration,
    raw_list: Duration,
    raw_reads: Duration,
    barrier_reads: Duration,
    parse: Duration,
}

fn measure(n: usize) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let (share, prefix) = populate(dir.path(), n);
    let setup = started.elapsed();
    let file = dir.path().join(cipherd::storage::redb::FILE_NAME);
    let file_mb = std::fs::metadata(&file).expect("redb file").len() as f64 / 1e6;

    // In process: open, then unseal (loads every key), then seal/unseal again.
    let started = Instant::now();
    let backend: Arc<dyn Storage> = Arc::new(RedbStorage::open(dir.path()).expect("open redb"));
    let service = Service::new(backend.clone(), ServiceOptions::default()).expect("service");
    let open = started.elapsed();
    assert!(
        service.seal_status().initialized,
        "the copied store is not initialized: REDB_ENTRIES no longer matches cipherd::storage::redb"
    );
    let started = Instant::now();
    let status = service.unseal(share.expose_secret()).expect("unseal");
    let first_unseal = started.elapsed();
    assert!(!status.sealed);
    let loaded = |service: &Service| {
        let unsealed = service.unsealed().expect("unsealed");
        let (mount, _) = unsealed.mounts.route("transit/").expect("mount");
        mount.engine.key_count()
    };
    assert_eq!(loaded(&service), n, "every key loaded");
    let mut unseal_runs = Vec::new();
    for _ in 0..runs() {
        service.seal_now();
        let started = Instant::now();
        service.unseal(share.expose_secret()).expect("unseal");
        unseal_runs.push(started.elapsed());
        assert_eq!(loaded(&service), n);
    }
    service.seal_now();
    drop(service);

    // Rough profile of the pieces, the way the engine does them (rayon).
    let physical = format!("data/{prefix}");
    let started = Instant::now();
    let names = backend.list(&physical).expect("list");
    let raw_list = started.elapsed();
    assert_eq!(names.len(), n);
    let started = Instant::now();
    let raw_bytes: usize = names
        .par_iter()
        .map(|name| {
            backend
                .get(&format!("{physical}{name}"))
                .expect("get")
                .expect("entry")
                .len()
        })
        .sum();
    let raw_reads = started.elapsed();
    let seal = SealManager::new(backend.clone()).expect("seal manager");
    seal.unseal_with_master_key(share.expose_secret())
        .expect("barrier unseal");
    let barrier = seal.barrier();
    let started = Instant::now();
    let plain: Vec<Vec<u8>> = names
        .par_iter()
        .map(|name| {
            barrier
                .get(&format!("{prefix}{name}"))
                .expect("barrier get")
                .expect("entry")
        })
        .collect();
    let barrier_reads = started.elapsed();
    let started = Instant::now();
    let parsed = plain
        .par_iter()
        .map(|bytes| Keyring::from_bytes(bytes).map(|_| ()).is_ok())
        .filter(|ok| *ok)
        .count();
    let parse = started.elapsed();
    assert_eq!(parsed, n);
    assert!(raw_bytes > 0);
    seal.seal().expect("seal");
    drop(barrier);
    drop(seal);
    drop(backend);

    // End to end: a fresh process, then PUT sys/unseal with the share.
    let mut server = process::ProcessServer::start_on(dir.path(), &[]);
    let client = process::Client::new(server.addr(), None);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let key = hex::encode(share.expose_secret());
    let http_unseal = runtime.block_on(async {
        let started = Instant::now();
        let reply = client.put("sys/unseal", json!({ "key": key })).await;
        let elapsed = started.elapsed();
        assert_eq!(
            (reply.status, &reply.body["sealed"]),
            (200, &json!(false)),
            "{:?}",
            reply.body
        );
        elapsed
    });
    assert!(server.stop().success());

    Figures {
        keys: n,
        file_mb,
        setup,
        open,
        first_unseal,
        unseal_runs,
        http_unseal,
        raw_list,
        raw_reads,
        barrier_reads,
        parse,
    }
}

fn main() {
    let threads = rayon::current_num_threads();
    println!(
        "unseal bench: {threads} rayon threads, {} runs per size",
        runs()
    );
    let mut table = Vec::new();
    for n in sizes() {
        println!("building a store with {n} keys...");
        let f = measure(n);
        println!(
            "{n} keys: set-up {}, redb file {:.1} MB, open {}, first unseal {}, unseal (median of {}) {}, \
             HTTP unseal (new process) {}; profile: list {}, raw reads {}, barrier reads+decrypt {}, parse {}",
            secs(f.setup),
            f.file_mb,
            secs(f.open),
            secs(f.first_unseal),
            f.unseal_runs.len(),
            secs(median(f.unseal_runs.clone())),
            secs(f.http_unseal),
            secs(f.raw_list),
            secs(f.raw_reads),
            secs(f.barrier_reads),
            secs(f.parse),
        );
        table.push(f);
    }
    println!();
    println!(
        "| keys | redb file | open store | first unseal | unseal (min / median) | HTTP `sys/unseal`, new process | list | raw reads | barrier reads (read + decrypt) | keyring parse |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in &table {
        let min = f.unseal_runs.iter().min().copied().unwrap_or_default();
        println!(
            "| {} | {:.1} MB | {} | {} | {} / {} | {} | {} | {} | {} | {} |",
            f.keys,
            f.file_mb,
            secs(f.open),
            secs(f.first_unseal),
            secs(min),
            secs(median(f.unseal_runs.clone())),
            secs(f.http_unseal),
            secs(f.raw_list),
            secs(f.raw_reads),
            secs(f.barrier_reads),
            secs(f.parse),
        );
    }
    for f in &table {
        if f.keys >= 100_000 {
            let worst = [f.first_unseal, f.http_unseal]
                .into_iter()
                .chain(f.unseal_runs.iter().copied())
                .max()
                .unwrap_or_default();
            let verdict = if worst < Duration::from_secs(2) {
                "met"
            } else {
                "MISSED"
            };
            println!(
                "goal (< 2 s for {} keys): {verdict} (worst {})",
                f.keys,
                secs(worst)
            );
        }
    }
}
