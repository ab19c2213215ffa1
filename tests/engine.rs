//! Engine integration tests over the in-memory store: every key type end to end,
//! rotation, min versions, trim, batches, upsert, persistence, backup/restore,
//! export and BYOK import.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cipherd::crypto::asymmetric::{Marshaling, RsaSignatureScheme, SaltLength, SignatureOptions};
use cipherd::crypto::{HashAlgorithm, wrap};
use cipherd::engine::{
    DatakeyRequest, Engine, EngineError, EngineOptions, ImportPayload, RestoreRequest,
    RewrapRequest, UpsertOptions,
};
use cipherd::keyring::{
    ConfigUpdate, CreateOptions, DecryptRequest, EncryptRequest, ExportKind, HmacRequest,
    ImportOptions, KeyType, KeyringError, SignRequest, VerifyRequest,
};
use cipherd::storage::{MemoryStorage, Storage};
use proptest::prelude::*;

fn engine_on(storage: Arc<dyn Storage>) -> Engine {
    Engine::open(storage, "transit/", EngineOptions::default()).unwrap()
}

fn engine() -> Engine {
    engine_on(Arc::new(MemoryStorage::new()))
}

fn create(engine: &Engine, name: &str, key_type: KeyType) {
    let options = CreateOptions {
        key_type,
        exportable: true,
        allow_plaintext_backup: true,
        ..CreateOptions::default()
    };
    assert!(engine.create_key(name, &options).unwrap().1);
}

fn enc<'a>(plaintext: &'a [u8]) -> EncryptRequest<'a> {
    EncryptRequest {
        plaintext,
        ..EncryptRequest::default()
    }
}

fn dec(ciphertext: &str) -> DecryptRequest<'_> {
    DecryptRequest {
        ciphertext,
        ..DecryptRequest::default()
    }
}

const ENCRYPTING: [KeyType; 7] = [
    KeyType::Aes128Gcm96,
    KeyType::Aes256Gcm96,
    KeyType::ChaCha20Poly1305,
    KeyType::XChaCha20Poly1305,
    KeyType::Rsa2048,
    KeyType::Rsa3072,
    KeyType::Rsa4096,
];

const SIGNING: [KeyType; 7] = [
    KeyType::Ed25519,
    KeyType::EcdsaP256,
    KeyType::EcdsaP384,
    KeyType::EcdsaP521,
    KeyType::Rsa2048,
    KeyType::Rsa3072,
    KeyType::Rsa4096,
];

#[test]
fn every_encrypting_type_round_trips_across_rotation_and_rewrap() {
    let engine = engine();
    for key_type in ENCRYPTING {
        let name = key_type.name();
        create(&engine, name, key_type);
        let v1 = engine.encrypt(name, &enc(b"field value"), None).unwrap();
        assert_eq!(v1.key_version, 1);
        assert!(v1.ciphertext.starts_with("vault:v1:"));
        engine.rotate_key(name).unwrap();
        let v2 = engine.encrypt(name, &enc(b"field value"), None).unwrap();
        assert_eq!(
            v2.key_version, 2,
            "{name}: a rotation is visible to the next request"
        );
        for ct in [&v1.ciphertext, &v2.ciphertext] {
            assert_eq!(engine.decrypt(name, &dec(ct)).unwrap(), b"field value");
        }
        let rewrapped = engine
            .rewrap(
                name,
                &RewrapRequest {
                    ciphertext: &v1.ciphertext,
                    ..RewrapRequest::default()
                },
            )
            .unwrap();
        assert_eq!(rewrapped.key_version, 2);
        assert_eq!(
            engine.decrypt(name, &dec(&rewrapped.ciphertext)).unwrap(),
            b"field value"
        );
        let described = engine.read_key(name, None).unwrap();
        assert_eq!(described.latest_version, 2);
        assert_eq!(
            described
                .versions
                .iter()
                .map(|v| v.encryptions)
                .sum::<u64>(),
            3
        );
    }
}

#[test]
fn every_signing_type_signs_and_verifies_with_every_option() {
    let engine = engine();
    let hashes = [
        HashAlgorithm::Sha2_224,
        HashAlgorithm::Sha2_256,
        HashAlgorithm::Sha2_384,
        HashAlgorithm::Sha2_512,
        HashAlgorithm::Sha3_224,
        HashAlgorithm::Sha3_256,
        HashAlgorithm::Sha3_384,
        HashAlgorithm::Sha3_512,
    ];
    for key_type in SIGNING {
        let name = key_type.name();
        create(&engine, name, key_type);
        let mut option_sets = Vec::new();
        for hash in hashes {
            for marshaling in [Marshaling::Asn1, Marshaling::Jws] {
                for rsa_scheme in [RsaSignatureScheme::Pss, RsaSignatureScheme::Pkcs1v15] {
                    option_sets.push(SignatureOptions {
                        hash: Some(hash),
                        marshaling,
                        rsa_scheme,
                        ..SignatureOptions::default()
                    });
                }
            }
        }
        for options in option_sets {
            let signed = engine
                .sign(
                    name,
                    &SignRequest {
                        input: b"message",
                        options,
                        ..SignRequest::default()
                    },
                )
                .unwrap_or_else(|e| panic!("{name} {options:?}: {e}"));
            let verify = |input: &[u8]| {
                engine.verify(
                    name,
                    &VerifyRequest {
                        input,
                        signature: &signed.signature,
                        options,
                        ..VerifyRequest::default()
                    },
                )
            };
            assert!(verify(b"message").unwrap(), "{name} {options:?}");
            assert!(!verify(b"massage").unwrap(), "{name} {options:?}");
        }
        // Signing types cannot encrypt, and vice versa for AES.
        if !key_type.is_rsa() {
            let err = engine.encrypt(name, &enc(b"x"), None).unwrap_err();
            assert!(err.to_string().contains("not supported"), "{err}");
        }
    }
    // Prehashed RSA PKCS#1 v1.5 with hash "none" signs the raw digest.
    let digest = HashAlgorithm::Sha2_256.digest(b"message");
    let options = SignatureOptions {
        hash: None,
        prehashed: true,
        rsa_scheme: RsaSignatureScheme::Pkcs1v15,
        ..SignatureOptions::default()
    };
    let signed = engine
        .sign(
            "rsa-2048",
            &SignRequest {
                input: &digest,
                options,
                ..SignRequest::default()
            },
        )
        .unwrap();
    assert!(
        engine
            .verify(
                "rsa-2048",
                &VerifyRequest {
                    input: &digest,
                    signature: &signed.signature,
                    options,
                    ..VerifyRequest::default()
                }
            )
            .unwrap()
    );
    let pss_hash = SignatureOptions {
        salt_length: SaltLength::Hash,
        ..SignatureOptions::default()
    };
    let signed = engine
        .sign(
            "rsa-3072",
            &SignRequest {
                input: b"m",
                options: pss_hash,
                ..SignRequest::default()
            },
        )
        .unwrap();
    // Verification with "auto" detects the salt length.
    assert!(
        engine
            .verify(
                "rsa-3072",
                &VerifyRequest {
                    input: b"m",
                    signature: &signed.signature,
                    ..VerifyRequest::default()
                }
            )
            .unwrap()
    );
}

#[test]
fn hmac_works_for_every_type_and_hmac_keys_cannot_encrypt() {
    let engine = engine();
    for key_type in KeyType::ALL {
        let name = key_type.name();
        create(&engine, name, key_type);
        let mac = engine
            .hmac(
                name,
                &HmacRequest {
                    input: b"data",
                    key_version: None,
                    algorithm: HashAlgorithm::Sha3_256,
                },
            )
            .unwrap();
        assert!(
            engine
                .verify_hmac(name, b"data", &mac, HashAlgorithm::Sha3_256)
                .unwrap()
        );
        assert!(
            !engine
                .verify_hmac(name, b"data", &mac, HashAlgorithm::Sha2_256)
                .unwrap()
        );
    }
    let err = engine.encrypt("hmac", &enc(b"x"), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "message encryption not supported for key type hmac"
    );
}

#[test]
fn batches_keep_order_and_report_items_separately() {
    let engine = engine();
    create(&engine, "k", KeyType::Aes256Gcm96);
    let plaintexts: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let items: Vec<EncryptRequest<'_>> = plaintexts.iter().map(|p| enc(p)).collect();
    let encrypted = engine.encrypt_batch("k", &items, None).unwrap();
    let mut ciphertexts: Vec<String> = encrypted
        .into_iter()
        .map(|r| r.unwrap().ciphertext)
        .collect();
    ciphertexts[500] = "vault:v1:garbage".into();
    let decrypt_items: Vec<DecryptRequest<'_>> = ciphertexts.iter().map(|c| dec(c)).collect();
    let decrypted = engine.decrypt_batch("k", &decrypt_items).unwrap();
    for (i, result) in decrypted.iter().enumerate() {
        if i == 500 {
            assert!(result.is_err());
        } else {
            assert_eq!(result.as_ref().unwrap(), &plaintexts[i]);
        }
    }
    assert!(matches!(
        engine.encrypt_batch("k", &[], None),
        Err(EngineError::BatchEmpty)
    ));
    let mixed = [
        EncryptRequest {
            plaintext: b"a",
            context: Some(b"c"),
            ..EncryptRequest::default()
        },
        enc(b"b"),
    ];
    assert!(matches!(
        engine.encrypt_batch("k", &mixed, None),
        Err(EngineError::BatchContextMixed)
    ));
}

#[test]
fn upsert_creates_derived_and_convergent_keys() {
    let engine = engine();
    assert!(matches!(
        engine.encrypt("missing", &enc(b"x"), None),
        Err(EngineError::KeyNotFound { .. })
    ));
    let upsert = UpsertOptions {
        key_type: KeyType::Aes256Gcm96,
        convergent: true,
    };
    let request = EncryptRequest {
        plaintext: b"same",
        context: Some(b"tenant-1"),
        ..EncryptRequest::default()
    };
    let a = engine.encrypt("conv", &request, Some(&upsert)).unwrap();
    let b = engine.encrypt("conv", &request, Some(&upsert)).unwrap();
    assert_eq!(
        a.ciphertext, b.ciphertext,
        "convergent encryption is deterministic"
    );
    let described = engine.read_key("conv", None).unwrap();
    assert!(described.config.derived && described.config.convergent);
    let no_context = engine
        .encrypt("conv2", &enc(b"x"), Some(&upsert))
        .unwrap_err();
    assert_eq!(
        no_context.to_string(),
        "convergent encryption requires derivation to be enabled"
    );
    let ecdsa = UpsertOptions {
        key_type: KeyType::EcdsaP256,
        convergent: false,
    };
    assert!(engine.encrypt("ec", &enc(b"x"), Some(&ecdsa)).is_err());
    engine
        .set_keys_config(cipherd::engine::KeysConfig {
            disable_upsert: true,
        })
        .unwrap();
    let plain = UpsertOptions {
        key_type: KeyType::Aes256Gcm96,
        convergent: false,
    };
    assert!(matches!(
        engine.encrypt("new", &enc(b"x"), Some(&plain)),
        Err(EngineError::KeyNotFound { .. })
    ));
}

#[test]
fn datakeys_open_with_decrypt() {
    let engine = engine();
    create(&engine, "k", KeyType::Aes256Gcm96);
    for bits in [128, 256, 512] {
        let key = engine
            .datakey(
                "k",
                &DatakeyRequest {
                    bits,
                    context: None,
                    associated_data: None,
                    key_version: None,
                },
            )
            .unwrap();
        assert_eq!(key.plaintext.len(), bits as usize / 8);
        let opened = engine
            .decrypt("k", &dec(&key.encrypted.ciphertext))
            .unwrap();
        assert_eq!(opened, key.plaintext.expose_secret());
    }
    let bad = engine.datakey(
        "k",
        &DatakeyRequest {
            bits: 100,
            context: None,
            associated_data: None,
            key_version: None,
        },
    );
    assert!(matches!(bad, Err(EngineError::InvalidBitLength)));
}

#[test]
fn state_survives_reopening_the_store() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let engine = engine_on(storage.clone());
    create(&engine, "k", KeyType::ChaCha20Poly1305);
    create(&engine, "sig", KeyType::EcdsaP384);
    engine.rotate_key("k").unwrap();
    engine
        .update_key_config(
            "k",
            &ConfigUpdate {
                min_decryption_version: Some(2),
                deletion_allowed: Some(true),
                ..ConfigUpdate::default()
            },
        )
        .unwrap();
    let ct = engine
        .encrypt("k", &enc(b"persisted"), None)
        .unwrap()
        .ciphertext;
    let sig = engine
        .sign(
            "sig",
            &SignRequest {
                input: b"m",
                ..SignRequest::default()
            },
        )
        .unwrap()
        .signature;
    assert_eq!(engine.flush_counters().unwrap(), 1);
    assert_eq!(
        engine.flush_counters().unwrap(),
        0,
        "nothing changed since the last flush"
    );
    drop(engine);

    let reopened = engine_on(storage);
    assert_eq!(reopened.list_keys(), vec!["k".to_owned(), "sig".to_owned()]);
    assert_eq!(reopened.decrypt("k", &dec(&ct)).unwrap(), b"persisted");
    assert!(
        reopened
            .verify(
                "sig",
                &VerifyRequest {
                    input: b"m",
                    signature: &sig,
                    ..VerifyRequest::default()
                }
            )
            .unwrap()
    );
    let described = reopened.read_key("k", None).unwrap();
    assert_eq!(described.config.min_decryption_version, 2);
    assert!(described.config.deletion_allowed);
    assert_eq!(
        described.versions.last().unwrap().encryptions,
        1,
        "counters were flushed"
    );
    reopened.delete_key("k").unwrap();
    assert!(reopened.read_key("k", None).is_err());
}

#[test]
fn deletion_needs_permission() {
    let engine = engine();
    create(&engine, "k", KeyType::Aes256Gcm96);
    let err = engine.delete_key("k").unwrap_err();
    assert_eq!(err.to_string(), "deletion is not allowed for this key");
    assert!(engine.read_key("k", None).is_ok());
}

#[test]
fn backup_restores_into_another_engine_for_every_type() {
    let source = engine();
    let target = engine();
    for key_type in KeyType::ALL {
        let name = key_type.name();
        create(&source, name, key_type);
        source.rotate_key(name).unwrap();
        let blob = source.backup_key(name).unwrap();
        let blob = std::str::from_utf8(blob.expose_secret())
            .unwrap()
            .to_owned();
        assert!(
            source
                .read_key(name, None)
                .unwrap()
                .config
                .backup_info
                .is_some()
        );
        let restored_name = format!("copy-{name}");
        target
            .restore_key(&RestoreRequest {
                name: Some(&restored_name),
                backup: &blob,
                force: false,
            })
            .unwrap();
        let again = target.restore_key(&RestoreRequest {
            name: Some(&restored_name),
            backup: &blob,
            force: false,
        });
        assert!(matches!(again, Err(EngineError::KeyExists { .. })));
        target
            .restore_key(&RestoreRequest {
                name: Some(&restored_name),
                backup: &blob,
                force: true,
            })
            .unwrap();
        let hmac = |engine: &Engine, name: &str| {
            engine
                .hmac(
                    name,
                    &HmacRequest {
                        input: b"x",
                        key_version: Some(1),
                        algorithm: HashAlgorithm::Sha2_256,
                    },
                )
                .unwrap()
        };
        assert_eq!(
            hmac(&source, name),
            hmac(&target, &restored_name),
            "{name}: same material after restore"
        );
        assert!(
            target
                .read_key(&restored_name, None)
                .unwrap()
                .config
                .restore_info
                .is_some()
        );
    }
}

#[test]
fn export_every_type() {
    let engine = engine();
    for key_type in KeyType::ALL {
        let name = key_type.name();
        create(&engine, name, key_type);
        let hmac = engine
            .export_key(name, ExportKind::HmacKey, None)
            .unwrap()
            .1;
        assert_eq!(hmac.len(), 1);
        let public = engine.export_key(name, ExportKind::PublicKey, Some("1"));
        let signing = engine.export_key(name, ExportKind::SigningKey, Some("latest"));
        let encryption = engine.export_key(name, ExportKind::EncryptionKey, Some("v1"));
        assert_eq!(
            public.is_ok(),
            key_type.supports_signing(),
            "{name} public-key"
        );
        assert_eq!(
            signing.is_ok(),
            key_type.supports_signing(),
            "{name} signing-key"
        );
        assert_eq!(
            encryption.is_ok(),
            key_type.supports_encryption(),
            "{name} encryption-key"
        );
        if key_type.is_rsa() {
            let pem =
                String::from_utf8(encryption.unwrap().1[0].1.expose_secret().to_vec()).unwrap();
            assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----") && pem.ends_with('\n'));
        }
        if matches!(
            key_type,
            KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::EcdsaP521
        ) {
            let pem = String::from_utf8(signing.unwrap().1[0].1.expose_secret().to_vec()).unwrap();
            assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----") && !pem.ends_with('\n'));
        }
    }
}

/// Builds a BYOK envelope for `target` under the engine's wrapping key, the way
/// a client does (reference §8.8).
fn envelope(engine: &Engine, target: &[u8]) -> Vec<u8> {
    use cipherd::crypto::asymmetric::{AsymmetricAlgorithm, PublicKey};
    let pem = engine.wrapping_key_pem().unwrap();
    let wrapping = PublicKey::from_pem(AsymmetricAlgorithm::Rsa4096, &pem).unwrap();
    let ephemeral = [42u8; 32];
    let mut out = wrapping
        .rsa_encrypt_oaep(HashAlgorithm::Sha2_256, &ephemeral)
        .unwrap();
    out.extend(wrap::aes_kwp_wrap(&ephemeral, target).unwrap());
    out
}

#[test]
fn byok_import_of_symmetric_asymmetric_and_public_keys() {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let engine = engine();
    assert_eq!(
        engine.wrapping_key_pem().unwrap(),
        engine.wrapping_key_pem().unwrap(),
        "stable wrapping key"
    );

    // AES-256: the reference vector opens with the imported key.
    let key: Vec<u8> = (0u8..32).collect();
    let wrapped = envelope(&engine, &key);
    let options = ImportOptions {
        exportable: true,
        ..ImportOptions::default()
    };
    engine
        .import_key(
            "aes",
            &options,
            ImportPayload::Wrapped {
                ciphertext: &wrapped,
                hash: HashAlgorithm::Sha2_256,
            },
        )
        .unwrap();
    let ct = "vault:v1:AAECAwQFBgcICQoLL2e6d6rFtXT/LfMFMBxWQ34jd7mO85YcJxko";
    assert_eq!(engine.decrypt("aes", &dec(ct)).unwrap(), b"hello world");
    let exported = engine
        .export_key("aes", ExportKind::EncryptionKey, None)
        .unwrap()
        .1;
    assert_eq!(
        exported[0].1.expose_secret(),
        STANDARD.encode(&key).as_bytes()
    );
    let again = engine.import_key(
        "aes",
        &options,
        ImportPayload::Wrapped {
            ciphertext: &wrapped,
            hash: HashAlgorithm::Sha2_256,
        },
    );
    assert!(matches!(again, Err(EngineError::KeyExists { .. })));
    // import_version adds version 2.
    let wrapped2 = envelope(&engine, &[9u8; 32]);
    engine
        .import_key_version(
            "aes",
            ImportPayload::Wrapped {
                ciphertext: &wrapped2,
                hash: HashAlgorithm::Sha2_256,
            },
            None,
        )
        .unwrap();
    assert_eq!(engine.read_key("aes", None).unwrap().latest_version, 2);

    // Ed25519 from PKCS#8: the reference public key comes back.
    let seed: [u8; 32] = std::array::from_fn(|i| 0x64 + i as u8);
    let der = ed25519_dalek::SigningKey::from_bytes(&seed)
        .to_pkcs8_der()
        .unwrap();
    let wrapped = envelope(&engine, der.as_bytes());
    let ed_options = ImportOptions {
        key_type: KeyType::Ed25519,
        ..ImportOptions::default()
    };
    engine
        .import_key(
            "ed",
            &ed_options,
            ImportPayload::Wrapped {
                ciphertext: &wrapped,
                hash: HashAlgorithm::Sha2_256,
            },
        )
        .unwrap();
    let described = engine.read_key("ed", None).unwrap();
    assert_eq!(
        described.versions[0].public_key.as_deref(),
        Some("C7w0aldmfDgBIL2cf9flHSxf3+o3zS9b9AWyxr9vLXg=")
    );
    let signed = engine
        .sign(
            "ed",
            &SignRequest {
                input: b"hello world",
                ..SignRequest::default()
            },
        )
        .unwrap();
    assert_eq!(
        signed.signature,
        "vault:v1:FLy0Mj20Be8jBrhXiHRviLVWYSlSEole1k19sqZqIsijLP8OVrNN5ADdOpIk6Q0xWnJpd1gaRf+O1hHsZ1GzBw=="
    );

    // Public-key import: verify works, signing does not.
    create(&engine, "ec", KeyType::EcdsaP256);
    let pem = String::from_utf8(
        engine
            .export_key("ec", ExportKind::PublicKey, Some("1"))
            .unwrap()
            .1[0]
            .1
            .expose_secret()
            .to_vec(),
    )
    .unwrap();
    let pub_options = ImportOptions {
        key_type: KeyType::EcdsaP256,
        ..ImportOptions::default()
    };
    engine
        .import_key("ec-pub", &pub_options, ImportPayload::PublicKey(&pem))
        .unwrap();
    let sig = engine
        .sign(
            "ec",
            &SignRequest {
                input: b"m",
                ..SignRequest::default()
            },
        )
        .unwrap()
        .signature;
    assert!(
        engine
            .verify(
                "ec-pub",
                &VerifyRequest {
                    input: b"m",
                    signature: &sig,
                    ..VerifyRequest::default()
                }
            )
            .unwrap()
    );
    assert!(
        engine
            .sign(
                "ec-pub",
                &SignRequest {
                    input: b"m",
                    ..SignRequest::default()
                }
            )
            .is_err()
    );

    // HMAC key import with the reference HMAC key.
    let hk: Vec<u8> = (0x20u8..0x40).collect();
    let wrapped = envelope(&engine, &hk);
    let hmac_options = ImportOptions {
        key_type: KeyType::Hmac,
        ..ImportOptions::default()
    };
    engine
        .import_key(
            "hm",
            &hmac_options,
            ImportPayload::Wrapped {
                ciphertext: &wrapped,
                hash: HashAlgorithm::Sha2_256,
            },
        )
        .unwrap();
    let mac = engine
        .hmac(
            "hm",
            &HmacRequest {
                input: b"hello world",
                key_version: None,
                algorithm: HashAlgorithm::Sha2_256,
            },
        )
        .unwrap();
    assert_eq!(mac, "vault:v1:ECy4zZWLwvd1Tm4fQAxVkae32Ewui1hkolrtxs5Pl9Y=");

    // Garbage envelopes are refused without creating anything.
    let bad = engine.import_key(
        "bad",
        &options,
        ImportPayload::Wrapped {
            ciphertext: &[1u8; 600],
            hash: HashAlgorithm::Sha2_256,
        },
    );
    assert!(bad.is_err());
    assert!(engine.read_key("bad", None).is_err());
}

#[test]
fn encryption_limit_rotates_the_key() {
    let options = EngineOptions {
        rotate_after_encryptions: Some(3),
        ..EngineOptions::default()
    };
    let engine = Engine::open(Arc::new(MemoryStorage::new()), "t/", options).unwrap();
    create(&engine, "k", KeyType::Aes256Gcm96);
    for _ in 0..3 {
        engine.encrypt("k", &enc(b"x"), None).unwrap();
    }
    assert_eq!(engine.read_key("k", None).unwrap().latest_version, 2);
    assert_eq!(
        engine.encrypt("k", &enc(b"x"), None).unwrap().key_version,
        2
    );
}

#[test]
fn invalid_names_and_missing_keys_are_typed_errors() {
    let engine = engine();
    for name in ["", "a/b", "bad\nname"] {
        assert!(matches!(
            engine.create_key(name, &CreateOptions::default()),
            Err(EngineError::InvalidKeyName)
        ));
    }
    assert!(matches!(
        engine.rotate_key("nope"),
        Err(EngineError::KeyNotFound { .. })
    ));
    assert!(matches!(
        engine.decrypt("nope", &dec("vault:v1:AA==")),
        Err(EngineError::KeyNotFound { .. })
    ));
    let err = engine.create_key(
        "x",
        &CreateOptions {
            key_type: KeyType::Hmac,
            key_size: Some(1000),
            ..CreateOptions::default()
        },
    );
    assert!(matches!(
        err,
        Err(EngineError::Keyring(KeyringError::KeySizeInvalid(_)))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn encrypt_then_decrypt_is_identity(
        plaintext in proptest::collection::vec(any::<u8>(), 0..512),
        aad in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        context in proptest::collection::vec(any::<u8>(), 1..32),
        type_index in 0usize..4,
    ) {
        let key_type = ENCRYPTING[type_index];
        let engine = engine();
        engine.create_key("plain", &CreateOptions { key_type, ..CreateOptions::default() }).unwrap();
        engine.create_key("derived", &CreateOptions { key_type, derived: true, ..CreateOptions::default() }).unwrap();
        let request = EncryptRequest { plaintext: &plaintext, associated_data: aad.as_deref(), ..EncryptRequest::default() };
        let ct = engine.encrypt("plain", &request, None).unwrap();
        let opened = engine.decrypt("plain", &DecryptRequest { ciphertext: &ct.ciphertext, associated_data: aad.as_deref(), ..DecryptRequest::default() }).unwrap();
        prop_assert_eq!(&opened, &plaintext);
        let request = EncryptRequest { context: Some(&context), ..request };
        let ct = engine.encrypt("derived", &request, None).unwrap();
        let opened = engine.decrypt("derived", &DecryptRequest { ciphertext: &ct.ciphertext, context: Some(&context), associated_data: aad.as_deref() }).unwrap();
        prop_assert_eq!(opened, plaintext);
    }

    #[test]
    fn batch_results_follow_input_order(plaintexts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..600)) {
        let engine = engine();
        engine.create_key("k", &CreateOptions::default()).unwrap();
        let items: Vec<EncryptRequest<'_>> = plaintexts.iter().map(|p| enc(p)).collect();
        let cts: Vec<String> = engine.encrypt_batch("k", &items, None).unwrap().into_iter().map(|r| r.unwrap().ciphertext).collect();
        let back: Vec<DecryptRequest<'_>> = cts.iter().map(|c| dec(c)).collect();
        let opened: Vec<Vec<u8>> = engine.decrypt_batch("k", &back).unwrap().into_iter().map(|r| r.unwrap()).collect();
        prop_assert_eq!(opened, plaintexts);
    }
}
