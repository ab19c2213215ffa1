//! Typed wrappers of the bidirectional `Bulk` stream: the caller hands over a
//! stream of batches and reads a stream of per-batch results, in the same
//! order, with at most [`BulkOptions::window`] batches unanswered at once
//! (the caller's stream is not polled beyond that, so a slow reader slows
//! the producer instead of growing memory).
//!
//! Bulk calls are not retried: a stream that fails part-way cannot be
//! replayed without the caller's help (it knows which batches were
//! answered).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cipherd::api::grpc::pb;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Streaming};

use crate::client::{Client, TOKEN_HEADER};
use crate::error::{ClientError, Result};

/// Options of the bulk calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkOptions {
    /// Batches sent and not yet answered, at most (at least 1).
    pub window: usize,
    /// Encrypt and rewrap: the key version to use; 0 means the latest.
    pub key_version: u32,
}

impl Default for BulkOptions {
    /// A window of 8 batches, the latest key version.
    fn default() -> Self {
        Self {
            window: 8,
            key_version: 0,
        }
    }
}

/// A ciphertext from a bulk encrypt or rewrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ciphertext {
    /// The `vault:vN:...` string.
    pub ciphertext: String,
    /// The key version that produced it.
    pub key_version: u32,
}

/// The answers of a bulk call: one `Vec` per batch, in the order the batches
/// were sent, with one result per item (an empty batch gets an empty `Vec`). An `Err` item is that item's failure
/// (the others are unaffected); an `Err` batch is a failure of the stream as
/// a whole, after which the stream ends.
pub struct BulkStream<T> {
    answers: Streaming<pb::BulkResponse>,
    permits: Arc<Semaphore>,
    /// The batches fed, in order: the sequence number they went out with
    /// (`None` for an empty batch, answered here without a request) and
    /// their item count.
    sent: mpsc::UnboundedReceiver<(Option<u64>, usize)>,
    /// The next batch to answer, once known.
    front: Option<(Option<u64>, usize)>,
    convert: fn(pb::bulk_result::Result) -> Result<T>,
    done: bool,
}

impl<T> std::fmt::Debug for BulkStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkStream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<T> Drop for BulkStream<T> {
    fn drop(&mut self) {
        // Wakes the feeding task if it waits for room in the window.
        self.permits.close();
    }
}

impl<T> BulkStream<T> {
    fn fail(&mut self, error: ClientError) -> Poll<Option<Result<Vec<Result<T>>>>> {
        self.done = true;
        Poll::Ready(Some(Err(error)))
    }
}

impl<T> Stream for BulkStream<T> {
    type Item = Result<Vec<Result<T>>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.front.is_none()
            && let Poll::Ready(Some(entry)) = self.sent.poll_recv(cx)
        {
            self.front = Some(entry);
        }
        if let Some((None, _)) = self.front {
            // An empty batch: the server refuses those, so it was not sent.
            self.front = None;
            self.permits.add_permits(1);
            return Poll::Ready(Some(Ok(Vec::new())));
        }
        let answer = match Pin::new(&mut self.answers).poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) if self.front.is_some() => {
                return self.fail(ClientError::local(
                    "the stream ended before every batch was answered",
                ));
            }
            Poll::Ready(None) => {
                self.done = true;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(status))) => return self.fail(ClientError::from(status)),
            Poll::Ready(Some(Ok(answer))) => answer,
        };
        // The feeding task records a batch before sending it, so its entry
        // is queued by the time its answer arrives.
        let entry = self.front.take().or_else(|| self.sent.try_recv().ok());
        let Some((Some(sequence), count)) = entry else {
            return self.fail(ClientError::local("an answer to a batch that was not sent"));
        };
        if answer.sequence != sequence || answer.results.len() != count {
            return self.fail(ClientError::local(
                "the server's answers do not match the batches sent",
            ));
        }
        self.permits.add_permits(1);
        let convert = self.convert;
        let results = answer
            .results
            .into_iter()
            .map(|result| match result.result {
                Some(pb::bulk_result::Result::Error(message)) => {
                    Err(ClientError::InvalidArgument(message))
                }
                Some(other) => convert(other),
                None => Err(ClientError::local("empty item result")),
            })
            .collect();
        Poll::Ready(Some(Ok(results)))
    }
}

/// Batches of values as batches of Bulk items.
fn to_items<S, V, F>(batches: S, item: F) -> impl Stream<Item = Vec<pb::BulkItem>> + Send + 'static
where
    S: Stream<Item = Vec<V>> + Send + 'static,
    F: Fn(V) -> pb::BulkItem + Send + 'static,
{
    batches.map(move |batch| batch.into_iter().map(&item).collect())
}

fn ciphertext(result: pb::bulk_result::Result) -> Result<Ciphertext> {
    match result {
        pb::bulk_result::Result::Ciphertext(c) => Ok(Ciphertext {
            ciphertext: c.ciphertext,
            key_version: c.key_version,
        }),
        _ => Err(ClientError::local("the server sent no ciphertext")),
    }
}

fn plaintext(result: pb::bulk_result::Result) -> Result<Vec<u8>> {
    match result {
        pb::bulk_result::Result::Plaintext(p) => Ok(p),
        _ => Err(ClientError::local("the server sent no plaintext")),
    }
}

impl Client {
    /// Rewraps a stream of batches of `vault:vN:` ciphertexts under `key`
    /// (to [`BulkOptions::key_version`], or the latest).
    ///
    /// ```no_run
    /// # async fn run(client: cipherd_client::Client, old: Vec<Vec<String>>) -> cipherd_client::Result<()> {
    /// use tokio_stream::StreamExt as _;
    /// let mut answers = client
    ///     .bulk_rewrap("orders", tokio_stream::iter(old), Default::default())
    ///     .await?;
    /// while let Some(batch) = answers.next().await {
    ///     for item in batch? {
    ///         let rewrapped = item?; // or this item's error
    ///         println!("{}", rewrapped.ciphertext);
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn bulk_rewrap<S>(
        &self,
        key: &str,
        batches: S,
        options: BulkOptions,
    ) -> Result<BulkStream<Ciphertext>>
    where
        S: Stream<Item = Vec<String>> + Send + 'static,
    {
        let version = options.key_version;
        let items = to_items(batches, move |ciphertext| pb::BulkItem {
            ciphertext,
            key_version: version,
            ..Default::default()
        });
        self.bulk(key, pb::BulkOperation::Rewrap, items, options, ciphertext)
            .await
    }

    /// Encrypts a stream of batches of plaintexts with `key` (which must
    /// exist: the stream does not create keys).
    pub async fn bulk_encrypt<S>(
        &self,
        key: &str,
        batches: S,
        options: BulkOptions,
    ) -> Result<BulkStream<Ciphertext>>
    where
        S: Stream<Item = Vec<Vec<u8>>> + Send + 'static,
    {
        let version = options.key_version;
        let items = to_items(batches, move |plaintext| pb::BulkItem {
            plaintext,
            key_version: version,
            ..Default::default()
        });
        self.bulk(key, pb::BulkOperation::Encrypt, items, options, ciphertext)
            .await
    }

    /// Decrypts a stream of batches of ciphertexts of `key`.
    pub async fn bulk_decrypt<S>(
        &self,
        key: &str,
        batches: S,
        options: BulkOptions,
    ) -> Result<BulkStream<Vec<u8>>>
    where
        S: Stream<Item = Vec<String>> + Send + 'static,
    {
        let items = to_items(batches, |ciphertext| pb::BulkItem {
            ciphertext,
            ..Default::default()
        });
        self.bulk(key, pb::BulkOperation::Decrypt, items, options, plaintext)
            .await
    }

    /// Opens the stream; a task feeds it from `batches` within the window.
    async fn bulk<S, T>(
        &self,
        key: &str,
        operation: pb::BulkOperation,
        batches: S,
        options: BulkOptions,
        convert: fn(pb::bulk_result::Result) -> Result<T>,
    ) -> Result<BulkStream<T>>
    where
        S: Stream<Item = Vec<pb::BulkItem>> + Send + 'static,
    {
        let window = options.window.max(1);
        let permits = Arc::new(Semaphore::new(window));
        let (requests, outbound) = mpsc::channel::<pb::BulkRequest>(window);
        let (sent_tx, sent_rx) = mpsc::unbounded_channel();
        let template = pb::BulkRequest {
            operation: operation.into(),
            mount: self.mount(),
            key: key.to_owned(),
            ..Default::default()
        };
        let feeder_permits = permits.clone();
        tokio::spawn(async move {
            let mut batches = std::pin::pin!(batches);
            let mut sequence = 0u64;
            while let Some(items) = batches.next().await {
                // Closed when the BulkStream is dropped: stop feeding.
                let Ok(permit) = feeder_permits.acquire().await else {
                    return;
                };
                permit.forget();
                let count = items.len();
                if count == 0 {
                    if sent_tx.send((None, 0)).is_err() {
                        return;
                    }
                    continue;
                }
                let request = pb::BulkRequest {
                    items,
                    sequence,
                    ..template.clone()
                };
                if sent_tx.send((Some(sequence), count)).is_err()
                    || requests.send(request).await.is_err()
                {
                    return;
                }
                sequence += 1;
            }
            // Dropping `requests` ends the request stream; the server then
            // answers what it has and ends the call.
        });
        let mut request = Request::new(ReceiverStream::new(outbound));
        request
            .metadata_mut()
            .insert(TOKEN_HEADER, self.token_value());
        let answers = self.transit().bulk(request).await?.into_inner();
        Ok(BulkStream {
            answers,
            permits,
            sent: sent_rx,
            front: None,
            convert,
            done: false,
        })
    }
}
