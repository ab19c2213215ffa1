//! Ed25519 (pure, RFC 8032) keys in Vault's layouts: 64-byte `seed ‖ public`
//! private keys and raw 32-byte public keys. No I/O, storage or JSON here.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use zeroize::Zeroizing;

use super::{der, isolate_pem};
use crate::crypto::{CryptoError, SecretBytes};

/// DER of the Ed25519 curve OIDs Vault accepts inside the alternative
/// "EC-style" PKCS#8 encoding: RFC 8410's 1.3.101.110 and NSS's
/// 1.3.6.1.4.1.11591.15.1 (draft-josefsson-pkix-newcurves).
const OID_RFC8410_X25519: &[u8] = &[0x2b, 0x65, 0x6e];
const OID_NSS_ED25519: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01];
/// DER contents of id-ecPublicKey (1.2.840.10045.2.1).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// An Ed25519 signing key (zeroized on drop by `ed25519-dalek`).
pub(super) struct Ed25519Private(SigningKey);

impl Ed25519Private {
    pub(super) fn generate() -> Self {
        Self(SigningKey::generate(&mut rand::rng()))
    }

    pub(super) fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// 64 bytes `seed ‖ public`; the public half must match the seed.
    pub(super) fn from_storage_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let pair: &[u8; 64] = bytes
            .try_into()
            .map_err(|_| CryptoError::InvalidKeyLength {
                algorithm: "ed25519",
                got: bytes.len(),
            })?;
        SigningKey::from_keypair_bytes(pair).map(Self).map_err(|_| {
            CryptoError::InvalidKeyEncoding("ed25519 public key does not match the seed")
        })
    }

    pub(super) fn to_storage_bytes(&self) -> SecretBytes {
        let pair = Zeroizing::new(self.0.to_keypair_bytes());
        SecretBytes::from_slice(pair.as_slice())
    }

    /// RFC 8410 PKCS#8 (v1, or v2 with a public key that must match), else the
    /// alternative EC-style encoding Vault also accepts.
    pub(super) fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        if let Ok(key) = SigningKey::from_pkcs8_der(der) {
            return Ok(Self(key));
        }
        parse_ec_style_pkcs8(der)
            .map(|seed| Self::from_seed(&seed))
            .ok_or(CryptoError::InvalidKeyEncoding(
                "not a PKCS#8 Ed25519 private key",
            ))
    }

    pub(super) fn public_key(&self) -> Ed25519Public {
        Ed25519Public(self.0.verifying_key())
    }

    pub(super) fn sign(&self, input: &[u8]) -> Vec<u8> {
        self.0.sign(input).to_bytes().to_vec()
    }

    pub(super) fn export_private(&self) -> SecretBytes {
        let pair = Zeroizing::new(self.0.to_keypair_bytes());
        SecretBytes::new(STANDARD.encode(pair.as_slice()).into_bytes())
    }
}

/// Parses Vault's alternative Ed25519 PKCS#8 form: a `PrivateKeyInfo` whose
/// algorithm is id-ecPublicKey with an Ed25519 curve OID as parameters, wrapping
/// a SEC 1 `ECPrivateKey { version, privateKey OCTET STRING (32-byte seed), ... }`;
/// or such an `ECPrivateKey` alone with the curve OID in its `[0]` field.
/// Returns the seed (zeroized on drop).
fn parse_ec_style_pkcs8(input: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    let (tag, outer, rest) = der::read_tlv(input)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (tag, version, after_version) = der::read_tlv(outer)?;
    if tag != 0x02 || !der::integer_is_minimal(version) {
        return None;
    }
    let (tag, second, after_second) = der::read_tlv(after_version)?;
    let (ec_private_key, curve_checked) = match tag {
        // PrivateKeyInfo: AlgorithmIdentifier, then the OCTET STRING.
        0x30 => {
            let (tag, oid, params) = der::read_tlv(second)?;
            if tag != 0x06 || oid != OID_EC_PUBLIC_KEY {
                return None;
            }
            let (tag, curve, extra) = der::read_tlv(params)?;
            if tag != 0x06 || !extra.is_empty() || !is_ed25519_curve(curve) {
                return None;
            }
            let (tag, wrapped, _attributes) = der::read_tlv(after_second)?;
            if tag != 0x04 {
                return None;
            }
            let (tag, inner, rest) = der::read_tlv(wrapped)?;
            if tag != 0x30 || !rest.is_empty() {
                return None;
            }
            (inner, true)
        }
        // A bare ECPrivateKey: `second` is already the privateKey OCTET STRING.
        0x04 => (outer, false),
        _ => return None,
    };
    // ECPrivateKey ::= SEQUENCE { version INTEGER, privateKey OCTET STRING,
    //                             [0] ECParameters OPTIONAL, [1] publicKey OPTIONAL }
    let (tag, _version, rest) = der::read_tlv(ec_private_key)?;
    if tag != 0x02 {
        return None;
    }
    let (tag, seed, mut rest) = der::read_tlv(rest)?;
    if tag != 0x04 {
        return None;
    }
    let mut curve_ok = curve_checked;
    while !rest.is_empty() {
        let (tag, contents, after) = der::read_tlv(rest)?;
        if tag == 0xa0 {
            let (tag, curve, extra) = der::read_tlv(contents)?;
            if tag != 0x06 || !extra.is_empty() {
                return None;
            }
            if !is_ed25519_curve(curve) {
                return None;
            }
            curve_ok = true;
        }
        rest = after;
    }
    if !curve_ok {
        return None;
    }
    let seed: [u8; 32] = seed.try_into().ok()?;
    Some(Zeroizing::new(seed))
}

fn is_ed25519_curve(oid: &[u8]) -> bool {
    oid == OID_RFC8410_X25519 || oid == OID_NSS_ED25519
}

/// An Ed25519 public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Ed25519Public(VerifyingKey);

impl Ed25519Public {
    /// A PKIX `PUBLIC KEY` PEM, or the standard base64 of the raw 32 bytes.
    pub(super) fn from_pem(text: &str) -> Result<Self, CryptoError> {
        if let Some(pem) = isolate_pem(text) {
            return VerifyingKey::from_public_key_pem(pem)
                .map(Self)
                .map_err(|_| CryptoError::InvalidKeyEncoding("not a PKIX Ed25519 public key"));
        }
        let raw = STANDARD.decode(text.trim()).map_err(|_| {
            CryptoError::InvalidKeyEncoding("neither a PEM nor a base64 Ed25519 public key")
        })?;
        Self::from_storage_bytes(&raw)
    }

    /// The raw 32-byte encoding.
    pub(super) fn from_storage_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let raw: &[u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::InvalidKeyLength {
                algorithm: "ed25519",
                got: bytes.len(),
            })?;
        VerifyingKey::from_bytes(raw)
            .map(Self)
            .map_err(|_| CryptoError::InvalidKeyEncoding("ed25519 public key is not a curve point"))
    }

    pub(super) fn to_storage_bytes(&self) -> Vec<u8> {
        self.0.to_bytes().to_vec()
    }

    pub(super) fn to_base64(&self) -> String {
        STANDARD.encode(self.0.as_bytes())
    }

    /// Cofactorless RFC 8032 verification with a canonical `S` (as Go's
    /// `crypto/ed25519`). A signature that is not 64 bytes is malformed.
    pub(super) fn verify(&self, input: &[u8], signature: &[u8]) -> Result<bool, CryptoError> {
        let bytes: &[u8; 64] = signature
            .try_into()
            .map_err(|_| CryptoError::MalformedSignature)?;
        let signature = Signature::from_bytes(bytes);
        // `Verifier::verify` is RFC 8032's cofactorless check: it rejects a
        // non-canonical `S` and compares the recomputed `R` encoding byte for
        // byte. (`verify_strict` would also reject small-order public keys, which
        // Go and Vault accept.)
        Ok(self.0.verify(input, &signature).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference §8.11: seed 0x64..=0x83.
    fn vault_seed() -> [u8; 32] {
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = 0x64 + i as u8;
        }
        seed
    }

    #[test]
    fn vault_vector_signature_and_public_key() {
        let key = Ed25519Private::from_seed(&vault_seed());
        assert_eq!(
            key.public_key().to_base64(),
            "C7w0aldmfDgBIL2cf9flHSxf3+o3zS9b9AWyxr9vLXg="
        );
        assert_eq!(
            STANDARD.encode(key.sign(b"hello world")),
            "FLy0Mj20Be8jBrhXiHRviLVWYSlSEole1k19sqZqIsijLP8OVrNN5ADdOpIk6Q0xWnJpd1gaRf+O1hHsZ1GzBw=="
        );
        assert_eq!(
            key.export_private().expose_secret(),
            b"ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoMLvDRqV2Z8OAEgvZx/1+UdLF/f6jfNL1v0BbLGv28teA=="
        );
    }

    #[test]
    fn storage_rejects_mismatched_public_half() {
        let key = Ed25519Private::from_seed(&vault_seed());
        let mut bytes = key.to_storage_bytes().expose_secret().to_vec();
        assert!(Ed25519Private::from_storage_bytes(&bytes).is_ok());
        bytes[40] ^= 1;
        assert!(Ed25519Private::from_storage_bytes(&bytes).is_err());
        assert!(Ed25519Private::from_storage_bytes(&bytes[..32]).is_err());
    }

    #[test]
    fn ec_style_pkcs8_is_accepted() {
        let seed = vault_seed();
        // PrivateKeyInfo { 0, { id-ecPublicKey, 1.3.101.110 }, OCTET STRING ECPrivateKey { 1, seed } }
        let mut ec_private_key = vec![0x30, 0x25, 0x02, 0x01, 0x01, 0x04, 0x20];
        ec_private_key.extend_from_slice(&seed);
        let mut der = vec![0x30, 0x3c, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x06, 0x07];
        der.extend_from_slice(OID_EC_PUBLIC_KEY);
        der.extend_from_slice(&[0x06, 0x03]);
        der.extend_from_slice(OID_RFC8410_X25519);
        der.extend_from_slice(&[0x04, 0x27]);
        der.extend_from_slice(&ec_private_key);
        assert_eq!(der.len(), 0x3e);
        let key = Ed25519Private::from_pkcs8_der(&der).expect("EC-style PKCS#8");
        assert_eq!(
            key.public_key().to_base64(),
            "C7w0aldmfDgBIL2cf9flHSxf3+o3zS9b9AWyxr9vLXg="
        );

        // A bare ECPrivateKey with the NSS OID in [0].
        let mut bare = vec![0x30, 0x32, 0x02, 0x01, 0x01, 0x04, 0x20];
        bare.extend_from_slice(&seed);
        bare.extend_from_slice(&[0xa0, 0x0b, 0x06, 0x09]);
        bare.extend_from_slice(OID_NSS_ED25519);
        let key = Ed25519Private::from_pkcs8_der(&bare).expect("bare ECPrivateKey");
        assert_eq!(
            key.public_key().to_base64(),
            "C7w0aldmfDgBIL2cf9flHSxf3+o3zS9b9AWyxr9vLXg="
        );

        // ...but not without a curve OID, nor with a P-256 one.
        let mut no_curve = vec![0x30, 0x25, 0x02, 0x01, 0x01, 0x04, 0x20];
        no_curve.extend_from_slice(&seed);
        assert!(Ed25519Private::from_pkcs8_der(&no_curve).is_err());
    }

    #[test]
    fn wrong_signature_length_is_malformed() {
        let key = Ed25519Private::from_seed(&vault_seed());
        let public = key.public_key();
        let sig = key.sign(b"m");
        assert_eq!(public.verify(b"m", &sig), Ok(true));
        assert_eq!(public.verify(b"n", &sig), Ok(false));
        assert_eq!(
            public.verify(b"m", &sig[..63]),
            Err(CryptoError::MalformedSignature)
        );
        let mut long = sig.clone();
        long.push(0);
        assert_eq!(
            public.verify(b"m", &long),
            Err(CryptoError::MalformedSignature)
        );
    }
}
