//! The `Transit` service: the trait implementation (which only picks where a
//! handler runs) and the unary crypto handlers. Key management is in `keys`,
//! batches and the bulk stream in `batch`.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use zeroize::Zeroizing;

use crate::crypto::HashAlgorithm;
use crate::crypto::asymmetric::{Marshaling, RsaSignatureScheme, SaltLength, SignatureOptions};
use crate::engine::{self, DatakeyRequest, RewrapRequest, UpsertOptions};
use crate::keyring::{
    DecryptRequest, EncryptRequest, HmacRequest, KeyType, SignRequest, VerifyRequest,
};
use crate::service::{Service, TransitOp};

use super::pb::transit_server::Transit;
use super::{Caller, batch, blocking, engine_status, inline, keys, optional, pb, run, version};

/// Random bytes returned when a request leaves `bytes` at 0.
const DEFAULT_RANDOM_BYTES: u32 = 32;

/// The `cipherd.v1.Transit` service.
#[derive(Debug, Clone)]
pub struct TransitApi {
    service: Arc<Service>,
}

impl TransitApi {
    /// The service over `service`.
    pub fn new(service: Arc<Service>) -> Self {
        Self { service }
    }
}

/// The answers of `Bulk`.
pub type BulkStream = Pin<Box<dyn Stream<Item = Result<pb::BulkResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Transit for TransitApi {
    async fn encrypt(
        &self,
        request: Request<pb::EncryptRequest>,
    ) -> Result<Response<pb::EncryptResponse>, Status> {
        // An upsert of an RSA key generates it first: seconds, not microseconds.
        if request.get_ref().r#type.starts_with("rsa") {
            blocking(&self.service, request, encrypt).await
        } else {
            inline(&self.service, request, encrypt).await
        }
    }

    async fn decrypt(
        &self,
        request: Request<pb::DecryptRequest>,
    ) -> Result<Response<pb::DecryptResponse>, Status> {
        inline(&self.service, request, decrypt).await
    }

    async fn rewrap(
        &self,
        request: Request<pb::RewrapRequest>,
    ) -> Result<Response<pb::RewrapResponse>, Status> {
        inline(&self.service, request, rewrap).await
    }

    async fn datakey(
        &self,
        request: Request<pb::DatakeyRequest>,
    ) -> Result<Response<pb::DatakeyResponse>, Status> {
        inline(&self.service, request, datakey).await
    }

    async fn sign(
        &self,
        request: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        // RSA-4096 signatures take milliseconds.
        blocking(&self.service, request, sign).await
    }

    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        inline(&self.service, request, verify).await
    }

    async fn hmac(
        &self,
        request: Request<pb::HmacRequest>,
    ) -> Result<Response<pb::HmacResponse>, Status> {
        inline(&self.service, request, hmac).await
    }

    async fn verify_hmac(
        &self,
        request: Request<pb::VerifyHmacRequest>,
    ) -> Result<Response<pb::VerifyHmacResponse>, Status> {
        inline(&self.service, request, verify_hmac).await
    }

    async fn hash(
        &self,
        request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        inline(&self.service, request, hash).await
    }

    async fn random(
        &self,
        request: Request<pb::RandomRequest>,
    ) -> Result<Response<pb::RandomResponse>, Status> {
        inline(&self.service, request, random).await
    }

    async fn create_key(
        &self,
        request: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::CreateKeyResponse>, Status> {
        blocking(&self.service, request, keys::create).await
    }

    async fn read_key(
        &self,
        request: Request<pb::ReadKeyRequest>,
    ) -> Result<Response<pb::ReadKeyResponse>, Status> {
        inline(&self.service, request, keys::read).await
    }

    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        inline(&self.service, request, keys::list).await
    }

    async fn rotate_key(
        &self,
        request: Request<pb::RotateKeyRequest>,
    ) -> Result<Response<pb::RotateKeyResponse>, Status> {
        blocking(&self.service, request, keys::rotate).await
    }

    async fn update_key_config(
        &self,
        request: Request<pb::UpdateKeyConfigRequest>,
    ) -> Result<Response<pb::UpdateKeyConfigResponse>, Status> {
        blocking(&self.service, request, keys::update_config).await
    }

    async fn trim_key(
        &self,
        request: Request<pb::TrimKeyRequest>,
    ) -> Result<Response<pb::TrimKeyResponse>, Status> {
        blocking(&self.service, request, keys::trim).await
    }

    async fn delete_key(
        &self,
        request: Request<pb::DeleteKeyRequest>,
    ) -> Result<Response<pb::DeleteKeyResponse>, Status> {
        blocking(&self.service, request, keys::delete).await
    }

    async fn encrypt_batch(
        &self,
        request: Request<pb::EncryptBatchRequest>,
    ) -> Result<Response<pb::EncryptBatchResponse>, Status> {
        blocking(&self.service, request, batch::encrypt).await
    }

    async fn decrypt_batch(
        &self,
        request: Request<pb::DecryptBatchRequest>,
    ) -> Result<Response<pb::DecryptBatchResponse>, Status> {
        blocking(&self.service, request, batch::decrypt).await
    }

    async fn rewrap_batch(
        &self,
        request: Request<pb::RewrapBatchRequest>,
    ) -> Result<Response<pb::RewrapBatchResponse>, Status> {
        blocking(&self.service, request, batch::rewrap).await
    }

    async fn sign_batch(
        &self,
        request: Request<pb::SignBatchRequest>,
    ) -> Result<Response<pb::SignBatchResponse>, Status> {
        blocking(&self.service, request, batch::sign).await
    }

    async fn verify_batch(
        &self,
        request: Request<pb::VerifyBatchRequest>,
    ) -> Result<Response<pb::VerifyBatchResponse>, Status> {
        blocking(&self.service, request, batch::verify).await
    }

    async fn hmac_batch(
        &self,
        request: Request<pb::HmacBatchRequest>,
    ) -> Result<Response<pb::HmacBatchResponse>, Status> {
        blocking(&self.service, request, batch::hmac).await
    }

    type BulkStream = BulkStream;

    async fn bulk(
        &self,
        request: Request<Streaming<pb::BulkRequest>>,
    ) -> Result<Response<Self::BulkStream>, Status> {
        Ok(Response::new(batch::bulk(self.service.clone(), request)))
    }
}

/// The upsert a request asks for: the key type (`""` = `aes256-gcm96`) and
/// convergence. The engine decides whether it applies (missing key, upsert
/// not disabled) and which types are allowed.
pub(super) fn upsert(type_name: &str, convergent: bool) -> Result<UpsertOptions, Status> {
    let key_type = match type_name {
        "" => KeyType::Aes256Gcm96,
        name => name
            .parse::<KeyType>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?,
    };
    Ok(UpsertOptions {
        key_type,
        convergent,
    })
}

fn encrypt(
    service: &Service,
    token: Caller<'_>,
    mut message: pb::EncryptRequest,
) -> Result<pb::EncryptResponse, Status> {
    let plaintext = Zeroizing::new(std::mem::take(&mut message.plaintext));
    let key = &message.key;
    run(
        service,
        token,
        &message.mount,
        TransitOp::Encrypt(key),
        |engine| {
            let upsert = upsert(&message.r#type, message.convergent_encryption)?;
            let request = EncryptRequest {
                plaintext: &plaintext,
                context: optional(&message.context),
                associated_data: optional(&message.associated_data),
                key_version: version(message.key_version),
            };
            let encrypted = engine
                .encrypt(key, &request, Some(&upsert))
                .map_err(engine_status)?;
            Ok(pb::EncryptResponse {
                ciphertext: encrypted.ciphertext,
                key_version: encrypted.key_version,
            })
        },
    )
}

fn decrypt(
    service: &Service,
    token: Caller<'_>,
    message: pb::DecryptRequest,
) -> Result<pb::DecryptResponse, Status> {
    let key = &message.key;
    run(
        service,
        token,
        &message.mount,
        TransitOp::Decrypt(key),
        |engine| {
            let request = DecryptRequest {
                ciphertext: &message.ciphertext,
                context: optional(&message.context),
                associated_data: optional(&message.associated_data),
            };
            let plaintext = engine.decrypt(key, &request).map_err(engine_status)?;
            Ok(pb::DecryptResponse { plaintext })
        },
    )
}

fn rewrap(
    service: &Service,
    token: Caller<'_>,
    message: pb::RewrapRequest,
) -> Result<pb::RewrapResponse, Status> {
    let key = &message.key;
    run(
        service,
        token,
        &message.mount,
        TransitOp::Rewrap(key),
        |engine| {
            let request = RewrapRequest {
                ciphertext: &message.ciphertext,
                context: optional(&message.context),
                key_version: version(message.key_version),
            };
            let encrypted = engine.rewrap(key, &request).map_err(engine_status)?;
            Ok(pb::RewrapResponse {
                ciphertext: encrypted.ciphertext,
                key_version: encrypted.key_version,
            })
        },
    )
}

fn datakey(
    service: &Service,
    token: Caller<'_>,
    message: pb::DatakeyRequest,
) -> Result<pb::DatakeyResponse, Status> {
    let key = &message.key;
    let kind = if message.wrapped {
        "wrapped"
    } else {
        "plaintext"
    };
    run(
        service,
        token,
        &message.mount,
        TransitOp::Datakey(kind, key),
        |engine| {
            let request = DatakeyRequest {
                bits: if message.bits == 0 { 256 } else { message.bits },
                context: optional(&message.context),
                associated_data: optional(&message.associated_data),
                key_version: version(message.key_version),
            };
            let datakey = engine.datakey(key, &request).map_err(engine_status)?;
            Ok(pb::DatakeyResponse {
                ciphertext: datakey.encrypted.ciphertext,
                key_version: datakey.encrypted.key_version,
                plaintext: if message.wrapped {
                    Vec::new()
                } else {
                    datakey.plaintext.expose_secret().to_vec()
                },
            })
        },
    )
}

/// Vault's sign/verify options from the message; empty fields take Vault's
/// defaults.
pub(super) fn signature_options(
    options: Option<&pb::SignatureOptions>,
) -> Result<SignatureOptions, Status> {
    let Some(options) = options else {
        return Ok(SignatureOptions::default());
    };
    let hash =
        match options.hash_algorithm.as_str() {
            "" => Some(HashAlgorithm::Sha2_256),
            "none" => None,
            name => Some(name.parse::<HashAlgorithm>().map_err(|_| {
                Status::invalid_argument(format!("invalid hash algorithm {name:?}"))
            })?),
        };
    let marshaling = match options.marshaling_algorithm.as_str() {
        "" | "asn1" => Marshaling::Asn1,
        "jws" => Marshaling::Jws,
        other => {
            return Err(Status::invalid_argument(format!(
                "invalid marshaling type {other:?}"
            )));
        }
    };
    let rsa_scheme = match options.signature_algorithm.as_str() {
        "" | "pss" => RsaSignatureScheme::Pss,
        "pkcs1v15" => RsaSignatureScheme::Pkcs1v15,
        other => {
            return Err(Status::invalid_argument(format!(
                "unsupported rsa signature algorithm {other}"
            )));
        }
    };
    let salt_length = match options.salt_length.as_str() {
        "" => SaltLength::Auto,
        text => SaltLength::parse_vault(text).map_err(Status::invalid_argument)?,
    };
    Ok(SignatureOptions {
        hash,
        prehashed: options.prehashed,
        marshaling,
        rsa_scheme,
        salt_length,
    })
}

/// The HMAC hash (`""` = `sha2-256`).
pub(super) fn hmac_algorithm(name: &str) -> Result<HashAlgorithm, Status> {
    match name {
        "" => Ok(HashAlgorithm::Sha2_256),
        "none" => Err(Status::invalid_argument("algorithm cannot be none")),
        name => name
            .parse()
            .map_err(|_| Status::invalid_argument(format!("unsupported algorithm {name}"))),
    }
}

fn sign(
    service: &Service,
    token: Caller<'_>,
    message: pb::SignRequest,
) -> Result<pb::SignResponse, Status> {
    let key = &message.key;
    run(
        service,
        token,
        &message.mount,
        TransitOp::Sign(key),
        |engine| {
            let request = SignRequest {
                input: &message.input,
                context: optional(&message.context),
                key_version: version(message.key_version),
                options: signature_options(message.options.as_ref())?,
            };
            let signed = engine.sign(key, &request).map_err(engine_status)?;
            Ok(pb::SignResponse {
                signature: signed.signature,
                key_version: signed.key_version,
                public_key: signed.public_key.unwrap_or_default(),
            })
        },
    )
}

fn verify(
    service: &Service,
    token: Caller<'_>,
    message: pb::VerifyRequest,
) -> Result<pb::VerifyResponse, Status> {
    let key = &message.key;
    run(
        service,
        token,
        &message.mount,
        TransitOp::Verify(key),
        |engine| {
            let request = VerifyRequest {
                input: &message.input,
                signature: &message.signature,
                context: optional(&message.context),
                options: signature_options(message.options.as_ref())?,
            };
            let valid = engine.verify(key, &request).map_err(engine_status)?;
            Ok(pb::VerifyResponse { valid })
        },
    )
}

fn hmac(
    service: &Service,
    token: Caller<'_>,
    message: pb::HmacRequest,
) -> Result<pb::HmacResponse, Status> {
    let key = &message.key;
    run(
        service,
        token,
        &message.mount,
        TransitOp::Hmac(key),
        |engine| {
            let request = HmacRequest {
                input: &message.input,
                key_version: version(message.key_version),
                algorithm: hmac_algorithm(&message.algorithm)?,
            };
            let hmac = engine.hmac(key, &request).map_err(engine_status)?;
            Ok(pb::HmacResponse { hmac })
        },
    )
}

/// Checked as `verify/<key>`, where Vault verifies HMACs too.
fn verify_hmac(
    service: &Service,
    token: Caller<'_>,
    message: pb::VerifyHmacRequest,
) -> Result<pb::VerifyHmacResponse, Status> {
    let key = &message.key;
    run(
        service,
        token,
        &message.mount,
        TransitOp::Verify(key),
        |engine| {
            let algorithm = hmac_algorithm(&message.algorithm)?;
            let valid = engine
                .verify_hmac(key, &message.input, &message.hmac, algorithm)
                .map_err(engine_status)?;
            Ok(pb::VerifyHmacResponse { valid })
        },
    )
}

fn hash(
    service: &Service,
    token: Caller<'_>,
    message: pb::HashRequest,
) -> Result<pb::HashResponse, Status> {
    run(service, token, &message.mount, TransitOp::Hash, |_| {
        // Vault's hash endpoint offers SHA-2 and SHA-3 only.
        let algorithm = match message.algorithm.as_str() {
            "" => HashAlgorithm::Sha2_256,
            name => match name.parse::<HashAlgorithm>() {
                Ok(HashAlgorithm::Sha1) | Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "unsupported algorithm {name}"
                    )));
                }
                Ok(algorithm) => algorithm,
            },
        };
        Ok(pb::HashResponse {
            sum: engine::hash(algorithm, &message.input),
        })
    })
}

fn random(
    service: &Service,
    token: Caller<'_>,
    message: pb::RandomRequest,
) -> Result<pb::RandomResponse, Status> {
    run(service, token, &message.mount, TransitOp::Random, |_| {
        match message.source.as_str() {
            "" | "platform" | "seal" | "all" => {}
            other => {
                return Err(Status::invalid_argument(format!(
                    "unsupported entropy source {other:?}; must be \"platform\" or \"seal\", or \"all\""
                )));
            }
        }
        let count = if message.bytes == 0 {
            DEFAULT_RANDOM_BYTES
        } else {
            message.bytes
        };
        let random_bytes = engine::random_bytes(i64::from(count)).map_err(engine_status)?;
        Ok(pb::RandomResponse { random_bytes })
    })
}
