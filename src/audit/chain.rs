//! The hash chain and signed checkpoints that make a log tamper-evident.
//!
//! Every line of a device's log is one JSON object that ends with two fields
//! the writer adds: `"seq"` (0, 1, 2, ... per device, continuing across
//! rotated files and restarts) and `"prev_hash"`, the SHA-256 of the exact
//! bytes of the previous line (without its newline; 64 zeros for the first
//! line of a chain). Changing, removing, reordering or inserting a line breaks
//! a link. A `checkpoint` line, written at least every second while entries
//! arrive and on shutdown, carries an Ed25519 signature over the device path,
//! its own `seq` and `prev_hash` (which commits to every line before it), its
//! time, the number of entries since the previous checkpoint and whether it is
//! the final one; so rewriting the chain wholesale needs the signing key,
//! which lives behind the barrier.
//!
//! This module owns that format: the writer (`device`) seals lines with it and
//! the offline verifier (`verify`) checks them with it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use ring::digest;
use zeroize::Zeroizing;

use crate::crypto::SecretBytes;

/// The `prev_hash` of the first line of a chain.
pub const GENESIS: [u8; 32] = [0; 32];

/// The `type` of checkpoint lines.
pub const CHECKPOINT_TYPE: &str = "checkpoint";

/// Domain separation for checkpoint signatures.
const SIGNATURE_CONTEXT: &str = "cipherd-audit-checkpoint/v1";

/// SHA-256 of one line's bytes.
pub fn line_hash(line: &[u8]) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, line);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// `sha256:<hex>`, as lines show hashes.
pub fn hash_text(hash: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(hash))
}

/// Parses `sha256:<hex>`.
pub fn parse_hash_text(text: &str) -> Option<[u8; 32]> {
    let hex_part = text.strip_prefix("sha256:")?;
    let bytes = hex::decode(hex_part).ok()?;
    bytes.try_into().ok()
}

/// Where a device's chain stands: the next sequence number and the hash of
/// the last line written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// `seq` of the next line.
    pub next_seq: u64,
    /// Hash of the last line (`GENESIS` before the first).
    pub prev_hash: [u8; 32],
}

impl ChainHead {
    /// The head of a new chain.
    pub fn genesis() -> Self {
        Self {
            next_seq: 0,
            prev_hash: GENESIS,
        }
    }

    /// Appends the chain fields to `body`'s text, writes the line and its
    /// newline to `out`, and advances. Only the chain fields are hashed here:
    /// the body's bytes were hashed when it was made.
    pub fn seal_into(&mut self, body: &SealableBody, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(body.text.as_bytes());
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.next_seq).as_bytes());
        out.extend_from_slice(b",\"prev_hash\":\"sha256:");
        let mut hex_hash = [0u8; 64];
        // 32 bytes always fit 64 hex digits.
        let _ = hex::encode_to_slice(self.prev_hash, &mut hex_hash);
        out.extend_from_slice(&hex_hash);
        out.extend_from_slice(b"\"}");
        let mut digest = body.digest.clone();
        digest.update(&out[start + body.text.len()..]);
        self.prev_hash.copy_from_slice(digest.finish().as_ref());
        self.next_seq += 1;
        out.push(b'\n');
    }
}

/// An entry's text (a JSON object without its closing brace) with the SHA-256
/// of those bytes already under way.
///
/// A line's hash covers its body and then its chain fields, and only the
/// chain fields depend on the lines before it. Hashing the body when the
/// entry is made, on the request's own thread, leaves a block or two of the
/// hash for the writer's lock, where every device's lines queue up one after
/// another: about 1.8 µs per request of hashing leaves that section.
pub struct SealableBody {
    text: String,
    digest: digest::Context,
}

impl SealableBody {
    /// Hashes `text` now, ready to be sealed later.
    pub fn new(text: String) -> Self {
        let mut digest = digest::Context::new(&digest::SHA256);
        digest.update(text.as_bytes());
        Self { text, digest }
    }
}

impl std::fmt::Debug for SealableBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealableBody")
            .field("len", &self.text.len())
            .finish_non_exhaustive()
    }
}

/// What a checkpoint signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointClaim<'a> {
    /// The device path (`file/`).
    pub device: &'a str,
    /// The checkpoint line's own `seq`.
    pub seq: u64,
    /// The checkpoint line's `prev_hash`.
    pub prev_hash: [u8; 32],
    /// The checkpoint's `time` text.
    pub time: &'a str,
    /// Entries since the previous checkpoint.
    pub entries: u64,
    /// Written on shutdown: nothing follows in this chain until a restart.
    pub is_final: bool,
}

impl CheckpointClaim<'_> {
    fn message(&self) -> Vec<u8> {
        format!(
            "{SIGNATURE_CONTEXT}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.device,
            self.seq,
            hex::encode(self.prev_hash),
            self.time,
            self.entries,
            self.is_final
        )
        .into_bytes()
    }
}

/// The Ed25519 key that signs checkpoints (one per server, behind the barrier).
pub struct CheckpointSigner {
    key: SigningKey,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// A signer over a 32-byte seed.
    pub fn from_seed(seed: &SecretBytes) -> Option<Self> {
        let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(seed.expose_secret().try_into().ok()?);
        Some(Self {
            key: SigningKey::from_bytes(&bytes),
        })
    }

    /// The public key.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key in base64, as `sys/audit/signing-key` and `--public-key` take it.
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.public_key().as_bytes())
    }

    /// A short identifier of the public key, written in every checkpoint.
    pub fn key_id(&self) -> String {
        key_id(&self.public_key())
    }

    /// `ed25519:<base64 signature>` over `claim`.
    pub fn sign(&self, claim: &CheckpointClaim<'_>) -> String {
        let signature = self.key.sign(&claim.message());
        format!("ed25519:{}", STANDARD.encode(signature.to_bytes()))
    }
}

/// The key id of a public key: the first 8 bytes of its SHA-256, in hex.
pub fn key_id(public: &VerifyingKey) -> String {
    hex::encode(&line_hash(public.as_bytes())[..8])
}

/// Parses a public key given as base64 (or hex) of its 32 bytes.
pub fn parse_public_key(text: &str) -> Option<VerifyingKey> {
    let text = text.trim();
    let bytes = STANDARD
        .decode(text)
        .ok()
        .filter(|b| b.len() == 32)
        .or_else(|| hex::decode(text).ok())?;
    let bytes: [u8; 32] = bytes.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// Whether `signature` (`ed25519:<base64>`) is `public`'s signature over `claim`.
pub fn verify_checkpoint(
    public: &VerifyingKey,
    claim: &CheckpointClaim<'_>,
    signature: &str,
) -> bool {
    let Some(encoded) = signature.strip_prefix("ed25519:") else {
        return false;
    };
    let Ok(bytes) = STANDARD.decode(encoded) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(&bytes) else {
        return false;
    };
    public.verify(&claim.message(), &signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_links_each_line_to_the_previous_one() {
        let mut head = ChainHead::genesis();
        let mut out = Vec::new();
        head.seal_into(&SealableBody::new(r#"{"type":"request""#.into()), &mut out);
        head.seal_into(&SealableBody::new(r#"{"type":"response""#.into()), &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(first["seq"], 0);
        assert_eq!(first["prev_hash"], hash_text(&GENESIS));
        assert_eq!(second["seq"], 1);
        assert_eq!(
            second["prev_hash"],
            hash_text(&line_hash(lines[0].as_bytes()))
        );
        assert_eq!(head.next_seq, 2);
        assert_eq!(head.prev_hash, line_hash(lines[1].as_bytes()));
    }

    #[test]
    fn a_body_hashed_ahead_seals_to_the_hash_of_its_whole_line() {
        // Bodies on both sides of SHA-256's 64-byte block boundaries.
        let mut head = ChainHead::genesis();
        for len in 0..300 {
            let body = format!(r#"{{"type":"request","pad":"{}""#, "x".repeat(len));
            let mut out = Vec::new();
            head.seal_into(&SealableBody::new(body), &mut out);
            let line = out.strip_suffix(b"\n").unwrap();
            assert_eq!(head.prev_hash, line_hash(line), "body padding {len}");
        }
    }

    #[test]
    fn checkpoint_signatures_cover_every_field() {
        let signer = CheckpointSigner::from_seed(&SecretBytes::from_slice(&[7; 32])).unwrap();
        let claim = CheckpointClaim {
            device: "file/",
            seq: 10,
            prev_hash: [1; 32],
            time: "2026-01-01T00:00:00Z",
            entries: 9,
            is_final: false,
        };
        let signature = signer.sign(&claim);
        let public = parse_public_key(&signer.public_key_base64()).unwrap();
        assert!(verify_checkpoint(&public, &claim, &signature));
        for altered in [
            CheckpointClaim {
                seq: 11,
                ..claim.clone()
            },
            CheckpointClaim {
                prev_hash: [2; 32],
                ..claim.clone()
            },
            CheckpointClaim {
                entries: 8,
                ..claim.clone()
            },
            CheckpointClaim {
                is_final: true,
                ..claim.clone()
            },
            CheckpointClaim {
                device: "other/",
                ..claim.clone()
            },
        ] {
            assert!(!verify_checkpoint(&public, &altered, &signature));
        }
        let other = CheckpointSigner::from_seed(&SecretBytes::from_slice(&[8; 32])).unwrap();
        assert!(!verify_checkpoint(&other.public_key(), &claim, &signature));
        assert!(!verify_checkpoint(&public, &claim, "ed25519:AAAA"));
    }
}
