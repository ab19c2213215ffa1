//! Closed-loop unary `encrypt` load from this client, over its two
//! transports side by side: the direct HTTP/2 connection [`Client::connect`]
//! makes for `http://` endpoints, and a tonic `Channel`
//! ([`Client::from_channel`]). Rounds alternate which transport goes first.
//!
//! ```text
//! CIPHERD_GRPC_ADDR=http://127.0.0.1:8201 CIPHERD_TOKEN=<token> \
//!     cargo run --release -p cipherd-client --example load -- [callers] [seconds] [rounds]
//! ```
//!
//! Every caller shares one client (so one connection) and sends its next
//! call when the previous answer arrives; 64-byte plaintexts under the key
//! `load` (`aes256-gcm96`, created if missing).

use std::time::{Duration, Instant};

use cipherd_client::{Client, ClientError, RetryPolicy};

const KEY: &str = "load";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let callers: usize = args.next().map_or(Ok(1), |a| a.parse())?;
    let seconds: u64 = args.next().map_or(Ok(3), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    let address = std::env::var("CIPHERD_GRPC_ADDR")?;
    let token = std::env::var("CIPHERD_TOKEN").or_else(|_| std::env::var("VAULT_TOKEN"))?;
    if !address.starts_with("http://") {
        return Err("CIPHERD_GRPC_ADDR must be an http:// address".into());
    }

    let direct = Client::connect(&address, token.clone())
        .await?
        .with_retry(RetryPolicy::none());
    let channel = tonic::transport::Endpoint::from_shared(address.clone())?
        .connect()
        .await?;
    let channel = Client::from_channel(channel, token)?.with_retry(RetryPolicy::none());
    match direct.create_key(KEY, "aes256-gcm96").await {
        Ok(_) | Err(ClientError::InvalidArgument(_)) => {}
        Err(error) => return Err(error.into()),
    }

    println!("{callers} caller(s), {seconds} s per run, one connection per transport");
    println!("| round | transport | calls/s | mean latency |");
    println!("|---|---|---:|---:|");
    let duration = Duration::from_secs(seconds);
    for round in 1..=rounds {
        let order = if round % 2 == 1 {
            [("direct h2", &direct), ("tonic Channel", &channel)]
        } else {
            [("tonic Channel", &channel), ("direct h2", &direct)]
        };
        for (name, client) in order {
            let (calls, elapsed) = run(client, callers, duration).await?;
            let rate = calls as f64 / elapsed.as_secs_f64();
            let mean = elapsed.as_secs_f64() * callers as f64 / calls.max(1) as f64;
            println!("| {round} | {name} | {rate:.0} | {:.1} µs |", mean * 1e6);
        }
    }
    Ok(())
}

/// `callers` closed loops on `client` for `duration`: calls completed, and
/// the time they took.
async fn run(
    client: &Client,
    callers: usize,
    duration: Duration,
) -> Result<(u64, Duration), ClientError> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let client = client.clone();
        tasks.spawn(async move {
            let plaintext = [7u8; 64];
            let mut calls = 0u64;
            while Instant::now() < deadline {
                client.encrypt(KEY, &plaintext).await?;
                calls += 1;
            }
            Ok::<_, ClientError>(calls)
        });
    }
    let mut calls = 0;
    while let Some(done) = tasks.join_next().await {
        calls += done.map_err(|e| ClientError::Transport(e.to_string()))??;
    }
    Ok((calls, start.elapsed()))
}
