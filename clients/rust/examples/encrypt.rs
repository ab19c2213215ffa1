//! Encrypts and decrypts a message, a batch and an envelope, and streams a
//! bulk encrypt and rewrap, against a running cipherd server.
//!
//! ```text
//! CIPHERD_GRPC_ADDR=http://127.0.0.1:8201 CIPHERD_TOKEN=<token> \
//!     cargo run -p cipherd-client --example encrypt -- [key] [message]
//! ```

use std::time::Duration;

use cipherd_client::{BatchConfig, BulkOptions, Client, Envelope};
use tokio_stream::StreamExt as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let key = args.next().unwrap_or_else(|| "example".to_owned());
    let message = args.next().unwrap_or_else(|| "hello, cipherd".to_owned());

    let client = Client::from_env().await?;

    let ciphertext = client.encrypt(&key, message.as_bytes()).await?;
    println!("encrypt  -> {ciphertext}");
    let plaintext = client.decrypt(&key, &ciphertext).await?;
    println!("decrypt  -> {}", String::from_utf8_lossy(&plaintext));

    let results = client
        .encrypt_batch(&key, [b"first".as_slice(), b"second", b"third"])
        .await?;
    for (i, result) in results.iter().enumerate() {
        match result {
            Ok(ciphertext) => println!("batch[{i}] -> {ciphertext}"),
            Err(error) => println!("batch[{i}] failed: {error}"),
        }
    }

    let batching = client.batching(BatchConfig {
        max_items: 64,
        max_delay: Duration::from_millis(1),
    });
    let calls = (0..16).map(|i| {
        let batching = batching.clone();
        let key = key.clone();
        tokio::spawn(async move { batching.encrypt(&key, format!("item {i}").as_bytes()).await })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await??;
    }
    println!("16 encrypts in {} batch RPC(s)", batching.batches_sent());

    let payload = vec![7u8; 1 << 20];
    let envelope = Envelope::seal(&client, &key, &payload).await?;
    let opened = Envelope::open(&client, &key, &envelope).await?;
    assert_eq!(opened, payload);
    println!(
        "envelope -> 1 MiB sealed under {} ({} bytes)",
        envelope.wrapped_key,
        envelope.ciphertext.len()
    );

    // The Bulk stream: batches in, per-batch results out, in order.
    let batches: Vec<Vec<Vec<u8>>> = (0..10)
        .map(|b| {
            (0..100)
                .map(|i| format!("bulk {b}/{i}").into_bytes())
                .collect()
        })
        .collect();
    let mut encrypted = client
        .bulk_encrypt(&key, tokio_stream::iter(batches), BulkOptions::default())
        .await?;
    let mut ciphertexts = Vec::new();
    while let Some(batch) = encrypted.next().await {
        for item in batch? {
            ciphertexts.push(item?.ciphertext);
        }
    }
    let rechunked: Vec<Vec<String>> = ciphertexts.chunks(250).map(<[String]>::to_vec).collect();
    let mut rewrapped = client
        .bulk_rewrap(&key, tokio_stream::iter(rechunked), BulkOptions::default())
        .await?;
    let mut count = 0;
    while let Some(batch) = rewrapped.next().await {
        count += batch?.into_iter().filter(Result::is_ok).count();
    }
    println!(
        "bulk     -> {} encrypted, {count} rewrapped, one stream each",
        ciphertexts.len()
    );

    let info = client.read_key(&key).await?;
    println!(
        "key {} ({}), latest version {}",
        info.name, info.key_type, info.latest_version
    );
    Ok(())
}
