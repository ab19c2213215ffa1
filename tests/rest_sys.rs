//! sys/ endpoints beyond init and unseal: barrier rotation and key status,
//! mount tuning, leader and the audit listing.

#[path = "common/inprocess.rs"]
mod inprocess;

use inprocess::InProcessServer;
use serde_json::json;

#[tokio::test]
async fn barrier_rotation_adds_a_term_and_keeps_data_readable() {
    let server = InProcessServer::start().await;
    let ct = server
        .post("transit/encrypt/k", json!({"plaintext": "aGk="}))
        .await;
    let ct = ct.data()["ciphertext"]
        .as_str()
        .expect("ciphertext")
        .to_owned();
    assert_eq!(server.get("sys/key-status").await.data()["term"], 1);
    assert_eq!(server.call("PUT", "sys/rotate", None).await.status, 204);
    assert_eq!(server.get("sys/key-status").await.data()["term"], 2);
    // Writes go under the new term; the old key record still opens.
    assert_eq!(
        server.post("transit/keys/k/rotate", json!({})).await.status,
        200
    );
    let plain = server
        .post("transit/decrypt/k", json!({"ciphertext": ct}))
        .await;
    assert_eq!(plain.data()["plaintext"], "aGk=");
    let denied = server.call_as(None, "PUT", "sys/rotate", None).await;
    assert_eq!(denied.status, 403);
}

#[tokio::test]
async fn tune_leader_and_audit() {
    let server = InProcessServer::start().await;
    let tuned = server
        .post(
            "sys/mounts/transit/tune",
            json!({"description": "pii", "default_lease_ttl": "1h"}),
        )
        .await;
    assert_eq!(tuned.status, 204);
    let read = server.get("sys/mounts/transit/tune").await;
    assert_eq!(read.data()["description"], "pii");
    assert_eq!(read.data()["default_lease_ttl"], 3600);
    assert_eq!(server.get("sys/leader").await.body["ha_enabled"], false);
    let audit = server.get("sys/audit").await;
    assert_eq!(audit.status, 200);
    assert_eq!(audit.data(), &json!({}));
}
