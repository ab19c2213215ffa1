//! Crash safety of the embedded store (issue 3): a server is SIGKILLed again and
//! again at a random point while concurrent clients create keys, rotate them,
//! change their configuration and encrypt. After every restart (and unseal),
//! every change the server acknowledged (2xx) must be there, every ciphertext it
//! returned must still decrypt, and nothing half-written may show: no key read
//! fails, no key is in a state no request could have produced.
//!
//! The random choices come from a seeded PRNG. The seed is printed, and is part
//! of every failure message; `CRASH_SEED=<n>` replays the same choices (thread
//! timing still varies). `CRASH_CYCLES=<n>` changes the number of kills.

#[path = "common/process.rs"]
mod process;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use tokio::sync::Notify;

use process::{Client, ProcessServer, Reply};

/// Concurrent client tasks; each owns its keys, so per key the order is known.
const WORKERS: usize = 4;
/// Default number of SIGKILL cycles.
const DEFAULT_CYCLES: u64 = 40;
/// Most operations acknowledged before a kill.
const MAX_OPS_PER_CYCLE: u64 = 150;
/// Keys per worker, at most.
const MAX_KEYS_PER_WORKER: usize = 12;

/// SplitMix64: small, seedable, good enough to pick operations.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A change sent but not acknowledged when the server died: it may or may not
/// have been applied.
#[derive(Debug, Clone)]
enum Pending {
    Create,
    Rotate,
    Config {
        min_decryption_version: u64,
        deletion_allowed: bool,
    },
    Encrypt,
}

/// What the clients know about one key.
#[derive(Debug, Clone)]
struct KeyModel {
    /// Creation acknowledged (false: the creation request was in flight).
    created: bool,
    latest_version: u64,
    min_decryption_version: u64,
    deletion_allowed: bool,
    /// (ciphertext, plaintext, version) for every acknowledged encryption.
    ciphertexts: Vec<(String, Vec<u8>, u64)>,
    pending: Option<Pending>,
}

impl KeyModel {
    fn new_pending() -> Self {
        Self {
            created: false,
            latest_version: 1,
            min_decryption_version: 1,
            deletion_allowed: false,
            ciphertexts: Vec::new(),
            pending: Some(Pending::Create),
        }
    }
}

/// One worker's keys, carried across cycles.
#[derive(Debug, Default)]
struct WorkerState {
    keys: BTreeMap<String, KeyModel>,
    next_key: usize,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    creates: u64,
    rotations: u64,
    configs: u64,
    encryptions: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.creates += other.creates;
        self.rotations += other.rotations;
        self.configs += other.configs;
        self.encryptions += other.encryptions;
    }

    fn total(&self) -> u64 {
        self.creates + self.rotations + self.configs + self.encryptions
    }
}

/// Shared between the workers of one cycle and the killer.
struct Cycle {
    acked: AtomicU64,
    kill_after: u64,
    reached: Notify,
}

impl Cycle {
    fn ack(&self) {
        if self.acked.fetch_add(1, Ordering::SeqCst) + 1 >= self.kill_after {
            self.reached.notify_one();
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn version_of(ciphertext: &str) -> u64 {
    ciphertext
        .strip_prefix("vault:v")
        .and_then(|rest| rest.split(':').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("ciphertext without a version: {ciphertext}"))
}

fn u64_field(reply: &Reply, field: &str) -> u64 {
    reply
        .data(field)
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {:?}", reply.body))
}

/// Runs operations until the server goes away. Returns the state, and what was
/// acknowledged; `Err` for any answer that is not a success (a bug).
async fn work(
    client: Client,
    mut state: WorkerState,
    worker: usize,
    mut rng: Rng,
    cycle: Arc<Cycle>,
) -> (WorkerState, Counts, Result<(), String>) {
    let mut counts = Counts::default();
    loop {
        let created: Vec<String> = state
            .keys
            .iter()
            .filter(|(_, k)| k.created)
            .map(|(n, _)| n.clone())
            .collect();
        let roll = rng.below(100);
        let create = created.is_empty() || (roll < 10 && state.keys.len() < MAX_KEYS_PER_WORKER);
        let name = if create {
            state.next_key += 1;
            format!("w{worker}-k{}", state.next_key)
        } else {
            created[rng.below(created.len() as u64) as usize].clone()
        };
        let mut plaintext = Vec::new();
        let (method_path, body, pending) = if create {
            let kind = if rng.below(2) == 0 {
                "aes256-gcm96"
            } else {
                "chacha20-poly1305"
            };
            state.keys.insert(name.clone(), KeyModel::new_pending());
            (
                format!("transit/keys/{name}"),
                json!({ "type": kind }),
                Pending::Create,
            )
        } else if roll < 30 {
            (
                format!("transit/keys/{name}/rotate"),
                json!({}),
                Pending::Rotate,
            )
        } else if roll < 45 {
            let latest = state.keys[&name].latest_version;
            // Half the changes reopen every version, so that most ciphertexts stay
            // decryptable and are checked as such.
            let min_decryption_version = if rng.below(2) == 0 {
                1
            } else {
                1 + rng.below(latest)
            };
            let deletion_allowed = rng.below(2) == 0;
            let body = json!({ "min_decryption_version": min_decryption_version, "deletion_allowed": deletion_allowed });
            let pending = Pending::Config {
                min_decryption_version,
                deletion_allowed,
            };
            (format!("transit/keys/{name}/config"), body, pending)
        } else {
            let len = rng.below(64) as usize;
            plaintext = rng.bytes(len);
            (
                format!("transit/encrypt/{name}"),
                json!({ "plaintext": b64(&plaintext) }),
                Pending::Encrypt,
            )
        };
        state.keys.get_mut(&name).expect("key model").pending = Some(pending.clone());
        let reply = match client.try_send("POST", &method_path, Some(&body)).await {
            Ok(reply) => reply,
            // The server is gone: the outcome of this request is unknown.
            Err(_) => return (state, counts, Ok(())),
        };
        if !(200..300).contains(&reply.status) {
            let error = format!(
                "POST {method_path} {body} -> {} {:?}",
                reply.status, reply.body
            );
            return (state, counts, Err(error));
        }
        let key = state.keys.get_mut(&name).expect("key model");
        key.pending = None;
        match pending {
            Pending::Create => {
                key.created = true;
                counts.creates += 1;
            }
            Pending::Rotate => {
                // 200 with the key (or 204 from older Vault versions).
                key.latest_version = reply
                    .data("latest_version")
                    .as_u64()
                    .unwrap_or(key.latest_version + 1);
                counts.rotations += 1;
            }
            Pending::Config {
                min_decryption_version,
                deletion_allowed,
            } => {
                key.min_decryption_version = min_decryption_version;
                key.deletion_allowed = deletion_allowed;
                counts.configs += 1;
            }
            Pending::Encrypt => {
                let ciphertext = reply
                    .data("ciphertext")
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let version = version_of(&ciphertext);
                if version != key.latest_version {
                    let error = format!(
                        "{name}: encrypted under v{version}, latest is v{}",
                        key.latest_version
                    );
                    return (state, counts, Err(error));
                }
                key.ciphertexts
                    .push((ciphertext, std::mem::take(&mut plaintext), version));
                counts.encryptions += 1;
            }
        }
        cycle.ack();
    }
}

#[derive(Debug, Default)]
struct Verified {
    keys: u64,
    decryptions: u64,
    refused_too_old: u64,
    in_flight: u64,
    in_flight_applied: u64,
}

/// Checks one worker's keys against a freshly unsealed server and folds in
/// what happened to the in-flight changes.
async fn verify(
    client: &Client,
    state: &mut WorkerState,
    seed: u64,
    cycle: u64,
) -> Result<Verified, String> {
    let mut verified = Verified::default();
    let ctx = |msg: String| format!("seed {seed}, after kill {cycle}: {msg}");
    let mut forgotten = Vec::new();
    for (name, key) in &mut state.keys {
        let reply = client.get(&format!("transit/keys/{name}")).await;
        let pending = key.pending.take();
        if matches!(
            pending,
            Some(Pending::Create | Pending::Rotate | Pending::Config { .. })
        ) {
            verified.in_flight += 1;
        }
        if reply.status == 404 && !key.created {
            // An unacknowledged creation that did not happen.
            forgotten.push(name.clone());
            continue;
        }
        if reply.status != 200 {
            return Err(ctx(format!(
                "GET key {name} -> {} {:?} (model {key:?})",
                reply.status, reply.body
            )));
        }
        if !key.created {
            verified.in_flight_applied += 1;
            key.created = true;
        }
        verified.keys += 1;
        let latest = u64_field(&reply, "latest_version");
        let min_dec = u64_field(&reply, "min_decryption_version");
        let deletion = reply
            .data("deletion_allowed")
            .as_bool()
            .ok_or_else(|| ctx(format!("{name}: deletion_allowed")))?;
        let mut ok_latest = vec![key.latest_version];
        let mut ok_config = vec![(key.min_decryption_version, key.deletion_allowed)];
        match pending {
            Some(Pending::Rotate) => ok_latest.push(key.latest_version + 1),
            Some(Pending::Config {
                min_decryption_version,
                deletion_allowed,
            }) => {
                ok_config.push((min_decryption_version, deletion_allowed));
            }
            Some(Pending::Create | Pending::Encrypt) | None => {}
        }
        if !ok_latest.contains(&latest) {
            return Err(ctx(format!(
                "{name}: latest_version {latest}, expected one of {ok_latest:?}"
            )));
        }
        if !ok_config.contains(&(min_dec, deletion)) {
            return Err(ctx(format!(
                "{name}: (min_decryption_version, deletion_allowed) = ({min_dec}, {deletion}), expected one of {ok_config:?}"
            )));
        }
        if pending.is_some()
            && (latest != key.latest_version || (min_dec, deletion) != ok_config[0])
        {
            verified.in_flight_applied += 1;
        }
        let versions = reply
            .data("keys")
            .as_object()
            .map(|k| k.len() as u64)
            .unwrap_or(0);
        if versions != latest - min_dec + 1 {
            return Err(ctx(format!(
                "{name}: {versions} versions listed for {min_dec}..={latest}"
            )));
        }
        key.latest_version = latest;
        key.min_decryption_version = min_dec;
        key.deletion_allowed = deletion;

        for (ciphertext, plaintext, version) in &key.ciphertexts {
            let reply = client
                .post(
                    &format!("transit/decrypt/{name}"),
                    json!({ "ciphertext": ciphertext }),
                )
                .await;
            if *version >= min_dec {
                if reply.status != 200 || reply.data("plaintext") != &json!(b64(plaintext)) {
                    return Err(ctx(format!(
                        "{name}: {ciphertext} -> {} {:?}",
                        reply.status, reply.body
                    )));
                }
                verified.decryptions += 1;
            } else {
                let too_old = vec![
                    "ciphertext or signature version is disallowed by policy (too old)".to_owned(),
                ];
                if reply.status != 400 || reply.errors() != too_old {
                    return Err(ctx(format!(
                        "{name}: v{version} below min {min_dec}: {} {:?}",
                        reply.status, reply.body
                    )));
                }
                verified.refused_too_old += 1;
            }
        }
    }
    for name in forgotten {
        state.keys.remove(&name);
    }
    Ok(verified)
}

async fn unseal(client: &Client, shares: &[&str], seed: u64) {
    for (i, share) in shares.iter().enumerate() {
        let reply = client.put("sys/unseal", json!({ "key": share })).await;
        assert_eq!(reply.status, 200, "seed {seed}: unseal: {:?}", reply.body);
        assert_eq!(
            reply.body["sealed"],
            json!(i + 1 < shares.len()),
            "seed {seed}: unseal: {:?}",
            reply.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_changes_survive_sigkill() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let cycles: u64 = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CYCLES);
    println!("crash_sigkill: seed {seed} (replay with CRASH_SEED={seed}), {cycles} kill cycles");
    let started = Instant::now();
    let mut rng = Rng(seed);

    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = ProcessServer::start_on(dir.path(), &[]);
    let init = server
        .client(None)
        .put(
            "sys/init",
            json!({"secret_shares": 3, "secret_threshold": 2}),
        )
        .await;
    assert_eq!(init.status, 200, "init: {:?}", init.body);
    let shares: Vec<String> = init.body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k.as_str().expect("share").to_owned())
        .collect();
    let token = init.body["root_token"]
        .as_str()
        .expect("root token")
        .to_owned();

    let mut states: Vec<WorkerState> = (0..WORKERS).map(|_| WorkerState::default()).collect();
    let mut acked = Counts::default();
    let mut totals = Verified::default();
    let mut kills_with_in_flight = 0;
    for cycle in 1..=cycles {
        let pair = [
            &*shares[(cycle % 3) as usize],
            &*shares[((cycle + 1) % 3) as usize],
        ];
        unseal(&server.client(None), &pair, seed).await;
        let client = server.client(Some(&token));

        if cycle > 1 {
            let mut in_flight_before = 0;
            for state in &mut states {
                in_flight_before += state.keys.values().filter(|k| k.pending.is_some()).count();
                let verified = verify(&client, state, seed, cycle - 1)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                totals.keys += verified.keys;
                totals.decryptions += verified.decryptions;
                totals.refused_too_old += verified.refused_too_old;
                totals.in_flight += verified.in_flight;
                totals.in_flight_applied += verified.in_flight_applied;
            }
            if in_flight_before > 0 {
                kills_with_in_flight += 1;
            }
            // The listing holds exactly the keys that exist: no ghost, no loss.
            let mut expected: Vec<String> =
                states.iter().flat_map(|s| s.keys.keys().cloned()).collect();
            expected.sort();
            let listed = client.send("LIST", "transit/keys", None).await;
            let listed: Vec<String> = if expected.is_empty() && listed.status == 404 {
                Vec::new()
            } else {
                assert_eq!(
                    listed.status, 200,
                    "seed {seed}: LIST keys: {:?}",
                    listed.body
                );
                serde_json::from_value(listed.data("keys").clone()).expect("key names")
            };
            assert_eq!(
                listed,
                expected,
                "seed {seed}, after kill {}: key listing",
                cycle - 1
            );
        }

        // Kill after 0..=MAX acknowledged operations, a few cycles right away.
        let kill_after = if rng.below(10) == 0 {
            rng.below(3)
        } else {
            1 + rng.below(MAX_OPS_PER_CYCLE)
        };
        let shared = Arc::new(Cycle {
            acked: AtomicU64::new(0),
            kill_after,
            reached: Notify::new(),
        });
        let mut tasks = Vec::new();
        for (worker, state) in states.drain(..).enumerate() {
            let worker_rng = Rng(rng.next());
            tasks.push(tokio::spawn(work(
                client.clone(),
                state,
                worker,
                worker_rng,
                shared.clone(),
            )));
        }
        if kill_after > 0 {
            let reached = tokio::time::timeout(Duration::from_secs(60), async {
                while shared.acked.load(Ordering::SeqCst) < kill_after {
                    if tasks.iter().all(|t| t.is_finished()) {
                        return;
                    }
                    tokio::select! {
                        () = shared.reached.notified() => {}
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            })
            .await;
            assert!(
                reached.is_ok(),
                "seed {seed}: cycle {cycle}: no progress for 60 s"
            );
        }
        // Workers stop on transport errors: make sure those came from our kill,
        // not from a server that died on its own.
        assert!(
            server.is_running(),
            "seed {seed}, cycle {cycle}: the server exited before the kill\nstderr:\n{}",
            server.stderr()
        );
        server.kill_hard();
        for task in tasks {
            let (state, counts, result) = task.await.expect("worker task");
            if let Err(error) = result {
                panic!(
                    "seed {seed}, cycle {cycle}: unexpected answer: {error}\nserver stderr:\n{}",
                    server.stderr()
                );
            }
            acked.add(counts);
            states.push(state);
        }
        server = ProcessServer::start_on(dir.path(), &[]);
        let status = server.client(None).get("sys/seal-status").await;
        assert_eq!(
            (&status.body["initialized"], &status.body["sealed"]),
            (&json!(true), &json!(true)),
            "seed {seed}: restarted server must be sealed"
        );
    }

    // Final check after the last kill.
    let pair = [&*shares[0], &*shares[2]];
    unseal(&server.client(None), &pair, seed).await;
    let client = server.client(Some(&token));
    for state in &mut states {
        let verified = verify(&client, state, seed, cycles)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        totals.keys += verified.keys;
        totals.decryptions += verified.decryptions;
        totals.refused_too_old += verified.refused_too_old;
        totals.in_flight += verified.in_flight;
        totals.in_flight_applied += verified.in_flight_applied;
    }
    let live_keys: usize = states.iter().map(|s| s.keys.len()).sum();
    let ciphertexts: usize = states
        .iter()
        .flat_map(|s| s.keys.values())
        .map(|k| k.ciphertexts.len())
        .sum();
    assert!(
        acked.total() > cycles,
        "seed {seed}: too little work to mean anything"
    );
    println!(
        "crash_sigkill: seed {seed}: {cycles} SIGKILL cycles in {:.1} s; {} acknowledged operations \
         ({} creates, {} rotations, {} config changes, {} encryptions); {kills_with_in_flight} kills \
         with requests in flight ({} in-flight changes, {} of them found applied); checked {} key \
         states and {} decryptions ({} correctly refused as below min_decryption_version); \
         {live_keys} keys and {ciphertexts} ciphertexts at the end",
        started.elapsed().as_secs_f64(),
        acked.total(),
        acked.creates,
        acked.rotations,
        acked.configs,
        acked.encryptions,
        totals.in_flight,
        totals.in_flight_applied,
        totals.keys,
        totals.decryptions,
        totals.refused_too_old,
    );
    let status = server.stop();
    assert!(
        status.success(),
        "seed {seed}: SIGTERM exit status {status}"
    );
}
