//! `cipherd bench`: a load generator for a local server's gRPC (and optionally
//! REST) encrypt paths, beside the raw AEAD figure of this machine.
//!
//! Every row encrypts 64-byte items with the `aes256-gcm96` key `bench`
//! (created if missing) for `--duration` seconds, in closed loops (a caller
//! sends its next call when the answer to the previous one arrives), and
//! records the latency of every call (every batch for the batch rows). Only
//! servers on 127.0.0.1 or localhost are accepted: this is a load generator.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use prost::Message as _;
use prost::bytes::Bytes;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tonic::codegen::http;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

use crate::api::grpc::{MAX_MESSAGE_BYTES, pb};
use pb::transit_client::TransitClient;

const KEY: &str = "bench";
const ITEM_BYTES: usize = 64;

/// Flags of `cipherd bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// gRPC address of the server (127.0.0.1 or localhost only).
    #[arg(long, default_value = "http://127.0.0.1:8250")]
    grpc_addr: String,
    /// REST address; when given, REST single encrypts are measured too.
    #[arg(long)]
    rest_addr: Option<String>,
    /// Token (default: CIPHERD_TOKEN, then VAULT_TOKEN).
    #[arg(long)]
    token: Option<String>,
    /// Seconds per row.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// HTTP/2 connections for the gRPC rows; callers are spread over them.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Concurrent callers for the EncryptBatch rows.
    #[arg(long, default_value_t = 4)]
    batch_callers: usize,
    /// Batches in flight on the Bulk stream.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Measure only the unary rows (gRPC and, with --rest-addr, REST).
    #[arg(long)]
    unary_only: bool,
    /// Run the unary rows this many times, interleaved (gRPC and REST rows
    /// alternate within each round), so a noisy machine hits both alike.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

/// One measured row.
struct Row {
    name: String,
    calls: u64,
    items: u64,
    errors: u64,
    elapsed: Duration,
    /// Per-call latencies in nanoseconds.
    latencies: Vec<u64>,
}

impl Row {
    fn calls_per_sec(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    fn items_per_sec(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.latencies.len()) - 1;
        Duration::from_nanos(self.latencies[index])
    }
}

/// What one caller task returns: calls, items, errors, latencies.
type Tally = (u64, u64, u64, Vec<u64>);

/// Runs `cipherd bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("CIPHERD_TOKEN").ok())
        .or_else(|| std::env::var("VAULT_TOKEN").ok())
        .filter(|t| !t.is_empty())
        .context("no token: pass --token or set CIPHERD_TOKEN / VAULT_TOKEN")?;
    check_local(&args.grpc_addr)?;
    if let Some(rest) = &args.rest_addr {
        check_local(rest)?;
    }
    if args.connections == 0 || args.batch_callers == 0 || args.window == 0 || args.rounds == 0 {
        bail!("--connections, --batch-callers, --window and --rounds must be at least 1");
    }
    let duration = Duration::from_secs(args.duration.max(1));

    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        // Each Endpoint::connect opens its own HTTP/2 connection.
        let channel = Endpoint::from_shared(args.grpc_addr.clone())
            .context("gRPC address")?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {}", args.grpc_addr))?;
        channels.push(channel);
    }
    let token: Arc<str> = token.into();
    ensure_key(&channels[0], &token).await?;

    let secs = duration.as_secs();
    eprintln!(
        "cipherd bench: {} s per row, {} gRPC connection(s), 64-byte items, key {KEY} (aes256-gcm96)",
        secs, args.connections
    );

    let mut rows = Vec::new();
    for round in 1..=args.rounds {
        let suffix = if args.rounds > 1 {
            format!(", round {round}")
        } else {
            String::new()
        };
        for callers in [1usize, 64] {
            let mut round_rows = vec![unary(&channels, &token, callers, duration).await?];
            let direct = (0..callers.min(args.connections))
                .map(|_| DirectGrpc::connect(&args.grpc_addr, &token))
                .collect::<Vec<_>>();
            let mut direct_clients = Vec::with_capacity(direct.len());
            for client in direct {
                direct_clients.push(client.await?);
            }
            let callers_of = |i: usize| direct_clients[i % direct_clients.len()].clone();
            round_rows.push(
                closed_loop(
                    format!("gRPC Encrypt (h2 direct), {callers} caller(s)"),
                    (0..callers).map(callers_of).collect(),
                    duration,
                )
                .await?,
            );
            if let Some(rest) = &args.rest_addr {
                round_rows.push(rest_unary(rest, &token, callers, duration).await?);
                let mut direct = Vec::with_capacity(callers);
                for _ in 0..callers {
                    // HTTP/1.1 has no multiplexing: one connection per caller.
                    direct.push(DirectRest::connect(rest, &token).await?);
                }
                round_rows.push(
                    closed_loop(
                        format!("REST encrypt (hyper http1 direct), {callers} caller(s)"),
                        direct,
                        duration,
                    )
                    .await?,
                );
            }
            for mut row in round_rows {
                row.name.push_str(&suffix);
                eprintln!("  done: {}", row.name);
                rows.push(row);
            }
        }
    }
    if args.unary_only {
        print_table(&rows, None, secs, args.connections);
        return Ok(());
    }
    for size in [100usize, 1000] {
        let row = batch(&channels, &token, size, args.batch_callers, duration).await?;
        eprintln!("  done: {}", row.name);
        rows.push(row);
    }
    let template = pb::BulkRequest {
        operation: pb::BulkOperation::Encrypt.into(),
        key: KEY.into(),
        items: (0..1000)
            .map(|_| pb::BulkItem {
                plaintext: plaintext(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let row = bulk(&channels[0], &token, template, args.window, duration).await?;
    eprintln!("  done: {}", row.name);
    rows.push(row);
    // Rewrap (decrypt + encrypt on the server) is what `cipherd rewrap`
    // streams: its baseline.
    let template = rewrap_template(&channels[0], &token, 1000).await?;
    let row = bulk(&channels[0], &token, template, args.window, duration).await?;
    eprintln!("  done: {}", row.name);
    rows.push(row);

    let raw = tokio::task::spawn_blocking(move || raw_aead(duration))
        .await
        .context("raw AEAD task")?;
    eprintln!("  done: raw AEAD");

    print_table(&rows, Some(raw), secs, args.connections);
    Ok(())
}

/// Refuses any target that is not 127.0.0.1 or localhost.
fn check_local(address: &str) -> anyhow::Result<()> {
    let uri: tonic::codegen::http::Uri = address
        .parse()
        .with_context(|| format!("invalid address {address:?}"))?;
    match uri.host() {
        Some("127.0.0.1" | "localhost") => Ok(()),
        Some(host) => {
            bail!("refusing to load {host}: `cipherd bench` only targets 127.0.0.1 or localhost")
        }
        None => bail!("address {address:?} has no host"),
    }
}

fn with_token<T>(token: &str, message: T) -> anyhow::Result<Request<T>> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "x-vault-token",
        token.parse().context("token is not valid metadata")?,
    );
    Ok(request)
}

fn client(channel: &Channel) -> TransitClient<Channel> {
    TransitClient::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Creates the `bench` key unless it exists.
async fn ensure_key(channel: &Channel, token: &str) -> anyhow::Result<()> {
    let mut transit = client(channel);
    let read = transit
        .read_key(with_token(
            token,
            pb::ReadKeyRequest {
                key: KEY.into(),
                ..Default::default()
            },
        )?)
        .await;
    match read {
        Ok(answer) => {
            let kind = answer
                .into_inner()
                .key
                .map(|k| k.r#type)
                .unwrap_or_default();
            if kind != "aes256-gcm96" {
                bail!("key {KEY} exists with type {kind:?}, not aes256-gcm96");
            }
            Ok(())
        }
        Err(status) if status.code() == Code::NotFound => {
            transit
                .create_key(with_token(
                    token,
                    pb::CreateKeyRequest {
                        key: KEY.into(),
                        r#type: "aes256-gcm96".into(),
                        ..Default::default()
                    },
                )?)
                .await
                .context("creating key bench")?;
            Ok(())
        }
        Err(status) => Err(anyhow::anyhow!("reading key {KEY}: {status}")),
    }
}

fn plaintext() -> Vec<u8> {
    (0..ITEM_BYTES as u8).collect()
}

/// Merges the callers' tallies into a row.
async fn collect(
    name: String,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Tally>>>,
    started: Instant,
) -> anyhow::Result<Row> {
    let mut row = Row {
        name,
        calls: 0,
        items: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        let (calls, items, errors, latencies) = task.await.context("caller task")??;
        row.calls += calls;
        row.items += items;
        row.errors += errors;
        row.latencies.extend(latencies);
    }
    row.elapsed = started.elapsed();
    row.latencies.sort_unstable();
    Ok(row)
}

/// Unary Encrypt through tonic's `Channel`, `callers` tasks spread over the
/// channels.
async fn unary(
    channels: &[Channel],
    token: &Arc<str>,
    callers: usize,
    duration: Duration,
) -> anyhow::Result<Row> {
    // Parsed once: the loop measures the call, not the parsing.
    let token: MetadataValue<Ascii> = token.parse().context("token is not valid metadata")?;
    let callers = (0..callers)
        .map(|i| TonicCaller {
            transit: client(&channels[i % channels.len()]),
            token: token.clone(),
            message: pb::EncryptRequest {
                key: KEY.into(),
                plaintext: plaintext(),
                ..Default::default()
            },
        })
        .collect::<Vec<_>>();
    let name = format!("gRPC Encrypt (tonic Channel), {} caller(s)", callers.len());
    closed_loop(name, callers, duration).await
}

/// One caller of the tonic row: the generated client, as applications use it.
struct TonicCaller {
    transit: TransitClient<Channel>,
    token: MetadataValue<Ascii>,
    message: pb::EncryptRequest,
}

impl UnaryCaller for TonicCaller {
    async fn call(&mut self) -> bool {
        let mut request = Request::new(self.message.clone());
        request
            .metadata_mut()
            .insert("x-vault-token", self.token.clone());
        matches!(
            self.transit.encrypt(request).await,
            Ok(a) if a.get_ref().ciphertext.starts_with("vault:v")
        )
    }
}

/// REST single encrypt, keep-alive, `callers` tasks on one reqwest client.
async fn rest_unary(
    address: &str,
    token: &Arc<str>,
    callers: usize,
    duration: Duration,
) -> anyhow::Result<Row> {
    crate::tls::install_crypto_provider();
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(callers)
        .build()
        .context("building the HTTP client")?;
    let url = reqwest::Url::parse(&format!(
        "{}/v1/transit/encrypt/{KEY}",
        address.trim_end_matches('/')
    ))
    .context("REST address")?;
    let body = serde_json::json!({ "plaintext": STANDARD.encode(plaintext()) }).to_string();
    let callers = (0..callers)
        .map(|_| ReqwestCaller {
            http: http.clone(),
            url: url.clone(),
            body: body.clone(),
            token: token.clone(),
        })
        .collect::<Vec<_>>();
    let name = format!("REST encrypt (reqwest), {} caller(s)", callers.len());
    closed_loop(name, callers, duration).await
}

/// One caller of the reqwest row: a pooled, kept-alive client, as scripts
/// use one.
struct ReqwestCaller {
    http: reqwest::Client,
    url: reqwest::Url,
    body: String,
    token: Arc<str>,
}

impl UnaryCaller for ReqwestCaller {
    async fn call(&mut self) -> bool {
        let answer = self
            .http
            .post(self.url.clone())
            .header("X-Vault-Token", &*self.token)
            .header("Content-Type", "application/json")
            .body(self.body.clone())
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => response
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| {
                    v["data"]["ciphertext"]
                        .as_str()
                        .map(|c| c.starts_with("vault:v"))
                })
                .unwrap_or(false),
            _ => false,
        }
    }
}

/// EncryptBatch of `size` items with `callers` tasks spread over the channels.
async fn batch(
    channels: &[Channel],
    token: &Arc<str>,
    size: usize,
    callers: usize,
    duration: Duration,
) -> anyhow::Result<Row> {
    let message = pb::EncryptBatchRequest {
        key: KEY.into(),
        items: (0..size)
            .map(|_| pb::EncryptItem {
                plaintext: plaintext(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let started = Instant::now();
    let deadline = started + duration;
    let tasks = (0..callers)
        .map(|i| {
            let mut transit = client(&channels[i % channels.len()]);
            let token = token.clone();
            let message = message.clone();
            tokio::spawn(async move {
                let (mut calls, mut items, mut errors) = (0u64, 0u64, 0u64);
                let mut latencies = Vec::with_capacity(1 << 12);
                while Instant::now() < deadline {
                    let request = with_token(&token, message.clone())?;
                    let sent = Instant::now();
                    let answer = transit.encrypt_batch(request).await;
                    latencies.push(sent.elapsed().as_nanos() as u64);
                    calls += 1;
                    match answer {
                        Ok(a) => {
                            let results = &a.get_ref().results;
                            let ok = results
                                .iter()
                                .filter(|r| {
                                    matches!(r.result, Some(pb::ciphertext_result::Result::Ok(_)))
                                })
                                .count() as u64;
                            items += ok;
                            errors += size as u64 - ok;
                        }
                        Err(_) => errors += size as u64,
                    }
                }
                Ok((calls, items, errors, latencies))
            })
        })
        .collect();
    collect(
        format!("gRPC EncryptBatch {size}, {callers} callers"),
        tasks,
        started,
    )
    .await
}

/// A Bulk rewrap batch of `size` ciphertexts of 64-byte items.
async fn rewrap_template(
    channel: &Channel,
    token: &str,
    size: usize,
) -> anyhow::Result<pb::BulkRequest> {
    let message = pb::EncryptBatchRequest {
        key: KEY.into(),
        items: (0..size)
            .map(|_| pb::EncryptItem {
                plaintext: plaintext(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let answer = client(channel)
        .encrypt_batch(with_token(token, message)?)
        .await
        .context("encrypting the rewrap batch")?;
    let items = answer
        .into_inner()
        .results
        .into_iter()
        .map(|r| match r.result {
            Some(pb::ciphertext_result::Result::Ok(c)) => Ok(pb::BulkItem {
                ciphertext: c.ciphertext,
                ..Default::default()
            }),
            _ => Err(anyhow::anyhow!("encrypting the rewrap batch failed")),
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(pb::BulkRequest {
        operation: pb::BulkOperation::Rewrap.into(),
        key: KEY.into(),
        items,
        ..Default::default()
    })
}

/// The Bulk stream: copies of `template`, at most `window` in flight.
async fn bulk(
    channel: &Channel,
    token: &Arc<str>,
    template: pb::BulkRequest,
    window: usize,
    duration: Duration,
) -> anyhow::Result<Row> {
    let size = template.items.len();
    let operation = if template.operation == i32::from(pb::BulkOperation::Rewrap) {
        "rewrap"
    } else {
        "encrypt"
    };
    let (tx, rx) = mpsc::channel::<pb::BulkRequest>(window);
    let permits = Arc::new(Semaphore::new(window));
    let sent_at: Arc<Mutex<VecDeque<Instant>>> = Arc::new(Mutex::new(VecDeque::new()));
    let started = Instant::now();
    let deadline = started + duration;

    let sender = {
        let permits = permits.clone();
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let mut sequence = 0u64;
            while Instant::now() < deadline {
                let Ok(permit) = permits.acquire().await else {
                    break;
                };
                permit.forget();
                let mut request = template.clone();
                request.sequence = sequence;
                sequence += 1;
                sent_at.lock().expect("lock").push_back(Instant::now());
                if tx.send(request).await.is_err() {
                    break;
                }
            }
            // Dropping tx ends the request stream.
        })
    };

    let mut transit = client(channel);
    let mut answers = transit
        .bulk(with_token(
            token,
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )?)
        .await
        .context("opening the Bulk stream")?
        .into_inner();
    let (mut calls, mut items, mut errors) = (0u64, 0u64, 0u64);
    let mut latencies = Vec::with_capacity(1 << 12);
    let mut expected = 0u64;
    while let Some(answer) = answers.message().await.context("Bulk answer")? {
        let sent = sent_at.lock().expect("lock").pop_front();
        if let Some(sent) = sent {
            latencies.push(sent.elapsed().as_nanos() as u64);
        }
        permits.add_permits(1);
        if answer.sequence != expected {
            bail!(
                "Bulk answer out of order: {} for {expected}",
                answer.sequence
            );
        }
        expected += 1;
        calls += 1;
        let ok = answer
            .results
            .iter()
            .filter(|r| matches!(r.result, Some(pb::bulk_result::Result::Ciphertext(_))))
            .count() as u64;
        items += ok;
        errors += size as u64 - ok;
    }
    let elapsed = started.elapsed();
    sender.await.context("Bulk sender")?;
    latencies.sort_unstable();
    Ok(Row {
        name: format!("gRPC Bulk stream {operation} {size}/batch, window {window}"),
        calls,
        items,
        errors,
        elapsed,
        latencies,
    })
}

/// ring AES-256-GCM seal of 64 bytes + base64 of nonce, ciphertext and tag as
/// `vault:v1:...`, one thread, for `duration`. Returns items/s.
fn raw_aead(duration: Duration) -> f64 {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("AES key"));
    let plain = plaintext();
    let mut counter = 0u64;
    let mut sink = 0usize;
    let mut buffer = Vec::with_capacity(NONCE_LEN + ITEM_BYTES + 16);
    let mut text = String::with_capacity(128);
    let started = Instant::now();
    let deadline = started + duration;
    'outer: loop {
        for _ in 0..1024 {
            counter += 1;
            let mut nonce = [0u8; NONCE_LEN];
            nonce[4..].copy_from_slice(&counter.to_be_bytes());
            buffer.clear();
            buffer.extend_from_slice(&nonce);
            buffer.extend_from_slice(&plain);
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::empty(),
                    &mut buffer[NONCE_LEN..],
                )
                .expect("seal");
            buffer.extend_from_slice(tag.as_ref());
            text.clear();
            text.push_str("vault:v1:");
            STANDARD.encode_string(&buffer, &mut text);
            sink = sink.wrapping_add(text.len());
        }
        if Instant::now() >= deadline {
            break 'outer;
        }
    }
    std::hint::black_box(sink);
    counter as f64 / started.elapsed().as_secs_f64()
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn millis(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn print_table(rows: &[Row], raw: Option<f64>, secs: u64, connections: usize) {
    println!();
    println!(
        "64-byte items, aes256-gcm96, {secs} s per row, {connections} gRPC connection(s); \
         latency per call (per batch for batch rows)"
    );
    println!();
    println!("| row | calls/s | items/s | p50 | p99 | errors | items/s vs raw AEAD |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let ratio = raw.map_or_else(
            || "-".to_owned(),
            |raw| format!("{:.3}x", row.items_per_sec() / raw),
        );
        println!(
            "| {} | {} | {} | {} | {} | {} | {ratio} |",
            row.name,
            thousands(row.calls_per_sec()),
            thousands(row.items_per_sec()),
            millis(row.percentile(50.0)),
            millis(row.percentile(99.0)),
            row.errors,
        );
    }
    if let Some(raw) = raw {
        println!(
            "| raw AEAD (ring AES-256-GCM seal 64 B + base64, 1 thread) | - | {} | - | - | - | 1.000x |",
            thousands(raw)
        );
    }
}

/// One closed-loop caller of a unary row: sends a call, waits for its answer,
/// and says whether it was a good one.
trait UnaryCaller: Send + 'static {
    fn call(&mut self) -> impl Future<Output = bool> + Send;
}

/// Runs every caller in its own task until `duration` has passed.
async fn closed_loop<C: UnaryCaller>(
    name: String,
    callers: Vec<C>,
    duration: Duration,
) -> anyhow::Result<Row> {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks = callers
        .into_iter()
        .map(|mut caller| {
            tokio::spawn(async move {
                let (mut calls, mut errors) = (0u64, 0u64);
                let mut latencies = Vec::with_capacity(1 << 16);
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let ok = caller.call().await;
                    latencies.push(sent.elapsed().as_nanos() as u64);
                    calls += 1;
                    if !ok {
                        errors += 1;
                    }
                }
                Ok((calls, calls - errors, errors, latencies))
            })
        })
        .collect();
    collect(name, tasks, started).await
}

/// The host and port of a `http://host:port` address, for a TCP connect.
fn authority(address: &str) -> anyhow::Result<String> {
    let uri: http::Uri = address
        .parse()
        .with_context(|| format!("invalid address {address:?}"))?;
    let authority = uri
        .authority()
        .with_context(|| format!("address {address:?} has no host"))?;
    if uri.scheme_str() != Some("http") {
        bail!("the direct clients speak plain HTTP only: {address:?}");
    }
    Ok(authority.as_str().to_owned())
}

async fn connect_tcp(authority: &str) -> anyhow::Result<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// Unary gRPC Encrypt straight over an `h2` connection, with nothing between
/// the caller and the connection task. tonic's `Channel` puts a buffer task
/// in between, and hyper's HTTP/2 client sends a streaming request body from
/// a task of its own, so HEADERS and DATA leave in two writes; here both are
/// queued before the connection task runs and leave in one. The frames are
/// the ones tonic sends (`content-type: application/grpc`, `te: trailers`, a
/// length-prefixed message), and the answer is checked the same way: HTTP 200,
/// `grpc-status: 0`, a decodable message with a `vault:v` ciphertext.
#[derive(Clone)]
struct DirectGrpc {
    send: h2::client::SendRequest<Bytes>,
    uri: http::Uri,
    token: http::HeaderValue,
    /// The encoded request, length prefix included (the same every call).
    body: Bytes,
}

impl DirectGrpc {
    async fn connect(address: &str, token: &str) -> anyhow::Result<Self> {
        let authority = authority(address)?;
        let tcp = connect_tcp(&authority).await?;
        let (send, connection) = h2::client::handshake(tcp)
            .await
            .context("HTTP/2 handshake")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let message = pb::EncryptRequest {
            key: KEY.into(),
            plaintext: plaintext(),
            ..Default::default()
        };
        let length = u32::try_from(message.encoded_len()).context("message size")?;
        let mut body = Vec::with_capacity(5 + length as usize);
        body.push(0);
        body.extend_from_slice(&length.to_be_bytes());
        message.encode(&mut body).context("encoding the request")?;
        Ok(Self {
            send,
            uri: format!("http://{authority}/cipherd.v1.Transit/Encrypt")
                .parse()
                .context("request URI")?,
            token: token.parse().context("token is not a valid header")?,
            body: body.into(),
        })
    }

    async fn encrypt(&mut self) -> anyhow::Result<pb::EncryptResponse> {
        let request = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .header("x-vault-token", self.token.clone())
            .body(())?;
        let mut send = self.send.clone().ready().await?;
        let (response, mut stream) = send.send_request(request, false)?;
        stream.send_data(self.body.clone(), true)?;
        let (head, mut body) = response.await?.into_parts();
        if head.status != http::StatusCode::OK {
            bail!("HTTP status {}", head.status);
        }
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            body.flow_control().release_capacity(chunk.len())?;
            data.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await?;
        let status = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| head.headers.get("grpc-status"));
        if status.map(http::HeaderValue::as_bytes) != Some(b"0") {
            bail!("grpc-status {status:?}");
        }
        let length = data
            .get(1..5)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .context("short gRPC message")? as usize;
        let message = data.get(5..5 + length).context("truncated gRPC message")?;
        Ok(pb::EncryptResponse::decode(message)?)
    }
}

impl UnaryCaller for DirectGrpc {
    async fn call(&mut self) -> bool {
        matches!(self.encrypt().await, Ok(a) if a.ciphertext.starts_with("vault:v"))
    }
}

/// REST encrypt over one kept-alive HTTP/1.1 connection with hyper's
/// connection-level client: no pool, no URL parsing per call. The
/// counterpart of [`DirectGrpc`]: the answer is parsed into its typed
/// `data.ciphertext`.
struct DirectRest {
    send: hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>,
    uri: http::Uri,
    host: http::HeaderValue,
    token: http::HeaderValue,
    body: Bytes,
}

#[derive(serde::Deserialize)]
struct RestEncrypted {
    data: RestCiphertext,
}

#[derive(serde::Deserialize)]
struct RestCiphertext {
    ciphertext: String,
}

impl DirectRest {
    async fn connect(address: &str, token: &str) -> anyhow::Result<Self> {
        let authority = authority(address)?;
        let tcp = connect_tcp(&authority).await?;
        let (send, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let body = serde_json::json!({ "plaintext": STANDARD.encode(plaintext()) }).to_string();
        Ok(Self {
            send,
            uri: format!("/v1/transit/encrypt/{KEY}")
                .parse()
                .context("request URI")?,
            host: authority.parse().context("host header")?,
            token: token.parse().context("token is not a valid header")?,
            body: body.into(),
        })
    }

    async fn encrypt(&mut self) -> anyhow::Result<String> {
        use http_body_util::BodyExt as _;
        let request = http::Request::post(self.uri.clone())
            .header(http::header::HOST, self.host.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-vault-token", self.token.clone())
            .body(http_body_util::Full::new(self.body.clone()))?;
        self.send.ready().await?;
        let response = self.send.send_request(request).await?;
        if response.status() != http::StatusCode::OK {
            bail!("HTTP status {}", response.status());
        }
        let body = response.into_body().collect().await?.to_bytes();
        Ok(serde_json::from_slice::<RestEncrypted>(&body)?
            .data
            .ciphertext)
    }
}

impl UnaryCaller for DirectRest {
    async fn call(&mut self) -> bool {
        matches!(self.encrypt().await, Ok(c) if c.starts_with("vault:v"))
    }
}
