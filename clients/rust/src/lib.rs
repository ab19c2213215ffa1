//! An async client for cipherd (encryption as a service) over gRPC.
//!
//! - [`Client`]: typed calls (`encrypt`, `decrypt`, `rewrap`, batches,
//!   `sign`/`verify`, `hmac`, `datakey`, key management). The token goes in
//!   the `x-vault-token` metadata of every call. Calls that fail with
//!   `UNAVAILABLE` (a sealed server) or a transport error are retried with
//!   exponential backoff per [`RetryPolicy`] — all but `rotate_key`.
//!   [`Client::connect`] drives one HTTP/2 connection itself for `http://`
//!   endpoints (a unary call leaves in one write; a broken connection fails
//!   the call as a retryable transport error and the next call reconnects);
//!   [`Client::from_channel`] takes a tonic `Channel` for TLS and timeouts.
//! - [`BatchingClient`]: concurrent single `encrypt`/`decrypt` calls queued
//!   per key and sent as one `EncryptBatch`/`DecryptBatch` when
//!   [`BatchConfig::max_items`] are waiting or after
//!   [`BatchConfig::max_delay`].
//! - [`Client::bulk_rewrap`], [`Client::bulk_encrypt`] and
//!   [`Client::bulk_decrypt`]: the bidirectional `Bulk` stream, fed from a
//!   stream of batches with at most [`BulkOptions::window`] unanswered, and
//!   read as a [`BulkStream`] of per-batch results in order.
//! - [`Envelope`] and [`DataKeySession`]: envelope encryption — one data key
//!   from the server, the payload encrypted locally with AES-256-GCM.
//! - [`ClientError`]: statuses mapped to a few variants; never carries a
//!   plaintext.
//!
//! ```no_run
//! use std::time::Duration;
//! use cipherd_client::{BatchConfig, Client, Envelope};
//!
//! # async fn run() -> Result<(), cipherd_client::ClientError> {
//! let client = Client::connect("http://127.0.0.1:8201", "s.mytoken").await?;
//!
//! let ciphertext = client.encrypt("orders", b"4111 1111 1111 1111").await?;
//! assert!(ciphertext.starts_with("vault:v1:"));
//! let plaintext = client.decrypt("orders", &ciphertext).await?;
//! assert_eq!(plaintext, b"4111 1111 1111 1111");
//!
//! // Many concurrent callers, few RPCs.
//! let batching = client.batching(BatchConfig {
//!     max_items: 100,
//!     max_delay: Duration::from_millis(1),
//! });
//! let ciphertext = batching.encrypt("orders", b"one of many").await?;
//!
//! // A large payload, encrypted locally under a data key.
//! let envelope = Envelope::seal(&client, "orders", &vec![0u8; 1 << 20]).await?;
//! let payload = Envelope::open(&client, "orders", &envelope).await?;
//! # let _ = (ciphertext, payload);
//! # Ok(())
//! # }
//! ```
//!
//! [`Client::from_env`] reads `CIPHERD_GRPC_ADDR` and `CIPHERD_TOKEN` (or
//! `VAULT_TOKEN`).

#![warn(missing_docs)]

mod batching;
mod bulk;
mod client;
mod envelope;
mod error;
mod transport;

pub use batching::{BatchConfig, BatchingClient};
pub use bulk::{BulkOptions, BulkStream, Ciphertext};
pub use client::{
    Client, DataKey, DecryptOptions, EncryptOptions, KeyInfo, RetryPolicy, TOKEN_HEADER,
};
pub use envelope::{DataKeySession, Envelope, NONCE_LEN, SealedEnvelope};
pub use error::{ClientError, Result};

/// The generated protobuf types of `cipherd.v1`, for calls this crate does
/// not wrap.
pub use cipherd::api::grpc::pb;
