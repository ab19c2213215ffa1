//! Asymmetric keys: Ed25519, ECDSA (P-256/P-384/P-521) and RSA (2048/3072/4096).
//!
//! This module owns the key types of Transit's asymmetric key versions and every
//! byte-level rule that goes with them (reference §5.8, §5.9, §8.5, §8.6, §8.8,
//! §8.9):
//!
//! * key generation, and the storage encodings that round-trip a key version
//!   ([`PrivateKey::to_storage_bytes`], [`PublicKey::to_storage_bytes`]);
//! * BYOK import of PKCS#8 private keys and PKIX public keys, with the curve and
//!   modulus size checked against the key type;
//! * signing and verification with Vault's options (hash, `prehashed`,
//!   `marshaling_algorithm`, `signature_algorithm`, `salt_length`);
//! * RSA-OAEP encryption and decryption;
//! * the text Vault shows for keys in `read-key` and `export`, including its
//!   trailing-newline quirks.
//!
//! It does **not** do I/O, storage, JSON, base64 of signatures, the
//! `vault:v<N>:` prefix, key versioning or policy checks such as "`none` needs
//! `prehashed` and `pkcs1v15`": those belong to the keyring and engine layers.
//! Secret material lives in library types that zeroize on drop or in
//! [`SecretBytes`]; [`PrivateKey`] has no `Clone` and its `Debug` prints only
//! the algorithm.

mod ecdsa;
mod ed25519;
mod rsa;

use std::fmt;

use super::{CryptoError, HashAlgorithm, SecretBytes};

/// The asymmetric key types of Transit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AsymmetricAlgorithm {
    /// Ed25519 (pure, RFC 8032).
    Ed25519,
    /// ECDSA over NIST P-256.
    EcdsaP256,
    /// ECDSA over NIST P-384.
    EcdsaP384,
    /// ECDSA over NIST P-521.
    EcdsaP521,
    /// RSA with a 2048-bit modulus.
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    Rsa3072,
    /// RSA with a 4096-bit modulus.
    Rsa4096,
}

impl AsymmetricAlgorithm {
    /// Every algorithm, in a stable order.
    pub const ALL: [AsymmetricAlgorithm; 7] = [
        Self::Ed25519,
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::EcdsaP521,
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
    ];

    /// Vault's `name` field in read-key: "ed25519", "P-256", "P-384", "P-521",
    /// "rsa-2048", "rsa-3072", "rsa-4096".
    pub fn vault_key_name(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::EcdsaP256 => "P-256",
            Self::EcdsaP384 => "P-384",
            Self::EcdsaP521 => "P-521",
            Self::Rsa2048 => "rsa-2048",
            Self::Rsa3072 => "rsa-3072",
            Self::Rsa4096 => "rsa-4096",
        }
    }

    /// True for the three RSA sizes.
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096)
    }

    /// True for the three ECDSA curves.
    pub fn is_ecdsa(self) -> bool {
        matches!(self, Self::EcdsaP256 | Self::EcdsaP384 | Self::EcdsaP521)
    }
}

/// How ECDSA signatures are encoded (Vault's `marshaling_algorithm`). Ignored by
/// Ed25519 and RSA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Marshaling {
    /// DER `SEQUENCE { r INTEGER, s INTEGER }` (Vault's `asn1`, the default).
    #[default]
    Asn1,
    /// Fixed-width `r || s`, each left-padded to 32 / 48 / 66 bytes (Vault's `jws`).
    Jws,
}

/// The RSA signature scheme (Vault's `signature_algorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum RsaSignatureScheme {
    /// RSASSA-PSS with MGF1 of the same hash (the default).
    #[default]
    Pss,
    /// RSASSA-PKCS1-v1_5.
    Pkcs1v15,
}

/// The RSA-PSS salt length (Vault's `salt_length`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SaltLength {
    /// Signing: the largest salt that fits (`emLen - hLen - 2`); verifying:
    /// detect the salt length from the signature.
    #[default]
    Auto,
    /// The hash output length.
    Hash,
    /// Exactly this many bytes (must be at most `emLen - hLen - 2`).
    Bytes(usize),
}

impl SaltLength {
    /// Parses Vault's `salt_length` string: `auto`, `hash` (both case-insensitive,
    /// as Vault lowercases first) or a decimal integer, where `0` means auto and
    /// `-1` means hash (Go's sentinel values).
    ///
    /// The error texts are Vault's: `salt length neither 'auto', 'hash', nor an
    /// int: <s>` for a non-numeric value and `salt length is invalid: <n>` for an
    /// integer below -1. Whether a positive length fits the key is checked when
    /// signing or verifying ([`CryptoError::InvalidSaltLength`]).
    pub fn parse_vault(s: &str) -> Result<SaltLength, String> {
        let lower = s.to_ascii_lowercase();
        match lower.as_str() {
            "auto" => Ok(Self::Auto),
            "hash" => Ok(Self::Hash),
            _ => {
                let n: i64 = lower
                    .parse()
                    .map_err(|_| format!("salt length neither 'auto', 'hash', nor an int: {s}"))?;
                match n {
                    0 => Ok(Self::Auto),
                    -1 => Ok(Self::Hash),
                    n if n < -1 => Err(format!("salt length is invalid: {n}")),
                    // A positive i64 that does not fit usize can never fit a key either.
                    n => Ok(Self::Bytes(usize::try_from(n).unwrap_or(usize::MAX))),
                }
            }
        }
    }
}

/// Options for [`PrivateKey::sign`] and [`PublicKey::verify`], mirroring Vault's
/// sign/verify request fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignatureOptions {
    /// The hash applied to the input before signing (ECDSA, RSA). `None` is
    /// Vault's `hash_algorithm=none`: only valid for RSA PKCS#1 v1.5 with
    /// `prehashed`, where the input is signed without a DigestInfo prefix.
    /// Ignored by Ed25519.
    pub hash: Option<HashAlgorithm>,
    /// The input already is the digest (ECDSA, RSA). Ignored by Ed25519, which
    /// always signs the raw input (pure Ed25519).
    pub prehashed: bool,
    /// ECDSA signature encoding.
    pub marshaling: Marshaling,
    /// RSA signature scheme.
    pub rsa_scheme: RsaSignatureScheme,
    /// RSA-PSS salt length.
    pub salt_length: SaltLength,
}

impl Default for SignatureOptions {
    /// Vault's defaults: `sha2-256`, not prehashed, `asn1`, `pss`, `auto`.
    fn default() -> Self {
        Self {
            hash: Some(HashAlgorithm::Sha2_256),
            prehashed: false,
            marshaling: Marshaling::Asn1,
            rsa_scheme: RsaSignatureScheme::Pss,
            salt_length: SaltLength::Auto,
        }
    }
}

/// The value that gets signed for ECDSA and RSA: the input itself when
/// `prehashed`, else its digest under `opts.hash`.
fn message_representative(input: &[u8], opts: &SignatureOptions) -> Result<Vec<u8>, CryptoError> {
    if opts.prehashed {
        return Ok(input.to_vec());
    }
    match opts.hash {
        Some(hash) => Ok(hash.digest(input)),
        None => Err(CryptoError::UnsupportedHash("none")),
    }
}

/// An asymmetric private key (which always knows its public half).
///
/// Not `Clone` (use [`PrivateKey::to_storage_bytes`] and
/// [`PrivateKey::from_storage_bytes`] to copy one deliberately); `Debug` prints
/// only the algorithm. The wrapped library types zeroize their secrets on drop.
pub struct PrivateKey {
    inner: PrivateInner,
}

enum PrivateInner {
    Ed25519(ed25519::Ed25519Private),
    Ecdsa(ecdsa::EcdsaPrivate),
    Rsa(rsa::RsaPrivate),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm())
            .field("key", &"[redacted]")
            .finish()
    }
}

impl PrivateKey {
    /// A fresh key from the thread-local CSPRNG. RSA uses e = 65537; RSA-4096
    /// generation takes on the order of a second.
    pub fn generate(alg: AsymmetricAlgorithm) -> Result<Self, CryptoError> {
        let inner = match alg {
            AsymmetricAlgorithm::Ed25519 => {
                PrivateInner::Ed25519(ed25519::Ed25519Private::generate())
            }
            AsymmetricAlgorithm::EcdsaP256
            | AsymmetricAlgorithm::EcdsaP384
            | AsymmetricAlgorithm::EcdsaP521 => {
                PrivateInner::Ecdsa(ecdsa::EcdsaPrivate::generate(alg)?)
            }
            AsymmetricAlgorithm::Rsa2048
            | AsymmetricAlgorithm::Rsa3072
            | AsymmetricAlgorithm::Rsa4096 => PrivateInner::Rsa(rsa::RsaPrivate::generate(alg)?),
        };
        Ok(Self { inner })
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> AsymmetricAlgorithm {
        match &self.inner {
            PrivateInner::Ed25519(_) => AsymmetricAlgorithm::Ed25519,
            PrivateInner::Ecdsa(k) => k.algorithm(),
            PrivateInner::Rsa(k) => k.algorithm(),
        }
    }

    /// Storage encoding, round-tripping with [`PrivateKey::from_storage_bytes`]:
    /// Ed25519 → 64 bytes seed ‖ public (Vault's layout); ECDSA → the big-endian
    /// scalar, fixed width (32 / 48 / 66 bytes); RSA → PKCS#8 DER.
    pub fn to_storage_bytes(&self) -> SecretBytes {
        match &self.inner {
            PrivateInner::Ed25519(k) => k.to_storage_bytes(),
            PrivateInner::Ecdsa(k) => k.to_storage_bytes(),
            PrivateInner::Rsa(k) => k.to_storage_bytes(),
        }
    }

    /// Parses the encoding of [`PrivateKey::to_storage_bytes`].
    pub fn from_storage_bytes(alg: AsymmetricAlgorithm, bytes: &[u8]) -> Result<Self, CryptoError> {
        let inner = match alg {
            AsymmetricAlgorithm::Ed25519 => {
                PrivateInner::Ed25519(ed25519::Ed25519Private::from_storage_bytes(bytes)?)
            }
            AsymmetricAlgorithm::EcdsaP256
            | AsymmetricAlgorithm::EcdsaP384
            | AsymmetricAlgorithm::EcdsaP521 => {
                PrivateInner::Ecdsa(ecdsa::EcdsaPrivate::from_storage_bytes(alg, bytes)?)
            }
            AsymmetricAlgorithm::Rsa2048
            | AsymmetricAlgorithm::Rsa3072
            | AsymmetricAlgorithm::Rsa4096 => {
                PrivateInner::Rsa(rsa::RsaPrivate::from_pkcs8_der(alg, bytes)?)
            }
        };
        Ok(Self { inner })
    }

    /// BYOK import of a PKCS#8 `PrivateKeyInfo` (DER).
    ///
    /// * Ed25519: RFC 8410, v1 or v2 (`OneAsymmetricKey` with the public key,
    ///   which must match the seed). Also the alternative "EC-style" encoding
    ///   Vault accepts: `id-ecPublicKey` with an Ed25519 curve OID
    ///   (1.3.101.110 or NSS's 1.3.6.1.4.1.11591.15.1) around a SEC 1
    ///   `ECPrivateKey` holding the 32-byte seed.
    /// * ECDSA: the key must be on the curve of `alg`.
    /// * RSA: two-prime keys under `rsaEncryption` or the RSASSA-PSS OID (its
    ///   parameters are ignored, as Vault does); the modulus must be exactly
    ///   256 / 384 / 512 bytes for `alg`, else [`CryptoError::InvalidKeyLength`].
    pub fn from_pkcs8_der(alg: AsymmetricAlgorithm, der: &[u8]) -> Result<Self, CryptoError> {
        let inner = match alg {
            AsymmetricAlgorithm::Ed25519 => {
                PrivateInner::Ed25519(ed25519::Ed25519Private::from_pkcs8_der(der)?)
            }
            AsymmetricAlgorithm::EcdsaP256
            | AsymmetricAlgorithm::EcdsaP384
            | AsymmetricAlgorithm::EcdsaP521 => {
                PrivateInner::Ecdsa(ecdsa::EcdsaPrivate::from_pkcs8_der(alg, der)?)
            }
            AsymmetricAlgorithm::Rsa2048
            | AsymmetricAlgorithm::Rsa3072
            | AsymmetricAlgorithm::Rsa4096 => {
                PrivateInner::Rsa(rsa::RsaPrivate::from_pkcs8_der(alg, der)?)
            }
        };
        Ok(Self { inner })
    }

    /// Ed25519 from a 32-byte seed (Vault's derived Ed25519 keys).
    pub fn ed25519_from_seed(seed: &[u8; 32]) -> Self {
        Self {
            inner: PrivateInner::Ed25519(ed25519::Ed25519Private::from_seed(seed)),
        }
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let inner = match &self.inner {
            PrivateInner::Ed25519(k) => PublicInner::Ed25519(k.public_key()),
            PrivateInner::Ecdsa(k) => PublicInner::Ecdsa(k.public_key()),
            PrivateInner::Rsa(k) => PublicInner::Rsa(k.public_key()),
        };
        PublicKey { inner }
    }

    /// Signs `input` and returns the raw signature bytes: 64 bytes for Ed25519;
    /// DER (`Asn1`) or `r || s` (`Jws`) for ECDSA; modulus-length bytes for RSA.
    ///
    /// * Ed25519 signs the raw input (pure Ed25519) and ignores `hash` and
    ///   `prehashed`; it is deterministic.
    /// * ECDSA signs `hash(input)`, or `input` itself when `prehashed` (any
    ///   length is accepted, as Go and Vault do); the value is truncated to the
    ///   bit length of the group order per FIPS 186-5. Nonces are RFC 6979 with
    ///   32 fresh random bytes mixed in (hedged), so signatures are randomized.
    /// * RSA-PSS uses MGF1 with the same hash and the salt of
    ///   `opts.salt_length` (`Auto` = `emLen - hLen - 2`); RSA PKCS#1 v1.5 uses the
    ///   DigestInfo prefix of the hash, or none when `hash` is `None` and
    ///   `prehashed` (the raw input is signed). A prehashed RSA input whose length
    ///   is not the hash's output length → [`CryptoError::InvalidDigestLength`].
    pub fn sign(&self, input: &[u8], opts: &SignatureOptions) -> Result<Vec<u8>, CryptoError> {
        match &self.inner {
            PrivateInner::Ed25519(k) => Ok(k.sign(input)),
            PrivateInner::Ecdsa(k) => k.sign(input, opts),
            PrivateInner::Rsa(k) => k.sign(input, opts),
        }
    }

    /// Vault's `export/signing-key` / `export/encryption-key` text (reference
    /// §8.9), as UTF-8 bytes: RSA → PEM `RSA PRIVATE KEY` (PKCS#1) ending with
    /// `\n`; ECDSA → PEM `EC PRIVATE KEY` (SEC 1) without a trailing newline;
    /// Ed25519 → standard padded base64 of the 64 bytes seed ‖ public.
    pub fn export_private(&self) -> SecretBytes {
        match &self.inner {
            PrivateInner::Ed25519(k) => k.export_private(),
            PrivateInner::Ecdsa(k) => k.export_private(),
            PrivateInner::Rsa(k) => k.export_private(),
        }
    }

    /// RSAES-OAEP decryption with `hash` for both OAEP and MGF1 and an empty
    /// label. Every decryption failure (wrong length, bad padding, wrong
    /// hash, non-zero leading octet) is the single opaque
    /// [`CryptoError::RsaDecryptionFailed`]; a non-RSA key gives
    /// [`CryptoError::InvalidKeyEncoding`].
    pub fn rsa_decrypt_oaep(
        &self,
        hash: HashAlgorithm,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, CryptoError> {
        match &self.inner {
            PrivateInner::Rsa(k) => k.decrypt_oaep(hash, ciphertext),
            _ => Err(CryptoError::InvalidKeyEncoding("RSA-OAEP needs an RSA key")),
        }
    }
}

/// An asymmetric public key. Public keys are not secret, so it is `Clone` and
/// `Debug`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    inner: PublicInner,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PublicInner {
    Ed25519(ed25519::Ed25519Public),
    Ecdsa(ecdsa::EcdsaPublic),
    Rsa(rsa::RsaPublic),
}

impl PublicKey {
    /// The key's algorithm.
    pub fn algorithm(&self) -> AsymmetricAlgorithm {
        match &self.inner {
            PublicInner::Ed25519(_) => AsymmetricAlgorithm::Ed25519,
            PublicInner::Ecdsa(k) => k.algorithm(),
            PublicInner::Rsa(k) => k.algorithm(),
        }
    }

    /// Public-only import: a PKIX `PUBLIC KEY` PEM (text before the PEM block
    /// and surrounding whitespace are ignored). For Ed25519 the standard base64
    /// of the raw 32 bytes is accepted too. The curve or modulus size must
    /// match `alg`.
    pub fn from_pem(alg: AsymmetricAlgorithm, pem: &str) -> Result<Self, CryptoError> {
        let inner = match alg {
            AsymmetricAlgorithm::Ed25519 => {
                PublicInner::Ed25519(ed25519::Ed25519Public::from_pem(pem)?)
            }
            AsymmetricAlgorithm::EcdsaP256
            | AsymmetricAlgorithm::EcdsaP384
            | AsymmetricAlgorithm::EcdsaP521 => {
                PublicInner::Ecdsa(ecdsa::EcdsaPublic::from_pem(alg, pem)?)
            }
            AsymmetricAlgorithm::Rsa2048
            | AsymmetricAlgorithm::Rsa3072
            | AsymmetricAlgorithm::Rsa4096 => PublicInner::Rsa(rsa::RsaPublic::from_pem(alg, pem)?),
        };
        Ok(Self { inner })
    }

    /// Storage encoding: SPKI DER for ECDSA and RSA, the raw 32 bytes for
    /// Ed25519. Round-trips with [`PublicKey::from_storage_bytes`].
    pub fn to_storage_bytes(&self) -> Vec<u8> {
        match &self.inner {
            PublicInner::Ed25519(k) => k.to_storage_bytes(),
            PublicInner::Ecdsa(k) => k.to_storage_bytes(),
            PublicInner::Rsa(k) => k.to_storage_bytes(),
        }
    }

    /// Parses the encoding of [`PublicKey::to_storage_bytes`].
    pub fn from_storage_bytes(alg: AsymmetricAlgorithm, bytes: &[u8]) -> Result<Self, CryptoError> {
        let inner = match alg {
            AsymmetricAlgorithm::Ed25519 => {
                PublicInner::Ed25519(ed25519::Ed25519Public::from_storage_bytes(bytes)?)
            }
            AsymmetricAlgorithm::EcdsaP256
            | AsymmetricAlgorithm::EcdsaP384
            | AsymmetricAlgorithm::EcdsaP521 => {
                PublicInner::Ecdsa(ecdsa::EcdsaPublic::from_spki_der(alg, bytes)?)
            }
            AsymmetricAlgorithm::Rsa2048
            | AsymmetricAlgorithm::Rsa3072
            | AsymmetricAlgorithm::Rsa4096 => {
                PublicInner::Rsa(rsa::RsaPublic::from_spki_der(alg, bytes)?)
            }
        };
        Ok(Self { inner })
    }

    /// Read-key `public_key` (reference §4.2): ECDSA and RSA → PKIX PEM
    /// `PUBLIC KEY` with a trailing newline; Ed25519 → standard base64 of the
    /// raw 32 bytes.
    pub fn to_vault_string(&self) -> String {
        match &self.inner {
            PublicInner::Ed25519(k) => k.to_base64(),
            PublicInner::Ecdsa(k) => k.to_pem_with_newline(),
            PublicInner::Rsa(k) => k.to_pem_with_newline(),
        }
    }

    /// `export/public-key` (reference §8.9): ECDSA PEM without a trailing
    /// newline; RSA PEM ending with `\n`; Ed25519 base64 of the raw 32 bytes.
    pub fn export_string(&self) -> String {
        match &self.inner {
            PublicInner::Ed25519(k) => k.to_base64(),
            PublicInner::Ecdsa(k) => {
                let mut pem = k.to_pem_with_newline();
                pem.truncate(pem.trim_end_matches('\n').len());
                pem
            }
            PublicInner::Rsa(k) => k.to_pem_with_newline(),
        }
    }

    /// Verifies `signature` over `input` with the same option semantics as
    /// [`PrivateKey::sign`].
    ///
    /// Returns `Ok(true)` / `Ok(false)` for a well-formed signature that does /
    /// does not verify. Structurally malformed signatures — bad or non-DER
    /// ASN.1, trailing data, a JWS signature that is not exactly 2 × 32 / 48 / 66
    /// bytes, an Ed25519 signature that is not 64 bytes — give
    /// [`CryptoError::MalformedSignature`] (Vault: 400 "supplied signature is
    /// invalid"). Well-formed ECDSA signatures with `r` or `s` out of range are
    /// `Ok(false)`, as in Go. RSA signatures of the wrong length, and prehashed
    /// RSA digests of the wrong length, are `Ok(false)` (Vault reports
    /// `valid: false` for both). PSS with [`SaltLength::Auto`] detects the salt
    /// length; a fixed salt length that cannot fit the key is
    /// [`CryptoError::InvalidSaltLength`].
    pub fn verify(
        &self,
        input: &[u8],
        signature: &[u8],
        opts: &SignatureOptions,
    ) -> Result<bool, CryptoError> {
        match &self.inner {
            PublicInner::Ed25519(k) => k.verify(input, signature),
            PublicInner::Ecdsa(k) => k.verify(input, signature, opts),
            PublicInner::Rsa(k) => k.verify(input, signature, opts),
        }
    }

    /// RSAES-OAEP encryption with `hash` for both OAEP and MGF1 and an empty
    /// label. A plaintext longer than `k - 2·hLen - 2` bytes →
    /// [`CryptoError::MessageTooLong`]. Non-RSA keys →
    /// [`CryptoError::InvalidKeyEncoding`].
    pub fn rsa_encrypt_oaep(
        &self,
        hash: HashAlgorithm,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        match &self.inner {
            PublicInner::Rsa(k) => k.encrypt_oaep(hash, plaintext),
            _ => Err(CryptoError::InvalidKeyEncoding("RSA-OAEP needs an RSA key")),
        }
    }
}

/// Extracts the first PEM block of `text`, ignoring anything before its
/// `-----BEGIN` line and after its `-----END ...-----` line (like Go's
/// `pem.Decode`, which skips leading junk).
fn isolate_pem(text: &str) -> Option<&str> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start..];
    let end_marker = rest.find("-----END ")?;
    let after_end = &rest[end_marker + "-----END ".len()..];
    let close = after_end.find("-----")?;
    let end = start + end_marker + "-----END ".len() + close + "-----".len();
    Some(&text[start..end])
}

/// A minimal strict DER reader (definite, minimal lengths; single-byte tags),
/// used for ECDSA signatures and the alternative Ed25519 PKCS#8 encoding.
mod der {
    /// One TLV: `(tag, contents, rest)`. `None` when the encoding is not DER.
    pub(super) fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // multi-byte tag numbers never occur in what we parse
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            // 0x80 is BER's indefinite length; more than 4 length bytes is absurd here.
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (len_bytes, after) = rest.split_at(count);
            if len_bytes[0] == 0 {
                return None; // not minimal
            }
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 {
                return None; // short form was required
            }
            rest = after;
            len
        };
        if rest.len() < len {
            return None;
        }
        let (contents, rest) = rest.split_at(len);
        Some((tag, contents, rest))
    }

    /// Checks the DER rules for INTEGER contents (non-empty, minimal).
    pub(super) fn integer_is_minimal(contents: &[u8]) -> bool {
        match contents {
            [] => false,
            [_] => true,
            [0x00, next, ..] => next & 0x80 != 0,
            [0xff, next, ..] => next & 0x80 == 0,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_names() {
        let names: Vec<_> = AsymmetricAlgorithm::ALL
            .iter()
            .map(|a| a.vault_key_name())
            .collect();
        assert_eq!(
            names,
            [
                "ed25519", "P-256", "P-384", "P-521", "rsa-2048", "rsa-3072", "rsa-4096"
            ]
        );
    }

    #[test]
    fn salt_length_parsing() {
        assert_eq!(SaltLength::parse_vault("auto"), Ok(SaltLength::Auto));
        assert_eq!(SaltLength::parse_vault("AUTO"), Ok(SaltLength::Auto));
        assert_eq!(SaltLength::parse_vault("hash"), Ok(SaltLength::Hash));
        assert_eq!(SaltLength::parse_vault("Hash"), Ok(SaltLength::Hash));
        assert_eq!(SaltLength::parse_vault("0"), Ok(SaltLength::Auto));
        assert_eq!(SaltLength::parse_vault("-1"), Ok(SaltLength::Hash));
        assert_eq!(SaltLength::parse_vault("32"), Ok(SaltLength::Bytes(32)));
        assert_eq!(
            SaltLength::parse_vault("99999"),
            Ok(SaltLength::Bytes(99999))
        );
        assert_eq!(
            SaltLength::parse_vault("abc"),
            Err("salt length neither 'auto', 'hash', nor an int: abc".to_owned())
        );
        assert_eq!(
            SaltLength::parse_vault(" 1"),
            Err("salt length neither 'auto', 'hash', nor an int:  1".to_owned())
        );
        assert_eq!(
            SaltLength::parse_vault("-2"),
            Err("salt length is invalid: -2".to_owned())
        );
    }

    #[test]
    fn default_options_are_vaults() {
        let opts = SignatureOptions::default();
        assert_eq!(opts.hash, Some(HashAlgorithm::Sha2_256));
        assert!(!opts.prehashed);
        assert_eq!(opts.marshaling, Marshaling::Asn1);
        assert_eq!(opts.rsa_scheme, RsaSignatureScheme::Pss);
        assert_eq!(opts.salt_length, SaltLength::Auto);
    }

    #[test]
    fn private_key_debug_is_redacted() {
        let key = PrivateKey::ed25519_from_seed(&[7u8; 32]);
        let shown = format!("{key:?}");
        assert_eq!(
            shown,
            "PrivateKey { algorithm: Ed25519, key: \"[redacted]\" }"
        );
    }

    #[test]
    fn pem_isolation_skips_junk() {
        let text = "junk\n-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\ntrailer";
        assert_eq!(
            isolate_pem(text),
            Some("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
        );
        assert_eq!(isolate_pem("no pem here"), None);
    }

    #[test]
    fn der_reader_is_strict() {
        assert_eq!(
            der::read_tlv(&[0x02, 0x01, 0x05]),
            Some((0x02, &[0x05][..], &[][..]))
        );
        assert_eq!(der::read_tlv(&[0x30, 0x80, 0x00, 0x00]), None); // indefinite
        assert_eq!(der::read_tlv(&[0x30, 0x81, 0x05, 0, 0, 0, 0, 0]), None); // long form for short
        assert_eq!(der::read_tlv(&[0x30, 0x82, 0x00, 0x80]), None); // leading zero length byte
        assert_eq!(der::read_tlv(&[0x30, 0x03, 0x00]), None); // truncated
        assert!(der::integer_is_minimal(&[0x00, 0x80]));
        assert!(!der::integer_is_minimal(&[0x00, 0x7f]));
        assert!(!der::integer_is_minimal(&[0xff, 0x80]));
        assert!(!der::integer_is_minimal(&[]));
    }
}
