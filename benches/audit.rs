//! What auditing one request costs, without the HTTP and gRPC around it.
//!
//! Each iteration does what the service does for an audited request: opens
//! its frame (rendering the request data), records the token and the ACL
//! decision, renders the request entry and writes both entries with the
//! response (hash chain included) to a `file` device in a temporary
//! directory. Rows: a single encrypt as REST sends it, and a batch of 1,000
//! encrypts. The "render only" rows stop before the write, so the
//! difference between the two is the device's share (chain hash, append).
//!
//! Run: `cargo bench --bench audit` (add `-- --quick` for a fast pass).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use cipherd::audit::{AuditLog, DeviceSpec, Frame, RequestView, ResponseView};
use cipherd::storage::MemoryStorage;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value, json};

const TOKEN: &str = "hvs.CAESIJ2kq3xQf0sYk8qQ1bP7c2d9VbNQe4Ck";
const PLAINTEXT: &str =
    "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQQ==";
const CIPHERTEXT: &str = "vault:v1:8SDd3WHDOjf7mq69CyCqYjBXAiQQAVZRkFM13ok481zoCmHnSeDX9vyf7w6YrY1HDpl9FoMZrI8GvQ0ZuBuNFAF9R3vOQ2Y1oq2DhZ8GDNc=";

fn device(dir: &std::path::Path) -> DeviceSpec {
    DeviceSpec {
        path: "file".into(),
        kind: "file".into(),
        description: String::new(),
        options: BTreeMap::from([(
            "file_path".to_owned(),
            dir.join("audit.log").display().to_string(),
        )]),
        local: false,
    }
}

/// One audited request: frame, ACL record, request entry, response entry.
fn audit_one(
    log: &AuditLog,
    runtime: &tokio::runtime::Runtime,
    request: &Map<String, Value>,
    response: &Value,
    write: bool,
) {
    let devices = log.devices();
    let frame = Frame::new(
        RequestView {
            id: String::new(),
            operation: "update",
            path: "transit/encrypt/bench".into(),
            remote: Some("127.0.0.1:40000".parse().expect("address")),
            transport: "rest",
        },
        Some(request),
        Some(TOKEN),
        &devices,
    );
    frame.set_auth(|auth| {
        auth.accessor = Some("8kZ0yJbqW2mH3nX1cV5tR7uP".into());
        auth.display_name = Some("token".into());
        auth.policies = vec!["default".into(), "payments".into()];
        auth.token_ttl = 3600;
        auth.token_issue_time = Some("2026-12-05T03:00:00Z".into());
        auth.allowed = Some(true);
    });
    frame.set_target(
        "transit/encrypt/bench",
        "update",
        Some("transit/"),
        Some("bench"),
        true,
    );
    log.log_request(&frame).expect("request entry");
    if write {
        let view = ResponseView {
            status: 200,
            data: Some(response),
            ..ResponseView::default()
        };
        runtime
            .block_on(log.log_response(&frame, view))
            .expect("response entry");
    }
    black_box(frame);
}

fn bench(c: &mut Criterion) {
    // AUDIT_BENCH_DIR puts the log elsewhere (e.g. /dev/shm, to leave the disk out).
    let dir = match std::env::var_os("AUDIT_BENCH_DIR") {
        Some(parent) => tempfile::tempdir_in(parent),
        None => tempfile::tempdir(),
    }
    .expect("temporary directory");
    let log =
        AuditLog::open(Arc::new(MemoryStorage::new()), &[device(dir.path())]).expect("audit log");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let single = json!({"plaintext": PLAINTEXT});
    let single = single.as_object().expect("object");
    let single_reply = json!({"ciphertext": CIPHERTEXT, "key_version": 1});
    let batch = json!({
        "batch_input": (0..1000).map(|_| json!({"plaintext": PLAINTEXT})).collect::<Vec<_>>()
    });
    let batch = batch.as_object().expect("object");
    let batch_reply = json!({
        "batch_results": (0..1000)
            .map(|_| json!({"ciphertext": CIPHERTEXT, "key_version": 1}))
            .collect::<Vec<_>>()
    });

    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encrypt, render only", |b| {
        b.iter(|| audit_one(&log, &runtime, single, &single_reply, false));
    });
    group.bench_function("encrypt, render and write", |b| {
        b.iter(|| audit_one(&log, &runtime, single, &single_reply, true));
    });
    group.throughput(Throughput::Elements(1000));
    group.bench_function("batch of 1000, render and write", |b| {
        b.iter(|| audit_one(&log, &runtime, batch, &batch_reply, true));
    });
    group.finish();
    drop(log);
}

criterion_group!(benches, bench);
criterion_main!(benches);
