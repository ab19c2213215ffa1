//! The cryptographic operations of the engine (reference §5), single and batch.

use zeroize::Zeroizing;

use crate::crypto::{HashAlgorithm, SecretBytes, random};
use crate::keyring::{
    CreateOptions, DecryptRequest, EncryptRequest, Encrypted, HmacRequest, KeyType, Keyring,
    KeyringError, SignRequest, Signed, VerifyRequest,
};

use super::batch::{self, BatchResult};
use super::{Engine, EngineError};

/// Largest `random` request (reference §5.5).
pub const MAX_RANDOM_BYTES: usize = 131_072;

/// How `encrypt` creates a missing key (Vault's upsert, reference §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpsertOptions {
    /// Type of the new key.
    pub key_type: KeyType,
    /// Make it convergent (needs a context, which makes it derived).
    pub convergent: bool,
}

/// A rewrap request for one item.
#[derive(Debug, Clone, Copy, Default)]
pub struct RewrapRequest<'a> {
    /// The ciphertext to move to `key_version`.
    pub ciphertext: &'a str,
    /// Derivation context.
    pub context: Option<&'a [u8]>,
    /// Target version; `None` or 0 = latest.
    pub key_version: Option<u32>,
}

/// A datakey request (reference §5.4).
#[derive(Debug, Clone, Copy)]
pub struct DatakeyRequest<'a> {
    /// 128, 256 or 512.
    pub bits: u32,
    /// Derivation context.
    pub context: Option<&'a [u8]>,
    /// AEAD associated data (OpenBao's addition).
    pub associated_data: Option<&'a [u8]>,
    /// Version to encrypt under; `None` or 0 = latest.
    pub key_version: Option<u32>,
}

/// A generated data key: the plaintext (for `plaintext` datakeys) and its ciphertext.
#[derive(Debug)]
pub struct Datakey {
    /// The raw data key.
    pub plaintext: SecretBytes,
    /// The data key encrypted under the named key.
    pub encrypted: Encrypted,
}

/// A digest of `input` (reference §5.6): no key involved.
pub fn hash(algorithm: HashAlgorithm, input: &[u8]) -> Vec<u8> {
    algorithm.digest(input)
}

/// `count` random bytes (reference §5.5).
pub fn random_bytes(count: i64) -> Result<Vec<u8>, EngineError> {
    if count < 1 {
        return Err(EngineError::RandomBytesOutOfRange(
            "'bytes' cannot be less than 1",
        ));
    }
    if count > MAX_RANDOM_BYTES as i64 {
        return Err(EngineError::RandomBytesOutOfRange(
            "'bytes' should be less than 131072",
        ));
    }
    Ok(random::bytes(count as usize))
}

impl Engine {
    /// Encrypts one item, creating the key first when `upsert` allows it.
    pub fn encrypt(
        &self,
        name: &str,
        request: &EncryptRequest<'_>,
        upsert: Option<&UpsertOptions>,
    ) -> Result<Encrypted, EngineError> {
        if upsert.is_some() {
            self.ensure_key(name, upsert, request.context)?;
        }
        let (encrypted, exhausted) = self.with_key(name, |k| {
            k.encrypt_counted(request)
                .map(|(e, count)| (e, self.is_exhausted(count)))
        })??;
        if exhausted {
            self.rotate_if_exhausted(name);
        }
        Ok(encrypted)
    }

    /// Encrypts a batch: per-item results in order (reference §6).
    pub fn encrypt_batch(
        &self,
        name: &str,
        items: &[EncryptRequest<'_>],
        upsert: Option<&UpsertOptions>,
    ) -> Result<BatchResult<Encrypted>, EngineError> {
        batch::check_batch_len(items.len(), self.options.max_batch_items)?;
        batch::check_context_consistent(items.iter().map(|i| i.context))?;
        self.ensure_key(name, upsert, items[0].context)?;
        let results = self.with_key(name, |k| batch::run(k, items, |k, item| k.encrypt(item)))?;
        if let Some(version) = results
            .iter()
            .find_map(|r| r.as_ref().ok().map(|e| e.key_version))
        {
            self.check_exhausted(name, version);
        }
        Ok(results)
    }

    /// Decrypts one item.
    pub fn decrypt(
        &self,
        name: &str,
        request: &DecryptRequest<'_>,
    ) -> Result<Vec<u8>, EngineError> {
        Ok(self.with_key(name, |k| k.decrypt(request))??)
    }

    /// Decrypts a batch.
    pub fn decrypt_batch(
        &self,
        name: &str,
        items: &[DecryptRequest<'_>],
    ) -> Result<BatchResult<Vec<u8>>, EngineError> {
        batch::check_batch_len(items.len(), self.options.max_batch_items)?;
        batch::check_context_consistent(items.iter().map(|i| i.context))?;
        self.with_key(name, |k| batch::run(k, items, |k, item| k.decrypt(item)))
    }

    /// Re-encrypts one ciphertext under `key_version` (default latest) without
    /// returning the plaintext.
    pub fn rewrap(
        &self,
        name: &str,
        request: &RewrapRequest<'_>,
    ) -> Result<Encrypted, EngineError> {
        let encrypted = self.with_key(name, |k| rewrap_one(k, request))??;
        self.check_exhausted(name, encrypted.key_version);
        Ok(encrypted)
    }

    /// Rewraps a batch.
    pub fn rewrap_batch(
        &self,
        name: &str,
        items: &[RewrapRequest<'_>],
    ) -> Result<BatchResult<Encrypted>, EngineError> {
        batch::check_batch_len(items.len(), self.options.max_batch_items)?;
        batch::check_context_consistent(items.iter().map(|i| i.context))?;
        let results = self.with_key(name, |k| batch::run(k, items, rewrap_one))?;
        if let Some(version) = results
            .iter()
            .find_map(|r| r.as_ref().ok().map(|e| e.key_version))
        {
            self.check_exhausted(name, version);
        }
        Ok(results)
    }

    /// Generates a data key and encrypts it under `name` (reference §5.4).
    pub fn datakey(
        &self,
        name: &str,
        request: &DatakeyRequest<'_>,
    ) -> Result<Datakey, EngineError> {
        if !matches!(request.bits, 128 | 256 | 512) {
            return Err(EngineError::InvalidBitLength);
        }
        let plaintext = SecretBytes::random(request.bits as usize / 8);
        let encrypted = self.with_key(name, |k| {
            k.encrypt(&EncryptRequest {
                plaintext: plaintext.expose_secret(),
                context: request.context,
                associated_data: request.associated_data,
                key_version: request.key_version,
            })
        })??;
        self.check_exhausted(name, encrypted.key_version);
        Ok(Datakey {
            plaintext,
            encrypted,
        })
    }

    /// Signs one item.
    pub fn sign(&self, name: &str, request: &SignRequest<'_>) -> Result<Signed, EngineError> {
        Ok(self.with_key(name, |k| k.sign(request))??)
    }

    /// Signs a batch.
    pub fn sign_batch(
        &self,
        name: &str,
        items: &[SignRequest<'_>],
    ) -> Result<BatchResult<Signed>, EngineError> {
        batch::check_batch_len(items.len(), self.options.max_batch_items)?;
        self.with_key(name, |k| batch::run(k, items, |k, item| k.sign(item)))
    }

    /// Verifies one signature.
    pub fn verify(&self, name: &str, request: &VerifyRequest<'_>) -> Result<bool, EngineError> {
        Ok(self.with_key(name, |k| k.verify(request))??)
    }

    /// Verifies a batch of signatures.
    pub fn verify_batch(
        &self,
        name: &str,
        items: &[VerifyRequest<'_>],
    ) -> Result<BatchResult<bool>, EngineError> {
        batch::check_batch_len(items.len(), self.options.max_batch_items)?;
        self.with_key(name, |k| batch::run(k, items, |k, item| k.verify(item)))
    }

    /// HMACs one item.
    pub fn hmac(&self, name: &str, request: &HmacRequest<'_>) -> Result<String, EngineError> {
        Ok(self.with_key(name, |k| k.hmac(request))??)
    }

    /// HMACs a batch.
    pub fn hmac_batch(
        &self,
        name: &str,
        items: &[HmacRequest<'_>],
    ) -> Result<BatchResult<String>, EngineError> {
        batch::check_batch_len(items.len(), self.options.max_batch_items)?;
        self.with_key(name, |k| batch::run(k, items, |k, item| k.hmac(item)))
    }

    /// Verifies one HMAC.
    pub fn verify_hmac(
        &self,
        name: &str,
        input: &[u8],
        hmac: &str,
        algorithm: HashAlgorithm,
    ) -> Result<bool, EngineError> {
        Ok(self.with_key(name, |k| k.verify_hmac(input, hmac, algorithm))??)
    }

    /// Verifies a batch of `(input, hmac)` pairs.
    pub fn verify_hmac_batch(
        &self,
        name: &str,
        items: &[(&[u8], &str)],
        algorithm: HashAlgorithm,
    ) -> Result<BatchResult<bool>, EngineError> {
        batch::check_batch_len(items.len(), self.options.max_batch_items)?;
        self.with_key(name, |k| {
            batch::run(k, items, |k, (input, hmac)| {
                k.verify_hmac(input, hmac, algorithm)
            })
        })
    }

    /// Creates `name` for an encrypt upsert when it is missing and allowed.
    fn ensure_key(
        &self,
        name: &str,
        upsert: Option<&UpsertOptions>,
        context: Option<&[u8]>,
    ) -> Result<(), EngineError> {
        if self.keys.pin().contains_key(name) {
            return Ok(());
        }
        let Some(upsert) = upsert.filter(|_| !self.keys_config().disable_upsert) else {
            return Err(EngineError::KeyNotFound {
                name: name.to_owned(),
            });
        };
        if !matches!(
            upsert.key_type,
            KeyType::Aes128Gcm96
                | KeyType::Aes256Gcm96
                | KeyType::ChaCha20Poly1305
                | KeyType::XChaCha20Poly1305
                | KeyType::Rsa2048
                | KeyType::Rsa3072
                | KeyType::Rsa4096
        ) {
            return Err(KeyringError::EncryptionNotSupported(upsert.key_type).into());
        }
        let derived = context.is_some_and(|c| !c.is_empty());
        if upsert.convergent && !derived {
            return Err(KeyringError::ConvergentRequiresDerivation.into());
        }
        let options = CreateOptions {
            key_type: upsert.key_type,
            derived,
            convergent: upsert.convergent,
            ..CreateOptions::default()
        };
        super::keys::validate_key_name(name)?;
        self.insert_new(Keyring::create(name, &options)?)?;
        Ok(())
    }

    /// True when `count` encryptions of the latest version reach the limit.
    fn is_exhausted(&self, count: u64) -> bool {
        self.options
            .rotate_after_encryptions
            .is_some_and(|limit| count >= limit)
    }

    /// Rotates the key when `version`, still its latest, reached the encryption
    /// limit.
    fn check_exhausted(&self, name: &str, version: u32) {
        let Some(limit) = self.options.rotate_after_encryptions else {
            return;
        };
        let exhausted = self
            .with_key(name, |k| {
                k.latest_version() == version
                    && k.version(version).is_some_and(|v| v.encryptions() >= limit)
            })
            .unwrap_or(false);
        if exhausted {
            self.rotate_if_exhausted(name);
        }
    }
}

fn rewrap_one(keyring: &Keyring, request: &RewrapRequest<'_>) -> Result<Encrypted, KeyringError> {
    let plaintext = Zeroizing::new(keyring.decrypt(&DecryptRequest {
        ciphertext: request.ciphertext,
        context: request.context,
        associated_data: None,
    })?);
    keyring.encrypt(&EncryptRequest {
        plaintext: &plaintext,
        context: request.context,
        associated_data: None,
        key_version: request.key_version,
    })
}
