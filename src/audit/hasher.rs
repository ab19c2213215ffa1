//! The per-device HMAC that replaces every sensitive value in an entry.
//!
//! Vault's rule (reference §12): every string anywhere inside request and
//! response data, the client token and its accessor are written as
//! `hmac-sha256:<lowercase hex>` under the device's own random key. Numbers and
//! booleans pass through, map keys are not hashed. The same function answers
//! `sys/audit-hash`, so an operator can hash a known value and search for it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use ring::hmac;

use super::json;
use crate::crypto::SecretBytes;

/// The prefix of every hashed value.
pub const HMAC_PREFIX: &str = "hmac-sha256:";

/// Length of `hmac-sha256:<64 hex digits>`.
pub const HASHED_LEN: usize = 12 + 64;

/// HMAC-SHA256 under one device's salt.
pub struct Hasher {
    key: hmac::Key,
    /// Write values in clear (`log_raw`): for debugging only, never production.
    raw: bool,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("key", &"[redacted]")
            .field("raw", &self.raw)
            .finish()
    }
}

impl Hasher {
    /// A hasher over `salt` (the device's HMAC key); `raw` disables hashing.
    pub fn new(salt: &SecretBytes, raw: bool) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, salt.expose_secret()),
            raw,
        }
    }

    /// `hmac-sha256:<hex>` of `value`, exactly as sent (base64 text is hashed
    /// as text, not decoded).
    pub fn hash_str(&self, value: &str) -> String {
        let mut buf = [0u8; HASHED_LEN];
        self.hash_into(value, &mut buf).to_owned()
    }

    /// [`Hasher::hash_str`] into a stack buffer (no allocation per value).
    pub fn hash_into<'b>(&self, value: &str, buf: &'b mut [u8; HASHED_LEN]) -> &'b str {
        let tag = hmac::sign(&self.key, value.as_bytes());
        buf[..HMAC_PREFIX.len()].copy_from_slice(HMAC_PREFIX.as_bytes());
        // 32 bytes always fit 64 hex digits; the buffer is exactly that long.
        let _ = hex::encode_to_slice(tag.as_ref(), &mut buf[HMAC_PREFIX.len()..]);
        std::str::from_utf8(buf).unwrap_or(HMAC_PREFIX)
    }

    /// Appends `value` as the log shows it, as a JSON string literal: hashed
    /// (no escaping needed), or escaped in clear when the device logs raw.
    pub fn push_protected(&self, value: &str, out: &mut String) {
        if self.raw {
            json::push_str(out, value);
        } else {
            let mut buf = [0u8; HASHED_LEN];
            out.push('"');
            out.push_str(self.hash_into(value, &mut buf));
            out.push('"');
        }
    }

    /// A value as the log shows it: hashed unless the device logs raw.
    pub fn protect(&self, value: &str) -> String {
        if self.raw {
            value.to_owned()
        } else {
            self.hash_str(value)
        }
    }
}

/// How many tokens [`IdentityCache`] remembers before it starts over.
const IDENTITY_CACHE_LIMIT: usize = 4096;

/// A token and its accessor as one device writes them.
#[derive(Debug)]
pub struct Identity {
    /// The client token, protected.
    pub token: String,
    /// The accessor, protected unless the device sets `hmac_accessor=false`.
    pub accessor: String,
}

/// The protected token and accessor of recently seen tokens, by accessor.
///
/// Every entry shows the caller's token and accessor, hashed: two HMACs per
/// entry for values that are the same on every request of a client. A token
/// and its accessor are one-to-one (the accessor is what the token resolved
/// to), so the accessor keys the pair; only the hashes, which the log shows
/// anyway, are kept, never a token.
#[derive(Debug, Default)]
pub struct IdentityCache {
    by_accessor: RwLock<HashMap<String, Arc<Identity>>>,
}

impl IdentityCache {
    /// The pair for `accessor`, made by `protect` on first sight.
    pub fn get_or_protect(
        &self,
        accessor: &str,
        protect: impl FnOnce() -> Identity,
    ) -> Arc<Identity> {
        if let Some(known) = self.by_accessor.read().get(accessor) {
            return known.clone();
        }
        let identity = Arc::new(protect());
        let mut by_accessor = self.by_accessor.write();
        if by_accessor.len() >= IDENTITY_CACHE_LIMIT {
            by_accessor.clear();
        }
        by_accessor.insert(accessor.to_owned(), identity.clone());
        identity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let hasher = Hasher::new(&SecretBytes::from_slice(b"Jefe"), false);
        assert_eq!(
            hasher.hash_str("what do ya want for nothing?"),
            "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn identity_cache_protects_once_and_stays_bounded() {
        let cache = IdentityCache::default();
        let mut made = 0;
        for _ in 0..3 {
            let identity = cache.get_or_protect("acc", || {
                made += 1;
                Identity {
                    token: "t".into(),
                    accessor: "a".into(),
                }
            });
            assert_eq!(identity.token, "t");
        }
        assert_eq!(made, 1);
        for n in 0..IDENTITY_CACHE_LIMIT + 10 {
            cache.get_or_protect(&n.to_string(), || Identity {
                token: String::new(),
                accessor: String::new(),
            });
        }
        assert!(cache.by_accessor.read().len() <= IDENTITY_CACHE_LIMIT);
    }

    #[test]
    fn pushes_hashed_or_raw_json_strings() {
        let hashed = Hasher::new(&SecretBytes::from_slice(b"salt"), false);
        let mut out = String::new();
        hashed.push_protected("aGVsbG8=", &mut out);
        assert_eq!(out, format!("\"{}\"", hashed.hash_str("aGVsbG8=")));
        let raw = Hasher::new(&SecretBytes::from_slice(b"salt"), true);
        let mut out = String::new();
        raw.push_protected("a\"b", &mut out);
        assert_eq!(out, r#""a\"b""#);
        assert_eq!(raw.protect("aGVsbG8="), "aGVsbG8=");
        assert_ne!(hashed.protect("aGVsbG8="), "aGVsbG8=");
    }
}
