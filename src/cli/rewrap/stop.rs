//! A job's stop request. The first SIGINT or SIGTERM asks the readers to
//! read no further; the batches already read finish, are written and
//! checkpointed, and the job ends saying how to resume. A second signal
//! ends the process at once (which the checkpoint also survives: it never
//! runs ahead of what was written).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a stop was asked for; cheap to clone and to check.
#[derive(Debug, Clone, Default)]
pub(super) struct Stop(Arc<AtomicBool>);

impl Stop {
    /// A stop request set by the next SIGINT or SIGTERM.
    pub(super) fn on_signals() -> Self {
        let stop = Self::default();
        let flag = stop.0.clone();
        tokio::spawn(async move {
            // The server's own shutdown signals: Ctrl-C or SIGTERM.
            crate::cli::shutdown_signal().await;
            eprintln!(
                "rewrap: stopping after the batches in flight (signal again to quit at once)"
            );
            flag.store(true, Ordering::SeqCst);
            crate::cli::shutdown_signal().await;
            eprintln!("rewrap: quitting; the checkpoint holds what was written");
            std::process::exit(130);
        });
        stop
    }

    /// Whether the readers should stop.
    pub(super) fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
