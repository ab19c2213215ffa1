//! Sign, verify (signatures and HMACs) and HMAC (reference §5.7–§5.9, §6).
//! Item errors never change a batch's status here; request-level problems
//! (unknown key, wrong key type, bad options) fail the whole request.

use std::borrow::Cow;

use serde_json::Value;

use crate::api::error::rest_reply;
use crate::crypto::HashAlgorithm;
use crate::crypto::asymmetric::{Marshaling, RsaSignatureScheme, SaltLength, SignatureOptions};
use crate::engine::EngineError;
use crate::keyring::{HmacRequest, KeyringError, SignRequest, VerifyRequest};
use crate::service::ServiceError;

use super::super::Fields;
use super::super::fields::{FieldError, decode_base64};
use super::batch::{self, ItemError, StrItem};
use super::{Call, Fail, Outcome, Reply, bad, internal, key_version, non_empty, object, text};

const SIGNING_KEY_NOT_FOUND: &str = "signing key not found";
const VERIFY_KEY_NOT_FOUND: &str = "signature verification key not found";
const HMAC_KEY_NOT_FOUND: &str = "encryption key not found";

/// `input` decoding, worded as Vault does.
fn decode_input(input: &str) -> Result<Vec<u8>, String> {
    decode_base64(input).map_err(|e| format!("unable to decode input as base64: {e}"))
}

/// `context` decoding, worded as Vault does.
fn decode_context(context: Option<&str>) -> Result<Option<Vec<u8>>, &'static str> {
    match context {
        None | Some("") => Ok(None),
        Some(text) => decode_base64(text)
            .map(Some)
            .map_err(|_| "failed to base64-decode context"),
    }
}

/// Turns a missing key into the endpoint's 400.
fn key_error(message: &'static str) -> impl Fn(EngineError) -> Fail {
    move |error| match error {
        EngineError::KeyNotFound { .. } => bad(message),
        other => other.into(),
    }
}

/// The hash for sign/verify: URL segment, then `hash_algorithm`, then the
/// deprecated `algorithm`, then `sha2-256`.
fn hash_name<'a>(fields: &Fields<'a>, url: Option<&'a str>) -> Result<Cow<'a, str>, FieldError> {
    if let Some(name) = url {
        return Ok(Cow::Borrowed(name));
    }
    if let Some(name) = non_empty(fields, "hash_algorithm")? {
        return Ok(name);
    }
    Ok(non_empty(fields, "algorithm")?.unwrap_or(Cow::Borrowed("sha2-256")))
}

/// Signature options from the request (reference §5.8).
fn signature_options(fields: &Fields<'_>, url: Option<&str>) -> Result<SignatureOptions, Fail> {
    let name = hash_name(fields, url)?;
    let hash = match &*name {
        "none" => None,
        other => Some(
            other
                .parse::<HashAlgorithm>()
                .map_err(|_| bad(format!("invalid hash algorithm {other:?}")))?,
        ),
    };
    let marshaling = match non_empty(fields, "marshaling_algorithm")?.as_deref() {
        None | Some("asn1") => Marshaling::Asn1,
        Some("jws") => Marshaling::Jws,
        Some(other) => return Err(bad(format!("invalid marshaling type {other:?}"))),
    };
    let rsa_scheme = match non_empty(fields, "signature_algorithm")?.as_deref() {
        None | Some("pss") => RsaSignatureScheme::Pss,
        Some("pkcs1v15") => RsaSignatureScheme::Pkcs1v15,
        // OpenBao answers this with a plain error (500).
        Some(other) => {
            return Err(internal(format!(
                "unsupported rsa signature algorithm {other}"
            )));
        }
    };
    let salt_length = match non_empty(fields, "salt_length")? {
        None => SaltLength::Auto,
        Some(text) => SaltLength::parse_vault(&text).map_err(bad)?,
    };
    let prehashed = fields.bool("prehashed")?.unwrap_or(false);
    Ok(SignatureOptions {
        hash,
        prehashed,
        marshaling,
        rsa_scheme,
        salt_length,
    })
}

/// The HMAC hash by Vault name (`none` has no hash function).
fn hmac_algorithm(name: &str) -> Result<HashAlgorithm, Fail> {
    if name == "none" {
        return Err(bad("algorithm cannot be none"));
    }
    name.parse()
        .map_err(|_| bad(format!("unsupported algorithm {name}")))
}

/// Errors Vault raises before signing or verifying anything: they fail the
/// request (400), also in batch mode.
fn is_request_level(error: &KeyringError) -> bool {
    matches!(
        error,
        KeyringError::SigningNotSupported(_)
            | KeyringError::VerificationNotSupported(_)
            | KeyringError::HashNoneRequiresPkcs1Prehashed
    )
}

/// Single-mode sign: Vault returns the signer's errors as plain errors (500,
/// reference §5.8 quirk), except the checks it makes before signing.
fn map_sign(error: &ServiceError) -> Reply {
    match error {
        ServiceError::Engine(EngineError::Keyring(keyring)) if !is_request_level(keyring) => {
            Reply::internal(keyring)
        }
        other => rest_reply(other, Some(SIGNING_KEY_NOT_FOUND)),
    }
}

/// A batch's first request-level failure, if any, as a request error.
fn request_level<T>(results: &[Result<T, KeyringError>]) -> Result<(), Fail> {
    match results
        .iter()
        .find_map(|r| r.as_ref().err().filter(|e| is_request_level(e)))
    {
        Some(error) => Err(EngineError::Keyring(error.clone()).into()),
        None => Ok(()),
    }
}

/// A sign/verify item with its base64 fields decoded.
struct Prepared {
    input: Vec<u8>,
    context: Option<Vec<u8>>,
}

impl Prepared {
    fn new(item: &StrItem<'_>, missing_input: &str) -> Result<Self, ItemError> {
        let input = item
            .input
            .as_deref()
            .ok_or_else(|| ItemError::user(missing_input))?;
        let input = decode_input(input).map_err(ItemError::user)?;
        let context = decode_context(item.context.as_deref()).map_err(ItemError::user)?;
        Ok(Self { input, context })
    }
}

/// `POST sign/:name(/:hash_algorithm)`.
pub(super) fn sign(call: &Call<'_>, name: &str, url_algorithm: Option<&str>) -> Reply {
    let fields = call.fields;
    call.run(map_sign, |engine| -> Outcome {
        let version = fields.int("key_version")?;
        let options = signature_options(&fields, url_algorithm)?;
        let version = key_version(version);
        let Some(items) = batch::items(&fields, engine.options().max_batch_items)? else {
            let input = text(&fields, "input")?;
            let input = decode_input(input.as_deref().unwrap_or("")).map_err(bad)?;
            let context = text(&fields, "context")?;
            let context = decode_context(context.as_deref()).map_err(bad)?;
            let key_version =
                version.map_err(|()| internal("requested version for signing is negative"))?;
            let request = SignRequest {
                input: &input,
                context: context.as_deref(),
                key_version,
                options,
            };
            let signed = engine.sign(name, &request)?;
            let signature = Value::String(signed.signature);
            let version = Value::from(signed.key_version);
            return Ok(Reply::data(match signed.public_key {
                Some(public_key) => object([
                    ("key_version", version),
                    ("public_key", Value::String(public_key)),
                    ("signature", signature),
                ]),
                None => object([("key_version", version), ("signature", signature)]),
            }));
        };
        let raw = batch::decode_str_items(items)?;
        let prepared: Vec<Result<Prepared, ItemError>> = raw
            .iter()
            .map(|item| {
                let prepared = Prepared::new(item, "missing input")?;
                version
                    .map_err(|()| ItemError::user("requested version for signing is negative"))?;
                Ok(prepared)
            })
            .collect();
        let key_version = version.unwrap_or(None);
        let requests: Vec<SignRequest<'_>> = prepared
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .map(|p| SignRequest {
                input: &p.input,
                context: p.context.as_deref(),
                key_version,
                options,
            })
            .collect();
        let results = if requests.is_empty() {
            if !engine.has_key(name) {
                return Err(bad(SIGNING_KEY_NOT_FOUND));
            }
            Vec::new()
        } else {
            engine.sign_batch(name, &requests)?
        };
        drop(requests);
        request_level(&results)?;
        let mut results = results.into_iter();
        let mut out = Vec::with_capacity(raw.len());
        for (item, prepared) in raw.iter().zip(prepared) {
            let outcome = prepared.and_then(|_| match results.next() {
                Some(Ok(signed)) => Ok(signed),
                Some(Err(error)) => Err(ItemError::user(error.to_string())),
                None => Err(ItemError::internal("internal error")),
            });
            let reference = Value::String(item.reference.clone().into_owned());
            out.push(match outcome {
                Ok(signed) => {
                    let version = Value::from(signed.key_version);
                    let signature = Value::String(signed.signature);
                    match signed.public_key {
                        Some(public_key) => object([
                            ("key_version", version),
                            ("publickey", Value::String(public_key)),
                            ("reference", reference),
                            ("signature", signature),
                        ]),
                        None => object([
                            ("key_version", version),
                            ("reference", reference),
                            ("signature", signature),
                        ]),
                    }
                }
                Err(error) => object([
                    ("error", Value::String(error.message)),
                    ("key_version", Value::from(0)),
                    ("reference", reference),
                ]),
            });
        }
        Ok(batch::reply(out, axum::http::StatusCode::OK, Vec::new()))
    })
}

/// `POST verify/:name(/:hash_algorithm)`: a signature, or an HMAC.
pub(super) fn verify(call: &Call<'_>, name: &str, url_algorithm: Option<&str>) -> Reply {
    let fields = call.fields;
    call.run_default(None, |engine| -> Outcome {
        let Some(items) = batch::items(&fields, engine.options().max_batch_items)? else {
            let signature = text(&fields, "signature")?
                .filter(|_| !fields.raw("signature").is_some_and(Value::is_null));
            let hmac =
                text(&fields, "hmac")?.filter(|_| !fields.raw("hmac").is_some_and(Value::is_null));
            let input = text(&fields, "input")?;
            let input = decode_input(input.as_deref().unwrap_or("")).map_err(bad)?;
            // Vault verifies the signature when both are given.
            if let Some(signature) = signature {
                let options = signature_options(&fields, url_algorithm)?;
                let context = text(&fields, "context")?;
                let context = decode_context(context.as_deref()).map_err(bad)?;
                let request = VerifyRequest {
                    input: &input,
                    signature: &signature,
                    context: context.as_deref(),
                    options,
                };
                let valid = engine
                    .verify(name, &request)
                    .map_err(key_error(VERIFY_KEY_NOT_FOUND))?;
                return Ok(Reply::data(object([("valid", Value::Bool(valid))])));
            }
            let Some(hmac) = hmac else {
                return Err(bad(
                    "neither a 'signature' nor an 'hmac' were given to verify",
                ));
            };
            let algorithm = hmac_algorithm(&hash_name(&fields, url_algorithm)?)?;
            let valid = engine
                .verify_hmac(name, &input, &hmac, algorithm)
                .map_err(key_error(HMAC_KEY_NOT_FOUND))?;
            return Ok(Reply::data(object([("valid", Value::Bool(valid))])));
        };
        let raw = batch::decode_str_items(items)?;
        let signatures = raw.iter().filter(|i| i.signature.is_some()).count();
        let hmacs = raw
            .iter()
            .filter(|i| i.signature.is_none() && i.hmac.is_some())
            .count();
        let missing = raw.len() - signatures - hmacs;
        match (signatures > 0, hmacs > 0, missing > 0) {
            (true, true, _) => Err(bad(
                "elements of batch_input must all provide 'signature' or all provide 'hmac'",
            )),
            (true, false, true) => Err(bad("some elements of batch_input are missing 'signature'")),
            (false, true, true) => Err(bad("some elements of batch_input are missing 'hmac'")),
            (false, false, _) => Err(bad("no batch_input elements have 'signature' or 'hmac'")),
            (true, false, false) => verify_signatures(engine, name, &fields, url_algorithm, &raw),
            (false, true, false) => verify_hmacs(engine, name, &fields, url_algorithm, &raw),
        }
    })
}

fn verify_signatures(
    engine: &crate::engine::Engine,
    name: &str,
    fields: &Fields<'_>,
    url_algorithm: Option<&str>,
    raw: &[StrItem<'_>],
) -> Outcome {
    let options = signature_options(fields, url_algorithm)?;
    let prepared: Vec<Result<Prepared, ItemError>> = raw
        .iter()
        .map(|item| Prepared::new(item, "missing input"))
        .collect();
    let requests: Vec<VerifyRequest<'_>> = raw
        .iter()
        .zip(&prepared)
        .filter_map(|(item, p)| Some((item, p.as_ref().ok()?)))
        .map(|(item, p)| VerifyRequest {
            input: &p.input,
            signature: item.signature.as_deref().unwrap_or(""),
            context: p.context.as_deref(),
            options,
        })
        .collect();
    let results = if requests.is_empty() {
        if !engine.has_key(name) {
            return Err(bad(VERIFY_KEY_NOT_FOUND));
        }
        Vec::new()
    } else {
        engine
            .verify_batch(name, &requests)
            .map_err(key_error(VERIFY_KEY_NOT_FOUND))?
    };
    drop(requests);
    request_level(&results)?;
    let mut results = results.into_iter();
    let mut out = Vec::with_capacity(raw.len());
    for (item, prepared) in raw.iter().zip(prepared) {
        let outcome = prepared.and_then(|_| match results.next() {
            Some(Ok(valid)) => Ok(valid),
            Some(Err(error)) => Err(ItemError::user(error.to_string())),
            None => Err(ItemError::internal("internal error")),
        });
        let reference = Value::String(item.reference.clone().into_owned());
        out.push(match outcome {
            Ok(valid) => object([("reference", reference), ("valid", Value::Bool(valid))]),
            Err(error) => object([
                ("error", Value::String(error.message)),
                ("reference", reference),
                ("valid", Value::Bool(false)),
            ]),
        });
    }
    Ok(batch::reply(out, axum::http::StatusCode::OK, Vec::new()))
}

fn verify_hmacs(
    engine: &crate::engine::Engine,
    name: &str,
    fields: &Fields<'_>,
    url_algorithm: Option<&str>,
    raw: &[StrItem<'_>],
) -> Outcome {
    let algorithm = hmac_algorithm(&hash_name(fields, url_algorithm)?)?;
    let prepared: Vec<Result<Vec<u8>, ItemError>> = raw
        .iter()
        .map(|item| {
            let input = item
                .input
                .as_deref()
                .ok_or_else(|| ItemError::user("missing input"))?;
            decode_input(input).map_err(ItemError::user)
        })
        .collect();
    let pairs: Vec<(&[u8], &str)> = raw
        .iter()
        .zip(&prepared)
        .filter_map(|(item, p)| {
            Some((
                p.as_ref().ok()?.as_slice(),
                item.hmac.as_deref().unwrap_or(""),
            ))
        })
        .collect();
    let results = if pairs.is_empty() {
        if !engine.has_key(name) {
            return Err(bad(HMAC_KEY_NOT_FOUND));
        }
        Vec::new()
    } else {
        engine
            .verify_hmac_batch(name, &pairs, algorithm)
            .map_err(key_error(HMAC_KEY_NOT_FOUND))?
    };
    drop(pairs);
    let mut results = results.into_iter();
    let mut out = Vec::with_capacity(raw.len());
    for (item, prepared) in raw.iter().zip(prepared) {
        let outcome = prepared.and_then(|_| match results.next() {
            Some(Ok(valid)) => Ok(valid),
            Some(Err(error)) => Err(ItemError::user(error.to_string())),
            None => Err(ItemError::internal("internal error")),
        });
        let reference = Value::String(item.reference.clone().into_owned());
        // Vault omits `valid` when false here (Go `omitempty`, reference §5.9).
        out.push(match outcome {
            Ok(true) => object([("reference", reference), ("valid", Value::Bool(true))]),
            Ok(false) => object([("reference", reference)]),
            Err(error) => object([
                ("error", Value::String(error.message)),
                ("reference", reference),
            ]),
        });
    }
    Ok(batch::reply(out, axum::http::StatusCode::OK, Vec::new()))
}

/// `POST hmac/:name(/:algorithm)`.
pub(super) fn hmac(call: &Call<'_>, name: &str, url_algorithm: Option<&str>) -> Reply {
    let fields = call.fields;
    call.run_default(Some(HMAC_KEY_NOT_FOUND), |engine| -> Outcome {
        let version = fields.int("key_version")?;
        let algorithm_name = match url_algorithm {
            Some(name) => Cow::Borrowed(name),
            None => non_empty(&fields, "algorithm")?.unwrap_or(Cow::Borrowed("sha2-256")),
        };
        let algorithm = hmac_algorithm(&algorithm_name)?;
        let version = key_version(version)
            .map_err(|()| bad("cannot generate HMAC: version is too old (disallowed by policy)"))?;
        let Some(items) = batch::items(&fields, engine.options().max_batch_items)? else {
            let Some(input) = text(&fields, "input")? else {
                return Err(bad("missing input for HMAC"));
            };
            let input = decode_input(&input).map_err(bad)?;
            let hmac = engine.hmac(
                name,
                &HmacRequest {
                    input: &input,
                    key_version: version,
                    algorithm,
                },
            )?;
            return Ok(Reply::data(object([("hmac", Value::String(hmac))])));
        };
        let raw = batch::decode_str_items(items)?;
        let prepared: Vec<Result<Vec<u8>, ItemError>> = raw
            .iter()
            .map(|item| {
                let input = item
                    .input
                    .as_deref()
                    .ok_or_else(|| ItemError::user("missing input for HMAC"))?;
                decode_input(input).map_err(ItemError::user)
            })
            .collect();
        let requests: Vec<HmacRequest<'_>> = prepared
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .map(|input| HmacRequest {
                input,
                key_version: version,
                algorithm,
            })
            .collect();
        let results = if requests.is_empty() {
            if !engine.has_key(name) {
                return Err(bad(HMAC_KEY_NOT_FOUND));
            }
            Vec::new()
        } else {
            engine.hmac_batch(name, &requests)?
        };
        drop(requests);
        let mut results = results.into_iter();
        let mut out = Vec::with_capacity(raw.len());
        for (item, prepared) in raw.iter().zip(prepared) {
            let outcome = prepared.and_then(|_| match results.next() {
                Some(Ok(hmac)) => Ok(hmac),
                Some(Err(error)) => Err(ItemError::user(error.to_string())),
                None => Err(ItemError::internal("internal error")),
            });
            let reference = Value::String(item.reference.clone().into_owned());
            out.push(match outcome {
                Ok(hmac) => object([("hmac", Value::String(hmac)), ("reference", reference)]),
                Err(error) => object([
                    ("error", Value::String(error.message)),
                    ("reference", reference),
                ]),
            });
        }
        Ok(batch::reply(out, axum::http::StatusCode::OK, Vec::new()))
    })
}
