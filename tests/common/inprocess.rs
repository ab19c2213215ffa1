//! In-process servers: a [`Service`] over memory storage, initialized with one
//! share and the root token `root`, unsealed, and served by the REST router on
//! `127.0.0.1:0` on the test's own runtime. The listener is bound before the
//! server task is spawned, so there is nothing to wait for.
//!
//! Used by `tests/rest_transit.rs` through
//! `#[path = "common/inprocess.rs"] mod inprocess;`, and declared in
//! `tests/common/mod.rs` for anyone else.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::Method;
use serde_json::Value;

use cipherd::api::rest::{Limits, router};
use cipherd::service::{Service, ServiceOptions};
use cipherd::storage::MemoryStorage;

/// The root token every in-process server is initialized with.
pub const ROOT_TOKEN: &str = "root";

/// A server running inside the test process.
pub struct InProcessServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The service behind it (for direct checks).
    pub service: Arc<Service>,
    client: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A response: status, body (`Value::Null` when empty) and `Content-Type`.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Parsed JSON body, or `Null` for an empty body.
    pub body: Value,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
}

impl Response {
    /// `body.data`.
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// `body.errors` as strings.
    pub fn errors(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `body.warnings` as strings (empty when `null`).
    pub fn warnings(&self) -> Vec<String> {
        self.body["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl InProcessServer {
    /// Starts a server with default options.
    pub async fn start() -> Self {
        Self::start_with(ServiceOptions::default()).await
    }

    /// Starts a server with `options`.
    pub async fn start_with(options: ServiceOptions) -> Self {
        Self::start_with_limits(options, Limits::default()).await
    }

    /// Starts a server with `options` and REST `limits`.
    pub async fn start_with_limits(options: ServiceOptions, limits: Limits) -> Self {
        let service = Service::new(Arc::new(MemoryStorage::new()), options).expect("service");
        let init = service.init(1, 1, Some(ROOT_TOKEN)).expect("init");
        service
            .unseal_with_master_key(init.shares[0].expose_secret())
            .expect("unseal");
        let service = Arc::new(service);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        let app = router(service.clone(), limits);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            service,
            client: {
                cipherd::tls::install_crypto_provider();
                reqwest::Client::new()
            },
            task,
        }
    }

    /// `method /v1/<path>` with the root token.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Response {
        self.call_as(Some(ROOT_TOKEN), method, path, body).await
    }

    /// `method /v1/<path>` with `token` (or none).
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Response {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .client
            .request(method, format!("http://{}/v1/{path}", self.addr));
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.body(serde_json::to_vec(&body).expect("JSON body"));
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON response")
        };
        Response {
            status,
            body,
            content_type,
        }
    }

    /// `POST /v1/<path>` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.call("POST", path, Some(body)).await
    }

    /// `GET /v1/<path>`.
    pub async fn get(&self, path: &str) -> Response {
        self.call("GET", path, None).await
    }
}
