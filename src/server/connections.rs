//! The accept loop both listeners share: take the connections one runtime
//! was handed, run each one's TLS handshake (when configured) under
//! [`HANDSHAKE_TIMEOUT`](crate::tls::HANDSHAKE_TIMEOUT) in a task of its own,
//! and hand the stream to the protocol's connection server. At shutdown it
//! stops taking connections, tells every open one to finish the requests it
//! is serving (hyper-util's graceful shutdown: HTTP/1.1 stops keep-alive,
//! HTTP/2 sends GOAWAY), and returns once the last one has closed.
//!
//! What a connection speaks (REST over HTTP/1.1 and HTTP/2, or gRPC) is the
//! caller's `serve`; nothing here knows HTTP.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;

use super::runtimes::Incoming;

/// An accepted connection: plain TCP, or TLS once its handshake is done.
pub(crate) type Stream = Either<TcpStream, TlsStream<TcpStream>>;

/// Where connections come from: the ones the acceptor hands one runtime
/// ([`Incoming`]), or a listener of one's own (tests, embedding).
pub(crate) trait Accept: Send {
    /// The next connection and its client's address; `None` once there will
    /// be no more.
    fn next(&mut self) -> impl Future<Output = Option<(TcpStream, SocketAddr)>> + Send;
}

impl Accept for Incoming {
    fn next(&mut self) -> impl Future<Output = Option<(TcpStream, SocketAddr)>> + Send {
        Incoming::next(self)
    }
}

impl Accept for TcpListener {
    async fn next(&mut self) -> Option<(TcpStream, SocketAddr)> {
        Some(accept(self).await)
    }
}

/// The next connection on `listener`, with `TCP_NODELAY` set (small replies
/// must not wait for Nagle's algorithm). Cancel-safe.
pub(crate) async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, %remote, "setting TCP_NODELAY failed");
                }
                return (stream, remote);
            }
            Err(error) => {
                // Out of file descriptors and the like: back off briefly, as
                // axum's own TCP listener does.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves the connections of `incoming` with `serve` (given the stream, the
/// client's address, and the watcher its connection must be wrapped in to
/// be shut down gracefully) until `shutdown` completes or `incoming` ends,
/// then waits for the open connections to finish their requests.
pub(crate) async fn serve<S, F>(
    mut incoming: impl Accept,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    serve: S,
) where
    S: Fn(Stream, SocketAddr, Watcher) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + Send,
{
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            next = incoming.next() => match next {
                Some(connection) => connection,
                None => break,
            },
            () = &mut shutdown => break,
        };
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let serve = serve.clone();
        tokio::spawn(async move {
            let stream = match tls {
                None => Either::Left(tcp),
                Some(tls) => {
                    match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, tls.accept(tcp)).await
                    {
                        Ok(Ok(tls)) => Either::Right(tls),
                        // A failed or stalled handshake concerns that client only.
                        Ok(Err(error)) => {
                            return tracing::debug!(%error, %remote, "TLS handshake failed");
                        }
                        Err(_) => return tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                }
            };
            serve(stream, remote, watcher).await;
        });
    }
    // Stop taking connections, then wait for the requests in flight.
    drop(incoming);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;

    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::sync::{Notify, oneshot};

    use super::*;

    /// At shutdown the loop stops accepting, lets a request in flight be
    /// answered, and returns only once that connection has closed.
    #[tokio::test]
    async fn shutdown_lets_requests_in_flight_finish() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (arrived, request_arrived) = oneshot::channel::<()>();
        let arrived = Arc::new(parking_lot::Mutex::new(Some(arrived)));
        let release = Arc::new(Notify::new());
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = {
            let release = release.clone();
            tokio::spawn(serve(
                listener,
                None,
                async {
                    let _ = stopped.await;
                },
                move |stream, _remote, watcher| {
                    let (arrived, release) = (arrived.clone(), release.clone());
                    let service = service_fn(move |_request| {
                        let (arrived, release) = (arrived.clone(), release.clone());
                        async move {
                            if let Some(arrived) = arrived.lock().take() {
                                let _ = arrived.send(());
                            }
                            release.notified().await;
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                                "done",
                            ))))
                        }
                    });
                    async move {
                        let connection =
                            http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                        let _ = watcher.watch(connection).await;
                    }
                },
            ))
        };

        let mut client = TcpStream::connect(address).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .unwrap();
        request_arrived.await.unwrap();
        stop.send(()).unwrap();
        // The loop has stopped taking connections; the open one still holds
        // it up.
        let mut serving = serving;
        let early = tokio::time::timeout(Duration::from_millis(200), &mut serving).await;
        assert!(early.is_err(), "returned with a request in flight");

        release.notify_one();
        // The answer arrives, then the connection closes (no keep-alive once
        // shutting down), so reading to the end terminates.
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_string(&mut answer))
            .await
            .expect("the connection closes after its answer")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .expect("the loop returns once the connection closed")
            .unwrap();
    }
}
