//! Helpers of the bulk rewrap tests: a dev server with a three-version key,
//! ciphertexts made and checked over gRPC, and `cipherd rewrap` runs as
//! child processes (killed on drop, like the servers).
//!
//! Used through `#[path = "common/rewrap.rs"] mod rewrap;` beside
//! `common/process.rs`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cipherd::api::grpc::{MAX_MESSAGE_BYTES, pb};
use pb::transit_client::TransitClient;
use serde_json::Value;
use tonic::transport::Channel;

use super::process::{ProcessServer, binary};

/// The root token of the dev servers.
pub const TOKEN: &str = "root";
/// The key every test rewraps; it has versions 1, 2 and 3.
pub const KEY: &str = "rw";
/// Items per EncryptBatch/DecryptBatch call.
const CHUNK: usize = 10_000;

/// A dev server with [`KEY`] at version 3.
pub struct Server {
    pub process: ProcessServer,
    pub grpc: String,
}

impl Server {
    /// Starts a dev server and creates [`KEY`] with three versions.
    pub async fn start() -> Self {
        let process = ProcessServer::start_dev(&["--dev-root-token", TOKEN]);
        let grpc = process
            .banner()
            .iter()
            .find_map(|line| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix("grpc="))
            })
            .expect("grpc= in the listen line")
            .to_owned();
        let server = Self { process, grpc };
        let mut transit = server.transit().await;
        transit
            .create_key(request(pb::CreateKeyRequest {
                key: KEY.into(),
                ..Default::default()
            }))
            .await
            .expect("create key");
        for _ in 0..2 {
            transit
                .rotate_key(request(pb::RotateKeyRequest {
                    key: KEY.into(),
                    ..Default::default()
                }))
                .await
                .expect("rotate key");
        }
        server
    }

    /// A gRPC client.
    pub async fn transit(&self) -> TransitClient<Channel> {
        let channel = Channel::from_shared(self.grpc.clone())
            .expect("gRPC address")
            .connect()
            .await
            .expect("connect over gRPC");
        TransitClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Encrypts `(plaintext, version)` pairs under `key`, in order.
    pub async fn encrypt(&self, key: &str, items: &[(String, u32)]) -> Vec<String> {
        let mut transit = self.transit().await;
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(CHUNK) {
            let answer = transit
                .encrypt_batch(request(pb::EncryptBatchRequest {
                    key: key.into(),
                    items: chunk
                        .iter()
                        .map(|(plaintext, version)| pb::EncryptItem {
                            plaintext: plaintext.as_bytes().to_vec(),
                            key_version: *version,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }))
                .await
                .expect("encrypt batch")
                .into_inner();
            for result in answer.results {
                match result.result {
                    Some(pb::ciphertext_result::Result::Ok(c)) => out.push(c.ciphertext),
                    other => panic!("encrypt failed: {other:?}"),
                }
            }
        }
        out
    }

    /// Decrypts ciphertexts of [`KEY`]; `None` for those that fail.
    pub async fn decrypt(&self, ciphertexts: &[String]) -> Vec<Option<String>> {
        let mut transit = self.transit().await;
        let mut out = Vec::with_capacity(ciphertexts.len());
        for chunk in ciphertexts.chunks(CHUNK) {
            let answer = transit
                .decrypt_batch(request(pb::DecryptBatchRequest {
                    key: KEY.into(),
                    items: chunk
                        .iter()
                        .map(|c| pb::DecryptItem {
                            ciphertext: c.clone(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }))
                .await
                .expect("decrypt batch")
                .into_inner();
            for result in answer.results {
                out.push(match result.result {
                    Some(pb::plaintext_result::Result::Plaintext(p)) => {
                        Some(String::from_utf8(p).expect("UTF-8 plaintext"))
                    }
                    _ => None,
                });
            }
        }
        out
    }

    /// `cipherd <args>` against this server, with the token and gRPC
    /// address in the environment.
    pub fn job(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command
            .args(args)
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .env_remove("RUST_BACKTRACE")
            .env("CIPHERD_ADDR", self.process.addr())
            .env("CIPHERD_TOKEN", TOKEN)
            .env("CIPHERD_GRPC_ADDR", &self.grpc)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs `cipherd <args>` to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.job(args).output().expect("run cipherd")
    }
}

/// The checkpoint and report files of a job, in a temporary folder that
/// lives as long as this value (other files of the test may go there too).
pub struct JobFiles {
    pub checkpoint: PathBuf,
    pub report: PathBuf,
    pub dir: tempfile::TempDir,
}

impl JobFiles {
    /// A new folder.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self {
            checkpoint: dir.path().join("checkpoint.json"),
            report: dir.path().join("report.json"),
            dir,
        }
    }

    /// `cipherd rewrap --key KEY <source> --checkpoint .. --report-json ..
    /// <extra>` against `server`.
    pub fn command(&self, server: &Server, source: &[&str], extra: &[&str]) -> Command {
        let mut args = vec!["rewrap", "--key", KEY];
        args.extend_from_slice(source);
        args.extend([
            "--checkpoint",
            self.checkpoint.to_str().expect("UTF-8 path"),
            "--report-json",
            self.report.to_str().expect("UTF-8 path"),
        ]);
        args.extend_from_slice(extra);
        server.job(&args)
    }

    /// The last JSON report.
    pub fn report(&self) -> Value {
        report(&self.report)
    }

    /// The checkpoint, if there is one.
    pub fn checkpoint(&self) -> Option<Value> {
        checkpoint(&self.checkpoint)
    }
}

/// A request with the root token.
pub fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-vault-token", TOKEN.parse().expect("metadata"));
    request
}

/// A running job, SIGKILLed on drop.
pub struct Job {
    pub child: Child,
}

impl Job {
    /// Spawns `command` with stdout and stderr going nowhere (a full pipe
    /// must not stall it).
    pub fn spawn(mut command: Command) -> Self {
        command.stdout(Stdio::null()).stderr(Stdio::null());
        Self {
            child: command.spawn().expect("spawn cipherd rewrap"),
        }
    }

    /// Polls (every 10 ms, up to `limit`) until `ready` holds; panics if the
    /// job exits first or the limit passes.
    pub fn wait_until(&mut self, limit: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if ready() {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("the job exited ({status}) before the expected point");
            }
            assert!(
                Instant::now() < deadline,
                "the job did not reach the expected point"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The version of a `vault:vN:` string.
pub fn version(ciphertext: &str) -> u32 {
    ciphertext
        .strip_prefix("vault:v")
        .and_then(|rest| rest.split_once(':'))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("not a vault:vN: string: {ciphertext:?}"))
}

/// Reads a JSON report.
pub fn report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read the JSON report");
    serde_json::from_str(&text).expect("report is JSON")
}

/// Reads a checkpoint file, if it exists and is complete.
pub fn checkpoint(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Panics with the job's output unless it succeeded.
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "cipherd failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
