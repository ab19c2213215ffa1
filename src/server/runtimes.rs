//! The runtimes that serve connections, and the hand-off of accepted
//! connections to them.
//!
//! By default ([`IoRuntimes::PerCore`]) the server runs one `current_thread`
//! tokio runtime per core, each on a thread of its own (thread-per-core). A
//! connection is served wholly on one of them: its requests, the tasks hyper's
//! HTTP/2 server spawns for its streams (gRPC runs most of its streams on the
//! connection's own task: `api::grpc::conn`), and whatever those tasks wake. On
//! the shared multi-thread runtime each of these steps could wake an idle
//! worker on the other core (a futex call and a context switch); profiling put
//! that at about 5 µs of the ≈ 25 µs a single REST encrypt cost (BENCHMARKS.md,
//! "Where the time goes"). Work sent to the blocking pool (batches, key
//! generation) still crosses threads: each runtime has a blocking pool of its
//! own. [`IoRuntimes::Shared`] serves every connection on the process's
//! multi-thread runtime instead, as cipherd did before.
//!
//! One acceptor task per listener ([`accept`], on the process runtime)
//! accepts, sets `TCP_NODELAY` and hands each connection to the next runtime
//! in turn (round-robin: with N runtimes and N connections each runtime gets
//! one, whatever the scheduler does). A tokio socket belongs to the reactor of
//! the runtime that registered it, so connections travel as std sockets and
//! [`Incoming`] registers them with the runtime that serves them.
//!
//! This module knows nothing of HTTP: the server spawns its serving futures
//! on [`Runtimes::handles`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};

/// Where connections are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoRuntimes {
    /// This many `current_thread` runtimes, one thread each; 0 means one per
    /// core (`std::thread::available_parallelism`).
    PerCore(usize),
    /// The process's multi-thread runtime (no threads of its own).
    Shared,
}

impl Default for IoRuntimes {
    fn default() -> Self {
        Self::PerCore(0)
    }
}

/// How long a runtime thread waits, once released, for blocking tasks still
/// running (its serving futures have ended by then).
const BLOCKING_GRACE: Duration = Duration::from_secs(10);

/// The running runtimes. [`Runtimes::stop`] ends and joins their threads;
/// dropping them does the same without waiting for the blocking pools.
#[derive(Debug)]
pub(super) struct Runtimes {
    handles: Vec<Handle>,
    threads: Vec<RuntimeThread>,
}

/// One `current_thread` runtime and the thread that drives it.
#[derive(Debug)]
struct RuntimeThread {
    /// Dropped or sent: the thread stops driving the runtime and shuts it down.
    release: Option<oneshot::Sender<()>>,
    /// Resolves (with an error: the sender is dropped) when the thread ends.
    ended: oneshot::Receiver<()>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl Runtimes {
    /// Starts the runtimes. [`IoRuntimes::Shared`] uses the runtime this is
    /// called on.
    pub(super) fn start(kind: IoRuntimes) -> std::io::Result<Self> {
        let count = match kind {
            IoRuntimes::Shared => {
                return Ok(Self {
                    handles: vec![Handle::current()],
                    threads: Vec::new(),
                });
            }
            IoRuntimes::PerCore(0) => std::thread::available_parallelism().map_or(1, usize::from),
            IoRuntimes::PerCore(count) => count,
        };
        let mut runtimes = Self {
            handles: Vec::with_capacity(count),
            threads: Vec::with_capacity(count),
        };
        for index in 0..count {
            // On failure, `runtimes` is dropped and joins the threads started.
            let (handle, thread) = RuntimeThread::start(index)?;
            runtimes.handles.push(handle);
            runtimes.threads.push(thread);
        }
        Ok(runtimes)
    }

    /// One handle per runtime, to spawn serving futures on.
    pub(super) fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Ends every runtime thread and waits for it, without blocking the
    /// runtime this is awaited on. Call it once the serving futures are done.
    pub(super) async fn stop(mut self) -> std::io::Result<()> {
        for thread in &mut self.threads {
            thread.release.take();
        }
        for thread in &mut self.threads {
            let _ = (&mut thread.ended).await;
            if let Some(join) = thread.join.take() {
                // The thread has ended, so this join does not block.
                join.join()
                    .map_err(|_| std::io::Error::other("an I/O runtime thread panicked"))?;
            }
        }
        Ok(())
    }
}

impl Drop for Runtimes {
    fn drop(&mut self) {
        // After `stop` there is nothing left to do. Otherwise (start-up failed,
        // or the server future was dropped) release every thread first, so they
        // shut down together, then join them.
        for thread in &mut self.threads {
            thread.release.take();
        }
        for thread in &mut self.threads {
            if let Some(join) = thread.join.take() {
                let _ = join.join();
            }
        }
    }
}

impl RuntimeThread {
    fn start(index: usize) -> std::io::Result<(Handle, Self)> {
        let (release, released) = oneshot::channel::<()>();
        let (ended_tx, ended) = oneshot::channel::<()>();
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let join = std::thread::Builder::new()
            .name(format!("cipherd-io-{index}"))
            .spawn(move || {
                let _ended = ended_tx;
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name(format!("cipherd-io-{index}-blocking"))
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = handle_tx.send(Err(error));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                // A current_thread runtime runs its tasks only while a thread
                // is inside `block_on`: this thread stays there until released.
                runtime.block_on(async {
                    let _ = released.await;
                });
                runtime.shutdown_timeout(BLOCKING_GRACE);
            })?;
        let thread = Self {
            release: Some(release),
            ended,
            join: Some(join),
        };
        match handle_rx.recv() {
            Ok(Ok(handle)) => Ok((handle, thread)),
            Ok(Err(error)) => Err(error),
            // The thread ended without a word: it panicked.
            Err(_) => Err(std::io::Error::other(
                "an I/O runtime thread failed to start",
            )),
        }
    }
}

/// An accepted connection on its way to the runtime that serves it.
type Handoff = (std::net::TcpStream, SocketAddr);

/// The sending ends of [`accept`], one per runtime, and the matching
/// [`Incoming`]s.
pub(super) fn channels(count: usize) -> (Vec<mpsc::UnboundedSender<Handoff>>, Vec<Incoming>) {
    (0..count)
        .map(|_| {
            let (sender, receiver) = mpsc::unbounded_channel();
            (sender, Incoming(receiver))
        })
        .unzip()
}

/// Accepts connections on `listener` until `stopped` turns true (or every
/// runtime has stopped taking connections), handing them to `outlets`
/// round-robin. Dropping the outlets on return ends every [`Incoming`].
pub(super) async fn accept(
    listener: TcpListener,
    outlets: Vec<mpsc::UnboundedSender<Handoff>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut next = 0usize;
    loop {
        let (stream, remote) = tokio::select! {
            accepted = super::connections::accept(&listener) => accepted,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%error, %remote, "handing a connection over failed");
                continue;
            }
        };
        // A runtime whose server has ended (it failed, and the others are
        // stopping) takes no more connections: try the next one.
        let mut handoff = (stream, remote);
        let mut tried = 0;
        loop {
            if tried == outlets.len() {
                return;
            }
            let outlet = &outlets[next % outlets.len()];
            next = next.wrapping_add(1);
            tried += 1;
            match outlet.send(handoff) {
                Ok(()) => break,
                Err(mpsc::error::SendError(back)) => handoff = back,
            }
        }
    }
}

/// The connections handed to one runtime.
#[derive(Debug)]
pub(super) struct Incoming(mpsc::UnboundedReceiver<Handoff>);

impl Incoming {
    /// The next connection, registered with the runtime this is polled on;
    /// `None` once the acceptor has stopped.
    pub(super) async fn next(&mut self) -> Option<(TcpStream, SocketAddr)> {
        loop {
            let (stream, remote) = self.0.recv().await?;
            match register(stream) {
                Ok(stream) => return Some((stream, remote)),
                Err(error) => tracing::debug!(%error, %remote, "registering a connection failed"),
            }
        }
    }
}

/// Registers a std socket (non-blocking, from [`accept`]) with the current
/// runtime's reactor.
fn register(stream: std::net::TcpStream) -> std::io::Result<TcpStream> {
    TcpStream::from_std(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections go to the runtimes in turn, and each is registered with the
    /// runtime that receives it.
    #[tokio::test]
    async fn hands_connections_round_robin() {
        let runtimes = Runtimes::start(IoRuntimes::PerCore(2)).expect("runtimes");
        assert_eq!(runtimes.handles().len(), 2);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (outlets, incomings) = channels(2);
        let (stop, stopped) = watch::channel(false);
        let acceptor = tokio::spawn(accept(listener, outlets, stopped));
        let mut served = Vec::new();
        for (handle, mut incoming) in runtimes.handles().iter().zip(incomings) {
            served.push(handle.spawn(async move {
                let mut count = 0;
                while let Some((_stream, _remote)) = incoming.next().await {
                    count += 1;
                }
                (count, std::thread::current().name().map(str::to_owned))
            }));
        }
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(TcpStream::connect(address).await.expect("connect"));
        }
        // Accepting is asynchronous: wait until the acceptor has seen all four.
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.send(true).expect("stop");
        acceptor.await.expect("acceptor");
        let mut names = Vec::new();
        for task in served {
            let (count, name) = task.await.expect("served");
            assert_eq!(count, 2, "each runtime gets every second connection");
            names.push(name.expect("named thread"));
        }
        assert_eq!(names, ["cipherd-io-0", "cipherd-io-1"]);
        runtimes.stop().await.expect("stop");
        // Every runtime thread has been joined (no other test here starts one).
        #[cfg(target_os = "linux")]
        let left = std::fs::read_dir("/proc/self/task")
            .expect("task list")
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("cipherd-io"))
            .collect::<Vec<_>>();
        #[cfg(target_os = "linux")]
        assert!(left.is_empty(), "threads left: {left:?}");
    }

    #[tokio::test]
    async fn shared_uses_the_current_runtime() {
        let runtimes = Runtimes::start(IoRuntimes::Shared).expect("runtimes");
        assert_eq!(runtimes.handles().len(), 1);
        assert!(runtimes.threads.is_empty(), "no threads of its own");
        runtimes.stop().await.expect("stop");
    }
}
