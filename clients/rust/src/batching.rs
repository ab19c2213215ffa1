//! [`BatchingClient`]: concurrent single encrypts and decrypts coalesced into
//! batch RPCs.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cipherd::api::grpc::pb;
use tokio::sync::{mpsc, oneshot};

use crate::client::Client;
use crate::error::{ClientError, Result};

/// When a queue is flushed: as soon as `max_items` calls are waiting, or
/// `max_delay` after the first call of the batch arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Items per batch RPC (at least 1).
    pub max_items: usize,
    /// The longest a call waits for others to join its batch.
    pub max_delay: Duration,
}

impl Default for BatchConfig {
    /// 256 items or 1 ms.
    fn default() -> Self {
        Self {
            max_items: 256,
            max_delay: Duration::from_millis(1),
        }
    }
}

struct Job<I, T> {
    item: I,
    reply: oneshot::Sender<Result<T>>,
}

type EncryptJob = Job<pb::EncryptItem, String>;
type DecryptJob = Job<pb::DecryptItem, Vec<u8>>;

#[derive(Default)]
struct Queues {
    encrypt: HashMap<String, mpsc::Sender<EncryptJob>>,
    decrypt: HashMap<String, mpsc::Sender<DecryptJob>>,
}

/// A client whose [`encrypt`](Self::encrypt) and [`decrypt`](Self::decrypt)
/// calls are queued per key and sent as `EncryptBatch` / `DecryptBatch`
/// RPCs; each caller gets its own item's result.
///
/// Made by [`Client::batching`]. One background task per (operation, key)
/// collects the queue; it ends when the `BatchingClient` (and its clones) are
/// dropped and the queue is drained. Requires a Tokio runtime.
#[derive(Clone)]
pub struct BatchingClient {
    client: Client,
    config: BatchConfig,
    queues: Arc<Mutex<Queues>>,
    batches: Arc<AtomicU64>,
}

impl std::fmt::Debug for BatchingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchingClient")
            .field("config", &self.config)
            .field("batches_sent", &self.batches_sent())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A batching client over this client's connection, token and retries.
    pub fn batching(&self, config: BatchConfig) -> BatchingClient {
        BatchingClient {
            client: self.clone(),
            config: BatchConfig {
                max_items: config.max_items.max(1),
                max_delay: config.max_delay,
            },
            queues: Arc::default(),
            batches: Arc::default(),
        }
    }
}

impl BatchingClient {
    /// The underlying unbatched client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Batch RPCs sent so far.
    pub fn batches_sent(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Encrypts `plaintext` with the latest version of `key`, as one item
    /// of a batch.
    pub async fn encrypt(&self, key: &str, plaintext: &[u8]) -> Result<String> {
        let sender = {
            let mut queues = self.queues.lock().expect("queue map poisoned");
            queues
                .encrypt
                .entry(key.to_owned())
                .or_insert_with(|| self.spawn_encrypt(key.to_owned()))
                .clone()
        };
        let item = pb::EncryptItem {
            plaintext: plaintext.to_vec(),
            ..Default::default()
        };
        submit(&sender, item).await
    }

    /// Decrypts `ciphertext` with `key`, as one item of a batch. The
    /// plaintext is returned to this caller only.
    pub async fn decrypt(&self, key: &str, ciphertext: &str) -> Result<Vec<u8>> {
        let sender = {
            let mut queues = self.queues.lock().expect("queue map poisoned");
            queues
                .decrypt
                .entry(key.to_owned())
                .or_insert_with(|| self.spawn_decrypt(key.to_owned()))
                .clone()
        };
        let item = pb::DecryptItem {
            ciphertext: ciphertext.to_owned(),
            ..Default::default()
        };
        submit(&sender, item).await
    }

    fn spawn_encrypt(&self, key: String) -> mpsc::Sender<EncryptJob> {
        let client = self.client.clone();
        let key = Arc::new(key);
        self.spawn_queue(move |items| {
            let client = client.clone();
            let key = key.clone();
            async move { client.encrypt_items(&key, items).await }
        })
    }

    fn spawn_decrypt(&self, key: String) -> mpsc::Sender<DecryptJob> {
        let client = self.client.clone();
        let key = Arc::new(key);
        self.spawn_queue(move |items| {
            let client = client.clone();
            let key = key.clone();
            async move { client.decrypt_items(&key, items).await }
        })
    }

    fn spawn_queue<I, T, F, Fut>(&self, send: F) -> mpsc::Sender<Job<I, T>>
    where
        I: Send + 'static,
        T: Send + 'static,
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<Result<T>>>> + Send + 'static,
    {
        let (sender, receiver) = mpsc::channel(self.config.max_items * 4);
        let batches = self.batches.clone();
        tokio::spawn(run_queue(receiver, self.config, batches, send));
        sender
    }
}

async fn submit<I, T>(sender: &mpsc::Sender<Job<I, T>>, item: I) -> Result<T> {
    let (reply, answer) = oneshot::channel();
    sender
        .send(Job { item, reply })
        .await
        .map_err(|_| ClientError::local("the batch queue is closed"))?;
    answer
        .await
        .map_err(|_| ClientError::local("the batch was dropped"))?
}

/// Collects jobs into batches (by size or delay) and sends each batch in its
/// own task, so the next batch fills while the previous one is in flight.
async fn run_queue<I, T, F, Fut>(
    mut receiver: mpsc::Receiver<Job<I, T>>,
    config: BatchConfig,
    batches: Arc<AtomicU64>,
    send: F,
) where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(Vec<I>) -> Fut,
    Fut: Future<Output = Result<Vec<Result<T>>>> + Send + 'static,
{
    while let Some(first) = receiver.recv().await {
        let mut jobs = Vec::with_capacity(config.max_items);
        jobs.push(first);
        let deadline = tokio::time::Instant::now() + config.max_delay;
        while jobs.len() < config.max_items {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(job)) => jobs.push(job),
                Ok(None) | Err(_) => break,
            }
        }
        let (items, replies): (Vec<I>, Vec<_>) =
            jobs.into_iter().map(|job| (job.item, job.reply)).unzip();
        batches.fetch_add(1, Ordering::Relaxed);
        let batch = send(items);
        tokio::spawn(async move {
            match batch.await {
                Ok(results) => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                }
                Err(error) => {
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        });
    }
}
