//! ECDSA over NIST P-256, P-384 and P-521 with Vault's signature encodings
//! (DER or fixed-width `r ‖ s`), SEC 1 / PKIX text forms and fixed-width scalar
//! storage. No I/O, storage or JSON here.
//!
//! The three curves are concrete `RustCrypto` types behind small enums; the
//! `each_curve!` macro writes the same code once per curve, which keeps the
//! generic bounds of the `ecdsa` crate out of this file.

use std::borrow::Cow;

use ::ecdsa::signature::hazmat::{PrehashVerifier, RandomizedPrehashSigner};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use zeroize::Zeroizing;

use super::{
    AsymmetricAlgorithm, Marshaling, SignatureOptions, der, isolate_pem, message_representative,
};
use crate::crypto::{CryptoError, SecretBytes};

/// Runs `$body` with `$k` bound to the curve-specific value inside `$value`
/// and `$c` naming that curve's crate (`p256`, `p384` or `p521`).
macro_rules! each_curve {
    ($value:expr, $enum:ident, $k:ident, $c:ident => $body:expr) => {
        match $value {
            $enum::P256($k) => {
                #[allow(unused_imports)]
                use p256 as $c;
                $body
            }
            $enum::P384($k) => {
                #[allow(unused_imports)]
                use p384 as $c;
                $body
            }
            $enum::P521($k) => {
                #[allow(unused_imports)]
                use p521 as $c;
                $body
            }
        }
    };
}

/// Bit length of the group order and byte length of a scalar (and of each of
/// `r` and `s` in a JWS signature).
fn curve_sizes(alg: AsymmetricAlgorithm) -> (usize, usize) {
    match alg {
        AsymmetricAlgorithm::EcdsaP384 => (384, 48),
        AsymmetricAlgorithm::EcdsaP521 => (521, 66),
        _ => (256, 32),
    }
}

/// FIPS 186-5 §6.4.1 step 2 / Go's `hashToInt`: keep the leftmost
/// `order_bits` bits of the digest. `RustCrypto` truncates to whole bytes and
/// then keeps the *low* bits, which differs only for P-521 with an input of 66
/// bytes or more (possible with `prehashed`), so the shift is done here and the
/// library then sees a value that already fits.
///
/// An empty input becomes a single zero byte (the same integer, 0), because
/// the RFC 6979 nonce derivation does not take empty input.
fn truncate_to_order(digest: &[u8], order_bits: usize) -> Cow<'_, [u8]> {
    if digest.is_empty() {
        return Cow::Owned(vec![0]);
    }
    if digest.len() * 8 <= order_bits {
        return Cow::Borrowed(digest);
    }
    let order_bytes = order_bits.div_ceil(8);
    let excess = order_bytes * 8 - order_bits;
    let mut out = digest[..order_bytes].to_vec();
    if excess > 0 {
        let mut carry = 0u8;
        for byte in &mut out {
            let next_carry = *byte << (8 - excess);
            *byte = (*byte >> excess) | carry;
            carry = next_carry;
        }
    }
    Cow::Owned(out)
}

/// An ECDSA signing key (zeroized on drop by the `ecdsa` crate).
pub(super) enum EcdsaPrivate {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
}

impl EcdsaPrivate {
    pub(super) fn generate(alg: AsymmetricAlgorithm) -> Result<Self, CryptoError> {
        use ::ecdsa::elliptic_curve::Generate as _;
        let mut rng = rand::rng();
        Ok(match alg {
            AsymmetricAlgorithm::EcdsaP256 => {
                Self::P256(p256::ecdsa::SigningKey::generate_from_rng(&mut rng))
            }
            AsymmetricAlgorithm::EcdsaP384 => {
                Self::P384(p384::ecdsa::SigningKey::generate_from_rng(&mut rng))
            }
            AsymmetricAlgorithm::EcdsaP521 => {
                Self::P521(p521::ecdsa::SigningKey::generate_from_rng(&mut rng))
            }
            _ => return Err(CryptoError::KeyGeneration),
        })
    }

    pub(super) fn algorithm(&self) -> AsymmetricAlgorithm {
        match self {
            Self::P256(_) => AsymmetricAlgorithm::EcdsaP256,
            Self::P384(_) => AsymmetricAlgorithm::EcdsaP384,
            Self::P521(_) => AsymmetricAlgorithm::EcdsaP521,
        }
    }

    /// The big-endian scalar, exactly 32 / 48 / 66 bytes.
    pub(super) fn from_storage_bytes(
        alg: AsymmetricAlgorithm,
        bytes: &[u8],
    ) -> Result<Self, CryptoError> {
        let (_, scalar_len) = curve_sizes(alg);
        if bytes.len() != scalar_len {
            return Err(CryptoError::InvalidKeyLength {
                algorithm: alg.vault_key_name(),
                got: bytes.len(),
            });
        }
        let invalid = || {
            CryptoError::InvalidKeyEncoding(
                "ECDSA private scalar is zero or not below the group order",
            )
        };
        Ok(match alg {
            AsymmetricAlgorithm::EcdsaP256 => {
                Self::P256(p256::ecdsa::SigningKey::from_slice(bytes).map_err(|_| invalid())?)
            }
            AsymmetricAlgorithm::EcdsaP384 => {
                Self::P384(p384::ecdsa::SigningKey::from_slice(bytes).map_err(|_| invalid())?)
            }
            AsymmetricAlgorithm::EcdsaP521 => {
                Self::P521(p521::ecdsa::SigningKey::from_slice(bytes).map_err(|_| invalid())?)
            }
            _ => return Err(CryptoError::InvalidKeyEncoding("not an ECDSA key type")),
        })
    }

    pub(super) fn to_storage_bytes(&self) -> SecretBytes {
        each_curve!(self, Self, k, _c => {
            let bytes = Zeroizing::new(k.to_bytes());
            SecretBytes::from_slice(bytes.as_slice())
        })
    }

    /// PKCS#8 `PrivateKeyInfo` whose curve must be the one of `alg`.
    pub(super) fn from_pkcs8_der(
        alg: AsymmetricAlgorithm,
        der: &[u8],
    ) -> Result<Self, CryptoError> {
        let wrong = || {
            CryptoError::InvalidKeyEncoding(
                "not a PKCS#8 ECDSA private key on the key type's curve",
            )
        };
        Ok(match alg {
            AsymmetricAlgorithm::EcdsaP256 => Self::P256(
                p256::SecretKey::from_pkcs8_der(der)
                    .map_err(|_| wrong())?
                    .into(),
            ),
            AsymmetricAlgorithm::EcdsaP384 => Self::P384(
                p384::SecretKey::from_pkcs8_der(der)
                    .map_err(|_| wrong())?
                    .into(),
            ),
            AsymmetricAlgorithm::EcdsaP521 => Self::P521(
                p521::SecretKey::from_pkcs8_der(der)
                    .map_err(|_| wrong())?
                    .into(),
            ),
            _ => return Err(wrong()),
        })
    }

    pub(super) fn public_key(&self) -> EcdsaPublic {
        match self {
            Self::P256(k) => EcdsaPublic::P256(*k.verifying_key()),
            Self::P384(k) => EcdsaPublic::P384(*k.verifying_key()),
            Self::P521(k) => EcdsaPublic::P521(*k.verifying_key()),
        }
    }

    /// Hedged RFC 6979 signature over the (truncated) digest.
    pub(super) fn sign(
        &self,
        input: &[u8],
        opts: &SignatureOptions,
    ) -> Result<Vec<u8>, CryptoError> {
        let digest = message_representative(input, opts)?;
        let (order_bits, _) = curve_sizes(self.algorithm());
        let z = truncate_to_order(&digest, order_bits);
        let mut rng = rand::rng();
        each_curve!(self, Self, k, c => {
            let signature: c::ecdsa::Signature =
                k.sign_prehash_with_rng(&mut rng, &z).map_err(|_| CryptoError::SigningFailed)?;
            Ok(match opts.marshaling {
                Marshaling::Asn1 => signature.to_der().as_bytes().to_vec(),
                Marshaling::Jws => signature.to_bytes().to_vec(),
            })
        })
    }

    /// SEC 1 `EC PRIVATE KEY` PEM without the trailing newline.
    pub(super) fn export_private(&self) -> SecretBytes {
        let pem =
            each_curve!(self, Self, k, c => c::SecretKey::from(k).to_sec1_pem(LineEnding::LF));
        match pem {
            Ok(pem) => SecretBytes::from_slice(pem.trim_end_matches('\n').as_bytes()),
            // Encoding a valid in-memory key into a large enough buffer cannot
            // fail; an empty export is the safe answer if it ever did.
            Err(_) => SecretBytes::new(Vec::new()),
        }
    }
}

/// An ECDSA public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum EcdsaPublic {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
}

impl EcdsaPublic {
    pub(super) fn algorithm(&self) -> AsymmetricAlgorithm {
        match self {
            Self::P256(_) => AsymmetricAlgorithm::EcdsaP256,
            Self::P384(_) => AsymmetricAlgorithm::EcdsaP384,
            Self::P521(_) => AsymmetricAlgorithm::EcdsaP521,
        }
    }

    /// PKIX `PUBLIC KEY` PEM on the curve of `alg`.
    pub(super) fn from_pem(alg: AsymmetricAlgorithm, text: &str) -> Result<Self, CryptoError> {
        let pem =
            isolate_pem(text).ok_or(CryptoError::InvalidKeyEncoding("not a PEM public key"))?;
        let wrong = || {
            CryptoError::InvalidKeyEncoding("not a PKIX ECDSA public key on the key type's curve")
        };
        Ok(match alg {
            AsymmetricAlgorithm::EcdsaP256 => Self::P256(
                p256::ecdsa::VerifyingKey::from_public_key_pem(pem).map_err(|_| wrong())?,
            ),
            AsymmetricAlgorithm::EcdsaP384 => Self::P384(
                p384::ecdsa::VerifyingKey::from_public_key_pem(pem).map_err(|_| wrong())?,
            ),
            AsymmetricAlgorithm::EcdsaP521 => Self::P521(
                p521::ecdsa::VerifyingKey::from_public_key_pem(pem).map_err(|_| wrong())?,
            ),
            _ => return Err(wrong()),
        })
    }

    /// SPKI DER on the curve of `alg`.
    pub(super) fn from_spki_der(alg: AsymmetricAlgorithm, der: &[u8]) -> Result<Self, CryptoError> {
        let wrong = || {
            CryptoError::InvalidKeyEncoding("not an SPKI ECDSA public key on the key type's curve")
        };
        Ok(match alg {
            AsymmetricAlgorithm::EcdsaP256 => Self::P256(
                p256::ecdsa::VerifyingKey::from_public_key_der(der).map_err(|_| wrong())?,
            ),
            AsymmetricAlgorithm::EcdsaP384 => Self::P384(
                p384::ecdsa::VerifyingKey::from_public_key_der(der).map_err(|_| wrong())?,
            ),
            AsymmetricAlgorithm::EcdsaP521 => Self::P521(
                p521::ecdsa::VerifyingKey::from_public_key_der(der).map_err(|_| wrong())?,
            ),
            _ => return Err(wrong()),
        })
    }

    /// SPKI DER (uncompressed point, named curve).
    pub(super) fn to_storage_bytes(&self) -> Vec<u8> {
        let der = each_curve!(self, Self, k, _c => k.to_public_key_der());
        // Encoding a valid point into SPKI cannot fail; an empty encoding would
        // be refused by `from_spki_der` rather than silently accepted.
        der.map(|doc| doc.as_bytes().to_vec()).unwrap_or_default()
    }

    /// PKIX PEM ending with exactly one `\n`.
    pub(super) fn to_pem_with_newline(&self) -> String {
        let pem = each_curve!(self, Self, k, _c => k.to_public_key_pem(LineEnding::LF));
        // As above: encoding a valid key cannot fail.
        let mut pem = pem.unwrap_or_default();
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
        let (order_bits, scalar_len) = curve_sizes(self.algorithm());
        let Some(fixed) = fixed_width_signature(signature, opts.marshaling, scalar_len)? else {
            return Ok(false);
        };
        let digest = message_representative(input, opts)?;
        let z = truncate_to_order(&digest, order_bits);
        each_curve!(self, Self, k, c => {
            // `from_slice` refuses r or s equal to zero or not below the order:
            // a well-formed signature that cannot verify.
            let Ok(signature) = c::ecdsa::Signature::from_slice(&fixed) else {
                return Ok(false);
            };
            Ok(k.verify_prehash(&z, &signature).is_ok())
        })
    }
}

/// Converts either encoding to fixed-width `r ‖ s` (each `scalar_len` bytes).
///
/// `Err(MalformedSignature)` for anything that is not a well-formed encoding:
/// BER or otherwise non-DER ASN.1, wrong tags, trailing data, a JWS signature
/// of the wrong length. `Ok(None)` for a well-formed DER signature whose
/// integers cannot be in range (negative, or wider than the order), which Go
/// reports as a failed verification.
fn fixed_width_signature(
    signature: &[u8],
    marshaling: Marshaling,
    scalar_len: usize,
) -> Result<Option<Vec<u8>>, CryptoError> {
    match marshaling {
        Marshaling::Jws => {
            if signature.len() != 2 * scalar_len {
                return Err(CryptoError::MalformedSignature);
            }
            Ok(Some(signature.to_vec()))
        }
        Marshaling::Asn1 => {
            let (tag, body, rest) =
                der::read_tlv(signature).ok_or(CryptoError::MalformedSignature)?;
            if tag != 0x30 || !rest.is_empty() {
                return Err(CryptoError::MalformedSignature);
            }
            let (tag_r, r, body) = der::read_tlv(body).ok_or(CryptoError::MalformedSignature)?;
            let (tag_s, s, body) = der::read_tlv(body).ok_or(CryptoError::MalformedSignature)?;
            if tag_r != 0x02 || tag_s != 0x02 || !body.is_empty() {
                return Err(CryptoError::MalformedSignature);
            }
            if !der::integer_is_minimal(r) || !der::integer_is_minimal(s) {
                return Err(CryptoError::MalformedSignature);
            }
            let mut fixed = vec![0u8; 2 * scalar_len];
            for (value, slot) in [r, s].into_iter().zip(fixed.chunks_mut(scalar_len)) {
                if value[0] & 0x80 != 0 {
                    return Ok(None); // negative
                }
                let magnitude = if value[0] == 0 { &value[1..] } else { value };
                if magnitude.len() > scalar_len {
                    return Ok(None);
                }
                slot[scalar_len - magnitude.len()..].copy_from_slice(magnitude);
            }
            Ok(Some(fixed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_leftmost_bits() {
        // Short digests are untouched.
        assert_eq!(
            truncate_to_order(&[0xff; 32], 521).as_ref(),
            &[0xff; 32][..]
        );
        assert_eq!(
            truncate_to_order(&[0xab; 32], 256).as_ref(),
            &[0xab; 32][..]
        );
        // P-256 with SHA-512: the first 32 bytes.
        let digest: Vec<u8> = (0..64).collect();
        assert_eq!(truncate_to_order(&digest, 256).as_ref(), &digest[..32]);
        // P-521 with 66+ bytes: the leftmost 521 bits, i.e. the first 66 bytes >> 7.
        let mut long = vec![0u8; 70];
        long[0] = 0x80;
        long[65] = 0x80;
        let z = truncate_to_order(&long, 521);
        assert_eq!(z.len(), 66);
        assert_eq!(z[0], 0x01);
        assert_eq!(z[65], 0x01);
        assert!(z[1..65].iter().all(|&b| b == 0));
    }

    #[test]
    fn der_signature_parsing() {
        let ok = [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02];
        let fixed = fixed_width_signature(&ok, Marshaling::Asn1, 32)
            .unwrap()
            .unwrap();
        assert_eq!(fixed[31], 1);
        assert_eq!(fixed[63], 2);
        // Trailing data, BER length, wrong tag: malformed.
        let mut trailing = ok.to_vec();
        trailing.push(0);
        assert_eq!(
            fixed_width_signature(&trailing, Marshaling::Asn1, 32),
            Err(CryptoError::MalformedSignature)
        );
        let ber = [0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02];
        assert_eq!(
            fixed_width_signature(&ber, Marshaling::Asn1, 32),
            Err(CryptoError::MalformedSignature)
        );
        let wrong_tag = [0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02];
        assert_eq!(
            fixed_width_signature(&wrong_tag, Marshaling::Asn1, 32),
            Err(CryptoError::MalformedSignature)
        );
        // Negative r: well-formed, cannot verify.
        let negative = [0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x02];
        assert_eq!(
            fixed_width_signature(&negative, Marshaling::Asn1, 32),
            Ok(None)
        );
        // JWS length must be exact.
        assert!(fixed_width_signature(&[0u8; 64], Marshaling::Jws, 32).is_ok());
        assert_eq!(
            fixed_width_signature(&[0u8; 63], Marshaling::Jws, 32),
            Err(CryptoError::MalformedSignature)
        );
    }
}
