//! The unary fast path: the framing of unary `cipherd.v1.Transit` calls,
//! ahead of tonic's generic server.
//!
//! For a unary call tonic routes the path through an axum router, builds a
//! codec, a `Streaming` decoder and an `EncodeBody` stream, and boxes each of
//! them: about as much CPU per call as the engine's own work (BENCHMARKS.md,
//! "Unary gRPC vs REST at 1 caller"). [`serve`] answers the unary Transit
//! methods instead: it reads the one length-prefixed message, decodes it with
//! prost, calls the **same** [`Transit`](pb::transit_server::Transit) method
//! tonic would call (so auth, policies, audit and error mapping are those of
//! the tonic path, in `transit`, `keys` and `batch`), and writes the answer
//! the way tonic writes it: the response metadata and `content-type:
//! application/grpc`, one message, `grpc-status: 0` trailers; an error as a
//! trailers-only response (`Status::into_http`, tonic's own).
//!
//! It owns only this framing. Whatever it does not handle byte for byte the
//! way tonic would goes to tonic, with the body bytes already read put back
//! in front: a compressed or malformed frame, a message over
//! [`MAX_MESSAGE_BYTES`], more than one message, request trailers, a message
//! prost cannot decode. tonic then gives its own answer. `conn` picks which
//! calls come here (unary Transit paths without a `grpc-encoding` other than
//! `identity`), and applies `grpc-timeout` to both paths.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf as _, Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue};
use http_body::Frame;
use http_body_util::{BodyExt as _, Empty};
use prost::Message;
use tonic::Status;
use tonic::body::Body;
use tower::Service;

use super::MAX_MESSAGE_BYTES;
use super::pb;
use super::pb::transit_server::Transit as _;
use super::transit::TransitApi;

/// Length of the gRPC message prefix: a compression flag and a big-endian
/// `u32` length.
const PREFIX: usize = 5;

/// `grpc-status: 0`, the trailer of every successful call.
const STATUS_OK: HeaderValue = HeaderValue::from_static("0");

/// The answer to a gRPC call: a unary answer written here, or tonic's.
#[derive(Debug)]
pub(super) enum ResponseBody {
    /// From [`serve`]: the message and the trailers.
    Unary(UnaryBody),
    /// From tonic (a trailers-only error answer is tonic's empty body too).
    Tonic(Body),
}

impl From<Body> for ResponseBody {
    fn from(body: Body) -> Self {
        Self::Tonic(body)
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        match self.get_mut() {
            Self::Unary(body) => Pin::new(body).poll_frame(cx),
            Self::Tonic(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Unary(body) => body.is_end_stream(),
            Self::Tonic(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            // Unknown, as tonic's is: an exact hint would make hyper add a
            // `content-length` header tonic does not send.
            Self::Unary(_) => http_body::SizeHint::default(),
            Self::Tonic(body) => body.size_hint(),
        }
    }
}

/// Serves a call to `method`, whose request has no `grpc-encoding` other
/// than `identity` (see [`identity_encoding`]); anything it does not handle
/// goes to the service `tonic` makes (tonic's routes), with the body bytes
/// already read.
pub(super) async fn serve<B, S>(
    method: Unary,
    transit: &TransitApi,
    request: http::Request<B>,
    tonic: impl FnOnce() -> S,
) -> http::Response<ResponseBody>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<tonic::codegen::StdError>,
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    let (parts, body) = request.into_parts();
    let (parts, buffered) = match read_message(body).await {
        Ok(Read::Message(frame)) => match method.call(transit, parts, frame).await {
            Ok(response) => return response,
            Err((parts, frame)) => (parts, Buffered::<B>::new(Some(frame), None, None)),
        },
        Ok(Read::Other(buffered)) => (parts, buffered),
        // The client reset the stream or broke the connection: as tonic
        // does, answer with the status of the failure.
        Err(status) => return status.into_http::<Body>().map(ResponseBody::from),
    };
    let request = http::Request::from_parts(parts, Body::new(buffered));
    match tower::ServiceExt::oneshot(tonic(), request).await {
        Ok(response) => response.map(ResponseBody::from),
        Err(never) => match never {},
    }
}

/// No `grpc-encoding`, or `identity`: the only request encoding the server
/// accepts (it enables no compression).
pub(super) fn identity_encoding(headers: &HeaderMap) -> bool {
    // A constant name: a `&str` key is parsed and checked on every lookup.
    const GRPC_ENCODING: http::HeaderName = http::HeaderName::from_static("grpc-encoding");
    headers
        .get(GRPC_ENCODING)
        .is_none_or(|encoding| encoding.as_bytes() == b"identity")
}

/// What the request body held.
enum Read<B> {
    /// Exactly one uncompressed message within the size limit, and nothing
    /// after it: the frame, prefix included.
    Message(Bytes),
    /// Anything else, for tonic: what was read, then the rest of the body.
    Other(Buffered<B>),
}

/// Reads the body of a unary call, stopping as soon as it is not one
/// uncompressed message of at most [`MAX_MESSAGE_BYTES`] (so a large or
/// malformed body is not buffered here).
async fn read_message<B>(mut body: B) -> Result<Read<B>, Status>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<tonic::codegen::StdError>,
{
    // Usually the whole message comes in one DATA frame: no copy then.
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    loop {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.map_err(|error| Status::from_error(error.into()))?;
        let data = match frame.into_data() {
            // A client may end the stream with an empty DATA frame of its
            // own: nothing to append (and no reason to copy the message).
            Ok(data) if data.is_empty() => continue,
            Ok(data) => data,
            Err(frame) => {
                // Request trailers become metadata in tonic: leave them to it.
                let head = take_read(&mut first, joined);
                return Ok(Read::Other(Buffered::new(
                    Some(head),
                    frame.into_trailers().ok(),
                    Some(body),
                )));
            }
        };
        if first.is_none() && joined.is_empty() {
            first = Some(data);
        } else {
            if let Some(first) = first.take() {
                joined.extend_from_slice(&first);
            }
            joined.extend_from_slice(&data);
        }
        let read = first.as_deref().unwrap_or(&joined);
        match frame_state(read) {
            FrameState::Partial => {}
            FrameState::Complete if body.is_end_stream() => break,
            FrameState::Complete => {}
            FrameState::Other => {
                let head = take_read(&mut first, joined);
                return Ok(Read::Other(Buffered::new(Some(head), None, Some(body))));
            }
        }
    }
    let head = take_read(&mut first, joined);
    Ok(match frame_state(&head) {
        FrameState::Complete => Read::Message(head),
        // Empty, truncated or not ours: tonic names the problem.
        FrameState::Partial | FrameState::Other => {
            Read::Other(Buffered::new(Some(head), None, None))
        }
    })
}

/// The bytes read so far.
fn take_read(first: &mut Option<Bytes>, joined: BytesMut) -> Bytes {
    first.take().unwrap_or_else(|| joined.freeze())
}

/// How far the bytes read so far go towards one message.
#[derive(Debug, PartialEq, Eq)]
enum FrameState {
    /// Less than one whole message so far.
    Partial,
    /// Exactly one whole message.
    Complete,
    /// Compressed, over the limit, or more than one message.
    Other,
}

fn frame_state(read: &[u8]) -> FrameState {
    let Some(prefix) = read.get(..PREFIX) else {
        return FrameState::Partial;
    };
    let mut length = &prefix[1..];
    let length = length.get_u32() as usize;
    if prefix[0] != 0 || length > MAX_MESSAGE_BYTES {
        return FrameState::Other;
    }
    match read.len().cmp(&(PREFIX + length)) {
        std::cmp::Ordering::Less => FrameState::Partial,
        std::cmp::Ordering::Equal => FrameState::Complete,
        std::cmp::Ordering::Greater => FrameState::Other,
    }
}

/// A body held partly in memory: a data frame, trailers, then whatever is
/// left of another body. It carries a request's bytes already read back to
/// tonic, and a unary answer ([`UnaryBody`]: the message, then the trailers).
#[derive(Debug)]
pub(super) struct Buffered<B> {
    head: Option<Bytes>,
    trailers: Option<HeaderMap>,
    rest: Option<B>,
}

impl<B> Buffered<B> {
    fn new(head: Option<Bytes>, trailers: Option<HeaderMap>, rest: Option<B>) -> Self {
        Self {
            head: head.filter(|head| !head.is_empty()),
            trailers,
            rest,
        }
    }
}

/// The body of a unary answer written here.
pub(super) type UnaryBody = Buffered<Empty<Bytes>>;

impl<B> http_body::Body for Buffered<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest)
                .poll_frame(cx)
                .map_err(|error| Status::from_error(error.into())),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(B::is_end_stream)
    }
}

/// Decodes the message of `frame` and runs it through `handler`, the Transit
/// method tonic would call. A message prost cannot decode is handed back
/// with the request head, for tonic to report.
async fn call<Req, Resp, Fut>(
    parts: http::request::Parts,
    frame: Bytes,
    handler: impl FnOnce(tonic::Request<Req>) -> Fut,
) -> Result<http::Response<ResponseBody>, (http::request::Parts, Bytes)>
where
    Req: Message + Default,
    Resp: Message,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let message = match Req::decode(&frame[PREFIX..]) {
        Ok(message) => message,
        Err(_) => return Err((parts, frame)),
    };
    let request = tonic::Request::from_http(http::Request::from_parts(parts, message));
    Ok(respond(handler(request).await))
}

/// The answer tonic writes for `result`: headers from the response metadata
/// and `content-type: application/grpc`, the message, then `grpc-status: 0`;
/// or, for an error, a trailers-only response.
fn respond<Resp: Message>(
    result: Result<tonic::Response<Resp>, Status>,
) -> http::Response<ResponseBody> {
    let response = match result {
        Ok(response) => response,
        Err(status) => return status.into_http::<Body>().map(ResponseBody::from),
    };
    let (metadata, message, extensions) = response.into_parts();
    let mut headers = metadata.into_headers();
    // tonic drops these from response metadata (`into_sanitized_headers`).
    // The handlers set no metadata: skip the lookups then.
    if !headers.is_empty() {
        for reserved in [
            "te",
            "content-type",
            "grpc-message",
            "grpc-message-type",
            "grpc-status",
        ] {
            headers.remove(reserved);
        }
    }
    headers.insert(CONTENT_TYPE, tonic::metadata::GRPC_CONTENT_TYPE);
    let mut trailers = HeaderMap::with_capacity(1);
    let length = message.encoded_len();
    let data = if length > MAX_MESSAGE_BYTES {
        // tonic's encoder refuses it after the headers: the status goes in
        // the trailers, with no message.
        let status = Status::out_of_range(format!(
            "Error, encoded message length too large: found {length} bytes, the limit is: {MAX_MESSAGE_BYTES} bytes"
        ));
        if let Err(status) = status.add_header(&mut trailers) {
            return status.into_http::<Body>().map(ResponseBody::from);
        }
        None
    } else {
        let mut buf = BytesMut::with_capacity(PREFIX + length);
        buf.extend_from_slice(&[0]);
        // At most MAX_MESSAGE_BYTES (64 MiB), so it fits.
        buf.extend_from_slice(&u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes());
        message.encode_raw(&mut buf);
        trailers.insert(Status::GRPC_STATUS, STATUS_OK);
        Some(buf.freeze())
    };
    let body = UnaryBody::new(data, Some(trailers), None);
    let mut response = http::Response::new(ResponseBody::Unary(body));
    *response.version_mut() = http::Version::HTTP_2;
    *response.headers_mut() = headers;
    *response.extensions_mut() = extensions;
    response
}

/// Declares the unary Transit methods served here: the path, the message
/// type and the [`Transit`](pb::transit_server::Transit) method of each.
macro_rules! unary_methods {
    ($($variant:ident => $path:literal, $request:ty, $method:ident;)*) => {
        /// A unary method of `cipherd.v1.Transit`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum Unary {
            $($variant,)*
        }

        impl Unary {
            /// Every method, for tests.
            #[cfg(test)]
            const ALL: &[Unary] = &[$(Unary::$variant,)*];

            /// The method served at `path`, if it is a unary Transit one.
            pub(super) fn from_path(path: &str) -> Option<Self> {
                match path {
                    $($path => Some(Self::$variant),)*
                    _ => None,
                }
            }

            #[cfg(test)]
            fn path(self) -> &'static str {
                match self {
                    $(Self::$variant => $path,)*
                }
            }

            /// The variant's name and its request message's name: the
            /// compiler ties the message to the handler, a test ties both
            /// to the path.
            #[cfg(test)]
            fn names(self) -> (&'static str, &'static str) {
                match self {
                    $(Self::$variant => (stringify!($variant), <$request as prost::Name>::NAME),)*
                }
            }

            async fn call(
                self,
                transit: &TransitApi,
                parts: http::request::Parts,
                frame: Bytes,
            ) -> Result<http::Response<ResponseBody>, (http::request::Parts, Bytes)> {
                match self {
                    $(Self::$variant => {
                        call(parts, frame, |r: tonic::Request<$request>| transit.$method(r)).await
                    })*
                }
            }
        }
    };
}

unary_methods! {
    Encrypt => "/cipherd.v1.Transit/Encrypt", pb::EncryptRequest, encrypt;
    Decrypt => "/cipherd.v1.Transit/Decrypt", pb::DecryptRequest, decrypt;
    Rewrap => "/cipherd.v1.Transit/Rewrap", pb::RewrapRequest, rewrap;
    Datakey => "/cipherd.v1.Transit/Datakey", pb::DatakeyRequest, datakey;
    Sign => "/cipherd.v1.Transit/Sign", pb::SignRequest, sign;
    Verify => "/cipherd.v1.Transit/Verify", pb::VerifyRequest, verify;
    Hmac => "/cipherd.v1.Transit/Hmac", pb::HmacRequest, hmac;
    VerifyHmac => "/cipherd.v1.Transit/VerifyHmac", pb::VerifyHmacRequest, verify_hmac;
    Hash => "/cipherd.v1.Transit/Hash", pb::HashRequest, hash;
    Random => "/cipherd.v1.Transit/Random", pb::RandomRequest, random;
    CreateKey => "/cipherd.v1.Transit/CreateKey", pb::CreateKeyRequest, create_key;
    ReadKey => "/cipherd.v1.Transit/ReadKey", pb::ReadKeyRequest, read_key;
    ListKeys => "/cipherd.v1.Transit/ListKeys", pb::ListKeysRequest, list_keys;
    RotateKey => "/cipherd.v1.Transit/RotateKey", pb::RotateKeyRequest, rotate_key;
    UpdateKeyConfig => "/cipherd.v1.Transit/UpdateKeyConfig", pb::UpdateKeyConfigRequest, update_key_config;
    TrimKey => "/cipherd.v1.Transit/TrimKey", pb::TrimKeyRequest, trim_key;
    DeleteKey => "/cipherd.v1.Transit/DeleteKey", pb::DeleteKeyRequest, delete_key;
    EncryptBatch => "/cipherd.v1.Transit/EncryptBatch", pb::EncryptBatchRequest, encrypt_batch;
    DecryptBatch => "/cipherd.v1.Transit/DecryptBatch", pb::DecryptBatchRequest, decrypt_batch;
    RewrapBatch => "/cipherd.v1.Transit/RewrapBatch", pb::RewrapBatchRequest, rewrap_batch;
    SignBatch => "/cipherd.v1.Transit/SignBatch", pb::SignBatchRequest, sign_batch;
    VerifyBatch => "/cipherd.v1.Transit/VerifyBatch", pb::VerifyBatchRequest, verify_batch;
    HmacBatch => "/cipherd.v1.Transit/HmacBatch", pb::HmacBatchRequest, hmac_batch;
}

#[cfg(test)]
mod tests;
