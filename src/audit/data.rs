//! The data of a request or a response, as an audit entry shows it.
//!
//! Adapters hand the audit log their data in the form they already hold it:
//! REST a JSON object, gRPC a protobuf message (see
//! `api::grpc::audit_json`). [`AuditData`] writes it as JSON with every
//! string hashed under a device's [`Hasher`] (Vault's rule: numbers and
//! booleans pass through, map keys are not hashed) straight into the entry's
//! text, and reports the facts cipherd adds to the entry: the key versions the
//! data names and the item count of a batch.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::hasher::Hasher;
use super::json;

/// What an entry's `cipherd` object says about the data.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DataFacts {
    /// Key versions named: `vault:vN:` strings (ciphertexts, signatures,
    /// HMACs) and `key_version` numbers.
    pub key_versions: BTreeSet<u32>,
    /// The item count of a batch (`batch_input` over REST, `items` over gRPC).
    pub items: Option<usize>,
}

/// Request or response data that can be written into an audit entry.
pub trait AuditData: Sync {
    /// Appends the data as a JSON value with every string protected by
    /// `hasher`; adds what it names to `facts` when given (once per request,
    /// not once per device).
    fn write_protected(&self, hasher: &Hasher, out: &mut String, facts: Option<&mut DataFacts>);
}

impl AuditData for Value {
    fn write_protected(&self, hasher: &Hasher, out: &mut String, facts: Option<&mut DataFacts>) {
        if let Value::Object(fields) = self {
            return fields.write_protected(hasher, out, facts);
        }
        // Not an object: no batch, but it may still name versions.
        if let Some(facts) = facts {
            collect_versions(self, &mut facts.key_versions);
        }
        write_value(self, hasher, out);
    }
}

impl AuditData for Map<String, Value> {
    fn write_protected(&self, hasher: &Hasher, out: &mut String, facts: Option<&mut DataFacts>) {
        if let Some(facts) = facts {
            collect_map_versions(self, &mut facts.key_versions);
            if let Some(items) = map_batch_items(self) {
                facts.items = Some(items);
            }
        }
        write_map(self, hasher, out);
    }
}

fn write_value(value: &Value, hasher: &Hasher, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{number}");
        }
        Value::String(text) => hasher.push_protected(text, out),
        Value::Array(items) => {
            out.push('[');
            for (at, item) in items.iter().enumerate() {
                if at > 0 {
                    out.push(',');
                }
                write_value(item, hasher, out);
            }
            out.push(']');
        }
        Value::Object(fields) => write_map(fields, hasher, out),
    }
}

fn write_map(fields: &Map<String, Value>, hasher: &Hasher, out: &mut String) {
    out.push('{');
    for (at, (name, field)) in fields.iter().enumerate() {
        if at > 0 {
            out.push(',');
        }
        json::push_key(out, name);
        write_value(field, hasher, out);
    }
    out.push('}');
}

/// Adds the key versions `value` names: `vault:vN:` strings and
/// `key_version` numbers.
fn collect_versions(value: &Value, out: &mut BTreeSet<u32>) {
    match value {
        Value::String(text) => {
            if let Some(version) = vault_version(text) {
                out.insert(version);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_versions(item, out)),
        Value::Object(fields) => collect_map_versions(fields, out),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn collect_map_versions(fields: &Map<String, Value>, out: &mut BTreeSet<u32>) {
    for (name, field) in fields {
        if name == "key_version" {
            if let Some(version) = field.as_u64().and_then(|v| u32::try_from(v).ok())
                && version > 0
            {
                out.insert(version);
            }
        } else {
            collect_versions(field, out);
        }
    }
}

/// The version of a `vault:vN:...` string.
pub fn vault_version(text: &str) -> Option<u32> {
    let rest = text.strip_prefix("vault:v")?;
    let (digits, _) = rest.split_once(':')?;
    digits.parse().ok().filter(|&v| v > 0)
}

/// The item count of a batch request (`batch_input` over REST, `items` over gRPC).
fn map_batch_items(fields: &Map<String, Value>) -> Option<usize> {
    ["batch_input", "items"]
        .iter()
        .find_map(|name| fields.get(*name).and_then(Value::as_array).map(Vec::len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretBytes;

    fn written(value: &Value, hasher: &Hasher) -> (Value, DataFacts) {
        let mut out = String::new();
        let mut facts = DataFacts::default();
        value.write_protected(hasher, &mut out, Some(&mut facts));
        (serde_json::from_str(&out).expect("valid JSON"), facts)
    }

    #[test]
    fn hashes_strings_only_and_keeps_keys() {
        let hasher = Hasher::new(&SecretBytes::from_slice(b"salt"), false);
        let (value, _) = written(
            &serde_json::json!({
                "plaintext": "aGVsbG8=",
                "key_version": 3,
                "valid": true,
                "nothing": null,
                "ratio": -1.5,
                "batch_input": [{"plaintext": "eA=="}, "x", 7],
            }),
            &hasher,
        );
        assert_eq!(
            value,
            serde_json::json!({
                "plaintext": hasher.hash_str("aGVsbG8="),
                "key_version": 3,
                "valid": true,
                "nothing": null,
                "ratio": -1.5,
                "batch_input": [{"plaintext": hasher.hash_str("eA==")}, hasher.hash_str("x"), 7],
            })
        );
        assert_ne!(hasher.hash_str("aGVsbG8="), hasher.hash_str("eA=="));
    }

    #[test]
    fn raw_mode_passes_values_through_escaped() {
        let hasher = Hasher::new(&SecretBytes::from_slice(b"salt"), true);
        let data = serde_json::json!({"plaintext": "aGVsbG8=", "odd \"key\"": "line\nbreak"});
        let (value, _) = written(&data, &hasher);
        assert_eq!(value, data);
    }

    #[test]
    fn facts_name_versions_and_batch_items() {
        let hasher = Hasher::new(&SecretBytes::from_slice(b"salt"), false);
        let (_, facts) = written(
            &serde_json::json!({"batch_input": [{"ciphertext": "vault:v1:x"}, {"ciphertext": "vault:v12:y"}, {"ciphertext": "nope"}], "key_version": 4}),
            &hasher,
        );
        assert_eq!(
            facts.key_versions.into_iter().collect::<Vec<_>>(),
            vec![1, 4, 12]
        );
        assert_eq!(facts.items, Some(3));
        let map = serde_json::json!({"plaintext": "x", "key_version": 0});
        let mut facts = DataFacts::default();
        map.as_object()
            .unwrap()
            .write_protected(&hasher, &mut String::new(), Some(&mut facts));
        assert_eq!(facts, DataFacts::default());
    }
}
