//! Issue 3 (sealed storage), end to end against the real binary on the embedded
//! store: init, unseal with Shamir shares, restart, seal, health codes, dev mode,
//! `--unseal-key-file`, and a byte scan proving the data directory holds no secret.

#[path = "common/process.rs"]
mod process;

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use cipherd::crypto::SecretBytes;
use process::{Client, ProcessServer, Reply};

/// What `PUT sys/init` returned.
struct Init {
    keys: Vec<String>,
    keys_base64: Vec<String>,
    root_token: String,
}

async fn init(client: &Client, shares: u8, threshold: u8) -> Init {
    let reply = client
        .put(
            "sys/init",
            json!({"secret_shares": shares, "secret_threshold": threshold}),
        )
        .await;
    assert_eq!(reply.status, 200, "init: {:?}", reply.body);
    let object = reply.body.as_object().expect("init object");
    let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["keys", "keys_base64", "root_token"], "init fields");
    let strings = |field: &str| -> Vec<String> {
        reply.body[field]
            .as_array()
            .unwrap_or_else(|| panic!("{field} array"))
            .iter()
            .map(|v| v.as_str().expect("share string").to_owned())
            .collect()
    };
    let init = Init {
        keys: strings("keys"),
        keys_base64: strings("keys_base64"),
        root_token: reply.body["root_token"]
            .as_str()
            .expect("root_token")
            .to_owned(),
    };
    assert_eq!(init.keys.len(), usize::from(shares));
    assert_eq!(init.keys_base64.len(), usize::from(shares));
    let share_len = if shares == 1 { 32 } else { 33 };
    for (hex_form, b64_form) in init.keys.iter().zip(&init.keys_base64) {
        let raw = hex::decode(hex_form).expect("hex share");
        assert_eq!(raw.len(), share_len);
        assert_eq!(
            STANDARD.decode(b64_form).expect("base64 share"),
            raw,
            "keys[i] and keys_base64[i] differ"
        );
    }
    assert!(!init.root_token.is_empty());
    init
}

async fn seal_status(client: &Client) -> Value {
    let reply = client.get("sys/seal-status").await;
    assert_eq!(reply.status, 200, "seal-status: {:?}", reply.body);
    reply.body
}

async fn unseal(client: &Client, key: &str) -> Reply {
    client.put("sys/unseal", json!({ "key": key })).await
}

/// Submits `keys` in order; the last one must unseal.
async fn unseal_all(client: &Client, keys: &[&str]) {
    for (i, key) in keys.iter().enumerate() {
        let reply = unseal(client, key).await;
        assert_eq!(reply.status, 200, "unseal share {i}: {:?}", reply.body);
        let last = i + 1 == keys.len();
        assert_eq!(
            reply.body["sealed"],
            json!(!last),
            "sealed after share {i}: {:?}",
            reply.body
        );
        let progress = if last { 0 } else { i + 1 };
        assert_eq!(
            reply.body["progress"],
            json!(progress),
            "progress after share {i}"
        );
    }
}

async fn health(client: &Client) -> u16 {
    let reply = client.get("sys/health").await;
    assert!(reply.body.is_object(), "health body: {:?}", reply.body);
    reply.status
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// `{"errors":["Vault is sealed"]}` under 503.
fn assert_sealed_reply(what: &str, reply: &Reply) {
    assert_eq!(
        (reply.status, &reply.body),
        (503, &json!({"errors": ["Vault is sealed"]})),
        "{what} on a sealed server"
    );
}

async fn encrypt(client: &Client, key: &str, plaintext: &[u8]) -> String {
    let reply = client
        .post(
            &format!("transit/encrypt/{key}"),
            json!({ "plaintext": b64(plaintext) }),
        )
        .await;
    assert_eq!(reply.status, 200, "encrypt with {key}: {:?}", reply.body);
    reply
        .data("ciphertext")
        .as_str()
        .expect("ciphertext")
        .to_owned()
}

async fn decrypt(client: &Client, key: &str, ciphertext: &str) -> Reply {
    client
        .post(
            &format!("transit/decrypt/{key}"),
            json!({ "ciphertext": ciphertext }),
        )
        .await
}

async fn assert_decrypts(client: &Client, key: &str, ciphertext: &str, plaintext: &[u8]) {
    let reply = decrypt(client, key, ciphertext).await;
    assert_eq!(
        reply.status, 200,
        "decrypt {ciphertext} with {key}: {:?}",
        reply.body
    );
    assert_eq!(
        reply.data("plaintext"),
        &json!(b64(plaintext)),
        "decrypt {ciphertext} with {key}"
    );
}

/// The transit (and other token-protected) requests a sealed server must refuse.
async fn assert_everything_sealed(root: &Client, key: &str, ciphertext: &str) {
    let anonymous = root.with_token(None);
    let requests: Vec<(&str, String, Option<Value>)> = vec![
        (
            "POST",
            "transit/keys/brand-new".into(),
            Some(json!({"type": "aes256-gcm96"})),
        ),
        ("GET", format!("transit/keys/{key}"), None),
        ("LIST", "transit/keys".into(), None),
        (
            "POST",
            format!("transit/keys/{key}/rotate"),
            Some(json!({})),
        ),
        (
            "POST",
            format!("transit/keys/{key}/config"),
            Some(json!({"deletion_allowed": false})),
        ),
        (
            "POST",
            format!("transit/encrypt/{key}"),
            Some(json!({"plaintext": b64(b"sealed?")})),
        ),
        (
            "POST",
            format!("transit/decrypt/{key}"),
            Some(json!({"ciphertext": ciphertext})),
        ),
        ("GET", format!("transit/export/encryption-key/{key}"), None),
        ("DELETE", format!("transit/keys/{key}"), None),
        ("GET", "sys/mounts".into(), None),
        ("GET", "auth/token/lookup-self".into(), None),
    ];
    for client in [root, &anonymous] {
        for (method, path, body) in &requests {
            let reply = client.send(method, path, body.as_ref()).await;
            assert_sealed_reply(&format!("{method} {path}"), &reply);
        }
    }
}

#[tokio::test]
async fn health_follows_the_seal_state() {
    let server = ProcessServer::start_temp(&[]);
    let client = server.client(None);

    assert_eq!(
        client.get("sys/init").await.body,
        json!({"initialized": false})
    );
    let status = seal_status(&client).await;
    assert_eq!(
        (
            &status["initialized"],
            &status["sealed"],
            &status["t"],
            &status["n"],
            &status["progress"]
        ),
        (&json!(false), &json!(true), &json!(0), &json!(0), &json!(0)),
        "{status:?}"
    );
    assert_eq!(health(&client).await, 501, "uninitialized");
    assert_eq!(client.send("HEAD", "sys/health", None).await.status, 501);
    assert_eq!(client.get("sys/health?uninitcode=299").await.status, 299);
    // Before init everything else is "sealed", and unseal says why.
    assert_sealed_reply(
        "encrypt before init",
        &client
            .post("transit/encrypt/k", json!({"plaintext": ""}))
            .await,
    );
    let early = unseal(&client, &"ab".repeat(33)).await;
    assert_eq!(
        (early.status, early.errors()),
        (400, vec!["Vault is not initialized".to_owned()])
    );

    let init = init(&client, 1, 1).await;
    assert_eq!(
        client.get("sys/init").await.body,
        json!({"initialized": true})
    );
    assert_eq!(health(&client).await, 503, "initialized, sealed");
    assert_eq!(client.send("HEAD", "sys/health", None).await.status, 503);
    assert_eq!(client.get("sys/health?sealedcode=200").await.status, 200);

    unseal_all(&client, &[&init.keys[0]]).await;
    let reply = client.get("sys/health").await;
    assert_eq!(reply.status, 200, "active: {:?}", reply.body);
    assert_eq!(
        (&reply.body["initialized"], &reply.body["sealed"]),
        (&json!(true), &json!(false))
    );
    assert!(
        reply.body["cluster_name"]
            .as_str()
            .is_some_and(|n| n.starts_with("vault-cluster-"))
    );
    assert_eq!(client.send("HEAD", "sys/health", None).await.status, 200);

    let root = client.with_token(Some(&init.root_token));
    assert_eq!(root.put("sys/seal", json!({})).await.status, 204);
    assert_eq!(health(&client).await, 503, "sealed again");
}

#[tokio::test]
async fn unseal_refuses_bad_shares_and_keeps_progress() {
    let server = ProcessServer::start_temp(&[]);
    let client = server.client(None);
    let init = init(&client, 5, 3).await;
    let status = seal_status(&client).await;
    assert_eq!(
        (&status["sealed"], &status["t"], &status["n"]),
        (&json!(true), &json!(3), &json!(5))
    );

    // A second init is refused.
    let again = client
        .put(
            "sys/init",
            json!({"secret_shares": 1, "secret_threshold": 1}),
        )
        .await;
    assert_eq!(
        (again.status, again.errors()),
        (400, vec!["Vault is already initialized".to_owned()])
    );

    let first = unseal(&client, &init.keys[0]).await;
    assert_eq!(
        (first.status, &first.body["progress"], &first.body["sealed"]),
        (200, &json!(1), &json!(true))
    );
    let nonce = first.body["nonce"].as_str().expect("nonce").to_owned();
    assert_eq!(nonce.len(), 36, "nonce is a UUID: {nonce}");

    // Every refused share leaves progress (and the attempt's nonce) alone.
    let progress_is_one = |what: String| {
        let client = client.clone();
        let nonce = nonce.clone();
        async move {
            let status = seal_status(&client).await;
            assert_eq!(
                (&status["progress"], &status["sealed"], &status["nonce"]),
                (&json!(1), &json!(true), &json!(nonce)),
                "after {what}: {status:?}"
            );
        }
    };
    let raw0 = hex::decode(&init.keys[0]).expect("hex");
    let mut same_index = hex::decode(&init.keys[1]).expect("hex");
    same_index[32] = raw0[32];
    let mut zero_index = raw0.clone();
    zero_index[32] = 0;
    let bad: Vec<(&str, String, &str)> = vec![
        (
            "too short",
            "zzzz".into(),
            "invalid key: key is shorter than minimum 16 bytes",
        ),
        (
            "not hex or base64",
            "not a share!".into(),
            "invalid key: 'key' must be a valid hex or base64 string",
        ),
        (
            "too long",
            b64(&[7u8; 36]),
            "invalid key: key is longer than maximum 33 bytes",
        ),
        (
            "wrong length",
            hex::encode([7u8; 20]),
            "invalid key: key is 20 bytes, expected 33",
        ),
        (
            "index reused",
            hex::encode(&same_index),
            "invalid key: a different share with the same index was already submitted",
        ),
        (
            "zero index",
            hex::encode(&zero_index),
            "invalid key: share index is zero",
        ),
    ];
    for (what, key, message) in &bad {
        let reply = unseal(&client, key).await;
        assert_eq!(
            (reply.status, reply.errors()),
            (400, vec![(*message).to_owned()]),
            "{what}"
        );
        progress_is_one(format!("a share that is {what}")).await;
    }
    let missing = client.put("sys/unseal", json!({})).await;
    assert_eq!(
        (missing.status, missing.errors()),
        (
            400,
            vec![
                "'key' must be specified in request body as JSON, or 'reset' set to true"
                    .to_owned()
            ]
        )
    );
    progress_is_one("an empty body".into()).await;
    // The same share again, hex or base64, is ignored as Vault does (reference §9.3).
    for key in [&init.keys[0], &init.keys_base64[0]] {
        let reply = unseal(&client, key).await;
        assert_eq!(
            (reply.status, &reply.body["progress"]),
            (200, &json!(1)),
            "duplicate share: {:?}",
            reply.body
        );
        progress_is_one("a duplicate share".into()).await;
    }
    // GET is not an unseal.
    assert_eq!(client.get("sys/unseal").await.status, 405);

    // Reset discards the attempt.
    let reset = client.put("sys/unseal", json!({"reset": true})).await;
    assert_eq!(
        (reset.status, &reset.body["progress"], &reset.body["nonce"]),
        (200, &json!(0), &json!(""))
    );

    // A well-formed but wrong share: counted, then the combination fails at the
    // threshold, progress is reset and the server stays sealed.
    let mut wrong = hex::decode(&init.keys[2]).expect("hex");
    wrong[0] ^= 0x5a;
    for (i, key) in [init.keys[0].clone(), hex::encode(&wrong)]
        .iter()
        .enumerate()
    {
        let reply = unseal(&client, key).await;
        assert_eq!(
            (reply.status, &reply.body["progress"]),
            (200, &json!(i + 1))
        );
    }
    let failed = unseal(&client, &init.keys[4]).await;
    assert_eq!(failed.status, 400, "{:?}", failed.body);
    assert_eq!(
        failed.errors(),
        [
            "unable to retrieve stored keys: invalid key: failed to decrypt keys from storage: cipher: message authentication failed"
        ]
    );
    let status = seal_status(&client).await;
    assert_eq!(
        (&status["progress"], &status["sealed"], &status["nonce"]),
        (&json!(0), &json!(true), &json!(""))
    );
    assert_eq!(health(&client).await, 503);

    // Shares mixed hex and base64 work.
    unseal_all(
        &client,
        &[&init.keys_base64[3], &init.keys[1], &init.keys_base64[4]],
    )
    .await;
    assert_eq!(health(&client).await, 200);
    let reset = client.put("sys/unseal", json!({"reset": true})).await;
    assert_eq!(
        (reset.status, reset.errors()),
        (400, vec!["vault is unsealed".to_owned()])
    );
    let already = unseal(&client, &init.keys[0]).await;
    assert_eq!(
        (already.status, &already.body["sealed"]),
        (200, &json!(false)),
        "already unsealed"
    );
}

#[tokio::test]
async fn restart_comes_up_sealed_and_keeps_every_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = ProcessServer::start_on(dir.path(), &[]);
    let client = server.client(None);
    let init = init(&client, 5, 3).await;
    unseal_all(&client, &[&init.keys[0], &init.keys[1], &init.keys[2]]).await;
    let root = client.with_token(Some(&init.root_token));

    let created = root
        .post("transit/keys/lifecycle", json!({"type": "aes256-gcm96"}))
        .await;
    assert_eq!(created.status, 200, "create: {:?}", created.body);
    let v1 = encrypt(&root, "lifecycle", b"version one").await;
    assert!(v1.starts_with("vault:v1:"), "{v1}");
    assert_eq!(
        root.post("transit/keys/lifecycle/rotate", json!({}))
            .await
            .status,
        200
    );
    let v2 = encrypt(&root, "lifecycle", b"version two").await;
    assert!(v2.starts_with("vault:v2:"), "{v2}");
    assert_eq!(
        root.post("transit/keys/lifecycle/rotate", json!({}))
            .await
            .status,
        200
    );
    let v3 = encrypt(&root, "lifecycle", b"version three").await;
    assert!(v3.starts_with("vault:v3:"), "{v3}");
    let config = root
        .post(
            "transit/keys/lifecycle/config",
            json!({"min_decryption_version": 2, "deletion_allowed": true}),
        )
        .await;
    assert_eq!(config.status, 200, "config: {:?}", config.body);
    let other = root
        .post("transit/keys/other", json!({"type": "chacha20-poly1305"}))
        .await;
    assert_eq!(other.status, 200, "create other: {:?}", other.body);
    let other_ct = encrypt(&root, "other", b"other key").await;
    let before = root.get("transit/keys/lifecycle").await;
    assert_eq!(before.status, 200);

    // Graceful restart.
    let status = server.stop();
    assert!(
        status.success(),
        "SIGTERM exit status {status}; stderr:\n{}",
        server.stderr()
    );
    let server = ProcessServer::start_on(dir.path(), &[]);
    let client = server.client(None);
    let root = client.with_token(Some(&init.root_token));

    let status = seal_status(&client).await;
    assert_eq!(
        (
            &status["initialized"],
            &status["sealed"],
            &status["t"],
            &status["n"],
            &status["progress"]
        ),
        (&json!(true), &json!(true), &json!(3), &json!(5), &json!(0)),
        "after restart: {status:?}"
    );
    assert!(
        status.get("cluster_name").is_none(),
        "cluster_name while sealed"
    );
    assert_eq!(
        client.get("sys/init").await.body,
        json!({"initialized": true})
    );
    assert_eq!(health(&client).await, 503);
    let again = client
        .put(
            "sys/init",
            json!({"secret_shares": 5, "secret_threshold": 3}),
        )
        .await;
    assert_eq!(
        (again.status, again.errors()),
        (400, vec!["Vault is already initialized".to_owned()])
    );
    assert_everything_sealed(&root, "lifecycle", &v2).await;
    // Sealing a sealed server is a 204, whatever the token.
    assert_eq!(client.put("sys/seal", json!({})).await.status, 204);

    // Three other shares unseal it.
    unseal_all(
        &client,
        &[&init.keys_base64[4], &init.keys[3], &init.keys[2]],
    )
    .await;
    assert_eq!(health(&client).await, 200);

    let after = root.get("transit/keys/lifecycle").await;
    assert_eq!(after.status, 200, "{:?}", after.body);
    for field in [
        "name",
        "type",
        "latest_version",
        "min_decryption_version",
        "min_encryption_version",
        "deletion_allowed",
        "exportable",
        "keys",
    ] {
        assert_eq!(
            after.data(field),
            before.data(field),
            "{field} changed across the restart"
        );
    }
    assert_eq!(after.data("latest_version"), &json!(3));
    assert_eq!(after.data("min_decryption_version"), &json!(2));
    assert_eq!(after.data("deletion_allowed"), &json!(true));
    let mut versions: Vec<&String> = after
        .data("keys")
        .as_object()
        .expect("keys")
        .keys()
        .collect();
    versions.sort();
    assert_eq!(versions, ["2", "3"]);

    assert_decrypts(&root, "lifecycle", &v2, b"version two").await;
    assert_decrypts(&root, "lifecycle", &v3, b"version three").await;
    assert_decrypts(&root, "other", &other_ct, b"other key").await;
    let too_old = decrypt(&root, "lifecycle", &v1).await;
    assert_eq!(
        (too_old.status, too_old.errors()),
        (
            400,
            vec!["ciphertext or signature version is disallowed by policy (too old)".to_owned()]
        ),
        "min_decryption_version survived the restart"
    );
    let fresh = encrypt(&root, "lifecycle", b"after restart").await;
    assert!(fresh.starts_with("vault:v3:"), "{fresh}");
    let listed = root.send("LIST", "transit/keys", None).await;
    assert_eq!(listed.data("keys"), &json!(["lifecycle", "other"]));

    // sys/seal needs a token; with root it seals, and a sealed server cannot encrypt.
    assert_eq!(client.put("sys/seal", json!({})).await.status, 403);
    assert_eq!(
        client
            .with_token(Some("not-a-token"))
            .put("sys/seal", json!({}))
            .await
            .status,
        403
    );
    assert_eq!(root.put("sys/seal", json!({})).await.status, 204);
    assert_sealed_reply(
        "encrypt after sys/seal",
        &root
            .post("transit/encrypt/lifecycle", json!({"plaintext": b64(b"x")}))
            .await,
    );
    assert_everything_sealed(&root, "lifecycle", &v3).await;
    let status = seal_status(&client).await;
    assert_eq!(
        (&status["sealed"], &status["progress"]),
        (&json!(true), &json!(0))
    );
    assert_eq!(health(&client).await, 503);

    // And unsealing again brings everything back.
    unseal_all(&client, &[&init.keys[1], &init.keys[0], &init.keys[4]]).await;
    assert_decrypts(&root, "lifecycle", &fresh, b"after restart").await;
}

#[tokio::test]
async fn dev_mode_prints_a_root_token_and_serves_at_once() {
    let server = ProcessServer::start_dev(&["--dev-root-token", "root"]);
    assert!(
        server.banner().iter().any(|l| l == "Root Token: root"),
        "banner: {:?}",
        server.banner()
    );
    assert!(
        server
            .banner()
            .iter()
            .any(|l| l.starts_with("Unseal Key: ")),
        "banner: {:?}",
        server.banner()
    );
    let client = server.client(Some("root"));
    assert_eq!(health(&client).await, 200);
    let status = seal_status(&client).await;
    assert_eq!(
        (&status["initialized"], &status["sealed"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(
        client
            .post("transit/keys/dev", json!({"type": "aes256-gcm96"}))
            .await
            .status,
        200
    );
    let ciphertext = encrypt(&client, "dev", b"dev mode").await;
    assert_decrypts(&client, "dev", &ciphertext, b"dev mode").await;
    assert_eq!(
        client
            .with_token(Some("wrong"))
            .post("transit/encrypt/dev", json!({"plaintext": ""}))
            .await
            .status,
        403
    );

    // Without --dev-root-token a random token is printed, and it works.
    let server = ProcessServer::start_dev(&[]);
    let token = server
        .banner()
        .iter()
        .find_map(|l| l.strip_prefix("Root Token: "))
        .unwrap_or_else(|| panic!("no root token in {:?}", server.banner()))
        .to_owned();
    assert!(token.len() >= 16, "random root token {token:?}");
    let client = server.client(Some(&token));
    assert_eq!(client.post("transit/keys/dev", json!({})).await.status, 200);
    let ciphertext = encrypt(&client, "dev", b"random token").await;
    assert_decrypts(&client, "dev", &ciphertext, b"random token").await;
}

/// Every way of serving connections (one runtime per core, a given number of
/// runtimes, the shared runtime) serves REST on many connections at once, and
/// on SIGTERM lets a request in flight finish before the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_runtimes_serve_and_drain_on_sigterm() {
    for flags in [
        &[][..],
        &["--io-threads", "1"][..],
        &["--io-threads", "3"][..],
        &["--shared-runtime"][..],
    ] {
        let mut args = vec!["--dev-root-token", "root"];
        args.extend_from_slice(flags);
        let mut server = ProcessServer::start_dev(&args);
        let root = server.client(Some("root"));
        assert_eq!(root.post("transit/keys/drain", json!({})).await.status, 200);
        // Separate clients, so separate connections, dealt to the runtimes in turn.
        let mut calls = Vec::new();
        for i in 0..8u8 {
            let client = process::Client::new(server.addr(), Some("root"));
            calls.push(tokio::spawn(async move {
                encrypt(&client, "drain", &[i; 16]).await
            }));
        }
        for call in calls {
            let ciphertext = call.await.expect("encrypt task");
            assert!(
                ciphertext.starts_with("vault:v1:"),
                "{flags:?}: {ciphertext}"
            );
        }

        // RSA-4096 generation takes a while on the blocking pool: SIGTERM
        // arrives while it runs, and the answer must still come back.
        let client = server.client(Some("root"));
        let slow = tokio::spawn(async move {
            client
                .post("transit/keys/slow", json!({"type": "rsa-4096"}))
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let status = tokio::task::spawn_blocking(move || server.stop())
            .await
            .expect("stop");
        assert!(status.success(), "{flags:?}: SIGTERM exit status {status}");
        let reply = slow.await.expect("slow request");
        assert_eq!(reply.status, 200, "{flags:?}: {:?}", reply.body);
    }
}

#[tokio::test]
async fn unseal_key_file_unseals_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = tempfile::tempdir().expect("temp dir for key files");
    let dir_arg = dir.path().to_str().expect("utf-8").to_owned();

    // On an uninitialized store the file is ignored: the server starts sealed.
    let early = files.path().join("early.keys");
    std::fs::write(&early, format!("{}\n", "ab".repeat(33))).expect("write key file");
    let mut server = ProcessServer::start_on(
        dir.path(),
        &["--unseal-key-file", early.to_str().expect("utf-8")],
    );
    let client = server.client(None);
    assert_eq!(health(&client).await, 501);
    let init = init(&client, 5, 3).await;
    unseal_all(&client, &[&init.keys[0], &init.keys[1], &init.keys[2]]).await;
    let root = client.with_token(Some(&init.root_token));
    assert_eq!(root.post("transit/keys/filed", json!({})).await.status, 200);
    let ciphertext = encrypt(&root, "filed", b"unattended").await;
    assert!(server.stop().success());

    // Three shares, hex and base64, with blank lines and surrounding spaces.
    let good = files.path().join("good.keys");
    let text = format!(
        "\n  {}  \n{}\n\n{}\n",
        init.keys[4], init.keys_base64[1], init.keys[3]
    );
    std::fs::write(&good, text).expect("write key file");
    let mut server = ProcessServer::start_on(
        dir.path(),
        &["--unseal-key-file", good.to_str().expect("utf-8")],
    );
    let client = server.client(Some(&init.root_token));
    let status = seal_status(&client).await;
    assert_eq!(
        status["sealed"],
        json!(false),
        "unsealed at start: {status:?}"
    );
    assert_eq!(health(&client).await, 200);
    assert_decrypts(&client, "filed", &ciphertext, b"unattended").await;
    assert!(server.stop().success());

    // Fewer shares than the threshold: the server refuses to start.
    let short = files.path().join("short.keys");
    std::fs::write(&short, format!("{}\n{}\n", init.keys[0], init.keys[1]))
        .expect("write key file");
    let args = [
        "server",
        "--data-dir",
        &dir_arg,
        "--listen",
        "127.0.0.1:0",
        "--unseal-key-file",
        short.to_str().expect("utf-8"),
    ];
    let failure = ProcessServer::start_expecting_failure(&args);
    assert!(!failure.status.success(), "exit status {}", failure.status);
    assert!(
        failure
            .stderr
            .contains("fewer shares than the unseal threshold"),
        "stderr: {}",
        failure.stderr
    );
    // A missing file is an error too, naming the problem.
    let missing = files.path().join("missing.keys");
    let args = [
        "server",
        "--data-dir",
        &dir_arg,
        "--listen",
        "127.0.0.1:0",
        "--unseal-key-file",
        missing.to_str().expect("utf-8"),
    ];
    let failure = ProcessServer::start_expecting_failure(&args);
    assert!(!failure.status.success());
    assert!(
        failure.stderr.contains("unseal key file"),
        "stderr: {}",
        failure.stderr
    );
    // No share ever reaches the logs.
    for share in init.keys.iter().chain(&init.keys_base64) {
        assert!(!failure.stderr.contains(share.as_str()));
        assert!(!failure.stdout.contains(share.as_str()));
    }
}

/// Every regular file under `dir`, with its bytes.
fn read_tree(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).expect("read_dir") {
            let entry = entry.expect("dir entry");
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                out.push((
                    entry.path(),
                    std::fs::read(entry.path()).expect("read file"),
                ));
            }
        }
    }
    out
}

/// Asserts that no needle occurs anywhere in any file under `dir`; returns the
/// number of bytes scanned.
fn assert_no_needle(dir: &Path, needles: &[(String, Vec<u8>)], when: &str) -> usize {
    let files = read_tree(dir);
    assert!(!files.is_empty(), "no file in the data directory");
    // Positive control: storage paths are not secret, and the scan must see them
    // (so an empty, compressed or unread file cannot make this test pass).
    let control = b"/keys/secret";
    assert!(
        files
            .iter()
            .any(|(_, bytes)| bytes.windows(control.len()).any(|w| w == control)),
        "{when}: the scan does not see the storage paths"
    );
    let mut scanned = 0;
    for (path, bytes) in &files {
        scanned += bytes.len();
        for (name, needle) in needles {
            assert!(!needle.is_empty());
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{when}: {name} found in {}",
                path.display()
            );
        }
    }
    scanned
}

#[tokio::test]
async fn data_dir_is_useless_without_the_shares() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = ProcessServer::start_on(dir.path(), &[]);
    let client = server.client(None);
    let init = init(&client, 5, 3).await;
    unseal_all(&client, &[&init.keys[0], &init.keys[1], &init.keys[2]]).await;
    let root = client.with_token(Some(&init.root_token));

    let plaintext = b"cipherd-known-plaintext: 4111 1111 1111 1111, expires 12/34".to_vec();
    let mut exported: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, kind) in [
        ("x", "aes256-gcm96"),
        ("y", "chacha20-poly1305"),
        ("z", "aes128-gcm96"),
    ] {
        let reply = root
            .post(
                &format!("transit/keys/{name}"),
                json!({"type": kind, "exportable": true}),
            )
            .await;
        assert_eq!(reply.status, 200, "create {name}: {:?}", reply.body);
        assert_eq!(
            root.post(&format!("transit/keys/{name}/rotate"), json!({}))
                .await
                .status,
            200
        );
        for _ in 0..5 {
            encrypt(&root, name, &plaintext).await;
        }
        let export = root
            .get(&format!("transit/export/encryption-key/{name}"))
            .await;
        assert_eq!(export.status, 200, "export {name}: {:?}", export.body);
        let keys = export.data("keys").as_object().expect("exported keys");
        assert_eq!(keys.len(), 2, "two versions of {name}");
        for (version, value) in keys {
            let raw = STANDARD
                .decode(value.as_str().expect("key string"))
                .expect("base64 key");
            assert!(raw.len() >= 16, "{name} v{version}");
            exported.push((format!("key material of {name} v{version}"), raw));
        }
    }
    // A non-exportable key too: its material never leaves, but its ciphertext does.
    assert_eq!(
        root.post("transit/keys/secret", json!({})).await.status,
        200
    );
    let ciphertext = encrypt(&root, "secret", &plaintext).await;

    let shares: Vec<SecretBytes> = init
        .keys
        .iter()
        .map(|k| SecretBytes::new(hex::decode(k).expect("hex")))
        .collect();
    let master = cipherd::seal::shamir::combine(&shares[..3]).expect("combine shares");
    assert_eq!(master.len(), 32);

    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("the plaintext".into(), plaintext.clone()),
        (
            "the plaintext in base64".into(),
            b64(&plaintext).into_bytes(),
        ),
        (
            "the root token".into(),
            init.root_token.clone().into_bytes(),
        ),
        ("the master key".into(), master.expose_secret().to_vec()),
        (
            "the master key in hex".into(),
            hex::encode(master.expose_secret()).into_bytes(),
        ),
    ];
    for (i, (hex_form, b64_form)) in init.keys.iter().zip(&init.keys_base64).enumerate() {
        needles.push((format!("share {i}"), hex::decode(hex_form).expect("hex")));
        needles.push((format!("share {i} in hex"), hex_form.clone().into_bytes()));
        needles.push((
            format!("share {i} in base64"),
            b64_form.clone().into_bytes(),
        ));
    }
    for (name, raw) in &exported {
        needles.push((format!("{name} in base64"), b64(raw).into_bytes()));
        needles.push((format!("{name} in hex"), hex::encode(raw).into_bytes()));
        needles.push((name.clone(), raw.clone()));
    }

    // After a crash (nothing flushed at shutdown)...
    server.kill_hard();
    let crashed = assert_no_needle(dir.path(), &needles, "after SIGKILL");

    // ...and after more work and a clean shutdown (counters flushed, sealed).
    let mut server = ProcessServer::start_on(dir.path(), &[]);
    let client = server.client(None);
    unseal_all(&client, &[&init.keys[2], &init.keys[3], &init.keys[4]]).await;
    let root = client.with_token(Some(&init.root_token));
    assert_decrypts(&root, "secret", &ciphertext, &plaintext).await;
    for name in ["x", "y", "z", "secret"] {
        encrypt(&root, name, &plaintext).await;
    }
    let token = root
        .post("auth/token/create", json!({"policies": ["default"]}))
        .await;
    let child_token = token.body["auth"]["client_token"]
        .as_str()
        .map(str::to_owned);
    if let Some(child) = &child_token {
        needles.push(("a child token".into(), child.clone().into_bytes()));
    }
    let status = server.stop();
    assert!(status.success(), "exit status {status}");
    let stopped = assert_no_needle(dir.path(), &needles, "after SIGTERM");
    println!(
        "scanned {crashed} bytes after SIGKILL and {stopped} bytes after SIGTERM for {} secrets: none found",
        needles.len()
    );
}
