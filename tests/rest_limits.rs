//! Request limits: bodies over the configured size and batches over the
//! configured item count get 413 with Vault's JSON error shape, and nothing is
//! done for them.

#[path = "common/inprocess.rs"]
mod inprocess;

use cipherd::api::rest::Limits;
use cipherd::engine::EngineOptions;
use cipherd::service::ServiceOptions;
use inprocess::InProcessServer;
use serde_json::json;

#[tokio::test]
async fn oversized_body_is_413_with_a_json_error() {
    let server = InProcessServer::start_with_limits(
        ServiceOptions::default(),
        Limits {
            max_body_bytes: 1024,
        },
    )
    .await;
    let big = "A".repeat(4096);
    let response = server
        .post("transit/encrypt/limited", json!({ "plaintext": big }))
        .await;
    assert_eq!(response.status, 413);
    assert_eq!(
        response.errors(),
        vec!["http: request body too large".to_owned()]
    );
    // The upsert did not happen.
    assert_eq!(server.get("transit/keys/limited").await.status, 404);
    // A small request still works.
    let ok = server
        .post("transit/encrypt/limited", json!({ "plaintext": "aGk=" }))
        .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn oversized_batch_is_413() {
    let options = ServiceOptions {
        engine: EngineOptions {
            max_batch_items: 10,
            ..EngineOptions::default()
        },
        ..ServiceOptions::default()
    };
    let server = InProcessServer::start_with(options).await;
    assert_eq!(server.post("transit/keys/k", json!({})).await.status, 200);
    let items: Vec<_> = (0..11).map(|_| json!({ "plaintext": "aGk=" })).collect();
    let response = server
        .post("transit/encrypt/k", json!({ "batch_input": items }))
        .await;
    assert_eq!(response.status, 413);
    assert!(
        response.errors()[0].contains("limit of 10"),
        "{:?}",
        response.errors()
    );
    let items: Vec<_> = (0..10).map(|_| json!({ "plaintext": "aGk=" })).collect();
    assert_eq!(
        server
            .post("transit/encrypt/k", json!({ "batch_input": items }))
            .await
            .status,
        200
    );
}
