//! TLS on both listeners: a server started with `--tls-cert`/`--tls-key` speaks
//! HTTPS (checked through the CLI trusting the certificate with
//! `VAULT_CACERT`) and gRPC over TLS (checked with a tonic client), and refuses
//! clients that do not trust its certificate.

#[path = "common/process.rs"]
mod process;

use std::process::Command;

use cipherd::api::grpc::pb;
use process::ProcessServer;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

struct Pki {
    _dir: tempfile::TempDir,
    cert_path: String,
    key_path: String,
    cert_pem: String,
}

fn self_signed() -> Pki {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("generate certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let cert_pem = certified.cert.pem();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, &cert_pem).expect("write cert");
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("write key");
    Pki {
        cert_path: cert_path.to_string_lossy().into_owned(),
        key_path: key_path.to_string_lossy().into_owned(),
        cert_pem,
        _dir: dir,
    }
}

fn status(addr: &str, cacert: Option<&str>) -> std::process::Output {
    let mut command = Command::new(process::binary());
    command
        .args(["operator", "status", "-format=json"])
        .env_remove("CIPHERD_ADDR")
        .env_remove("CIPHERD_CACERT")
        .env("VAULT_ADDR", addr);
    match cacert {
        Some(path) => command.env("VAULT_CACERT", path),
        None => command.env_remove("VAULT_CACERT"),
    };
    command.output().expect("run cipherd")
}

#[tokio::test]
async fn rest_and_grpc_serve_tls() {
    let pki = self_signed();
    let server =
        ProcessServer::start_dev(&["--tls-cert", &pki.cert_path, "--tls-key", &pki.key_path]);
    let rest = server.addr().to_owned();
    assert!(rest.starts_with("https://127.0.0.1:"), "{rest}");

    // The CLI trusts the certificate through VAULT_CACERT.
    let trusted = status(&rest, Some(&pki.cert_path));
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&trusted.stdout).expect("JSON");
    assert_eq!(json["sealed"], false);
    // Without it the handshake is refused, and the server keeps serving others.
    assert!(!status(&rest, None).status.success());
    assert!(status(&rest, Some(&pki.cert_path)).status.success());

    // gRPC over TLS, by host name (the certificate names localhost).
    let line = server.banner().last().expect("listen line").clone();
    let grpc = line
        .split("grpc=")
        .nth(1)
        .expect("grpc address")
        .trim()
        .to_owned();
    assert!(grpc.starts_with("https://127.0.0.1:"), "{grpc}");
    let url = grpc.replace("127.0.0.1", "localhost");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.cert_pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(url)
        .expect("url")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("connect");
    let mut sys = pb::sys_client::SysClient::new(channel);
    let reply = sys
        .seal_status(pb::SealStatusRequest::default())
        .await
        .expect("seal status")
        .into_inner();
    assert!(!reply.sealed);
}
