//! The cryptographic operations of a keyring: encrypt, decrypt, sign, verify,
//! HMAC, with Vault's version rules, derivation (§8.3) and convergence (§8.4).
//!
//! Every operation takes a borrowed request and returns owned output; none of
//! them mutates the keyring except for the per-version encryption counters.

use crate::crypto::aead::{AeadAlgorithm, AeadKey};
use crate::crypto::asymmetric::{
    Marshaling, PrivateKey, PublicKey, RsaSignatureScheme, SignatureOptions,
};
use crate::crypto::format::{self, Versioned};
use crate::crypto::{CryptoError, HashAlgorithm, SecretBytes, kdf};

use super::version::{KeyVersion, Material};
use super::{Encoded, Kdf, KeyFamily, Keyring, KeyringError, VersionUse};

/// An encrypt (or datakey) request for one item.
#[derive(Debug, Clone, Copy, Default)]
pub struct EncryptRequest<'a> {
    /// The bytes to encrypt.
    pub plaintext: &'a [u8],
    /// Derivation context (required for derived keys, ignored otherwise).
    pub context: Option<&'a [u8]>,
    /// AEAD associated data (AEAD keys only).
    pub associated_data: Option<&'a [u8]>,
    /// Version to encrypt under; `None` or 0 = latest.
    pub key_version: Option<u32>,
}

/// A decrypt request for one item.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecryptRequest<'a> {
    /// A `vault:vN:` ciphertext.
    pub ciphertext: &'a str,
    /// Derivation context.
    pub context: Option<&'a [u8]>,
    /// AEAD associated data.
    pub associated_data: Option<&'a [u8]>,
}

/// The result of an encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// `vault:vN:<base64>`.
    pub ciphertext: String,
    /// The version used.
    pub key_version: u32,
}

/// A sign request for one item.
#[derive(Debug, Clone, Default)]
pub struct SignRequest<'a> {
    /// The message (or digest when prehashed).
    pub input: &'a [u8],
    /// Derivation context (derived Ed25519 only).
    pub context: Option<&'a [u8]>,
    /// Version to sign with; `None` or 0 = latest.
    pub key_version: Option<u32>,
    /// Hash, marshaling and padding choices.
    pub options: SignatureOptions,
}

/// The result of a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// `vault:vN:<base64>` (base64url for JWS).
    pub signature: String,
    /// The version used.
    pub key_version: u32,
    /// For derived Ed25519 keys: the derived public key (base64).
    pub public_key: Option<String>,
}

/// A verify request for one item.
#[derive(Debug, Clone, Default)]
pub struct VerifyRequest<'a> {
    /// The message (or digest when prehashed).
    pub input: &'a [u8],
    /// The `vault:vN:` signature.
    pub signature: &'a str,
    /// Derivation context (derived Ed25519 only).
    pub context: Option<&'a [u8]>,
    /// Hash, marshaling and padding choices.
    pub options: SignatureOptions,
}

/// An HMAC request for one item.
#[derive(Debug, Clone, Copy)]
pub struct HmacRequest<'a> {
    /// The message.
    pub input: &'a [u8],
    /// Version to use; `None` or 0 = latest.
    pub key_version: Option<u32>,
    /// The hash function.
    pub algorithm: HashAlgorithm,
}

impl Keyring {
    /// Encrypts one item (reference §5.1, §8.2–§8.5).
    pub fn encrypt(&self, request: &EncryptRequest<'_>) -> Result<Encrypted, KeyringError> {
        self.encrypt_counted(request)
            .map(|(encrypted, _)| encrypted)
    }

    /// [`encrypt`](Self::encrypt), also returning the version's encryption count
    /// after this one (so the engine can check the limit without a second lookup).
    pub(crate) fn encrypt_counted(
        &self,
        request: &EncryptRequest<'_>,
    ) -> Result<(Encrypted, u64), KeyringError> {
        if !self.key_type.supports_encryption() {
            return Err(KeyringError::EncryptionNotSupported(self.key_type));
        }
        let version = self.version_for(VersionUse::Encryption, request.key_version)?;
        let mut payload = Vec::with_capacity(request.plaintext.len() + 64);
        match (&version.material, self.key_type.family()) {
            (Material::Aead { cipher, .. }, KeyFamily::Aead(alg)) => {
                let aad = request.associated_data.unwrap_or_default();
                if self.config.derived {
                    let context = required_context(request.context)?;
                    if self.config.convergent {
                        let okm = self.derive_key_bytes(version, context, alg.key_len() + 32)?;
                        let (enc_key, nonce_key) = okm.expose_secret().split_at(alg.key_len());
                        let nonce =
                            kdf::convergent_nonce(nonce_key, request.plaintext, alg.nonce_len());
                        let cipher = AeadKey::new(alg, enc_key)?;
                        payload.extend_from_slice(&nonce);
                        cipher.seal(&nonce, aad, request.plaintext, &mut payload)?;
                    } else {
                        let cipher = self.derived_cipher(version, alg, context)?;
                        cipher.seal_with_random_nonce(aad, request.plaintext, &mut payload);
                    }
                } else {
                    cipher.seal_with_random_nonce(aad, request.plaintext, &mut payload);
                }
            }
            (Material::Private(_) | Material::Public(_), _) => {
                if request.associated_data.is_some_and(|aad| !aad.is_empty()) {
                    return Err(KeyringError::AssociatedDataNotSupported(self.key_type));
                }
                let public = version
                    .public_key()
                    .ok_or(KeyringError::EncryptionNotSupported(self.key_type))?;
                payload = public
                    .rsa_encrypt_oaep(HashAlgorithm::Sha2_256, request.plaintext)
                    .map_err(KeyringError::RsaEncrypt)?;
            }
            _ => return Err(KeyringError::EncryptionNotSupported(self.key_type)),
        }
        let count = version.count_encryptions(1);
        let encrypted = Encrypted {
            ciphertext: format::encode(version.number, &payload),
            key_version: version.number,
        };
        Ok((encrypted, count))
    }

    /// Decrypts one item (reference §5.2).
    pub fn decrypt(&self, request: &DecryptRequest<'_>) -> Result<Vec<u8>, KeyringError> {
        if !self.key_type.supports_encryption() {
            return Err(KeyringError::DecryptionNotSupported(self.key_type));
        }
        let (version, payload) = self.open_versioned(request.ciphertext, Encoded::Ciphertext)?;
        match (&version.material, self.key_type.family()) {
            (Material::Aead { cipher, .. }, KeyFamily::Aead(alg)) => {
                let aad = request.associated_data.unwrap_or_default();
                if self.config.derived {
                    let context = required_context(request.context)?;
                    let cipher = self.derived_cipher(version, alg, context)?;
                    Ok(cipher.open_prefixed(aad, &payload)?)
                } else {
                    Ok(cipher.open_prefixed(aad, &payload)?)
                }
            }
            (Material::Private(key), _) => {
                if request.associated_data.is_some_and(|aad| !aad.is_empty()) {
                    return Err(KeyringError::AssociatedDataNotSupported(self.key_type));
                }
                key.rsa_decrypt_oaep(HashAlgorithm::Sha2_256, &payload)
                    .map(|plain| plain.expose_secret().to_vec())
                    .map_err(KeyringError::RsaDecrypt)
            }
            (Material::Public(_), _) => Err(KeyringError::PublicKeyOnly(version.number)),
            _ => Err(KeyringError::DecryptionNotSupported(self.key_type)),
        }
    }

    /// Signs one item (reference §5.8, §8.6).
    pub fn sign(&self, request: &SignRequest<'_>) -> Result<Signed, KeyringError> {
        if !self.key_type.supports_signing() {
            return Err(KeyringError::SigningNotSupported(self.key_type));
        }
        self.check_hash_none(&request.options)?;
        let version = self.version_for(VersionUse::Signing, request.key_version)?;
        let (signature, public_key) = if self.config.derived {
            let key = self.derived_ed25519(version, required_context(request.context)?)?;
            (
                key.sign(request.input, &request.options)?,
                Some(key.public_key().to_vault_string()),
            )
        } else {
            match &version.material {
                Material::Private(key) => (key.sign(request.input, &request.options)?, None),
                Material::Public(_) => return Err(KeyringError::PublicKeyOnly(version.number)),
                _ => return Err(KeyringError::SigningNotSupported(self.key_type)),
            }
        };
        let text = if uses_jws(self, &request.options) {
            format::encode_url_safe(version.number, &signature)
        } else {
            format::encode(version.number, &signature)
        };
        Ok(Signed {
            signature: text,
            key_version: version.number,
            public_key,
        })
    }

    /// Verifies one signature (reference §5.9). `Ok(false)` is a well-formed
    /// signature that does not match.
    pub fn verify(&self, request: &VerifyRequest<'_>) -> Result<bool, KeyringError> {
        if !self.key_type.supports_signing() {
            return Err(KeyringError::VerificationNotSupported(self.key_type));
        }
        self.check_hash_none(&request.options)?;
        let parsed = Versioned::parse(request.signature)
            .map_err(|e| KeyringError::Malformed(Encoded::Signature, e))?;
        let version = self.checked_version(parsed.version, Encoded::Signature)?;
        let signature = if uses_jws(self, &request.options) {
            parsed.decode_base64url()
        } else {
            parsed.decode_base64()
        }
        .map_err(|e| KeyringError::Malformed(Encoded::Signature, e))?;
        let public: PublicKey = if self.config.derived {
            self.derived_ed25519(version, required_context(request.context)?)?
                .public_key()
        } else {
            version
                .public_key()
                .ok_or(KeyringError::VerificationNotSupported(self.key_type))?
        };
        match public.verify(request.input, &signature, &request.options) {
            Ok(valid) => Ok(valid),
            // Fixed-width encodings (Ed25519, JWS r||s) of the wrong length are
            // simply invalid signatures to OpenBao 2.7.2 (valid:false); only
            // malformed DER is a 400 "supplied signature is invalid".
            Err(CryptoError::MalformedSignature)
                if self.key_type == super::KeyType::Ed25519 || uses_jws(self, &request.options) =>
            {
                Ok(false)
            }
            Err(CryptoError::MalformedSignature) => {
                Err(KeyringError::Crypto(CryptoError::MalformedSignature))
            }
            Err(other) => Err(other.into()),
        }
    }

    /// HMACs one item with the version's HMAC key (reference §5.7, §8.7).
    pub fn hmac(&self, request: &HmacRequest<'_>) -> Result<String, KeyringError> {
        let number = match request.key_version {
            None | Some(0) => self.latest,
            Some(v) => v,
        };
        if number > self.latest {
            return Err(KeyringError::HmacVersionMissing {
                latest: self.latest,
            });
        }
        if self.config.min_encryption_version > 0 && number < self.config.min_encryption_version {
            return Err(KeyringError::HmacVersionTooOld);
        }
        // Versions below min_decryption_version are archived: not usable (§4.2).
        if number < self.config.min_decryption_version {
            return Err(KeyringError::NoSuchVersion);
        }
        let version = self
            .versions
            .get(&number)
            .ok_or(KeyringError::NoSuchVersion)?;
        let mac = request
            .algorithm
            .hmac(version.hmac_key.expose_secret(), request.input);
        Ok(format::encode(number, &mac))
    }

    /// Verifies an HMAC in constant time (reference §5.9).
    pub fn verify_hmac(
        &self,
        input: &[u8],
        hmac: &str,
        algorithm: HashAlgorithm,
    ) -> Result<bool, KeyringError> {
        let parsed =
            Versioned::parse(hmac).map_err(|e| KeyringError::Malformed(Encoded::Hmac, e))?;
        let tag = parsed
            .decode_base64()
            .map_err(|e| KeyringError::Malformed(Encoded::Hmac, e))?;
        let version = self.checked_version(parsed.version, Encoded::Hmac)?;
        // Vault compares whole tags only; a truncated tag is a mismatch.
        Ok(tag.len() == algorithm.output_len()
            && algorithm.hmac_verify(version.hmac_key.expose_secret(), input, &tag))
    }

    /// Picks the version for encrypting or signing under Vault's rules.
    fn version_for(
        &self,
        usage: VersionUse,
        requested: Option<u32>,
    ) -> Result<&KeyVersion, KeyringError> {
        let number = match requested {
            None | Some(0) => self.latest,
            Some(v) => v,
        };
        if number > self.latest {
            return Err(KeyringError::VersionOutOfRange(
                usage,
                "higher than the latest key version",
            ));
        }
        if self.config.min_encryption_version > 0 && number < self.config.min_encryption_version {
            return Err(KeyringError::VersionOutOfRange(
                usage,
                "less than the minimum encryption key version",
            ));
        }
        if number < self.config.min_decryption_version {
            return Err(KeyringError::NoSuchVersion);
        }
        self.versions
            .get(&number)
            .map(|v| &**v)
            .ok_or(KeyringError::NoSuchVersion)
    }

    /// The version named by a parsed string, checked against the window.
    fn checked_version(&self, number: u32, what: Encoded) -> Result<&KeyVersion, KeyringError> {
        // Vault treats v0 as v1 (legacy ciphertexts).
        let number = number.max(1);
        if number > self.latest {
            return Err(KeyringError::VersionTooNew(what));
        }
        if number < self.config.min_decryption_version {
            return Err(KeyringError::VersionTooOld(what));
        }
        self.versions
            .get(&number)
            .map(|v| &**v)
            .ok_or(KeyringError::VersionTooOld(what))
    }

    /// Parses a ciphertext string and returns its version and decoded payload.
    fn open_versioned(
        &self,
        text: &str,
        what: Encoded,
    ) -> Result<(&KeyVersion, Vec<u8>), KeyringError> {
        let parsed = Versioned::parse(text).map_err(|e| KeyringError::Malformed(what, e))?;
        let version = self.checked_version(parsed.version, what)?;
        let payload = parsed
            .decode_base64()
            .map_err(|e| KeyringError::Malformed(what, e))?;
        Ok((version, payload))
    }

    /// `len` bytes derived from the version key and `context` with the key's KDF.
    fn derive_key_bytes(
        &self,
        version: &KeyVersion,
        context: &[u8],
        len: usize,
    ) -> Result<SecretBytes, KeyringError> {
        let ikm = match &version.material {
            Material::Aead { raw, .. } => raw.duplicate(),
            Material::Private(key) => key.to_storage_bytes(),
            _ => return Err(KeyringError::DerivationNotSupported(self.key_type)),
        };
        match self.config.kdf {
            Kdf::Hkdf => Ok(kdf::hkdf_sha256(ikm.expose_secret(), None, context, len)?),
            Kdf::LegacyCounter => {
                let derived = kdf::legacy_counter_kdf(ikm.expose_secret(), context);
                if len > derived.len() {
                    return Err(CryptoError::InvalidOutputLength(len).into());
                }
                Ok(SecretBytes::from_slice(&derived.expose_secret()[..len]))
            }
        }
    }

    fn derived_cipher(
        &self,
        version: &KeyVersion,
        alg: AeadAlgorithm,
        context: &[u8],
    ) -> Result<AeadKey, KeyringError> {
        let key = self.derive_key_bytes(version, context, alg.key_len())?;
        Ok(AeadKey::new(alg, key.expose_secret())?)
    }

    /// The derived Ed25519 key for `context` (reference §8.3).
    pub(super) fn derived_ed25519(
        &self,
        version: &KeyVersion,
        context: &[u8],
    ) -> Result<PrivateKey, KeyringError> {
        let seed = self.derive_key_bytes(version, context, 32)?;
        let seed: &[u8; 32] = seed
            .expose_secret()
            .try_into()
            .map_err(|_| CryptoError::InvalidOutputLength(32))?;
        Ok(PrivateKey::ed25519_from_seed(seed))
    }
}

fn required_context(context: Option<&[u8]>) -> Result<&[u8], KeyringError> {
    match context {
        Some(ctx) if !ctx.is_empty() => Ok(ctx),
        _ => Err(KeyringError::MissingContext),
    }
}

impl Keyring {
    /// `hash_algorithm=none` is only for RSA PKCS#1 v1.5 over a digest; Ed25519
    /// ignores the hash entirely.
    fn check_hash_none(&self, options: &SignatureOptions) -> Result<(), KeyringError> {
        if self.key_type == super::KeyType::Ed25519 {
            return Ok(());
        }
        check_hash_none(options)
    }
}

fn check_hash_none(options: &SignatureOptions) -> Result<(), KeyringError> {
    if options.hash.is_none()
        && !(options.prehashed && options.rsa_scheme == RsaSignatureScheme::Pkcs1v15)
    {
        return Err(KeyringError::HashNoneRequiresPkcs1Prehashed);
    }
    Ok(())
}

/// JWS marshaling applies to ECDSA keys only.
fn uses_jws(keyring: &Keyring, options: &SignatureOptions) -> bool {
    options.marshaling == Marshaling::Jws
        && matches!(
            keyring.key_type,
            super::KeyType::EcdsaP256 | super::KeyType::EcdsaP384 | super::KeyType::EcdsaP521
        )
}
