//! Standard gRPC health checking that follows the seal: `cipherd.v1.Transit`
//! and the server as a whole (`""`) are `SERVING` while unsealed and
//! `NOT_SERVING` while sealed or uninitialized; `cipherd.v1.Sys` is always
//! `SERVING`, since it is how a sealed server gets unsealed.
//!
//! The Sys RPCs refresh the status as soon as they change the seal; a seal or
//! unseal through REST is picked up by [`HealthWatch::run`] within
//! [`POLL_INTERVAL`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::service::Service;

use super::pb;

/// How often the seal state is polled for changes made outside gRPC.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps the health reporter in step with the service's seal.
#[derive(Clone)]
pub struct HealthWatch {
    service: Arc<Service>,
    reporter: HealthReporter,
    /// The last reported state: 0 none yet, 1 serving, 2 not serving. Watchers
    /// of the health service hear about changes only.
    reported: Arc<AtomicU8>,
}

impl std::fmt::Debug for HealthWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthWatch").finish_non_exhaustive()
    }
}

impl HealthWatch {
    /// A watch that reports through `reporter`.
    pub fn new(service: Arc<Service>, reporter: HealthReporter) -> Self {
        Self {
            service,
            reporter,
            reported: Arc::new(AtomicU8::new(0)),
        }
    }

    /// Reports the current seal state.
    pub async fn refresh(&self) {
        let (status, code) = if self.service.seal_status().sealed {
            (ServingStatus::NotServing, 2)
        } else {
            (ServingStatus::Serving, 1)
        };
        if self.reported.swap(code, Ordering::AcqRel) == code {
            return;
        }
        let transit =
            <pb::transit_server::TransitServer<super::transit::TransitApi> as NamedService>::NAME;
        let sys = <pb::sys_server::SysServer<super::sys::SysApi> as NamedService>::NAME;
        self.reporter.set_service_status("", status).await;
        self.reporter.set_service_status(transit, status).await;
        self.reporter
            .set_service_status(sys, ServingStatus::Serving)
            .await;
    }

    /// Polls the seal state forever (abort the task to stop it).
    pub async fn run(self) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.refresh().await;
        }
    }
}
