//! The `cipherd` command line against a real dev server: key and crypto
//! commands, tokens and policies, operator status, table and JSON output, and
//! the Vault environment variables.

#[path = "common/process.rs"]
mod process;

use std::process::{Command, Output};

use process::ProcessServer;
use serde_json::Value;

fn cipherd(addr: &str, token: &str, args: &[&str]) -> Output {
    Command::new(process::binary())
        .args(args)
        .env_remove("CIPHERD_ADDR")
        .env_remove("CIPHERD_TOKEN")
        .env("VAULT_ADDR", addr)
        .env("VAULT_TOKEN", token)
        .output()
        .expect("run cipherd")
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_str(&ok(output)).expect("JSON output")
}

#[test]
fn key_crypto_token_and_policy_commands_work_end_to_end() {
    let server = ProcessServer::start_dev(&["--dev-root-token", "root"]);
    let addr = server.addr().to_owned();
    let run = |args: &[&str]| cipherd(&addr, "root", args);

    let created = json(&run(&[
        "key",
        "create",
        "orders",
        "--type",
        "chacha20-poly1305",
        "-format=json",
    ]));
    assert_eq!(created["type"], "chacha20-poly1305");
    assert!(
        ok(&run(&["key", "read", "orders"])).contains("latest_version"),
        "table output"
    );

    let encrypted = json(&run(&[
        "encrypt",
        "orders",
        "card 4111",
        "--format",
        "json",
    ]));
    let ciphertext = encrypted["ciphertext"]
        .as_str()
        .expect("ciphertext")
        .to_owned();
    assert!(ciphertext.starts_with("vault:v1:"));
    assert_eq!(
        ok(&run(&["decrypt", "orders", &ciphertext])).trim_end(),
        "card 4111"
    );

    json(&run(&["key", "rotate", "orders", "-format=json"]));
    let rewrapped = json(&run(&["rewrap", "orders", &ciphertext, "-format=json"]));
    let rewrapped = rewrapped["ciphertext"].as_str().expect("ciphertext");
    assert!(rewrapped.starts_with("vault:v2:"));
    assert_eq!(
        ok(&run(&["decrypt", "orders", rewrapped])).trim_end(),
        "card 4111"
    );

    json(&run(&[
        "key",
        "create",
        "signer",
        "--type",
        "ed25519",
        "-format=json",
    ]));
    let signed = json(&run(&["sign", "signer", "release 1.0", "-format=json"]));
    let signature = signed["signature"].as_str().expect("signature");
    ok(&run(&["verify", "signer", "release 1.0", signature]));
    let bad = run(&["verify", "signer", "release 2.0", signature]);
    assert!(
        !bad.status.success(),
        "a wrong signature makes verify exit non-zero"
    );

    // A policy that allows encrypting with `orders` only, and a token that holds it.
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = dir.path().join("orders.hcl");
    std::fs::write(
        &policy,
        "path \"transit/encrypt/orders\" { capabilities = [\"update\"] }\n",
    )
    .expect("write");
    ok(&run(&[
        "policy",
        "write",
        "orders-only",
        policy.to_str().expect("utf-8 path"),
    ]));
    assert!(ok(&run(&["policy", "read", "orders-only"])).contains("transit/encrypt/orders"));
    let token = json(&run(&[
        "token",
        "create",
        "--policy",
        "orders-only",
        "-format=json",
    ]));
    let limited = token["client_token"]
        .as_str()
        .expect("client_token")
        .to_owned();
    ok(&cipherd(&addr, &limited, &["encrypt", "orders", "x"]));
    let denied = cipherd(&addr, &limited, &["decrypt", "orders", &ciphertext]);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("403"),
        "denial names the status"
    );

    let status = json(&run(&["operator", "status", "-format=json"]));
    assert_eq!(status["sealed"], false);
    assert_eq!(status["initialized"], true);
}

#[test]
fn operator_init_and_unseal_drive_a_sealed_server() {
    let server = ProcessServer::start_temp(&[]);
    let addr = server.addr().to_owned();
    let init = json(&cipherd(
        &addr,
        "",
        &[
            "operator",
            "init",
            "--key-shares",
            "3",
            "--key-threshold",
            "2",
            "-format=json",
        ],
    ));
    let shares: Vec<String> = init["keys_base64"]
        .as_array()
        .expect("shares")
        .iter()
        .map(|s| s.as_str().expect("share").to_owned())
        .collect();
    assert_eq!(shares.len(), 3);
    let first = json(&cipherd(
        &addr,
        "",
        &["operator", "unseal", &shares[0], "-format=json"],
    ));
    assert_eq!(first["sealed"], true);
    assert_eq!(first["progress"], 1);
    let second = json(&cipherd(
        &addr,
        "",
        &["operator", "unseal", &shares[2], "-format=json"],
    ));
    assert_eq!(second["sealed"], false);
    let root = init["root_token"].as_str().expect("root token");
    ok(&cipherd(&addr, root, &["operator", "seal"]));
    let status = json(&cipherd(&addr, "", &["operator", "status", "-format=json"]));
    assert_eq!(status["sealed"], true);
    let wrong_server = cipherd("http://127.0.0.1:9", "", &["operator", "status"]);
    assert!(
        !wrong_server.status.success(),
        "an unreachable server is an error, not a panic"
    );
}
