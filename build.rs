//! Compiles `proto/cipherd/v1/*.proto` into `OUT_DIR`: the prost messages, the
//! tonic client and server, and the encoded file descriptor set that gRPC
//! server reflection serves. `protoc` comes from `protoc-bin-vendored`, so no
//! system protoc is needed; a `PROTOC` in the environment takes precedence.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/cipherd/v1/transit.proto",
    "proto/cipherd/v1/sys.proto",
];

/// Messages without a generated `Debug` (keep in step with `api::grpc::pb`).
const REDACTED: &[&str] = &[
    "EncryptRequest",
    "DecryptResponse",
    "DatakeyResponse",
    "SignRequest",
    "VerifyRequest",
    "HmacRequest",
    "VerifyHmacRequest",
    "HashRequest",
    "RandomResponse",
    "EncryptItem",
    "PlaintextResult",
    "SignItem",
    "VerifyItem",
    "HmacItem",
    "BulkItem",
    "BulkResult",
    "InitResponse",
    "UnsealRequest",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    // These messages carry plaintexts, inputs, data keys, unseal shares or the
    // root token: a generated `Debug` would print them. `api::grpc::pb` gives
    // them one that prints the type name only.
    config.skip_debug(REDACTED.iter().map(|name| format!(".cipherd.v1.{name}")));
    // `prost::Name` gives each message its full name, which the audit log uses
    // to render a message through its descriptor.
    config.enable_type_names();
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("cipherd_descriptor.bin"))
        .compile_with_config(config, PROTOS, &["proto"])?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
