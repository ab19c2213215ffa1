//! Keyring tests: the fixed vectors of reference §8.11 (reproduced there on
//! OpenBao 2.7.2) and Vault's version and error rules.

#![allow(clippy::type_complexity)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::version::{KeyVersion, Material, aead_material};
use super::*;
use crate::crypto::asymmetric::{AsymmetricAlgorithm, PrivateKey, SignatureOptions};
use crate::crypto::{HashAlgorithm, SecretBytes};

const CTX: &[u8] = b"ctx1";
const PLAINTEXT: &[u8] = b"hello world";

fn key32() -> Vec<u8> {
    (0u8..32).collect()
}

fn hmac_key() -> SecretBytes {
    SecretBytes::new((0x20u8..0x40).collect())
}

/// A one-version keyring holding known AEAD material.
fn aead_keyring(key_type: KeyType, key: Vec<u8>, config: KeyConfig) -> Keyring {
    let KeyFamily::Aead(alg) = key_type.family() else {
        panic!("not an AEAD type")
    };
    let material = aead_material(alg, SecretBytes::new(key)).unwrap();
    let version = KeyVersion::from_parts(1, 0, material, hmac_key(), CONVERGENT_VERSION, 0);
    Keyring::from_versions("k", key_type, config, vec![version])
}

fn ed25519_keyring(derived: bool) -> Keyring {
    let seed: [u8; 32] = std::array::from_fn(|i| 0x64 + i as u8);
    let key = PrivateKey::ed25519_from_seed(&seed);
    let version = KeyVersion::from_parts(
        1,
        0,
        Material::Private(key),
        hmac_key(),
        CONVERGENT_VERSION,
        0,
    );
    let config = KeyConfig {
        derived,
        ..KeyConfig::default()
    };
    Keyring::from_versions("ed", KeyType::Ed25519, config, vec![version])
}

fn derived(convergent: bool) -> KeyConfig {
    KeyConfig {
        derived: true,
        convergent,
        ..KeyConfig::default()
    }
}

fn decrypt(
    keyring: &Keyring,
    ciphertext: &str,
    context: Option<&[u8]>,
    aad: Option<&[u8]>,
) -> Result<Vec<u8>, KeyringError> {
    keyring.decrypt(&DecryptRequest {
        ciphertext,
        context,
        associated_data: aad,
    })
}

fn encrypt(keyring: &Keyring, context: Option<&[u8]>, aad: Option<&[u8]>) -> String {
    keyring
        .encrypt(&EncryptRequest {
            plaintext: PLAINTEXT,
            context,
            associated_data: aad,
            key_version: None,
        })
        .unwrap()
        .ciphertext
}

#[test]
fn reference_vectors_decrypt() {
    let plain = KeyConfig::default();
    let cases: [(
        KeyType,
        Vec<u8>,
        KeyConfig,
        &str,
        Option<&[u8]>,
        Option<&[u8]>,
    ); 6] = [
        (
            KeyType::Aes256Gcm96,
            key32(),
            plain.clone(),
            "vault:v1:AAECAwQFBgcICQoLL2e6d6rFtXT/LfMFMBxWQ34jd7mO85YcJxko",
            None,
            None,
        ),
        (
            KeyType::Aes256Gcm96,
            key32(),
            plain.clone(),
            "vault:v1:AAECAwQFBgcICQoLL2e6d6rFtXT/LfODd2GzEuCTJUDgjwvw32UY",
            None,
            Some(b"meta"),
        ),
        (
            KeyType::Aes128Gcm96,
            key32()[..16].to_vec(),
            plain.clone(),
            "vault:v1:AAECAwQFBgcICQoL+wnLogk7gDs5vgVJsIXmMuSKWZm7hCcSNWVt",
            None,
            None,
        ),
        (
            KeyType::ChaCha20Poly1305,
            key32(),
            plain.clone(),
            "vault:v1:AAECAwQFBgcICQoL4Z5kbEY30i/F71sY90qN0T07vOC+PrtQj7lZ",
            None,
            None,
        ),
        (
            KeyType::Aes256Gcm96,
            key32(),
            derived(false),
            "vault:v1:AAECAwQFBgcICQoLntGDXWKE9ophRLGgRdafnBitCq3S84X7W30a",
            Some(CTX),
            None,
        ),
        (
            KeyType::Aes256Gcm96,
            key32(),
            KeyConfig {
                kdf: Kdf::LegacyCounter,
                ..derived(false)
            },
            "vault:v1:AAECAwQFBgcICQoLCBeWs0ypEO7p4n6znvYyNOdcTuh/8B4pIv1U",
            Some(CTX),
            None,
        ),
    ];
    for (key_type, key, config, ciphertext, context, aad) in cases {
        let keyring = aead_keyring(key_type, key, config);
        assert_eq!(
            decrypt(&keyring, ciphertext, context, aad).unwrap(),
            PLAINTEXT,
            "{ciphertext}"
        );
        // Our own ciphertexts of the same input open too.
        let ours = encrypt(&keyring, context, aad);
        assert_eq!(decrypt(&keyring, &ours, context, aad).unwrap(), PLAINTEXT);
    }
    // The AAD vector fails without its AAD, with Vault's message.
    let keyring = aead_keyring(KeyType::Aes256Gcm96, key32(), KeyConfig::default());
    let err = decrypt(
        &keyring,
        "vault:v1:AAECAwQFBgcICQoLL2e6d6rFtXT/LfODd2GzEuCTJUDgjwvw32UY",
        None,
        None,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "cipher: message authentication failed");
}

#[test]
fn reference_vectors_convergent_are_identical() {
    let cases: [(KeyType, Vec<u8>, Option<&[u8]>, &str); 4] = [
        (
            KeyType::Aes256Gcm96,
            key32(),
            None,
            "vault:v1:zBXurTxt0KCKvQQfYjhf8UELa/5GXzBKL6/hr09zOky6I8LGnFyU",
        ),
        (
            KeyType::Aes256Gcm96,
            key32(),
            Some(b"meta"),
            "vault:v1:zBXurTxt0KCKvQQfYjhf8UELa/5GXzDxX+LPse0B2YOlREhCd//W",
        ),
        (
            KeyType::ChaCha20Poly1305,
            key32(),
            None,
            "vault:v1:zBXurTxt0KCKvQQf7gkySMADrt7DRL4mUYWb5JhCLqbhjTt+UrXZ",
        ),
        (
            KeyType::Aes128Gcm96,
            key32()[..16].to_vec(),
            None,
            "vault:v1:YiSwzDTlPv+HvNeyhcGRe2z7ogMasu3vgyLljYuK1BWlO3xJ6sbY",
        ),
    ];
    for (key_type, key, aad, expected) in cases {
        let keyring = aead_keyring(key_type, key, derived(true));
        assert_eq!(encrypt(&keyring, Some(CTX), aad), expected);
        assert_eq!(
            encrypt(&keyring, Some(CTX), aad),
            expected,
            "convergent output is deterministic"
        );
        assert_eq!(
            decrypt(&keyring, expected, Some(CTX), aad).unwrap(),
            PLAINTEXT
        );
    }
}

#[test]
fn reference_vectors_hmac() {
    let keyring = aead_keyring(KeyType::Aes256Gcm96, key32(), KeyConfig::default());
    let hmac = |algorithm| {
        keyring
            .hmac(&HmacRequest {
                input: PLAINTEXT,
                key_version: None,
                algorithm,
            })
            .unwrap()
    };
    assert_eq!(
        hmac(HashAlgorithm::Sha2_256),
        "vault:v1:ECy4zZWLwvd1Tm4fQAxVkae32Ewui1hkolrtxs5Pl9Y="
    );
    assert_eq!(
        hmac(HashAlgorithm::Sha2_512),
        "vault:v1:er66sX3l4bMW5QLN70Ot53IqsqWz5eQ70zHNgPZdKP1+7JzTfIgeLjJmySK7Qv/Z3tp7RG8WpoifKCGk1NIuEg=="
    );
    assert!(
        keyring
            .verify_hmac(
                PLAINTEXT,
                &hmac(HashAlgorithm::Sha2_256),
                HashAlgorithm::Sha2_256
            )
            .unwrap()
    );
    assert!(
        !keyring
            .verify_hmac(
                PLAINTEXT,
                &hmac(HashAlgorithm::Sha2_256),
                HashAlgorithm::Sha2_512
            )
            .unwrap()
    );
    assert!(
        !keyring
            .verify_hmac(
                b"other",
                &hmac(HashAlgorithm::Sha2_256),
                HashAlgorithm::Sha2_256
            )
            .unwrap()
    );
}

#[test]
fn reference_vectors_ed25519() {
    let keyring = ed25519_keyring(false);
    let signed = keyring
        .sign(&SignRequest {
            input: PLAINTEXT,
            ..SignRequest::default()
        })
        .unwrap();
    assert_eq!(
        signed.signature,
        "vault:v1:FLy0Mj20Be8jBrhXiHRviLVWYSlSEole1k19sqZqIsijLP8OVrNN5ADdOpIk6Q0xWnJpd1gaRf+O1hHsZ1GzBw=="
    );
    let description = keyring.describe(None).unwrap();
    assert_eq!(
        description.versions[0].public_key.as_deref(),
        Some("C7w0aldmfDgBIL2cf9flHSxf3+o3zS9b9AWyxr9vLXg=")
    );
    let exported = keyring.clone().config.exportable;
    assert!(!exported);

    let derived = ed25519_keyring(true);
    let signed = derived
        .sign(&SignRequest {
            input: PLAINTEXT,
            context: Some(CTX),
            ..SignRequest::default()
        })
        .unwrap();
    assert_eq!(
        signed.signature,
        "vault:v1:PPjXSil44SkklR0JdsdbbxM7YBeT9uVHCdlaW/f4CXg4HcBhDiFoTwSY3d+kkwOtbTqT4RHAAfRscq3B5JHnBQ=="
    );
    assert_eq!(
        signed.public_key.as_deref(),
        Some("eo2l0DigDRZ+MIu6eVJnsFqPXew5X/oDXqV4tTT0X1c=")
    );
    let description = derived.describe(Some(CTX)).unwrap();
    assert_eq!(
        description.versions[0].public_key.as_deref(),
        Some("eo2l0DigDRZ+MIu6eVJnsFqPXew5X/oDXqV4tTT0X1c=")
    );
    assert_eq!(
        derived.describe(None).unwrap().versions[0]
            .public_key
            .as_deref(),
        Some("")
    );
    let verify = |context| {
        derived.verify(&VerifyRequest {
            input: PLAINTEXT,
            signature: &signed.signature,
            context,
            options: SignatureOptions::default(),
        })
    };
    assert!(verify(Some(CTX)).unwrap());
    assert!(!verify(Some(b"ctx2")).unwrap());
    assert_eq!(verify(None).unwrap_err(), KeyringError::MissingContext);
}

#[test]
fn ciphertext_errors_use_vaults_messages() {
    let keyring = aead_keyring(KeyType::Aes256Gcm96, key32(), KeyConfig::default());
    let message = |ct: &str| decrypt(&keyring, ct, None, None).unwrap_err().to_string();
    assert_eq!(message("nope"), "invalid ciphertext: no prefix");
    assert_eq!(
        message("vault:v1"),
        "invalid ciphertext: wrong number of fields"
    );
    assert_eq!(
        message("vault:vx:AAAA"),
        "invalid ciphertext: version number could not be decoded"
    );
    assert_eq!(
        message("vault:v2:AAAA"),
        "invalid ciphertext: version is too new"
    );
    assert_eq!(
        message("vault:v1:@@"),
        "invalid ciphertext: could not decode base64"
    );
    assert_eq!(message("vault:v1:AAAA"), "invalid ciphertext length");
    // v0 and v01 are version 1 (reference §8.1).
    let good = "vault:v1:AAECAwQFBgcICQoLL2e6d6rFtXT/LfMFMBxWQ34jd7mO85YcJxko";
    assert_eq!(
        decrypt(&keyring, &good.replace("v1:", "v0:"), None, None).unwrap(),
        PLAINTEXT
    );
    assert_eq!(
        decrypt(&keyring, &good.replace("v1:", "v01:"), None, None).unwrap(),
        PLAINTEXT
    );
}

#[test]
fn derived_keys_need_a_context() {
    let keyring = aead_keyring(KeyType::Aes256Gcm96, key32(), derived(false));
    let err = keyring
        .encrypt(&EncryptRequest {
            plaintext: PLAINTEXT,
            ..EncryptRequest::default()
        })
        .unwrap_err();
    assert_eq!(err, KeyringError::MissingContext);
    assert!(
        err.to_string()
            .starts_with("missing 'context' for key derivation")
    );
    let ct = encrypt(&keyring, Some(CTX), None);
    assert_eq!(
        decrypt(&keyring, &ct, Some(b"ctx2"), None).unwrap_err(),
        KeyringError::AuthenticationFailed
    );
}

#[test]
fn versions_rotation_and_min_versions() {
    let keyring = Keyring::create("k", &CreateOptions::default()).unwrap();
    let v1 = encrypt(&keyring, None, None);
    let keyring = keyring.rotate().unwrap().rotate().unwrap();
    assert_eq!(keyring.latest_version(), 3);
    let v3 = encrypt(&keyring, None, None);
    assert!(v3.starts_with("vault:v3:"));
    assert_eq!(decrypt(&keyring, &v1, None, None).unwrap(), PLAINTEXT);

    // Encrypt under an explicit older version.
    let old = keyring
        .encrypt(&EncryptRequest {
            plaintext: PLAINTEXT,
            key_version: Some(2),
            ..EncryptRequest::default()
        })
        .unwrap();
    assert_eq!(old.key_version, 2);
    let too_high = keyring.encrypt(&EncryptRequest {
        plaintext: PLAINTEXT,
        key_version: Some(4),
        ..EncryptRequest::default()
    });
    assert_eq!(
        too_high.unwrap_err().to_string(),
        "requested version for encryption is higher than the latest key version"
    );

    let (keyring, warnings) = keyring
        .update_config(&ConfigUpdate {
            min_decryption_version: Some(2),
            min_encryption_version: Some(3),
            ..ConfigUpdate::default()
        })
        .unwrap();
    assert!(warnings.is_empty());
    assert_eq!(
        decrypt(&keyring, &v1, None, None).unwrap_err().to_string(),
        "ciphertext or signature version is disallowed by policy (too old)"
    );
    let low = keyring.encrypt(&EncryptRequest {
        plaintext: PLAINTEXT,
        key_version: Some(2),
        ..EncryptRequest::default()
    });
    assert_eq!(
        low.unwrap_err().to_string(),
        "requested version for encryption is less than the minimum encryption key version"
    );
    assert_eq!(
        keyring.describe(None).unwrap().versions.len(),
        2,
        "read shows versions >= min_decryption_version"
    );

    // Trim destroys version 1 for good; lowering min_decryption below it is refused.
    let trimmed = keyring.trim(2).unwrap();
    assert!(trimmed.version(1).is_none());
    assert_eq!(trimmed.config().min_available_version, 2);
    let err = trimmed
        .update_config(&ConfigUpdate {
            min_decryption_version: Some(1),
            ..ConfigUpdate::default()
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "min decryption version should not be less then min available version"
    );
    assert_eq!(
        trimmed.trim(1).unwrap_err().to_string(),
        "minimum available version cannot be decremented"
    );
    assert_eq!(
        keyring.trim(3).unwrap_err().to_string(),
        "minimum available version cannot be greater than minimum decryption version"
    );
}

#[test]
fn config_rules() {
    let keyring = Keyring::create("k", &CreateOptions::default()).unwrap();
    let update = |u: ConfigUpdate| keyring.update_config(&u).map_err(|e| e.to_string());
    assert_eq!(
        update(ConfigUpdate {
            min_decryption_version: Some(-1),
            ..ConfigUpdate::default()
        })
        .unwrap_err(),
        "min decryption version cannot be negative"
    );
    assert_eq!(
        update(ConfigUpdate {
            min_decryption_version: Some(5),
            ..ConfigUpdate::default()
        })
        .unwrap_err(),
        "cannot set min decryption version of 5, latest key version is 1"
    );
    let (_, warnings) = update(ConfigUpdate {
        min_decryption_version: Some(0),
        ..ConfigUpdate::default()
    })
    .unwrap();
    assert_eq!(warnings.len(), 1);
    assert_eq!(
        update(ConfigUpdate {
            auto_rotate_period_secs: Some(600),
            ..ConfigUpdate::default()
        })
        .unwrap_err(),
        "auto rotate period must be 0 to disable or at least an hour"
    );
    let (exportable, _) = update(ConfigUpdate {
        exportable: Some(true),
        ..ConfigUpdate::default()
    })
    .unwrap();
    let (still, _) = exportable
        .update_config(&ConfigUpdate {
            exportable: Some(false),
            ..ConfigUpdate::default()
        })
        .unwrap();
    assert!(still.config().exportable, "exportable is a one-way switch");
}

#[test]
fn create_option_rules() {
    let create = |options: CreateOptions| Keyring::create("k", &options).map_err(|e| e.to_string());
    assert_eq!(
        create(CreateOptions {
            convergent: true,
            ..CreateOptions::default()
        })
        .unwrap_err(),
        "convergent encryption requires derivation to be enabled"
    );
    assert_eq!(
        create(CreateOptions {
            key_type: KeyType::EcdsaP256,
            derived: true,
            ..CreateOptions::default()
        })
        .unwrap_err(),
        "key derivation and convergent encryption not supported for keys of type ecdsa-p256"
    );
    assert_eq!(
        create(CreateOptions {
            key_type: KeyType::Ed25519,
            derived: true,
            convergent: true,
            ..CreateOptions::default()
        })
        .unwrap_err(),
        "convergent encryption not supported for keys of type ed25519"
    );
    assert_eq!(
        create(CreateOptions {
            key_size: Some(64),
            ..CreateOptions::default()
        })
        .unwrap_err(),
        "key_size is not valid for algorithm aes256-gcm96"
    );
    assert_eq!(
        create(CreateOptions {
            key_type: KeyType::Hmac,
            key_size: Some(16),
            ..CreateOptions::default()
        })
        .unwrap_err(),
        "invalid key_size 16"
    );
    let hmac = Keyring::create(
        "h",
        &CreateOptions {
            key_type: KeyType::Hmac,
            ..CreateOptions::default()
        },
    )
    .unwrap();
    assert_eq!(hmac.config().key_size, 32, "hmac keys default to 32 bytes");
}

#[test]
fn storage_record_and_backup_round_trip() {
    let keyring = aead_keyring(
        KeyType::Aes256Gcm96,
        key32(),
        KeyConfig {
            exportable: true,
            allow_plaintext_backup: true,
            ..KeyConfig::default()
        },
    );
    let ct = encrypt(&keyring, None, None);
    let restored = Keyring::from_bytes(keyring.to_bytes().expose_secret()).unwrap();
    assert_eq!(decrypt(&restored, &ct, None, None).unwrap(), PLAINTEXT);
    assert_eq!(
        restored.version(1).unwrap().encryptions(),
        1,
        "counters persist"
    );

    let blob = keyring.backup().unwrap();
    let blob = std::str::from_utf8(blob.expose_secret())
        .unwrap()
        .to_owned();
    let restored = Keyring::restore(&blob).unwrap();
    assert_eq!(decrypt(&restored, &ct, None, None).unwrap(), PLAINTEXT);

    // A flipped byte or a truncation is detected.
    let mut raw = STANDARD.decode(&blob).unwrap();
    raw[20] ^= 1;
    assert!(Keyring::restore(&STANDARD.encode(&raw)).is_err());
    assert!(Keyring::restore(&blob[..blob.len() - 8]).is_err());

    let locked = Keyring::create("k", &CreateOptions::default()).unwrap();
    assert_eq!(
        locked.backup().unwrap_err().to_string(),
        "exporting is disallowed on the policy"
    );
}

#[test]
fn export_encodings_follow_reference() {
    let keyring = aead_keyring(
        KeyType::Aes256Gcm96,
        key32(),
        KeyConfig {
            exportable: true,
            ..KeyConfig::default()
        },
    );
    let exported = keyring.export(ExportKind::EncryptionKey, None).unwrap();
    assert_eq!(
        exported[0].1.expose_secret(),
        STANDARD.encode(key32()).as_bytes()
    );
    let hmac = keyring.export(ExportKind::HmacKey, Some("latest")).unwrap();
    assert_eq!(
        hmac[0].1.expose_secret(),
        STANDARD
            .encode((0x20u8..0x40).collect::<Vec<_>>())
            .as_bytes()
    );
    let err = |k: ExportKind, v: Option<&str>| keyring.export(k, v).unwrap_err().to_string();
    assert_eq!(
        err(ExportKind::SigningKey, None),
        "signing not supported for the key"
    );
    assert_eq!(
        err(ExportKind::EncryptionKey, Some("x")),
        "invalid key version"
    );
    assert_eq!(
        err(ExportKind::EncryptionKey, Some("v9")),
        "version does not exist or cannot be found"
    );
    assert_eq!(
        err(ExportKind::PublicKey, None),
        "unknown key type aes256-gcm96 for export type public-key"
    );

    let ed = ed25519_keyring(false);
    assert_eq!(
        ed.export(ExportKind::SigningKey, None)
            .unwrap_err()
            .to_string(),
        "private key material is not exportable"
    );
    let public = ed.export(ExportKind::PublicKey, Some("1")).unwrap();
    assert_eq!(
        public[0].1.expose_secret(),
        b"C7w0aldmfDgBIL2cf9flHSxf3+o3zS9b9AWyxr9vLXg="
    );
}

#[test]
fn byok_import_round_trip() {
    // The envelope format fixes the wrapping key at RSA-4096 (a 512-byte OAEP block).
    let wrapping = PrivateKey::generate(AsymmetricAlgorithm::Rsa4096).unwrap();
    assert_eq!(WRAPPED_EPHEMERAL_LEN, 512);
    let ephemeral = [7u8; 32];
    let mut envelope = wrapping
        .public_key()
        .rsa_encrypt_oaep(HashAlgorithm::Sha2_256, &ephemeral)
        .unwrap();
    envelope.extend(crate::crypto::wrap::aes_kwp_wrap(&ephemeral, &key32()).unwrap());
    let unwrapped = unwrap_byok(&wrapping, HashAlgorithm::Sha2_256, &envelope).unwrap();
    let imported = Keyring::import(
        "i",
        &ImportOptions::default(),
        ImportedMaterial::Secret(unwrapped),
    )
    .unwrap();
    assert!(imported.config().imported);
    assert_eq!(
        decrypt(
            &imported,
            "vault:v1:AAECAwQFBgcICQoLL2e6d6rFtXT/LfMFMBxWQ34jd7mO85YcJxko",
            None,
            None
        )
        .unwrap(),
        PLAINTEXT
    );
    assert_eq!(
        imported.rotate().unwrap_err().to_string(),
        "imported key i does not allow rotation within Vault"
    );
    assert!(
        unwrap_byok(&wrapping, HashAlgorithm::Sha1, &envelope).is_err(),
        "wrong OAEP hash"
    );
    assert!(
        unwrap_byok(&wrapping, HashAlgorithm::Sha2_256, &envelope[..100]).is_err(),
        "too short"
    );
    let bad_len = Keyring::import(
        "j",
        &ImportOptions::default(),
        ImportedMaterial::Secret(SecretBytes::new(vec![1u8; 20])),
    );
    assert_eq!(
        bad_len.unwrap_err().to_string(),
        "error importing key: invalid key size 20 bytes for key type aes256-gcm96"
    );
}
