//! The unary fast path on the wire: calls sent frame by frame over a raw
//! HTTP/2 connection to `cipherd::api::grpc::serve`, for what the generated
//! clients never send: a compressed frame, a `grpc-encoding` the server does
//! not accept, an unknown method, a message split across DATA frames that
//! arrive apart, a `grpc-timeout` shorter than the call. Every case gets a
//! gRPC status, and the connection keeps serving.
//!
//! `grpc_transit.rs` drives every RPC (unary, batch, `Bulk`, `Sys`, health,
//! reflection) through the generated clients, over the same server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use tokio::net::{TcpListener, TcpStream};

use cipherd::api::grpc::{self, pb};
use cipherd::service::{Service, ServiceOptions};
use cipherd::storage::MemoryStorage;

const ROOT: &str = "root";

/// Serves an unsealed service with root token `root` on 127.0.0.1.
async fn server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let service =
        Service::new(Arc::new(MemoryStorage::new()), ServiceOptions::default()).expect("service");
    let init = service.init(1, 1, Some(ROOT)).expect("init");
    service
        .unseal(init.shares[0].expose_secret())
        .expect("unseal");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        grpc::serve(listener, Arc::new(service), std::future::pending())
            .await
            .expect("gRPC server");
    });
    (address, task)
}

/// An HTTP/2 connection to the server.
async fn connect(address: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(address).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// What came back: the HTTP status, `grpc-status` and `grpc-message` (from
/// the trailers, or from the headers of a trailers-only answer), and the
/// message bytes.
#[derive(Debug)]
struct Answer {
    http: http::StatusCode,
    code: tonic::Code,
    message: String,
    data: Vec<u8>,
}

/// Sends `frames` as the DATA frames of a call to `path` (a pause between
/// them), with `headers` beside the usual gRPC ones.
async fn call(
    client: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    headers: &[(&str, &str)],
    frames: Vec<Bytes>,
) -> Answer {
    let mut request = http::Request::post(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-vault-token", ROOT);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(()).expect("request");
    // The handle `ready` hands back is the one with a stream slot reserved.
    let mut client = client.clone().ready().await.expect("ready");
    let (response, mut send) = client.send_request(request, false).expect("send");
    let count = frames.len();
    for (index, frame) in frames.into_iter().enumerate() {
        if index > 0 {
            // The first part has been served (or set aside) by then.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        send.send_data(frame, index + 1 == count).expect("data");
    }
    let response = response.await.expect("response");
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("chunk");
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.expect("trailers");
    let status = trailers.as_ref().unwrap_or(&parts.headers);
    let code = status
        .get("grpc-status")
        .map_or(tonic::Code::Unknown, |value| {
            tonic::Code::from_bytes(value.as_bytes())
        });
    let message = status
        .get("grpc-message")
        .map(|value| value.to_str().expect("ASCII").to_owned())
        .unwrap_or_default();
    Answer {
        http: parts.status,
        code,
        message,
        data,
    }
}

/// A length-prefixed message, with compression flag `flag`.
fn frame(flag: u8, message: &impl prost::Message) -> Bytes {
    let encoded = message.encode_to_vec();
    let mut framed = vec![flag];
    framed.extend_from_slice(&u32::try_from(encoded.len()).expect("small").to_be_bytes());
    framed.extend_from_slice(&encoded);
    framed.into()
}

fn encrypt() -> pb::EncryptRequest {
    pb::EncryptRequest {
        key: "wire".to_owned(),
        plaintext: b"hello".to_vec(),
        ..pb::EncryptRequest::default()
    }
}

const ENCRYPT: &str = "/cipherd.v1.Transit/Encrypt";

fn assert_encrypted(answer: &Answer) {
    assert_eq!(answer.code, tonic::Code::Ok, "{answer:?}");
    let response = pb::EncryptResponse::decode(&answer.data[5..]).expect("EncryptResponse");
    assert!(response.ciphertext.starts_with("vault:v1:"), "{response:?}");
}

#[tokio::test]
async fn odd_calls_get_statuses_and_the_connection_goes_on() {
    let (address, _server) = server().await;
    let mut client = connect(address).await;

    let answer = call(&mut client, ENCRYPT, &[], vec![frame(0, &encrypt())]).await;
    assert_eq!(answer.http, http::StatusCode::OK);
    assert_encrypted(&answer);

    // A compressed flag without `grpc-encoding`: tonic's protocol error.
    let answer = call(&mut client, ENCRYPT, &[], vec![frame(1, &encrypt())]).await;
    assert_eq!(answer.code, tonic::Code::Internal, "{answer:?}");
    assert!(answer.message.contains("compressed"), "{answer:?}");

    // An encoding the server does not accept.
    let answer = call(
        &mut client,
        ENCRYPT,
        &[("grpc-encoding", "gzip")],
        vec![frame(1, &encrypt())],
    )
    .await;
    assert_eq!(answer.code, tonic::Code::Unimplemented, "{answer:?}");

    // Not a protobuf message.
    let garbage = Bytes::from_static(&[0, 0, 0, 0, 3, 0xff, 0xff, 0xff]);
    let answer = call(&mut client, ENCRYPT, &[], vec![garbage]).await;
    assert_eq!(answer.code, tonic::Code::Internal, "{answer:?}");

    // An unknown method, and an unknown service.
    let answer = call(
        &mut client,
        "/cipherd.v1.Transit/Nope",
        &[],
        vec![frame(0, &encrypt())],
    )
    .await;
    assert_eq!(answer.code, tonic::Code::Unimplemented, "{answer:?}");
    let answer = call(&mut client, "/nope.Nope/Nope", &[], vec![frame(0, &())]).await;
    assert_eq!(answer.code, tonic::Code::Unimplemented, "{answer:?}");

    // The same connection still serves calls.
    let answer = call(&mut client, ENCRYPT, &[], vec![frame(0, &encrypt())]).await;
    assert_encrypted(&answer);
}

/// A message whose DATA frames arrive apart: the call waits for the rest
/// (its stream task is spawned then) and is answered as usual.
#[tokio::test]
async fn split_message_waits_for_the_rest() {
    let (address, _server) = server().await;
    let mut client = connect(address).await;
    let whole = frame(0, &encrypt());
    for cut in [3, 5, whole.len() - 1] {
        let parts = vec![whole.slice(..cut), whole.slice(cut..)];
        let answer = call(&mut client, ENCRYPT, &[], parts).await;
        assert_encrypted(&answer);
    }
}

/// `grpc-timeout` bounds a call as tonic's server does: CANCELLED
/// "Timeout expired" (here an RSA-4096 key generation outlasts 1 ms).
#[tokio::test]
async fn grpc_timeout_cancels_a_slow_call() {
    let (address, _server) = server().await;
    let mut client = connect(address).await;
    let create = pb::CreateKeyRequest {
        key: "slow".to_owned(),
        r#type: "rsa-4096".to_owned(),
        ..pb::CreateKeyRequest::default()
    };
    let answer = call(
        &mut client,
        "/cipherd.v1.Transit/CreateKey",
        &[("grpc-timeout", "1m")],
        vec![frame(0, &create)],
    )
    .await;
    assert_eq!(answer.code, tonic::Code::Cancelled, "{answer:?}");
    // Percent-encoded on the wire, as every `grpc-message`.
    assert_eq!(answer.message, "Timeout%20expired");
    // A generous deadline changes nothing.
    let answer = call(
        &mut client,
        ENCRYPT,
        &[("grpc-timeout", "10S")],
        vec![frame(0, &encrypt())],
    )
    .await;
    assert_encrypted(&answer);
}
