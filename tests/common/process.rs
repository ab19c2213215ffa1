//! Out-of-process servers: spawns the `cipherd` binary, finds it by the
//! `cipherd listening rest=...` line on stdout (bounded wait, no sleeps), and
//! makes sure no child outlives its test (killed on drop).
//!
//! Used by `tests/server_lifecycle.rs` and `tests/crash_sigkill.rs` through
//! `#[path = "common/process.rs"] mod process;` (so that those test binaries do
//! not compile the rest of `tests/common`), and declared in `tests/common/mod.rs`
//! for anyone else.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a server may take to print its listen line.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

const LISTEN_PREFIX: &str = "cipherd listening rest=";

/// The path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_cipherd")
}

/// A `cipherd` child process.
pub struct ProcessServer {
    child: Option<Child>,
    addr: String,
    data_dir: Option<PathBuf>,
    /// Lines printed on stdout before the listen line (dev mode's root token...).
    banner: Vec<String>,
    stderr: Arc<Mutex<String>>,
    /// Owns the temporary data directory, if the harness created it.
    _temp: Option<tempfile::TempDir>,
}

/// What a child that was expected to fail at start-up left behind.
#[derive(Debug)]
pub struct StartFailure {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl std::fmt::Debug for ProcessServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessServer")
            .field("pid", &self.child.as_ref().map(Child::id))
            .field("addr", &self.addr)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl ProcessServer {
    /// `cipherd server --data-dir <new temp dir> --listen 127.0.0.1:0 <extra>`.
    /// The directory lives as long as the returned value.
    pub fn start_temp(extra: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("temporary data directory");
        let mut server = Self::start_on(temp.path(), extra);
        server._temp = Some(temp);
        server
    }

    /// `cipherd server --data-dir <dir> --listen 127.0.0.1:0 <extra>`.
    pub fn start_on(dir: &Path, extra: &[&str]) -> Self {
        let dir_arg = dir.to_str().expect("UTF-8 data directory");
        let mut args = vec!["server", "--data-dir", dir_arg, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut server = Self::spawn(&args);
        server.data_dir = Some(dir.to_owned());
        server
    }

    /// `cipherd server --dev --listen 127.0.0.1:0 <extra>`.
    pub fn start_dev(extra: &[&str]) -> Self {
        let mut args = vec!["server", "--dev", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Self::spawn(&args)
    }

    /// Spawns the binary with `args` and waits (bounded) for the listen line.
    /// Panics, with the child's stderr, if it exits or stays silent.
    pub fn spawn(args: &[&str]) -> Self {
        let mut child = command(args).spawn().expect("spawn cipherd");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        collect_stderr(stderr_pipe, stderr.clone());

        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        // Reads stdout to its end (so the child never blocks on a full pipe),
        // forwarding every line; the receiver stops listening after the listen line.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines_tx.send(line);
            }
        });

        let deadline = Instant::now() + START_TIMEOUT;
        let mut banner = Vec::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => match line.strip_prefix(LISTEN_PREFIX) {
                    // The line may go on with `grpc=...`: the REST URL is the
                    // first word. The whole line stays in the banner.
                    Some(addr) => {
                        let addr = addr.split_whitespace().next().unwrap_or("").to_owned();
                        banner.push(line);
                        break addr;
                    }
                    None => banner.push(line),
                },
                Err(error) => {
                    let why = match error {
                        mpsc::RecvTimeoutError::Timeout => {
                            let _ = child.kill();
                            "no listen line before the deadline"
                        }
                        mpsc::RecvTimeoutError::Disconnected => {
                            "stdout closed before the listen line"
                        }
                    };
                    let status = child.wait().ok();
                    std::thread::sleep(Duration::from_millis(50)); // let the stderr reader finish
                    panic!(
                        "cipherd {args:?}: {why} (exit status {status:?})\nstdout so far: {banner:?}\nstderr:\n{}",
                        stderr.lock().expect("stderr lock")
                    );
                }
            }
        };
        assert!(
            addr.starts_with("http://") || addr.starts_with("https://"),
            "unexpected listen line address {addr:?}"
        );
        Self {
            child: Some(child),
            addr,
            data_dir: None,
            banner,
            stderr,
            _temp: None,
        }
    }

    /// Runs the binary with `args` expecting it to exit before listening.
    /// Panics if it prints the listen line.
    pub fn start_expecting_failure(args: &[&str]) -> StartFailure {
        let child = command(args).spawn().expect("spawn cipherd");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let output = match rx.recv_timeout(START_TIMEOUT) {
            Ok(output) => output.expect("wait for cipherd"),
            Err(_) => {
                // Still running: it must have started serving. Kill it by pid.
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                panic!("cipherd {args:?} did not exit; it was expected to fail at start-up");
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            !stdout.contains(LISTEN_PREFIX),
            "cipherd {args:?} started listening; it was expected to fail: {stdout}"
        );
        StartFailure {
            status: output.status,
            stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The data directory, if any.
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    /// Lines printed on stdout before the listen line.
    pub fn banner(&self) -> &[String] {
        &self.banner
    }

    /// What the child printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// The child's process id (while running).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A client for this server.
    pub fn client(&self, token: Option<&str>) -> Client {
        Client::new(&self.addr, token)
    }

    /// SIGKILL (`Child::kill`) and reap. No shutdown code runs in the child.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (`kill -TERM <pid>`), then waits for the exit (bounded; SIGKILL
    /// and a panic past the deadline). Returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM failed: {sent}");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "cipherd did not exit within {STOP_TIMEOUT:?} of SIGTERM\nstderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True while the child has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for ProcessServer {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The server must not pick up the developer's settings.
        .env_remove("CIPHERD_DATA_DIR")
        .env_remove("CIPHERD_LISTEN")
        .env_remove("CIPHERD_UNSEAL_KEY_FILE")
        .env_remove("CIPHERD_DEV_ROOT_TOKEN")
        .env_remove("CIPHERD_IO_THREADS")
        // Servers run side by side: none may take the default gRPC port.
        .env("CIPHERD_GRPC_LISTEN", "127.0.0.1:0");
    command
}

fn collect_stderr(mut pipe: impl Read + Send + 'static, sink: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        loop {
            match pipe.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buffer[..n]);
                    let mut sink = sink.lock().expect("stderr lock");
                    // Keep the tail only: a long run must not grow without bound.
                    if sink.len() > 1 << 20 {
                        let cut = sink.len() - (1 << 19);
                        let cut = (cut..sink.len())
                            .find(|&i| sink.is_char_boundary(i))
                            .unwrap_or(0);
                        sink.drain(..cut);
                    }
                    sink.push_str(&text);
                }
            }
        }
    });
}

/// An HTTP reply: status and JSON body (`Value::Null` when empty).
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Parsed body (`Value::Null` for an empty body; a string if not JSON).
    pub body: Value,
}

impl Reply {
    /// `body.data.<field>`.
    pub fn data(&self, field: &str) -> &Value {
        &self.body["data"][field]
    }

    /// The `errors` array as strings.
    pub fn errors(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A tiny async REST client (reqwest) with an optional `X-Vault-Token`.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for `base` (`http://host:port`).
    pub fn new(base: &str, token: Option<&str>) -> Self {
        cipherd::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("reqwest client");
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
        }
    }

    /// The same client with another token.
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            token: token.map(str::to_owned),
        }
    }

    /// Sends `method /v1/<path>` with an optional JSON body. Transport errors
    /// (refused, reset) are returned as `Err`.
    pub async fn try_send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, reqwest::Error> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let url = format!("{}/v1/{}", self.base, path.trim_start_matches('/'));
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Reply { status, body })
    }

    /// Like [`try_send`](Self::try_send), panicking on transport errors.
    pub async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        match self.try_send(method, path, body).await {
            Ok(reply) => reply,
            Err(error) => panic!("{method} /v1/{path}: transport error: {error}"),
        }
    }

    /// `GET`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None).await
    }

    /// `POST` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send("POST", path, Some(&body)).await
    }

    /// `PUT` with a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send("PUT", path, Some(&body)).await
    }
}
