//! RSA-2048/3072/4096: RSASSA-PSS and RSASSA-PKCS1-v1_5 signatures, RSAES-OAEP,
//! PKCS#8 / PKCS#1 / PKIX encodings. No I/O, storage or JSON here.
//!
//! Built on the `rsa` crate (constant-time `crypto-bigint` arithmetic, blinded
//! private operations).

use ::rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use ::rsa::pkcs8::der::Decode as _;
use ::rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use ::rsa::traits::PublicKeyParts;
use ::rsa::{Oaep, Pkcs1v15Sign, Pss};
use subtle::{Choice, ConditionallySelectable as _, ConstantTimeEq as _};
use zeroize::{Zeroize as _, Zeroizing};

use super::{
    AsymmetricAlgorithm, RsaSignatureScheme, SaltLength, SignatureOptions, isolate_pem,
    message_representative,
};
use crate::crypto::{CryptoError, HashAlgorithm, SecretBytes};

/// Runs `$body` with `$d` naming the digest type of `$hash`.
macro_rules! with_digest {
    ($hash:expr, $d:ident => $body:expr) => {
        match $hash {
            HashAlgorithm::Sha1 => {
                type $d = sha1::Sha1;
                $body
            }
            HashAlgorithm::Sha2_224 => {
                type $d = sha2::Sha224;
                $body
            }
            HashAlgorithm::Sha2_256 => {
                type $d = sha2::Sha256;
                $body
            }
            HashAlgorithm::Sha2_384 => {
                type $d = sha2::Sha384;
                $body
            }
            HashAlgorithm::Sha2_512 => {
                type $d = sha2::Sha512;
                $body
            }
            HashAlgorithm::Sha3_224 => {
                type $d = sha3::Sha3_224;
                $body
            }
            HashAlgorithm::Sha3_256 => {
                type $d = sha3::Sha3_256;
                $body
            }
            HashAlgorithm::Sha3_384 => {
                type $d = sha3::Sha3_384;
                $body
            }
            HashAlgorithm::Sha3_512 => {
                type $d = sha3::Sha3_512;
                $body
            }
        }
    };
}

/// DER of `DigestInfo { AlgorithmIdentifier { oid, NULL }, OCTET STRING (hLen) }`
/// up to (not including) the digest: the PKCS#1 v1.5 prefix (RFC 8017 §9.2 note
/// 1; SHA-3 OIDs 2.16.840.1.101.3.4.2.7-10, as Go's `crypto/rsa`).
fn digest_info_prefix(hash: HashAlgorithm) -> &'static [u8] {
    match hash {
        HashAlgorithm::Sha1 => &[
            0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
            0x14,
        ],
        HashAlgorithm::Sha2_224 => &[
            0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x04, 0x05, 0x00, 0x04, 0x1c,
        ],
        HashAlgorithm::Sha2_256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
        HashAlgorithm::Sha2_384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
        HashAlgorithm::Sha2_512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
        HashAlgorithm::Sha3_224 => &[
            0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x07, 0x05, 0x00, 0x04, 0x1c,
        ],
        HashAlgorithm::Sha3_256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x08, 0x05, 0x00, 0x04, 0x20,
        ],
        HashAlgorithm::Sha3_384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x09, 0x05, 0x00, 0x04, 0x30,
        ],
        HashAlgorithm::Sha3_512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x0a, 0x05, 0x00, 0x04, 0x40,
        ],
    }
}

/// PKCS#1 v1.5 signature padding for `hash` (`None`: no DigestInfo, any length).
fn pkcs1v15_scheme(hash: Option<HashAlgorithm>) -> Pkcs1v15Sign {
    match hash {
        Some(hash) => Pkcs1v15Sign {
            hash_len: Some(hash.output_len()),
            prefix: digest_info_prefix(hash).into(),
        },
        None => Pkcs1v15Sign::new_unprefixed(),
    }
}

/// Modulus size in bytes required by each key type.
fn modulus_bytes(alg: AsymmetricAlgorithm) -> Option<usize> {
    match alg {
        AsymmetricAlgorithm::Rsa2048 => Some(256),
        AsymmetricAlgorithm::Rsa3072 => Some(384),
        AsymmetricAlgorithm::Rsa4096 => Some(512),
        _ => None,
    }
}

fn check_size(alg: AsymmetricAlgorithm, key: &impl PublicKeyParts) -> Result<(), CryptoError> {
    if modulus_bytes(alg) == Some(key.size()) {
        Ok(())
    } else {
        Err(CryptoError::InvalidKeyLength {
            algorithm: alg.vault_key_name(),
            got: key.size(),
        })
    }
}

/// `emLen - hLen - 2`, the largest PSS salt (Go's `PSSSaltLengthAuto` when
/// signing and Vault's upper bound for an explicit `salt_length`).
fn max_salt_len(key: &impl PublicKeyParts, hash: HashAlgorithm) -> usize {
    let em_bits = (key.n().bit_width() as usize).saturating_sub(1);
    em_bits.div_ceil(8).saturating_sub(hash.output_len() + 2)
}

/// The salt length to sign with (`Some`) or verify against (`None` = detect).
fn salt_len(
    key: &impl PublicKeyParts,
    hash: HashAlgorithm,
    salt: SaltLength,
    signing: bool,
) -> Result<Option<usize>, CryptoError> {
    let max = max_salt_len(key, hash);
    match salt {
        SaltLength::Auto if signing => Ok(Some(max)),
        SaltLength::Auto => Ok(None),
        SaltLength::Hash => Ok(Some(hash.output_len())),
        SaltLength::Bytes(n) if n <= max => Ok(Some(n)),
        SaltLength::Bytes(n) => Err(CryptoError::InvalidSaltLength(
            i64::try_from(n).unwrap_or(i64::MAX),
        )),
    }
}

/// An RSA private key (zeroized on drop by the `rsa` crate).
pub(super) struct RsaPrivate {
    alg: AsymmetricAlgorithm,
    key: ::rsa::PrivateKey,
}

impl RsaPrivate {
    pub(super) fn generate(alg: AsymmetricAlgorithm) -> Result<Self, CryptoError> {
        let bytes = modulus_bytes(alg).ok_or(CryptoError::KeyGeneration)?;
        let key = ::rsa::PrivateKey::new(&mut rand::rng(), bytes * 8)
            .map_err(|_| CryptoError::KeyGeneration)?;
        check_size(alg, &key).map_err(|_| CryptoError::KeyGeneration)?;
        Ok(Self { alg, key })
    }

    pub(super) fn algorithm(&self) -> AsymmetricAlgorithm {
        self.alg
    }

    /// PKCS#8 DER: `rsaEncryption`, or the RSASSA-PSS OID (1.2.840.113549.1.1.10)
    /// with or without parameters, which are ignored as in Vault.
    pub(super) fn from_pkcs8_der(
        alg: AsymmetricAlgorithm,
        der: &[u8],
    ) -> Result<Self, CryptoError> {
        modulus_bytes(alg).ok_or(CryptoError::InvalidKeyEncoding("not an RSA key type"))?;
        let key = match ::rsa::PrivateKey::from_pkcs8_der(der) {
            Ok(key) => key,
            Err(_) => {
                let info = ::rsa::pkcs8::PrivateKeyInfoRef::from_der(der)
                    .map_err(|_| CryptoError::InvalidKeyEncoding("not a PKCS#8 private key"))?;
                let is_rsa = info.algorithm.oid == ::rsa::pkcs1::ALGORITHM_OID
                    || info.algorithm.oid.as_bytes() == OID_RSASSA_PSS;
                if !is_rsa {
                    return Err(CryptoError::InvalidKeyEncoding(
                        "not a PKCS#8 RSA private key",
                    ));
                }
                ::rsa::PrivateKey::from_pkcs1_der(info.private_key.as_bytes()).map_err(|_| {
                    CryptoError::InvalidKeyEncoding("invalid PKCS#1 RSA private key")
                })?
            }
        };
        check_size(alg, &key)?;
        Ok(Self { alg, key })
    }

    /// PKCS#8 DER (`rsaEncryption`).
    pub(super) fn to_storage_bytes(&self) -> SecretBytes {
        // Encoding a valid two-prime key cannot fail; an empty result would be
        // refused on load rather than silently accepted.
        match self.key.to_pkcs8_der() {
            Ok(doc) => SecretBytes::from_slice(doc.as_bytes()),
            Err(_) => SecretBytes::new(Vec::new()),
        }
    }

    pub(super) fn public_key(&self) -> RsaPublic {
        RsaPublic {
            alg: self.alg,
            key: self.key.to_public_key(),
        }
    }

    pub(super) fn sign(
        &self,
        input: &[u8],
        opts: &SignatureOptions,
    ) -> Result<Vec<u8>, CryptoError> {
        let digest = message_representative(input, opts)?;
        if let (true, Some(hash)) = (opts.prehashed, opts.hash)
            && digest.len() != hash.output_len()
        {
            return Err(CryptoError::InvalidDigestLength {
                got: digest.len(),
                expected: hash.output_len(),
            });
        }
        let mut rng = rand::rng();
        let result = match opts.rsa_scheme {
            RsaSignatureScheme::Pss => {
                let hash = opts.hash.ok_or(CryptoError::UnsupportedHash("none"))?;
                let salt = salt_len(&self.key, hash, opts.salt_length, true)?.unwrap_or(0);
                with_digest!(hash, D => self.key.sign_with_rng(&mut rng, Pss::<D>::new_with_salt(salt), &digest))
            }
            RsaSignatureScheme::Pkcs1v15 => {
                if opts.hash.is_none() && !opts.prehashed {
                    return Err(CryptoError::UnsupportedHash("none"));
                }
                self.key
                    .sign_with_rng(&mut rng, pkcs1v15_scheme(opts.hash), &digest)
            }
        };
        result.map_err(|err| match err {
            ::rsa::Error::MessageTooLong => CryptoError::MessageTooLong,
            _ => CryptoError::SigningFailed,
        })
    }

    /// PKCS#1 `RSA PRIVATE KEY` PEM ending with `\n`.
    pub(super) fn export_private(&self) -> SecretBytes {
        match self.key.to_pkcs1_pem(LineEnding::LF) {
            Ok(pem) => {
                let mut text = pem.trim_end_matches('\n').as_bytes().to_vec();
                text.push(b'\n');
                SecretBytes::new(text)
            }
            // Encoding a valid two-prime key cannot fail.
            Err(_) => SecretBytes::new(Vec::new()),
        }
    }

    /// RSAES-OAEP, `hash` for OAEP and MGF1, empty label; every failure is the
    /// same opaque error.
    ///
    /// The private operation is the `rsa` crate's blinded, CRT-checked RSADP;
    /// the EME-OAEP decoding is done here because `rsa` 0.10 deliberately
    /// ignores the leading octet `Y`, which RFC 8017 §7.1.2 step 3g (and
    /// Wycheproof) require to be zero.
    pub(super) fn decrypt_oaep(
        &self,
        hash: HashAlgorithm,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, CryptoError> {
        let k = self.key.size();
        if ciphertext.len() != k {
            return Err(CryptoError::RsaDecryptionFailed);
        }
        let c = ::rsa::BoxedUint::from_be_slice(ciphertext, self.key.n_bits_precision())
            .map_err(|_| CryptoError::RsaDecryptionFailed)?;
        let mut m = ::rsa::hazmat::rsa_decrypt_and_check(&self.key, Some(&mut rand::rng()), &c)
            .map_err(|_| CryptoError::RsaDecryptionFailed)?;
        let m_bytes = Zeroizing::new(m.to_be_bytes());
        m.zeroize();
        // I2OSP(m, k): m < n, so any extra leading storage bytes are zero.
        let mut em = Zeroizing::new(vec![0u8; k]);
        let take = m_bytes.len().min(k);
        em[k - take..].copy_from_slice(&m_bytes[m_bytes.len() - take..]);
        oaep_decode(hash, &mut em)
            .map(SecretBytes::new)
            .ok_or(CryptoError::RsaDecryptionFailed)
    }
}

/// MGF1 (RFC 8017 B.2.1) with `hash`, XORed into `out`.
fn mgf1_xor(hash: HashAlgorithm, seed: &[u8], out: &mut [u8]) {
    let mut input = Zeroizing::new(Vec::with_capacity(seed.len() + 4));
    for (counter, chunk) in (0u32..).zip(out.chunks_mut(hash.output_len())) {
        input.clear();
        input.extend_from_slice(seed);
        input.extend_from_slice(&counter.to_be_bytes());
        let mask = Zeroizing::new(hash.digest(&input));
        for (byte, mask) in chunk.iter_mut().zip(mask.iter()) {
            *byte ^= mask;
        }
    }
}

/// EME-OAEP decoding (RFC 8017 §7.1.2 step 3) with the empty label, in
/// constant time up to the final accept/reject. Returns `M`.
fn oaep_decode(hash: HashAlgorithm, em: &mut [u8]) -> Option<Vec<u8>> {
    let h_len = hash.output_len();
    let k = em.len();
    if k < 2 * h_len + 2 {
        return None;
    }
    let l_hash = hash.digest(b"");
    let (y, rest) = em.split_at_mut(1);
    let (seed, db) = rest.split_at_mut(h_len);
    mgf1_xor(hash, db, seed);
    mgf1_xor(hash, seed, db);

    let mut good = y[0].ct_eq(&0) & db[..h_len].ct_eq(&l_hash[..]);
    // PS (zero bytes), then 0x01, then M.
    let mut looking = Choice::from(1);
    let mut index = 0u32;
    let mut invalid = Choice::from(0);
    for (i, byte) in (0u32..).zip(db[h_len..].iter()) {
        let is_zero = byte.ct_eq(&0);
        let is_one = byte.ct_eq(&1);
        index.conditional_assign(&i, looking & is_one);
        invalid |= looking & !is_zero & !is_one;
        looking &= !is_one;
    }
    good &= !invalid & !looking;
    if !bool::from(good) {
        return None;
    }
    let start = h_len + usize::try_from(index).ok()? + 1;
    Some(db[start..].to_vec())
}

/// DER contents of id-RSASSA-PSS (1.2.840.113549.1.1.10).
const OID_RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];

/// An RSA public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RsaPublic {
    alg: AsymmetricAlgorithm,
    key: ::rsa::PublicKey,
}

impl RsaPublic {
    pub(super) fn algorithm(&self) -> AsymmetricAlgorithm {
        self.alg
    }

    /// PKIX `PUBLIC KEY` PEM with the modulus size of `alg`.
    pub(super) fn from_pem(alg: AsymmetricAlgorithm, text: &str) -> Result<Self, CryptoError> {
        let pem =
            isolate_pem(text).ok_or(CryptoError::InvalidKeyEncoding("not a PEM public key"))?;
        let key = ::rsa::PublicKey::from_public_key_pem(pem)
            .map_err(|_| CryptoError::InvalidKeyEncoding("not a PKIX RSA public key"))?;
        check_size(alg, &key)?;
        Ok(Self { alg, key })
    }

    /// SPKI DER with the modulus size of `alg`.
    pub(super) fn from_spki_der(alg: AsymmetricAlgorithm, der: &[u8]) -> Result<Self, CryptoError> {
        let key = ::rsa::PublicKey::from_public_key_der(der)
            .map_err(|_| CryptoError::InvalidKeyEncoding("not an SPKI RSA public key"))?;
        check_size(alg, &key)?;
        Ok(Self { alg, key })
    }

    pub(super) fn to_storage_bytes(&self) -> Vec<u8> {
        // Encoding a valid key cannot fail; an empty result is refused on load.
        self.key
            .to_public_key_der()
            .map(|doc| doc.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// PKIX PEM ending with exactly one `\n`.
    pub(super) fn to_pem_with_newline(&self) -> String {
        // As above: encoding a valid key cannot fail.
        let mut pem = self
            .key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default();
        pem.truncate(pem.trim_end_matches('\n').len());
        pem.push('\n');
        pem
    }

    pub(super) fn verify(
        &self,
        input: &[u8],
        signature: &[u8],
        opts: &SignatureOptions,
    ) -> Result<bool, CryptoError> {
        let digest = message_representative(input, opts)?;
        match opts.rsa_scheme {
            RsaSignatureScheme::Pss => {
                let hash = opts.hash.ok_or(CryptoError::UnsupportedHash("none"))?;
                let salt_len = salt_len(&self.key, hash, opts.salt_length, false)?;
                if digest.len() != hash.output_len() {
                    return Ok(false);
                }
                Ok(with_digest!(hash, D => self.key.verify(
                    Pss::<D> { blinded: false, digest: <D as sha2::Digest>::new(), salt_len },
                    &digest,
                    signature,
                ))
                .is_ok())
            }
            RsaSignatureScheme::Pkcs1v15 => {
                if opts.hash.is_none() && !opts.prehashed {
                    return Err(CryptoError::UnsupportedHash("none"));
                }
                if opts
                    .hash
                    .is_some_and(|hash| digest.len() != hash.output_len())
                {
                    return Ok(false);
                }
                Ok(self
                    .key
                    .verify(pkcs1v15_scheme(opts.hash), &digest, signature)
                    .is_ok())
            }
        }
    }

    /// RSAES-OAEP, `hash` for OAEP and MGF1, empty label.
    pub(super) fn encrypt_oaep(
        &self,
        hash: HashAlgorithm,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut rng = rand::rng();
        with_digest!(hash, D => self.key.encrypt(&mut rng, Oaep::<D>::new(), plaintext)).map_err(
            |err| match err {
                ::rsa::Error::MessageTooLong => CryptoError::MessageTooLong,
                _ => CryptoError::InvalidKeyEncoding("RSA-OAEP encryption failed"),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_info_prefixes_match_the_rsa_crate() {
        for (hash, expected) in [
            (HashAlgorithm::Sha1, Pkcs1v15Sign::new::<sha1::Sha1>()),
            (HashAlgorithm::Sha2_224, Pkcs1v15Sign::new::<sha2::Sha224>()),
            (HashAlgorithm::Sha2_256, Pkcs1v15Sign::new::<sha2::Sha256>()),
            (HashAlgorithm::Sha2_384, Pkcs1v15Sign::new::<sha2::Sha384>()),
            (HashAlgorithm::Sha2_512, Pkcs1v15Sign::new::<sha2::Sha512>()),
        ] {
            assert_eq!(digest_info_prefix(hash), &*expected.prefix, "{hash}");
            assert_eq!(Some(hash.output_len()), expected.hash_len);
        }
        for hash in HashAlgorithm::ALL {
            let prefix = digest_info_prefix(hash);
            // Outer SEQUENCE length covers the rest plus the digest; the last byte is hLen.
            assert_eq!(
                usize::from(prefix[1]),
                prefix.len() - 2 + hash.output_len(),
                "{hash}"
            );
            assert_eq!(
                usize::from(prefix[prefix.len() - 1]),
                hash.output_len(),
                "{hash}"
            );
        }
    }
}
