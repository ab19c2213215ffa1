//! `batch_input` (reference §6): decoding it the way Vault does (its failures
//! are 500 `failed to parse batch input: ...`), per-item errors, and the status
//! rule of encrypt/decrypt batches.

use std::borrow::Cow;

use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::engine::EngineError;
use crate::keyring::ErrorClass;

use super::super::Fields;
use super::{Fail, Reply, bad, internal};

/// Go's `%T` of a value Vault decoded from JSON (numbers are `json.Number`).
fn go_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "json.Number",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// The 500 Vault answers for a malformed `batch_input`.
fn parse_failure(detail: impl std::fmt::Display) -> Fail {
    internal(format!("failed to parse batch input: {detail}"))
}

/// mapstructure's rendering of a list of decoding errors.
fn decoding_errors(mut errors: Vec<String>) -> Fail {
    errors.iter_mut().for_each(|e| e.insert_str(0, "* "));
    errors.sort();
    parse_failure(format_args!(
        "{} error(s) decoding:\n\n{}",
        errors.len(),
        errors.join("\n")
    ))
}

/// The items of `batch_input`, or `None` in single mode (absent or `null`).
/// An empty list is a 400; a list longer than `max` a 413.
pub(super) fn items<'a>(fields: &Fields<'a>, max: usize) -> Result<Option<&'a [Value]>, Fail> {
    match fields.raw("batch_input") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if items.is_empty() => Err(bad("missing batch input to process")),
        Some(Value::Array(items)) if items.len() > max => Err(Reply::errors(
            StatusCode::PAYLOAD_TOO_LARGE,
            vec![
                EngineError::BatchTooLarge {
                    got: items.len(),
                    limit: max,
                }
                .to_string(),
            ],
        )
        .into()),
        Some(Value::Array(items)) => Ok(Some(items.as_slice())),
        Some(other) => Err(parse_failure(format_args!(
            "source data must be an array or slice, got {}",
            go_type(other)
        ))),
    }
}

/// Which field an encrypt/decrypt/rewrap item must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Required {
    /// Encrypt: `plaintext`.
    Plaintext,
    /// Decrypt and rewrap: `ciphertext`.
    Ciphertext,
}

/// One encrypt/decrypt/rewrap item, decoded like Vault's hand-written decoder:
/// strings must be strings (`null` is empty), `key_version` a number.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Item<'a> {
    /// `plaintext` or `ciphertext`, whichever the endpoint reads.
    pub(super) value: &'a str,
    /// `context`.
    pub(super) context: &'a str,
    /// `associated_data`.
    pub(super) associated_data: &'a str,
    /// `key_version`.
    pub(super) key_version: Option<i64>,
    /// `reference`, echoed back.
    pub(super) reference: &'a str,
}

/// Decodes encrypt/decrypt/rewrap items; any defect fails the whole request.
pub(super) fn decode_items(items: &[Value], required: Required) -> Result<Vec<Item<'_>>, Fail> {
    let (field, missing) = match required {
        Required::Plaintext => ("plaintext", "missing plaintext to encrypt"),
        Required::Ciphertext => ("ciphertext", "missing ciphertext to decrypt"),
    };
    let mut errors = Vec::new();
    let mut decoded = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(map) = item else {
            return Err(parse_failure(format_args!(
                "[{i}] expected a map, got '{}'",
                go_type(item)
            )));
        };
        let mut string = |name: &str| -> &str {
            match map.get(name) {
                None | Some(Value::Null) => "",
                Some(Value::String(s)) => s,
                Some(other) => {
                    errors.push(format!(
                        "'[{i}].{name}' expected type 'string', got unconvertible type '{}'",
                        go_type(other)
                    ));
                    ""
                }
            }
        };
        let value = string(field);
        let context = string("context");
        let associated_data = string("associated_data");
        let reference = string("reference");
        if !map.contains_key(field) {
            errors.push(format!("'[{i}].{field}' {missing}"));
        }
        let key_version = match map.get("key_version") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
            Some(Value::String(s)) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
            Some(other) => {
                errors.push(format!(
                    "'[{i}].key_version' expected type 'int', got unconvertible type '{}'",
                    go_type(other)
                ));
                None
            }
        };
        decoded.push(Item {
            value,
            context,
            associated_data,
            key_version,
            reference,
        });
    }
    if errors.is_empty() {
        Ok(decoded)
    } else {
        Err(decoding_errors(errors))
    }
}

/// Vault's rule: `context` set in every item or in none (whole request 400).
pub(super) fn check_context(items: &[Item<'_>]) -> Result<(), Fail> {
    let first = items.first().is_some_and(|i| !i.context.is_empty());
    if items.iter().any(|i| i.context.is_empty() == first) {
        return Err(bad(
            "context should be set either in all the request blocks or in none",
        ));
    }
    Ok(())
}

/// One sign/verify/HMAC item: Vault decodes these into `map[string]string`, so
/// numbers become their text and absent keys stay absent.
#[derive(Debug, Default, Clone)]
pub(super) struct StrItem<'a> {
    /// `input`.
    pub(super) input: Option<Cow<'a, str>>,
    /// `context`.
    pub(super) context: Option<Cow<'a, str>>,
    /// `signature`.
    pub(super) signature: Option<Cow<'a, str>>,
    /// `hmac`.
    pub(super) hmac: Option<Cow<'a, str>>,
    /// `reference`, echoed back (`""` when absent).
    pub(super) reference: Cow<'a, str>,
}

/// Decodes sign/verify/HMAC items (mapstructure into `map[string]string`).
pub(super) fn decode_str_items(items: &[Value]) -> Result<Vec<StrItem<'_>>, Fail> {
    let mut errors = Vec::new();
    let mut decoded = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(map) = item else {
            errors.push(format!("'[{i}]' expected a map, got '{}'", go_type(item)));
            continue;
        };
        check_str_values(i, map, &mut errors);
        let get = |name: &str| -> Option<Cow<'_, str>> {
            map.get(name).map(|v| match v {
                Value::String(s) => Cow::Borrowed(s.as_str()),
                Value::Number(n) => Cow::Owned(n.to_string()),
                _ => Cow::Borrowed(""),
            })
        };
        decoded.push(StrItem {
            input: get("input"),
            context: get("context"),
            signature: get("signature"),
            hmac: get("hmac"),
            reference: get("reference").unwrap_or(Cow::Borrowed("")),
        });
    }
    if errors.is_empty() {
        Ok(decoded)
    } else {
        Err(decoding_errors(errors))
    }
}

fn check_str_values(i: usize, map: &Map<String, Value>, errors: &mut Vec<String>) {
    for (key, value) in map {
        if matches!(value, Value::Bool(_) | Value::Array(_) | Value::Object(_)) {
            errors.push(format!(
                "'[{i}][{key}]' expected type 'string', got unconvertible type '{}'",
                go_type(value)
            ));
        }
    }
}

/// A failed item: its message and whether Vault counts it as the caller's
/// fault (400) or its own (500).
#[derive(Debug, Clone)]
pub(super) struct ItemError {
    /// The item's `error` text.
    pub(super) message: String,
    /// User or internal.
    pub(super) class: ErrorClass,
}

impl ItemError {
    /// A user error (bad base64, missing field, ...).
    pub(super) fn user(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            class: ErrorClass::User,
        }
    }

    /// An internal error.
    pub(super) fn internal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            class: ErrorClass::Internal,
        }
    }
}

/// Tallies of an encrypt/decrypt batch, for the status rule.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Tally {
    /// At least one item succeeded.
    pub(super) success: bool,
    /// At least one item failed with a user error.
    pub(super) user_error: bool,
    /// At least one item failed with an internal error.
    pub(super) internal_error: bool,
}

impl Tally {
    /// Counts one item's outcome.
    pub(super) fn add(&mut self, failure: Option<ErrorClass>) {
        match failure {
            None => self.success = true,
            Some(ErrorClass::User) => self.user_error = true,
            Some(ErrorClass::Internal) => self.internal_error = true,
        }
    }

    /// The encrypt/decrypt status (reference §6): 200 without failures, else 400
    /// if any user error, else 500; `partial_failure_response_code` replaces it
    /// when at least one item succeeded (1..=599, else a warning).
    pub(super) fn status(self, partial: Option<i64>, warnings: &mut Vec<String>) -> StatusCode {
        if !self.user_error && !self.internal_error {
            return StatusCode::OK;
        }
        let status = if self.user_error {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        match partial {
            Some(code) if self.success => {
                match u16::try_from(code)
                    .ok()
                    .filter(|c| (1..=599).contains(c))
                    .and_then(|c| StatusCode::from_u16(c).ok())
                {
                    Some(override_code) => override_code,
                    None => {
                        warnings.push(format!(
                            "invalid HTTP response code override from partial_failure_response_code, reverting to {}",
                            status.as_u16()
                        ));
                        status
                    }
                }
            }
            _ => status,
        }
    }
}

/// The batch envelope under `status` (the success envelope even for 4xx/5xx,
/// reference §6).
pub(super) fn reply(results: Vec<Value>, status: StatusCode, warnings: Vec<String>) -> Reply {
    let mut data = Map::new();
    data.insert("batch_results".to_owned(), Value::Array(results));
    Reply::Envelope {
        status,
        data: Some(Value::Object(data)),
        warnings,
        auth: None,
        inject: false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(fail: Fail) -> (StatusCode, Vec<String>) {
        match fail {
            Fail::Reply(reply) => match *reply {
                Reply::Errors(status, messages) => (status, messages),
                _ => panic!("expected an error reply"),
            },
            _ => panic!("expected an error reply"),
        }
    }

    #[test]
    fn malformed_batches_are_plain_500s() {
        let map = json!({"batch_input": "notarray"});
        let fields = Fields::new(map.as_object().unwrap());
        let (status, messages) = message(items(&fields, 10).unwrap_err());
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(messages[0].contains(
            "failed to parse batch input: source data must be an array or slice, got string"
        ));

        let items_value = json!([{"plaintext": "aGk="}, {"context": "eA=="}]);
        let (_, messages) = message(
            decode_items(items_value.as_array().unwrap(), Required::Plaintext).unwrap_err(),
        );
        assert!(
            messages[0].contains("'[1].plaintext' missing plaintext to encrypt"),
            "{messages:?}"
        );

        let items_value = json!([1, 2]);
        let (_, messages) = message(
            decode_items(items_value.as_array().unwrap(), Required::Plaintext).unwrap_err(),
        );
        assert!(
            messages[0].contains("[0] expected a map, got 'json.Number'"),
            "{messages:?}"
        );
    }

    #[test]
    fn status_rule() {
        let mut warnings = Vec::new();
        let mixed = Tally {
            success: true,
            user_error: true,
            internal_error: false,
        };
        assert_eq!(mixed.status(None, &mut warnings), StatusCode::BAD_REQUEST);
        assert_eq!(
            mixed.status(Some(207), &mut warnings),
            StatusCode::MULTI_STATUS
        );
        assert_eq!(
            mixed.status(Some(700), &mut warnings),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(warnings.len(), 1);
        let failed = Tally {
            success: false,
            user_error: false,
            internal_error: true,
        };
        assert_eq!(
            failed.status(Some(200), &mut warnings),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
