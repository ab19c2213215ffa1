//! [`Client`]: typed unary and batch calls with the token and retries.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cipherd::api::grpc::MAX_MESSAGE_BYTES;
use cipherd::api::grpc::pb::{self, transit_client::TransitClient};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::transport::{Direct, Transport};
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use crate::error::{ClientError, Result};

/// The metadata key that carries the token.
pub const TOKEN_HEADER: &str = "x-vault-token";

/// How calls that fail with `UNAVAILABLE` (sealed) or a transport error are
/// retried: up to `max_attempts` attempts in all, waiting `base_delay`,
/// `2 × base_delay`, ... (at most `max_delay`) between them.
///
/// Only calls that are safe to repeat are retried: everything except
/// [`Client::rotate_key`] (which would add a version per attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, including the first; 1 (or 0) disables retries.
    pub max_attempts: u32,
    /// The wait after the first failed attempt.
    pub base_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
    /// Wait a random duration between half and all of the computed delay.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// 4 attempts, 100 ms doubling up to 2 s, with jitter.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// No retries: every call is attempted once.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let delay = self
            .base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        if self.jitter && !delay.is_zero() {
            let mut byte = [0u8; 1];
            if getrandom::fill(&mut byte).is_ok() {
                // Between 1/2 and 1 of the delay.
                return delay / 2 + delay / 2 * u32::from(byte[0]) / 255;
            }
        }
        delay
    }
}

/// Options of [`Client::encrypt_with`].
#[derive(Clone, Default)]
pub struct EncryptOptions {
    /// Derivation context (derived keys only).
    pub context: Vec<u8>,
    /// AEAD associated data (AES-GCM and ChaCha20 keys only).
    pub associated_data: Vec<u8>,
    /// The key version to encrypt with; 0 means the latest.
    pub key_version: u32,
}

impl std::fmt::Debug for EncryptOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptOptions")
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

/// Options of [`Client::decrypt_with`].
#[derive(Clone, Default)]
pub struct DecryptOptions {
    /// Derivation context (derived keys only).
    pub context: Vec<u8>,
    /// AEAD associated data given at encryption.
    pub associated_data: Vec<u8>,
}

impl std::fmt::Debug for DecryptOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptOptions").finish_non_exhaustive()
    }
}

/// A data key from [`Client::datakey`].
pub struct DataKey {
    /// The data key encrypted under the transit key (`vault:vN:...`).
    pub ciphertext: String,
    /// The transit key version that encrypted it.
    pub key_version: u32,
    /// The data key itself (wiped on drop); `None` for a wrapped-only key.
    pub plaintext: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("ciphertext", &self.ciphertext)
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

/// A transit key, as read-key describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key name.
    pub name: String,
    /// The key type (`aes256-gcm96`, `ed25519`, ...).
    pub key_type: String,
    /// Whether keys are derived from a context.
    pub derived: bool,
    /// Whether the key can be exported.
    pub exportable: bool,
    /// Whether the key can be deleted.
    pub deletion_allowed: bool,
    /// The latest version.
    pub latest_version: u32,
    /// The lowest version that can decrypt.
    pub min_decryption_version: u32,
    /// The lowest version that can encrypt (0: any).
    pub min_encryption_version: u32,
    /// Whether the key encrypts.
    pub supports_encryption: bool,
    /// Whether the key signs.
    pub supports_signing: bool,
    /// The available versions, lowest first.
    pub versions: Vec<u32>,
}

impl From<pb::Key> for KeyInfo {
    fn from(key: pb::Key) -> Self {
        Self {
            name: key.name,
            key_type: key.r#type,
            derived: key.derived,
            exportable: key.exportable,
            deletion_allowed: key.deletion_allowed,
            latest_version: key.latest_version,
            min_decryption_version: key.min_decryption_version,
            min_encryption_version: key.min_encryption_version,
            supports_encryption: key.supports_encryption,
            supports_signing: key.supports_signing,
            versions: key.versions.iter().map(|v| v.version).collect(),
        }
    }
}

fn key_info(key: Option<pb::Key>) -> Result<KeyInfo> {
    key.map(KeyInfo::from)
        .ok_or_else(|| ClientError::local("the server returned no key"))
}

/// An async cipherd client over gRPC.
///
/// Cheap to clone: clones share the HTTP/2 connection (calls are multiplexed
/// over it) and the attempt and retry counters.
#[derive(Clone)]
pub struct Client {
    transit: TransitClient<Transport>,
    token: AsciiMetadataValue,
    mount: String,
    retry: RetryPolicy,
    attempts: Arc<AtomicU64>,
    retries: Arc<AtomicU64>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("mount", &self.mount)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `endpoint` (`http://host:port`, or `host:port`) and sends
    /// `token` as `x-vault-token` on every call. Uses the `transit` mount and
    /// the default [`RetryPolicy`].
    ///
    /// Plain `http://` endpoints get one HTTP/2 connection driven directly
    /// (a unary call's frames leave in one write; it reconnects after a
    /// failure); `https://` endpoints a tonic channel with the system's
    /// roots. For other TLS settings or timeouts, build a channel and use
    /// [`Client::from_channel`].
    pub async fn connect(endpoint: &str, token: impl Into<String>) -> Result<Self> {
        let uri = if endpoint.contains("://") {
            endpoint.to_owned()
        } else {
            format!("http://{endpoint}")
        };
        let parsed: http::Uri = uri
            .parse()
            .map_err(|e| ClientError::InvalidArgument(format!("bad endpoint: {e}")))?;
        if parsed.scheme() == Some(&http::uri::Scheme::HTTP) {
            let authority = parsed.authority().cloned().ok_or_else(|| {
                ClientError::InvalidArgument(format!("bad endpoint: no host in {uri:?}"))
            })?;
            let direct = Direct::connect(authority).await?;
            return Self::from_transport(Transport::Direct(direct), token);
        }
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| ClientError::InvalidArgument(format!("bad endpoint: {e}")))?;
        let channel = endpoint.connect().await?;
        Self::from_channel(channel, token)
    }

    /// Connects to `CIPHERD_GRPC_ADDR` with the token in `CIPHERD_TOKEN` (or
    /// `VAULT_TOKEN`).
    pub async fn from_env() -> Result<Self> {
        let addr = std::env::var("CIPHERD_GRPC_ADDR")
            .map_err(|_| ClientError::InvalidArgument("CIPHERD_GRPC_ADDR is not set".into()))?;
        let token = std::env::var("CIPHERD_TOKEN")
            .or_else(|_| std::env::var("VAULT_TOKEN"))
            .map_err(|_| {
                ClientError::InvalidArgument("neither CIPHERD_TOKEN nor VAULT_TOKEN is set".into())
            })?;
        Self::connect(&addr, token).await
    }

    /// A client over an existing channel (TLS, timeouts or a lazy connection
    /// are configured on the channel).
    pub fn from_channel(channel: Channel, token: impl Into<String>) -> Result<Self> {
        Self::from_transport(Transport::Channel(channel), token)
    }

    fn from_transport(transport: Transport, token: impl Into<String>) -> Result<Self> {
        let token = Zeroizing::new(token.into());
        let token: AsciiMetadataValue = MetadataValue::try_from(token.as_str())
            .map_err(|_| ClientError::InvalidArgument("the token is not valid metadata".into()))?;
        let mut token = token;
        token.set_sensitive(true);
        Ok(Self {
            transit: TransitClient::new(transport)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            token,
            mount: String::new(),
            retry: RetryPolicy::default(),
            attempts: Arc::new(AtomicU64::new(0)),
            retries: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Uses the transit mount at `mount` (empty: `transit`).
    pub fn with_mount(mut self, mount: impl Into<String>) -> Self {
        self.mount = mount.into();
        self
    }

    /// Retries with `policy`.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The retry policy in use.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// RPC attempts made so far by this client and its clones (retries
    /// included).
    pub fn rpc_attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Failed attempts that were retried so far (by this client and its
    /// clones).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub(crate) fn mount(&self) -> String {
        self.mount.clone()
    }

    /// The token as metadata (marked sensitive), for calls built by hand.
    pub(crate) fn token_value(&self) -> AsciiMetadataValue {
        self.token.clone()
    }

    /// The generated client, for calls built by hand.
    pub(crate) fn transit(&self) -> TransitClient<Transport> {
        self.transit.clone()
    }

    /// Runs one RPC, retrying per the policy when `retry` is set.
    async fn call<M, T, F, Fut>(&self, retry: bool, message: M, rpc: F) -> Result<T>
    where
        M: Clone,
        F: Fn(TransitClient<Transport>, Request<M>) -> Fut,
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        let max_attempts = if retry {
            self.retry.max_attempts.max(1)
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            let mut request = Request::new(message.clone());
            request
                .metadata_mut()
                .insert(TOKEN_HEADER, self.token.clone());
            self.attempts.fetch_add(1, Ordering::Relaxed);
            match rpc(self.transit.clone(), request).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => {
                    let error = ClientError::from(status);
                    if !error.is_retryable() || attempt >= max_attempts {
                        return Err(error);
                    }
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Encrypts `plaintext` with the latest version of `key` (created on
    /// first use when the mount allows upserts); returns `vault:vN:...`.
    pub async fn encrypt(&self, key: &str, plaintext: &[u8]) -> Result<String> {
        self.encrypt_with(key, plaintext, &EncryptOptions::default())
            .await
    }

    /// [`encrypt`](Self::encrypt) with a context, associated data or a key
    /// version.
    pub async fn encrypt_with(
        &self,
        key: &str,
        plaintext: &[u8],
        options: &EncryptOptions,
    ) -> Result<String> {
        let message = pb::EncryptRequest {
            mount: self.mount(),
            key: key.to_owned(),
            plaintext: plaintext.to_vec(),
            context: options.context.clone(),
            associated_data: options.associated_data.clone(),
            key_version: options.key_version,
            ..Default::default()
        };
        let response = self
            .call(true, message, |mut c, r| async move { c.encrypt(r).await })
            .await?;
        Ok(response.ciphertext)
    }

    /// Decrypts a `vault:vN:...` ciphertext.
    pub async fn decrypt(&self, key: &str, ciphertext: &str) -> Result<Vec<u8>> {
        self.decrypt_with(key, ciphertext, &DecryptOptions::default())
            .await
    }

    /// [`decrypt`](Self::decrypt) with a context or associated data.
    pub async fn decrypt_with(
        &self,
        key: &str,
        ciphertext: &str,
        options: &DecryptOptions,
    ) -> Result<Vec<u8>> {
        let message = pb::DecryptRequest {
            mount: self.mount(),
            key: key.to_owned(),
            ciphertext: ciphertext.to_owned(),
            context: options.context.clone(),
            associated_data: options.associated_data.clone(),
        };
        let response = self
            .call(true, message, |mut c, r| async move { c.decrypt(r).await })
            .await?;
        Ok(response.plaintext)
    }

    /// Re-encrypts a ciphertext under the latest version of `key`, without
    /// the plaintext leaving the server.
    pub async fn rewrap(&self, key: &str, ciphertext: &str) -> Result<String> {
        let message = pb::RewrapRequest {
            mount: self.mount(),
            key: key.to_owned(),
            ciphertext: ciphertext.to_owned(),
            ..Default::default()
        };
        let response = self
            .call(true, message, |mut c, r| async move { c.rewrap(r).await })
            .await?;
        Ok(response.ciphertext)
    }

    /// Encrypts many plaintexts in one call. The outer error fails the whole
    /// call (permission, missing key, sealed); each item has its own result,
    /// in input order.
    pub async fn encrypt_batch<I, P>(&self, key: &str, plaintexts: I) -> Result<Vec<Result<String>>>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        let items = plaintexts
            .into_iter()
            .map(|p| pb::EncryptItem {
                plaintext: p.as_ref().to_vec(),
                ..Default::default()
            })
            .collect();
        self.encrypt_items(key, items).await
    }

    pub(crate) async fn encrypt_items(
        &self,
        key: &str,
        items: Vec<pb::EncryptItem>,
    ) -> Result<Vec<Result<String>>> {
        let expected = items.len();
        let message = pb::EncryptBatchRequest {
            mount: self.mount(),
            key: key.to_owned(),
            items,
            ..Default::default()
        };
        let response = self
            .call(
                true,
                message,
                |mut c, r| async move { c.encrypt_batch(r).await },
            )
            .await?;
        check_count(expected, response.results.len())?;
        Ok(response
            .results
            .into_iter()
            .map(|r| match r.result {
                Some(pb::ciphertext_result::Result::Ok(c)) => Ok(c.ciphertext),
                Some(pb::ciphertext_result::Result::Error(e)) => {
                    Err(ClientError::InvalidArgument(e))
                }
                None => Err(ClientError::local("empty item result")),
            })
            .collect())
    }

    /// Decrypts many ciphertexts in one call; per-item results in input
    /// order (see [`encrypt_batch`](Self::encrypt_batch)).
    pub async fn decrypt_batch<I, S>(
        &self,
        key: &str,
        ciphertexts: I,
    ) -> Result<Vec<Result<Vec<u8>>>>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let items = ciphertexts
            .into_iter()
            .map(|c| pb::DecryptItem {
                ciphertext: c.as_ref().to_owned(),
                ..Default::default()
            })
            .collect();
        self.decrypt_items(key, items).await
    }

    pub(crate) async fn decrypt_items(
        &self,
        key: &str,
        items: Vec<pb::DecryptItem>,
    ) -> Result<Vec<Result<Vec<u8>>>> {
        let expected = items.len();
        let message = pb::DecryptBatchRequest {
            mount: self.mount(),
            key: key.to_owned(),
            items,
        };
        let response = self
            .call(
                true,
                message,
                |mut c, r| async move { c.decrypt_batch(r).await },
            )
            .await?;
        check_count(expected, response.results.len())?;
        Ok(response
            .results
            .into_iter()
            .map(|r| match r.result {
                Some(pb::plaintext_result::Result::Plaintext(p)) => Ok(p),
                Some(pb::plaintext_result::Result::Error(e)) => {
                    Err(ClientError::InvalidArgument(e))
                }
                None => Err(ClientError::local("empty item result")),
            })
            .collect())
    }

    /// Signs `input` with an asymmetric key (default options); returns
    /// `vault:vN:...`.
    pub async fn sign(&self, key: &str, input: &[u8]) -> Result<String> {
        let message = pb::SignRequest {
            mount: self.mount(),
            key: key.to_owned(),
            input: input.to_vec(),
            ..Default::default()
        };
        let response = self
            .call(true, message, |mut c, r| async move { c.sign(r).await })
            .await?;
        Ok(response.signature)
    }

    /// Verifies a signature made by [`sign`](Self::sign).
    pub async fn verify(&self, key: &str, input: &[u8], signature: &str) -> Result<bool> {
        let message = pb::VerifyRequest {
            mount: self.mount(),
            key: key.to_owned(),
            input: input.to_vec(),
            signature: signature.to_owned(),
            ..Default::default()
        };
        let response = self
            .call(true, message, |mut c, r| async move { c.verify(r).await })
            .await?;
        Ok(response.valid)
    }

    /// HMAC-SHA256 of `input` with `key`; returns `vault:vN:...`.
    pub async fn hmac(&self, key: &str, input: &[u8]) -> Result<String> {
        let message = pb::HmacRequest {
            mount: self.mount(),
            key: key.to_owned(),
            input: input.to_vec(),
            ..Default::default()
        };
        let response = self
            .call(true, message, |mut c, r| async move { c.hmac(r).await })
            .await?;
        Ok(response.hmac)
    }

    /// Verifies an HMAC made by [`hmac`](Self::hmac).
    pub async fn verify_hmac(&self, key: &str, input: &[u8], hmac: &str) -> Result<bool> {
        let message = pb::VerifyHmacRequest {
            mount: self.mount(),
            key: key.to_owned(),
            input: input.to_vec(),
            hmac: hmac.to_owned(),
            ..Default::default()
        };
        let response = self
            .call(
                true,
                message,
                |mut c, r| async move { c.verify_hmac(r).await },
            )
            .await?;
        Ok(response.valid)
    }

    /// A new 256-bit data key, in the clear and encrypted under `key`.
    pub async fn datakey(&self, key: &str) -> Result<DataKey> {
        self.datakey_with(key, false, 256).await
    }

    /// A new data key of `bits` (128, 256 or 512); only encrypted when
    /// `wrapped`.
    pub async fn datakey_with(&self, key: &str, wrapped: bool, bits: u32) -> Result<DataKey> {
        let message = pb::DatakeyRequest {
            mount: self.mount(),
            key: key.to_owned(),
            wrapped,
            bits,
            ..Default::default()
        };
        let mut response = self
            .call(true, message, |mut c, r| async move { c.datakey(r).await })
            .await?;
        let plaintext = Zeroizing::new(std::mem::take(&mut response.plaintext));
        Ok(DataKey {
            ciphertext: std::mem::take(&mut response.ciphertext),
            key_version: response.key_version,
            plaintext: (!wrapped).then_some(plaintext),
        })
    }

    /// Creates `key` of `key_type` (empty: `aes256-gcm96`); an existing key
    /// is returned unchanged.
    pub async fn create_key(&self, key: &str, key_type: &str) -> Result<KeyInfo> {
        let message = pb::CreateKeyRequest {
            mount: self.mount(),
            key: key.to_owned(),
            r#type: key_type.to_owned(),
            ..Default::default()
        };
        let response = self
            .call(
                true,
                message,
                |mut c, r| async move { c.create_key(r).await },
            )
            .await?;
        key_info(response.key)
    }

    /// Adds a version to `key`. Never retried.
    pub async fn rotate_key(&self, key: &str) -> Result<KeyInfo> {
        let message = pb::RotateKeyRequest {
            mount: self.mount(),
            key: key.to_owned(),
        };
        let response = self
            .call(
                false,
                message,
                |mut c, r| async move { c.rotate_key(r).await },
            )
            .await?;
        key_info(response.key)
    }

    /// Describes `key`.
    pub async fn read_key(&self, key: &str) -> Result<KeyInfo> {
        let message = pb::ReadKeyRequest {
            mount: self.mount(),
            key: key.to_owned(),
            ..Default::default()
        };
        let response = self
            .call(true, message, |mut c, r| async move { c.read_key(r).await })
            .await?;
        key_info(response.key)
    }
}

fn check_count(expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(ClientError::local(format!(
            "the server returned {got} results for {expected} items"
        )))
    }
}
