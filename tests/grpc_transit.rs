//! The gRPC API end to end: every unary RPC, batches with a failing item in the
//! middle, a streaming rewrap of 100,000 ciphertexts, auth denial, a sealed
//! server, health and reflection, and ciphertexts moving between REST and gRPC.
//!
//! Each test builds its own service over memory storage and serves it, in this
//! process, through `cipherd::api::grpc::serve` and the REST router on
//! `127.0.0.1:0`. Listeners are bound before the servers are spawned, so there
//! is nothing to wait for. Calls go through the generated tonic clients.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use cipherd::api::grpc::{self, pb};
use cipherd::api::rest::{Limits, router};
use cipherd::auth::TokenRequest;
use cipherd::engine::EngineOptions;
use cipherd::service::{RequestContext, Service, ServiceOptions, Transport};
use cipherd::storage::MemoryStorage;

use pb::sys_client::SysClient;
use pb::transit_client::TransitClient;

const ROOT: &str = "root";

/// A service served over gRPC and REST inside the test process.
struct Server {
    service: Arc<Service>,
    grpc: SocketAddr,
    rest: SocketAddr,
    /// The unseal share (one share, threshold one), once initialized.
    share: Option<Vec<u8>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

impl Server {
    /// Initialized with one share and the root token `root`, and unsealed.
    async fn start() -> Self {
        Self::start_with(ServiceOptions::default()).await
    }

    async fn start_with(options: ServiceOptions) -> Self {
        let service = Service::new(Arc::new(MemoryStorage::new()), options).expect("service");
        let init = service.init(1, 1, Some(ROOT)).expect("init");
        let share = init.shares[0].expose_secret().to_vec();
        service.unseal(&share).expect("unseal");
        let mut server = Self::serve(service).await;
        server.share = Some(share);
        server
    }

    /// Not initialized (for `Sys.Init`).
    async fn start_uninitialized() -> Self {
        let service = Service::new(Arc::new(MemoryStorage::new()), ServiceOptions::default())
            .expect("service");
        Self::serve(service).await
    }

    async fn serve(service: Service) -> Self {
        let service = Arc::new(service);
        let grpc_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gRPC");
        let rest_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind REST");
        let grpc = grpc_listener.local_addr().expect("gRPC address");
        let rest = rest_listener.local_addr().expect("REST address");
        let grpc_task = {
            let service = service.clone();
            tokio::spawn(async move {
                grpc::serve(grpc_listener, service, std::future::pending())
                    .await
                    .expect("gRPC server");
            })
        };
        let app = router(service.clone(), Limits::default());
        let rest_task = tokio::spawn(async move {
            let _ = axum::serve(rest_listener, app).await;
        });
        Self {
            service,
            grpc,
            rest,
            share: None,
            tasks: vec![grpc_task, rest_task],
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc))
            .expect("URI")
            .connect()
            .await
            .expect("connect")
    }

    async fn transit(&self) -> TransitClient<Channel> {
        TransitClient::new(self.channel().await)
            .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(grpc::MAX_MESSAGE_BYTES)
    }

    async fn sys(&self) -> SysClient<Channel> {
        SysClient::new(self.channel().await)
    }

    /// A token with `policy` (written first under `name`), created by root.
    fn token_with_policy(&self, name: &str, policy: &str) -> String {
        let state = self.service.unsealed().expect("unsealed");
        state.auth.put_policy(name, policy).expect("policy");
        let root = RequestContext {
            token: Some(ROOT),
            transport: Transport::Grpc,
            audit: None,
        };
        let request = TokenRequest {
            policies: vec![name.to_owned()],
            ..TokenRequest::default()
        };
        let issued = self
            .service
            .create_token(&root, "auth/token/create", &request)
            .expect("token");
        issued.token.expose_secret().to_owned()
    }

    /// `POST /v1/<path>` with the root token.
    async fn rest_post(&self, path: &str, body: Value) -> (u16, Value) {
        cipherd::tls::install_crypto_provider();
        let response = reqwest::Client::new()
            .post(format!("http://{}/v1/{path}", self.rest))
            .header("X-Vault-Token", ROOT)
            .body(body.to_string())
            .send()
            .await
            .expect("REST request");
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }
}

/// `message` with `x-vault-token: token`.
fn as_token<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-vault-token", token.parse().expect("metadata value"));
    request
}

/// `message` with the root token.
fn root<T>(message: T) -> Request<T> {
    as_token(ROOT, message)
}

#[track_caller]
fn expect_code<T>(result: Result<tonic::Response<T>, Status>, code: Code) -> Status {
    match result {
        Ok(_) => panic!("expected {code:?}, got OK"),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            status
        }
    }
}

fn encrypt_request(key: &str, plaintext: &[u8]) -> pb::EncryptRequest {
    pb::EncryptRequest {
        key: key.to_owned(),
        plaintext: plaintext.to_vec(),
        ..Default::default()
    }
}

fn decrypt_request(key: &str, ciphertext: &str) -> pb::DecryptRequest {
    pb::DecryptRequest {
        key: key.to_owned(),
        ciphertext: ciphertext.to_owned(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unary_rpc() {
    let server = Server::start().await;
    let mut transit = server.transit().await;

    // Encrypt creates the key (upsert); decrypt, rewrap, datakey.
    let encrypted = transit
        .encrypt(root(pb::EncryptRequest {
            associated_data: b"row 7".to_vec(),
            ..encrypt_request("orders", b"card 4111")
        }))
        .await
        .expect("encrypt")
        .into_inner();
    assert!(
        encrypted.ciphertext.starts_with("vault:v1:"),
        "{}",
        encrypted.ciphertext
    );
    assert_eq!(encrypted.key_version, 1);
    let decrypted = transit
        .decrypt(root(pb::DecryptRequest {
            associated_data: b"row 7".to_vec(),
            ..decrypt_request("orders", &encrypted.ciphertext)
        }))
        .await
        .expect("decrypt")
        .into_inner();
    assert_eq!(decrypted.plaintext, b"card 4111");
    // Wrong associated data: authentication fails, and says only that.
    let status = expect_code(
        transit
            .decrypt(root(decrypt_request("orders", &encrypted.ciphertext)))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(status.message(), "cipher: message authentication failed");
    let status = expect_code(
        transit
            .decrypt(root(decrypt_request("orders", "vault:v1:!!")))
            .await,
        Code::InvalidArgument,
    );
    assert!(
        status.message().contains("invalid ciphertext"),
        "{status:?}"
    );

    let rewrapped = transit
        .rewrap(root(pb::RewrapRequest {
            key: "orders".into(),
            ciphertext: "vault:v1:AAAA".into(),
            ..Default::default()
        }))
        .await;
    expect_code(rewrapped, Code::InvalidArgument);

    let datakey = transit
        .datakey(root(pb::DatakeyRequest {
            key: "orders".into(),
            bits: 512,
            ..Default::default()
        }))
        .await
        .expect("datakey")
        .into_inner();
    assert_eq!(datakey.plaintext.len(), 64);
    let opened = transit
        .decrypt(root(decrypt_request("orders", &datakey.ciphertext)))
        .await
        .expect("decrypt datakey")
        .into_inner();
    assert_eq!(opened.plaintext, datakey.plaintext);
    let wrapped = transit
        .datakey(root(pb::DatakeyRequest {
            key: "orders".into(),
            wrapped: true,
            ..Default::default()
        }))
        .await
        .expect("wrapped datakey")
        .into_inner();
    assert!(wrapped.plaintext.is_empty());
    assert!(wrapped.ciphertext.starts_with("vault:v1:"));
    expect_code(
        transit
            .datakey(root(pb::DatakeyRequest {
                key: "orders".into(),
                bits: 100,
                ..Default::default()
            }))
            .await,
        Code::InvalidArgument,
    );

    // HMAC and its verification (any key type computes HMACs).
    let hmac = transit
        .hmac(root(pb::HmacRequest {
            key: "orders".into(),
            input: b"blind index".to_vec(),
            algorithm: "sha2-512".into(),
            ..Default::default()
        }))
        .await
        .expect("hmac")
        .into_inner()
        .hmac;
    assert!(hmac.starts_with("vault:v1:"));
    let verify_hmac = |input: &[u8]| pb::VerifyHmacRequest {
        key: "orders".into(),
        input: input.to_vec(),
        hmac: hmac.clone(),
        algorithm: "sha2-512".into(),
        ..Default::default()
    };
    let valid = transit
        .verify_hmac(root(verify_hmac(b"blind index")))
        .await
        .expect("verify hmac");
    assert!(valid.into_inner().valid);
    let valid = transit
        .verify_hmac(root(verify_hmac(b"other")))
        .await
        .expect("verify hmac");
    assert!(!valid.into_inner().valid);

    // Keyless: hash and random.
    let sum = transit
        .hash(root(pb::HashRequest {
            input: b"abc".to_vec(),
            ..Default::default()
        }))
        .await
        .expect("hash")
        .into_inner()
        .sum;
    assert_eq!(
        hex::encode(sum),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    expect_code(
        transit
            .hash(root(pb::HashRequest {
                input: b"abc".to_vec(),
                algorithm: "md5".into(),
                ..Default::default()
            }))
            .await,
        Code::InvalidArgument,
    );
    let random = transit
        .random(root(pb::RandomRequest {
            bytes: 48,
            ..Default::default()
        }))
        .await
        .expect("random")
        .into_inner();
    assert_eq!(random.random_bytes.len(), 48);
    let default_random = transit
        .random(root(pb::RandomRequest::default()))
        .await
        .expect("random");
    assert_eq!(default_random.into_inner().random_bytes.len(), 32);
    expect_code(
        transit
            .random(root(pb::RandomRequest {
                bytes: 200_000,
                ..Default::default()
            }))
            .await,
        Code::InvalidArgument,
    );

    // Signing keys: create, sign, verify.
    let created = transit
        .create_key(root(pb::CreateKeyRequest {
            key: "signer".into(),
            r#type: "ed25519".into(),
            ..Default::default()
        }))
        .await
        .expect("create key")
        .into_inner();
    assert!(created.created);
    let key = created.key.expect("key");
    assert_eq!(key.r#type, "ed25519");
    assert!(key.supports_signing);
    assert_eq!(key.versions.len(), 1);
    assert!(!key.versions[0].public_key.is_empty());
    let again = transit
        .create_key(root(pb::CreateKeyRequest {
            key: "signer".into(),
            r#type: "ed25519".into(),
            ..Default::default()
        }))
        .await
        .expect("create existing key")
        .into_inner();
    assert!(!again.created);
    let signed = transit
        .sign(root(pb::SignRequest {
            key: "signer".into(),
            input: b"release 1.0".to_vec(),
            ..Default::default()
        }))
        .await
        .expect("sign")
        .into_inner();
    assert!(signed.signature.starts_with("vault:v1:"));
    assert_eq!(signed.key_version, 1);
    let verify = |input: &[u8]| pb::VerifyRequest {
        key: "signer".into(),
        input: input.to_vec(),
        signature: signed.signature.clone(),
        ..Default::default()
    };
    assert!(
        transit
            .verify(root(verify(b"release 1.0")))
            .await
            .expect("verify")
            .into_inner()
            .valid
    );
    assert!(
        !transit
            .verify(root(verify(b"release 1.1")))
            .await
            .expect("verify")
            .into_inner()
            .valid
    );
    // An AES key cannot sign.
    expect_code(
        transit
            .sign(root(pb::SignRequest {
                key: "orders".into(),
                input: b"x".to_vec(),
                ..Default::default()
            }))
            .await,
        Code::InvalidArgument,
    );
    expect_code(
        transit
            .sign(root(pb::SignRequest {
                key: "signer".into(),
                input: b"x".to_vec(),
                options: Some(pb::SignatureOptions {
                    hash_algorithm: "sha2-999".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }))
            .await,
        Code::InvalidArgument,
    );

    // Key management: read, list, rotate, config, trim, delete.
    let read = transit
        .read_key(root(pb::ReadKeyRequest {
            key: "orders".into(),
            ..Default::default()
        }))
        .await
        .expect("read key")
        .into_inner()
        .key
        .expect("key");
    assert_eq!(read.name, "orders");
    assert_eq!(read.r#type, "aes256-gcm96");
    assert_eq!(read.latest_version, 1);
    assert!(read.supports_encryption);
    assert!(
        read.versions[0].encryptions >= 3,
        "{}",
        read.versions[0].encryptions
    );
    expect_code(
        transit
            .read_key(root(pb::ReadKeyRequest {
                key: "missing".into(),
                ..Default::default()
            }))
            .await,
        Code::NotFound,
    );
    expect_code(
        transit
            .read_key(root(pb::ReadKeyRequest {
                key: "a/b".into(),
                ..Default::default()
            }))
            .await,
        Code::InvalidArgument,
    );
    let listed = transit
        .list_keys(root(pb::ListKeysRequest::default()))
        .await
        .expect("list keys");
    assert_eq!(
        listed.into_inner().keys,
        vec!["orders".to_owned(), "signer".to_owned()]
    );

    let rotated = transit
        .rotate_key(root(pb::RotateKeyRequest {
            key: "orders".into(),
            ..Default::default()
        }))
        .await
        .expect("rotate")
        .into_inner()
        .key
        .expect("key");
    assert_eq!(rotated.latest_version, 2);
    let v2 = transit
        .encrypt(root(encrypt_request("orders", b"after rotation")))
        .await
        .expect("encrypt v2")
        .into_inner();
    assert_eq!(v2.key_version, 2);
    let moved = transit
        .rewrap(root(pb::RewrapRequest {
            key: "orders".into(),
            ciphertext: datakey.ciphertext.clone(),
            ..Default::default()
        }))
        .await
        .expect("rewrap")
        .into_inner();
    assert_eq!(moved.key_version, 2);
    assert!(moved.ciphertext.starts_with("vault:v2:"));
    let opened = transit
        .decrypt(root(decrypt_request("orders", &moved.ciphertext)))
        .await
        .expect("decrypt rewrapped")
        .into_inner();
    assert_eq!(opened.plaintext, datakey.plaintext);

    let configured = transit
        .update_key_config(root(pb::UpdateKeyConfigRequest {
            key: "orders".into(),
            min_decryption_version: Some(2),
            min_encryption_version: Some(2),
            deletion_allowed: Some(true),
            ..Default::default()
        }))
        .await
        .expect("config")
        .into_inner();
    let configured = configured.key.expect("key");
    assert_eq!(configured.min_decryption_version, 2);
    assert_eq!(configured.min_encryption_version, 2);
    assert!(configured.deletion_allowed);
    let status = expect_code(
        transit
            .decrypt(root(decrypt_request("orders", &datakey.ciphertext)))
            .await,
        Code::InvalidArgument,
    );
    assert!(
        status.message().contains("disallowed by policy"),
        "{status:?}"
    );
    let trimmed = transit
        .trim_key(root(pb::TrimKeyRequest {
            key: "orders".into(),
            min_available_version: 2,
            ..Default::default()
        }))
        .await
        .expect("trim")
        .into_inner()
        .key
        .expect("key");
    assert_eq!(trimmed.min_available_version, 2);

    // Deletion needs `deletion_allowed`.
    let status = expect_code(
        transit
            .delete_key(root(pb::DeleteKeyRequest {
                key: "signer".into(),
                ..Default::default()
            }))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(status.message(), "deletion is not allowed for this key");
    transit
        .delete_key(root(pb::DeleteKeyRequest {
            key: "orders".into(),
            ..Default::default()
        }))
        .await
        .expect("delete");
    expect_code(
        transit
            .decrypt(root(decrypt_request("orders", &v2.ciphertext)))
            .await,
        Code::NotFound,
    );

    // `authorization: Bearer` works as well as `x-vault-token`.
    let mut bearer = Request::new(pb::ListKeysRequest::default());
    bearer.metadata_mut().insert(
        "authorization",
        format!("Bearer {ROOT}").parse().expect("metadata"),
    );
    let listed = transit.list_keys(bearer).await.expect("list with bearer");
    assert_eq!(listed.into_inner().keys, vec!["signer".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_fail_items_in_place() {
    let server = Server::start().await;
    let mut transit = server.transit().await;

    // Encrypt: the middle item asks for a version that does not exist.
    let items = vec![
        pb::EncryptItem {
            plaintext: b"one".to_vec(),
            reference: "a".into(),
            ..Default::default()
        },
        pb::EncryptItem {
            plaintext: b"two".to_vec(),
            key_version: 9,
            reference: "b".into(),
            ..Default::default()
        },
        pb::EncryptItem {
            plaintext: b"three".to_vec(),
            reference: "c".into(),
            ..Default::default()
        },
    ];
    let results = transit
        .encrypt_batch(root(pb::EncryptBatchRequest {
            key: "batch".into(),
            items,
            ..Default::default()
        }))
        .await
        .expect("encrypt batch")
        .into_inner()
        .results;
    assert_eq!(results.len(), 3);
    let references: Vec<&str> = results.iter().map(|r| r.reference.as_str()).collect();
    assert_eq!(references, ["a", "b", "c"]);
    let ciphertext = |result: &pb::CiphertextResult| match &result.result {
        Some(pb::ciphertext_result::Result::Ok(c)) => c.ciphertext.clone(),
        other => panic!("expected a ciphertext, got {other:?}"),
    };
    let error = |result: &pb::CiphertextResult| match &result.result {
        Some(pb::ciphertext_result::Result::Error(e)) => e.clone(),
        other => panic!("expected an error, got {other:?}"),
    };
    let first = ciphertext(&results[0]);
    let third = ciphertext(&results[2]);
    assert!(!error(&results[1]).is_empty());

    // Decrypt: the middle item is not a ciphertext.
    let items = [first.as_str(), "vault:v1:not-base64!", third.as_str()]
        .iter()
        .map(|c| pb::DecryptItem {
            ciphertext: (*c).to_owned(),
            ..Default::default()
        })
        .collect();
    let results = transit
        .decrypt_batch(root(pb::DecryptBatchRequest {
            key: "batch".into(),
            items,
            ..Default::default()
        }))
        .await
        .expect("decrypt batch")
        .into_inner()
        .results;
    let plaintexts: Vec<Result<Vec<u8>, String>> = results
        .into_iter()
        .map(|r| match r.result {
            Some(pb::plaintext_result::Result::Plaintext(p)) => Ok(p),
            Some(pb::plaintext_result::Result::Error(e)) => Err(e),
            None => panic!("empty result"),
        })
        .collect();
    assert_eq!(plaintexts[0], Ok(b"one".to_vec()));
    assert!(
        plaintexts[1]
            .as_ref()
            .is_err_and(|e| e.contains("invalid ciphertext")),
        "{:?}",
        plaintexts[1]
    );
    assert_eq!(plaintexts[2], Ok(b"three".to_vec()));

    // Rewrap: the middle item is from a version that does not exist yet.
    transit
        .rotate_key(root(pb::RotateKeyRequest {
            key: "batch".into(),
            ..Default::default()
        }))
        .await
        .expect("rotate");
    let too_new = first.replacen("vault:v1:", "vault:v7:", 1);
    let items = [first.as_str(), too_new.as_str(), third.as_str()]
        .iter()
        .map(|c| pb::RewrapItem {
            ciphertext: (*c).to_owned(),
            ..Default::default()
        })
        .collect();
    let results = transit
        .rewrap_batch(root(pb::RewrapBatchRequest {
            key: "batch".into(),
            items,
            ..Default::default()
        }))
        .await
        .expect("rewrap batch")
        .into_inner()
        .results;
    assert!(ciphertext(&results[0]).starts_with("vault:v2:"));
    assert_eq!(error(&results[1]), "invalid ciphertext: version is too new");
    assert!(ciphertext(&results[2]).starts_with("vault:v2:"));

    // Sign and verify with a derived Ed25519 key: the middle item has no context.
    transit
        .create_key(root(pb::CreateKeyRequest {
            key: "derived-signer".into(),
            r#type: "ed25519".into(),
            derived: true,
            ..Default::default()
        }))
        .await
        .expect("create derived key");
    let sign_items = vec![
        pb::SignItem {
            input: b"one".to_vec(),
            context: b"tenant-1".to_vec(),
            reference: "a".into(),
        },
        pb::SignItem {
            input: b"two".to_vec(),
            context: Vec::new(),
            reference: "b".into(),
        },
        pb::SignItem {
            input: b"three".to_vec(),
            context: b"tenant-3".to_vec(),
            reference: "c".into(),
        },
    ];
    let results = transit
        .sign_batch(root(pb::SignBatchRequest {
            key: "derived-signer".into(),
            items: sign_items,
            ..Default::default()
        }))
        .await
        .expect("sign batch")
        .into_inner()
        .results;
    let signatures: Vec<Result<String, String>> = results
        .iter()
        .map(|r| match &r.result {
            Some(pb::sign_result::Result::Ok(signed)) => {
                assert!(
                    !signed.public_key.is_empty(),
                    "derived keys report their public key"
                );
                Ok(signed.signature.clone())
            }
            Some(pb::sign_result::Result::Error(e)) => Err(e.clone()),
            None => panic!("empty result"),
        })
        .collect();
    assert!(signatures[0].is_ok() && signatures[2].is_ok());
    assert!(
        signatures[1]
            .as_ref()
            .is_err_and(|e| e.starts_with("missing 'context'")),
        "{:?}",
        signatures[1]
    );
    let first_signature = signatures[0].clone().expect("signature");
    let third_signature = signatures[2].clone().expect("signature");
    let verify_items = vec![
        pb::VerifyItem {
            input: b"one".to_vec(),
            signature: first_signature.clone(),
            context: b"tenant-1".to_vec(),
            reference: "a".into(),
        },
        pb::VerifyItem {
            input: b"two".to_vec(),
            signature: "vault:v1:%%%".into(),
            context: b"tenant-2".to_vec(),
            reference: "b".into(),
        },
        pb::VerifyItem {
            input: b"three".to_vec(),
            signature: third_signature,
            context: b"tenant-3".to_vec(),
            reference: "c".into(),
        },
        // A valid signature under another context: well formed, not valid.
        pb::VerifyItem {
            input: b"one".to_vec(),
            signature: first_signature,
            context: b"tenant-9".to_vec(),
            reference: "d".into(),
        },
    ];
    let results = transit
        .verify_batch(root(pb::VerifyBatchRequest {
            key: "derived-signer".into(),
            items: verify_items,
            ..Default::default()
        }))
        .await
        .expect("verify batch")
        .into_inner()
        .results;
    let verdicts: Vec<Result<bool, String>> = results
        .into_iter()
        .map(|r| match r.result {
            Some(pb::verify_result::Result::Valid(valid)) => Ok(valid),
            Some(pb::verify_result::Result::Error(e)) => Err(e),
            None => panic!("empty result"),
        })
        .collect();
    assert_eq!(verdicts[0], Ok(true));
    assert!(verdicts[1].is_err(), "{:?}", verdicts[1]);
    assert_eq!(verdicts[2], Ok(true));
    assert_eq!(verdicts[3], Ok(false));

    // Signing with a key that cannot sign fails the whole batch.
    let status = expect_code(
        transit
            .sign_batch(root(pb::SignBatchRequest {
                key: "batch".into(),
                items: vec![pb::SignItem {
                    input: b"x".to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            }))
            .await,
        Code::InvalidArgument,
    );
    assert!(
        status.message().contains("does not support signing"),
        "{status:?}"
    );

    // HMAC: results in order, equal to the unary answers.
    let inputs: [&[u8]; 3] = [b"alpha", b"beta", b"gamma"];
    let results = transit
        .hmac_batch(root(pb::HmacBatchRequest {
            key: "batch".into(),
            items: inputs
                .iter()
                .enumerate()
                .map(|(i, input)| pb::HmacItem {
                    input: input.to_vec(),
                    reference: i.to_string(),
                })
                .collect(),
            ..Default::default()
        }))
        .await
        .expect("hmac batch")
        .into_inner()
        .results;
    for (i, (result, input)) in results.iter().zip(inputs).enumerate() {
        assert_eq!(result.reference, i.to_string());
        let single = transit
            .hmac(root(pb::HmacRequest {
                key: "batch".into(),
                input: input.to_vec(),
                ..Default::default()
            }))
            .await
            .expect("hmac")
            .into_inner()
            .hmac;
        assert_eq!(result.result, Some(pb::hmac_result::Result::Hmac(single)));
    }

    // Failures of the batch as a whole fail the call.
    expect_code(
        transit
            .decrypt_batch(root(pb::DecryptBatchRequest {
                key: "missing".into(),
                items: vec![pb::DecryptItem {
                    ciphertext: first.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            }))
            .await,
        Code::NotFound,
    );
    expect_code(
        transit
            .decrypt_batch(root(pb::DecryptBatchRequest {
                key: "batch".into(),
                ..Default::default()
            }))
            .await,
        Code::InvalidArgument,
    );
    let mixed = vec![
        pb::EncryptItem {
            plaintext: b"x".to_vec(),
            context: b"c".to_vec(),
            ..Default::default()
        },
        pb::EncryptItem {
            plaintext: b"y".to_vec(),
            ..Default::default()
        },
    ];
    let status = expect_code(
        transit
            .encrypt_batch(root(pb::EncryptBatchRequest {
                key: "batch".into(),
                items: mixed,
                ..Default::default()
            }))
            .await,
        Code::InvalidArgument,
    );
    assert!(status.message().contains("context"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_limit_is_resource_exhausted() {
    let options = ServiceOptions {
        engine: EngineOptions {
            max_batch_items: 10,
            ..EngineOptions::default()
        },
        ..ServiceOptions::default()
    };
    let server = Server::start_with(options).await;
    let mut transit = server.transit().await;
    let items = (0..11)
        .map(|i| pb::EncryptItem {
            plaintext: vec![i],
            ..Default::default()
        })
        .collect();
    let status = expect_code(
        transit
            .encrypt_batch(root(pb::EncryptBatchRequest {
                key: "k".into(),
                items,
                ..Default::default()
            }))
            .await,
        Code::ResourceExhausted,
    );
    assert!(status.message().contains("limit of 10"), "{status:?}");
}

/// The plaintext of item `i` of the bulk test: 64 bytes.
fn row(i: usize) -> Vec<u8> {
    format!("{i:064}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_rewrap_of_100000_ciphertexts() {
    const TOTAL: usize = 100_000;
    const CHUNK: usize = 10_000;
    const BATCH: usize = 1_000;
    let server = Server::start().await;
    let mut transit = server.transit().await;
    transit
        .create_key(root(pb::CreateKeyRequest {
            key: "rows".into(),
            ..Default::default()
        }))
        .await
        .expect("create key");

    let mut ciphertexts = Vec::with_capacity(TOTAL);
    for start in (0..TOTAL).step_by(CHUNK) {
        let items = (start..start + CHUNK)
            .map(|i| pb::EncryptItem {
                plaintext: row(i),
                ..Default::default()
            })
            .collect();
        let results = transit
            .encrypt_batch(root(pb::EncryptBatchRequest {
                key: "rows".into(),
                items,
                ..Default::default()
            }))
            .await
            .expect("encrypt batch")
            .into_inner()
            .results;
        assert_eq!(results.len(), CHUNK);
        for result in results {
            match result.result {
                Some(pb::ciphertext_result::Result::Ok(c)) => {
                    assert_eq!(c.key_version, 1);
                    ciphertexts.push(c.ciphertext);
                }
                other => panic!("encrypt failed: {other:?}"),
            }
        }
    }
    transit
        .rotate_key(root(pb::RotateKeyRequest {
            key: "rows".into(),
            ..Default::default()
        }))
        .await
        .expect("rotate");

    // Rewrap: 100 batches of 1,000 streamed in, 100 answers streamed back in order.
    let batches: Vec<pb::BulkRequest> = ciphertexts
        .chunks(BATCH)
        .enumerate()
        .map(|(sequence, chunk)| pb::BulkRequest {
            operation: pb::BulkOperation::Rewrap.into(),
            key: "rows".into(),
            sequence: sequence as u64,
            items: chunk
                .iter()
                .map(|c| pb::BulkItem {
                    ciphertext: c.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    let mut answers = transit
        .bulk(root(tokio_stream::iter(batches)))
        .await
        .expect("bulk rewrap")
        .into_inner();
    let mut rewrapped = Vec::with_capacity(TOTAL);
    let mut expected_sequence = 0u64;
    while let Some(answer) = answers.message().await.expect("bulk answer") {
        assert_eq!(answer.sequence, expected_sequence);
        assert_eq!(answer.operation, i32::from(pb::BulkOperation::Rewrap));
        assert_eq!(answer.results.len(), BATCH);
        expected_sequence += 1;
        for result in answer.results {
            match result.result {
                Some(pb::bulk_result::Result::Ciphertext(c)) => {
                    assert_eq!(c.key_version, 2);
                    assert!(c.ciphertext.starts_with("vault:v2:"));
                    rewrapped.push(c.ciphertext);
                }
                other => panic!("rewrap failed: {other:?}"),
            }
        }
    }
    assert_eq!(rewrapped.len(), TOTAL);

    // Every rewrapped ciphertext decrypts to its row, also once v1 is gone.
    transit
        .update_key_config(root(pb::UpdateKeyConfigRequest {
            key: "rows".into(),
            min_decryption_version: Some(2),
            ..Default::default()
        }))
        .await
        .expect("config");
    let batches: Vec<pb::BulkRequest> = rewrapped
        .chunks(BATCH)
        .enumerate()
        .map(|(sequence, chunk)| pb::BulkRequest {
            operation: pb::BulkOperation::Decrypt.into(),
            key: "rows".into(),
            sequence: sequence as u64,
            items: chunk
                .iter()
                .map(|c| pb::BulkItem {
                    ciphertext: c.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    let mut answers = transit
        .bulk(root(tokio_stream::iter(batches)))
        .await
        .expect("bulk decrypt")
        .into_inner();
    let mut index = 0;
    while let Some(answer) = answers.message().await.expect("bulk answer") {
        for result in answer.results {
            match result.result {
                Some(pb::bulk_result::Result::Plaintext(p)) => {
                    assert_eq!(p, row(index), "row {index}")
                }
                other => panic!("decrypt of row {index} failed: {other:?}"),
            }
            index += 1;
        }
    }
    assert_eq!(index, TOTAL);

    // Bulk encrypt, with a failing item in the middle of a batch.
    let batch = pb::BulkRequest {
        operation: pb::BulkOperation::Encrypt.into(),
        key: "rows".into(),
        items: vec![
            pb::BulkItem {
                plaintext: b"x".to_vec(),
                ..Default::default()
            },
            pb::BulkItem {
                plaintext: b"y".to_vec(),
                key_version: 99,
                ..Default::default()
            },
            pb::BulkItem {
                plaintext: b"z".to_vec(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let mut answers = transit
        .bulk(root(tokio_stream::iter(vec![batch])))
        .await
        .expect("bulk encrypt")
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("answer")
        .expect("one answer");
    assert!(
        matches!(&answer.results[0].result, Some(pb::bulk_result::Result::Ciphertext(c)) if c.key_version == 2)
    );
    assert!(matches!(
        &answer.results[1].result,
        Some(pb::bulk_result::Result::Error(_))
    ));
    assert!(matches!(
        &answer.results[2].result,
        Some(pb::bulk_result::Result::Ciphertext(_))
    ));
    assert!(answers.message().await.expect("end").is_none());

    // A batch without an operation ends the stream with INVALID_ARGUMENT.
    let mut answers = transit
        .bulk(root(tokio_stream::iter(vec![pb::BulkRequest {
            key: "rows".into(),
            ..Default::default()
        }])))
        .await
        .expect("bulk")
        .into_inner();
    let status = answers.message().await.expect_err("unspecified operation");
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_policies_apply() {
    let server = Server::start().await;
    let mut transit = server.transit().await;
    transit
        .encrypt(root(encrypt_request("payments", b"seed")))
        .await
        .expect("create by upsert");
    let encrypt_only = server.token_with_policy(
        "payments-encrypt",
        r#"path "transit/encrypt/payments" { capabilities = ["update"] }"#,
    );

    // No token, an unknown token.
    let status = expect_code(
        transit
            .encrypt(Request::new(encrypt_request("payments", b"x")))
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(status.message(), "permission denied");
    expect_code(
        transit
            .encrypt(as_token(
                "hvs.not-a-token",
                encrypt_request("payments", b"x"),
            ))
            .await,
        Code::PermissionDenied,
    );

    // The policy allows exactly `transit/encrypt/payments` (update).
    let encrypted = transit
        .encrypt(as_token(
            &encrypt_only,
            encrypt_request("payments", b"allowed"),
        ))
        .await
        .expect("encrypt allowed")
        .into_inner();
    expect_code(
        transit
            .decrypt(as_token(
                &encrypt_only,
                decrypt_request("payments", &encrypted.ciphertext),
            ))
            .await,
        Code::PermissionDenied,
    );
    // A missing key needs `create`, which the policy does not grant.
    expect_code(
        transit
            .encrypt(as_token(&encrypt_only, encrypt_request("other", b"x")))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        transit
            .read_key(as_token(
                &encrypt_only,
                pb::ReadKeyRequest {
                    key: "payments".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        transit
            .decrypt_batch(as_token(
                &encrypt_only,
                pb::DecryptBatchRequest {
                    key: "payments".into(),
                    items: vec![pb::DecryptItem {
                        ciphertext: encrypted.ciphertext.clone(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    let batch = pb::EncryptBatchRequest {
        key: "payments".into(),
        items: vec![pb::EncryptItem {
            plaintext: b"x".to_vec(),
            ..Default::default()
        }],
        ..Default::default()
    };
    transit
        .encrypt_batch(as_token(&encrypt_only, batch))
        .await
        .expect("batch encrypt allowed");
    // The stream is checked batch by batch: the first denied batch ends it.
    let mut answers = transit
        .bulk(as_token(
            &encrypt_only,
            tokio_stream::iter(vec![pb::BulkRequest {
                operation: pb::BulkOperation::Decrypt.into(),
                key: "payments".into(),
                items: vec![pb::BulkItem {
                    ciphertext: encrypted.ciphertext.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            }]),
        ))
        .await
        .expect("bulk")
        .into_inner();
    let status = answers.message().await.expect_err("denied batch");
    assert_eq!(status.code(), Code::PermissionDenied);

    // Another mount: a token without access learns nothing about the mount table.
    let other_mount = |token: &str| {
        as_token(
            token,
            pb::EncryptRequest {
                mount: "nowhere".into(),
                ..encrypt_request("payments", b"x")
            },
        )
    };
    expect_code(
        transit.encrypt(other_mount(&encrypt_only)).await,
        Code::PermissionDenied,
    );
    expect_code(transit.encrypt(other_mount(ROOT)).await, Code::NotFound);

    // Sealing needs sudo on sys/seal.
    let mut sys = server.sys().await;
    expect_code(
        sys.seal(as_token(&encrypt_only, pb::SealRequest {})).await,
        Code::PermissionDenied,
    );
    assert!(
        !sys.seal_status(pb::SealStatusRequest {})
            .await
            .expect("status")
            .into_inner()
            .sealed
    );
}

async fn health(channel: Channel, service: &str) -> i32 {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_server_is_unavailable() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let server = Server::start().await;
    let mut transit = server.transit().await;
    let mut sys = server.sys().await;
    let encrypted = transit
        .encrypt(root(encrypt_request("k", b"before seal")))
        .await
        .expect("encrypt")
        .into_inner();
    let serving = ServingStatus::Serving as i32;
    let not_serving = ServingStatus::NotServing as i32;
    assert_eq!(
        health(server.channel().await, "cipherd.v1.Transit").await,
        serving
    );
    assert_eq!(health(server.channel().await, "").await, serving);

    sys.seal(root(pb::SealRequest {})).await.expect("seal");
    let status = sys
        .seal_status(pb::SealStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(status.sealed && status.initialized);
    assert_eq!(
        health(server.channel().await, "cipherd.v1.Transit").await,
        not_serving
    );
    assert_eq!(
        health(server.channel().await, "cipherd.v1.Sys").await,
        serving
    );

    let status = expect_code(
        transit.encrypt(root(encrypt_request("k", b"x"))).await,
        Code::Unavailable,
    );
    assert_eq!(status.message(), "Vault is sealed");
    // Sealed beats auth: no token gets the same answer.
    expect_code(
        transit
            .decrypt(Request::new(decrypt_request("k", &encrypted.ciphertext)))
            .await,
        Code::Unavailable,
    );
    expect_code(
        transit
            .encrypt_batch(root(pb::EncryptBatchRequest {
                key: "k".into(),
                items: vec![pb::EncryptItem::default()],
                ..Default::default()
            }))
            .await,
        Code::Unavailable,
    );
    expect_code(
        transit
            .list_keys(root(pb::ListKeysRequest::default()))
            .await,
        Code::Unavailable,
    );
    // Sealing again is harmless.
    sys.seal(root(pb::SealRequest {}))
        .await
        .expect("seal again");

    // Unseal: a bad share, then the right one.
    expect_code(
        sys.unseal(pb::UnsealRequest {
            key: vec![1, 2, 3],
            reset: false,
        })
        .await,
        Code::InvalidArgument,
    );
    let share = server.share.clone().expect("share");
    let status = sys
        .unseal(pb::UnsealRequest {
            key: share,
            reset: false,
        })
        .await
        .expect("unseal")
        .into_inner();
    assert!(!status.sealed);
    assert_eq!(
        health(server.channel().await, "cipherd.v1.Transit").await,
        serving
    );
    let opened = transit
        .decrypt(root(decrypt_request("k", &encrypted.ciphertext)))
        .await
        .expect("decrypt after unseal")
        .into_inner();
    assert_eq!(opened.plaintext, b"before seal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_unseal_and_reflection() {
    let server = Server::start_uninitialized().await;
    let mut sys = server.sys().await;
    let mut transit = server.transit().await;
    let status = sys
        .seal_status(pb::SealStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(!status.initialized && status.sealed);
    expect_code(
        transit.encrypt(root(encrypt_request("k", b"x"))).await,
        Code::Unavailable,
    );

    let init = sys
        .init(pb::InitRequest {
            secret_shares: 3,
            secret_threshold: 2,
        })
        .await
        .expect("init")
        .into_inner();
    assert_eq!(init.keys.len(), 3);
    assert!(!init.root_token.is_empty());
    expect_code(
        sys.init(pb::InitRequest {
            secret_shares: 3,
            secret_threshold: 2,
        })
        .await,
        Code::FailedPrecondition,
    );
    let first = sys
        .unseal(pb::UnsealRequest {
            key: init.keys[0].clone(),
            reset: false,
        })
        .await
        .expect("first share")
        .into_inner();
    assert!(first.sealed);
    assert_eq!((first.progress, first.threshold, first.shares), (1, 2, 3));
    let second = sys
        .unseal(pb::UnsealRequest {
            key: init.keys[2].clone(),
            reset: false,
        })
        .await
        .expect("second share")
        .into_inner();
    assert!(!second.sealed);
    assert!(!second.cluster_id.is_empty());

    let encrypted = transit
        .encrypt(as_token(&init.root_token, encrypt_request("k", b"fresh")))
        .await
        .expect("encrypt with the new root token");
    assert!(encrypted.into_inner().ciphertext.starts_with("vault:v1:"));

    // Server reflection lists both services.
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(server.channel().await)
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("answer")
        .expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"cipherd.v1.Transit".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"cipherd.v1.Sys".to_owned()), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_grpc_ciphertexts_interoperate() {
    let server = Server::start().await;
    let mut transit = server.transit().await;

    // REST encrypts, gRPC decrypts.
    let (status, body) = server
        .rest_post(
            "transit/encrypt/shared",
            json!({"plaintext": STANDARD.encode(b"from REST"), "context": STANDARD.encode(b"tenant")}),
        )
        .await;
    // Upsert with a context creates a derived key.
    assert_eq!(status, 200, "{body}");
    let rest_ciphertext = body["data"]["ciphertext"]
        .as_str()
        .expect("ciphertext")
        .to_owned();
    let opened = transit
        .decrypt(root(pb::DecryptRequest {
            context: b"tenant".to_vec(),
            ..decrypt_request("shared", &rest_ciphertext)
        }))
        .await
        .expect("gRPC decrypt of a REST ciphertext")
        .into_inner();
    assert_eq!(opened.plaintext, b"from REST");

    // gRPC encrypts, REST decrypts.
    let encrypted = transit
        .encrypt(root(pb::EncryptRequest {
            context: b"tenant".to_vec(),
            ..encrypt_request("shared", b"from gRPC")
        }))
        .await
        .expect("gRPC encrypt")
        .into_inner();
    let (status, body) = server
        .rest_post(
            "transit/decrypt/shared",
            json!({"ciphertext": encrypted.ciphertext, "context": STANDARD.encode(b"tenant")}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let plaintext = STANDARD
        .decode(body["data"]["plaintext"].as_str().expect("plaintext"))
        .expect("base64");
    assert_eq!(plaintext, b"from gRPC");

    // And back again: REST rewraps after a gRPC rotation, gRPC decrypts.
    transit
        .rotate_key(root(pb::RotateKeyRequest {
            key: "shared".into(),
            ..Default::default()
        }))
        .await
        .expect("rotate");
    let (status, body) = server
        .rest_post(
            "transit/rewrap/shared",
            json!({"ciphertext": encrypted.ciphertext, "context": STANDARD.encode(b"tenant")}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let rewrapped = body["data"]["ciphertext"].as_str().expect("ciphertext");
    assert!(rewrapped.starts_with("vault:v2:"), "{rewrapped}");
    let opened = transit
        .decrypt(root(pb::DecryptRequest {
            context: b"tenant".to_vec(),
            ..decrypt_request("shared", rewrapped)
        }))
        .await
        .expect("gRPC decrypt of a REST rewrap")
        .into_inner();
    assert_eq!(opened.plaintext, b"from gRPC");
}
