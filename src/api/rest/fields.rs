//! Typed, weakly-coerced access to request fields, as Vault's framework does
//! it (reference §1.3): `"true"`/`"1"`/`1` are booleans, `"256"` is an integer,
//! a number is a string, `null` is the zero value, durations take `"1h"`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

/// A field that could not be coerced to its type: a 400 naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Field validation failed: error converting input for field \"{field}\": {reason}")]
pub struct FieldError {
    /// The field.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Read-only view of request fields.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// Wraps a field map.
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Self { map }
    }

    /// The raw value, if present.
    pub fn raw(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name)
    }

    /// True when the field is present (even as `null`).
    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Names of the fields present, for unknown-parameter warnings.
    pub fn names(&self) -> impl Iterator<Item = &'a String> {
        self.map.keys()
    }

    fn error(name: &str, reason: impl Into<String>) -> FieldError {
        FieldError {
            field: name.to_owned(),
            reason: reason.into(),
        }
    }

    /// A string (numbers and booleans are rendered; `null` is `""`).
    pub fn str(&self, name: &str) -> Result<Option<String>, FieldError> {
        Ok(match self.map.get(name) {
            None => None,
            Some(value) => {
                Some(coerce_str(value).ok_or_else(|| Self::error(name, "expected a string"))?)
            }
        })
    }

    /// A string borrowed from the request when it is one (the hot path: no copy).
    pub fn str_ref(&self, name: &str) -> Result<Option<&'a str>, FieldError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(Value::Null) => Ok(Some("")),
            Some(_) => Err(Self::error(name, "expected a string")),
        }
    }

    /// An integer (`"256"` accepted; `null` is 0).
    pub fn int(&self, name: &str) -> Result<Option<i64>, FieldError> {
        Ok(match self.map.get(name) {
            None => None,
            Some(value) => Some(coerce_int(value).ok_or_else(|| {
                Self::error(name, format!("cannot parse '{}' as int", display(value)))
            })?),
        })
    }

    /// A boolean (`"true"`, `"1"`, `1` accepted; `null` is false).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, FieldError> {
        Ok(match self.map.get(name) {
            None => None,
            Some(value) => Some(coerce_bool(value).ok_or_else(|| {
                Self::error(
                    name,
                    "'' cannot parse value as 'bool': strconv.ParseBool: invalid syntax",
                )
            })?),
        })
    }

    /// A duration in seconds: an integer of seconds or `"90s"`, `"1h"`, `"24h"`,
    /// `"3600"`. `null` counts as absent.
    pub fn duration_secs(&self, name: &str) -> Result<Option<u64>, FieldError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => {
                let seconds = parse_duration(value).ok_or_else(|| {
                    Self::error(name, format!("invalid duration '{}'", display(value)))
                })?;
                if seconds < 0 {
                    return Err(Self::error(
                        name,
                        format!("cannot provide negative value '{seconds}'"),
                    ));
                }
                Ok(Some(seconds as u64))
            }
        }
    }

    /// Standard base64 (Go's strict decoder, which skips `\r` and `\n`).
    /// Returns the Go-style message on failure.
    pub fn base64(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        match self.str_ref(name) {
            Ok(None) => Ok(None),
            Ok(Some(text)) => decode_base64(text).map(Some),
            Err(error) => Err(error.to_string()),
        }
    }

    /// A list of strings: a JSON array, or a comma-separated string.
    pub fn str_list(&self, name: &str) -> Result<Option<Vec<String>>, FieldError> {
        Ok(match self.map.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| {
                        coerce_str(v).ok_or_else(|| Self::error(name, "expected a list of strings"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => return Err(Self::error(name, "expected a list of strings")),
        })
    }
}

/// Go's `base64.StdEncoding` with its `illegal base64 data at input byte N` message.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let cleaned: std::borrow::Cow<'_, str> = if text.contains(['\r', '\n']) {
        text.replace(['\r', '\n'], "").into()
    } else {
        text.into()
    };
    STANDARD.decode(cleaned.as_bytes()).map_err(|error| {
        let offset = match error {
            base64::DecodeError::InvalidByte(offset, _)
            | base64::DecodeError::InvalidLastSymbol(offset, _) => offset,
            base64::DecodeError::InvalidLength(len) => len / 4 * 4,
            // Go reports missing padding at the start of the short last quantum.
            base64::DecodeError::InvalidPadding
                if !cleaned.len().is_multiple_of(4) && !cleaned.ends_with('=') =>
            {
                cleaned.len() / 4 * 4
            }
            base64::DecodeError::InvalidPadding => cleaned.len().saturating_sub(1),
        };
        format!("illegal base64 data at input byte {offset}")
    })
}

/// Unix seconds as RFC 3339 (UTC, second precision).
pub fn rfc3339(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), to avoid a date crate for one format.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn coerce_str(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some(String::new()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn coerce_int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) if s.is_empty() => Some(0),
        Value::String(s) => s.trim().parse().ok(),
        Value::Null => Some(0),
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn coerce_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Null => Some(false),
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        Value::String(s) => match s.as_str() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" | "" => Some(false),
            _ => None,
        },
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn parse_duration(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                return Some(0);
            }
            if let Ok(seconds) = s.parse::<i64>() {
                return Some(seconds);
            }
            // Go-style: a sequence of <number><unit>, units h, m, s, ms; optional sign.
            let (negative, mut rest) = match s.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, s.strip_prefix('+').unwrap_or(s)),
            };
            let mut total_ms: i64 = 0;
            while !rest.is_empty() {
                let digits = rest
                    .find(|c: char| !c.is_ascii_digit() && c != '.')
                    .unwrap_or(rest.len());
                let number: f64 = rest[..digits].parse().ok()?;
                rest = &rest[digits..];
                let unit_len = rest
                    .find(|c: char| c.is_ascii_digit())
                    .unwrap_or(rest.len());
                let factor_ms = match &rest[..unit_len] {
                    "h" => 3_600_000.0,
                    "m" => 60_000.0,
                    "s" => 1_000.0,
                    "ms" => 1.0,
                    "d" => 86_400_000.0,
                    _ => return None,
                };
                rest = &rest[unit_len..];
                total_ms = total_ms.checked_add((number * factor_ms) as i64)?;
            }
            let seconds = total_ms / 1000;
            Some(if negative { -seconds } else { seconds })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn weak_typing_follows_vault() {
        let map = json!({"b": "true", "n": "128", "s": 5, "z": null, "d": "25h", "neg": "-5h", "bad": "notabool"});
        let fields = Fields::new(map.as_object().unwrap());
        assert_eq!(fields.bool("b").unwrap(), Some(true));
        assert_eq!(fields.int("n").unwrap(), Some(128));
        assert_eq!(fields.str("s").unwrap().as_deref(), Some("5"));
        assert_eq!(fields.str("z").unwrap().as_deref(), Some(""));
        assert_eq!(fields.duration_secs("d").unwrap(), Some(90_000));
        assert!(
            fields
                .duration_secs("neg")
                .unwrap_err()
                .to_string()
                .contains("negative")
        );
        assert!(fields.bool("bad").is_err());
        assert_eq!(fields.int("missing").unwrap(), None);
    }

    #[test]
    fn base64_errors_name_the_byte() {
        assert_eq!(
            decode_base64("aGVsbG8gd29ybGQ").unwrap_err(),
            "illegal base64 data at input byte 12"
        );
        assert_eq!(decode_base64("aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
        assert_eq!(decode_base64("aGVs\nbG8=").unwrap(), b"hello");
        assert!(decode_base64("@@").is_err());
    }
}
