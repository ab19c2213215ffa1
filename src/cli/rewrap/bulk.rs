//! The job's side of the gRPC `Bulk` stream: batches of ciphertexts go out as
//! `BULK_OPERATION_REWRAP` requests with at most `window` batches in flight
//! (and, with `--rate`, no faster than that many items per second); answers
//! come back in the order the batches went out.
//!
//! It owns the connection, the token metadata and the ordering checks. It
//! does not decide which values need rewrapping (see [`super::classify`]) and
//! never sees a source or a sink: a batch carries an opaque payload `T` that
//! comes back untouched with the batch's results.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Streaming};

use super::RewrapError;
use crate::api::grpc::pb;
use pb::transit_client::TransitClient;

/// Where and as whom the job talks to the server.
pub(super) struct Connection {
    transit: TransitClient<Channel>,
    token: AsciiMetadataValue,
    mount: String,
    key: String,
}

/// What ReadKey says about the key, as far as the job cares.
pub(super) struct KeyFacts {
    pub latest_version: u32,
    pub min_decryption_version: u32,
    pub derived: bool,
    pub supports_decryption: bool,
}

impl Connection {
    /// Connects to `address` (`http://` or, with a CA certificate, `https://`).
    pub(super) async fn open(
        address: &str,
        ca_cert: Option<Vec<u8>>,
        token: &str,
        mount: &str,
        key: &str,
    ) -> Result<Self, RewrapError> {
        let mut endpoint = tonic::transport::Endpoint::from_shared(address.to_owned())
            .map_err(|_| RewrapError::Usage(format!("invalid gRPC address {address:?}")))?
            .tcp_nodelay(true);
        if address.starts_with("https://") {
            let Some(pem) = ca_cert else {
                return Err(RewrapError::Usage(
                    "an https:// gRPC address needs CIPHERD_CACERT (or VAULT_CACERT)".into(),
                ));
            };
            let tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(pem));
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|source| RewrapError::Connect {
                    address: address.to_owned(),
                    source,
                })?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| RewrapError::Connect {
                address: address.to_owned(),
                source,
            })?;
        let mut token: AsciiMetadataValue = token
            .parse()
            .map_err(|_| RewrapError::Usage("the token is not valid gRPC metadata".into()))?;
        token.set_sensitive(true);
        Ok(Self {
            transit: TransitClient::new(channel)
                .max_decoding_message_size(crate::api::grpc::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(crate::api::grpc::MAX_MESSAGE_BYTES),
            token,
            mount: mount.to_owned(),
            key: key.to_owned(),
        })
    }

    fn request<M>(&self, message: M) -> Request<M> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("x-vault-token", self.token.clone());
        request
    }

    /// ReadKey for the job's key.
    pub(super) async fn read_key(&self) -> Result<KeyFacts, RewrapError> {
        let message = pb::ReadKeyRequest {
            mount: self.mount.clone(),
            key: self.key.clone(),
            ..Default::default()
        };
        let key = self
            .transit
            .clone()
            .read_key(self.request(message))
            .await
            .map_err(|status| RewrapError::Server {
                during: "reading the key",
                status,
            })?
            .into_inner()
            .key
            .ok_or(RewrapError::Protocol("ReadKey returned no key"))?;
        Ok(KeyFacts {
            latest_version: key.latest_version,
            min_decryption_version: key.min_decryption_version,
            derived: key.derived,
            supports_decryption: key.supports_decryption,
        })
    }

    /// Opens the Bulk stream. Rewraps go to `target_version`.
    pub(super) async fn bulk<T>(
        &self,
        target_version: u32,
        window: usize,
        rate: Option<u64>,
    ) -> Result<(Submitter<T>, Completions<T>), RewrapError> {
        let window = window.max(1);
        let (requests, outbound) = mpsc::channel::<pb::BulkRequest>(window);
        let answers = self
            .transit
            .clone()
            .bulk(self.request(ReceiverStream::new(outbound)))
            .await
            .map_err(|status| RewrapError::Server {
                during: "opening the Bulk stream",
                status,
            })?
            .into_inner();
        let (pending_tx, pending_rx) = mpsc::unbounded_channel();
        let submitter = Submitter {
            requests,
            pending: pending_tx,
            permits: Arc::new(Semaphore::new(window)),
            mount: self.mount.clone(),
            key: self.key.clone(),
            target_version,
            sequence: 0,
            pacer: rate.map(Pacer::new),
        };
        let completions = Completions {
            answers,
            pending: pending_rx,
        };
        Ok((submitter, completions))
    }
}

/// One batch handed to the stream: `payload` comes back untouched;
/// `ciphertexts` are the values to rewrap (possibly none).
pub(super) struct Outgoing<T> {
    pub payload: T,
    pub ciphertexts: Vec<String>,
}

/// A batch whose answer arrived: one result per ciphertext, in order (the
/// new ciphertext, or the server's message for that item).
pub(super) struct Answered<T> {
    pub payload: T,
    pub results: Vec<Result<String, String>>,
}

struct Pending<T> {
    payload: T,
    /// The sequence number of the request, if one was sent.
    sequence: Option<(u64, usize)>,
    _permit: OwnedSemaphorePermit,
}

/// Sends batches in order, waiting while `window` of them are unanswered.
pub(super) struct Submitter<T> {
    requests: mpsc::Sender<pb::BulkRequest>,
    pending: mpsc::UnboundedSender<Pending<T>>,
    permits: Arc<Semaphore>,
    mount: String,
    key: String,
    target_version: u32,
    sequence: u64,
    pacer: Option<Pacer>,
}

impl<T> Submitter<T> {
    /// Queues `batch`; waits for room in the window (and for the rate limit).
    pub(super) async fn submit(&mut self, batch: Outgoing<T>) -> Result<(), RewrapError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RewrapError::Protocol("the Bulk window closed"))?;
        let count = batch.ciphertexts.len();
        let sequence = if count == 0 {
            None
        } else {
            if let Some(pacer) = &mut self.pacer {
                pacer.wait_for(count as u64).await;
            }
            let sequence = self.sequence;
            self.sequence += 1;
            let request = pb::BulkRequest {
                operation: pb::BulkOperation::Rewrap.into(),
                mount: self.mount.clone(),
                key: self.key.clone(),
                items: batch
                    .ciphertexts
                    .into_iter()
                    .map(|ciphertext| pb::BulkItem {
                        ciphertext,
                        key_version: self.target_version,
                        ..Default::default()
                    })
                    .collect(),
                sequence,
            };
            // The receiving half is the request stream; it closes only when
            // the call has ended, and `Completions` then reports why.
            if self.requests.send(request).await.is_err() {
                return Err(RewrapError::Protocol("the Bulk stream ended early"));
            }
            Some((sequence, count))
        };
        self.pending
            .send(Pending {
                payload: batch.payload,
                sequence,
                _permit: permit,
            })
            .map_err(|_| RewrapError::Protocol("the Bulk answers are no longer read"))
    }
}

/// Yields answered batches in submission order.
pub(super) struct Completions<T> {
    answers: Streaming<pb::BulkResponse>,
    pending: mpsc::UnboundedReceiver<Pending<T>>,
}

impl<T> Completions<T> {
    /// The next batch, or `None` once the submitter is dropped and every
    /// batch has been answered.
    pub(super) async fn next(&mut self) -> Result<Option<Answered<T>>, RewrapError> {
        let Some(pending) = self.pending.recv().await else {
            return Ok(None);
        };
        let Some((sequence, count)) = pending.sequence else {
            return Ok(Some(Answered {
                payload: pending.payload,
                results: Vec::new(),
            }));
        };
        let answer = self
            .answers
            .message()
            .await
            .map_err(|status| RewrapError::Server {
                during: "rewrapping a batch",
                status,
            })?
            .ok_or(RewrapError::Protocol(
                "the Bulk stream ended before all answers",
            ))?;
        if answer.sequence != sequence {
            return Err(RewrapError::Protocol("a Bulk answer came out of order"));
        }
        if answer.results.len() != count {
            return Err(RewrapError::Protocol(
                "a Bulk answer has the wrong number of results",
            ));
        }
        let results = answer
            .results
            .into_iter()
            .map(|result| match result.result {
                Some(pb::bulk_result::Result::Ciphertext(c)) => Ok(c.ciphertext),
                Some(pb::bulk_result::Result::Error(message)) => Err(message),
                Some(pb::bulk_result::Result::Plaintext(_)) | None => {
                    Err("the server sent no ciphertext for this item".to_owned())
                }
            })
            .collect();
        // The permit is released here, when `pending` drops: the next batch
        // may go out.
        Ok(Some(Answered {
            payload: pending.payload,
            results,
        }))
    }
}

/// Spaces requests so that at most `rate` items per second go out, measured
/// from the first request (so a slow start is not made up with a burst
/// larger than one batch).
struct Pacer {
    rate: u64,
    started: Option<Instant>,
    sent: u64,
}

impl Pacer {
    fn new(rate: u64) -> Self {
        Self {
            rate: rate.max(1),
            started: None,
            sent: 0,
        }
    }

    async fn wait_for(&mut self, items: u64) {
        let started = *self.started.get_or_insert_with(Instant::now);
        let due = started + Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
        tokio::time::sleep_until(due).await;
        // Never let the schedule fall far behind real time: an idle gap must
        // not become a burst.
        let now = Instant::now();
        let behind = now.saturating_duration_since(due);
        if behind > Duration::from_secs(1) {
            self.started = Some(now);
            self.sent = 0;
        }
        self.sent += items;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pacer_holds_the_rate() {
        let mut pacer = Pacer::new(10_000);
        let start = Instant::now();
        for _ in 0..5 {
            pacer.wait_for(1000).await;
        }
        // 5 batches of 1000 at 10,000/s: the 5th may leave after 0.4 s, not
        // before (the upper bound only catches a pacer that waits far too long).
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    }
}
