//! `cipherd-client` against a real cipherd gRPC server in this process: round
//! trips, batches with a failing item, the Bulk stream (100,000 rewraps),
//! automatic batching, retries on a sealed
//! server, envelope encryption and auth denial.
//!
//! Each test serves its own service over memory storage on `127.0.0.1:0`
//! through `cipherd::api::grpc::serve` (the unary fast path included); the
//! listener is bound before the server is spawned, so there is nothing to wait
//! for.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use cipherd::api::grpc;
use cipherd::service::{Service, ServiceOptions};
use cipherd::storage::MemoryStorage;
use cipherd_client::{
    BatchConfig, BulkOptions, Client, ClientError, DataKeySession, EncryptOptions, Envelope,
    RetryPolicy,
};
use tokio_stream::StreamExt as _;

const ROOT: &str = "root";

struct Server {
    service: Arc<Service>,
    addr: SocketAddr,
    share: Vec<u8>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Initialized (one share, root token `root`) and unsealed.
    async fn start() -> Self {
        let server = Self::start_sealed().await;
        server.service.unseal(&server.share).expect("unseal");
        server
    }

    /// Initialized but sealed.
    async fn start_sealed() -> Self {
        let service = Service::new(Arc::new(MemoryStorage::new()), ServiceOptions::default())
            .expect("service");
        let init = service.init(1, 1, Some(ROOT)).expect("init");
        let share = init.shares[0].expose_secret().to_vec();
        let service = Arc::new(service);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let task = {
            let service = service.clone();
            tokio::spawn(async move {
                grpc::serve(listener, service, std::future::pending())
                    .await
                    .expect("gRPC server");
            })
        };
        Self {
            service,
            addr,
            share,
            task,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn client(&self) -> Client {
        Client::connect(&self.endpoint(), ROOT)
            .await
            .expect("connect")
            .with_retry(RetryPolicy::none())
    }
}

#[tokio::test]
async fn encrypt_decrypt_round_trip_and_key_management() {
    let server = Server::start().await;
    let client = server.client().await;

    let created = client.create_key("orders", "").await.expect("create");
    assert_eq!(created.name, "orders");
    assert_eq!(created.key_type, "aes256-gcm96");
    assert_eq!(created.latest_version, 1);

    let ciphertext = client.encrypt("orders", b"secret").await.expect("encrypt");
    assert!(ciphertext.starts_with("vault:v1:"), "{ciphertext}");
    assert_eq!(
        client
            .decrypt("orders", &ciphertext)
            .await
            .expect("decrypt"),
        b"secret"
    );

    // Associated data must match.
    let options = EncryptOptions {
        associated_data: b"row 7".to_vec(),
        ..EncryptOptions::default()
    };
    let bound = client
        .encrypt_with("orders", b"bound", &options)
        .await
        .expect("encrypt with aad");
    let err = client.decrypt("orders", &bound).await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidArgument(_)), "{err:?}");
    let opened = client
        .decrypt_with(
            "orders",
            &bound,
            &cipherd_client::DecryptOptions {
                associated_data: b"row 7".to_vec(),
                ..Default::default()
            },
        )
        .await
        .expect("decrypt with aad");
    assert_eq!(opened, b"bound");

    let rotated = client.rotate_key("orders").await.expect("rotate");
    assert_eq!(rotated.latest_version, 2);
    let rewrapped = client.rewrap("orders", &ciphertext).await.expect("rewrap");
    assert!(rewrapped.starts_with("vault:v2:"), "{rewrapped}");
    assert_eq!(
        client.decrypt("orders", &rewrapped).await.expect("decrypt"),
        b"secret"
    );
    let read = client.read_key("orders").await.expect("read");
    assert_eq!(read.latest_version, 2);
    assert_eq!(read.versions, vec![1, 2]);

    let mac = client.hmac("orders", b"input").await.expect("hmac");
    assert!(mac.starts_with("vault:v2:"), "{mac}");
    assert!(
        client
            .verify_hmac("orders", b"input", &mac)
            .await
            .expect("verify hmac")
    );

    client
        .create_key("signer", "ed25519")
        .await
        .expect("create ed25519");
    let signature = client.sign("signer", b"message").await.expect("sign");
    assert!(
        client
            .verify("signer", b"message", &signature)
            .await
            .expect("verify")
    );
    assert!(
        !client
            .verify("signer", b"other", &signature)
            .await
            .expect("verify")
    );

    let data_key = client.datakey("orders").await.expect("datakey");
    let plaintext = data_key.plaintext.expect("plaintext data key");
    assert_eq!(plaintext.len(), 32);
    assert_eq!(
        client
            .decrypt("orders", &data_key.ciphertext)
            .await
            .expect("unwrap"),
        plaintext.as_slice()
    );

    let err = client.read_key("missing").await.unwrap_err();
    assert!(matches!(err, ClientError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn batches_report_a_bad_item_in_place() {
    let server = Server::start().await;
    let client = server.client().await;

    let encrypted = client
        .encrypt_batch("batch", [b"a".as_slice(), b"b", b"c"])
        .await
        .expect("encrypt batch");
    let ciphertexts: Vec<String> = encrypted.into_iter().map(|r| r.expect("item")).collect();
    assert_eq!(ciphertexts.len(), 3);

    let inputs = [
        ciphertexts[0].as_str(),
        "vault:v1:bm90IGEgY2lwaGVydGV4dA==",
        ciphertexts[2].as_str(),
    ];
    let decrypted = client
        .decrypt_batch("batch", inputs)
        .await
        .expect("decrypt batch");
    assert_eq!(decrypted.len(), 3);
    assert_eq!(decrypted[0].as_deref().expect("item 0"), b"a");
    assert!(
        matches!(decrypted[1], Err(ClientError::InvalidArgument(_))),
        "{:?}",
        decrypted[1]
    );
    assert_eq!(decrypted[2].as_deref().expect("item 2"), b"c");
}

/// Reads a bulk stream to its end; panics on a failed batch.
async fn collect<T>(
    mut answers: cipherd_client::BulkStream<T>,
) -> Vec<Vec<cipherd_client::Result<T>>> {
    let mut batches = Vec::new();
    while let Some(batch) = answers.next().await {
        batches.push(batch.expect("batch"));
    }
    batches
}

/// Owned chunks of `items`, as a stream.
fn chunks<T: Clone>(items: &[T], size: usize) -> impl tokio_stream::Stream<Item = Vec<T>> + use<T> {
    tokio_stream::iter(items.chunks(size).map(<[T]>::to_vec).collect::<Vec<_>>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_stream_rewraps_100k_ciphertexts() {
    const N: usize = 100_000;
    let server = Server::start().await;
    let client = server.client().await;
    client.create_key("bulk", "").await.expect("create");
    let plaintexts: Vec<Vec<u8>> = (0..N).map(|i| format!("item-{i}").into_bytes()).collect();

    let encrypted = client
        .bulk_encrypt("bulk", chunks(&plaintexts, 5_000), BulkOptions::default())
        .await
        .expect("bulk encrypt");
    let v1: Vec<String> = collect(encrypted)
        .await
        .into_iter()
        .flatten()
        .map(|item| item.expect("item").ciphertext)
        .collect();
    assert_eq!(v1.len(), N);
    assert!(v1.iter().all(|c| c.starts_with("vault:v1:")));
    client.rotate_key("bulk").await.expect("rotate");

    // Batches of 1,000 with a window of 4; one bad item, one empty batch.
    let bad = 7 * 1000 + 3;
    let mut batches: Vec<Vec<String>> = v1.chunks(1000).map(<[String]>::to_vec).collect();
    batches[7][3] = "vault:v1:bm90IGEgY2lwaGVydGV4dA==".into();
    batches.insert(50, Vec::new());
    let options = BulkOptions {
        window: 4,
        key_version: 0,
    };
    let answers = client
        .bulk_rewrap("bulk", tokio_stream::iter(batches.clone()), options)
        .await
        .expect("bulk rewrap");
    let answered = collect(answers).await;
    assert_eq!(answered.len(), batches.len(), "one answer per batch");
    for (sent, got) in batches.iter().zip(&answered) {
        assert_eq!(sent.len(), got.len());
    }
    let items: Vec<_> = answered.into_iter().flatten().collect();
    assert_eq!(items.len(), N);
    let mut rewrapped = Vec::with_capacity(N);
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Ok(c) => {
                assert_eq!(c.key_version, 2);
                assert!(c.ciphertext.starts_with("vault:v2:"), "{}", c.ciphertext);
                rewrapped.push(c.ciphertext);
            }
            Err(error) => {
                assert_eq!(i, bad, "only the bad item fails: {error:?}");
                assert!(
                    matches!(error, ClientError::InvalidArgument(_)),
                    "{error:?}"
                );
            }
        }
    }
    assert_eq!(rewrapped.len(), N - 1);

    // Each opens to its own plaintext, in order.
    let opened = client
        .bulk_decrypt("bulk", chunks(&rewrapped, 10_000), BulkOptions::default())
        .await
        .expect("bulk decrypt");
    let opened: Vec<Vec<u8>> = collect(opened)
        .await
        .into_iter()
        .flatten()
        .map(|item| item.expect("item"))
        .collect();
    let expected: Vec<Vec<u8>> = plaintexts
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != bad)
        .map(|(_, p)| p)
        .collect();
    assert!(opened == expected, "decrypted plaintexts differ");
}

#[tokio::test]
async fn bulk_stream_with_a_bad_token_fails() {
    let server = Server::start().await;
    server
        .client()
        .await
        .create_key("bulk", "")
        .await
        .expect("create");
    let client = Client::connect(&server.endpoint(), "not-a-token")
        .await
        .expect("connect");
    let batches = vec![vec!["vault:v1:AAAA".to_owned()]];
    let outcome = match client
        .bulk_rewrap("bulk", tokio_stream::iter(batches), BulkOptions::default())
        .await
    {
        Err(error) => error,
        Ok(mut answers) => {
            let first = answers.next().await.expect("an answer");
            assert!(
                answers.next().await.is_none(),
                "the stream ends after the error"
            );
            first.expect_err("denied")
        }
    };
    assert!(
        matches!(outcome, ClientError::PermissionDenied(_)),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_calls_are_batched() {
    let server = Server::start().await;
    let client = server.client().await;
    client.create_key("auto", "").await.expect("create");
    // Only the size trigger can flush: the delay is far longer than the test.
    let batching = client.batching(BatchConfig {
        max_items: 50,
        max_delay: Duration::from_secs(3600),
    });

    let calls: Vec<_> = (0..200)
        .map(|i| {
            let batching = batching.clone();
            tokio::spawn(async move {
                let plaintext = format!("payload {i}");
                let ciphertext = batching.encrypt("auto", plaintext.as_bytes()).await?;
                Ok::<_, ClientError>((plaintext, ciphertext))
            })
        })
        .collect();
    let mut pairs = Vec::new();
    for call in calls {
        pairs.push(call.await.expect("task").expect("encrypt"));
    }
    let encrypt_batches = batching.batches_sent();
    assert!(
        encrypt_batches <= 4 + 1,
        "{encrypt_batches} batch RPCs for 200 encrypts"
    );
    assert!(encrypt_batches >= 4);

    let calls: Vec<_> = pairs
        .into_iter()
        .map(|(plaintext, ciphertext)| {
            let batching = batching.clone();
            tokio::spawn(async move {
                let decrypted = batching.decrypt("auto", &ciphertext).await?;
                assert_eq!(decrypted, plaintext.as_bytes());
                Ok::<_, ClientError>(())
            })
        })
        .collect();
    for call in calls {
        call.await.expect("task").expect("decrypt");
    }
    let decrypt_batches = batching.batches_sent() - encrypt_batches;
    assert!(
        decrypt_batches <= 4 + 1,
        "{decrypt_batches} batch RPCs for 200 decrypts"
    );
}

#[tokio::test]
async fn a_lone_call_is_flushed_by_the_delay() {
    let server = Server::start().await;
    let client = server.client().await;
    let batching = client.batching(BatchConfig {
        max_items: 1000,
        max_delay: Duration::from_millis(1),
    });
    let ciphertext = batching.encrypt("lone", b"alone").await.expect("encrypt");
    assert_eq!(
        batching
            .decrypt("lone", &ciphertext)
            .await
            .expect("decrypt"),
        b"alone"
    );
    assert_eq!(batching.batches_sent(), 2);

    // A whole-batch failure reaches every caller.
    let err = batching
        .decrypt("missing-key", &ciphertext)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn sealed_server_fails_after_the_configured_attempts() {
    let server = Server::start_sealed().await;
    let client = Client::connect(&server.endpoint(), ROOT)
        .await
        .expect("connect")
        .with_retry(RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            jitter: false,
        });
    let err = client.encrypt("k", b"x").await.unwrap_err();
    assert!(matches!(err, ClientError::Sealed(_)), "{err:?}");
    assert_eq!(client.rpc_attempts(), 3);
    assert_eq!(client.retries(), 2);

    // Rotation is never retried.
    let err = client.rotate_key("k").await.unwrap_err();
    assert!(matches!(err, ClientError::Sealed(_)), "{err:?}");
    assert_eq!(client.rpc_attempts(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_succeed_once_the_server_is_unsealed() {
    let server = Server::start_sealed().await;
    let client = Client::connect(&server.endpoint(), ROOT)
        .await
        .expect("connect")
        .with_retry(RetryPolicy {
            max_attempts: 50,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            jitter: true,
        });
    let unsealer = {
        let client = client.clone();
        let service = server.service.clone();
        let share = server.share.clone();
        tokio::spawn(async move {
            // Unseal once an attempt has failed (sealed) and is being retried.
            while client.retries() < 1 {
                tokio::task::yield_now().await;
            }
            service.unseal(&share).expect("unseal");
        })
    };
    let key = client
        .create_key("late", "")
        .await
        .expect("create after unseal");
    assert_eq!(key.latest_version, 1);
    unsealer.await.expect("unsealer");
    assert!(client.retries() >= 1);
    assert_eq!(client.rpc_attempts(), client.retries() + 1);
}

#[tokio::test]
async fn envelope_seal_and_open_a_mebibyte() {
    let server = Server::start().await;
    let client = server.client().await;
    client.create_key("env", "").await.expect("create");

    let payload: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let before = client.rpc_attempts();
    let envelope = Envelope::seal(&client, "env", &payload)
        .await
        .expect("seal");
    assert_eq!(client.rpc_attempts() - before, 1, "one Datakey call");
    assert!(envelope.wrapped_key.starts_with("vault:v1:"));
    assert_eq!(envelope.ciphertext.len(), payload.len() + 16);
    assert_ne!(&envelope.ciphertext[..64], &payload[..64]);
    assert_eq!(
        Envelope::open(&client, "env", &envelope)
            .await
            .expect("open"),
        payload
    );

    let mut tampered = envelope.clone();
    tampered.ciphertext[10] ^= 1;
    let err = Envelope::open(&client, "env", &tampered).await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidArgument(_)), "{err:?}");

    // A session reuses one data key for several payloads.
    let mut session = DataKeySession::new(&client, "env", 2);
    let before = client.rpc_attempts();
    let a = session.seal(b"first").await.expect("seal a");
    let b = session.seal(b"second").await.expect("seal b");
    assert_eq!(client.rpc_attempts() - before, 1);
    assert_eq!(a.wrapped_key, b.wrapped_key);
    assert_ne!(a.nonce, b.nonce);
    let c = session.seal(b"third").await.expect("seal c");
    assert_ne!(
        c.wrapped_key, a.wrapped_key,
        "a new data key after max_uses"
    );
    assert_eq!(session.open(&c).await.expect("open c"), b"third");
    assert_eq!(session.open(&a).await.expect("open a"), b"first");
    assert_eq!(
        Envelope::open(&client, "env", &b).await.expect("open b"),
        b"second"
    );
}

#[tokio::test]
async fn a_bad_token_is_denied() {
    let server = Server::start().await;
    let client = Client::connect(&server.endpoint(), "not-a-token")
        .await
        .expect("connect");
    let err = client
        .encrypt("k", b"top secret plaintext")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::PermissionDenied(_)), "{err:?}");
    assert!(!err.to_string().contains("top secret"));
    // Denial is not retried.
    assert_eq!(client.rpc_attempts(), 1);

    let batching = client.batching(BatchConfig::default());
    let err = batching.encrypt("k", b"x").await.unwrap_err();
    assert!(matches!(err, ClientError::PermissionDenied(_)), "{err:?}");
}

#[tokio::test]
async fn connecting_to_nothing_is_a_transport_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let err = Client::connect(&addr.to_string(), ROOT).await.unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
}

/// A TCP relay in front of the server whose open connections the test can
/// cut, as a network failure or a restarted proxy would.
struct Relay {
    addr: SocketAddr,
    cut: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let cut = Arc::new(tokio::sync::Notify::new());
        let task = {
            let cut = cut.clone();
            tokio::spawn(async move {
                let mut relays = tokio::task::JoinSet::new();
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((mut client, _)) = accepted else { continue };
                            relays.spawn(async move {
                                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await
                                else {
                                    return;
                                };
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            });
                        }
                        () = cut.notified() => relays.abort_all(),
                    }
                }
            })
        };
        Self { addr, cut, task }
    }

    /// Closes every connection relayed so far; new ones are still relayed.
    fn cut(&self) {
        self.cut.notify_one();
    }
}

#[tokio::test]
async fn a_broken_connection_fails_one_call_and_the_next_reconnects() {
    let server = Server::start().await;
    let relay = Relay::start(server.addr).await;
    let client = Client::connect(&relay.addr.to_string(), ROOT)
        .await
        .expect("connect")
        .with_retry(RetryPolicy::none());
    client
        .create_key("k", "aes256-gcm96")
        .await
        .expect("create");
    let first = client.encrypt("k", b"before").await.expect("encrypt");

    relay.cut();
    // The call that finds the connection gone fails as a transport error,
    // which the retry policy would retry...
    let err = client.encrypt("k", b"during").await.unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
    assert!(err.is_retryable());
    // ...and the next call is made on a new connection.
    let plaintext = client.decrypt("k", &first).await.expect("decrypt");
    assert_eq!(plaintext, b"before");

    // With retries, the failure is not even seen.
    let client = client.with_retry(RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
        jitter: false,
    });
    relay.cut();
    let again = client.encrypt("k", b"after").await.expect("retried");
    assert_eq!(
        client.decrypt("k", &again).await.expect("decrypt"),
        b"after"
    );
    assert!(client.retries() >= 1, "retries: {}", client.retries());
}

#[tokio::test]
async fn a_client_over_a_tonic_channel_works_the_same() {
    let server = Server::start().await;
    let channel = tonic::transport::Endpoint::from_shared(server.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("channel");
    let client = Client::from_channel(channel, ROOT)
        .expect("client")
        .with_retry(RetryPolicy::none());
    client
        .create_key("k", "aes256-gcm96")
        .await
        .expect("create");
    let ciphertext = client
        .encrypt("k", b"over a channel")
        .await
        .expect("encrypt");
    assert_eq!(
        client.decrypt("k", &ciphertext).await.expect("decrypt"),
        b"over a channel"
    );
    let err = Client::from_channel(
        tonic::transport::Endpoint::from_shared(server.endpoint())
            .expect("endpoint")
            .connect_lazy(),
        "wrong-token",
    )
    .expect("client")
    .with_retry(RetryPolicy::none())
    .encrypt("k", b"x")
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::PermissionDenied(_)), "{err:?}");
}
