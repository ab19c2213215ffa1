//! How calls reach the server: one HTTP/2 connection driven through the `h2`
//! crate directly ([`Transport::direct`], what [`Client::connect`] uses for
//! `http://` endpoints), or a tonic [`Channel`] (TLS, timeouts, lazy
//! connections: [`Client::from_channel`]).
//!
//! Why not always the channel: tonic's `Channel` hands every call to a
//! buffer task, and hyper's HTTP/2 client sends a request body from a task of
//! its own, so a unary call's HEADERS and DATA frames leave in two writes,
//! after two task hops. Here a unary call's frames are queued on the
//! connection before its task runs and leave in one write. With 64 callers
//! on one client this made 1.20x the calls of the same client over a
//! `Channel` (`examples/load.rs`; BENCHMARKS.md, "Unary gRPC vs REST, and
//! the Rust client's transport").
//!
//! The direct transport keeps one connection. A call that finds it broken
//! (closed by the server, reset, a failed write) fails with `UNAVAILABLE`
//! marked as a transport failure, which the client's [`RetryPolicy`] retries;
//! the next call connects again.
//!
//! [`Client::connect`]: crate::Client::connect
//! [`Client::from_channel`]: crate::Client::from_channel
//! [`RetryPolicy`]: crate::RetryPolicy

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use h2::client::SendRequest;
use http::uri::{Authority, PathAndQuery, Scheme};
use http_body::{Body as _, Frame};
use tonic::body::Body;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// HTTP/2 flow-control windows, as hyper's client sets them (tonic's
/// `Channel` uses hyper's defaults): large batch answers arrive without
/// waiting for window updates.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

/// The transport a [`Client`](crate::Client) sends its calls over.
#[derive(Clone, Debug)]
pub(crate) enum Transport {
    /// One HTTP/2 connection through `h2`.
    Direct(Direct),
    /// A tonic channel.
    Channel(Channel),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ResponseFuture = Pin<Box<dyn Future<Output = Result<http::Response<Body>, BoxError>> + Send>>;

impl tower_service::Service<http::Request<Body>> for Transport {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            // Readiness is awaited per call, on the connection of the moment.
            Self::Direct(_) => Poll::Ready(Ok(())),
            Self::Channel(channel) => channel.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self {
            Self::Direct(direct) => {
                let direct = direct.clone();
                Box::pin(async move { direct.call(request).await.map_err(Into::into) })
            }
            Self::Channel(channel) => {
                let call = channel.call(request);
                Box::pin(async move { Ok(call.await?.map(Body::new)) })
            }
        }
    }
}

/// A transport failure: the connection could not be made or broke. The
/// source of the `UNAVAILABLE` status such a call fails with, so that the
/// client tells it from a sealed server.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TransportError(String);

fn unavailable(what: &str, error: impl std::fmt::Display) -> Status {
    let message = format!("{what}: {error}");
    let mut status = Status::unavailable(message.clone());
    status.set_source(Arc::new(TransportError(message)));
    status
}

/// One HTTP/2 connection to `authority`, made on first use and again after
/// it broke.
#[derive(Clone, Debug)]
pub(crate) struct Direct {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    scheme: Scheme,
    authority: Authority,
    /// The connection in use; `None` until connected, and after it broke.
    /// Held only to clone or replace it.
    current: std::sync::Mutex<Option<Connection>>,
    /// Held while connecting, so that concurrent calls make one connection.
    connecting: tokio::sync::Mutex<()>,
    /// Connections made so far: numbers them.
    made: std::sync::atomic::AtomicU64,
}

#[derive(Clone, Debug)]
struct Connection {
    number: u64,
    send: SendRequest<Bytes>,
}

impl Direct {
    /// Connects to `authority` over plain TCP (`http://`).
    pub(crate) async fn connect(authority: Authority) -> Result<Self, Status> {
        let direct = Self {
            shared: Arc::new(Shared {
                scheme: Scheme::HTTP,
                authority,
                current: std::sync::Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                made: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        direct.sender().await?;
        Ok(direct)
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<Connection>> {
        // Nothing panics while holding it; a poisoned lock still holds a
        // valid `Option`.
        self.shared
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The connection in use, connecting first if there is none.
    async fn sender(&self) -> Result<Connection, Status> {
        if let Some(current) = self.current().clone() {
            return Ok(current);
        }
        let _connecting = self.shared.connecting.lock().await;
        if let Some(current) = self.current().clone() {
            // Another call connected while this one waited.
            return Ok(current);
        }
        let address = self.shared.authority.as_str();
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|error| unavailable(&format!("connecting to {address}"), error))?;
        // Small calls must not wait for Nagle's algorithm.
        tcp.set_nodelay(true)
            .map_err(|error| unavailable("setting TCP_NODELAY", error))?;
        let (send, driver) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(tcp)
            .await
            .map_err(|error| unavailable("HTTP/2 handshake", error))?;
        // The connection's own task reads and writes its frames. How it
        // ended (the server went away) is what its calls fail with.
        tokio::spawn(async move {
            let _ = driver.await;
        });
        let made = Connection {
            number: self
                .shared
                .made
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            send,
        };
        *self.current() = Some(made.clone());
        Ok(made)
    }

    /// Forgets connection `broken` (unless another call already replaced
    /// it), so that the next call connects again.
    fn forget(&self, broken: &Connection) {
        let mut current = self.current();
        if current
            .as_ref()
            .is_some_and(|current| current.number == broken.number)
        {
            *current = None;
        }
    }

    async fn call(&self, request: http::Request<Body>) -> Result<http::Response<Body>, Status> {
        let (mut head, body) = request.into_parts();
        // tonic's generated clients give the path only; the connection knows
        // the rest.
        let path = head
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        head.uri = http::Uri::builder()
            .scheme(self.shared.scheme.clone())
            .authority(self.shared.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|error| Status::internal(format!("request URI: {error}")))?;

        let sender = self.sender().await?;
        let mut send = match sender.send.clone().ready().await {
            Ok(send) => send,
            Err(error) => {
                self.forget(&sender);
                return Err(unavailable("connection closed", error));
            }
        };
        let mut body = Box::pin(body);
        // What the body has ready now: all of a unary call's request.
        let ready = ReadyFrames::take(body.as_mut()).await?;
        let request = http::Request::from_parts(head, ());
        let ends_here = ready.ended && ready.data.is_empty() && ready.trailers.is_none();
        let (response, mut stream) = match send.send_request(request, ends_here) {
            Ok(sent) => sent,
            Err(error) => {
                self.forget(&sender);
                return Err(unavailable("sending the request", error));
            }
        };
        // A failure of the connection (not just of this call's stream)
        // also makes the next call connect again.
        let failed = |error: h2::Error| {
            if error.is_io() || error.is_go_away() {
                self.forget(&sender);
            }
            stream_error(&error)
        };
        if !ends_here {
            if ready.ended {
                // Queued now, so HEADERS and DATA leave in one write. h2
                // holds data beyond the peer's window until it opens.
                send_ready(&mut stream, ready).map_err(failed)?;
            } else {
                // A streaming request: the rest follows from a task of its
                // own, at the pace the peer's window allows.
                for data in ready.data {
                    stream.send_data(data, false).map_err(failed)?;
                }
                tokio::spawn(pump(body, stream));
            }
        }
        let response = response.await.map_err(failed)?;
        Ok(response.map(|recv| Body::new(ResponseBody::new(recv))))
    }
}

/// The frames a request body had ready when first polled.
struct ReadyFrames {
    data: Vec<Bytes>,
    trailers: Option<http::HeaderMap>,
    /// The body has ended (every frame is above).
    ended: bool,
}

impl ReadyFrames {
    async fn take(mut body: Pin<&mut Body>) -> Result<Self, Status> {
        std::future::poll_fn(|cx| {
            let mut ready = Self {
                data: Vec::new(),
                trailers: None,
                ended: false,
            };
            loop {
                match body.as_mut().poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => ready.data.push(data),
                        Err(frame) => {
                            if let Ok(trailers) = frame.into_trailers() {
                                ready.trailers = Some(trailers);
                            }
                        }
                    },
                    Poll::Ready(Some(Err(status))) => return Poll::Ready(Err(status)),
                    Poll::Ready(None) => {
                        ready.ended = true;
                        return Poll::Ready(Ok(ready));
                    }
                    Poll::Pending => return Poll::Ready(Ok(ready)),
                }
            }
        })
        .await
    }
}

/// Queues every frame of an ended body on `stream`, the last one ending it.
fn send_ready(stream: &mut h2::SendStream<Bytes>, ready: ReadyFrames) -> Result<(), h2::Error> {
    let count = ready.data.len();
    for (at, data) in ready.data.into_iter().enumerate() {
        stream.send_data(data, at + 1 == count && ready.trailers.is_none())?;
    }
    match ready.trailers {
        Some(trailers) => stream.send_trailers(trailers),
        None if count == 0 => stream.send_data(Bytes::new(), true),
        None => Ok(()),
    }
}

/// Sends the rest of a streaming request body, waiting for the peer's
/// window before each piece; resets the stream if the body fails.
async fn pump(mut body: Pin<Box<Body>>, mut stream: h2::SendStream<Bytes>) {
    loop {
        let frame = match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            Some(Ok(frame)) => frame,
            Some(Err(_)) => return stream.send_reset(h2::Reason::CANCEL),
            None => {
                let _ = stream.send_data(Bytes::new(), true);
                return;
            }
        };
        let frame = match frame.into_data() {
            Ok(mut data) => {
                while !data.is_empty() {
                    stream.reserve_capacity(data.len());
                    let granted = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                        Some(Ok(granted)) => granted,
                        // The stream was reset or the connection closed:
                        // the response says why.
                        _ => return,
                    };
                    let piece = data.split_to(granted.min(data.len()));
                    if stream.send_data(piece, false).is_err() {
                        return;
                    }
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(trailers) = frame.into_trailers() {
            let _ = stream.send_trailers(trailers);
            return;
        }
    }
}

/// An answer's body: its DATA frames (each handed back to flow control as
/// it is read), then its trailers.
struct ResponseBody {
    recv: h2::RecvStream,
    data_done: bool,
}

impl ResponseBody {
    fn new(recv: h2::RecvStream) -> Self {
        Self {
            recv,
            data_done: false,
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if !self.data_done {
            match std::task::ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(stream_error(&error)))),
                None => self.data_done = true,
            }
        }
        match std::task::ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(stream_error(&error)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

/// The status a call fails with when its stream or connection fails: a
/// broken connection, or a stream the server refused before reading it, is
/// a transport failure (`UNAVAILABLE`, retryable, not to be mistaken for a
/// sealed server); another reset maps as the gRPC HTTP/2 spec says (what
/// tonic's own transport does).
fn stream_error(error: &h2::Error) -> Status {
    if error.is_io() || error.is_go_away() {
        return unavailable("connection broken", error);
    }
    let code = match error.reason() {
        Some(h2::Reason::REFUSED_STREAM) => return unavailable("stream refused", error),
        Some(h2::Reason::CANCEL) => Code::Cancelled,
        Some(h2::Reason::ENHANCE_YOUR_CALM) => Code::ResourceExhausted,
        Some(h2::Reason::INADEQUATE_SECURITY) => Code::PermissionDenied,
        _ => Code::Internal,
    };
    Status::new(code, format!("HTTP/2 stream: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientError;

    #[test]
    fn a_refused_stream_is_a_transport_failure_and_resets_map_as_in_tonic() {
        // (A broken connection is covered end to end in tests/client.rs.)
        let status = stream_error(&h2::Error::from(h2::Reason::REFUSED_STREAM));
        assert_eq!(status.code(), Code::Unavailable);
        let error = ClientError::from(status);
        assert!(matches!(error, ClientError::Transport(_)), "{error:?}");
        assert!(error.is_retryable());
        for (reason, code) in [
            (h2::Reason::CANCEL, Code::Cancelled),
            (h2::Reason::ENHANCE_YOUR_CALM, Code::ResourceExhausted),
            (h2::Reason::INADEQUATE_SECURITY, Code::PermissionDenied),
            (h2::Reason::PROTOCOL_ERROR, Code::Internal),
        ] {
            assert_eq!(
                stream_error(&h2::Error::from(reason)).code(),
                code,
                "{reason:?}"
            );
        }
    }
}
