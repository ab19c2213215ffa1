//! Request limits: bodies over the configured size and batches over the
//! configured item count get 413 with Vault's JSON error shape, and nothing is
//! done for them; request heads over `--max-header-bytes` get 431.

#[path = "common/inprocess.rs"]
mod inprocess;
#[path = "common/process.rs"]
mod process;

use cipherd::api::rest::Limits;
use cipherd::engine::EngineOptions;
use cipherd::service::ServiceOptions;
use inprocess::InProcessServer;
use serde_json::json;

#[tokio::test]
async fn oversized_body_is_413_with_a_json_error() {
    let server = InProcessServer::start_with_limits(
        ServiceOptions::default(),
        Limits {
            max_body_bytes: 1024,
            ..Limits::default()
        },
    )
    .await;
    let big = "A".repeat(4096);
    let response = server
        .post("transit/encrypt/limited", json!({ "plaintext": big }))
        .await;
    assert_eq!(response.status, 413);
    assert_eq!(
        response.errors(),
        vec!["http: request body too large".to_owned()]
    );
    // The upsert did not happen.
    assert_eq!(server.get("transit/keys/limited").await.status, 404);
    // A small request still works.
    let ok = server
        .post("transit/encrypt/limited", json!({ "plaintext": "aGk=" }))
        .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn oversized_batch_is_413() {
    let options = ServiceOptions {
        engine: EngineOptions {
            max_batch_items: 10,
            ..EngineOptions::default()
        },
        ..ServiceOptions::default()
    };
    let server = InProcessServer::start_with(options).await;
    assert_eq!(server.post("transit/keys/k", json!({})).await.status, 200);
    let items: Vec<_> = (0..11).map(|_| json!({ "plaintext": "aGk=" })).collect();
    let response = server
        .post("transit/encrypt/k", json!({ "batch_input": items }))
        .await;
    assert_eq!(response.status, 413);
    assert!(
        response.errors()[0].contains("limit of 10"),
        "{:?}",
        response.errors()
    );
    let items: Vec<_> = (0..10).map(|_| json!({ "plaintext": "aGk=" })).collect();
    assert_eq!(
        server
            .post("transit/encrypt/k", json!({ "batch_input": items }))
            .await
            .status,
        200
    );
}

/// Sends `head` (a complete HTTP/1.1 request head, `Connection: close`) on a
/// fresh connection to the REST listener at `base` and returns the status and
/// body of the answer.
async fn raw_request(base: &str, head: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    // The server may answer and close before it has read everything.
    let _ = tcp.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A `GET /v1/sys/health` head with one `X-Padding` header of `padding` bytes.
fn head_with_padding(padding: usize) -> String {
    format!(
        "GET /v1/sys/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         X-Padding: {}\r\n\r\n",
        "a".repeat(padding)
    )
}

#[tokio::test]
async fn oversized_request_head_is_431_with_a_json_error() {
    let server = process::ProcessServer::start_dev(&["--max-header-bytes", "4096"]);
    // Under the limit: served.
    let (status, _) = raw_request(server.addr(), &head_with_padding(3000)).await;
    assert_eq!(status, 200);
    // Over the limit: 431, in Vault's error shape, naming the limit.
    let (status, body) = raw_request(server.addr(), &head_with_padding(5000)).await;
    assert_eq!(status, 431, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    let message = body["errors"][0].as_str().expect("an error message");
    assert!(
        message.starts_with("request header fields too large")
            && message.contains("limit of 4096 bytes"),
        "{message}"
    );
    // Far over the limit, the HTTP layer cuts the head off: still 431.
    let (status, _) = raw_request(server.addr(), &head_with_padding(200_000)).await;
    assert_eq!(status, 431);
    // The server keeps serving.
    let (status, _) = raw_request(server.addr(), &head_with_padding(10)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn default_header_limit_is_openbaos_one_mebibyte() {
    assert_eq!(Limits::default().max_header_bytes, 1024 * 1024);
    let server = process::ProcessServer::start_dev(&[]);
    // hyper's own default (about 400 KiB) no longer applies.
    let (status, _) = raw_request(server.addr(), &head_with_padding(600_000)).await;
    assert_eq!(status, 200);
    let (status, body) = raw_request(server.addr(), &head_with_padding(1_100_000)).await;
    assert_eq!(status, 431, "{body}");
    assert!(body.contains("limit of 1048576 bytes"), "{body}");
}

#[tokio::test]
async fn header_limit_in_process_router() {
    let server = InProcessServer::start_with_limits(
        ServiceOptions::default(),
        Limits {
            max_header_bytes: 2048,
            ..Limits::default()
        },
    )
    .await;
    let (status, body) =
        raw_request(&format!("http://{}", server.addr), &head_with_padding(4000)).await;
    assert_eq!(status, 431, "{body}");
    assert!(body.contains("limit of 2048 bytes"), "{body}");
}

#[test]
fn tiny_header_limit_is_refused_at_start() {
    let failure = process::ProcessServer::start_expecting_failure(&[
        "server",
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--max-header-bytes",
        "100",
    ]);
    assert!(!failure.status.success());
    assert!(
        failure
            .stderr
            .contains("--max-header-bytes must be at least 1024"),
        "{}",
        failure.stderr
    );
}

/// The REST server (now hyper's connection builder under our own accept loop)
/// still hands the client address to the audit log.
#[tokio::test]
async fn audit_log_records_the_client_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.log");
    let log_arg = log.to_str().expect("UTF-8 path");
    let server =
        process::ProcessServer::start_dev(&["--dev-root-token", "root", "--audit-file", log_arg]);
    let client = process::Client::new(server.addr(), Some("root"));
    let reply = client
        .post("transit/encrypt/audited", json!({ "plaintext": "aGk=" }))
        .await;
    assert_eq!(reply.status, 200);
    let text = std::fs::read_to_string(&log).expect("audit log");
    let entries: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|entry: &serde_json::Value| entry["request"]["path"] == "transit/encrypt/audited")
        .collect();
    assert!(!entries.is_empty(), "no entry for the request in {text}");
    for entry in entries {
        assert_eq!(entry["request"]["remote_address"], "127.0.0.1", "{entry}");
    }
}
