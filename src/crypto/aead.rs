//! Authenticated encryption: AES-128/256-GCM, ChaCha20-Poly1305 and
//! XChaCha20-Poly1305 behind one key type.
//!
//! AES-GCM and ChaCha20-Poly1305 come from `ring` (the fastest implementations
//! available to us, which matters on the hot path); XChaCha20-Poly1305, which ring
//! does not offer, comes from RustCrypto's `chacha20poly1305`. Callers pass the
//! nonce and associated data explicitly; an authentication failure is one opaque
//! error. This module does not choose keys, derive them, or know about the
//! `vault:v<N>:` format.
//!
//! Known limit: ring does not zeroize its expanded AES key schedule on drop. The
//! raw key bytes we hold are zeroized ([`SecretBytes`](super::SecretBytes)); the
//! schedule lives only as long as the key version is loaded.

use std::fmt;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use ring::aead::{self as ring_aead, LessSafeKey, UnboundKey};

use super::CryptoError;

/// Length of every tag produced here.
pub const TAG_LEN: usize = 16;

/// The AEAD algorithms cipherd uses for data keys and the barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AeadAlgorithm {
    /// AES-128 in GCM mode, 96-bit nonce.
    Aes128Gcm,
    /// AES-256 in GCM mode, 96-bit nonce.
    Aes256Gcm,
    /// ChaCha20-Poly1305 (RFC 8439), 96-bit nonce.
    ChaCha20Poly1305,
    /// XChaCha20-Poly1305, 192-bit nonce.
    XChaCha20Poly1305,
}

impl AeadAlgorithm {
    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Self::Aes128Gcm => 16,
            Self::Aes256Gcm | Self::ChaCha20Poly1305 | Self::XChaCha20Poly1305 => 32,
        }
    }

    /// Nonce length in bytes.
    pub fn nonce_len(self) -> usize {
        match self {
            Self::XChaCha20Poly1305 => 24,
            Self::Aes128Gcm | Self::Aes256Gcm | Self::ChaCha20Poly1305 => 12,
        }
    }

    /// A short name for error messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes128Gcm => "aes128-gcm",
            Self::Aes256Gcm => "aes256-gcm",
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
            Self::XChaCha20Poly1305 => "xchacha20-poly1305",
        }
    }
}

// The ring variant is the hot one and stays inline (no extra indirection per
// request); the rarely used XChaCha state is boxed.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Ring(LessSafeKey),
    XChaCha(Box<chacha20poly1305::XChaCha20Poly1305>),
}

/// A ready-to-use AEAD key: the key schedule is expanded once, at construction.
pub struct AeadKey {
    algorithm: AeadAlgorithm,
    inner: Inner,
}

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AeadKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl AeadKey {
    /// Expands `key` for `algorithm`. The caller keeps (and zeroizes) its copy.
    pub fn new(algorithm: AeadAlgorithm, key: &[u8]) -> Result<Self, CryptoError> {
        if key.len() != algorithm.key_len() {
            return Err(CryptoError::InvalidKeyLength {
                algorithm: algorithm.name(),
                got: key.len(),
            });
        }
        let ring_alg = match algorithm {
            AeadAlgorithm::Aes128Gcm => &ring_aead::AES_128_GCM,
            AeadAlgorithm::Aes256Gcm => &ring_aead::AES_256_GCM,
            AeadAlgorithm::ChaCha20Poly1305 => &ring_aead::CHACHA20_POLY1305,
            AeadAlgorithm::XChaCha20Poly1305 => {
                let cipher =
                    chacha20poly1305::XChaCha20Poly1305::new_from_slice(key).map_err(|_| {
                        CryptoError::InvalidKeyLength {
                            algorithm: algorithm.name(),
                            got: key.len(),
                        }
                    })?;
                return Ok(Self {
                    algorithm,
                    inner: Inner::XChaCha(Box::new(cipher)),
                });
            }
        };
        let unbound =
            UnboundKey::new(ring_alg, key).map_err(|_| CryptoError::InvalidKeyLength {
                algorithm: algorithm.name(),
                got: key.len(),
            })?;
        Ok(Self {
            algorithm,
            inner: Inner::Ring(LessSafeKey::new(unbound)),
        })
    }

    /// The algorithm this key is for.
    pub fn algorithm(&self) -> AeadAlgorithm {
        self.algorithm
    }

    /// Nonce length in bytes.
    pub fn nonce_len(&self) -> usize {
        self.algorithm.nonce_len()
    }

    /// Encrypts `plaintext` under `nonce` and appends `ciphertext || tag` to `out`.
    pub fn seal(
        &self,
        nonce: &[u8],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        self.check_nonce(nonce)?;
        let start = out.len();
        out.reserve(plaintext.len() + TAG_LEN);
        out.extend_from_slice(plaintext);
        let sealed = match &self.inner {
            Inner::Ring(key) => {
                // Length checked above, so the conversion cannot fail.
                let nonce = ring_aead::Nonce::try_assume_unique_for_key(nonce)
                    .map_err(|_| self.nonce_error(nonce.len()))?;
                key.seal_in_place_separate_tag(nonce, ring_aead::Aad::from(aad), &mut out[start..])
                    .map(|tag| out.extend_from_slice(tag.as_ref()))
                    .map_err(|_| CryptoError::InvalidOutputLength(plaintext.len()))
            }
            Inner::XChaCha(cipher) => {
                let nonce = chacha20poly1305::XNonce::try_from(nonce)
                    .map_err(|_| self.nonce_error(nonce.len()))?;
                cipher
                    .encrypt_inout_detached(&nonce, aad, (&mut out[start..]).into())
                    .map(|tag| out.extend_from_slice(tag.as_slice()))
                    .map_err(|_| CryptoError::InvalidOutputLength(plaintext.len()))
            }
        };
        if sealed.is_err() {
            out.truncate(start);
        }
        sealed
    }

    /// Draws a fresh random nonce and appends `nonce || ciphertext || tag` to `out`.
    pub fn seal_with_random_nonce(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        let mut nonce = [0u8; 24];
        let nonce = &mut nonce[..self.nonce_len()];
        super::random::fill(nonce);
        out.reserve(nonce.len() + plaintext.len() + TAG_LEN);
        out.extend_from_slice(nonce);
        // The nonce has the right length by construction and the plaintext of a
        // single request is far below the AEAD limits (2^36 bytes for GCM), so
        // sealing cannot fail here.
        let sealed = self.seal(nonce, aad, plaintext, out);
        debug_assert!(sealed.is_ok());
    }

    /// Decrypts `ciphertext || tag` under `nonce`.
    pub fn open(
        &self,
        nonce: &[u8],
        aad: &[u8],
        ciphertext_and_tag: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.check_nonce(nonce)?;
        if ciphertext_and_tag.len() < TAG_LEN {
            return Err(CryptoError::CiphertextTooShort);
        }
        let mut buf = ciphertext_and_tag.to_vec();
        match &self.inner {
            Inner::Ring(key) => {
                let nonce = ring_aead::Nonce::try_assume_unique_for_key(nonce)
                    .map_err(|_| self.nonce_error(nonce.len()))?;
                let len = key
                    .open_in_place(nonce, ring_aead::Aad::from(aad), &mut buf)
                    .map_err(|_| CryptoError::AuthenticationFailed)?
                    .len();
                buf.truncate(len);
            }
            Inner::XChaCha(cipher) => {
                let nonce = chacha20poly1305::XNonce::try_from(nonce)
                    .map_err(|_| self.nonce_error(nonce.len()))?;
                let split = buf.len() - TAG_LEN;
                let (msg, tag) = buf.split_at_mut(split);
                let tag = chacha20poly1305::Tag::try_from(&*tag)
                    .map_err(|_| CryptoError::CiphertextTooShort)?;
                cipher
                    .decrypt_inout_detached(&nonce, aad, msg.into(), &tag)
                    .map_err(|_| CryptoError::AuthenticationFailed)?;
                buf.truncate(split);
            }
        }
        Ok(buf)
    }

    /// Decrypts `nonce || ciphertext || tag` (the layout of
    /// [`seal_with_random_nonce`](Self::seal_with_random_nonce)).
    pub fn open_prefixed(
        &self,
        aad: &[u8],
        nonce_ciphertext_tag: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce_len = self.nonce_len();
        if nonce_ciphertext_tag.len() < nonce_len + TAG_LEN {
            return Err(CryptoError::CiphertextTooShort);
        }
        let (nonce, rest) = nonce_ciphertext_tag.split_at(nonce_len);
        self.open(nonce, aad, rest)
    }

    fn check_nonce(&self, nonce: &[u8]) -> Result<(), CryptoError> {
        if nonce.len() == self.nonce_len() {
            Ok(())
        } else {
            Err(self.nonce_error(nonce.len()))
        }
    }

    fn nonce_error(&self, got: usize) -> CryptoError {
        CryptoError::InvalidNonceLength {
            algorithm: self.algorithm.name(),
            got,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [AeadAlgorithm; 4] = [
        AeadAlgorithm::Aes128Gcm,
        AeadAlgorithm::Aes256Gcm,
        AeadAlgorithm::ChaCha20Poly1305,
        AeadAlgorithm::XChaCha20Poly1305,
    ];

    #[test]
    fn round_trip_and_tamper_detection() {
        for alg in ALL {
            let key = AeadKey::new(alg, &vec![7u8; alg.key_len()]).unwrap();
            let mut out = Vec::new();
            key.seal_with_random_nonce(b"aad", b"hello world", &mut out);
            assert_eq!(out.len(), alg.nonce_len() + 11 + TAG_LEN);
            assert_eq!(key.open_prefixed(b"aad", &out).unwrap(), b"hello world");
            assert_eq!(
                key.open_prefixed(b"other", &out),
                Err(CryptoError::AuthenticationFailed)
            );
            let last = out.len() - 1;
            out[last] ^= 1;
            assert_eq!(
                key.open_prefixed(b"aad", &out),
                Err(CryptoError::AuthenticationFailed)
            );
            assert_eq!(
                key.open_prefixed(b"aad", &out[..alg.nonce_len() + 3]),
                Err(CryptoError::CiphertextTooShort)
            );
        }
    }

    #[test]
    fn rejects_wrong_key_and_nonce_lengths() {
        for alg in ALL {
            assert!(AeadKey::new(alg, &[0u8; 5]).is_err());
            let key = AeadKey::new(alg, &vec![0u8; alg.key_len()]).unwrap();
            let mut out = Vec::new();
            assert!(key.seal(&[0u8; 5], b"", b"x", &mut out).is_err());
            assert!(out.is_empty());
        }
    }

    #[test]
    fn aes256_gcm_matches_reference_vector() {
        // Reference §8.11: key 00..1f, nonce 00..0b, "hello world".
        let key: Vec<u8> = (0u8..32).collect();
        let nonce: Vec<u8> = (0u8..12).collect();
        let key = AeadKey::new(AeadAlgorithm::Aes256Gcm, &key).unwrap();
        let mut out = nonce.clone();
        key.seal(&nonce, b"", b"hello world", &mut out).unwrap();
        use base64::Engine as _;
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(&out),
            "AAECAwQFBgcICQoLL2e6d6rFtXT/LfMFMBxWQ34jd7mO85YcJxko"
        );
    }
}
