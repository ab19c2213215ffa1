//! Batch RPCs and the `Bulk` stream. A batch is one authorization and one
//! engine call (which spreads large batches over every core); its results come
//! back in input order, each with either a value or the item's error message.
//! Failures of the batch as a whole (permission, missing key, mixed contexts,
//! too many items) fail the call.
//!
//! These handlers run on the blocking pool (see `super::blocking`); `bulk`
//! moves each incoming batch there too.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status, Streaming};
use zeroize::Zeroize;

use crate::api::error::grpc_item_error;
use crate::engine::{EngineError, RewrapRequest};
use crate::keyring::{
    DecryptRequest, EncryptRequest, Encrypted, HmacRequest, KeyringError, SignRequest,
    VerifyRequest,
};
use crate::service::{Service, TransitOp};

use super::transit::{BulkStream, hmac_algorithm, signature_options, upsert};
use super::{Caller, engine_status, optional, pb, run, token, version};

/// Answers of a `Bulk` stream that may wait for the client to read them. When
/// the queue is full the server stops reading batches, and HTTP/2 flow control
/// holds the client back.
pub const BULK_QUEUE_DEPTH: usize = 2;

fn ciphertext_result(
    outcome: Result<Encrypted, KeyringError>,
    reference: String,
) -> pb::CiphertextResult {
    let result = match outcome {
        Ok(encrypted) => pb::ciphertext_result::Result::Ok(pb::Ciphertext {
            ciphertext: encrypted.ciphertext,
            key_version: encrypted.key_version,
        }),
        Err(error) => pb::ciphertext_result::Result::Error(grpc_item_error(&error)),
    };
    pb::CiphertextResult {
        result: Some(result),
        reference,
    }
}

/// Encrypts `items` (their plaintexts are zeroized afterwards, whatever the
/// outcome).
fn encrypt_items(
    service: &Service,
    token: Caller<'_>,
    target: (&str, &str),
    upsert_type: &str,
    convergent: bool,
    items: &mut [pb::EncryptItem],
) -> Result<Vec<pb::CiphertextResult>, Status> {
    let (mount, key) = target;
    let outcome = run(service, token, mount, TransitOp::Encrypt(key), |engine| {
        let upsert = upsert(upsert_type, convergent)?;
        let requests: Vec<EncryptRequest<'_>> = items
            .iter()
            .map(|item| EncryptRequest {
                plaintext: &item.plaintext,
                context: optional(&item.context),
                associated_data: optional(&item.associated_data),
                key_version: version(item.key_version),
            })
            .collect();
        engine
            .encrypt_batch(key, &requests, Some(&upsert))
            .map_err(engine_status)
    });
    items.iter_mut().for_each(|item| item.plaintext.zeroize());
    Ok(outcome?
        .into_iter()
        .zip(items.iter_mut())
        .map(|(outcome, item)| ciphertext_result(outcome, std::mem::take(&mut item.reference)))
        .collect())
}

fn decrypt_items(
    service: &Service,
    token: Caller<'_>,
    target: (&str, &str),
    items: &mut [pb::DecryptItem],
) -> Result<Vec<pb::PlaintextResult>, Status> {
    let (mount, key) = target;
    let outcome = run(service, token, mount, TransitOp::Decrypt(key), |engine| {
        let requests: Vec<DecryptRequest<'_>> = items
            .iter()
            .map(|item| DecryptRequest {
                ciphertext: &item.ciphertext,
                context: optional(&item.context),
                associated_data: optional(&item.associated_data),
            })
            .collect();
        engine.decrypt_batch(key, &requests).map_err(engine_status)
    })?;
    Ok(outcome
        .into_iter()
        .zip(items.iter_mut())
        .map(|(outcome, item)| pb::PlaintextResult {
            result: Some(match outcome {
                Ok(plaintext) => pb::plaintext_result::Result::Plaintext(plaintext),
                Err(error) => pb::plaintext_result::Result::Error(grpc_item_error(&error)),
            }),
            reference: std::mem::take(&mut item.reference),
        })
        .collect())
}

fn rewrap_items(
    service: &Service,
    token: Caller<'_>,
    target: (&str, &str),
    items: &mut [pb::RewrapItem],
) -> Result<Vec<pb::CiphertextResult>, Status> {
    let (mount, key) = target;
    let outcome = run(service, token, mount, TransitOp::Rewrap(key), |engine| {
        let requests: Vec<RewrapRequest<'_>> = items
            .iter()
            .map(|item| RewrapRequest {
                ciphertext: &item.ciphertext,
                context: optional(&item.context),
                key_version: version(item.key_version),
            })
            .collect();
        engine.rewrap_batch(key, &requests).map_err(engine_status)
    })?;
    Ok(outcome
        .into_iter()
        .zip(items.iter_mut())
        .map(|(outcome, item)| ciphertext_result(outcome, std::mem::take(&mut item.reference)))
        .collect())
}

pub(super) fn encrypt(
    service: &Service,
    token: Caller<'_>,
    mut message: pb::EncryptBatchRequest,
) -> Result<pb::EncryptBatchResponse, Status> {
    let results = encrypt_items(
        service,
        token,
        (&message.mount, &message.key),
        &message.r#type,
        message.convergent_encryption,
        &mut message.items,
    )?;
    Ok(pb::EncryptBatchResponse { results })
}

pub(super) fn decrypt(
    service: &Service,
    token: Caller<'_>,
    mut message: pb::DecryptBatchRequest,
) -> Result<pb::DecryptBatchResponse, Status> {
    let results = decrypt_items(
        service,
        token,
        (&message.mount, &message.key),
        &mut message.items,
    )?;
    Ok(pb::DecryptBatchResponse { results })
}

pub(super) fn rewrap(
    service: &Service,
    token: Caller<'_>,
    mut message: pb::RewrapBatchRequest,
) -> Result<pb::RewrapBatchResponse, Status> {
    let results = rewrap_items(
        service,
        token,
        (&message.mount, &message.key),
        &mut message.items,
    )?;
    Ok(pb::RewrapBatchResponse { results })
}

/// Errors Vault raises before signing or verifying anything (wrong key type,
/// impossible options): the same for every item, so they fail the call.
fn request_level<T>(results: &[Result<T, KeyringError>]) -> Result<(), Status> {
    let first = results.iter().find_map(|r| {
        r.as_ref().err().filter(|e| {
            matches!(
                e,
                KeyringError::SigningNotSupported(_)
                    | KeyringError::VerificationNotSupported(_)
                    | KeyringError::HashNoneRequiresPkcs1Prehashed
            )
        })
    });
    match first {
        Some(error) => Err(engine_status(EngineError::Keyring(error.clone()))),
        None => Ok(()),
    }
}

pub(super) fn sign(
    service: &Service,
    token: Caller<'_>,
    message: pb::SignBatchRequest,
) -> Result<pb::SignBatchResponse, Status> {
    let key = &message.key;
    let outcome = run(
        service,
        token,
        &message.mount,
        TransitOp::Sign(key),
        |engine| {
            let options = signature_options(message.options.as_ref())?;
            let requests: Vec<SignRequest<'_>> = message
                .items
                .iter()
                .map(|item| SignRequest {
                    input: &item.input,
                    context: optional(&item.context),
                    key_version: version(message.key_version),
                    options,
                })
                .collect();
            let results = engine.sign_batch(key, &requests).map_err(engine_status)?;
            request_level(&results)?;
            Ok(results)
        },
    )?;
    let results = outcome
        .into_iter()
        .zip(message.items)
        .map(|(outcome, item)| pb::SignResult {
            result: Some(match outcome {
                Ok(signed) => pb::sign_result::Result::Ok(pb::SignResponse {
                    signature: signed.signature,
                    key_version: signed.key_version,
                    public_key: signed.public_key.unwrap_or_default(),
                }),
                Err(error) => pb::sign_result::Result::Error(grpc_item_error(&error)),
            }),
            reference: item.reference,
        })
        .collect();
    Ok(pb::SignBatchResponse { results })
}

pub(super) fn verify(
    service: &Service,
    token: Caller<'_>,
    message: pb::VerifyBatchRequest,
) -> Result<pb::VerifyBatchResponse, Status> {
    let key = &message.key;
    let outcome = run(
        service,
        token,
        &message.mount,
        TransitOp::Verify(key),
        |engine| {
            let options = signature_options(message.options.as_ref())?;
            let requests: Vec<VerifyRequest<'_>> = message
                .items
                .iter()
                .map(|item| VerifyRequest {
                    input: &item.input,
                    signature: &item.signature,
                    context: optional(&item.context),
                    options,
                })
                .collect();
            let results = engine.verify_batch(key, &requests).map_err(engine_status)?;
            request_level(&results)?;
            Ok(results)
        },
    )?;
    let results = outcome
        .into_iter()
        .zip(message.items)
        .map(|(outcome, item)| pb::VerifyResult {
            result: Some(match outcome {
                Ok(valid) => pb::verify_result::Result::Valid(valid),
                Err(error) => pb::verify_result::Result::Error(grpc_item_error(&error)),
            }),
            reference: item.reference,
        })
        .collect();
    Ok(pb::VerifyBatchResponse { results })
}

pub(super) fn hmac(
    service: &Service,
    token: Caller<'_>,
    message: pb::HmacBatchRequest,
) -> Result<pb::HmacBatchResponse, Status> {
    let key = &message.key;
    let outcome = run(
        service,
        token,
        &message.mount,
        TransitOp::Hmac(key),
        |engine| {
            let algorithm = hmac_algorithm(&message.algorithm)?;
            let requests: Vec<HmacRequest<'_>> = message
                .items
                .iter()
                .map(|item| HmacRequest {
                    input: &item.input,
                    key_version: version(message.key_version),
                    algorithm,
                })
                .collect();
            engine.hmac_batch(key, &requests).map_err(engine_status)
        },
    )?;
    let results = outcome
        .into_iter()
        .zip(message.items)
        .map(|(outcome, item)| pb::HmacResult {
            result: Some(match outcome {
                Ok(hmac) => pb::hmac_result::Result::Hmac(hmac),
                Err(error) => pb::hmac_result::Result::Error(grpc_item_error(&error)),
            }),
            reference: item.reference,
        })
        .collect();
    Ok(pb::HmacBatchResponse { results })
}

/// Serves one `Bulk` stream: each incoming batch is processed on the blocking
/// pool and its answer queued (at most [`BULK_QUEUE_DEPTH`] answers wait)
/// before the next batch is read. The first failed batch ends the stream with
/// its status; a client that goes away ends it too.
pub(super) fn bulk(
    service: Arc<Service>,
    request: Request<Streaming<pb::BulkRequest>>,
) -> BulkStream {
    let token = token(request.metadata()).map(str::to_owned);
    let remote = request.remote_addr();
    let mut inbound = request.into_inner();
    let (answers, queue) = mpsc::channel(BULK_QUEUE_DEPTH);
    tokio::spawn(async move {
        loop {
            let batch = match inbound.message().await {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(status) => {
                    let _ = answers.send(Err(status)).await;
                    break;
                }
            };
            // One audit record pair per batch, as for a batch RPC.
            let answer =
                super::run_blocking(&service, token.clone(), remote, batch, bulk_batch).await;
            let failed = answer.is_err();
            if answers.send(answer).await.is_err() || failed {
                break;
            }
        }
    });
    Box::pin(ReceiverStream::new(queue))
}

/// One `Bulk` batch, as the matching batch RPC would run it.
fn bulk_batch(
    service: &Service,
    token: Caller<'_>,
    batch: pb::BulkRequest,
) -> Result<pb::BulkResponse, Status> {
    let operation =
        pb::BulkOperation::try_from(batch.operation).unwrap_or(pb::BulkOperation::Unspecified);
    let target = (batch.mount.as_str(), batch.key.as_str());
    let items = batch.items;
    let results = match operation {
        pb::BulkOperation::Encrypt => {
            let mut items: Vec<pb::EncryptItem> = items
                .into_iter()
                .map(|item| pb::EncryptItem {
                    plaintext: item.plaintext,
                    context: item.context,
                    associated_data: item.associated_data,
                    key_version: item.key_version,
                    reference: item.reference,
                })
                .collect();
            encrypt_items(service, token, target, "", false, &mut items)?
                .into_iter()
                .map(bulk_ciphertext)
                .collect()
        }
        pb::BulkOperation::Decrypt => {
            let mut items: Vec<pb::DecryptItem> = items
                .into_iter()
                .map(|item| pb::DecryptItem {
                    ciphertext: item.ciphertext,
                    context: item.context,
                    associated_data: item.associated_data,
                    reference: item.reference,
                })
                .collect();
            decrypt_items(service, token, target, &mut items)?
                .into_iter()
                .map(|r| pb::BulkResult {
                    result: r.result.map(|result| match result {
                        pb::plaintext_result::Result::Plaintext(p) => {
                            pb::bulk_result::Result::Plaintext(p)
                        }
                        pb::plaintext_result::Result::Error(e) => pb::bulk_result::Result::Error(e),
                    }),
                    reference: r.reference,
                })
                .collect()
        }
        pb::BulkOperation::Rewrap => {
            let mut items: Vec<pb::RewrapItem> = items
                .into_iter()
                .map(|item| pb::RewrapItem {
                    ciphertext: item.ciphertext,
                    context: item.context,
                    key_version: item.key_version,
                    reference: item.reference,
                })
                .collect();
            rewrap_items(service, token, target, &mut items)?
                .into_iter()
                .map(bulk_ciphertext)
                .collect()
        }
        pb::BulkOperation::Unspecified => {
            return Err(Status::invalid_argument(
                "operation must be encrypt, decrypt or rewrap",
            ));
        }
    };
    Ok(pb::BulkResponse {
        sequence: batch.sequence,
        operation: operation.into(),
        results,
    })
}

fn bulk_ciphertext(result: pb::CiphertextResult) -> pb::BulkResult {
    pb::BulkResult {
        result: result.result.map(|result| match result {
            pb::ciphertext_result::Result::Ok(c) => pb::bulk_result::Result::Ciphertext(c),
            pb::ciphertext_result::Result::Error(e) => pb::bulk_result::Result::Error(e),
        }),
        reference: result.reference,
    }
}
