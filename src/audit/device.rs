//! One audit device: its settings, and the writer thread that owns its output.
//!
//! With `fsync=always` (or a `batch_window`), entries reach the writer thread
//! over a channel and are written with group commit: the writer takes
//! everything queued (waiting `batch_window` for more), chains the lines,
//! writes them with one `write` and one `fdatasync`, then acknowledges every
//! entry of the batch. With the default `fsync=checkpoint` an entry is
//! appended directly by the request's own thread under the writer's lock (one
//! `write`, no thread hop, answered on return), and the file is synced
//! whenever a signed checkpoint is written (at least every
//! `checkpoint_interval` while entries arrive; the writer thread writes the
//! ones that fall due while no entry arrives), so a machine crash loses at
//! most the unsigned tail, and a process crash loses nothing acknowledged.
//! That sync runs on a [`Syncer`] thread, off the request path; the final
//! checkpoint and the one closing a rotated file are synced in place.
//!
//! A failed write rolls the chain back (and the file, to its previous length),
//! so the chain never skips; the entries of that batch are refused, which
//! fails their requests closed. Before each write the writer checks that its
//! path still names the open file: a log moved away by an external rotation is
//! followed by a new file at the path, continuing the chain; a path that can
//! no longer be created (directory gone) is a write failure. With
//! `rotate_bytes` the writer rotates by itself: it closes the file with a
//! checkpoint and renames it to `<path>.<first seq in it>`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use serde_json::Value;

use super::chain::{
    self, CHECKPOINT_TYPE, ChainHead, CheckpointClaim, CheckpointSigner, SealableBody,
};
use super::entry::{RenderOptions, now_rfc3339};
use super::error::AuditError;
use super::hasher::{Hasher, IdentityCache};
use super::syncer::{Syncer, drop_cached_pages};
use crate::crypto::SecretBytes;

/// Most entries written in one group commit.
const MAX_BATCH: usize = 4096;

/// How far back the writer reads to find the last line of an existing log.
const TAIL_CHUNK: u64 = 64 * 1024;

/// When the file is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every group commit, before the entries are acknowledged.
    Always,
    /// With every checkpoint (default).
    Checkpoint,
    /// Never (the operating system decides).
    Never,
}

/// A device's settings, parsed from its options.
#[derive(Debug, Clone)]
pub struct DeviceSettings {
    /// Where lines go: a file, or standard output.
    pub target: Target,
    /// File mode of a new log file.
    pub mode: u32,
    /// Write values in clear (never in production).
    pub log_raw: bool,
    /// Hash accessors too.
    pub hmac_accessor: bool,
    /// When to fsync.
    pub fsync: FsyncPolicy,
    /// How long the writer waits for more entries before a group commit.
    pub batch_window: Duration,
    /// Longest time between checkpoints while entries arrive.
    pub checkpoint_interval: Duration,
    /// Rotate the file once it is this large (0 = never).
    pub rotate_bytes: u64,
    /// Leave the log's synced pages in the page cache (by default they are
    /// dropped after each checkpoint's sync: see
    /// [`drop_cached_pages`](super::syncer::drop_cached_pages)). For a log
    /// shipper that reads the file more than a second behind.
    pub keep_page_cache: bool,
}

/// Where a device writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A JSON-lines file.
    File(PathBuf),
    /// Standard output.
    Stdout,
}

impl DeviceSettings {
    /// Parses Vault-style device options (`file_path`, `mode`, `log_raw`,
    /// `hmac_accessor`) and cipherd's (`fsync`, `batch_window`,
    /// `checkpoint_interval`, `rotate_bytes`, `keep_page_cache`). `kind` is
    /// `file` or `stdout`.
    pub fn parse(kind: &str, options: &BTreeMap<String, String>) -> Result<Self, AuditError> {
        let target = match kind {
            "file" => match options.get("file_path").map(String::as_str) {
                None | Some("") => {
                    return Err(AuditError::invalid("file_path is required"));
                }
                Some("stdout") => Target::Stdout,
                Some("discard") => {
                    return Err(AuditError::invalid(
                        "file_path=discard is not supported: a device that writes nothing would let requests through unaudited",
                    ));
                }
                Some(path) => {
                    let path = PathBuf::from(path);
                    if !path.is_absolute() {
                        return Err(AuditError::invalid("file_path must be an absolute path"));
                    }
                    Target::File(path)
                }
            },
            "stdout" => Target::Stdout,
            "socket" | "syslog" => {
                return Err(AuditError::invalid(format!(
                    "audit device type {kind:?} is not supported by cipherd (use file or stdout)"
                )));
            }
            other => {
                return Err(AuditError::invalid(format!(
                    "unknown audit device type {other:?}"
                )));
            }
        };
        let mode = match options.get("mode") {
            None => 0o600,
            Some(text) => u32::from_str_radix(text, 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| AuditError::invalid("mode must be an octal file mode like 0600"))?,
        };
        let fsync = match options.get("fsync").map(String::as_str) {
            None | Some("checkpoint") => FsyncPolicy::Checkpoint,
            Some("always") => FsyncPolicy::Always,
            Some("never") => FsyncPolicy::Never,
            Some(_) => {
                return Err(AuditError::invalid(
                    "fsync must be always, checkpoint or never",
                ));
            }
        };
        let checkpoint_interval =
            duration_option(options, "checkpoint_interval")?.unwrap_or(Duration::from_secs(1));
        if checkpoint_interval.is_zero() || checkpoint_interval > Duration::from_secs(1) {
            return Err(AuditError::invalid(
                "checkpoint_interval must be more than 0 and at most 1s",
            ));
        }
        let batch_window = duration_option(options, "batch_window")?.unwrap_or(Duration::ZERO);
        if batch_window > Duration::from_millis(100) {
            return Err(AuditError::invalid("batch_window must be at most 100ms"));
        }
        Ok(Self {
            target,
            mode,
            log_raw: bool_option(options, "log_raw", false)?,
            hmac_accessor: bool_option(options, "hmac_accessor", true)?,
            fsync,
            batch_window,
            checkpoint_interval,
            rotate_bytes: match options.get("rotate_bytes") {
                None => 0,
                Some(text) => text
                    .parse()
                    .map_err(|_| AuditError::invalid("rotate_bytes must be a byte count"))?,
            },
            keep_page_cache: bool_option(options, "keep_page_cache", false)?,
        })
    }
}

fn bool_option(
    options: &BTreeMap<String, String>,
    name: &str,
    default: bool,
) -> Result<bool, AuditError> {
    match options.get(name).map(String::as_str) {
        None => Ok(default),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(_) => Err(AuditError::invalid(format!("{name} must be true or false"))),
    }
}

/// `250ms`, `1s`, `500us` or a plain number of milliseconds.
fn duration_option(
    options: &BTreeMap<String, String>,
    name: &str,
) -> Result<Option<Duration>, AuditError> {
    let Some(text) = options.get(name) else {
        return Ok(None);
    };
    let bad = || AuditError::invalid(format!("{name} must be a duration like 250ms or 1s"));
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let duration = match unit {
        "" | "ms" => Duration::from_millis(number),
        "us" => Duration::from_micros(number),
        "s" => Duration::from_secs(number),
        _ => return Err(bad()),
    };
    Ok(Some(duration))
}

/// How a submitter learns whether its entry was written.
#[derive(Debug)]
pub enum Waiter {
    /// An async task awaits the answer.
    Async(tokio::sync::oneshot::Sender<bool>),
    /// A thread blocks for the answer.
    Blocking(SyncSender<bool>),
}

impl Waiter {
    fn answer(self, written: bool) {
        match self {
            Self::Async(sender) => {
                let _ = sender.send(written);
            }
            Self::Blocking(sender) => {
                let _ = sender.send(written);
            }
        }
    }
}

enum Message {
    /// Entries written together (in order, in one group commit).
    Entries(Vec<SealableBody>, Waiter),
    Stop(SyncSender<()>),
}

/// A running device: its settings, its hasher, and the queue to its writer.
pub struct Device {
    /// The mount path (`file/`).
    pub path: String,
    /// `file` or `stdout`.
    pub kind: String,
    /// Free text.
    pub description: String,
    /// The options it was enabled with.
    pub options: BTreeMap<String, String>,
    /// Hashes sensitive values.
    pub hasher: Hasher,
    /// Rendering switches.
    pub render: RenderOptions,
    /// Protected tokens and accessors of recent callers.
    pub identities: IdentityCache,
    /// Append directly under the lock (no fsync per entry, no batch
    /// window): no thread hop on the request path.
    direct: bool,
    /// Entries waiting for the next direct append, with their tickets.
    appends: Mutex<Appends>,
    /// The chain and the output. A plain lock, held only while a group is
    /// chained and written (no await inside): with one runtime per core, an
    /// async lock handed to a task whose runtime is busy elsewhere sat unused
    /// while every request behind it waited, and the cores idled (20% of the
    /// machine at wrk -c64, BENCHMARKS.md "Audit on vs off").
    writer: Arc<Mutex<Writer>>,
    queue: Sender<Message>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Opens the output (continuing the chain of an existing file) and starts
    /// the writer thread.
    pub fn start(
        path: &str,
        kind: &str,
        description: &str,
        options: BTreeMap<String, String>,
        salt: &SecretBytes,
        signer: Arc<CheckpointSigner>,
    ) -> Result<Self, AuditError> {
        let settings = DeviceSettings::parse(kind, &options)?;
        let output = Output::open(&settings)?;
        let head = output.recovered_head;
        let (queue, inbox) = mpsc::channel();
        let syncer = match (&output.sink, settings.fsync) {
            (Sink::File(_), FsyncPolicy::Checkpoint) => Some(
                Syncer::start(path, !settings.keep_page_cache)
                    .map_err(|e| AuditError::io("start the audit sync thread", &e))?,
            ),
            _ => None,
        };
        let writer = Arc::new(Mutex::new(Writer {
            syncer,
            device: path.to_owned(),
            settings: settings.clone(),
            output: output.sink,
            head,
            entries_since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            file_first_seq: head.next_seq,
            signer,
            lines: Vec::new(),
            stopped: false,
            appended_through: 0,
            refused_appends: std::collections::VecDeque::new(),
        }));
        let thread = {
            let writer = writer.clone();
            std::thread::Builder::new()
                .name(format!("audit-{}", path.trim_end_matches('/')))
                .spawn(move || run_thread(writer, inbox))
                .map_err(|e| AuditError::io("start the audit writer", &e))?
        };
        let direct = settings.fsync != FsyncPolicy::Always && settings.batch_window.is_zero();
        Ok(Self {
            path: path.to_owned(),
            kind: kind.to_owned(),
            description: description.to_owned(),
            options,
            hasher: Hasher::new(salt, settings.log_raw),
            render: RenderOptions {
                hmac_accessor: settings.hmac_accessor,
            },
            identities: IdentityCache::default(),
            direct,
            appends: Mutex::new(Appends::default()),
            writer,
            queue,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues rendered entries for the writer thread (for callers that block
    /// instead of awaiting); `waiter` hears whether they were written.
    pub fn submit(&self, bodies: Vec<SealableBody>, waiter: Waiter) {
        if let Err(mpsc::SendError(Message::Entries(_, waiter))) =
            self.queue.send(Message::Entries(bodies, waiter))
        {
            waiter.answer(false);
        }
    }

    /// Writes rendered entries and returns whether they were written: in
    /// direct mode appended by this task under the writer's lock (one write,
    /// no thread hop), else through the next group commit.
    pub async fn write(&self, bodies: Vec<SealableBody>) -> bool {
        if self.direct {
            // Group append: queue the entries under a short lock and take a
            // ticket; whoever holds the writer next writes everything queued
            // so far in one write, so concurrent requests share a syscall.
            let (ticket, busy) = self.appends.lock().push(bodies);
            if busy {
                // Let the other requests ready on this runtime queue their
                // entries first: whoever takes the writer next writes them
                // all, one `write` and one lock hand-over for many requests.
                tokio::task::yield_now().await;
            }
            for _ in 0..WRITER_BUSY_YIELDS {
                if let Some(writer) = self.writer.try_lock() {
                    return self.append_locked(writer, ticket);
                }
                // The other core holds the writer, for one `write` most of
                // the time. Serve this runtime's other requests meanwhile
                // instead of parking its thread on the lock: side by side at
                // wrk -c64 this took an audited request from 22.9–23.6 to
                // 22.3–22.8 µs of server CPU, and the machine's idle share
                // from 0.07 to 0.01 (BENCHMARKS.md, "Audit on vs off").
                tokio::task::yield_now().await;
            }
            return self.append_through(ticket);
        }
        let (answer, heard) = tokio::sync::oneshot::channel();
        self.submit(bodies, Waiter::Async(answer));
        heard.await.unwrap_or(false)
    }

    /// [`Device::write`] for a thread that may block (the blocking pool).
    pub fn write_blocking(&self, bodies: Vec<SealableBody>) -> bool {
        if self.direct {
            let (ticket, _) = self.appends.lock().push(bodies);
            return self.append_through(ticket);
        }
        let (answer, heard) = mpsc::sync_channel(1);
        self.submit(bodies, Waiter::Blocking(answer));
        heard.recv().unwrap_or(false)
    }

    /// Takes the writer and, unless an earlier holder already did, writes
    /// everything queued up to `ticket` in one append; whether `ticket`'s
    /// entries were written.
    fn append_through(&self, ticket: u64) -> bool {
        self.append_locked(self.writer.lock(), ticket)
    }

    /// [`Device::append_through`] with the writer's lock already held.
    fn append_locked(&self, mut writer: MutexGuard<'_, Writer>, ticket: u64) -> bool {
        if writer.appended_through < ticket {
            let (batch, through) = self.appends.lock().take();
            // A stopped device has written its final checkpoint: nothing may follow.
            let written = !writer.stopped && writer.commit(&batch, false);
            writer.record_appends(through, written);
        }
        writer.append_written(ticket)
    }

    /// Writes a final checkpoint and stops the writer (idempotent).
    pub fn stop(&self) {
        let Some(thread) = self.thread.lock().take() else {
            return;
        };
        let (done, finished) = mpsc::sync_channel(1);
        if self.queue.send(Message::Stop(done)).is_ok() {
            let _ = finished.recv();
        }
        let _ = thread.join();
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An opened output and the chain head found at its end.
struct Opened {
    sink: Sink,
    recovered_head: ChainHead,
}

enum Sink {
    Stdout,
    File(FileSink),
}

struct FileSink {
    path: PathBuf,
    mode: u32,
    file: Option<File>,
    identity: (u64, u64),
    len: u64,
}

struct Output;

impl Output {
    fn open(settings: &DeviceSettings) -> Result<Opened, AuditError> {
        match &settings.target {
            Target::Stdout => Ok(Opened {
                sink: Sink::Stdout,
                recovered_head: ChainHead::genesis(),
            }),
            Target::File(path) => {
                let (file, head) = open_continuing(path, settings.mode)?;
                let metadata = file
                    .metadata()
                    .map_err(|e| AuditError::io("inspect the audit file", &e))?;
                Ok(Opened {
                    sink: Sink::File(FileSink {
                        path: path.clone(),
                        mode: settings.mode,
                        identity: (metadata.dev(), metadata.ino()),
                        len: metadata.len(),
                        file: Some(file),
                    }),
                    recovered_head: head,
                })
            }
        }
    }
}

/// Opens (or creates) `path` for appending and finds where its chain stands.
/// A torn last line (the process died mid-write, so it was never
/// acknowledged) is cut off; a last line that is not a cipherd entry is an
/// error: continuing after it would hide whatever happened there.
fn open_continuing(path: &Path, mode: u32) -> Result<(File, ChainHead), AuditError> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(mode)
        .open(path)
        .map_err(|e| AuditError::io(format!("open audit file {}", path.display()), &e))?;
    let head = recover_head(&mut file)
        .map_err(|e| AuditError::io(format!("read audit file {}", path.display()), &e))?;
    match head {
        Some(head) => Ok((file, head)),
        None => Err(AuditError::Invalid(format!(
            "{} ends with a line that is not a cipherd audit entry; move the file aside to start a new chain",
            path.display()
        ))),
    }
}

/// The chain head after the last complete line of `file` (`genesis` for an
/// empty file); `None` when that line is not a chained entry.
fn recover_head(file: &mut File) -> std::io::Result<Option<ChainHead>> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(Some(ChainHead::genesis()));
    }
    // Find the end of the last complete line, then its start.
    let mut end = len;
    let mut tail = read_at(file, len.saturating_sub(1), 1)?;
    if tail != b"\n" {
        let cut = last_newline_before(file, len)?.map_or(0, |at| at + 1);
        tracing::warn!(
            bytes = len - cut,
            "audit file ends with a torn line (a write was interrupted); cutting it off"
        );
        file.set_len(cut)?;
        end = cut;
        if end == 0 {
            return Ok(Some(ChainHead::genesis()));
        }
    }
    let start = last_newline_before(file, end - 1)?.map_or(0, |at| at + 1);
    tail = read_at(file, start, (end - 1 - start) as usize)?;
    let Ok(entry) = serde_json::from_slice::<Value>(&tail) else {
        return Ok(None);
    };
    let Some(seq) = entry.get("seq").and_then(Value::as_u64) else {
        return Ok(None);
    };
    Ok(Some(ChainHead {
        next_seq: seq + 1,
        prev_hash: chain::line_hash(&tail),
    }))
}

fn read_at(file: &mut File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// The offset of the last `\n` before `end`, if any.
fn last_newline_before(file: &mut File, end: u64) -> std::io::Result<Option<u64>> {
    let mut hi = end;
    while hi > 0 {
        let lo = hi.saturating_sub(TAIL_CHUNK);
        let chunk = read_at(file, lo, (hi - lo) as usize)?;
        if let Some(at) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(lo + at as u64));
        }
        hi = lo;
    }
    Ok(None)
}

impl FileSink {
    /// Makes sure the open file is still the one at the path (an external
    /// rotation moves it away), reopening or creating it when not.
    fn current(&mut self) -> std::io::Result<&mut File> {
        let moved = match std::fs::metadata(&self.path) {
            Ok(metadata) => (metadata.dev(), metadata.ino()) != self.identity,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => true,
            Err(error) => return Err(error),
        };
        if moved || self.file.is_none() {
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(self.mode)
                .open(&self.path)?;
            let metadata = file.metadata()?;
            self.identity = (metadata.dev(), metadata.ino());
            self.len = metadata.len();
            self.file = Some(file);
        }
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("audit file not open"))
    }

    fn write(&mut self, bytes: &[u8], sync: bool) -> std::io::Result<()> {
        let before = self.len;
        let file = self.current()?;
        let written = file
            .write_all(bytes)
            .and_then(|()| if sync { file.sync_data() } else { Ok(()) });
        match written {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(error) => {
                // Leave no torn line behind; reopen on the next attempt.
                if let Some(file) = self.file.take() {
                    let _ = file.set_len(before);
                }
                Err(error)
            }
        }
    }

    /// Renames the file to `<path>.<first seq>` and starts a new one.
    fn rotate(&mut self, first_seq: u64) -> std::io::Result<()> {
        let mut rotated = self.path.clone().into_os_string();
        rotated.push(format!(".{first_seq:012}"));
        std::fs::rename(&self.path, &rotated)?;
        self.file = None;
        self.current().map(|_| ())
    }
}

struct Writer {
    device: String,
    /// Syncs checkpoints off the request path (file devices, `fsync=checkpoint`).
    syncer: Option<Syncer>,
    settings: DeviceSettings,
    output: Sink,
    head: ChainHead,
    entries_since_checkpoint: u64,
    last_checkpoint: Instant,
    file_first_seq: u64,
    signer: Arc<CheckpointSigner>,
    /// Reused line buffer.
    lines: Vec<u8>,
    /// The final checkpoint is written.
    stopped: bool,
    /// Every append ticket up to this one has been written or refused.
    appended_through: u64,
    /// Recent ranges of refused tickets (first, last), oldest first.
    refused_appends: std::collections::VecDeque<(u64, u64)>,
}

/// Entries queued for a direct append; ticket `n` is the `n`-th push.
#[derive(Default)]
struct Appends {
    bodies: Vec<SealableBody>,
    last_ticket: u64,
    last_push: Option<Instant>,
}

/// Entries that follow each other closer than this mean the device is busy:
/// a request then yields once before writing, so that one write carries the
/// entries of every request ready meanwhile. With one runtime per core the
/// two cores otherwise contend for the writer on every request: at wrk -c64,
/// with the plain writer lock, an audited request cost 24.9 µs of server CPU
/// with this yield against 30.4 µs without it (BENCHMARKS.md, "Audit on vs
/// off"). A device that is not busy writes at once, adding no latency.
const BUSY_GAP: Duration = Duration::from_micros(50);

/// How many times a request finds the writer held by the other core and
/// yields before it waits on the lock (a write takes a few µs; a rotation or
/// a failing disk can take much longer).
const WRITER_BUSY_YIELDS: usize = 16;

impl Appends {
    /// Queues `bodies`; returns their ticket, and whether the device is busy.
    fn push(&mut self, bodies: Vec<SealableBody>) -> (u64, bool) {
        self.bodies.extend(bodies);
        self.last_ticket += 1;
        let now = Instant::now();
        let busy = self
            .last_push
            .is_some_and(|last| now.saturating_duration_since(last) < BUSY_GAP);
        self.last_push = Some(now);
        (self.last_ticket, busy)
    }

    /// Everything queued, and the last ticket it covers.
    fn take(&mut self) -> (Vec<SealableBody>, u64) {
        (std::mem::take(&mut self.bodies), self.last_ticket)
    }
}

/// How far back refused ranges are kept: far more tickets than requests can
/// be in flight at once.
const REFUSED_HORIZON: u64 = 1 << 20;

/// The writer thread: group commits in queued mode, and in both modes the
/// checkpoint that falls due while no entry arrives, and the final one.
fn run_thread(writer: Arc<Mutex<Writer>>, inbox: Receiver<Message>) {
    let mut bodies = Vec::new();
    let mut waiters = Vec::new();
    loop {
        let (wait, window) = {
            let writer = writer.lock();
            (writer.until_checkpoint(), writer.settings.batch_window)
        };
        let mut stop = None;
        match inbox.recv_timeout(wait) {
            Ok(message) => {
                take(message, &mut bodies, &mut waiters, &mut stop);
                gather(&inbox, window, &mut bodies, &mut waiters, &mut stop);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                writer.lock().finish(&bodies);
                return;
            }
        }
        let written = match stop {
            Some(_) => writer.lock().finish(&bodies),
            None => writer.lock().commit(&bodies, false),
        };
        bodies.clear();
        for waiter in waiters.drain(..) {
            waiter.answer(written);
        }
        if let Some(done) = stop {
            let _ = done.send(());
            return;
        }
    }
}

/// Takes whatever else is queued (and, with a batch window, what arrives
/// within it) into the same group commit.
fn gather(
    inbox: &Receiver<Message>,
    window: Duration,
    bodies: &mut Vec<SealableBody>,
    waiters: &mut Vec<Waiter>,
    stop: &mut Option<SyncSender<()>>,
) {
    let deadline = Instant::now() + window;
    while waiters.len() < MAX_BATCH && stop.is_none() {
        let next = match inbox.try_recv() {
            Ok(message) => Some(message),
            Err(_) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    None
                } else {
                    inbox.recv_timeout(left).ok()
                }
            }
        };
        match next {
            Some(message) => take(message, bodies, waiters, stop),
            None => break,
        }
    }
}

fn take(
    message: Message,
    bodies: &mut Vec<SealableBody>,
    waiters: &mut Vec<Waiter>,
    stop: &mut Option<SyncSender<()>>,
) {
    match message {
        Message::Entries(entries, waiter) => {
            bodies.extend(entries);
            waiters.push(waiter);
        }
        Message::Stop(done) => *stop = Some(done),
    }
}

impl Writer {
    /// Records the outcome of a group append covering tickets up to `through`.
    fn record_appends(&mut self, through: u64, written: bool) {
        if !written {
            self.refused_appends
                .push_back((self.appended_through + 1, through));
        }
        self.appended_through = through;
        while self
            .refused_appends
            .front()
            .is_some_and(|&(_, last)| last + REFUSED_HORIZON < through)
        {
            self.refused_appends.pop_front();
        }
    }

    /// Whether the entries of `ticket` were written.
    fn append_written(&self, ticket: u64) -> bool {
        !self
            .refused_appends
            .iter()
            .any(|&(first, last)| (first..=last).contains(&ticket))
    }

    /// The last commit: `bodies` and the final checkpoint; nothing after it.
    fn finish(&mut self, bodies: &[SealableBody]) -> bool {
        if self.stopped {
            return false;
        }
        self.stopped = true;
        self.commit(bodies, true)
    }

    fn until_checkpoint(&self) -> Duration {
        if self.entries_since_checkpoint == 0 {
            return self.settings.checkpoint_interval;
        }
        self.settings
            .checkpoint_interval
            .saturating_sub(self.last_checkpoint.elapsed())
    }

    /// Chains and writes `bodies` (with a checkpoint when one is due, or
    /// when `is_final`) in one write. On failure the chain is rolled back to
    /// before the batch and `false` is returned: none of it counts as written.
    fn commit(&mut self, bodies: &[SealableBody], is_final: bool) -> bool {
        let before = (self.head, self.entries_since_checkpoint);
        let mut lines = std::mem::take(&mut self.lines);
        lines.clear();
        for body in bodies {
            self.head.seal_into(body, &mut lines);
            self.entries_since_checkpoint += 1;
        }
        let checkpoint = is_final
            || (self.entries_since_checkpoint > 0
                && self.last_checkpoint.elapsed() >= self.settings.checkpoint_interval);
        if checkpoint {
            self.append_checkpoint(&mut lines, is_final);
        }
        let sync_due = self.settings.fsync == FsyncPolicy::Always
            || (checkpoint && self.settings.fsync == FsyncPolicy::Checkpoint);
        // A background sync failed: sync here until one succeeds again.
        let sync_failed = self.syncer.as_ref().is_some_and(Syncer::has_failed);
        let in_background = sync_due && !is_final && !sync_failed && self.syncer.is_some();
        let sync_here = (sync_due && !in_background) || sync_failed;
        let written = lines.is_empty() || self.write(&lines, sync_here);
        self.lines = lines;
        if written {
            if sync_here && let Some(syncer) = &self.syncer {
                syncer.recovered();
            }
            if in_background {
                self.sync_in_background();
            } else if sync_here && checkpoint && !self.settings.keep_page_cache {
                // Synced here (`fsync=always`, or after a failed background
                // sync): give the synced pages back once per checkpoint, as
                // the sync thread does after each of its syncs.
                if let Sink::File(sink) = &self.output
                    && let Some(file) = &sink.file
                {
                    drop_cached_pages(file, &self.device);
                }
            }
            if checkpoint {
                self.last_checkpoint = Instant::now();
            }
            if !is_final {
                self.rotate_if_due();
            }
        } else {
            (self.head, self.entries_since_checkpoint) = before;
        }
        written
    }

    fn append_checkpoint(&mut self, lines: &mut Vec<u8>, is_final: bool) {
        let time = now_rfc3339();
        let claim = CheckpointClaim {
            device: &self.device,
            seq: self.head.next_seq,
            prev_hash: self.head.prev_hash,
            time: &time,
            entries: self.entries_since_checkpoint,
            is_final,
        };
        let signature = self.signer.sign(&claim);
        let body = serde_json::json!({
            "time": time,
            "type": CHECKPOINT_TYPE,
            "checkpoint": {
                "device": self.device,
                "entries": self.entries_since_checkpoint,
                "final": is_final,
                "key_id": self.signer.key_id(),
                "signature": signature,
            },
        });
        let mut text = body.to_string();
        text.pop();
        self.head.seal_into(&SealableBody::new(text), lines);
        self.entries_since_checkpoint = 0;
    }

    /// Hands a duplicate of the file to the sync thread; syncs in place if
    /// the descriptor cannot be duplicated.
    fn sync_in_background(&mut self) {
        let (Some(syncer), Sink::File(sink)) = (&self.syncer, &self.output) else {
            return;
        };
        let Some(file) = &sink.file else {
            return;
        };
        match file.try_clone() {
            Ok(duplicate) => syncer.request(duplicate),
            Err(error) => {
                tracing::warn!(device = %self.device, %error, "cannot duplicate the audit file for a background sync; syncing in place");
                if file.sync_data().is_err() {
                    syncer.request_failed();
                }
            }
        }
    }

    fn write(&mut self, bytes: &[u8], sync: bool) -> bool {
        let result = match &mut self.output {
            Sink::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(bytes).and_then(|()| stdout.flush())
            }
            Sink::File(file) => file.write(bytes, sync),
        };
        match result {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(device = %self.device, %error, "audit device cannot write; requests it alone audits are refused");
                false
            }
        }
    }

    fn rotate_if_due(&mut self) {
        let Sink::File(file) = &self.output else {
            return;
        };
        if self.settings.rotate_bytes == 0 || file.len < self.settings.rotate_bytes {
            return;
        }
        // Close the file with a checkpoint so every rotated file is signed to its end.
        let before = (self.head, self.entries_since_checkpoint);
        let mut lines = Vec::new();
        self.append_checkpoint(&mut lines, false);
        if !self.write(&lines, self.settings.fsync != FsyncPolicy::Never) {
            (self.head, self.entries_since_checkpoint) = before;
            return;
        }
        self.last_checkpoint = Instant::now();
        let first = self.file_first_seq;
        if let Sink::File(file) = &mut self.output {
            match file.rotate(first) {
                Ok(()) => self.file_first_seq = self.head.next_seq,
                Err(error) => {
                    tracing::error!(device = %self.device, %error, "audit log rotation failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_options_and_refuses_bad_ones() {
        let settings = DeviceSettings::parse(
            "file",
            &options(&[
                ("file_path", "/tmp/a.log"),
                ("mode", "0640"),
                ("fsync", "always"),
                ("batch_window", "200us"),
                ("rotate_bytes", "1000"),
                ("keep_page_cache", "true"),
            ]),
        )
        .unwrap();
        assert!(settings.keep_page_cache);
        assert_eq!(settings.target, Target::File("/tmp/a.log".into()));
        assert_eq!(settings.mode, 0o640);
        assert_eq!(settings.fsync, FsyncPolicy::Always);
        assert_eq!(settings.batch_window, Duration::from_micros(200));
        assert_eq!(settings.rotate_bytes, 1000);
        let stdout = DeviceSettings::parse("file", &options(&[("file_path", "stdout")])).unwrap();
        assert_eq!(stdout.target, Target::Stdout);
        assert!(
            !stdout.keep_page_cache,
            "synced pages are dropped by default"
        );
        for bad in [
            options(&[]),
            options(&[("file_path", "relative.log")]),
            options(&[("file_path", "discard")]),
            options(&[("file_path", "/tmp/a"), ("mode", "999")]),
            options(&[("file_path", "/tmp/a"), ("fsync", "sometimes")]),
            options(&[("file_path", "/tmp/a"), ("checkpoint_interval", "5s")]),
            options(&[("file_path", "/tmp/a"), ("log_raw", "yes")]),
            options(&[("file_path", "/tmp/a"), ("keep_page_cache", "maybe")]),
        ] {
            assert!(DeviceSettings::parse("file", &bad).is_err(), "{bad:?}");
        }
        assert!(DeviceSettings::parse("syslog", &options(&[])).is_err());
    }

    #[test]
    fn group_appends_answer_each_ticket() {
        let mut appends = Appends::default();
        let body = |text: &str| SealableBody::new(text.to_owned());
        assert_eq!(appends.push(vec![body("a")]).0, 1);
        assert_eq!(appends.push(vec![body("b"), body("c")]).0, 2);
        let (bodies, through) = appends.take();
        assert_eq!((bodies.len(), through), (3, 2));
        assert!(appends.take().0.is_empty());

        let dir = tempfile::tempdir().unwrap();
        let options = [(
            "file_path".to_owned(),
            dir.path().join("a.log").display().to_string(),
        )]
        .into_iter()
        .collect();
        let signer =
            Arc::new(CheckpointSigner::from_seed(&SecretBytes::from_slice(&[1; 32])).unwrap());
        let device = Device::start(
            "file/",
            "file",
            "",
            options,
            &SecretBytes::from_slice(b"s"),
            signer,
        )
        .unwrap();
        let mut writer = device.writer.lock();
        writer.record_appends(2, true);
        writer.record_appends(5, false);
        writer.record_appends(7, true);
        assert!(writer.append_written(2));
        assert!(!writer.append_written(3) && !writer.append_written(5));
        assert!(writer.append_written(6) && writer.append_written(7));
    }

    #[test]
    fn recovers_the_chain_and_cuts_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut head = ChainHead::genesis();
        let mut lines = Vec::new();
        head.seal_into(
            &SealableBody::new(r#"{"type":"request""#.into()),
            &mut lines,
        );
        head.seal_into(
            &SealableBody::new(r#"{"type":"response""#.into()),
            &mut lines,
        );
        lines.extend_from_slice(br#"{"type":"requ"#);
        std::fs::write(&path, &lines).unwrap();
        let (_file, recovered) = open_continuing(&path, 0o600).unwrap();
        assert_eq!(recovered, head);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n"));
        assert_eq!(text.lines().count(), 2);

        std::fs::write(&path, b"not json\n").unwrap();
        assert!(open_continuing(&path, 0o600).is_err());
    }
}
