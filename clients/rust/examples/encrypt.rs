//! Encrypts and decrypts a message, a batch and an envelope against a running
//! cipherd server.
//!
//! ```text
//! CIPHERD_GRPC_ADDR=http://127.0.0.1:8201 CIPHERD_TOKEN=<token> \
//!     cargo run -p cipherd-client --example encrypt -- [key] [message]
//! ```

use std::time::Duration;

use cipherd_client::{BatchConfig, Client, Envelope};

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

    let info = client.read_key(&key).await?;
    println!(
        "key {} ({}), latest version {}",
        info.name, info.key_type, info.latest_version
    );
    Ok(())
}
