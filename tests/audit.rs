//! The audit log end to end: real REST and gRPC requests against a service
//! with a `file` device, then the log read back and checked: Vault's entry
//! shape, cipherd's fields, no secret anywhere, a chain that verifies, and
//! every kind of tampering (one altered byte, a removed entry, two swapped
//! entries, a forged entry, a truncated tail) detected and located. Also:
//! fail closed when the device cannot write, rotation keeping the chain
//! across files, the chain continuing across seal/unseal, the `sys/audit*`
//! endpoints, the report, and the `cipherd audit` commands.
//!
//! Servers run in this process on `127.0.0.1:0` (REST with connect info, so
//! entries carry the remote address; gRPC through `api::grpc::serve`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tonic::Request;
use tonic::transport::Channel;

use cipherd::api::grpc::{self, pb};
use cipherd::api::rest::{Limits, router};
use cipherd::audit::chain::{self, parse_public_key};
use cipherd::audit::report::{ReportFilter, report_files};
use cipherd::audit::verify::{FindingKind, VerifyReport, verify_files};
use cipherd::audit::{DeviceSpec, hasher::HMAC_PREFIX};
use cipherd::auth::TokenRequest;
use cipherd::service::{RequestContext, Service, ServiceOptions, Transport};
use cipherd::storage::MemoryStorage;
use cipherd::tls::RemoteAddr;

use pb::transit_client::TransitClient;

const ROOT: &str = "root-token-for-audit-tests";
/// What the tests encrypt; none of these may appear in the log.
const SECRET_TEXT: &str = "card 4111-1111-1111-1111";
const BATCH_SECRETS: [&str; 3] = ["first secret row", "second secret row", "third secret row"];
const GRPC_SECRET: &str = "grpc plaintext value";

struct Server {
    service: Arc<Service>,
    rest: SocketAddr,
    grpc: SocketAddr,
    share: Vec<u8>,
    http: reqwest::Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

fn file_device(path: &Path, extra: &[(&str, &str)]) -> DeviceSpec {
    let mut options = BTreeMap::new();
    options.insert("file_path".to_owned(), path.display().to_string());
    for (name, value) in extra {
        options.insert((*name).to_owned(), (*value).to_owned());
    }
    DeviceSpec {
        path: "file".into(),
        kind: "file".into(),
        description: String::new(),
        options,
        local: false,
    }
}

impl Server {
    async fn start(devices: Vec<DeviceSpec>) -> Self {
        let options = ServiceOptions {
            audit_devices: devices,
            ..ServiceOptions::default()
        };
        let service =
            Arc::new(Service::new(Arc::new(MemoryStorage::new()), options).expect("service"));
        let init = service.init(1, 1, Some(ROOT)).expect("init");
        let share = init.shares[0].expose_secret().to_vec();
        service.unseal(&share).expect("unseal");
        let rest_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind REST");
        let grpc_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gRPC");
        let rest = rest_listener.local_addr().expect("REST address");
        let grpc = grpc_listener.local_addr().expect("gRPC address");
        let app = router(service.clone(), Limits::default())
            .into_make_service_with_connect_info::<RemoteAddr>();
        let rest_task = tokio::spawn(async move {
            let _ = axum::serve(rest_listener, app).await;
        });
        let grpc_task = {
            let service = service.clone();
            tokio::spawn(async move {
                let _ = grpc::serve(grpc_listener, service, std::future::pending()).await;
            })
        };
        cipherd::tls::install_crypto_provider();
        Self {
            service,
            rest,
            grpc,
            share,
            http: reqwest::Client::new(),
            tasks: vec![rest_task, grpc_task],
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method, format!("http://{}/v1/{path}", self.rest))
            .header("X-Vault-Token", token);
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.expect("REST request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Encrypts `plaintext` (base64) with `orders` as root; asserts 200.
    async fn encrypt_ok(&self, plaintext: &str) {
        let (status, reply) = self
            .post("transit/encrypt/orders", json!({ "plaintext": plaintext }))
            .await;
        assert_eq!(status, 200, "{reply}");
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, ROOT, Some(body)).await
    }

    async fn transit(&self) -> TransitClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.grpc))
            .expect("URI")
            .connect()
            .await
            .expect("connect");
        TransitClient::new(channel)
    }

    fn token_with_policy(&self, name: &str, policy: &str) -> String {
        let state = self.service.unsealed().expect("unsealed");
        state.auth.put_policy(name, policy).expect("policy");
        let root = RequestContext {
            token: Some(ROOT),
            transport: Transport::Rest,
            audit: None,
        };
        let request = TokenRequest {
            policies: vec![name.to_owned()],
            ..TokenRequest::default()
        };
        self.service
            .create_token(&root, "auth/token/create", &request)
            .expect("token")
            .token
            .expose_secret()
            .to_owned()
    }

    fn public_key(&self) -> ed25519_dalek::VerifyingKey {
        let (key, _) = self
            .service
            .audit_signing_key(&RequestContext {
                token: Some(ROOT),
                transport: Transport::Rest,
                audit: None,
            })
            .expect("signing key");
        parse_public_key(&key).expect("public key")
    }
}

fn grpc_request<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-vault-token", token.parse().expect("metadata"));
    request
}

/// A one-byte gRPC encrypt with `token`.
fn small_encrypt(token: &str) -> Request<pb::EncryptRequest> {
    grpc_request(
        pb::EncryptRequest {
            key: "orders".into(),
            plaintext: b"x".to_vec(),
            ..Default::default()
        },
        token,
    )
}

fn entries(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read log")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect()
}

fn verify(files: &[&Path], key: &ed25519_dalek::VerifyingKey) -> VerifyReport {
    verify_files(files, key).expect("verify")
}

/// Runs a mix of REST and gRPC traffic; returns the secrets it sent (and got).
async fn traffic(server: &Server) -> Vec<String> {
    let mut secrets = vec![ROOT.to_owned()];
    let plaintext = STANDARD.encode(SECRET_TEXT);
    let (status, reply) = server
        .post("transit/encrypt/orders", json!({ "plaintext": plaintext }))
        .await;
    assert_eq!(status, 200, "{reply}");
    let ciphertext = reply["data"]["ciphertext"].as_str().unwrap().to_owned();
    let (status, reply) = server
        .post(
            "transit/decrypt/orders",
            json!({ "ciphertext": ciphertext }),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["data"]["plaintext"], plaintext);
    let batch: Vec<Value> = BATCH_SECRETS
        .iter()
        .map(|s| json!({ "plaintext": STANDARD.encode(s) }))
        .collect();
    let (status, reply) = server
        .post("transit/encrypt/orders", json!({ "batch_input": batch }))
        .await;
    assert_eq!(status, 200, "{reply}");
    for result in reply["data"]["batch_results"].as_array().unwrap() {
        secrets.push(result["ciphertext"].as_str().unwrap().to_owned());
    }
    secrets.push(ciphertext);
    secrets.push(plaintext.clone());
    secrets.push(SECRET_TEXT.to_owned());
    for secret in BATCH_SECRETS {
        secrets.push(secret.to_owned());
        secrets.push(STANDARD.encode(secret));
    }

    // A token that may only decrypt: its encrypt is denied.
    let limited = server.token_with_policy(
        "decrypt-only",
        r#"path "transit/decrypt/orders" { capabilities = ["update"] }"#,
    );
    let (status, _) = server
        .call(
            "POST",
            "transit/encrypt/orders",
            &limited,
            Some(json!({ "plaintext": plaintext })),
        )
        .await;
    assert_eq!(status, 403);
    secrets.push(limited.clone());

    let mut transit = server.transit().await;
    let encrypted = transit
        .encrypt(grpc_request(
            pb::EncryptRequest {
                key: "orders".into(),
                plaintext: GRPC_SECRET.as_bytes().to_vec(),
                ..Default::default()
            },
            ROOT,
        ))
        .await
        .expect("gRPC encrypt")
        .into_inner();
    secrets.push(encrypted.ciphertext.clone());
    secrets.push(GRPC_SECRET.to_owned());
    secrets.push(STANDARD.encode(GRPC_SECRET));
    let batch = transit
        .encrypt_batch(grpc_batch(5, "grpc batch item"))
        .await
        .expect("gRPC batch")
        .into_inner();
    assert_eq!(batch.results.len(), 5);
    let denied = transit
        .encrypt(small_encrypt(&limited))
        .await
        .expect_err("denied");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    secrets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_rest_and_grpc_requests_without_secrets_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let server = Server::start(vec![file_device(&log, &[])]).await;
    let secrets = traffic(&server).await;
    let key = server.public_key();
    let (status, hashed) = server
        .post(
            "sys/audit-hash/file",
            json!({ "input": STANDARD.encode(SECRET_TEXT) }),
        )
        .await;
    assert_eq!(status, 200);
    let plaintext_hash = hashed["data"]["hash"].as_str().unwrap().to_owned();
    assert!(plaintext_hash.starts_with(HMAC_PREFIX));
    server.service.seal_now();

    let text = std::fs::read_to_string(&log).unwrap();
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "the log holds a secret: {secret:?}"
        );
    }
    assert!(
        text.contains(&plaintext_hash),
        "audit-hash must match the logged plaintext"
    );

    let all = entries(&log);
    let responses: Vec<&Value> = all.iter().filter(|e| e["type"] == "response").collect();
    let requests: Vec<&Value> = all.iter().filter(|e| e["type"] == "request").collect();
    assert_eq!(
        responses.len(),
        requests.len(),
        "every request has its response"
    );
    // Vault's field order and shape.
    let first = &all[0];
    let names: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names[..4], ["time", "type", "auth", "request"]);
    assert_eq!(first["request"]["remote_address"], "127.0.0.1");
    assert!(
        first["auth"]["accessor"]
            .as_str()
            .unwrap()
            .starts_with(HMAC_PREFIX)
    );
    assert_eq!(first["auth"]["policies"], json!(["root"]));
    let encrypt = responses
        .iter()
        .find(|e| {
            e["request"]["path"] == "transit/encrypt/orders" && e["cipherd"]["transport"] == "rest"
        })
        .unwrap();
    assert_eq!(encrypt["cipherd"]["key"], "orders");
    assert_eq!(encrypt["cipherd"]["key_versions"], json!([1]));
    assert_eq!(encrypt["response"]["data"]["key_version"], 1);
    assert!(
        encrypt["request"]["id"]
            .as_str()
            .is_some_and(|id| id.len() == 36),
        "request id is a UUID"
    );
    let rest_batch = responses
        .iter()
        .find(|e| e["cipherd"]["items"] == 3)
        .expect("the REST batch is one entry pair with its item count");
    assert_eq!(rest_batch["cipherd"]["transport"], "rest");
    let grpc_batch = responses
        .iter()
        .find(|e| e["cipherd"]["items"] == 5)
        .expect("the gRPC batch is one entry pair");
    assert_eq!(grpc_batch["cipherd"]["transport"], "grpc");
    assert_eq!(grpc_batch["request"]["path"], "transit/encrypt/orders");
    // A gRPC call's data is what the REST call it is checked as would
    // show: the key is in the path, not hashed into the data.
    let grpc_encrypt = responses
        .iter()
        .find(|e| {
            e["request"]["path"] == "transit/encrypt/orders"
                && e["cipherd"]["transport"] == "grpc"
                && e["cipherd"]["items"].is_null()
        })
        .expect("the gRPC encrypt's response entry");
    let data = grpc_encrypt["request"]["data"].as_object().unwrap();
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        ["plaintext"],
        "{data:?}"
    );
    assert!(grpc_batch["request"]["data"].get("key").is_none());
    // The client address reaches gRPC entries too (the connection puts it
    // in each request, as tonic's server did).
    assert_eq!(grpc_encrypt["request"]["remote_address"], "127.0.0.1");
    assert!(
        grpc_encrypt["request"]["remote_port"]
            .as_u64()
            .is_some_and(|port| port > 0)
    );
    let denials: Vec<&&Value> = responses
        .iter()
        .filter(|e| e["auth"]["policy_results"]["allowed"] == false)
        .collect();
    assert_eq!(denials.len(), 2, "one REST and one gRPC denial");
    assert!(denials.iter().any(|e| e["cipherd"]["transport"] == "grpc"));
    assert!(
        denials
            .iter()
            .all(|e| e["auth"]["policies"] == json!(["decrypt-only", "default"]))
    );

    let report = verify(&[&log], &key);
    assert!(report.is_intact(), "{:?}", report.findings);
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert!(report.ends_with_final_checkpoint);
    assert!(report.checkpoints_verified >= 1);
    assert_eq!(report.entries as usize, requests.len() + responses.len());

    // The report counts per key version and token, with the denials.
    let usage = report_files(&[&log], &ReportFilter::default()).unwrap();
    let encrypt_rows: Vec<_> = usage
        .rows
        .iter()
        .filter(|r| r.key == "transit/orders" && r.op == "encrypt" && r.version == "1")
        .collect();
    let items: u64 = encrypt_rows.iter().map(|r| r.items).sum();
    assert_eq!(
        items,
        1 + 3 + 1 + 5,
        "single and batch items over both APIs"
    );
    let denied: u64 = usage.rows.iter().map(|r| r.denials).sum();
    assert_eq!(denied, 2);
    let decrypts = report_files(
        &[&log],
        &ReportFilter {
            op: Some("decrypt".into()),
            ..ReportFilter::default()
        },
    )
    .unwrap();
    assert_eq!(decrypts.rows.iter().map(|r| r.requests).sum::<u64>(), 1);
}

/// A server with a file device (in a new temporary directory) after [`traffic`].
async fn server_after_traffic() -> (tempfile::TempDir, PathBuf, Server) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let server = Server::start(vec![file_device(&log, &[])]).await;
    traffic(&server).await;
    (dir, log, server)
}

/// Writes the lines back with `change` applied.
fn tampered(
    dir: &Path,
    name: &str,
    lines: &[String],
    change: impl FnOnce(&mut Vec<String>),
) -> PathBuf {
    let mut copy = lines.to_vec();
    change(&mut copy);
    let path = dir.join(name);
    let mut text = copy.join("\n");
    text.push('\n');
    std::fs::write(&path, text).unwrap();
    path
}

fn only_finding(report: &VerifyReport) -> (FindingKind, usize) {
    let tampering: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.kind.is_tampering())
        .collect();
    assert!(!tampering.is_empty(), "tampering not detected: {report:?}");
    (tampering[0].kind, tampering[0].line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_tampering_is_detected_and_located() {
    let (dir, log, server) = server_after_traffic().await;
    let key = server.public_key();
    server.service.seal_now();
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(lines.len() > 12, "enough entries to tamper with");
    // Pick an ordinary entry in the middle (line numbers are 1-based).
    let target = (4..lines.len() - 3)
        .find(|&i| !lines[i].contains("\"checkpoint\"") && !lines[i + 1].contains("\"checkpoint\""))
        .unwrap();

    // One byte changed: a digit of the status, or a letter of the path.
    let altered = tampered(dir.path(), "altered.log", &lines, |l| {
        l[target] = l[target].replacen("orders", "ordert", 1);
    });
    assert_eq!(
        only_finding(&verify(&[&altered], &key)),
        (FindingKind::Altered, target + 1)
    );

    let removed = tampered(dir.path(), "removed.log", &lines, |l| {
        l.remove(target);
    });
    assert_eq!(
        only_finding(&verify(&[&removed], &key)),
        (FindingKind::Removed, target + 1)
    );

    let swapped = tampered(dir.path(), "swapped.log", &lines, |l| {
        l.swap(target, target + 1)
    });
    assert_eq!(
        only_finding(&verify(&[&swapped], &key)),
        (FindingKind::Reordered, target + 2)
    );

    // A forged entry that takes the next sequence number and links correctly
    // to its predecessor (the attacker can compute that hash).
    let forged = tampered(dir.path(), "forged.log", &lines, |l| {
        let previous: Value = serde_json::from_str(&l[target]).unwrap();
        let seq = previous["seq"].as_u64().unwrap() + 1;
        let prev_hash = chain::hash_text(&chain::line_hash(l[target].as_bytes()));
        let fake = format!(
            r#"{{"time":"2026-01-01T00:00:00Z","type":"response","auth":{{"display_name":"root"}},"request":{{"path":"transit/keys/orders","operation":"delete"}},"seq":{seq},"prev_hash":"{prev_hash}"}}"#
        );
        l.insert(target + 1, fake);
    });
    assert_eq!(
        only_finding(&verify(&[&forged], &key)),
        (FindingKind::Inserted, target + 2)
    );

    // The tail cut off, final checkpoint included.
    let truncated = tampered(dir.path(), "truncated.log", &lines, |l| {
        l.truncate(l.len() - 3)
    });
    let report = verify(&[&truncated], &key);
    assert!(report.is_intact());
    assert!(!report.ends_with_final_checkpoint);
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].kind, FindingKind::UnsignedTail);

    // A chain rewritten wholesale from an entry on (every hash recomputed)
    // fails at the next checkpoint's signature.
    let rewritten = tampered(dir.path(), "rewritten.log", &lines, |l| {
        l[target] = l[target].replacen("orders", "ordert", 1);
        for i in target + 1..l.len() {
            let previous = chain::hash_text(&chain::line_hash(l[i - 1].as_bytes()));
            let mut entry: Value = serde_json::from_str(&l[i]).unwrap();
            entry["prev_hash"] = Value::String(previous);
            l[i] = entry.to_string();
        }
    });
    let report = verify(&[&rewritten], &key);
    assert_eq!(only_finding(&report).0, FindingKind::BadSignature);

    // The intact log passes with the right key only.
    assert!(verify(&[&log], &key).findings.is_empty());
    let other =
        chain::CheckpointSigner::from_seed(&cipherd::crypto::SecretBytes::from_slice(&[9; 32]))
            .unwrap();
    let wrong = verify(&[&log], &other.public_key());
    assert_eq!(only_finding(&wrong).0, FindingKind::BadSignature);
}

/// A server auditing to `logs/audit.log` in a temporary directory, whose
/// `logs/` a test may remove to make the device fail.
async fn server_with_removable_log() -> (tempfile::TempDir, PathBuf, PathBuf, Server) {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("logs");
    std::fs::create_dir(&log_dir).unwrap();
    let log = log_dir.join("audit.log");
    let server = Server::start(vec![file_device(&log, &[])]).await;
    (dir, log_dir, log, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_requests_when_no_device_can_write() {
    let (_dir, log_dir, log, server) = server_with_removable_log().await;
    let plaintext = STANDARD.encode(SECRET_TEXT);
    let (status, _) = server.post("transit/keys/orders", json!({})).await;
    assert_eq!(status, 200);

    // The log's directory disappears: the device can no longer write.
    std::fs::remove_dir_all(&log_dir).unwrap();
    let (status, reply) = server
        .post("transit/encrypt/orders", json!({ "plaintext": plaintext }))
        .await;
    assert_eq!(status, 500, "{reply}");
    assert!(reply.to_string().contains("audit"), "{reply}");
    assert!(
        reply.get("data").is_none(),
        "no ciphertext is released: {reply}"
    );
    // A state change is refused before it runs.
    let (status, _) = server.post("transit/keys/refused", json!({})).await;
    assert_eq!(status, 500);
    let (status, _) = server.post("transit/keys/orders/rotate", json!({})).await;
    assert_eq!(status, 500);
    let mut transit = server.transit().await;
    let error = transit
        .encrypt(small_encrypt(ROOT))
        .await
        .expect_err("refused over gRPC too");
    assert_eq!(error.code(), tonic::Code::Unavailable);

    // The directory comes back: requests are audited and served again, and
    // nothing refused took effect.
    std::fs::create_dir(&log_dir).unwrap();
    let (status, reply) = server.call("GET", "transit/keys/orders", ROOT, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        reply["data"]["latest_version"], 1,
        "the refused rotation did not happen"
    );
    let (status, _) = server.call("GET", "transit/keys/refused", ROOT, None).await;
    assert_eq!(status, 404, "the refused key was not created");
    server.encrypt_ok(&plaintext).await;
    let key = server.public_key();
    server.service.seal_now();
    let report = verify(&[&log], &key);
    assert!(report.is_intact(), "{:?}", report.findings);
    assert!(report.ends_with_final_checkpoint);
    assert!(
        report.notes.iter().any(|n| n.contains("starts at seq")),
        "the new file continues the chain: {:?}",
        report.notes
    );
}

/// Items in the large batches below: enough for both adapters to run them,
/// auditing included, on the blocking pool.
const LARGE_BATCH: usize = 300;

fn large_rest_batch() -> Value {
    let items: Vec<Value> = (0..LARGE_BATCH)
        .map(|i| json!({ "plaintext": STANDARD.encode(format!("large batch row {i}")) }))
        .collect();
    json!({ "batch_input": items })
}

/// A gRPC encrypt batch of `rows` items "`text` 0", "`text` 1", ... as root.
fn grpc_batch(rows: usize, text: &str) -> Request<pb::EncryptBatchRequest> {
    grpc_request(
        pb::EncryptBatchRequest {
            key: "orders".into(),
            items: (0..rows)
                .map(|i| pb::EncryptItem {
                    plaintext: format!("{text} {i}").into_bytes(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
        ROOT,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_are_audited_item_by_item_or_refused() {
    let (_dir, log_dir, log, server) = server_with_removable_log().await;
    let (status, _) = server.post("transit/keys/orders", json!({})).await;
    assert_eq!(status, 200);
    let (status, reply) = server
        .post("transit/encrypt/orders", large_rest_batch())
        .await;
    assert_eq!(status, 200, "{reply}");
    let mut transit = server.transit().await;
    let batch = transit
        .encrypt_batch(grpc_batch(LARGE_BATCH, "large grpc row"))
        .await
        .expect("gRPC batch")
        .into_inner();
    assert_eq!(batch.results.len(), LARGE_BATCH);

    // Both batches were written before their results were released.
    let text = std::fs::read_to_string(&log).unwrap();
    for i in [0, LARGE_BATCH - 1] {
        for secret in [
            format!("large batch row {i}"),
            format!("large grpc row {i}"),
        ] {
            assert!(!text.contains(&secret), "{secret} in the log");
            assert!(
                !text.contains(&STANDARD.encode(&secret)),
                "{secret} in the log"
            );
        }
    }
    let responses: Vec<Value> = entries(&log)
        .into_iter()
        .filter(|e| e["type"] == "response")
        .collect();
    for transport in ["rest", "grpc"] {
        let entry = responses
            .iter()
            .find(|e| {
                e["cipherd"]["items"] == LARGE_BATCH && e["cipherd"]["transport"] == transport
            })
            .unwrap_or_else(|| panic!("the {transport} batch is audited with its item count"));
        assert_eq!(entry["response"]["status"], 200);
        let data = entry["request"]["data"].to_string();
        let hashed_plaintext = format!(r#""plaintext":"{HMAC_PREFIX}"#);
        assert_eq!(
            data.matches(&hashed_plaintext).count(),
            LARGE_BATCH,
            "{transport}: every item's plaintext is hashed"
        );
    }

    // Fail closed on this path too: no device can write, no result is released.
    std::fs::remove_dir_all(&log_dir).unwrap();
    let (status, reply) = server
        .post("transit/encrypt/orders", large_rest_batch())
        .await;
    assert_eq!(status, 500, "{reply}");
    assert!(reply.get("data").is_none(), "nothing released: {reply}");
    let error = transit
        .encrypt_batch(grpc_batch(LARGE_BATCH, "large grpc row"))
        .await
        .expect_err("refused over gRPC too");
    assert_eq!(error.code(), tonic::Code::Unavailable);
    std::fs::create_dir(&log_dir).unwrap();
    server.encrypt_ok(&STANDARD.encode(SECRET_TEXT)).await;
    let key = server.public_key();
    server.service.seal_now();
    let report = verify(&[&log], &key);
    assert!(report.is_intact(), "{:?}", report.findings);
    assert!(report.ends_with_final_checkpoint);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_restarts_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let server = Server::start(vec![file_device(&log, &[("rotate_bytes", "4000")])]).await;
    let plaintext = STANDARD.encode("rotation");
    for _ in 0..20 {
        server.encrypt_ok(&plaintext).await;
    }
    // Seal and unseal: the device closes with a final checkpoint and, when it
    // opens again, continues the chain from the file's last line.
    server.service.seal_now();
    server.service.unseal(&server.share).expect("unseal");
    for _ in 0..3 {
        server.encrypt_ok(&plaintext).await;
    }
    let key = server.public_key();
    server.service.seal_now();

    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != &log)
        .collect();
    files.sort();
    assert!(files.len() >= 3, "rotated files: {files:?}");
    for rotated in &files {
        let last = std::fs::read_to_string(rotated).unwrap();
        assert!(
            last.lines()
                .last()
                .unwrap()
                .contains("\"type\":\"checkpoint\""),
            "each rotated file ends with a checkpoint"
        );
    }
    files.push(log.clone());
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let report = verify(&paths, &key);
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert!(
        report.notes.is_empty(),
        "one chain, from seq 0: {:?}",
        report.notes
    );
    assert_eq!(report.first_seq, Some(0));
    // A rotated file left out is a removal.
    let mut missing = paths.clone();
    missing.remove(1);
    assert_eq!(
        only_finding(&verify(&missing, &key)).0,
        FindingKind::Removed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_audit_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Vec::new()).await;
    let (status, reply) = server.call("GET", "sys/audit", ROOT, None).await;
    assert_eq!(status, 200);
    assert_eq!(reply["data"], json!({}));
    let path = dir.path().join("api.log");
    let body = json!({"type": "file", "options": {"file_path": path.display().to_string()}});
    let (status, reply) = server.post("sys/audit/api", body.clone()).await;
    assert_eq!(status, 204, "{reply}");
    let (status, reply) = server.post("sys/audit/api", body).await;
    assert_eq!(status, 400);
    assert_eq!(reply["errors"], json!(["path already in use"]));
    let (status, reply) = server.call("GET", "sys/audit", ROOT, None).await;
    assert_eq!(status, 200);
    assert_eq!(reply["data"]["api/"]["type"], "file");
    assert_eq!(
        reply["api/"]["options"]["file_path"],
        path.display().to_string()
    );
    for (body, reason) in [
        (json!({"type": "file"}), "file_path is required"),
        (json!({"type": "syslog"}), "not supported"),
        (
            json!({"type": "file", "options": {"file_path": "relative"}}),
            "absolute",
        ),
        (json!({}), "type is required"),
    ] {
        let (status, reply) = server.post("sys/audit/bad", body).await;
        assert_eq!(status, 400, "{reply}");
        assert!(
            reply["errors"][0].as_str().unwrap().contains(reason),
            "{reply}"
        );
    }
    let (status, reply) = server
        .post("sys/audit-hash/api", json!({"input": "aGVsbG8="}))
        .await;
    assert_eq!(status, 200);
    assert!(
        reply["data"]["hash"]
            .as_str()
            .unwrap()
            .starts_with(HMAC_PREFIX)
    );
    let (status, reply) = server
        .post("sys/audit-hash/api", json!({"input": ""}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(reply["errors"], json!(["the \"input\" parameter is empty"]));
    let (status, _) = server
        .post("sys/audit-hash/nothing", json!({"input": "x"}))
        .await;
    assert_eq!(status, 400);
    let (status, reply) = server
        .call("GET", "sys/audit/signing-key", ROOT, None)
        .await;
    assert_eq!(status, 200);
    assert!(parse_public_key(reply["data"]["public_key"].as_str().unwrap()).is_some());

    // Root-protected: a token with every capability but sudo is refused.
    let admin = server.token_with_policy(
        "audit-admin",
        r#"path "sys/audit*" { capabilities = ["create", "read", "update", "delete", "list"] }"#,
    );
    for (method, path) in [
        ("GET", "sys/audit"),
        ("GET", "sys/audit/signing-key"),
        ("DELETE", "sys/audit/api"),
    ] {
        let (status, _) = server.call(method, path, &admin, None).await;
        assert_eq!(status, 403, "{method} {path}");
    }
    let (status, _) = server.call("DELETE", "sys/audit/api", ROOT, None).await;
    assert_eq!(status, 204);
    let (status, reply) = server.call("GET", "sys/audit", ROOT, None).await;
    assert_eq!(status, 200);
    assert_eq!(reply["data"], json!({}));
    // The disabled device closed its log with a final checkpoint.
    let key = server.public_key();
    let report = verify(&[&path], &key);
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert!(report.ends_with_final_checkpoint);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_verify_and_report() {
    let (dir, log, server) = server_after_traffic().await;
    let (key, _) = server
        .service
        .audit_signing_key(&RequestContext {
            token: Some(ROOT),
            transport: Transport::Rest,
            audit: None,
        })
        .unwrap();
    server.service.seal_now();
    let cipherd = env!("CARGO_BIN_EXE_cipherd");
    let run = |args: &[&str]| {
        std::process::Command::new(cipherd)
            .args(args)
            .output()
            .expect("run cipherd")
    };
    let log_arg = log.to_str().unwrap();
    let ok = run(&["audit", "verify", log_arg, "--public-key", &key]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("OK"));

    let mut lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.remove(3);
    let removed = dir.path().join("removed.log");
    std::fs::write(&removed, lines.join("\n") + "\n").unwrap();
    let bad = run(&[
        "audit",
        "verify",
        removed.to_str().unwrap(),
        "--public-key",
        &key,
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(
        text.contains("TAMPERED") && text.contains("removed.log:4"),
        "{text}"
    );

    let csv = run(&[
        "audit", "report", log_arg, "--format", "csv", "--op", "encrypt",
    ]);
    assert!(csv.status.success());
    let text = String::from_utf8_lossy(&csv.stdout);
    let mut rows = text.lines();
    assert!(rows.next().unwrap().starts_with("key,version,accessor"));
    assert!(rows.all(|row| row.contains(",encrypt,")), "{text}");
    let json_report = run(&[
        "audit", "report", log_arg, "--format", "json", "--key", "orders",
    ]);
    let parsed: Value = serde_json::from_slice(&json_report.stdout).unwrap();
    assert!(!parsed["rows"].as_array().unwrap().is_empty());
    let bad_time = run(&["audit", "report", log_arg, "--since", "yesterday"]);
    assert!(!bad_time.status.success());
    assert!(String::from_utf8_lossy(&bad_time.stderr).contains("RFC 3339"));
}

#[test]
fn stdout_device_and_audit_flags_of_the_server() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flag.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cipherd"))
        .args([
            "server",
            "--dev",
            "--dev-root-token",
            ROOT,
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--audit-stdout",
            "--audit-file",
            file.to_str().unwrap(),
            "--audit-option",
            "fsync=always",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn cipherd");
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = std::time::Duration::from_secs(60);
    let address = loop {
        let line = lines.recv_timeout(deadline).expect("listen line");
        if let Some(rest) = line.strip_prefix("cipherd listening rest=") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let status = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("X-Vault-Token: {ROOT}"),
            "-X",
            "POST",
            "-d",
            r#"{"plaintext":"aGVsbG8="}"#,
            &format!("{address}/v1/transit/encrypt/flags"),
        ])
        .output()
        .expect("curl");
    // Stop the server (SIGTERM) before asserting, so no process outlives a failure.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = child.wait().expect("wait");
    assert_eq!(String::from_utf8_lossy(&status.stdout), "200");
    assert!(exit.success(), "{exit:?}");
    // The reader ends at EOF, now that the server has exited.
    let printed: Vec<Value> = lines
        .iter()
        .filter_map(|line| serde_json::from_str(&line).ok())
        .collect();
    let types: Vec<&str> = printed.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(
        types.contains(&"request") && types.contains(&"response"),
        "{types:?}"
    );
    assert_eq!(
        types.last(),
        Some(&"checkpoint"),
        "stdout ends with the final checkpoint"
    );
    assert!(printed.iter().all(|e| e["seq"].is_u64()));
    let logged = entries(&file);
    assert_eq!(logged.last().unwrap()["checkpoint"]["final"], true);
    assert!(
        logged
            .iter()
            .any(|e| e["request"]["path"] == "transit/encrypt/flags")
    );
}
