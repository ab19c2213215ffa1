//! The gRPC connections: hyper's HTTP/2 server, with the settings tonic's
//! `Server` gives it, serving each call either through the unary fast path
//! (`fast`) or through tonic's routes.
//!
//! tonic's `Server` wraps every call in a stack built per connection: a boxed
//! clone of the service, the connection info inserted into the request, the
//! `grpc-timeout` deadline, error recovery, and boxed request and response
//! bodies. Here the same work is done once per call without the boxes:
//! - the connection info ([`TcpConnectInfo`], the client address the audit
//!   log records) goes into the request's extensions, as tonic puts it;
//! - a `grpc-timeout` header bounds the call as tonic's `GrpcTimeout` does
//!   (tonic's server sets no timeout of its own): when it expires first, the
//!   answer is `CANCELLED` "Timeout expired", what tonic's error recovery
//!   makes of it;
//! - TLS handshakes (when configured) run in the server's accept loop
//!   (`server::connections`), shared with REST.
//!
//! hyper runs every HTTP/2 stream in a task of its own. Here [`Streams`]
//! takes those futures instead, and the connection's task polls them once
//! itself, right after the connection's own poll has read and accepted
//! every stream it could ([`drive`]). A unary call that completes without
//! waiting (most of them) costs no task spawn and no wake-up, and the answers
//! of all the calls read together leave in one write, as they did when each
//! ran in its task. Only a future that has to wait (a blocking-pool handler,
//! a stream, a slow body) becomes a task.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use parking_lot::Mutex;
use tokio::time::Sleep;
use tonic::Status;
use tonic::body::Body;
use tonic::service::Routes;
use tonic::transport::server::TcpConnectInfo;
use tower::util::Oneshot;

use super::fast::{self, ResponseBody};
use super::transit::TransitApi;

/// What every connection serves.
#[derive(Debug)]
pub(super) struct Services {
    /// The Transit service tonic's routes hold too, for the fast path.
    pub(super) transit: TransitApi,
    /// Every service, through tonic.
    pub(super) routes: Routes,
}

/// hyper's HTTP/2 server with the settings tonic's `Server::builder()` gives
/// it (`serve_internal`). Only two of them differ from hyper's defaults: no
/// limit on concurrent streams or on locally reset streams (hyper has a
/// default limit for each). Window sizes, frame size and keep-alive (no pings) are
/// hyper's defaults in both.
fn builder(streams: Streams) -> http2::Builder<Streams> {
    let mut builder = http2::Builder::new(streams);
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(None::<u32>)
        .max_local_error_reset_streams(None::<usize>);
    builder
}

/// Serves one connection (plain TCP or TLS) until the client closes it, or
/// until `watcher` signals shutdown and its calls in flight are answered.
pub(super) async fn serve_connection<IO>(
    io: IO,
    services: Arc<Services>,
    remote: SocketAddr,
    watcher: Watcher,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = ConnService {
        services,
        // What tonic's server puts in each request; the audit log reads the
        // remote address. The listener's address is not looked up: nothing
        // reads it.
        connect: TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(remote),
        },
    };
    let streams = Streams::default();
    let connection = builder(streams.clone()).serve_connection(TokioIo::new(io), service);
    if let Err(error) = drive(watcher.watch(connection), &streams).await {
        tracing::debug!(%error, %remote, "gRPC connection ended with an error");
    }
}

/// Polls `connection`, and after each of its polls runs the stream futures
/// it handed to `streams`. Running them may queue answers: the connection is
/// polled again at once, so that it writes them (all in one write).
async fn drive<C: Future>(connection: C, streams: &Streams) -> C::Output {
    let mut connection = std::pin::pin!(connection);
    let mut spare = Vec::new();
    std::future::poll_fn(|cx| {
        loop {
            if let Poll::Ready(done) = connection.as_mut().poll(cx) {
                streams.run(&mut spare);
                return Poll::Ready(done);
            }
            if !streams.run(&mut spare) {
                return Poll::Pending;
            }
        }
    })
    .await
}

/// The executor of one connection: it keeps the futures hyper hands it (one
/// per HTTP/2 stream) for [`drive`] to run on the connection's task.
#[derive(Clone, Default)]
pub(super) struct Streams(Arc<Mutex<Vec<StreamFuture>>>);

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Streams {
    /// Polls every future queued so far once, and spawns those that have to
    /// wait; false if there was none.
    ///
    /// The poll uses a waker that does nothing. That is sound: a future that
    /// returns `Pending` is spawned, and its new task polls it again at once,
    /// with its own waker, before anything can rely on the first.
    fn run(&self, spare: &mut Vec<StreamFuture>) -> bool {
        // Swapped out first (a future may hand hyper's executor another
        // one) with a spare the caller keeps, so neither buffer is
        // reallocated on every poll of the connection.
        std::mem::swap(&mut *self.0.lock(), spare);
        if spare.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        for mut future in spare.drain(..) {
            if future.as_mut().poll(&mut cx).is_pending() {
                tokio::spawn(future);
            }
        }
        true
    }
}

impl<F> hyper::rt::Executor<F> for Streams
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.lock().push(Box::pin(future));
    }
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams").finish_non_exhaustive()
    }
}

/// The service of one connection.
#[derive(Debug, Clone)]
struct ConnService {
    services: Arc<Services>,
    connect: TcpConnectInfo,
}

impl hyper::service::Service<http::Request<Incoming>> for ConnService {
    type Response = http::Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, mut request: http::Request<Incoming>) -> ResponseFuture {
        request.extensions_mut().insert(self.connect.clone());
        let deadline = grpc_timeout(request.headers()).map(|d| Box::pin(tokio::time::sleep(d)));
        let fast = fast::Unary::from_path(request.uri().path())
            .filter(|_| fast::identity_encoding(request.headers()));
        let call = match fast {
            Some(method) => {
                let services = self.services.clone();
                Call::Fast(Box::pin(async move {
                    fast::serve(method, &services.transit, request, || {
                        services.routes.clone()
                    })
                    .await
                }))
            }
            None => Call::Tonic(Box::new(tower::ServiceExt::oneshot(
                self.services.routes.clone(),
                request.map(Body::new),
            ))),
        };
        ResponseFuture { call, deadline }
    }
}

/// Where a call is answered.
enum Call {
    Fast(Pin<Box<dyn Future<Output = http::Response<ResponseBody>> + Send>>),
    /// Boxed: it holds the whole request, and is the rarer call.
    Tonic(Box<Oneshot<Routes, http::Request<Body>>>),
}

/// The answer to a call, within its `grpc-timeout`.
pub(super) struct ResponseFuture {
    call: Call,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // As tonic's `GrpcTimeout`: the call first, then the deadline.
        let answered = match &mut this.call {
            Call::Fast(call) => call.as_mut().poll(cx),
            Call::Tonic(call) => match Pin::new(call.as_mut()).poll(cx) {
                Poll::Ready(Ok(response)) => Poll::Ready(response.map(ResponseBody::from)),
                Poll::Ready(Err(never)) => match never {},
                Poll::Pending => Poll::Pending,
            },
        };
        if let Poll::Ready(response) = answered {
            return Poll::Ready(Ok(response));
        }
        let Some(deadline) = &mut this.deadline else {
            return Poll::Pending;
        };
        if deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let status = Status::cancelled("Timeout expired");
        Poll::Ready(Ok(status.into_http::<Body>().map(ResponseBody::from)))
    }
}

/// The client's deadline from `grpc-timeout` (at most 8 digits and a unit);
/// like tonic, a malformed value means no deadline.
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    // A constant name: a `&str` key is parsed and checked on every lookup.
    const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");
    let value = headers.get(GRPC_TIMEOUT)?.to_str().ok()?;
    let split = value.len().checked_sub(1)?;
    let (amount, unit) = value.split_at_checked(split)?;
    if amount.len() > 8 {
        return None;
    }
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 60 * 60),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hyper::rt::Executor as _;

    use super::*;

    /// The futures a connection hands over during a poll run right after it,
    /// on the same task; the connection is polled again at once (to write
    /// what they queued); a future that has to wait becomes a task.
    #[tokio::test]
    async fn streams_run_after_each_connection_poll() {
        let streams = Streams::default();
        let done = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let mut released = Some(released);
        let mut polls = 0;
        let connection = std::future::poll_fn(|_| {
            polls += 1;
            match polls {
                1 => {
                    let ready = done.clone();
                    streams.execute(async move {
                        ready.fetch_add(1, Ordering::SeqCst);
                    });
                    let waiting = done.clone();
                    let released = released.take().expect("first poll");
                    streams.execute(async move {
                        let _ = released.await;
                        waiting.fetch_add(1, Ordering::SeqCst);
                    });
                    Poll::Pending
                }
                _ => {
                    assert_eq!(done.load(Ordering::SeqCst), 1, "the ready one ran");
                    Poll::Ready(())
                }
            }
        });
        // A `drive` that stopped polling would leave this pending for ever:
        // a bounded wait turns that into a failure.
        tokio::time::timeout(Duration::from_secs(10), drive(connection, &streams))
            .await
            .expect("drive polls the connection again without a wake-up");
        assert_eq!(polls, 2, "polled again without a wake-up");
        release
            .send(())
            .expect("the waiting future is alive in its task");
        for _ in 0..100 {
            if done.load(Ordering::SeqCst) == 2 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the waiting future never finished");
    }

    fn timeout(value: &str) -> Option<Duration> {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", value.parse().expect("header value"));
        grpc_timeout(&headers)
    }

    #[test]
    fn grpc_timeout_as_tonic_parses_it() {
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
        assert_eq!(timeout("3H"), Some(Duration::from_secs(3 * 3600)));
        assert_eq!(timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "S", "123456789S", "5s", "-1S", "1.5S", "5"] {
            assert_eq!(timeout(bad), None, "{bad:?}");
        }
    }
}
