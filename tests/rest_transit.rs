//! The transit REST API over real HTTP (reference §1–§8): every endpoint, its
//! status codes and Vault's exact messages, batch semantics, weak typing, the
//! field warnings, routing and the token check, and the §8.11 vectors through
//! BYOK import.
//!
//! Each test starts its own in-process server (memory storage, root token
//! `root`) on `127.0.0.1:0`. At most one RSA-4096 key (the BYOK wrapping key)
//! and one RSA-2048 key are generated.

#[path = "common/inprocess.rs"]
mod inprocess;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use cipherd::crypto::HashAlgorithm;
use cipherd::crypto::asymmetric::{
    AsymmetricAlgorithm, Marshaling, PublicKey, RsaSignatureScheme, SaltLength, SignatureOptions,
};
use cipherd::crypto::wrap::aes_kwp_wrap;
use cipherd::engine::EngineOptions;
use cipherd::service::ServiceOptions;

use inprocess::{InProcessServer, Response};

const HELLO: &str = "aGVsbG8gd29ybGQ="; // "hello world"
const CTX1: &str = "Y3R4MQ=="; // "ctx1"

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    STANDARD.decode(text).expect("base64")
}

/// Asserts the status, printing the body when it differs.
#[track_caller]
fn expect(response: &Response, status: u16) {
    assert_eq!(
        response.status, status,
        "unexpected status; body: {}",
        response.body
    );
}

/// Asserts a `{"errors": [message]}` reply.
#[track_caller]
fn expect_error(response: &Response, status: u16, message: &str) {
    expect(response, status);
    assert_eq!(
        response.errors(),
        vec![message.to_owned()],
        "body: {}",
        response.body
    );
}

/// Asserts a plain-error 500 (go-multierror form) carrying `message`.
#[track_caller]
fn expect_internal(response: &Response, message: &str) {
    expect_error(
        response,
        500,
        &format!("1 error occurred:\n\t* {message}\n\n"),
    );
}

fn s(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

/// The sorted top-level keys of an object.
fn key_set(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    keys
}

fn strings(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    names.sort();
    names
}

/// Read-key fields of a plain key (reference §4.2), plus cipherd's
/// `encryption_counts` for keys that encrypt.
const PLAIN_KEY_FIELDS: &[&str] = &[
    "allow_plaintext_backup",
    "auto_rotate_period",
    "deletion_allowed",
    "derived",
    "exportable",
    "imported_key",
    "keys",
    "latest_version",
    "min_available_version",
    "min_decryption_version",
    "min_encryption_version",
    "name",
    "soft_deleted",
    "supports_decryption",
    "supports_derivation",
    "supports_encryption",
    "supports_signing",
    "type",
];

fn with(extra: &[&'static str]) -> Vec<String> {
    let mut all: Vec<&str> = PLAIN_KEY_FIELDS.to_vec();
    all.extend_from_slice(extra);
    strings(&all)
}

/// RFC 3339 UTC with up to nine fractional digits (Go's RFC3339Nano).
fn is_rfc3339_nano(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || !text.ends_with('Z') {
        return false;
    }
    let shape = |i: usize, c: u8| bytes[i] == c;
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    let head = digits(0..4)
        && shape(4, b'-')
        && digits(5..7)
        && shape(7, b'-')
        && digits(8..10)
        && shape(10, b'T')
        && digits(11..13)
        && shape(13, b':')
        && digits(14..16)
        && shape(16, b':')
        && digits(17..19);
    let tail = &text[19..text.len() - 1];
    head && (tail.is_empty()
        || (tail.starts_with('.')
            && (2..=10).contains(&tail.len())
            && tail[1..].bytes().all(|b| b.is_ascii_digit())
            && !tail.ends_with('0')))
}

// ---------------------------------------------------------------------------
// Keys: create, read, list, delete
// ---------------------------------------------------------------------------

#[tokio::test]
async fn create_and_read_every_key_type() {
    let server = InProcessServer::start().await;

    for (name, key_type) in [
        ("a128", "aes128-gcm96"),
        ("a256", "aes256-gcm96"),
        ("cc20", "chacha20-poly1305"),
        ("xc20", "xchacha20-poly1305"),
    ] {
        let created = server
            .post(&format!("transit/keys/{name}"), json!({"type": key_type}))
            .await;
        expect(&created, 200);
        let read = server.get(&format!("transit/keys/{name}")).await;
        expect(&read, 200);
        assert_eq!(created.data(), read.data());
        let data = read.data();
        assert_eq!(key_set(data), with(&["encryption_counts"]), "{key_type}");
        assert_eq!(data["name"], name);
        assert_eq!(data["type"], key_type);
        assert_eq!(data["latest_version"], 1);
        assert_eq!(data["min_decryption_version"], 1);
        assert_eq!(data["min_encryption_version"], 0);
        assert_eq!(data["min_available_version"], 0);
        assert_eq!(data["supports_encryption"], true);
        assert_eq!(data["supports_decryption"], true);
        assert_eq!(data["supports_signing"], false);
        assert_eq!(data["supports_derivation"], true);
        assert_eq!(data["derived"], false);
        assert_eq!(data["soft_deleted"], false);
        assert_eq!(data["imported_key"], false);
        assert!(
            data["keys"]["1"]
                .as_i64()
                .is_some_and(|t| t > 1_600_000_000),
            "{}",
            data["keys"]
        );
        assert_eq!(data["encryption_counts"], json!({"1": 0}));
        assert_eq!(read.warnings(), Vec::<String>::new());
        assert!(read.body["warnings"].is_null());
    }

    // The default type, and an existing key answered unchanged.
    expect(&server.post("transit/keys/default", json!({})).await, 200);
    let again = server
        .post("transit/keys/default", json!({"type": "ed25519"}))
        .await;
    expect(&again, 200);
    assert_eq!(again.data()["type"], "aes256-gcm96");

    for (name, key_type, curve) in [
        ("ed", "ed25519", "ed25519"),
        ("p256", "ecdsa-p256", "P-256"),
        ("p384", "ecdsa-p384", "P-384"),
        ("p521", "ecdsa-p521", "P-521"),
    ] {
        expect(
            &server
                .post(&format!("transit/keys/{name}"), json!({"type": key_type}))
                .await,
            200,
        );
        let read = server.get(&format!("transit/keys/{name}")).await;
        expect(&read, 200);
        let data = read.data();
        assert_eq!(key_set(data), with(&[]), "{key_type}");
        assert_eq!(data["supports_signing"], true);
        assert_eq!(data["supports_encryption"], false);
        assert_eq!(data["supports_derivation"], key_type == "ed25519");
        let version = &data["keys"]["1"];
        assert_eq!(
            key_set(version),
            strings(&["certificate_chain", "creation_time", "name", "public_key"])
        );
        assert_eq!(version["name"], curve);
        assert_eq!(version["certificate_chain"], "");
        assert!(
            is_rfc3339_nano(s(&version["creation_time"])),
            "{}",
            version["creation_time"]
        );
        let public_key = s(&version["public_key"]);
        if key_type == "ed25519" {
            assert_eq!(unb64(public_key).len(), 32);
        } else {
            assert!(public_key.starts_with("-----BEGIN PUBLIC KEY-----\n"));
            assert!(public_key.ends_with("-----END PUBLIC KEY-----\n"));
        }
    }

    // hmac: key_size reported, no `keys`; default 32 bytes.
    expect(
        &server
            .post("transit/keys/mac", json!({"type": "hmac"}))
            .await,
        200,
    );
    let mac = server.get("transit/keys/mac").await;
    let mut expected: Vec<&str> = PLAIN_KEY_FIELDS
        .iter()
        .copied()
        .filter(|f| *f != "keys")
        .collect();
    expected.push("key_size");
    assert_eq!(key_set(mac.data()), strings(&expected));
    assert_eq!(mac.data()["key_size"], 32);
    assert_eq!(mac.data()["supports_derivation"], false);
    expect(
        &server
            .post(
                "transit/keys/mac64",
                json!({"type": "hmac", "key_size": "64"}),
            )
            .await,
        200,
    );
    assert_eq!(
        server.get("transit/keys/mac64").await.data()["key_size"],
        64
    );

    // Derived and convergent keys report kdf and convergence fields.
    let derived = server
        .post("transit/keys/der", json!({"derived": "1"}))
        .await;
    expect(&derived, 200);
    assert_eq!(
        key_set(derived.data()),
        with(&["convergent_encryption", "encryption_counts", "kdf"])
    );
    assert_eq!(derived.data()["kdf"], "hkdf_sha256");
    assert_eq!(derived.data()["convergent_encryption"], false);
    let convergent = server
        .post(
            "transit/keys/conv",
            json!({"derived": true, "convergent_encryption": "true"}),
        )
        .await;
    expect(&convergent, 200);
    assert_eq!(convergent.data()["convergent_encryption_version"], -1);
    assert_eq!(convergent.data()["convergent_encryption"], true);

    // auto_rotate_period as a duration; weak typing of booleans.
    let rotating = server
        .post(
            "transit/keys/rot",
            json!({"auto_rotate_period": "25h", "exportable": "true"}),
        )
        .await;
    expect(&rotating, 200);
    assert_eq!(rotating.data()["auto_rotate_period"], 90_000);
    assert_eq!(rotating.data()["exportable"], true);

    // Errors (reference §4.1).
    expect_error(
        &server
            .post("transit/keys/x1", json!({"type": "bogus"}))
            .await,
        400,
        "unknown key type bogus",
    );
    expect_error(
        &server
            .post("transit/keys/x1", json!({"type": "aes256-cmac"}))
            .await,
        400,
        "unknown key type aes256-cmac",
    );
    expect_error(
        &server
            .post("transit/keys/x1", json!({"convergent_encryption": true}))
            .await,
        400,
        "convergent encryption requires derivation to be enabled",
    );
    expect_error(
        &server
            .post("transit/keys/x1", json!({"auto_rotate_period": "10m"}))
            .await,
        400,
        "auto rotate period must be 0 to disable or at least an hour",
    );
    expect_error(
        &server
            .post("transit/keys/x1", json!({"key_size": 32}))
            .await,
        400,
        "key_size is not valid for algorithm aes256-gcm96",
    );
    expect_error(
        &server
            .post("transit/keys/x1", json!({"type": "hmac", "key_size": 16}))
            .await,
        400,
        "invalid key_size 16",
    );
    expect_error(
        &server
            .post("transit/keys/x1", json!({"type": "hmac", "key_size": 600}))
            .await,
        400,
        "invalid key_size 600",
    );
    expect_internal(
        &server
            .post(
                "transit/keys/x1",
                json!({"type": "ecdsa-p256", "derived": true}),
            )
            .await,
        "key derivation and convergent encryption not supported for keys of type ecdsa-p256",
    );
    expect_internal(
        &server
            .post(
                "transit/keys/x1",
                json!({"type": "ed25519", "derived": true, "convergent_encryption": true}),
            )
            .await,
        "convergent encryption not supported for keys of type ed25519",
    );
    expect_error(
        &server
            .post("transit/keys/x1", json!({"exportable": "notabool"}))
            .await,
        400,
        "Field validation failed: error converting input for field \"exportable\": '' cannot parse value as 'bool': strconv.ParseBool: invalid syntax",
    );
    expect_error(
        &server
            .post("transit/keys/x1", json!({"auto_rotate_period": "-5h"}))
            .await,
        400,
        "Field validation failed: error converting input for field \"auto_rotate_period\": cannot provide negative value '-18000'",
    );
    expect(&server.get("transit/keys/x1").await, 404);
}

#[tokio::test]
async fn list_read_and_delete_keys() {
    let server = InProcessServer::start().await;

    let empty = server.call("LIST", "transit/keys", None).await;
    expect(&empty, 404);
    assert_eq!(empty.body, json!({"errors": []}));

    for name in ["b", "a", "c.d"] {
        expect(
            &server
                .post(&format!("transit/keys/{name}"), json!({}))
                .await,
            200,
        );
    }
    let listed = server.call("LIST", "transit/keys", None).await;
    expect(&listed, 200);
    assert_eq!(listed.data(), &json!({"keys": ["a", "b", "c.d"]}));
    let listed = server.call("LIST", "transit/keys/", None).await;
    assert_eq!(listed.data(), &json!({"keys": ["a", "b", "c.d"]}));
    let listed = server.get("transit/keys?list=true").await;
    expect(&listed, 200);
    assert_eq!(listed.data(), &json!({"keys": ["a", "b", "c.d"]}));
    assert!(listed.body["warnings"].is_null());
    // OpenBao's pagination.
    assert_eq!(
        server
            .call("LIST", "transit/keys?after=a&limit=1", None)
            .await
            .data(),
        &json!({"keys": ["b"]})
    );
    // GET without list is not a route method.
    expect_error(
        &server.get("transit/keys").await,
        405,
        "1 error occurred:\n\t* unsupported operation\n\n",
    );

    // A missing key reads as 404 {"errors":[]}.
    let missing = server.get("transit/keys/nope").await;
    expect(&missing, 404);
    assert_eq!(missing.body, json!({"errors": []}));

    // Delete needs deletion_allowed; a missing key is a 400.
    expect_error(
        &server.call("DELETE", "transit/keys/a", None).await,
        400,
        "error deleting policy a: deletion is not allowed for this key",
    );
    let configured = server
        .post("transit/keys/a/config", json!({"deletion_allowed": true}))
        .await;
    expect(&configured, 200);
    assert_eq!(configured.data()["deletion_allowed"], true);
    let deleted = server.call("DELETE", "transit/keys/a", None).await;
    expect(&deleted, 204);
    assert!(deleted.body.is_null());
    assert_eq!(deleted.content_type.as_deref(), Some("application/json"));
    expect(&server.get("transit/keys/a").await, 404);
    expect_error(
        &server.call("DELETE", "transit/keys/a", None).await,
        400,
        "error deleting policy a: could not delete key; not found",
    );
    assert_eq!(
        server.call("LIST", "transit/keys", None).await.data(),
        &json!({"keys": ["b", "c.d"]})
    );
}

// ---------------------------------------------------------------------------
// Encrypt, decrypt, rewrap, datakey
// ---------------------------------------------------------------------------

#[tokio::test]
async fn encrypt_and_decrypt_single() {
    let server = InProcessServer::start().await;

    // Upsert: the key is created by the first encrypt.
    let encrypted = server
        .post("transit/encrypt/k", json!({"plaintext": HELLO}))
        .await;
    expect(&encrypted, 200);
    assert_eq!(
        key_set(encrypted.data()),
        strings(&["ciphertext", "key_version"])
    );
    assert_eq!(encrypted.data()["key_version"], 1);
    let ciphertext = s(&encrypted.data()["ciphertext"]).to_owned();
    assert!(ciphertext.starts_with("vault:v1:"));
    assert_eq!(unb64(&ciphertext["vault:v1:".len()..]).len(), 12 + 11 + 16);
    let decrypted = server
        .post("transit/decrypt/k", json!({"ciphertext": ciphertext}))
        .await;
    expect(&decrypted, 200);
    assert_eq!(decrypted.data(), &json!({"plaintext": HELLO}));
    let read = server.get("transit/keys/k").await;
    assert_eq!(read.data()["type"], "aes256-gcm96");
    assert_eq!(read.data()["encryption_counts"], json!({"1": 1}));

    // hvac sends `"plaintext": null` with options; null is empty plaintext.
    let empty = server
        .post("transit/encrypt/k", json!({"plaintext": null}))
        .await;
    expect(&empty, 200);
    let back = server
        .post(
            "transit/decrypt/k",
            json!({"ciphertext": empty.data()["ciphertext"]}),
        )
        .await;
    assert_eq!(back.data(), &json!({"plaintext": ""}));

    // Base64 is strict with Go's messages; \n is skipped.
    expect_error(
        &server
            .post("transit/encrypt/k", json!({"plaintext": "aGVsbG8gd29ybGQ"}))
            .await,
        400,
        "illegal base64 data at input byte 12",
    );
    expect_error(
        &server
            .post(
                "transit/encrypt/k",
                json!({"plaintext": "aGVsbG8gd29ybGQ_"}),
            )
            .await,
        400,
        "illegal base64 data at input byte 15",
    );
    expect(
        &server
            .post("transit/encrypt/k", json!({"plaintext": "aGVs\nbG8="}))
            .await,
        200,
    );
    expect_error(
        &server.post("transit/encrypt/k", json!({})).await,
        400,
        "missing plaintext to encrypt",
    );

    // Decrypt errors (reference §5.2).
    expect_error(
        &server.post("transit/decrypt/k", json!({})).await,
        400,
        "missing ciphertext to decrypt",
    );
    expect_error(
        &server
            .post("transit/decrypt/k", json!({"ciphertext": ""}))
            .await,
        400,
        "missing ciphertext to decrypt",
    );
    expect_error(
        &server
            .post("transit/decrypt/k", json!({"ciphertext": "nope"}))
            .await,
        400,
        "invalid ciphertext: no prefix",
    );
    expect_error(
        &server
            .post("transit/decrypt/k", json!({"ciphertext": "vault:v1"}))
            .await,
        400,
        "invalid ciphertext: wrong number of fields",
    );
    expect_error(
        &server
            .post("transit/decrypt/k", json!({"ciphertext": "vault:vx:AAAA"}))
            .await,
        400,
        "invalid ciphertext: version number could not be decoded",
    );
    expect_error(
        &server
            .post("transit/decrypt/k", json!({"ciphertext": "vault:v9:AAAA"}))
            .await,
        400,
        "invalid ciphertext: version is too new",
    );
    expect_error(
        &server
            .post("transit/decrypt/k", json!({"ciphertext": "vault:v1:AAAA"}))
            .await,
        400,
        "invalid ciphertext length",
    );
    let tampered = format!(
        "{}A{}",
        &ciphertext[..ciphertext.len() - 2],
        &ciphertext[ciphertext.len() - 1..]
    );
    expect_error(
        &server
            .post("transit/decrypt/k", json!({"ciphertext": tampered}))
            .await,
        400,
        "cipher: message authentication failed",
    );
    expect_error(
        &server
            .post("transit/decrypt/missing", json!({"ciphertext": ciphertext}))
            .await,
        400,
        "encryption key not found",
    );
    // v0 is read as v1 (legacy).
    let v0 = ciphertext.replacen("vault:v1:", "vault:v0:", 1);
    assert_eq!(
        server
            .post("transit/decrypt/k", json!({"ciphertext": v0}))
            .await
            .data()["plaintext"],
        HELLO
    );

    // Associated data must be resent.
    let with_aad = server
        .post(
            "transit/encrypt/k",
            json!({"plaintext": HELLO, "associated_data": "bWV0YQ=="}),
        )
        .await;
    expect(&with_aad, 200);
    let ct = with_aad.data()["ciphertext"].clone();
    expect_error(
        &server
            .post("transit/decrypt/k", json!({"ciphertext": ct}))
            .await,
        400,
        "cipher: message authentication failed",
    );
    let opened = server
        .post(
            "transit/decrypt/k",
            json!({"ciphertext": ct, "associated_data": "bWV0YQ=="}),
        )
        .await;
    assert_eq!(opened.data()["plaintext"], HELLO);

    // Upsert options: type, context (derived), convergent.
    let chacha = server
        .post(
            "transit/encrypt/cc",
            json!({"plaintext": HELLO, "type": "chacha20-poly1305"}),
        )
        .await;
    expect(&chacha, 200);
    assert_eq!(
        server.get("transit/keys/cc").await.data()["type"],
        "chacha20-poly1305"
    );
    expect_error(
        &server
            .post(
                "transit/encrypt/e1",
                json!({"plaintext": HELLO, "type": "ecdsa-p256"}),
            )
            .await,
        400,
        "key type ecdsa-p256 not supported for this operation",
    );
    expect_error(
        &server
            .post(
                "transit/encrypt/e1",
                json!({"plaintext": HELLO, "type": "bogus"}),
            )
            .await,
        400,
        "unknown key type bogus",
    );
    expect_error(
        &server
            .post(
                "transit/encrypt/e1",
                json!({"plaintext": HELLO, "convergent_encryption": true}),
            )
            .await,
        400,
        "convergent encryption requires derivation to be enabled, so context is required",
    );
    expect(&server.get("transit/keys/e1").await, 404);

    let derived = server
        .post(
            "transit/encrypt/der",
            json!({"plaintext": HELLO, "context": CTX1}),
        )
        .await;
    expect(&derived, 200);
    let key = server.get("transit/keys/der").await;
    assert_eq!(key.data()["derived"], true);
    assert_eq!(key.data()["kdf"], "hkdf_sha256");
    let ct = derived.data()["ciphertext"].clone();
    expect_error(
        &server
            .post("transit/decrypt/der", json!({"ciphertext": ct}))
            .await,
        400,
        "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key",
    );
    let opened = server
        .post(
            "transit/decrypt/der",
            json!({"ciphertext": ct, "context": CTX1}),
        )
        .await;
    assert_eq!(opened.data()["plaintext"], HELLO);
    expect_error(
        &server
            .post(
                "transit/decrypt/der",
                json!({"ciphertext": ct, "context": "Y3R4Mg=="}),
            )
            .await,
        400,
        "cipher: message authentication failed",
    );

    let body = json!({"plaintext": HELLO, "context": CTX1, "convergent_encryption": true});
    let first = server.post("transit/encrypt/conv", body.clone()).await;
    let second = server.post("transit/encrypt/conv", body).await;
    expect(&first, 200);
    assert_eq!(first.data()["ciphertext"], second.data()["ciphertext"]);
    assert_eq!(
        server.get("transit/keys/conv").await.data()["convergent_encryption"],
        true
    );

    // key_version bounds.
    expect_error(
        &server
            .post(
                "transit/encrypt/k",
                json!({"plaintext": HELLO, "key_version": 2}),
            )
            .await,
        400,
        "requested version for encryption is higher than the latest key version",
    );
    expect_error(
        &server
            .post(
                "transit/encrypt/k",
                json!({"plaintext": HELLO, "key_version": -1}),
            )
            .await,
        400,
        "requested version for encryption is negative",
    );
    expect_error(
        &server
            .post(
                "transit/encrypt/k",
                json!({"plaintext": HELLO, "key_version": "abc"}),
            )
            .await,
        400,
        "Field validation failed: error converting input for field \"key_version\": cannot parse 'abc' as int",
    );
    expect(
        &server
            .post(
                "transit/encrypt/k",
                json!({"plaintext": HELLO, "key_version": "1"}),
            )
            .await,
        200,
    );

    // Encryption on a signing key.
    expect(
        &server
            .post("transit/keys/ed", json!({"type": "ed25519"}))
            .await,
        200,
    );
    expect_error(
        &server
            .post("transit/encrypt/ed", json!({"plaintext": HELLO}))
            .await,
        400,
        "message encryption not supported for key type ed25519",
    );
    expect_error(
        &server
            .post("transit/decrypt/ed", json!({"ciphertext": ciphertext}))
            .await,
        400,
        "message decryption not supported for key type ed25519",
    );

    // config/keys: disable_upsert.
    assert_eq!(
        server.get("transit/config/keys").await.data(),
        &json!({"disable_upsert": false})
    );
    let disabled = server
        .post("transit/config/keys", json!({"disable_upsert": true}))
        .await;
    expect(&disabled, 200);
    assert_eq!(disabled.data(), &json!({"disable_upsert": true}));
    assert_eq!(
        server.get("transit/config/keys").await.data(),
        &json!({"disable_upsert": true})
    );
    expect_error(
        &server
            .post("transit/encrypt/fresh", json!({"plaintext": HELLO}))
            .await,
        400,
        "encryption key not found",
    );
    expect(
        &server
            .post("transit/encrypt/k", json!({"plaintext": HELLO}))
            .await,
        200,
    );
}

#[tokio::test]
async fn encrypt_and_decrypt_batches() {
    let server = InProcessServer::start().await;
    expect(&server.post("transit/keys/k", json!({})).await, 200);

    let batch = server
        .post(
            "transit/encrypt/k",
            json!({"plaintext": null, "batch_input": [
                {"plaintext": HELLO, "reference": "a"},
                {"plaintext": ""},
            ]}),
        )
        .await;
    expect(&batch, 200);
    let results = batch.data()["batch_results"]
        .as_array()
        .expect("results")
        .clone();
    assert_eq!(results.len(), 2);
    assert_eq!(
        key_set(&results[0]),
        strings(&["ciphertext", "key_version", "reference"])
    );
    assert_eq!(results[0]["reference"], "a");
    assert_eq!(results[1]["reference"], "");
    assert_eq!(results[0]["key_version"], 1);

    let decrypted = server
        .post(
            "transit/decrypt/k",
            json!({"ciphertext": null, "batch_input": [
                {"ciphertext": results[0]["ciphertext"], "reference": "x"},
                {"ciphertext": results[1]["ciphertext"]},
            ]}),
        )
        .await;
    expect(&decrypted, 200);
    assert_eq!(
        decrypted.data(),
        &json!({"batch_results": [{"plaintext": HELLO, "reference": "x"}, {"plaintext": "", "reference": ""}]})
    );

    // One good item plus one bad base64 item: 400 with the full envelope.
    let mixed = json!({"batch_input": [{"plaintext": HELLO, "reference": "a"}, {"plaintext": "@@@@", "reference": "b"}]});
    let failed = server.post("transit/encrypt/k", mixed.clone()).await;
    expect(&failed, 400);
    assert!(failed.body["errors"].is_null());
    assert!(failed.body["request_id"].is_string());
    let results = failed.data()["batch_results"].as_array().expect("results");
    assert_eq!(
        key_set(&results[0]),
        strings(&["ciphertext", "key_version", "reference"])
    );
    assert_eq!(
        results[1],
        json!({"error": "illegal base64 data at input byte 0", "reference": "b"})
    );

    // partial_failure_response_code applies when something succeeded.
    let mut with_code = mixed.clone();
    with_code["partial_failure_response_code"] = json!(207);
    expect(
        &server.post("transit/encrypt/k", with_code.clone()).await,
        207,
    );
    with_code["partial_failure_response_code"] = json!("200");
    expect(
        &server.post("transit/encrypt/k", with_code.clone()).await,
        200,
    );
    with_code["partial_failure_response_code"] = json!(700);
    let reverted = server.post("transit/encrypt/k", with_code).await;
    expect(&reverted, 400);
    assert_eq!(
        reverted.warnings(),
        vec!["invalid HTTP response code override from partial_failure_response_code, reverting to 400".to_owned()]
    );
    let all_failed = server
        .post(
            "transit/encrypt/k",
            json!({"batch_input": [{"plaintext": "@"}, {"plaintext": "@"}], "partial_failure_response_code": 200}),
        )
        .await;
    expect(&all_failed, 400);

    // Bad associated_data base64 counts as internal (OpenBao quirk): 500.
    let aad = server
        .post(
            "transit/encrypt/k",
            json!({"batch_input": [{"plaintext": HELLO}, {"plaintext": HELLO, "associated_data": "@@"}]}),
        )
        .await;
    expect(&aad, 500);
    assert_eq!(
        aad.data()["batch_results"][1]["error"],
        "unable to get associated_data/additional_data from factory[1]: illegal base64 data at input byte 0"
    );

    // Decrypt: an empty ciphertext is an item error; `plaintext` stays present.
    let decrypt_mixed = server
        .post(
            "transit/decrypt/k",
            json!({"batch_input": [{"ciphertext": ""}, {"ciphertext": "vault:v1:AAAA", "reference": "r"}, {"ciphertext": decrypted_ct(&server).await}]}),
        )
        .await;
    expect(&decrypt_mixed, 400);
    assert_eq!(
        decrypt_mixed.data()["batch_results"][0],
        json!({"error": "missing ciphertext to decrypt", "plaintext": "", "reference": ""})
    );
    assert_eq!(
        decrypt_mixed.data()["batch_results"][1],
        json!({"error": "invalid ciphertext length", "plaintext": "", "reference": "r"})
    );
    assert_eq!(
        decrypt_mixed.data()["batch_results"][2],
        json!({"plaintext": HELLO, "reference": ""})
    );

    // Request-level failures.
    expect_error(
        &server
            .post("transit/encrypt/k", json!({"batch_input": []}))
            .await,
        400,
        "missing batch input to process",
    );
    expect_error(
        &server.post("transit/encrypt/k", json!({"batch_input": [{"plaintext": HELLO, "context": CTX1}, {"plaintext": HELLO}]})).await,
        400,
        "context should be set either in all the request blocks or in none",
    );
    expect_error(
        &server
            .post(
                "transit/decrypt/k",
                json!({"batch_input": [{"ciphertext": "x"}, {"ciphertext": "y", "context": CTX1}]}),
            )
            .await,
        400,
        "context should be set either in all the request blocks or in none",
    );
    expect_internal(
        &server
            .post("transit/encrypt/k", json!({"batch_input": "notarray"}))
            .await,
        "failed to parse batch input: source data must be an array or slice, got string",
    );
    expect_internal(
        &server
            .post("transit/encrypt/k", json!({"batch_input": [1, 2]}))
            .await,
        "failed to parse batch input: [0] expected a map, got 'json.Number'",
    );
    let missing = server
        .post(
            "transit/encrypt/k",
            json!({"batch_input": [{"plaintext": HELLO}, {"context": ""}]}),
        )
        .await;
    expect(&missing, 500);
    assert!(
        missing.errors()[0].contains("'[1].plaintext' missing plaintext to encrypt"),
        "{:?}",
        missing.errors()
    );
    let wrong_type = server
        .post(
            "transit/encrypt/k",
            json!({"batch_input": [{"plaintext": 5}]}),
        )
        .await;
    expect(&wrong_type, 500);
    assert!(
        wrong_type.errors()[0].contains(
            "'[0].plaintext' expected type 'string', got unconvertible type 'json.Number'"
        )
    );
    let no_ciphertext = server
        .post(
            "transit/decrypt/k",
            json!({"batch_input": [{"reference": "x"}]}),
        )
        .await;
    expect(&no_ciphertext, 500);
    assert!(no_ciphertext.errors()[0].contains("'[0].ciphertext' missing ciphertext to decrypt"));
    expect_error(
        &server
            .post(
                "transit/decrypt/nokey",
                json!({"batch_input": [{"ciphertext": "vault:v1:AAAA"}]}),
            )
            .await,
        400,
        "encryption key not found",
    );

    // Batch upsert with contexts creates a derived key.
    let upserted = server
        .post("transit/encrypt/bd", json!({"batch_input": [{"plaintext": HELLO, "context": CTX1}, {"plaintext": HELLO, "context": "Y3R4Mg=="}]}))
        .await;
    expect(&upserted, 200);
    assert_eq!(server.get("transit/keys/bd").await.data()["derived"], true);
}

async fn decrypted_ct(server: &InProcessServer) -> Value {
    server
        .post("transit/encrypt/k", json!({"plaintext": HELLO}))
        .await
        .data()["ciphertext"]
        .clone()
}

#[tokio::test]
async fn batch_limit_answers_413() {
    let options = ServiceOptions {
        engine: EngineOptions {
            max_batch_items: 3,
            ..EngineOptions::default()
        },
        ..ServiceOptions::default()
    };
    let server = InProcessServer::start_with(options).await;
    let items: Vec<Value> = (0..4).map(|_| json!({"plaintext": HELLO})).collect();
    let too_many = server
        .post("transit/encrypt/k", json!({"batch_input": items}))
        .await;
    expect_error(&too_many, 413, "batch of 4 items exceeds the limit of 3");
    let ok: Vec<Value> = (0..3).map(|_| json!({"plaintext": HELLO})).collect();
    expect(
        &server
            .post("transit/encrypt/k", json!({"batch_input": ok}))
            .await,
        200,
    );
}

#[tokio::test]
async fn rotate_rewrap_config_and_trim() {
    let server = InProcessServer::start().await;
    let v1 = server
        .post("transit/encrypt/k", json!({"plaintext": HELLO}))
        .await
        .data()["ciphertext"]
        .clone();

    let rotated = server.post("transit/keys/k/rotate", json!({})).await;
    expect(&rotated, 200);
    assert_eq!(rotated.data()["latest_version"], 2);
    assert_eq!(key_set(&rotated.data()["keys"]), strings(&["1", "2"]));
    expect_error(
        &server.post("transit/keys/nope/rotate", json!({})).await,
        400,
        "key not found",
    );

    // Rewrap single and batch.
    let rewrapped = server
        .post("transit/rewrap/k", json!({"ciphertext": v1}))
        .await;
    expect(&rewrapped, 200);
    assert_eq!(
        key_set(rewrapped.data()),
        strings(&["ciphertext", "key_version"])
    );
    assert_eq!(rewrapped.data()["key_version"], 2);
    let v2 = rewrapped.data()["ciphertext"].clone();
    assert!(s(&v2).starts_with("vault:v2:"));
    assert_eq!(
        server
            .post("transit/decrypt/k", json!({"ciphertext": v2}))
            .await
            .data()["plaintext"],
        HELLO
    );
    expect_error(
        &server.post("transit/rewrap/k", json!({})).await,
        400,
        "missing ciphertext to decrypt",
    );
    let batch = server
        .post(
            "transit/rewrap/k",
            json!({"batch_input": [{"ciphertext": v1, "reference": "a"}, {"ciphertext": "junk", "reference": "b"}]}),
        )
        .await;
    expect(&batch, 200);
    let results = &batch.data()["batch_results"];
    assert_eq!(results[0]["key_version"], 2);
    assert_eq!(results[0]["reference"], "a");
    assert_eq!(
        results[1],
        json!({"error": "invalid ciphertext: no prefix", "reference": "b"})
    );
    let to_v1 = server
        .post(
            "transit/rewrap/k",
            json!({"ciphertext": v2, "key_version": 1}),
        )
        .await;
    assert_eq!(to_v1.data()["key_version"], 1);
    // partial_failure_response_code is unknown on rewrap.
    let unknown = server
        .post(
            "transit/rewrap/k",
            json!({"ciphertext": v1, "partial_failure_response_code": 200}),
        )
        .await;
    assert_eq!(
        unknown.warnings(),
        vec![
            "Endpoint ignored these unrecognized parameters: [partial_failure_response_code]"
                .to_owned()
        ]
    );

    // Config (reference §4.5).
    let warned = server
        .post(
            "transit/keys/k/config",
            json!({"min_decryption_version": 0}),
        )
        .await;
    expect(&warned, 200);
    assert_eq!(warned.warnings().len(), 1);
    assert!(
        warned.warnings()[0].contains("transit key numbering starts at 1; forcing minimum to 1")
    );
    expect_error(
        &server
            .post(
                "transit/keys/k/config",
                json!({"min_decryption_version": -1}),
            )
            .await,
        400,
        "min decryption version cannot be negative",
    );
    expect_error(
        &server
            .post(
                "transit/keys/k/config",
                json!({"min_decryption_version": 5}),
            )
            .await,
        400,
        "cannot set min decryption version of 5, latest key version is 2",
    );
    expect_error(
        &server
            .post(
                "transit/keys/k/config",
                json!({"min_encryption_version": 5}),
            )
            .await,
        400,
        "cannot set min encryption version of 5, latest key version is 2",
    );
    expect_error(
        &server
            .post(
                "transit/keys/k/config",
                json!({"min_decryption_version": 2, "min_encryption_version": 1}),
            )
            .await,
        400,
        "cannot set min encryption/decryption values; min encryption version of 1 must be greater than or equal to min decryption version of 2",
    );
    expect_error(
        &server
            .post("transit/keys/k/config", json!({"auto_rotate_period": "5m"}))
            .await,
        400,
        "auto rotate period must be 0 to disable or at least an hour",
    );
    expect_error(
        &server.post("transit/keys/nope/config", json!({})).await,
        400,
        "no existing key named nope could be found",
    );
    let raised = server
        .post(
            "transit/keys/k/config",
            json!({"min_decryption_version": 2, "exportable": false}),
        )
        .await;
    expect(&raised, 200);
    assert_eq!(raised.data()["min_decryption_version"], 2);
    assert_eq!(raised.data()["exportable"], false);
    assert_eq!(key_set(&raised.data()["keys"]), strings(&["2"]));
    expect_error(
        &server
            .post("transit/decrypt/k", json!({"ciphertext": v1}))
            .await,
        400,
        "ciphertext or signature version is disallowed by policy (too old)",
    );
    expect_error(
        &server
            .post("transit/rewrap/k", json!({"ciphertext": v1}))
            .await,
        400,
        "ciphertext or signature version is disallowed by policy (too old)",
    );

    // Trim (reference §4.7).
    expect_error(
        &server.post("transit/keys/k/trim", json!({})).await,
        400,
        "missing min_available_version",
    );
    expect_error(
        &server
            .post("transit/keys/k/trim", json!({"min_available_version": 2}))
            .await,
        400,
        "minimum available version cannot be set when minimum encryption version is not set",
    );
    expect(
        &server
            .post(
                "transit/keys/k/config",
                json!({"min_encryption_version": 2}),
            )
            .await,
        200,
    );
    expect_error(
        &server
            .post("transit/keys/k/trim", json!({"min_available_version": 0}))
            .await,
        400,
        "minimum available version should be positive",
    );
    expect_error(
        &server
            .post("transit/keys/k/trim", json!({"min_available_version": 3}))
            .await,
        400,
        "minimum available version cannot be greater than minmum encryption version",
    );
    expect_error(
        &server
            .post(
                "transit/keys/nope/trim",
                json!({"min_available_version": 1}),
            )
            .await,
        400,
        "invalid key name",
    );
    let trimmed = server
        .post("transit/keys/k/trim", json!({"min_available_version": 2}))
        .await;
    expect(&trimmed, 200);
    assert_eq!(trimmed.data()["min_available_version"], 2);
    expect_error(
        &server
            .post("transit/keys/k/trim", json!({"min_available_version": 1}))
            .await,
        400,
        "minimum available version cannot be decremented",
    );
    expect_error(
        &server
            .post(
                "transit/keys/k/config",
                json!({"min_decryption_version": 1}),
            )
            .await,
        400,
        "min decryption version should not be less then min available version",
    );
    expect_error(
        &server
            .post(
                "transit/encrypt/k",
                json!({"plaintext": HELLO, "key_version": 1}),
            )
            .await,
        400,
        "requested version for encryption is less than the minimum encryption key version",
    );
}

#[tokio::test]
async fn datakeys() {
    let server = InProcessServer::start().await;
    expect(&server.post("transit/keys/k", json!({})).await, 200);

    let plain = server.post("transit/datakey/plaintext/k", json!({})).await;
    expect(&plain, 200);
    assert_eq!(
        key_set(plain.data()),
        strings(&["ciphertext", "key_version", "plaintext"])
    );
    assert_eq!(unb64(s(&plain.data()["plaintext"])).len(), 32);
    let opened = server
        .post(
            "transit/decrypt/k",
            json!({"ciphertext": plain.data()["ciphertext"]}),
        )
        .await;
    assert_eq!(opened.data()["plaintext"], plain.data()["plaintext"]);

    let wrapped = server
        .post("transit/datakey/wrapped/k", json!({"bits": 512}))
        .await;
    expect(&wrapped, 200);
    assert_eq!(
        key_set(wrapped.data()),
        strings(&["ciphertext", "key_version"])
    );
    assert_eq!(
        unb64(&s(&wrapped.data()["ciphertext"])["vault:v1:".len()..]).len(),
        92
    );
    let small = server
        .post("transit/datakey/plaintext/k", json!({"bits": "128"}))
        .await;
    assert_eq!(unb64(s(&small.data()["plaintext"])).len(), 16);

    expect_error(
        &server
            .post("transit/datakey/plaintext/k", json!({"bits": 100}))
            .await,
        400,
        "invalid bit length",
    );
    expect_error(
        &server.post("transit/datakey/other/k", json!({})).await,
        400,
        "Invalid path, must be 'plaintext' or 'wrapped'",
    );
    expect_error(
        &server.post("transit/datakey/wrapped/nope", json!({})).await,
        400,
        "encryption key not found",
    );
    expect_error(
        &server
            .post("transit/datakey/wrapped/k", json!({"context": "@@"}))
            .await,
        400,
        "failed to base64-decode context",
    );
    // OpenBao has no `nonce` on datakey: ignored with a warning.
    let nonce = server
        .post("transit/datakey/wrapped/k", json!({"nonce": "AAAA"}))
        .await;
    expect(&nonce, 200);
    assert_eq!(
        nonce.warnings(),
        vec!["Endpoint ignored these unrecognized parameters: [nonce]".to_owned()]
    );
}

// ---------------------------------------------------------------------------
// Sign, verify, HMAC
// ---------------------------------------------------------------------------

fn options(hash: Option<HashAlgorithm>) -> SignatureOptions {
    SignatureOptions {
        hash,
        ..SignatureOptions::default()
    }
}

/// The decoded signature bytes of `vault:vN:<payload>`.
fn signature_bytes(signature: &str, url_safe: bool) -> Vec<u8> {
    let payload = signature.splitn(3, ':').nth(2).expect("payload");
    if url_safe {
        URL_SAFE_NO_PAD.decode(payload).expect("base64url")
    } else {
        unb64(payload)
    }
}

#[tokio::test]
async fn sign_and_verify_ed25519_and_ecdsa() {
    let server = InProcessServer::start().await;
    expect(
        &server
            .post("transit/keys/ed", json!({"type": "ed25519"}))
            .await,
        200,
    );

    let signed = server
        .post("transit/sign/ed", json!({"input": HELLO}))
        .await;
    expect(&signed, 200);
    assert_eq!(
        key_set(signed.data()),
        strings(&["key_version", "signature"])
    );
    let signature = s(&signed.data()["signature"]).to_owned();
    assert_eq!(signature_bytes(&signature, false).len(), 64);
    // Ed25519 is deterministic, and ignores hash options (OpenBao).
    let again = server
        .post(
            "transit/sign/ed/sha2-512",
            json!({"input": HELLO, "prehashed": true}),
        )
        .await;
    assert_eq!(again.data()["signature"], signature.as_str());

    // hvac's verify sends `name` in the body: replaced, with a warning.
    let verified = server
        .post(
            "transit/verify/ed",
            json!({"name": "ed", "input": HELLO, "signature": signature}),
        )
        .await;
    expect(&verified, 200);
    assert_eq!(verified.data(), &json!({"valid": true}));
    assert_eq!(
        verified.warnings(),
        vec!["Endpoint replaced the value of these parameters with the values captured from the endpoint's path: [name]".to_owned()]
    );
    let wrong = server
        .post(
            "transit/verify/ed",
            json!({"input": "aGk=", "signature": signature}),
        )
        .await;
    assert_eq!(wrong.data(), &json!({"valid": false}));

    // Derived Ed25519: the derived public key comes back.
    expect(
        &server
            .post(
                "transit/keys/edd",
                json!({"type": "ed25519", "derived": true}),
            )
            .await,
        200,
    );
    let derived = server
        .post("transit/sign/edd", json!({"input": HELLO, "context": CTX1}))
        .await;
    expect(&derived, 200);
    assert_eq!(
        key_set(derived.data()),
        strings(&["key_version", "public_key", "signature"])
    );
    let derived_key = server
        .get(&format!(
            "transit/keys/edd?context={}",
            CTX1.replace('=', "%3D")
        ))
        .await;
    assert_eq!(
        derived_key.data()["keys"]["1"]["public_key"],
        derived.data()["public_key"]
    );
    assert_eq!(
        server.get("transit/keys/edd").await.data()["keys"]["1"]["public_key"],
        ""
    );
    let batch = server
        .post("transit/sign/edd", json!({"batch_input": [{"input": HELLO, "context": CTX1, "reference": "r"}, {"input": HELLO}]}))
        .await;
    expect(&batch, 200);
    let results = &batch.data()["batch_results"];
    assert_eq!(
        key_set(&results[0]),
        strings(&["key_version", "publickey", "reference", "signature"])
    );
    assert_eq!(results[0]["publickey"], derived.data()["public_key"]);
    assert_eq!(results[0]["reference"], "r");
    assert_eq!(
        key_set(&results[1]),
        strings(&["error", "key_version", "reference"])
    );
    assert_eq!(results[1]["key_version"], 0);
    expect_internal(
        &server
            .post("transit/sign/edd", json!({"input": HELLO}))
            .await,
        "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key",
    );

    // ECDSA, asn1 and jws, several hashes, checked locally.
    for (key_type, alg) in [
        ("ecdsa-p256", AsymmetricAlgorithm::EcdsaP256),
        ("ecdsa-p384", AsymmetricAlgorithm::EcdsaP384),
        ("ecdsa-p521", AsymmetricAlgorithm::EcdsaP521),
    ] {
        expect(
            &server
                .post(
                    &format!("transit/keys/{key_type}"),
                    json!({"type": key_type}),
                )
                .await,
            200,
        );
        let key = server.get(&format!("transit/keys/{key_type}")).await;
        let public = PublicKey::from_pem(alg, s(&key.data()["keys"]["1"]["public_key"]))
            .expect("public key");
        for (hash_name, hash) in [
            ("sha2-256", HashAlgorithm::Sha2_256),
            ("sha2-384", HashAlgorithm::Sha2_384),
            ("sha2-512", HashAlgorithm::Sha2_512),
            ("sha3-256", HashAlgorithm::Sha3_256),
        ] {
            let asn1 = server
                .post(
                    &format!("transit/sign/{key_type}/{hash_name}"),
                    json!({"input": HELLO}),
                )
                .await;
            expect(&asn1, 200);
            let sig = s(&asn1.data()["signature"]).to_owned();
            assert!(
                public
                    .verify(
                        b"hello world",
                        &signature_bytes(&sig, false),
                        &options(Some(hash))
                    )
                    .expect("verify")
            );
            let jws = server
                .post(
                    &format!("transit/sign/{key_type}"),
                    json!({"input": HELLO, "hash_algorithm": hash_name, "marshaling_algorithm": "jws"}),
                )
                .await;
            expect(&jws, 200);
            let jws_sig = s(&jws.data()["signature"]).to_owned();
            assert!(!jws_sig.contains('=') && !jws_sig.contains('+') && !jws_sig.contains('/'));
            let jws_options = SignatureOptions {
                marshaling: Marshaling::Jws,
                ..options(Some(hash))
            };
            assert!(
                public
                    .verify(
                        b"hello world",
                        &signature_bytes(&jws_sig, true),
                        &jws_options
                    )
                    .expect("verify")
            );
            let verified = server
                .post(
                    &format!("transit/verify/{key_type}/{hash_name}"),
                    json!({"input": HELLO, "signature": jws_sig, "marshaling_algorithm": "jws"}),
                )
                .await;
            assert_eq!(verified.data(), &json!({"valid": true}));
            let verified = server
                .post(
                    &format!("transit/verify/{key_type}"),
                    json!({"input": HELLO, "signature": sig, "algorithm": hash_name}),
                )
                .await;
            assert_eq!(
                verified.data(),
                &json!({"valid": true}),
                "{key_type} {hash_name}"
            );
        }
    }
    let jws = server
        .post(
            "transit/sign/ecdsa-p256",
            json!({"input": HELLO, "marshaling_algorithm": "jws"}),
        )
        .await;
    expect_error(
        &server
            .post(
                "transit/verify/ecdsa-p256",
                json!({"input": HELLO, "signature": jws.data()["signature"]}),
            )
            .await,
        400,
        "invalid base64 signature value",
    );
    // Prehashed ECDSA.
    let digest = b64(&HashAlgorithm::Sha2_256.digest(b"hello world"));
    let prehashed = server
        .post(
            "transit/sign/ecdsa-p256",
            json!({"input": digest, "prehashed": true}),
        )
        .await;
    let verified = server
        .post(
            "transit/verify/ecdsa-p256",
            json!({"input": HELLO, "signature": prehashed.data()["signature"]}),
        )
        .await;
    assert_eq!(verified.data(), &json!({"valid": true}));

    // Verify batch (signature): `valid` always present.
    let batch = server
        .post(
            "transit/verify/ed",
            json!({"batch_input": [
                {"input": HELLO, "signature": signature, "reference": "a"},
                {"input": "aGk=", "signature": signature},
                {"input": HELLO, "signature": "junk", "reference": "c"},
            ]}),
        )
        .await;
    expect(&batch, 200);
    assert_eq!(
        batch.data()["batch_results"],
        json!([
            {"reference": "a", "valid": true},
            {"reference": "", "valid": false},
            {"error": "invalid signature: no prefix", "reference": "c", "valid": false},
        ])
    );

    // Request-level errors (reference §5.8, §5.9).
    expect(&server.post("transit/keys/aes", json!({})).await, 200);
    expect_error(
        &server
            .post("transit/sign/nope", json!({"input": HELLO}))
            .await,
        400,
        "signing key not found",
    );
    expect_error(
        &server
            .post("transit/sign/aes", json!({"input": HELLO}))
            .await,
        400,
        "key type aes256-gcm96 does not support signing",
    );
    expect_error(
        &server
            .post(
                "transit/sign/aes",
                json!({"batch_input": [{"input": HELLO}]}),
            )
            .await,
        400,
        "key type aes256-gcm96 does not support signing",
    );
    expect_error(
        &server
            .post(
                "transit/verify/nope",
                json!({"input": HELLO, "signature": signature}),
            )
            .await,
        400,
        "signature verification key not found",
    );
    expect_error(
        &server
            .post(
                "transit/verify/aes",
                json!({"input": HELLO, "signature": signature}),
            )
            .await,
        400,
        "key type aes256-gcm96 does not support verification",
    );
    expect_error(
        &server
            .post("transit/verify/ed", json!({"input": HELLO}))
            .await,
        400,
        "neither a 'signature' nor an 'hmac' were given to verify",
    );
    expect_error(
        &server.post("transit/verify/ed", json!({"batch_input": [{"input": HELLO, "signature": signature}, {"input": HELLO, "hmac": "vault:v1:AA=="}]})).await,
        400,
        "elements of batch_input must all provide 'signature' or all provide 'hmac'",
    );
    expect_error(
        &server.post("transit/verify/ed", json!({"batch_input": [{"input": HELLO, "signature": signature}, {"input": HELLO}]})).await,
        400,
        "some elements of batch_input are missing 'signature'",
    );
    expect_error(
        &server
            .post(
                "transit/sign/ecdsa-p256",
                json!({"input": HELLO, "hash_algorithm": "md5"}),
            )
            .await,
        400,
        "invalid hash algorithm \"md5\"",
    );
    expect_error(
        &server
            .post(
                "transit/sign/ecdsa-p256",
                json!({"input": HELLO, "marshaling_algorithm": "der"}),
            )
            .await,
        400,
        "invalid marshaling type \"der\"",
    );
    expect_error(
        &server.post("transit/sign/ed", json!({"input": "@@"})).await,
        400,
        "unable to decode input as base64: illegal base64 data at input byte 0",
    );
    // Signer errors in single mode are plain errors (500), as in Vault.
    expect_internal(
        &server
            .post("transit/sign/ed", json!({"input": HELLO, "key_version": 3}))
            .await,
        "requested version for signing is higher than the latest key version",
    );
    // An empty input signs the empty message.
    expect(&server.post("transit/sign/ed", json!({})).await, 200);
    let malformed = server
        .post(
            "transit/verify/ecdsa-p256",
            json!({"input": HELLO, "signature": "vault:v1:AAAA"}),
        )
        .await;
    expect_error(&malformed, 400, "supplied signature is invalid");
}

#[tokio::test]
async fn rsa_keys_encrypt_sign_and_export() {
    let server = InProcessServer::start().await;
    let created = server
        .post(
            "transit/keys/rsa",
            json!({"type": "rsa-2048", "exportable": true}),
        )
        .await;
    expect(&created, 200);
    let data = created.data();
    assert_eq!(key_set(data), with(&["encryption_counts"]));
    assert_eq!(data["keys"]["1"]["name"], "rsa-2048");
    assert_eq!(data["supports_encryption"], true);
    assert_eq!(data["supports_signing"], true);
    assert_eq!(data["supports_derivation"], false);
    let pem = s(&data["keys"]["1"]["public_key"]).to_owned();
    assert!(pem.ends_with("-----END PUBLIC KEY-----\n"));
    let public = PublicKey::from_pem(AsymmetricAlgorithm::Rsa2048, &pem).expect("public key");

    // OAEP encryption; a ciphertext made locally decrypts.
    let encrypted = server
        .post("transit/encrypt/rsa", json!({"plaintext": HELLO}))
        .await;
    expect(&encrypted, 200);
    assert_eq!(
        unb64(&s(&encrypted.data()["ciphertext"])["vault:v1:".len()..]).len(),
        256
    );
    let decrypted = server
        .post(
            "transit/decrypt/rsa",
            json!({"ciphertext": encrypted.data()["ciphertext"]}),
        )
        .await;
    assert_eq!(decrypted.data()["plaintext"], HELLO);
    let local = public
        .rsa_encrypt_oaep(HashAlgorithm::Sha2_256, b"hello world")
        .expect("OAEP");
    let decrypted = server
        .post(
            "transit/decrypt/rsa",
            json!({"ciphertext": format!("vault:v1:{}", b64(&local))}),
        )
        .await;
    assert_eq!(decrypted.data()["plaintext"], HELLO);
    expect_internal(
        &server
            .post("transit/encrypt/rsa", json!({"plaintext": b64(&[7; 191])}))
            .await,
        "failed to RSA encrypt the plaintext: crypto/rsa: message too long for RSA key size",
    );
    expect_error(
        &server
            .post(
                "transit/encrypt/rsa",
                json!({"plaintext": HELLO, "associated_data": "bWV0YQ=="}),
            )
            .await,
        400,
        "'[0].associated_data' provided for non-AEAD cipher suite rsa-2048",
    );
    let broken = server
        .post(
            "transit/decrypt/rsa",
            json!({"ciphertext": format!("vault:v1:{}", b64(&[1; 256]))}),
        )
        .await;
    expect(&broken, 500);

    // Signatures, verified locally with the same options.
    let digest = HashAlgorithm::Sha2_256.digest(b"hello world");
    let cases: Vec<(Value, SignatureOptions, &[u8])> = vec![
        (
            json!({"input": HELLO}),
            options(Some(HashAlgorithm::Sha2_256)),
            b"hello world",
        ),
        (
            json!({"input": HELLO, "salt_length": "hash"}),
            SignatureOptions {
                salt_length: SaltLength::Hash,
                ..options(Some(HashAlgorithm::Sha2_256))
            },
            b"hello world",
        ),
        (
            json!({"input": HELLO, "salt_length": "20", "hash_algorithm": "sha2-512"}),
            SignatureOptions {
                salt_length: SaltLength::Bytes(20),
                ..options(Some(HashAlgorithm::Sha2_512))
            },
            b"hello world",
        ),
        (
            json!({"input": HELLO, "signature_algorithm": "pkcs1v15", "hash_algorithm": "sha2-384"}),
            SignatureOptions {
                rsa_scheme: RsaSignatureScheme::Pkcs1v15,
                ..options(Some(HashAlgorithm::Sha2_384))
            },
            b"hello world",
        ),
        (
            json!({"input": b64(&digest), "prehashed": true, "hash_algorithm": "none", "signature_algorithm": "pkcs1v15"}),
            SignatureOptions {
                rsa_scheme: RsaSignatureScheme::Pkcs1v15,
                prehashed: true,
                ..options(None)
            },
            &digest,
        ),
    ];
    for (body, opts, message) in cases {
        let signed = server.post("transit/sign/rsa", body.clone()).await;
        expect(&signed, 200);
        let signature = s(&signed.data()["signature"]).to_owned();
        let bytes = signature_bytes(&signature, false);
        assert_eq!(bytes.len(), 256);
        assert!(
            public.verify(message, &bytes, &opts).expect("verify"),
            "{body}"
        );
        let mut verify = body.clone();
        verify["signature"] = json!(signature);
        assert_eq!(
            server.post("transit/verify/rsa", verify).await.data(),
            &json!({"valid": true}),
            "{body}"
        );
    }
    // PKCS#1 v1.5 is deterministic.
    let one = server
        .post(
            "transit/sign/rsa",
            json!({"input": HELLO, "signature_algorithm": "pkcs1v15"}),
        )
        .await;
    let two = server
        .post(
            "transit/sign/rsa",
            json!({"input": HELLO, "signature_algorithm": "pkcs1v15"}),
        )
        .await;
    assert_eq!(one.data()["signature"], two.data()["signature"]);

    expect_error(
        &server
            .post(
                "transit/sign/rsa",
                json!({"input": HELLO, "hash_algorithm": "none"}),
            )
            .await,
        400,
        "hash_algorithm=none requires both prehashed=true and signature_algorithm=pkcs1v15",
    );
    expect_error(
        &server
            .post(
                "transit/sign/rsa",
                json!({"input": HELLO, "salt_length": "abc"}),
            )
            .await,
        400,
        "salt length neither 'auto', 'hash', nor an int: abc",
    );
    expect_internal(
        &server
            .post(
                "transit/sign/rsa",
                json!({"input": HELLO, "salt_length": "99999"}),
            )
            .await,
        "requested salt length 99999 is invalid",
    );
    expect_internal(
        &server
            .post(
                "transit/sign/rsa",
                json!({"input": HELLO, "signature_algorithm": "x"}),
            )
            .await,
        "unsupported rsa signature algorithm x",
    );

    // Export: PKCS#1 PEM for the private key, PKIX PEM for the public key.
    let exported = server.get("transit/export/encryption-key/rsa").await;
    expect(&exported, 200);
    assert_eq!(key_set(exported.data()), strings(&["keys", "name", "type"]));
    assert_eq!(exported.data()["type"], "rsa-2048");
    let private = s(&exported.data()["keys"]["1"]);
    assert!(private.starts_with("-----BEGIN RSA PRIVATE KEY-----\n") && private.ends_with('\n'));
    assert_eq!(
        server.get("transit/export/signing-key/rsa").await.data()["keys"]["1"],
        exported.data()["keys"]["1"]
    );
    let public_export = server.get("transit/export/public-key/rsa/latest").await;
    assert_eq!(public_export.data()["keys"]["1"], pem.as_str());
}

#[tokio::test]
async fn hmac_generate_and_verify() {
    let server = InProcessServer::start().await;
    expect(&server.post("transit/keys/k", json!({})).await, 200);

    let mac = server.post("transit/hmac/k", json!({"input": HELLO})).await;
    expect(&mac, 200);
    assert_eq!(key_set(mac.data()), strings(&["hmac"]));
    let mac = s(&mac.data()["hmac"]).to_owned();
    assert!(mac.starts_with("vault:v1:"));
    assert_eq!(signature_bytes(&mac, false).len(), 32);
    let sha512 = server
        .post("transit/hmac/k/sha2-512", json!({"input": HELLO}))
        .await;
    let sha512 = s(&sha512.data()["hmac"]).to_owned();
    assert_eq!(signature_bytes(&sha512, false).len(), 64);
    let body_alg = server
        .post(
            "transit/hmac/k",
            json!({"input": HELLO, "algorithm": "sha2-512"}),
        )
        .await;
    assert_eq!(body_alg.data()["hmac"], sha512.as_str());
    expect(
        &server
            .post("transit/hmac/k/sha1", json!({"input": HELLO}))
            .await,
        200,
    );

    expect_error(
        &server
            .post("transit/hmac/k/none", json!({"input": HELLO}))
            .await,
        400,
        "algorithm cannot be none",
    );
    let md5 = server
        .post(
            "transit/hmac/k",
            json!({"input": HELLO, "algorithm": "md5"}),
        )
        .await;
    expect(&md5, 400);
    assert!(md5.errors()[0].starts_with("unsupported algorithm"));
    expect_error(
        &server.post("transit/hmac/k", json!({})).await,
        400,
        "missing input for HMAC",
    );
    expect_error(
        &server.post("transit/hmac/k", json!({"input": "@@"})).await,
        400,
        "unable to decode input as base64: illegal base64 data at input byte 0",
    );
    expect_error(
        &server
            .post("transit/hmac/nope", json!({"input": HELLO}))
            .await,
        400,
        "encryption key not found",
    );
    expect_error(
        &server
            .post("transit/hmac/k", json!({"input": HELLO, "key_version": 2}))
            .await,
        400,
        "key version does not exist; latest key version is 1",
    );

    // Verify through /verify.
    let ok = server
        .post("transit/verify/k", json!({"input": HELLO, "hmac": mac}))
        .await;
    assert_eq!(ok.data(), &json!({"valid": true}));
    let other_hash = server
        .post(
            "transit/verify/k/sha2-512",
            json!({"input": HELLO, "hmac": mac}),
        )
        .await;
    assert_eq!(other_hash.data(), &json!({"valid": false}));
    let sha512_ok = server
        .post(
            "transit/verify/k",
            json!({"input": HELLO, "hmac": sha512, "hash_algorithm": "sha2-512"}),
        )
        .await;
    assert_eq!(sha512_ok.data(), &json!({"valid": true}));
    expect_error(
        &server
            .post("transit/verify/k", json!({"input": HELLO, "hmac": "nope"}))
            .await,
        400,
        "invalid HMAC to verify: no prefix",
    );
    expect_error(
        &server
            .post(
                "transit/verify/k",
                json!({"input": HELLO, "hmac": "vault:v2:AAAA"}),
            )
            .await,
        400,
        "invalid HMAC: version is too new",
    );
    expect_error(
        &server
            .post("transit/verify/nope", json!({"input": HELLO, "hmac": mac}))
            .await,
        400,
        "encryption key not found",
    );

    // Batches: references, item errors, `valid` omitted when false.
    let batch = server
        .post(
            "transit/hmac/k",
            json!({"batch_input": [{"input": HELLO, "reference": "a"}, {"reference": "b"}, {"input": 5}]}),
        )
        .await;
    expect(&batch, 200);
    let results = &batch.data()["batch_results"];
    assert_eq!(results[0], json!({"hmac": mac, "reference": "a"}));
    assert_eq!(
        results[1],
        json!({"error": "missing input for HMAC", "reference": "b"})
    );
    assert_eq!(key_set(&results[2]), strings(&["error", "reference"]));
    let all_failed = server
        .post("transit/hmac/k", json!({"batch_input": [{"input": "@"}]}))
        .await;
    expect(&all_failed, 200);
    let verified = server
        .post(
            "transit/verify/k",
            json!({"batch_input": [
                {"input": HELLO, "hmac": mac, "reference": "a"},
                {"input": "aGk=", "hmac": mac, "reference": "b"},
                {"input": HELLO, "hmac": "junk", "reference": "c"},
            ]}),
        )
        .await;
    expect(&verified, 200);
    assert_eq!(
        verified.data()["batch_results"],
        json!([
            {"reference": "a", "valid": true},
            {"reference": "b"},
            {"error": "invalid HMAC to verify: no prefix", "reference": "c"},
        ])
    );
    expect_internal(
        &server
            .post("transit/hmac/k", json!({"batch_input": [{"input": true}]}))
            .await,
        "failed to parse batch input: 1 error(s) decoding:\n\n* '[0][input]' expected type 'string', got unconvertible type 'bool'",
    );

    // A type=hmac key HMACs with its own key.
    expect(
        &server
            .post("transit/keys/mac", json!({"type": "hmac"}))
            .await,
        200,
    );
    let own = server
        .post("transit/hmac/mac", json!({"input": HELLO}))
        .await;
    expect(&own, 200);
    assert_eq!(
        server
            .post(
                "transit/verify/mac",
                json!({"input": HELLO, "hmac": own.data()["hmac"]})
            )
            .await
            .data(),
        &json!({"valid": true})
    );
}

// ---------------------------------------------------------------------------
// Hash and random
// ---------------------------------------------------------------------------

#[tokio::test]
async fn hash_and_random() {
    let server = InProcessServer::start().await;

    let sum = server.post("transit/hash", json!({"input": HELLO})).await;
    expect(&sum, 200);
    assert_eq!(
        sum.data(),
        &json!({"sum": "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"})
    );
    let b64_sum = server
        .post(
            "transit/hash/sha3-256",
            json!({"input": HELLO, "format": "base64"}),
        )
        .await;
    assert_eq!(
        b64_sum.data()["sum"],
        "ZEvMflZDcwQJmarInnYi88px+6HZcv2Uoxw7+/JOOTg="
    );
    let body_alg = server
        .post(
            "transit/hash",
            json!({"input": HELLO, "algorithm": "sha2-512", "format": "base64"}),
        )
        .await;
    assert_eq!(
        body_alg.data()["sum"],
        "MJ7MSJwS1utMxA9QyQLytNDtd+5RGnx6m808qG1M2G+YndNbxf9JlnDaNCVbRbDP2DDoH2Bdz33FVC6TrpzXbw=="
    );
    expect_error(
        &server.post("transit/hash", json!({})).await,
        400,
        "input missing",
    );
    expect_error(
        &server.post("transit/hash", json!({"input": "@@"})).await,
        400,
        "unable to decode input as base64: illegal base64 data at input byte 0",
    );
    expect_error(
        &server
            .post("transit/hash/md5", json!({"input": HELLO}))
            .await,
        400,
        "unsupported algorithm md5",
    );
    expect_error(
        &server
            .post("transit/hash", json!({"input": HELLO, "format": "x"}))
            .await,
        400,
        "unsupported encoding format x; must be \"hex\" or \"base64\"",
    );

    let random = server.post("transit/random", json!({})).await;
    expect(&random, 200);
    assert_eq!(unb64(s(&random.data()["random_bytes"])).len(), 32);
    let random = server.post("transit/random/64", json!({})).await;
    assert_eq!(unb64(s(&random.data()["random_bytes"])).len(), 64);
    let random = server
        .post("transit/random/all/16", json!({"format": "hex"}))
        .await;
    expect(&random, 200);
    assert_eq!(s(&random.data()["random_bytes"]).len(), 32);
    assert!(random.body["warnings"].is_null());
    let random = server
        .post("transit/random/all", json!({"bytes": "8"}))
        .await;
    assert_eq!(unb64(s(&random.data()["random_bytes"])).len(), 8);
    let seal = server.post("transit/random/seal/8", json!({})).await;
    expect(&seal, 200);
    assert_eq!(
        seal.warnings(),
        vec!["no seal/entropy augmentation available, using platform entropy source".to_owned()]
    );
    let max = server
        .post("transit/random", json!({"bytes": 131_072}))
        .await;
    expect(&max, 200);
    expect_error(
        &server.post("transit/random/abc", json!({})).await,
        400,
        "error parsing url-set byte count: strconv.Atoi: parsing \"abc\": invalid syntax",
    );
    expect_error(
        &server.post("transit/random", json!({"bytes": 0})).await,
        400,
        "'bytes' cannot be less than 1",
    );
    expect_error(
        &server
            .post("transit/random", json!({"bytes": 131_073}))
            .await,
        400,
        "'bytes' should be less than 131072",
    );
    expect_error(
        &server.post("transit/random", json!({"format": "x"})).await,
        400,
        "unsupported encoding format \"x\"; must be \"hex\" or \"base64\"",
    );
    expect_error(
        &server.post("transit/random/foo/8", json!({})).await,
        400,
        "unsupported entropy source \"foo\"; must be \"platform\" or \"seal\", or \"all\"",
    );
}

// ---------------------------------------------------------------------------
// Export, backup, restore
// ---------------------------------------------------------------------------

#[tokio::test]
async fn export_backup_and_restore() {
    let server = InProcessServer::start().await;
    expect(&server.post("transit/keys/plain", json!({})).await, 200);
    expect(
        &server
            .post("transit/keys/k", json!({"exportable": true}))
            .await,
        200,
    );
    expect(&server.post("transit/keys/k/rotate", json!({})).await, 200);

    let all = server.get("transit/export/encryption-key/k").await;
    expect(&all, 200);
    assert_eq!(all.data()["name"], "k");
    assert_eq!(all.data()["type"], "aes256-gcm96");
    assert_eq!(key_set(&all.data()["keys"]), strings(&["1", "2"]));
    assert_eq!(unb64(s(&all.data()["keys"]["1"])).len(), 32);
    let v1 = server.get("transit/export/encryption-key/k/v1").await;
    assert_eq!(v1.data()["keys"], json!({"1": all.data()["keys"]["1"]}));
    let latest = server.get("transit/export/encryption-key/k/latest").await;
    assert_eq!(latest.data()["keys"], json!({"2": all.data()["keys"]["2"]}));
    let hmac_key = server.get("transit/export/hmac-key/k/2").await;
    assert_eq!(unb64(s(&hmac_key.data()["keys"]["2"])).len(), 32);

    expect_error(
        &server.get("transit/export/bogus-key/k").await,
        400,
        "invalid export type: bogus-key",
    );
    let missing = server.get("transit/export/encryption-key/nope").await;
    expect(&missing, 404);
    assert_eq!(missing.body, json!({"errors": []}));
    expect_error(
        &server.get("transit/export/encryption-key/plain").await,
        400,
        "private key material is not exportable",
    );
    expect_error(
        &server.get("transit/export/signing-key/k").await,
        400,
        "signing not supported for the key",
    );
    expect_error(
        &server.get("transit/export/encryption-key/k/x").await,
        400,
        "invalid key version",
    );
    expect_error(
        &server.get("transit/export/encryption-key/k/9").await,
        400,
        "version does not exist or cannot be found",
    );
    expect_internal(
        &server.get("transit/export/public-key/k").await,
        "unknown key type aes256-gcm96 for export type public-key",
    );

    expect(
        &server
            .post(
                "transit/keys/ed",
                json!({"type": "ed25519", "exportable": true}),
            )
            .await,
        200,
    );
    let ed_public = server.get("transit/export/public-key/ed").await;
    assert_eq!(
        ed_public.data()["keys"]["1"],
        server.get("transit/keys/ed").await.data()["keys"]["1"]["public_key"]
    );
    let ed_private = server.get("transit/export/signing-key/ed").await;
    assert_eq!(unb64(s(&ed_private.data()["keys"]["1"])).len(), 64);
    expect(
        &server
            .post(
                "transit/keys/p256",
                json!({"type": "ecdsa-p256", "exportable": true}),
            )
            .await,
        200,
    );
    let ec_private = server.get("transit/export/signing-key/p256").await;
    let ec_private = s(&ec_private.data()["keys"]["1"]);
    assert!(
        ec_private.starts_with("-----BEGIN EC PRIVATE KEY-----\n") && !ec_private.ends_with('\n')
    );
    let ec_public = server.get("transit/export/public-key/p256").await;
    assert!(!s(&ec_public.data()["keys"]["1"]).ends_with('\n'));

    // Backup needs exportable and allow_plaintext_backup; refusals are 500s.
    expect_internal(
        &server.get("transit/backup/plain").await,
        "exporting is disallowed on the policy",
    );
    expect_internal(
        &server.get("transit/backup/k").await,
        "plaintext backup is disallowed on the policy",
    );
    expect_internal(
        &server.get("transit/backup/nope").await,
        "key \"nope\" not found",
    );
    expect(
        &server
            .post(
                "transit/keys/k/config",
                json!({"allow_plaintext_backup": true}),
            )
            .await,
        200,
    );
    let ciphertext = server
        .post("transit/encrypt/k", json!({"plaintext": HELLO}))
        .await
        .data()["ciphertext"]
        .clone();
    let backup = server.get("transit/backup/k").await;
    expect(&backup, 200);
    let blob = s(&backup.data()["backup"]).to_owned();
    let info = server.get("transit/keys/k").await;
    assert_eq!(info.data()["backup_info"]["version"], 2);
    assert!(is_rfc3339_nano(s(&info.data()["backup_info"]["time"])));

    let restored = server
        .post("transit/restore/copy", json!({"backup": blob}))
        .await;
    expect(&restored, 204);
    let copy = server.get("transit/keys/copy").await;
    expect(&copy, 200);
    assert_eq!(copy.data()["name"], "copy");
    assert_eq!(copy.data()["restore_info"]["version"], 2);
    assert_eq!(
        server
            .post("transit/decrypt/copy", json!({"ciphertext": ciphertext}))
            .await
            .data()["plaintext"],
        HELLO
    );
    expect_internal(
        &server
            .post("transit/restore/copy", json!({"backup": blob}))
            .await,
        "key \"copy\" already exists",
    );
    expect(
        &server
            .post(
                "transit/restore/copy",
                json!({"backup": blob, "force": true}),
            )
            .await,
        204,
    );
    // Without a URL name the name inside the backup is used.
    expect_internal(
        &server
            .post("transit/restore", json!({"backup": blob}))
            .await,
        "key \"k\" already exists",
    );
    expect_error(
        &server.post("transit/restore", json!({})).await,
        400,
        "'backup' must be supplied",
    );
    expect(
        &server
            .post("transit/restore/x", json!({"backup": "@@@"}))
            .await,
        500,
    );
    expect_internal(
        &server
            .post("transit/restore/a/b", json!({"backup": blob}))
            .await,
        "key names cannot be paths",
    );
}

// ---------------------------------------------------------------------------
// BYOK import and the §8.11 vectors
// ---------------------------------------------------------------------------

/// `RSA-OAEP(wrapping key)(E) || AES-KWP(E, target)`, base64.
fn envelope(wrapping: &PublicKey, hash: HashAlgorithm, target: &[u8]) -> String {
    let ephemeral: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(7).wrapping_add(3))
        .collect();
    let mut bytes = wrapping.rsa_encrypt_oaep(hash, &ephemeral).expect("OAEP");
    assert_eq!(bytes.len(), 512);
    bytes.extend(aes_kwp_wrap(&ephemeral, target).expect("KWP"));
    b64(&bytes)
}

#[tokio::test]
async fn byok_import_and_reference_vectors() {
    let server = InProcessServer::start().await;
    let wrapping = server.get("transit/wrapping_key").await;
    expect(&wrapping, 200);
    assert_eq!(key_set(wrapping.data()), strings(&["public_key"]));
    let pem = s(&wrapping.data()["public_key"]).to_owned();
    assert!(
        pem.starts_with("-----BEGIN PUBLIC KEY-----\n")
            && pem.ends_with("-----END PUBLIC KEY-----\n")
    );
    assert_eq!(
        server.get("transit/wrapping_key").await.data()["public_key"],
        pem.as_str()
    );
    let wrapping = PublicKey::from_pem(AsymmetricAlgorithm::Rsa4096, &pem).expect("RSA-4096 key");
    // The wrapping key never shows up in the key list.
    expect(&server.call("LIST", "transit/keys", None).await, 404);

    let key: Vec<u8> = (0u8..32).collect();
    let imported = server
        .post(
            "transit/keys/vec/import",
            json!({"ciphertext": envelope(&wrapping, HashAlgorithm::Sha2_256, &key), "exportable": true}),
        )
        .await;
    expect(&imported, 204);
    let read = server.get("transit/keys/vec").await;
    assert_eq!(read.data()["type"], "aes256-gcm96");
    assert_eq!(read.data()["imported_key"], true);
    assert_eq!(read.data()["imported_key_allow_rotation"], false);
    assert_eq!(
        key_set(read.data()),
        with(&["encryption_counts", "imported_key_allow_rotation"])
    );
    let exported = server.get("transit/export/encryption-key/vec").await;
    assert_eq!(exported.data()["keys"]["1"], b64(&key));

    // Reference §8.11 vectors.
    let vector = "vault:v1:AAECAwQFBgcICQoLL2e6d6rFtXT/LfMFMBxWQ34jd7mO85YcJxko";
    assert_eq!(
        server
            .post("transit/decrypt/vec", json!({"ciphertext": vector}))
            .await
            .data()["plaintext"],
        HELLO
    );
    let aad_vector = "vault:v1:AAECAwQFBgcICQoLL2e6d6rFtXT/LfODd2GzEuCTJUDgjwvw32UY";
    let opened = server
        .post(
            "transit/decrypt/vec",
            json!({"ciphertext": aad_vector, "associated_data": "bWV0YQ=="}),
        )
        .await;
    assert_eq!(opened.data()["plaintext"], HELLO);
    expect_error(
        &server
            .post("transit/decrypt/vec", json!({"ciphertext": aad_vector}))
            .await,
        400,
        "cipher: message authentication failed",
    );

    let key128: Vec<u8> = (0u8..16).collect();
    expect(
        &server
            .post(
                "transit/keys/vec128/import",
                json!({"ciphertext": envelope(&wrapping, HashAlgorithm::Sha1, &key128), "hash_function": "sha1", "type": "aes128-gcm96"}),
            )
            .await,
        204,
    );
    let v128 = "vault:v1:AAECAwQFBgcICQoL+wnLogk7gDs5vgVJsIXmMuSKWZm7hCcSNWVt";
    assert_eq!(
        server
            .post("transit/decrypt/vec128", json!({"ciphertext": v128}))
            .await
            .data()["plaintext"],
        HELLO
    );
    expect(
        &server
            .post(
                "transit/keys/vecc/import",
                json!({"ciphertext": envelope(&wrapping, HashAlgorithm::Sha2_512, &key), "hash_function": "SHA512", "type": "chacha20-poly1305"}),
            )
            .await,
        204,
    );
    let vchacha = "vault:v1:AAECAwQFBgcICQoL4Z5kbEY30i/F71sY90qN0T07vOC+PrtQj7lZ";
    assert_eq!(
        server
            .post("transit/decrypt/vecc", json!({"ciphertext": vchacha}))
            .await
            .data()["plaintext"],
        HELLO
    );

    // HMAC vectors with an imported hmac key.
    let hmac_key: Vec<u8> = (0x20u8..0x40).collect();
    expect(
        &server
            .post("transit/keys/vmac/import", json!({"ciphertext": envelope(&wrapping, HashAlgorithm::Sha2_256, &hmac_key), "type": "hmac"}))
            .await,
        204,
    );
    assert_eq!(server.get("transit/keys/vmac").await.data()["key_size"], 32);
    assert_eq!(
        server
            .post("transit/hmac/vmac", json!({"input": HELLO}))
            .await
            .data()["hmac"],
        "vault:v1:ECy4zZWLwvd1Tm4fQAxVkae32Ewui1hkolrtxs5Pl9Y="
    );
    assert_eq!(
        server
            .post("transit/hmac/vmac/sha2-512", json!({"input": HELLO}))
            .await
            .data()["hmac"],
        "vault:v1:er66sX3l4bMW5QLN70Ot53IqsqWz5eQ70zHNgPZdKP1+7JzTfIgeLjJmySK7Qv/Z3tp7RG8WpoifKCGk1NIuEg=="
    );

    // Ed25519 (PKCS#8 of the seed 64..83): public key and deterministic signature.
    let seed: Vec<u8> = (0x64u8..0x84).collect();
    let mut pkcs8 = hex::decode("302e020100300506032b657004220420").expect("hex");
    pkcs8.extend_from_slice(&seed);
    expect(
        &server
            .post("transit/keys/ved/import", json!({"ciphertext": envelope(&wrapping, HashAlgorithm::Sha2_256, &pkcs8), "type": "ed25519"}))
            .await,
        204,
    );
    let public_key = "C7w0aldmfDgBIL2cf9flHSxf3+o3zS9b9AWyxr9vLXg=";
    assert_eq!(
        server.get("transit/keys/ved").await.data()["keys"]["1"]["public_key"],
        public_key
    );
    assert_eq!(
        server
            .post("transit/sign/ved", json!({"input": HELLO}))
            .await
            .data()["signature"],
        "vault:v1:FLy0Mj20Be8jBrhXiHRviLVWYSlSEole1k19sqZqIsijLP8OVrNN5ADdOpIk6Q0xWnJpd1gaRf+O1hHsZ1GzBw=="
    );

    // Public-only import: verify works, signing is a plain error.
    let mut spki = hex::decode("302a300506032b6570032100").expect("hex");
    spki.extend_from_slice(&unb64(public_key));
    let spki_pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        b64(&spki)
    );
    expect(
        &server
            .post(
                "transit/keys/vpub/import",
                json!({"public_key": spki_pem, "type": "ed25519"}),
            )
            .await,
        204,
    );
    let check = server
        .post(
            "transit/verify/vpub",
            json!({"input": HELLO, "signature": "vault:v1:FLy0Mj20Be8jBrhXiHRviLVWYSlSEole1k19sqZqIsijLP8OVrNN5ADdOpIk6Q0xWnJpd1gaRf+O1hHsZ1GzBw=="}),
        )
        .await;
    assert_eq!(check.data(), &json!({"valid": true}));
    expect(
        &server
            .post("transit/sign/vpub", json!({"input": HELLO}))
            .await,
        500,
    );

    // Import rules (reference §4.9, §4.10).
    let good = envelope(&wrapping, HashAlgorithm::Sha2_256, &key);
    expect_internal(
        &server
            .post("transit/keys/vec/import", json!({"ciphertext": good}))
            .await,
        "the import path cannot be used with an existing key; use import-version to rotate an existing imported key",
    );
    expect_internal(
        &server.post("transit/keys/vec/rotate", json!({})).await,
        "imported key vec does not allow rotation within Vault",
    );
    expect_error(
        &server
            .post(
                "transit/keys/x/import",
                json!({"ciphertext": good, "hash_function": "MD5"}),
            )
            .await,
        400,
        "unknown hash function: MD5",
    );
    expect_error(
        &server
            .post(
                "transit/keys/x/import",
                json!({"ciphertext": good, "type": "bogus"}),
            )
            .await,
        400,
        "unknown key type: bogus",
    );
    expect_internal(
        &server
            .post("transit/keys/x/import", json!({"ciphertext": "@@"}))
            .await,
        "illegal base64 data at input byte 0",
    );
    expect_internal(
        &server
            .post("transit/keys/x/import", json!({"ciphertext": "AAAA"}))
            .await,
        "provided ciphertext is too short",
    );
    expect_internal(
        &server.post("transit/keys/x/import", json!({})).await,
        "provided type does not support public_key import",
    );
    expect_internal(
        &server
            .post(
                "transit/keys/x/import",
                json!({"ciphertext": good, "convergent_encryption": true}),
            )
            .await,
        "import cannot be used on keys with convergent encryption enabled",
    );
    expect_internal(
        &server
            .post(
                "transit/keys/x/import",
                json!({"ciphertext": good, "auto_rotate_period": "2h"}),
            )
            .await,
        "allow_rotation must be set to true if auto-rotation is enabled",
    );
    expect_internal(
        &server
            .post(
                "transit/keys/x/import",
                json!({"ciphertext": envelope(&wrapping, HashAlgorithm::Sha2_256, &key128)}),
            )
            .await,
        "error importing key: invalid key size 16 bytes for key type aes256-gcm96",
    );
    expect(&server.get("transit/keys/x").await, 404);

    // import_version adds version 2.
    let second: Vec<u8> = (100u8..132).collect();
    expect(
        &server
            .post(
                "transit/keys/vec/import_version",
                json!({"ciphertext": envelope(&wrapping, HashAlgorithm::Sha2_256, &second)}),
            )
            .await,
        204,
    );
    let read = server.get("transit/keys/vec").await;
    assert_eq!(read.data()["latest_version"], 2);
    assert_eq!(
        server
            .get("transit/export/encryption-key/vec/2")
            .await
            .data()["keys"]["2"],
        b64(&second)
    );
    expect_internal(
        &server
            .post(
                "transit/keys/nope/import_version",
                json!({"ciphertext": good}),
            )
            .await,
        "no key found with name nope; to import a new key, use the import/ endpoint",
    );
    expect(&server.post("transit/keys/native", json!({})).await, 200);
    expect_internal(
        &server
            .post(
                "transit/keys/native/import_version",
                json!({"ciphertext": good}),
            )
            .await,
        "the import_version endpoint can only be used with an imported key",
    );
}

// ---------------------------------------------------------------------------
// Routing, methods, tokens, warnings
// ---------------------------------------------------------------------------

#[tokio::test]
async fn routing_methods_tokens_and_warnings() {
    let server = InProcessServer::start().await;
    expect(&server.post("transit/keys/k", json!({})).await, 200);

    // No or bad token: 403 before routing.
    for (method, path) in [
        ("POST", "transit/encrypt/k"),
        ("GET", "transit/keys/k"),
        ("GET", "nomount/x"),
        ("POST", "transit/bogus"),
        ("GET", "transit/encrypt/k"),
    ] {
        let denied = server
            .call_as(None, method, path, Some(json!({"plaintext": HELLO})))
            .await;
        expect(&denied, 403);
        let denied = server
            .call_as(
                Some("bad-token"),
                method,
                path,
                Some(json!({"plaintext": HELLO})),
            )
            .await;
        expect(&denied, 403);
    }
    expect_error(
        &server
            .call_as(
                None,
                "POST",
                "transit/encrypt/k",
                Some(json!({"plaintext": HELLO})),
            )
            .await,
        403,
        "permission denied",
    );

    // Unknown mount, unknown path, wrong method.
    expect_error(
        &server.get("nomount/keys/k").await,
        404,
        "no handler for route \"nomount/keys/k\". route entry not found.",
    );
    let unsupported = "1 error occurred:\n\t* unsupported path\n\n";
    expect_error(
        &server.post("transit/bogus", json!({})).await,
        404,
        unsupported,
    );
    expect_error(&server.get("transit").await, 404, unsupported);
    expect_error(
        &server.post("transit/keys/k/bogus", json!({})).await,
        404,
        unsupported,
    );
    expect_error(
        &server.post("transit/encrypt/k/extra", json!({})).await,
        404,
        unsupported,
    );
    let unsupported_op = "1 error occurred:\n\t* unsupported operation\n\n";
    expect_error(&server.get("transit/encrypt/k").await, 405, unsupported_op);
    expect_error(
        &server.call("DELETE", "transit/keys/k/rotate", None).await,
        405,
        unsupported_op,
    );
    expect_error(
        &server.post("transit/wrapping_key", json!({})).await,
        405,
        unsupported_op,
    );
    expect_error(
        &server.call("PUT", "transit/keys", Some(json!({}))).await,
        405,
        unsupported_op,
    );
    expect(&server.call("HEAD", "transit/keys/k", None).await, 405);
    expect(
        &server
            .call("PATCH", "transit/keys/k", Some(json!({})))
            .await,
        405,
    );

    // Key-name pattern: no route for these names.
    expect_error(
        &server.post("transit/keys/-x", json!({})).await,
        404,
        unsupported,
    );
    expect_error(&server.get("transit/keys/name.").await, 404, unsupported);
    expect_error(
        &server
            .post("transit/encrypt/a%20b", json!({"plaintext": HELLO}))
            .await,
        404,
        unsupported,
    );
    let inner_dots = server.get("transit/keys/bad..name").await;
    expect(&inner_dots, 404);
    assert_eq!(inner_dots.body, json!({"errors": []}));

    // Route ordering: a key named `rotate`.
    let rotate_key = server.post("transit/keys/rotate", json!({})).await;
    expect(&rotate_key, 200);
    assert_eq!(rotate_key.data()["name"], "rotate");
    let rotated = server.post("transit/keys/rotate/rotate", json!({})).await;
    assert_eq!(rotated.data()["latest_version"], 2);

    // Unknown parameters: ignored, one sorted warning; 204 replies stay 204.
    let warned = server
        .post(
            "transit/encrypt/k",
            json!({"plaintext": HELLO, "zzz": 1, "bogus": true, "nonce": "AAAA"}),
        )
        .await;
    expect(&warned, 200);
    assert_eq!(
        warned.warnings(),
        vec!["Endpoint ignored these unrecognized parameters: [bogus nonce zzz]".to_owned()]
    );
    expect(
        &server
            .post("transit/keys/k/config", json!({"deletion_allowed": true}))
            .await,
        200,
    );
    let deleted = server.call("DELETE", "transit/keys/k?bogus=1", None).await;
    expect(&deleted, 204);
    let read = server.get("transit/keys/rotate?bogus=1").await;
    assert_eq!(
        read.warnings(),
        vec!["Endpoint ignored these unrecognized parameters: [bogus]".to_owned()]
    );

    // Envelope and headers.
    let encrypted = server
        .post("transit/encrypt/k2", json!({"plaintext": HELLO}))
        .await;
    assert_eq!(encrypted.content_type.as_deref(), Some("application/json"));
    for field in [
        "request_id",
        "lease_id",
        "renewable",
        "lease_duration",
        "data",
        "wrap_info",
        "warnings",
        "auth",
    ] {
        assert!(encrypted.body.get(field).is_some(), "missing {field}");
    }
    assert_eq!(encrypted.body["lease_id"], "");
    assert_eq!(encrypted.body["renewable"], false);

    // Weak typing: numbers as strings, strings as numbers.
    let weak = server
        .post("transit/random", json!({"bytes": "16", "format": "hex"}))
        .await;
    assert_eq!(s(&weak.data()["random_bytes"]).len(), 32);

    // cache-config: accepted and echoed per mount.
    assert_eq!(
        server.get("transit/cache-config").await.data(),
        &json!({"size": 0})
    );
    expect_error(
        &server
            .post("transit/cache-config", json!({"size": 5}))
            .await,
        400,
        "size must be 0 or a value greater or equal to 10",
    );
    assert_eq!(
        server
            .post("transit/cache-config", json!({"size": 20}))
            .await
            .data(),
        &json!({"size": 20})
    );
    assert_eq!(
        server.get("transit/cache-config").await.data(),
        &json!({"size": 20})
    );
    expect(
        &server
            .post("transit/cache-config", json!({"size": 0}))
            .await,
        200,
    );
}

#[tokio::test]
async fn acl_upsert_and_sealed() {
    use cipherd::auth::TokenRequest;
    use cipherd::service::{RequestContext, Transport};

    let server = InProcessServer::start().await;
    let state = server.service.unsealed().expect("unsealed");
    state
        .auth
        .put_policy(
            "enc",
            r#"
            path "transit/encrypt/orders" { capabilities = ["update"] }
            path "transit/keys/*" { capabilities = ["list"] }
            "#,
        )
        .expect("policy");
    let root = RequestContext {
        token: Some(inprocess::ROOT_TOKEN),
        transport: Transport::Rest,
        audit: None,
    };
    let request = TokenRequest {
        policies: vec!["enc".to_owned()],
        ..TokenRequest::default()
    };
    let issued = server
        .service
        .create_token(&root, "auth/token/create", &request)
        .expect("token");
    let token = issued.token.expose_secret().to_owned();
    let denied = "1 error occurred:\n\t* permission denied\n\n";

    // An upsert needs `create`: denied while the key is missing, allowed after.
    let upsert = server
        .call_as(
            Some(&token),
            "POST",
            "transit/encrypt/orders",
            Some(json!({"plaintext": HELLO})),
        )
        .await;
    expect_error(&upsert, 403, denied);
    expect(&server.post("transit/keys/orders", json!({})).await, 200);
    let encrypted = server
        .call_as(
            Some(&token),
            "POST",
            "transit/encrypt/orders",
            Some(json!({"plaintext": HELLO})),
        )
        .await;
    expect(&encrypted, 200);
    let decrypt = server
        .call_as(
            Some(&token),
            "POST",
            "transit/decrypt/orders",
            Some(json!({"ciphertext": encrypted.data()["ciphertext"]})),
        )
        .await;
    expect_error(&decrypt, 403, denied);
    // LIST is checked as `keys/`.
    let listed = server
        .call_as(Some(&token), "LIST", "transit/keys", None)
        .await;
    expect(&listed, 200);
    assert_eq!(listed.data(), &json!({"keys": ["orders"]}));
    // The token check comes before routing, also for a token the ACL denies.
    expect_error(
        &server
            .call_as(Some(&token), "POST", "transit/bogus", Some(json!({})))
            .await,
        403,
        denied,
    );
    expect_error(
        &server
            .call_as(Some(&token), "GET", "transit/encrypt/orders", None)
            .await,
        403,
        denied,
    );

    // Sealed: 503 before any token check.
    server.service.seal_now();
    expect_error(
        &server
            .post("transit/encrypt/orders", json!({"plaintext": HELLO}))
            .await,
        503,
        "Vault is sealed",
    );
    expect_error(
        &server
            .call_as(None, "GET", "transit/keys/orders", None)
            .await,
        503,
        "Vault is sealed",
    );
    expect_error(&server.get("nomount/x").await, 503, "Vault is sealed");
}

/// The two 403 bodies of OpenBao 2.7.2 (reference §2.2): a token that does not
/// resolve (unknown, revoked, used up) or no token at all gets the plain
/// `permission denied`; a live token its policies do not allow gets the
/// multierror form.
#[tokio::test]
async fn forbidden_body_plain_for_unknown_tokens_multierror_for_acl_denials() {
    use cipherd::auth::TokenRequest;
    use cipherd::service::{RequestContext, Transport};

    let server = InProcessServer::start().await;
    expect(&server.post("transit/keys/k", json!({})).await, 200);
    let plain = "permission denied";
    let denied = "1 error occurred:\n\t* permission denied\n\n";
    let encrypt = |token: Option<String>| {
        let server = &server;
        async move {
            server
                .call_as(
                    token.as_deref(),
                    "POST",
                    "transit/encrypt/k",
                    Some(json!({"plaintext": HELLO})),
                )
                .await
        }
    };

    expect_error(&encrypt(Some("hvs.unknown".to_owned())).await, 403, plain);
    expect_error(&encrypt(None).await, 403, plain);
    // Unknown tokens are refused before routing, as in OpenBao.
    expect_error(
        &server
            .call_as(
                Some("hvs.unknown"),
                "POST",
                "transit/bogus",
                Some(json!({})),
            )
            .await,
        403,
        plain,
    );
    expect_error(
        &server
            .call_as(Some("hvs.unknown"), "GET", "auth/token/lookup-self", None)
            .await,
        403,
        plain,
    );

    let root = RequestContext {
        token: Some(inprocess::ROOT_TOKEN),
        transport: Transport::Rest,
        audit: None,
    };
    let issue = |request: TokenRequest| {
        server
            .service
            .create_token(&root, "auth/token/create", &request)
            .expect("token")
            .token
            .expose_secret()
            .to_owned()
    };
    // A live token with only the default policy: an ACL denial.
    let user = issue(TokenRequest {
        policies: vec!["default".to_owned()],
        ..TokenRequest::default()
    });
    expect_error(&encrypt(Some(user.clone())).await, 403, denied);
    // The same token once revoked no longer resolves.
    expect(
        &server
            .post("auth/token/revoke", json!({"token": user}))
            .await,
        204,
    );
    expect_error(&encrypt(Some(user)).await, 403, plain);
    // A use-limited token after its last use.
    let once = issue(TokenRequest {
        policies: vec!["root".to_owned()],
        num_uses: 1,
        ..TokenRequest::default()
    });
    expect(&encrypt(Some(once.clone())).await, 200);
    expect_error(&encrypt(Some(once)).await, 403, plain);
}
