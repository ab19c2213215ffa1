//! Background `fdatasync` for a file device's checkpoints.
//!
//! With `fsync=checkpoint` the file is made durable at each signed checkpoint,
//! about once a second. Syncing on the request path would hold the device's
//! writer for the whole flush of a second's worth of dirty pages (tens of
//! milliseconds under load) and stall every request behind it, although no
//! request waits for durability in that mode. So the writer hands a duplicate
//! of the file descriptor to this thread and carries on appending.
//!
//! Once synced, the file's pages are dropped from the page cache
//! ([`drop_cached_pages`]): the server never reads them again (the device
//! option `keep_page_cache=true` leaves them, for a log shipper that reads
//! the file more than a second behind).
//!
//! A failed sync cannot fail requests already answered; it is logged and
//! flagged, and the writer's next commit syncs on the request path instead
//! (refusing its entries if that fails too), until a sync succeeds again.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};

/// Drops `file`'s pages from the page cache once they are on disk (the sync
/// just made the written ones clean; dirty ones are left alone).
///
/// The server never reads its log back, so those pages only crowd out
/// useful cache. Worse, a log written at 100 MB/s keeps asking the kernel
/// for fresh pages: on a virtual machine whose host has reclaimed the
/// guest's free memory, each fresh page costs a fault on the host. Measured
/// under sustained load (BENCHMARKS.md, "Audit on vs off"), copying entries
/// into new page-cache pages then took 17% of the audited server's time.
/// Pages dropped here go back to the guest's free lists and are reused for
/// the next second's entries while still backed.
pub fn drop_cached_pages(file: &File, device: &str) {
    if let Err(error) = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed) {
        tracing::debug!(%device, %error, "dropping the audit file's cached pages failed");
    }
}

/// The sync thread of one device.
pub struct Syncer {
    queue: Option<Sender<File>>,
    failed: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("failed", &self.failed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Syncer {
    /// Starts the thread for the device named `device`; `drop_pages`: drop
    /// the file's pages from the page cache after each sync.
    pub fn start(device: &str, drop_pages: bool) -> std::io::Result<Self> {
        let (queue, inbox) = mpsc::channel::<File>();
        let failed = Arc::new(AtomicBool::new(false));
        let thread = {
            let failed = failed.clone();
            let device = device.to_owned();
            std::thread::Builder::new()
                .name(format!("audit-sync-{}", device.trim_end_matches('/')))
                .spawn(move || {
                    while let Ok(mut file) = inbox.recv() {
                        // Requests that queued up while a sync ran are all
                        // covered by one more sync of the newest descriptor.
                        while let Ok(newer) = inbox.try_recv() {
                            file = newer;
                        }
                        if let Err(error) = file.sync_data() {
                            tracing::error!(%device, %error, "audit file sync failed; the next entries are synced before they are acknowledged");
                            failed.store(true, Ordering::Release);
                        } else if drop_pages {
                            drop_cached_pages(&file, &device);
                        }
                    }
                })?
        };
        Ok(Self {
            queue: Some(queue),
            failed,
            thread: Some(thread),
        })
    }

    /// Asks for `file` to be synced soon (returns at once).
    pub fn request(&self, file: File) {
        if let Some(queue) = &self.queue
            && queue.send(file).is_err()
        {
            self.request_failed();
        }
    }

    /// Records a sync that failed elsewhere, as if it had failed here.
    pub fn request_failed(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// Whether a background sync failed since the last [`Syncer::recovered`].
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// A sync on the request path succeeded: background syncs may resume.
    pub fn recovered(&self) {
        self.failed.store(false, Ordering::Release);
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once the pending sync is done.
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_requested_files_and_stops_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let file = File::create(&path).unwrap();
        let syncer = Syncer::start("file/", true).unwrap();
        syncer.request(file.try_clone().unwrap());
        syncer.request(file);
        let failed = syncer.failed.clone();
        // Dropping joins the thread: this returns only once both requests
        // were handled and the thread ended.
        drop(syncer);
        assert!(!failed.load(Ordering::Acquire), "both syncs succeeded");
        assert!(path.exists());
    }

    #[test]
    fn a_failed_sync_is_flagged() {
        // fdatasync on a pipe fails (EINVAL), as a sync of a broken disk would.
        let (_reader, writer) = std::io::pipe().unwrap();
        let pipe = File::from(std::os::fd::OwnedFd::from(writer));
        let syncer = Syncer::start("file/", true).unwrap();
        syncer.request(pipe);
        // Dropping joins the thread, so the request has been handled.
        let failed = syncer.failed.clone();
        drop(syncer);
        assert!(failed.load(Ordering::Acquire));

        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("log")).unwrap();
        let syncer = Syncer::start("file/", true).unwrap();
        syncer.request(file);
        let failed = syncer.failed.clone();
        drop(syncer);
        assert!(!failed.load(Ordering::Acquire), "a file syncs");
    }

    #[test]
    fn failure_flag_clears_on_recovery() {
        let syncer = Syncer::start("file/", true).unwrap();
        assert!(!syncer.has_failed());
        syncer.request_failed();
        assert!(syncer.has_failed());
        syncer.recovered();
        assert!(!syncer.has_failed());
    }
}
