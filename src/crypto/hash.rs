//! Hash functions and HMAC: SHA-1, SHA-2 and SHA-3 by their Vault names.
//!
//! Owns the mapping from Vault's algorithm names (`sha2-256`, `sha3-512`, ...) to
//! digest implementations, one-shot digests, and HMAC with constant-time
//! verification. Knows nothing of keys' lifecycles or wire encodings.

use std::fmt;
use std::str::FromStr;

use hmac::{KeyInit, Mac};
use sha2::Digest;

use super::secret::ct_eq;

/// A hash function by its Vault name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-1 (legacy; accepted where Vault accepts it).
    Sha1,
    /// SHA-224.
    Sha2_224,
    /// SHA-256 (Vault's default).
    Sha2_256,
    /// SHA-384.
    Sha2_384,
    /// SHA-512.
    Sha2_512,
    /// SHA3-224.
    Sha3_224,
    /// SHA3-256.
    Sha3_256,
    /// SHA3-384.
    Sha3_384,
    /// SHA3-512.
    Sha3_512,
}

/// The name did not match any supported hash algorithm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported algorithm {0}")]
pub struct UnknownHashAlgorithm(pub String);

impl HashAlgorithm {
    /// Every algorithm, in a stable order.
    pub const ALL: [HashAlgorithm; 9] = [
        Self::Sha1,
        Self::Sha2_224,
        Self::Sha2_256,
        Self::Sha2_384,
        Self::Sha2_512,
        Self::Sha3_224,
        Self::Sha3_256,
        Self::Sha3_384,
        Self::Sha3_512,
    ];

    /// Vault's name for the algorithm.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha2_224 => "sha2-224",
            Self::Sha2_256 => "sha2-256",
            Self::Sha2_384 => "sha2-384",
            Self::Sha2_512 => "sha2-512",
            Self::Sha3_224 => "sha3-224",
            Self::Sha3_256 => "sha3-256",
            Self::Sha3_384 => "sha3-384",
            Self::Sha3_512 => "sha3-512",
        }
    }

    /// Digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha2_224 | Self::Sha3_224 => 28,
            Self::Sha2_256 | Self::Sha3_256 => 32,
            Self::Sha2_384 | Self::Sha3_384 => 48,
            Self::Sha2_512 | Self::Sha3_512 => 64,
        }
    }

    /// One-shot digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Self::Sha2_224 => sha2::Sha224::digest(data).to_vec(),
            Self::Sha2_256 => sha2::Sha256::digest(data).to_vec(),
            Self::Sha2_384 => sha2::Sha384::digest(data).to_vec(),
            Self::Sha2_512 => sha2::Sha512::digest(data).to_vec(),
            Self::Sha3_224 => sha3::Sha3_224::digest(data).to_vec(),
            Self::Sha3_256 => sha3::Sha3_256::digest(data).to_vec(),
            Self::Sha3_384 => sha3::Sha3_384::digest(data).to_vec(),
            Self::Sha3_512 => sha3::Sha3_512::digest(data).to_vec(),
        }
    }

    /// HMAC of `data` under `key` (any key length, as RFC 2104 allows).
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            // HMAC accepts keys of every length (RFC 2104 §3), so this cannot fail.
            let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Self::Sha1 => run::<hmac::Hmac<sha1::Sha1>>(key, data),
            Self::Sha2_224 => run::<hmac::Hmac<sha2::Sha224>>(key, data),
            Self::Sha2_256 => run::<hmac::Hmac<sha2::Sha256>>(key, data),
            Self::Sha2_384 => run::<hmac::Hmac<sha2::Sha384>>(key, data),
            Self::Sha2_512 => run::<hmac::Hmac<sha2::Sha512>>(key, data),
            Self::Sha3_224 => run::<hmac::SimpleHmac<sha3::Sha3_224>>(key, data),
            Self::Sha3_256 => run::<hmac::SimpleHmac<sha3::Sha3_256>>(key, data),
            Self::Sha3_384 => run::<hmac::SimpleHmac<sha3::Sha3_384>>(key, data),
            Self::Sha3_512 => run::<hmac::SimpleHmac<sha3::Sha3_512>>(key, data),
        }
    }

    /// Recomputes the HMAC and compares it with `tag` in constant time. A `tag`
    /// shorter than the full output is compared as a truncated tag (RFC 2104 §5)
    /// when it is at least half the output length; shorter tags never verify.
    pub fn hmac_verify(self, key: &[u8], data: &[u8], tag: &[u8]) -> bool {
        let full = self.hmac(key, data);
        if tag.len() == full.len() {
            return ct_eq(&full, tag);
        }
        tag.len() >= full.len() / 2 && tag.len() < full.len() && ct_eq(&full[..tag.len()], tag)
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgorithm {
    type Err = UnknownHashAlgorithm;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.name() == name)
            .ok_or_else(|| UnknownHashAlgorithm(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for alg in HashAlgorithm::ALL {
            assert_eq!(alg.name().parse::<HashAlgorithm>(), Ok(alg));
            assert_eq!(alg.digest(b"x").len(), alg.output_len());
            assert_eq!(alg.hmac(b"k", b"x").len(), alg.output_len());
        }
        assert!("md5".parse::<HashAlgorithm>().is_err());
    }

    #[test]
    fn sha256_of_hello_world_matches_reference_vector() {
        // Reference §8.11: hash sha2-256 of "hello world".
        assert_eq!(
            hex::encode(HashAlgorithm::Sha2_256.digest(b"hello world")),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }

    #[test]
    fn hmac_verify_rejects_wrong_and_short_tags() {
        let alg = HashAlgorithm::Sha2_256;
        let tag = alg.hmac(b"key", b"data");
        assert!(alg.hmac_verify(b"key", b"data", &tag));
        assert!(alg.hmac_verify(b"key", b"data", &tag[..16]));
        assert!(!alg.hmac_verify(b"key", b"data", &tag[..8]));
        assert!(!alg.hmac_verify(b"key", b"datb", &tag));
        assert!(!alg.hmac_verify(b"key", b"data", &[]));
    }
}
