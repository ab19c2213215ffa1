//! The hot path against the raw primitive, in one run (DESIGN.md "The hot path").
//!
//! For 64 B, 1 KiB and 16 KiB plaintexts: ring's AES-256-GCM seal plus the
//! base64 encode of nonce||ciphertext||tag (the floor any server must pay), then
//! the engine's encrypt and decrypt with `aes256-gcm96` and `chacha20-poly1305`,
//! single and in batches of 1000. Criterion interleaves nothing by itself, so each
//! group puts the raw baseline first and the engine right after it, and
//! `BENCHMARKS.md` compares figures from the same run only.
//!
//! Run: `cargo bench --bench hot_path` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cipherd::engine::{Engine, EngineOptions};
use cipherd::keyring::{CreateOptions, DecryptRequest, EncryptRequest, KeyType};
use cipherd::storage::MemoryStorage;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::Rng as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

const SIZES: [usize; 3] = [64, 1024, 16 * 1024];
const BATCH: usize = 1000;

fn engine_with(key_type: KeyType) -> Engine {
    // Counter-triggered rotation is off so a long run measures one version.
    let options = EngineOptions {
        rotate_after_encryptions: None,
        ..EngineOptions::default()
    };
    let engine =
        Engine::open(Arc::new(MemoryStorage::new()), "transit/", options).expect("open engine");
    engine
        .create_key(
            "k",
            &CreateOptions {
                key_type,
                ..CreateOptions::default()
            },
        )
        .expect("create key");
    engine
}

/// ring seal of `plaintext` under a random nonce, then base64 of the payload:
/// the raw work behind one `vault:v1:` ciphertext. The nonce comes from the
/// same thread-local CSPRNG the engine uses, so the ratio measures the engine's
/// own overhead rather than a difference between nonce sources.
fn raw_seal_and_encode(key: &LessSafeKey, plaintext: &[u8]) -> String {
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    let mut buf = Vec::with_capacity(12 + plaintext.len() + 16);
    buf.extend_from_slice(&nonce);
    buf.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            &mut buf[12..],
        )
        .expect("seal");
    buf.extend_from_slice(tag.as_ref());
    STANDARD.encode(&buf)
}

fn single(c: &mut Criterion) {
    let raw_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("key"));
    let engines = [
        ("aes256-gcm96", engine_with(KeyType::Aes256Gcm96)),
        ("chacha20-poly1305", engine_with(KeyType::ChaCha20Poly1305)),
    ];
    for size in SIZES {
        let plaintext = vec![0xa5u8; size];
        let mut group = c.benchmark_group(format!("single/{size}B"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("raw ring aes256-gcm seal+base64", |b| {
            b.iter(|| raw_seal_and_encode(&raw_key, black_box(&plaintext)))
        });
        for (label, engine) in &engines {
            let request = EncryptRequest {
                plaintext: &plaintext,
                ..EncryptRequest::default()
            };
            group.bench_function(BenchmarkId::new("engine encrypt", label), |b| {
                b.iter(|| {
                    engine
                        .encrypt("k", black_box(&request), None)
                        .expect("encrypt")
                })
            });
            let ciphertext = engine
                .encrypt("k", &request, None)
                .expect("encrypt")
                .ciphertext;
            let decrypt = DecryptRequest {
                ciphertext: &ciphertext,
                ..DecryptRequest::default()
            };
            group.bench_function(BenchmarkId::new("engine decrypt", label), |b| {
                b.iter(|| engine.decrypt("k", black_box(&decrypt)).expect("decrypt"))
            });
        }
        group.finish();
    }
}

fn batched(c: &mut Criterion) {
    let raw_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("key"));
    let engines = [
        ("aes256-gcm96", engine_with(KeyType::Aes256Gcm96)),
        ("chacha20-poly1305", engine_with(KeyType::ChaCha20Poly1305)),
    ];
    for size in SIZES {
        let plaintexts: Vec<Vec<u8>> = (0..BATCH).map(|i| vec![i as u8; size]).collect();
        let mut group = c.benchmark_group(format!("batch{BATCH}/{size}B"));
        group.throughput(Throughput::Elements(BATCH as u64));
        if size >= 16 * 1024 {
            group.sample_size(10);
        }
        group.bench_function("raw ring aes256-gcm seal+base64 x1000 (one core)", |b| {
            b.iter(|| {
                plaintexts
                    .iter()
                    .map(|p| raw_seal_and_encode(&raw_key, p))
                    .collect::<Vec<_>>()
            })
        });
        for (label, engine) in &engines {
            let items: Vec<EncryptRequest<'_>> = plaintexts
                .iter()
                .map(|p| EncryptRequest {
                    plaintext: p,
                    ..EncryptRequest::default()
                })
                .collect();
            group.bench_function(
                BenchmarkId::new("engine encrypt_batch (all cores)", label),
                |b| {
                    b.iter(|| {
                        engine
                            .encrypt_batch("k", black_box(&items), None)
                            .expect("batch")
                    })
                },
            );
            let ciphertexts: Vec<String> = engine
                .encrypt_batch("k", &items, None)
                .expect("batch")
                .into_iter()
                .map(|r| r.expect("item").ciphertext)
                .collect();
            let decrypts: Vec<DecryptRequest<'_>> = ciphertexts
                .iter()
                .map(|c| DecryptRequest {
                    ciphertext: c,
                    ..DecryptRequest::default()
                })
                .collect();
            group.bench_function(
                BenchmarkId::new("engine decrypt_batch (all cores)", label),
                |b| {
                    b.iter(|| {
                        engine
                            .decrypt_batch("k", black_box(&decrypts))
                            .expect("batch")
                    })
                },
            );
            // The same batch on one core: the per-core figure of the goal.
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .expect("pool");
            group.bench_function(
                BenchmarkId::new("engine encrypt_batch (one core)", label),
                |b| {
                    b.iter(|| {
                        pool.install(|| {
                            engine
                                .encrypt_batch("k", black_box(&items), None)
                                .expect("batch")
                        })
                    })
                },
            );
        }
        group.finish();
    }
}

criterion_group!(benches, single, batched);
criterion_main!(benches);
