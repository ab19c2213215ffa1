//! The `Sys` service: seal status, init, unseal and seal. Each RPC that changes
//! the seal refreshes the health status before it answers.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::api::error::grpc_status;
use crate::seal::{SealError, SealStatus};
use crate::service::{RequestContext, Service, ServiceError, Transport};

use super::health::HealthWatch;
use super::pb::sys_server::Sys;
use super::{pb, token};

/// The `cipherd.v1.Sys` service.
#[derive(Debug, Clone)]
pub struct SysApi {
    service: Arc<Service>,
    health: HealthWatch,
}

impl SysApi {
    /// The service over `service`, reporting seal changes to `health`.
    pub fn new(service: Arc<Service>, health: HealthWatch) -> Self {
        Self { service, health }
    }

    /// Runs `f` on the blocking pool (init and unseal derive keys and load
    /// every key of every mount).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Service) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<T, Status> {
        let service = self.service.clone();
        match tokio::task::spawn_blocking(move || f(&service)).await {
            Ok(result) => result.map_err(|e| grpc_status(&e)),
            Err(error) => {
                tracing::error!(%error, "gRPC sys task failed");
                Err(Status::internal("internal error"))
            }
        }
    }
}

fn status_message(status: SealStatus) -> pb::SealStatusResponse {
    pb::SealStatusResponse {
        initialized: status.initialized,
        sealed: status.sealed,
        threshold: u32::from(status.threshold),
        shares: u32::from(status.shares),
        progress: u32::from(status.progress),
        nonce: status.nonce,
        cluster_name: status.cluster_name.unwrap_or_default(),
        cluster_id: status.cluster_id.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl Sys for SysApi {
    async fn seal_status(
        &self,
        _request: Request<pb::SealStatusRequest>,
    ) -> Result<Response<pb::SealStatusResponse>, Status> {
        Ok(Response::new(status_message(self.service.seal_status())))
    }

    async fn init(
        &self,
        request: Request<pb::InitRequest>,
    ) -> Result<Response<pb::InitResponse>, Status> {
        let message = request.into_inner();
        let shares = u8::try_from(message.secret_shares).map_err(|_| {
            Status::invalid_argument("invalid seal configuration: shares must be less than 256")
        })?;
        let threshold = u8::try_from(message.secret_threshold).map_err(|_| {
            Status::invalid_argument("invalid seal configuration: threshold must be less than 256")
        })?;
        let init = self
            .blocking(move |service| service.init(shares, threshold, None))
            .await?;
        Ok(Response::new(pb::InitResponse {
            keys: init
                .shares
                .iter()
                .map(|share| share.expose_secret().to_vec())
                .collect(),
            root_token: init.root_token.token.expose_secret().to_owned(),
        }))
    }

    async fn unseal(
        &self,
        request: Request<pb::UnsealRequest>,
    ) -> Result<Response<pb::SealStatusResponse>, Status> {
        let message = request.into_inner();
        if message.reset {
            if !self.service.seal_status().sealed {
                return Err(Status::failed_precondition("vault is unsealed"));
            }
            return Ok(Response::new(status_message(self.service.unseal_reset())));
        }
        if message.key.is_empty() {
            return Err(Status::invalid_argument(
                "'key' must be specified, or 'reset' set to true",
            ));
        }
        let key = zeroize::Zeroizing::new(message.key);
        let outcome = self
            .blocking(move |service| match service.unseal(&key) {
                // As Vault: a share already submitted in this round is ignored.
                Err(ServiceError::Seal(SealError::DuplicateShare)) => Ok(service.seal_status()),
                other => other,
            })
            .await;
        self.health.refresh().await;
        Ok(Response::new(status_message(outcome?)))
    }

    async fn seal(
        &self,
        request: Request<pb::SealRequest>,
    ) -> Result<Response<pb::SealResponse>, Status> {
        let token = token(request.metadata()).map(str::to_owned);
        let status = self.service.seal_status();
        // As over REST: sealing a sealed (or uninitialized) server succeeds.
        if !status.sealed && status.initialized {
            self.blocking(move |service| {
                service.seal(&RequestContext {
                    token: token.as_deref(),
                    transport: Transport::Grpc,
                    // Vault does not audit the seal lifecycle.
                    audit: None,
                })
            })
            .await?;
        }
        self.health.refresh().await;
        Ok(Response::new(pb::SealResponse {}))
    }
}
