//! Encrypt, decrypt, rewrap and datakey (reference §5.1–§5.4, §6).
//!
//! Single mode is the hot path: strings are borrowed from the request, the
//! plaintext is decoded once, and the reply is built directly. Batch items are
//! decoded one by one, so an item with bad base64 fails alone with Go's message.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::api::error::rest_reply;
use crate::engine::{DatakeyRequest, Engine, EngineError, RewrapRequest, UpsertOptions};
use crate::keyring::{DecryptRequest, EncryptRequest, Encrypted, KeyType, KeyringError};
use crate::service::ServiceError;

use super::super::fields::decode_base64;
use super::batch::{self, Item, ItemError, Required, Tally};
use super::{Call, Fail, Outcome, Reply, bad, internal, key_version, non_empty, object, text};

const KEY_NOT_FOUND: &str = "encryption key not found";
const MISSING_CIPHERTEXT: &str = "missing ciphertext to decrypt";
const NEGATIVE_VERSION: &str = "requested version for encryption is negative";

/// Decodes a base64 field that may be empty (`None` then).
fn decode_optional(text: &str) -> Result<Option<Vec<u8>>, String> {
    if text.is_empty() {
        Ok(None)
    } else {
        decode_base64(text).map(Some)
    }
}

/// OpenBao's wording (and internal classification) of bad `associated_data`
/// base64 on encrypt (reference §6, quirk).
fn aad_decode_message(index: usize, error: &str) -> String {
    format!("unable to get associated_data/additional_data from factory[{index}]: {error}")
}

/// An encrypt item's failure: `associated_data` on a non-AEAD key is worded
/// with the item index and, as in OpenBao, counted as internal.
fn encrypt_item_error(index: usize, error: KeyringError) -> ItemError {
    match error {
        KeyringError::AssociatedDataNotSupported(key_type) => ItemError::internal(format!(
            "'[{index}].associated_data' provided for non-AEAD cipher suite {key_type}"
        )),
        other => ItemError {
            message: other.to_string(),
            class: other.class(),
        },
    }
}

fn map_encrypt(error: &ServiceError) -> Reply {
    match error {
        ServiceError::Engine(EngineError::Keyring(KeyringError::AssociatedDataNotSupported(
            key_type,
        ))) => Reply::bad_request(format!(
            "'[0].associated_data' provided for non-AEAD cipher suite {key_type}"
        )),
        other => rest_reply(other, Some(KEY_NOT_FOUND)),
    }
}

/// What an encrypt upsert would create, or `None` when the key exists or
/// upsert is disabled (reference §5.1, §4.14).
fn upsert(
    engine: &Engine,
    name: &str,
    type_name: Option<&str>,
    convergent: bool,
    context_set: bool,
) -> Result<Option<UpsertOptions>, Fail> {
    if engine.has_key(name) || engine.keys_config().disable_upsert {
        return Ok(None);
    }
    if convergent && !context_set {
        return Err(bad(
            "convergent encryption requires derivation to be enabled, so context is required",
        ));
    }
    let type_name = type_name
        .filter(|t| !t.is_empty())
        .unwrap_or("aes256-gcm96");
    let key_type = match type_name.parse::<KeyType>() {
        Ok(
            t @ (KeyType::Aes128Gcm96
            | KeyType::Aes256Gcm96
            | KeyType::ChaCha20Poly1305
            | KeyType::XChaCha20Poly1305
            | KeyType::Rsa2048
            | KeyType::Rsa3072
            | KeyType::Rsa4096),
        ) => t,
        Ok(KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::EcdsaP521) => {
            return Err(bad(format!(
                "key type {type_name} not supported for this operation"
            )));
        }
        Ok(KeyType::Ed25519 | KeyType::Hmac) | Err(_) => {
            return Err(bad(format!("unknown key type {type_name}")));
        }
    };
    Ok(Some(UpsertOptions {
        key_type,
        convergent,
    }))
}

/// `{"ciphertext", "key_version"}` (+ `reference` in batches).
fn encrypted_json(encrypted: Encrypted, reference: Option<&str>) -> Value {
    let ciphertext = Value::String(encrypted.ciphertext);
    let version = Value::from(encrypted.key_version);
    match reference {
        None => object([("ciphertext", ciphertext), ("key_version", version)]),
        Some(r) => object([
            ("ciphertext", ciphertext),
            ("key_version", version),
            ("reference", r.into()),
        ]),
    }
}

/// `{"error", "reference"}`.
fn error_json(error: ItemError, reference: &str) -> Value {
    object([
        ("error", Value::String(error.message)),
        ("reference", reference.into()),
    ])
}

/// `POST encrypt/:name`.
pub(super) fn encrypt(call: &Call<'_>, name: &str) -> Reply {
    let fields = call.fields;
    call.run(map_encrypt, |engine| {
        let partial = fields.int("partial_failure_response_code")?;
        let version = fields.int("key_version")?;
        let convergent = fields.bool("convergent_encryption")?.unwrap_or(false);
        let type_name = text(&fields, "type")?;
        let type_name = type_name.as_deref();
        let Some(items) = batch::items(&fields, engine.options().max_batch_items)? else {
            let Some(plaintext) = text(&fields, "plaintext")? else {
                return Err(bad("missing plaintext to encrypt"));
            };
            let context = text(&fields, "context")?;
            let aad = text(&fields, "associated_data")?;
            let plaintext = Zeroizing::new(decode_base64(&plaintext).map_err(bad)?);
            let context = decode_optional(context.as_deref().unwrap_or("")).map_err(bad)?;
            let aad = decode_optional(aad.as_deref().unwrap_or(""))
                .map_err(|e| internal(aad_decode_message(0, &e)))?;
            let upsert = upsert(engine, name, type_name, convergent, context.is_some())?;
            let request = EncryptRequest {
                plaintext: &plaintext,
                context: context.as_deref(),
                associated_data: aad.as_deref(),
                key_version: key_version(version).map_err(|()| bad(NEGATIVE_VERSION))?,
            };
            let encrypted = engine.encrypt(name, &request, upsert.as_ref())?;
            return Ok(Reply::data(encrypted_json(encrypted, None)));
        };
        let raw = batch::decode_items(items, Required::Plaintext)?;
        batch::check_context(&raw)?;
        let prepared: Vec<Result<PreparedEncrypt, ItemError>> = raw
            .iter()
            .enumerate()
            .map(|(i, item)| PreparedEncrypt::new(i, item))
            .collect();
        let upsert = upsert(
            engine,
            name,
            type_name,
            convergent,
            !raw[0].context.is_empty(),
        )?;
        let requests: Vec<EncryptRequest<'_>> = prepared
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .map(PreparedEncrypt::request)
            .collect();
        let results = if requests.is_empty() {
            require_key(engine, name, upsert.is_some())?;
            Vec::new()
        } else {
            engine.encrypt_batch(name, &requests, upsert.as_ref())?
        };
        drop(requests);
        let mut results = results.into_iter();
        let mut tally = Tally::default();
        let mut out = Vec::with_capacity(raw.len());
        for (i, (item, prepared)) in raw.iter().zip(prepared).enumerate() {
            let outcome = prepared.and_then(|_| match results.next() {
                Some(Ok(encrypted)) => Ok(encrypted),
                Some(Err(error)) => Err(encrypt_item_error(i, error)),
                None => Err(ItemError::internal("internal error")),
            });
            tally.add(outcome.as_ref().err().map(|e| e.class));
            out.push(match outcome {
                Ok(encrypted) => encrypted_json(encrypted, Some(item.reference)),
                Err(error) => error_json(error, item.reference),
            });
        }
        let mut warnings = Vec::new();
        let status = tally.status(partial, &mut warnings);
        Ok(batch::reply(out, status, warnings))
    })
}

/// A missing key with no upsert is "encryption key not found", even when no
/// item reached the engine.
fn require_key(engine: &Engine, name: &str, upsert: bool) -> Result<(), Fail> {
    if upsert || engine.has_key(name) {
        Ok(())
    } else {
        Err(EngineError::KeyNotFound {
            name: name.to_owned(),
        }
        .into())
    }
}

/// An encrypt item with its base64 fields decoded.
struct PreparedEncrypt {
    plaintext: Zeroizing<Vec<u8>>,
    context: Option<Vec<u8>>,
    associated_data: Option<Vec<u8>>,
    key_version: Option<u32>,
}

impl PreparedEncrypt {
    fn new(index: usize, item: &Item<'_>) -> Result<Self, ItemError> {
        let plaintext = Zeroizing::new(decode_base64(item.value).map_err(ItemError::user)?);
        let context = decode_optional(item.context).map_err(ItemError::user)?;
        let associated_data = decode_optional(item.associated_data)
            .map_err(|e| ItemError::internal(aad_decode_message(index, &e)))?;
        let key_version =
            key_version(item.key_version).map_err(|()| ItemError::user(NEGATIVE_VERSION))?;
        Ok(Self {
            plaintext,
            context,
            associated_data,
            key_version,
        })
    }

    fn request(&self) -> EncryptRequest<'_> {
        EncryptRequest {
            plaintext: &self.plaintext,
            context: self.context.as_deref(),
            associated_data: self.associated_data.as_deref(),
            key_version: self.key_version,
        }
    }
}

/// A decrypt or rewrap item with its base64 fields decoded.
struct PreparedDecrypt<'a> {
    ciphertext: &'a str,
    context: Option<Vec<u8>>,
    associated_data: Option<Vec<u8>>,
    key_version: Option<u32>,
}

impl<'a> PreparedDecrypt<'a> {
    fn new(item: &Item<'a>) -> Result<Self, ItemError> {
        if item.value.is_empty() {
            return Err(ItemError::user(MISSING_CIPHERTEXT));
        }
        Ok(Self {
            ciphertext: item.value,
            context: decode_optional(item.context).map_err(ItemError::user)?,
            associated_data: decode_optional(item.associated_data).map_err(ItemError::user)?,
            key_version: key_version(item.key_version)
                .map_err(|()| ItemError::user(NEGATIVE_VERSION))?,
        })
    }

    fn decrypt_request(&self) -> DecryptRequest<'_> {
        DecryptRequest {
            ciphertext: self.ciphertext,
            context: self.context.as_deref(),
            associated_data: self.associated_data.as_deref(),
        }
    }

    fn rewrap_request(&self) -> RewrapRequest<'_> {
        RewrapRequest {
            ciphertext: self.ciphertext,
            context: self.context.as_deref(),
            key_version: self.key_version,
        }
    }
}

/// `POST decrypt/:name`.
pub(super) fn decrypt(call: &Call<'_>, name: &str) -> Reply {
    let fields = call.fields;
    call.run_default(Some(KEY_NOT_FOUND), |engine| {
        let partial = fields.int("partial_failure_response_code")?;
        let Some(items) = batch::items(&fields, engine.options().max_batch_items)? else {
            let Some(ciphertext) = non_empty(&fields, "ciphertext")? else {
                return Err(bad(MISSING_CIPHERTEXT));
            };
            let context = text(&fields, "context")?;
            let aad = text(&fields, "associated_data")?;
            let context = decode_optional(context.as_deref().unwrap_or("")).map_err(bad)?;
            let aad = decode_optional(aad.as_deref().unwrap_or("")).map_err(bad)?;
            let request = DecryptRequest {
                ciphertext: &ciphertext,
                context: context.as_deref(),
                associated_data: aad.as_deref(),
            };
            let plaintext = Zeroizing::new(engine.decrypt(name, &request)?);
            return Ok(Reply::data(object([(
                "plaintext",
                Value::String(STANDARD.encode(&*plaintext)),
            )])));
        };
        let raw = batch::decode_items(items, Required::Ciphertext)?;
        batch::check_context(&raw)?;
        let prepared: Vec<Result<PreparedDecrypt<'_>, ItemError>> =
            raw.iter().map(PreparedDecrypt::new).collect();
        let requests: Vec<DecryptRequest<'_>> = prepared
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .map(PreparedDecrypt::decrypt_request)
            .collect();
        let results = if requests.is_empty() {
            require_key(engine, name, false)?;
            Vec::new()
        } else {
            engine.decrypt_batch(name, &requests)?
        };
        drop(requests);
        let mut results = results.into_iter();
        let mut tally = Tally::default();
        let mut out = Vec::with_capacity(raw.len());
        for (item, prepared) in raw.iter().zip(prepared) {
            let outcome = prepared.and_then(|_| match results.next() {
                Some(Ok(plaintext)) => Ok(Zeroizing::new(plaintext)),
                Some(Err(error)) => Err(ItemError {
                    message: error.to_string(),
                    class: error.class(),
                }),
                None => Err(ItemError::internal("internal error")),
            });
            tally.add(outcome.as_ref().err().map(|e| e.class));
            let reference = Value::from(item.reference);
            out.push(match outcome {
                Ok(plaintext) => object([
                    ("plaintext", Value::String(STANDARD.encode(&*plaintext))),
                    ("reference", reference),
                ]),
                Err(error) => object([
                    ("error", Value::String(error.message)),
                    ("plaintext", Value::String(String::new())),
                    ("reference", reference),
                ]),
            });
        }
        let mut warnings = Vec::new();
        let status = tally.status(partial, &mut warnings);
        Ok(batch::reply(out, status, warnings))
    })
}

/// `POST rewrap/:name`: item errors never change the status (reference §5.3).
pub(super) fn rewrap(call: &Call<'_>, name: &str) -> Reply {
    let fields = call.fields;
    call.run_default(Some(KEY_NOT_FOUND), |engine| {
        let version = fields.int("key_version")?;
        let Some(items) = batch::items(&fields, engine.options().max_batch_items)? else {
            let Some(ciphertext) = non_empty(&fields, "ciphertext")? else {
                return Err(bad(MISSING_CIPHERTEXT));
            };
            let context = text(&fields, "context")?;
            let context = decode_optional(context.as_deref().unwrap_or("")).map_err(bad)?;
            let request = RewrapRequest {
                ciphertext: &ciphertext,
                context: context.as_deref(),
                key_version: key_version(version).map_err(|()| bad(NEGATIVE_VERSION))?,
            };
            let encrypted = engine.rewrap(name, &request)?;
            return Ok(Reply::data(encrypted_json(encrypted, None)));
        };
        let raw = batch::decode_items(items, Required::Ciphertext)?;
        batch::check_context(&raw)?;
        let prepared: Vec<Result<PreparedDecrypt<'_>, ItemError>> =
            raw.iter().map(PreparedDecrypt::new).collect();
        let requests: Vec<RewrapRequest<'_>> = prepared
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .map(PreparedDecrypt::rewrap_request)
            .collect();
        let results = if requests.is_empty() {
            require_key(engine, name, false)?;
            Vec::new()
        } else {
            engine.rewrap_batch(name, &requests)?
        };
        drop(requests);
        let mut results = results.into_iter();
        let mut out = Vec::with_capacity(raw.len());
        for (item, prepared) in raw.iter().zip(prepared) {
            let outcome = prepared.and_then(|_| match results.next() {
                Some(Ok(encrypted)) => Ok(encrypted),
                Some(Err(error)) => Err(ItemError {
                    message: error.to_string(),
                    class: error.class(),
                }),
                None => Err(ItemError::internal("internal error")),
            });
            out.push(match outcome {
                Ok(encrypted) => encrypted_json(encrypted, Some(item.reference)),
                Err(error) => error_json(error, item.reference),
            });
        }
        Ok(batch::reply(out, axum::http::StatusCode::OK, Vec::new()))
    })
}

/// `POST datakey/:plaintext|wrapped/:name`.
pub(super) fn datakey(call: &Call<'_>, kind: &str, name: &str) -> Reply {
    let fields = call.fields;
    call.run_default(Some(KEY_NOT_FOUND), |engine| -> Outcome {
        let with_plaintext = match kind {
            "plaintext" => true,
            "wrapped" => false,
            _ => return Err(bad("Invalid path, must be 'plaintext' or 'wrapped'")),
        };
        let context = text(&fields, "context")?;
        let context = decode_optional(context.as_deref().unwrap_or(""))
            .map_err(|_| bad("failed to base64-decode context"))?;
        let aad = text(&fields, "associated_data")?;
        let aad = decode_optional(aad.as_deref().unwrap_or("")).map_err(bad)?;
        let bits = fields.int("bits")?.unwrap_or(256);
        let bits = u32::try_from(bits).map_err(|_| bad("invalid bit length"))?;
        let request = DatakeyRequest {
            bits,
            context: context.as_deref(),
            associated_data: aad.as_deref(),
            key_version: key_version(fields.int("key_version")?)
                .map_err(|()| bad(NEGATIVE_VERSION))?,
        };
        let datakey = engine.datakey(name, &request)?;
        let ciphertext = Value::String(datakey.encrypted.ciphertext);
        let version = Value::from(datakey.encrypted.key_version);
        Ok(Reply::data(if with_plaintext {
            let plaintext = Value::String(STANDARD.encode(datakey.plaintext.expose_secret()));
            object([
                ("ciphertext", ciphertext),
                ("key_version", version),
                ("plaintext", plaintext),
            ])
        } else {
            object([("ciphertext", ciphertext), ("key_version", version)])
        }))
    })
}
