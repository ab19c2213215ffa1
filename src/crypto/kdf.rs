//! Key derivation: HKDF-SHA256 (RFC 5869) and Vault's legacy SP 800-108 counter
//! KDF, plus the convergent-encryption nonce rule.
//!
//! These are the exact derivations of reference §8.3 and §8.4, so derived and
//! convergent ciphertexts are byte-compatible with Vault. This module only
//! computes bytes; which key is derived for which request is the keyring's job.

use hkdf::Hkdf;
use sha2::Sha256;

use super::{CryptoError, HashAlgorithm, SecretBytes};

/// Longest HKDF-SHA256 output (255 blocks of 32 bytes).
pub const MAX_HKDF_OUTPUT: usize = 255 * 32;

/// HKDF-SHA256 with `salt` (None = RFC 5869's zero salt) and `info`, `len` bytes
/// of output (at most 255 * 32).
pub fn hkdf_sha256(
    ikm: &[u8],
    salt: Option<&[u8]>,
    info: &[u8],
    len: usize,
) -> Result<SecretBytes, CryptoError> {
    // Refuse before allocating: RFC 5869 caps the output at 255 hash lengths.
    if len > MAX_HKDF_OUTPUT {
        return Err(CryptoError::InvalidOutputLength(len));
    }
    let mut okm = SecretBytes::new(vec![0u8; len]);
    Hkdf::<Sha256>::new(salt, ikm)
        .expand(info, okm.expose_secret_mut())
        .map_err(|_| CryptoError::InvalidOutputLength(len))?;
    Ok(okm)
}
/// Vault's legacy derivation (`kdf = hmac-sha256-counter`): one round of NIST
/// SP 800-108 counter mode, `HMAC-SHA256(ikm, be32(0) || context || be32(256))`.
///
/// Hand-written because no maintained crate implements this exact (and
/// non-standard: the counter starts at 0) construction; it is four lines over the
/// HMAC crate and is pinned by the reference §8.11 vector in the tests below.
pub fn legacy_counter_kdf(ikm: &[u8], context: &[u8]) -> SecretBytes {
    let mut input = Vec::with_capacity(context.len() + 8);
    input.extend_from_slice(&0u32.to_be_bytes());
    input.extend_from_slice(context);
    input.extend_from_slice(&256u32.to_be_bytes());
    SecretBytes::new(HashAlgorithm::Sha2_256.hmac(ikm, &input))
}

/// The convergent (v3) nonce: `HMAC-SHA256(nonce_key, plaintext)[..nonce_len]`.
pub fn convergent_nonce(nonce_key: &[u8], plaintext: &[u8], nonce_len: usize) -> Vec<u8> {
    let mut mac = HashAlgorithm::Sha2_256.hmac(nonce_key, plaintext);
    mac.truncate(nonce_len);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Vec<u8> {
        (0u8..32).collect()
    }

    #[test]
    fn hkdf_matches_reference_derived_key() {
        let derived = hkdf_sha256(&key(), None, b"ctx1", 32).unwrap();
        assert_eq!(
            hex::encode(derived.expose_secret()),
            "d036f8a20a21561140faae5b747cd214f41d3a0aca9a1820316408ecda13bc0d"
        );
    }

    #[test]
    fn legacy_kdf_matches_reference() {
        assert_eq!(
            hex::encode(legacy_counter_kdf(&key(), b"ctx1").expose_secret()),
            "6272c762c97237583f28e925f8cc5d29e9a4c99d058bbe83c0736c915c9ab720"
        );
    }

    #[test]
    fn convergent_nonce_matches_reference() {
        let okm = hkdf_sha256(&key(), None, b"ctx1", 64).unwrap();
        let nonce_key = &okm.expose_secret()[32..];
        assert_eq!(
            hex::encode(nonce_key),
            "90d04141a250664ebf752233e3d7e43ddf2dff9a8aef02d94f2941830777ef94"
        );
        assert_eq!(
            hex::encode(convergent_nonce(nonce_key, b"hello world", 12)),
            "cc15eead3c6dd0a08abd041f"
        );
    }

    #[test]
    fn hkdf_refuses_too_long_output() {
        assert!(hkdf_sha256(&key(), None, b"", 255 * 32 + 1).is_err());
        assert!(hkdf_sha256(&key(), None, b"", usize::MAX).is_err());
        assert!(hkdf_sha256(&key(), None, b"", 255 * 32).is_ok());
    }
}
