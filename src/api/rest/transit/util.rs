//! Keyless endpoints and mount-wide settings: `hash`, `random` (reference
//! §5.5–§5.6), `config/keys` (§4.14) and `cache-config` (§4.15).

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use parking_lot::Mutex;
use serde_json::Value;

use crate::crypto::HashAlgorithm;
use crate::engine::{self, KeysConfig};

use super::super::fields::decode_base64;
use super::{Call, Operation, Outcome, Reply, bad, non_empty, object, text};

/// `POST hash(/:algorithm)`.
pub(super) fn hash(call: &Call<'_>, url_algorithm: Option<&str>) -> Reply {
    let fields = call.fields;
    call.run_default(None, |_| -> Outcome {
        let Some(input) = text(&fields, "input")? else {
            return Err(bad("input missing"));
        };
        let format = non_empty(&fields, "format")?;
        let format = format.as_deref().unwrap_or("hex");
        let algorithm = match url_algorithm {
            Some(name) => std::borrow::Cow::Borrowed(name),
            None => {
                non_empty(&fields, "algorithm")?.unwrap_or(std::borrow::Cow::Borrowed("sha2-256"))
            }
        };
        let input = decode_base64(&input)
            .map_err(|e| bad(format!("unable to decode input as base64: {e}")))?;
        if !matches!(format, "hex" | "base64") {
            return Err(bad(format!(
                "unsupported encoding format {format}; must be \"hex\" or \"base64\""
            )));
        }
        // Vault's hash endpoint offers SHA-2 and SHA-3 only.
        let algorithm = match algorithm.parse::<HashAlgorithm>() {
            Ok(HashAlgorithm::Sha1) | Err(_) => {
                return Err(bad(format!("unsupported algorithm {algorithm}")));
            }
            Ok(algorithm) => algorithm,
        };
        let sum = engine::hash(algorithm, &input);
        let sum = if format == "hex" {
            hex::encode(sum)
        } else {
            STANDARD.encode(sum)
        };
        Ok(Reply::data(object([("sum", Value::String(sum))])))
    })
}

/// Go's `strconv.Atoi` error text.
fn atoi(text: &str) -> Result<i64, String> {
    text.parse::<i64>().map_err(|e| {
        let reason = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        format!("error parsing url-set byte count: strconv.Atoi: parsing {text:?}: {reason}")
    })
}

/// `POST random(/:source)(/:bytes)`: the URL forms follow Vault's parser (a
/// lone segment is a source if it names one, else a byte count).
pub(super) fn random(call: &Call<'_>, source: Option<&str>, url_bytes: Option<&str>) -> Reply {
    let fields = call.fields;
    call.run_default(None, |_| -> Outcome {
        let is_source = |s: &str| matches!(s, "" | "platform" | "seal" | "all");
        let body_bytes = || fields.int("bytes").map(|b| b.unwrap_or(32));
        let (source, count) = match (source, url_bytes) {
            (None, _) => ("platform", body_bytes()?),
            (Some(source), None) if is_source(source) => (source, body_bytes()?),
            (Some(count), None) => ("platform", atoi(count).map_err(bad)?),
            (Some(source), Some(count)) => (source, atoi(count).map_err(bad)?),
        };
        let format = non_empty(&fields, "format")?;
        let format = format.as_deref().unwrap_or("base64");
        let bytes = engine::random_bytes(count)?;
        if !matches!(format, "hex" | "base64") {
            return Err(bad(format!("unsupported encoding format {format:?}; must be \"hex\" or \"base64\"")));
        }
        let mut warnings = Vec::new();
        match source {
            "" | "platform" | "all" => {}
            "seal" => warnings.push("no seal/entropy augmentation available, using platform entropy source".to_owned()),
            other => {
                return Err(bad(format!("unsupported entropy source {other:?}; must be \"platform\" or \"seal\", or \"all\"")));
            }
        }
        let encoded = if format == "hex" { hex::encode(bytes) } else { STANDARD.encode(bytes) };
        Ok(Reply::data_with_warnings(Some(object([("random_bytes", Value::String(encoded))])), warnings))
    })
}

/// `GET|POST config/keys`.
pub(super) fn config_keys(call: &Call<'_>, operation: Operation) -> Reply {
    let fields = call.fields;
    call.run_default(None, |engine| -> Outcome {
        let config = if operation == Operation::Update {
            let config = KeysConfig {
                disable_upsert: fields.bool("disable_upsert")?.unwrap_or(false),
            };
            engine.set_keys_config(config)?;
            config
        } else {
            engine.keys_config()
        };
        Ok(Reply::data(object([(
            "disable_upsert",
            Value::Bool(config.disable_upsert),
        )])))
    })
}

/// Cache sizes by mount UUID. cipherd keeps every key of a mount in memory, so
/// the value is only accepted and echoed (reference §4.15); it is not persisted
/// and resets on restart.
static CACHE_SIZES: LazyLock<Mutex<HashMap<String, i64>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// `GET|POST cache-config`.
pub(super) fn cache_config(call: &Call<'_>, operation: Operation) -> Reply {
    let fields = call.fields;
    let mount = call.mount.info.uuid.clone();
    call.run_default(None, |_| -> Outcome {
        let size = if operation == Operation::Update {
            let size = fields.int("size")?.unwrap_or(0);
            if size != 0 && size < 10 {
                return Err(bad("size must be 0 or a value greater or equal to 10"));
            }
            CACHE_SIZES.lock().insert(mount, size);
            size
        } else {
            CACHE_SIZES.lock().get(&mount).copied().unwrap_or(0)
        };
        Ok(Reply::data(object([("size", Value::from(size))])))
    })
}
