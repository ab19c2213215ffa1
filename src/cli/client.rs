//! A small REST client for the CLI's client commands.

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::Value;

/// Server address and token, from the environment.
pub struct Client {
    http: reqwest::Client,
    address: String,
    token: Option<String>,
}

impl Client {
    /// Reads `CIPHERD_ADDR` (or `VAULT_ADDR`, default `http://127.0.0.1:8200`),
    /// `CIPHERD_TOKEN` (or `VAULT_TOKEN`), and `CIPHERD_CACERT` (or
    /// `VAULT_CACERT`): a PEM CA certificate to trust instead of the system roots.
    pub fn from_env() -> anyhow::Result<Self> {
        let env = |a: &str, b: &str| {
            std::env::var(a)
                .or_else(|_| std::env::var(b))
                .ok()
                .filter(|v| !v.is_empty())
        };
        let address =
            env("CIPHERD_ADDR", "VAULT_ADDR").unwrap_or_else(|| "http://127.0.0.1:8200".into());
        // reqwest is built without a default TLS provider; use ring, like the server.
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder();
        if let Some(path) = env("CIPHERD_CACERT", "VAULT_CACERT") {
            let pem =
                std::fs::read(&path).with_context(|| format!("reading CA certificate {path}"))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("parsing CA certificate {path}"))?;
            builder = builder.tls_certs_only([cert]);
        }
        Ok(Self {
            http: builder.build().context("building the HTTP client")?,
            address: address.trim_end_matches('/').to_owned(),
            token: env("CIPHERD_TOKEN", "VAULT_TOKEN"),
        })
    }

    /// Sends a request to `/v1/<path>`; returns the JSON body (`Null` for 204).
    /// Non-2xx answers become errors carrying the server's messages.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let method = Method::from_bytes(method.as_bytes()).context("bad HTTP method")?;
        let url = format!("{}/v1/{}", self.address, path.trim_start_matches('/'));
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.address))?;
        let status = response.status();
        let text = response.text().await.context("reading the response")?;
        let json: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let messages = json
                .get("errors")
                .and_then(Value::as_array)
                .map(|errors| {
                    errors
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::trim)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_else(|| json.to_string());
            bail!(
                "{} {}: {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or(""),
                messages
            );
        }
        Ok(json)
    }
}
