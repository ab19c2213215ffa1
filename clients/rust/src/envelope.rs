//! Envelope encryption: one data key from the server, the payload encrypted
//! locally with AES-256-GCM.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use crate::client::Client;
use crate::error::{ClientError, Result};

/// AES-GCM nonce length (96 bits).
pub const NONCE_LEN: usize = 12;

/// A payload sealed by [`Envelope::seal`] or [`DataKeySession::seal`].
///
/// The AES-256-GCM tag ends `ciphertext`; the wrapped key is the associated
/// data, so an envelope cannot be re-pointed at another data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedEnvelope {
    /// The data key encrypted under the transit key (`vault:vN:...`).
    pub wrapped_key: String,
    /// The random 96-bit nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The encrypted payload followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

/// Envelope encryption over a cipherd transit key.
///
/// [`seal`](Self::seal) asks the server for one data key (`Datakey`), encrypts
/// the payload locally and keeps only the wrapped key; [`open`](Self::open)
/// unwraps the data key (`Decrypt`) and decrypts locally. Data keys are wiped
/// from memory after use. Large payloads never travel to the server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Envelope;

impl Envelope {
    /// Seals `plaintext` under a fresh data key wrapped by `key`.
    pub async fn seal(client: &Client, key: &str, plaintext: &[u8]) -> Result<SealedEnvelope> {
        let (wrapped_key, data_key) = new_data_key(client, key).await?;
        seal_with(&data_key, wrapped_key, plaintext)
    }

    /// Opens an envelope sealed under `key`.
    pub async fn open(client: &Client, key: &str, envelope: &SealedEnvelope) -> Result<Vec<u8>> {
        let data_key = Zeroizing::new(client.decrypt(key, &envelope.wrapped_key).await?);
        open_with(&data_key, envelope)
    }
}

/// Seals many payloads under one data key, asking the server for a new one
/// every `max_uses` payloads.
pub struct DataKeySession {
    client: Client,
    key: String,
    max_uses: u64,
    uses: u64,
    current: Option<(String, Zeroizing<Vec<u8>>)>,
}

impl std::fmt::Debug for DataKeySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeySession")
            .field("key", &self.key)
            .field("max_uses", &self.max_uses)
            .field("uses", &self.uses)
            .finish_non_exhaustive()
    }
}

impl DataKeySession {
    /// A session sealing under data keys wrapped by `key`, each used for at
    /// most `max_uses` payloads (at least 1; random 96-bit nonces stay safe
    /// well below 2^32 uses).
    pub fn new(client: &Client, key: impl Into<String>, max_uses: u64) -> Self {
        Self {
            client: client.clone(),
            key: key.into(),
            max_uses: max_uses.max(1),
            uses: 0,
            current: None,
        }
    }

    /// Seals `plaintext`, fetching a data key first when none is cached or
    /// the cached one is used up.
    pub async fn seal(&mut self, plaintext: &[u8]) -> Result<SealedEnvelope> {
        if self.current.is_none() || self.uses >= self.max_uses {
            self.current = None;
            self.current = Some(new_data_key(&self.client, &self.key).await?);
            self.uses = 0;
        }
        let (wrapped_key, data_key) = self.current.as_ref().expect("data key just cached");
        self.uses += 1;
        seal_with(data_key, wrapped_key.clone(), plaintext)
    }

    /// Opens an envelope; uses the cached data key when the envelope was
    /// sealed by this session's current key, the server otherwise.
    pub async fn open(&self, envelope: &SealedEnvelope) -> Result<Vec<u8>> {
        match &self.current {
            Some((wrapped, data_key)) if *wrapped == envelope.wrapped_key => {
                open_with(data_key, envelope)
            }
            _ => Envelope::open(&self.client, &self.key, envelope).await,
        }
    }

    /// Forgets (and wipes) the cached data key.
    pub fn clear(&mut self) {
        self.current = None;
        self.uses = 0;
    }
}

async fn new_data_key(client: &Client, key: &str) -> Result<(String, Zeroizing<Vec<u8>>)> {
    let data_key = client.datakey_with(key, false, 256).await?;
    let plaintext = data_key
        .plaintext
        .filter(|p| p.len() == 32)
        .ok_or_else(|| ClientError::local("the server returned no 256-bit data key"))?;
    Ok((data_key.ciphertext, plaintext))
}

fn cipher(data_key: &[u8]) -> Result<Aes256Gcm> {
    Aes256Gcm::new_from_slice(data_key)
        .map_err(|_| ClientError::local("the data key is not 256 bits"))
}

fn seal_with(data_key: &[u8], wrapped_key: String, plaintext: &[u8]) -> Result<SealedEnvelope> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| ClientError::local(format!("random nonce: {e}")))?;
    let ciphertext = cipher(data_key)?
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: wrapped_key.as_bytes(),
            },
        )
        .map_err(|_| ClientError::local("local encryption failed"))?;
    Ok(SealedEnvelope {
        wrapped_key,
        nonce,
        ciphertext,
    })
}

fn open_with(data_key: &[u8], envelope: &SealedEnvelope) -> Result<Vec<u8>> {
    cipher(data_key)?
        .decrypt(
            &Nonce::from(envelope.nonce),
            Payload {
                msg: &envelope.ciphertext,
                aad: envelope.wrapped_key.as_bytes(),
            },
        )
        .map_err(|_| ClientError::InvalidArgument("the envelope does not authenticate".into()))
}
