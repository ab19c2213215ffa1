//! Keeps the layers of DESIGN.md honest: the core (crypto, keyring, engine)
//! must not reach up into adapters or out to files, HTTP, gRPC or JSON.
//! The layers share one crate, so the compiler cannot enforce this; this test
//! reads the sources.

use std::fs;
use std::path::Path;

const FORBIDDEN: [&str; 10] = [
    "crate::api",
    "crate::server",
    "crate::cli",
    "crate::service",
    "axum",
    "tonic",
    "serde_json",
    "std::fs",
    "tokio",
    "reqwest",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("read source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn core_layers_do_not_import_upper_layers_or_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    let mut violations = Vec::new();
    for layer in ["crypto", "keyring", "engine"] {
        let mut files = Vec::new();
        rust_files(&root.join(layer), &mut files);
        for file in files {
            let text = fs::read_to_string(&file).expect("read source");
            for (number, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for needle in FORBIDDEN {
                    if code.contains(needle) {
                        violations.push(format!("{}:{}: {needle}", file.display(), number + 1));
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 15,
        "expected the core modules to exist, checked {checked} files"
    );
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn storage_knows_no_keys() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/storage");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    for file in files {
        let text = fs::read_to_string(&file).expect("read source");
        // Docs may point at the barrier; code may not use it.
        let code: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for needle in [
            "crate::keyring",
            "crate::engine",
            "crate::seal",
            "crate::crypto::aead",
        ] {
            assert!(!code.contains(needle), "{} uses {needle}", file.display());
        }
    }
}
