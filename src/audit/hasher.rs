//! The per-device HMAC that replaces every sensitive value in an entry.
//!
//! Vault's rule (reference §12): every string anywhere inside request and
//! response data, the client token and its accessor are written as
//! `hmac-sha256:<lowercase hex>` under the device's own random key. Numbers and
//! booleans pass through, map keys are not hashed. The same function answers
//! `sys/audit-hash`, so an operator can hash a known value and search for it.

use ring::hmac;
use serde_json::Value;

use crate::crypto::SecretBytes;

/// The prefix of every hashed value.
pub const HMAC_PREFIX: &str = "hmac-sha256:";

/// Length of `hmac-sha256:<64 hex digits>`.
pub const HASHED_LEN: usize = 12 + 64;

/// A JSON value that serializes with every string hashed (see [`Hasher::protected`]).
#[derive(Debug, Clone, Copy)]
pub struct Protected<'a> {
    value: &'a Value,
    hasher: &'a Hasher,
}

impl serde::Serialize for Protected<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.value {
            Value::String(text) if !self.hasher.raw => {
                let mut buf = [0u8; HASHED_LEN];
                serializer.serialize_str(self.hasher.hash_into(text, &mut buf))
            }
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&self.hasher.protected(item))?;
                }
                seq.end()
            }
            Value::Object(fields) => {
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (name, field) in fields {
                    map.serialize_entry(name, &self.hasher.protected(field))?;
                }
                map.end()
            }
            other => other.serialize(serializer),
        }
    }
}

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

    /// `value` with every string inside it hashed, for serialization without
    /// copying the tree.
    pub fn protected<'a>(&'a self, value: &'a Value) -> Protected<'a> {
        Protected {
            value,
            hasher: self,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_strings_only_and_keeps_keys() {
        let hasher = Hasher::new(&SecretBytes::from_slice(b"salt"), false);
        let value = serde_json::to_value(hasher.protected(&serde_json::json!({
            "plaintext": "aGVsbG8=",
            "key_version": 3,
            "valid": true,
            "batch_input": [{"plaintext": "eA=="}],
        })))
        .unwrap();
        assert_eq!(value["key_version"], 3);
        assert_eq!(value["valid"], true);
        assert_eq!(value["plaintext"], hasher.hash_str("aGVsbG8="));
        assert_eq!(
            value["batch_input"][0]["plaintext"],
            hasher.hash_str("eA==")
        );
        assert_ne!(hasher.hash_str("aGVsbG8="), hasher.hash_str("eA=="));
    }

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
    fn protected_hashes_nested_strings_in_place() {
        let hasher = Hasher::new(&SecretBytes::from_slice(b"salt"), false);
        let value = serde_json::json!({"a": ["x", 1, {"b": "y"}], "c": true});
        let expected = serde_json::json!({
            "a": [hasher.hash_str("x"), 1, {"b": hasher.hash_str("y")}],
            "c": true,
        });
        assert_eq!(
            serde_json::to_value(hasher.protected(&value)).unwrap(),
            expected
        );
    }

    #[test]
    fn raw_mode_passes_values_through() {
        let hasher = Hasher::new(&SecretBytes::from_slice(b"salt"), true);
        let value = serde_json::json!({"plaintext": "aGVsbG8="});
        let written = serde_json::to_value(hasher.protected(&value)).unwrap();
        assert_eq!(written["plaintext"], "aGVsbG8=");
        assert_eq!(hasher.protect("aGVsbG8="), "aGVsbG8=");
    }
}
