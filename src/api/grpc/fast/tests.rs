//! The fast path answers as tonic does: each case runs the same request
//! through tonic's routes and through [`serve`], in process, and compares
//! the status, headers, message bytes and trailers.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use tower::ServiceExt as _;

use super::*;
use crate::api::grpc::services;
use crate::auth::TokenRequest;
use crate::service::{RequestContext, Service, ServiceOptions, Transport};
use crate::storage::MemoryStorage;

const ROOT: &str = "root";

/// A service initialized and unsealed, with its tonic routes and the
/// Transit service they hold.
struct Fixture {
    service: Arc<Service>,
    routes: tonic::service::Routes,
    transit: TransitApi,
}

impl Fixture {
    fn new() -> Self {
        let service = Arc::new(
            Service::new(Arc::new(MemoryStorage::new()), ServiceOptions::default())
                .expect("service"),
        );
        let init = service.init(1, 1, Some(ROOT)).expect("init");
        service
            .unseal(init.shares[0].expose_secret())
            .expect("unseal");
        let (routes, transit, _health) = services(service.clone()).expect("services");
        Self {
            service,
            routes: routes.prepare(),
            transit,
        }
    }

    /// A token whose only policy is `policy`.
    fn token_with_policy(&self, policy: &str) -> String {
        let state = self.service.unsealed().expect("unsealed");
        state.auth.put_policy("limited", policy).expect("policy");
        let root = RequestContext {
            token: Some(ROOT),
            transport: Transport::Grpc,
            audit: None,
        };
        let request = TokenRequest {
            policies: vec!["limited".to_owned()],
            ..TokenRequest::default()
        };
        let issued = self
            .service
            .create_token(&root, "auth/token/create", &request)
            .expect("token");
        issued.token.expose_secret().to_owned()
    }

    /// The answer of tonic, then of the fast path, to the same request.
    async fn both(&self, path: &str, token: Option<&str>, body: Bytes) -> (Answer, Answer) {
        let tonic = self
            .routes
            .clone()
            .oneshot(request(path, token, body.clone()).map(Body::new))
            .await
            .expect("tonic answers");
        let method = Unary::from_path(path).expect("a unary Transit method");
        let fast = serve(method, &self.transit, request(path, token, body), || {
            self.routes.clone()
        })
        .await;
        (Answer::of(tonic).await, Answer::of(fast).await)
    }

    /// Asserts that both answer alike, and returns the answer.
    async fn same(&self, path: &str, token: Option<&str>, body: Bytes) -> Answer {
        let (tonic, fast) = self.both(path, token, body).await;
        assert_eq!(fast, tonic, "{path}");
        fast
    }
}

fn request(path: &str, token: Option<&str>, body: Bytes) -> http::Request<Full<Bytes>> {
    let mut builder = http::Request::post(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        builder = builder.header("x-vault-token", token);
    }
    builder.body(Full::new(body)).expect("request")
}

/// A length-prefixed, uncompressed message.
fn frame(message: &impl Message) -> Bytes {
    let encoded = message.encode_to_vec();
    let mut framed = vec![0];
    framed.extend_from_slice(&u32::try_from(encoded.len()).expect("small").to_be_bytes());
    framed.extend_from_slice(&encoded);
    framed.into()
}

/// Everything a client sees of an answer.
#[derive(Debug, PartialEq)]
struct Answer {
    status: http::StatusCode,
    headers: HeaderMap,
    data: Vec<u8>,
    trailers: Option<HeaderMap>,
}

impl Answer {
    async fn of<B>(response: http::Response<B>) -> Self
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::fmt::Debug,
    {
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.expect("body");
        let trailers = collected.trailers().cloned();
        Self {
            status: parts.status,
            headers: parts.headers,
            data: collected.to_bytes().to_vec(),
            trailers,
        }
    }

    /// `grpc-status` and `grpc-message`, from the headers (trailers-only)
    /// or the trailers.
    fn grpc_status(&self) -> (String, String) {
        let map = self.trailers.as_ref().unwrap_or(&self.headers);
        let get = |name: &str| {
            map.get(name)
                .map(|v| v.to_str().expect("ASCII").to_owned())
                .unwrap_or_default()
        };
        (get("grpc-status"), get("grpc-message"))
    }

    fn code(&self) -> tonic::Code {
        tonic::Code::from_bytes(self.grpc_status().0.as_bytes())
    }
}

fn encrypt(key: &str) -> pb::EncryptRequest {
    pb::EncryptRequest {
        key: key.to_owned(),
        plaintext: b"attack at dawn".to_vec(),
        // Convergent encryption with a context is deterministic, so both
        // answers hold the same ciphertext.
        context: b"row 7".to_vec(),
        convergent_encryption: true,
        ..pb::EncryptRequest::default()
    }
}

const ENCRYPT: &str = "/cipherd.v1.Transit/Encrypt";
const DECRYPT: &str = "/cipherd.v1.Transit/Decrypt";

#[tokio::test]
async fn success_is_answered_as_tonic_does() {
    let fixture = Fixture::new();
    // Creates the key, so that both calls below find it.
    fixture
        .same(ENCRYPT, Some(ROOT), frame(&encrypt("convergent")))
        .await;
    let answer = fixture
        .same(ENCRYPT, Some(ROOT), frame(&encrypt("convergent")))
        .await;
    assert_eq!(answer.status, http::StatusCode::OK);
    assert_eq!(answer.grpc_status(), ("0".to_owned(), String::new()));
    assert_eq!(
        answer.headers.get("content-type").unwrap(),
        "application/grpc"
    );
    let response = pb::EncryptResponse::decode(&answer.data[PREFIX..]).expect("message");
    assert!(response.ciphertext.starts_with("vault:v1:"));

    let decrypt = pb::DecryptRequest {
        key: "convergent".to_owned(),
        ciphertext: response.ciphertext,
        context: b"row 7".to_vec(),
        ..pb::DecryptRequest::default()
    };
    let answer = fixture.same(DECRYPT, Some(ROOT), frame(&decrypt)).await;
    let plaintext = pb::DecryptResponse::decode(&answer.data[PREFIX..]).expect("message");
    assert_eq!(plaintext.plaintext, b"attack at dawn");

    let hmac = pb::HmacRequest {
        key: "convergent".to_owned(),
        input: b"data".to_vec(),
        ..pb::HmacRequest::default()
    };
    fixture
        .same("/cipherd.v1.Transit/Hmac", Some(ROOT), frame(&hmac))
        .await;
    let read = pb::ReadKeyRequest {
        key: "convergent".to_owned(),
        ..pb::ReadKeyRequest::default()
    };
    fixture
        .same("/cipherd.v1.Transit/ReadKey", Some(ROOT), frame(&read))
        .await;
}

#[tokio::test]
async fn errors_are_answered_as_tonic_does() {
    let fixture = Fixture::new();
    fixture
        .same(ENCRYPT, Some(ROOT), frame(&encrypt("present")))
        .await;

    // Permission denied: a token that may only read other paths.
    let limited = fixture.token_with_policy(r#"path "transit/keys/*" { capabilities = ["read"] }"#);
    let answer = fixture
        .same(ENCRYPT, Some(&limited), frame(&encrypt("present")))
        .await;
    assert_eq!(answer.code(), tonic::Code::PermissionDenied);
    // An error is a trailers-only answer, as tonic writes it.
    assert!(answer.trailers.is_none() && answer.data.is_empty());

    // No token at all.
    let answer = fixture
        .same(ENCRYPT, None, frame(&encrypt("present")))
        .await;
    assert_ne!(answer.code(), tonic::Code::Ok);
    assert_eq!(answer.code(), tonic::Code::PermissionDenied);
    assert!(answer.trailers.is_none() && answer.data.is_empty());

    // Invalid argument: a key name with a slash, a bad hash algorithm.
    let answer = fixture
        .same(ENCRYPT, Some(ROOT), frame(&encrypt("a/b")))
        .await;
    assert_eq!(answer.code(), tonic::Code::InvalidArgument);
    let hash = pb::HashRequest {
        input: b"x".to_vec(),
        algorithm: "md5".to_owned(),
        ..pb::HashRequest::default()
    };
    let answer = fixture
        .same("/cipherd.v1.Transit/Hash", Some(ROOT), frame(&hash))
        .await;
    assert_eq!(answer.code(), tonic::Code::InvalidArgument);
    // The message is in the header (`same` holds it to tonic's encoding).
    assert!(!answer.grpc_status().1.is_empty());
    assert!(
        answer.grpc_status().1.contains("md5"),
        "{:?}",
        answer.grpc_status()
    );

    // Not found: decrypting with a key that does not exist.
    let decrypt = pb::DecryptRequest {
        key: "absent".to_owned(),
        ciphertext: "vault:v1:AAAA".to_owned(),
        ..pb::DecryptRequest::default()
    };
    let answer = fixture.same(DECRYPT, Some(ROOT), frame(&decrypt)).await;
    assert_ne!(answer.code(), tonic::Code::Ok);
    assert_eq!(answer.code(), tonic::Code::NotFound);

    // A sealed server.
    fixture.service.seal_now();
    let answer = fixture
        .same(ENCRYPT, Some(ROOT), frame(&encrypt("present")))
        .await;
    assert_eq!(answer.code(), tonic::Code::Unavailable);
}

#[tokio::test]
async fn not_found_is_answered_as_tonic_does() {
    let fixture = Fixture::new();
    let read = pb::ReadKeyRequest {
        key: "absent".to_owned(),
        ..pb::ReadKeyRequest::default()
    };
    let answer = fixture
        .same("/cipherd.v1.Transit/ReadKey", Some(ROOT), frame(&read))
        .await;
    assert_eq!(answer.code(), tonic::Code::NotFound);
}

/// Every unary method is served here, at the path tonic serves it, and an
/// empty message gets tonic's answer (mostly "missing key name").
#[tokio::test]
async fn every_unary_method_matches_tonic() {
    let fixture = Fixture::new();
    for method in Unary::ALL {
        let path = method.path();
        assert_eq!(Unary::from_path(path), Some(*method));
        // The path names the method, and the method takes its own request
        // message (a wrong pairing would still compile).
        let rpc = path.strip_prefix("/cipherd.v1.Transit/").expect(path);
        let (variant, request) = method.names();
        assert_eq!(
            (variant, request),
            (rpc, format!("{rpc}Request").as_str()),
            "{path}"
        );
        let (tonic, fast) = fixture.both(path, Some(ROOT), frame(&())).await;
        assert_ne!(tonic.code(), tonic::Code::Unimplemented, "{path}");
        if *method == Unary::Random {
            // Random bytes differ; the framing must not.
            assert_eq!(
                (&fast.status, &fast.headers),
                (&tonic.status, &tonic.headers)
            );
            assert_eq!(fast.trailers, tonic.trailers);
            assert_eq!(fast.data.len(), tonic.data.len());
        } else {
            assert_eq!(fast, tonic, "{path}");
        }
    }
    assert_eq!(Unary::from_path("/cipherd.v1.Transit/Bulk"), None);
    assert_eq!(Unary::from_path("/cipherd.v1.Sys/SealStatus"), None);
}

/// Frames the fast path does not take get tonic's own answer (never a
/// panic): compressed, truncated, undecodable, oversized, doubled, empty.
#[tokio::test]
async fn other_frames_get_tonics_answer() {
    let fixture = Fixture::new();
    let good = frame(&encrypt("k"));
    let mut compressed = good.to_vec();
    compressed[0] = 1;
    let mut bad_flag = good.to_vec();
    bad_flag[0] = 7;
    let truncated = good.slice(..good.len() - 3);
    let mut doubled = good.to_vec();
    doubled.extend_from_slice(&good);
    let garbage = Bytes::from_static(&[0, 0, 0, 0, 3, 0xff, 0xff, 0xff]);
    let mut oversized = vec![0];
    oversized.extend_from_slice(&u32::MAX.to_be_bytes());
    oversized.extend_from_slice(b"abc");
    let cases: [(&str, Bytes, tonic::Code); 7] = [
        ("compressed flag", compressed.into(), tonic::Code::Internal),
        ("invalid flag", bad_flag.into(), tonic::Code::Internal),
        ("truncated", truncated, tonic::Code::Internal),
        ("undecodable", garbage, tonic::Code::Internal),
        ("over the limit", oversized.into(), tonic::Code::OutOfRange),
        ("two messages", doubled.into(), tonic::Code::Ok),
        ("empty body", Bytes::new(), tonic::Code::Internal),
    ];
    for (case, body, code) in cases {
        let (tonic, fast) = fixture.both(ENCRYPT, Some(ROOT), body).await;
        assert_eq!(tonic.code(), code, "{case}: {tonic:?}");
        if code == tonic::Code::Ok {
            // Two encryptions: fresh nonces, same framing.
            assert_eq!(fast.trailers, tonic.trailers, "{case}");
            assert_eq!(fast.data.len(), tonic.data.len(), "{case}");
        } else {
            assert_eq!(fast, tonic, "{case}");
        }
    }
}

#[test]
fn frame_states() {
    assert_eq!(frame_state(&[]), FrameState::Partial);
    assert_eq!(frame_state(&[0, 0, 0, 0]), FrameState::Partial);
    assert_eq!(frame_state(&[0, 0, 0, 0, 0]), FrameState::Complete);
    assert_eq!(frame_state(&[0, 0, 0, 0, 2, 1]), FrameState::Partial);
    assert_eq!(frame_state(&[0, 0, 0, 0, 1, 1]), FrameState::Complete);
    assert_eq!(frame_state(&[0, 0, 0, 0, 1, 1, 0]), FrameState::Other);
    assert_eq!(frame_state(&[1, 0, 0, 0, 0]), FrameState::Other);
    assert_eq!(frame_state(&[0, 0xff, 0xff, 0xff, 0xff]), FrameState::Other);
}

#[test]
fn only_identity_encoding_is_taken() {
    let mut headers = HeaderMap::new();
    assert!(identity_encoding(&headers));
    headers.insert("grpc-encoding", HeaderValue::from_static("identity"));
    assert!(identity_encoding(&headers));
    headers.insert("grpc-encoding", HeaderValue::from_static("gzip"));
    assert!(!identity_encoding(&headers));
}

/// The fast path's answer to an Encrypt call whose body is `frames`.
async fn encrypt_in_frames(fixture: &Fixture, frames: Vec<Frame<Bytes>>) -> Answer {
    let frames = frames.into_iter().map(Ok::<_, Infallible>);
    let body = http_body_util::StreamBody::new(tokio_stream::iter(frames));
    let request = request(ENCRYPT, Some(ROOT), Bytes::new()).map(|_| body);
    let answer = serve(Unary::Encrypt, &fixture.transit, request, || {
        fixture.routes.clone()
    })
    .await;
    let answer = Answer::of(answer).await;
    assert_eq!(answer.code(), tonic::Code::Ok, "{answer:?}");
    let response = pb::EncryptResponse::decode(&answer.data[PREFIX..]).expect("message");
    assert!(response.ciphertext.starts_with("vault:v1:"));
    answer
}

/// A body that arrives in pieces, and one with trailers (which go to tonic:
/// it merges them into the metadata), are answered.
#[tokio::test]
async fn split_bodies_and_trailers() {
    let fixture = Fixture::new();
    let good = frame(&encrypt("split"));
    for cut in [1, 4, 5, 9, good.len() - 1] {
        let frames = vec![
            Frame::data(good.slice(..cut)),
            Frame::data(good.slice(cut..)),
        ];
        encrypt_in_frames(&fixture, frames).await;
    }
    // A client that ends the stream with an empty DATA frame of its own.
    let frames = vec![Frame::data(good.clone()), Frame::data(Bytes::new())];
    encrypt_in_frames(&fixture, frames).await;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-extra", HeaderValue::from_static("1"));
    let frames = vec![Frame::data(good.clone()), Frame::trailers(trailers)];
    encrypt_in_frames(&fixture, frames).await;
}
