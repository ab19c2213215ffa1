//! The barrier: path binding, tamper detection, rotation, sealed behaviour, and
//! what the raw store contains.

use std::sync::Arc;

use cipherd::crypto::SecretBytes;
use cipherd::seal::{SealError, SealManager, shamir};
use cipherd::storage::{MemoryStorage, RedbStorage, Storage, StorageError};

/// Backend path of a barrier entry (the barrier's namespace is `data/`).
fn raw_path(path: &str) -> String {
    format!("data/{path}")
}

/// A manager over `backend`, initialized with one share (= the master key) and
/// unsealed. Returns the master key too.
fn unsealed(backend: Arc<dyn Storage>) -> (SealManager, SecretBytes) {
    let manager = SealManager::new(backend).expect("manager");
    let mut init = manager.init(1, 1).expect("init");
    let master = init.shares.remove(0);
    manager.unseal(master.expose_secret()).expect("unseal");
    (manager, master)
}

fn assert_corrupt(result: Result<Option<Vec<u8>>, StorageError>, path: &str) {
    match result {
        Err(StorageError::Corrupt { path: named }) => {
            assert_eq!(named, path);
            let message = StorageError::Corrupt { path: named }.to_string();
            assert!(message.contains(path), "{message}");
        }
        other => panic!("expected Corrupt for {path}, got {other:?}"),
    }
}

#[test]
fn entry_moved_to_another_path_fails_naming_that_path() {
    let backend = Arc::new(MemoryStorage::new());
    let (manager, _) = unsealed(backend.clone());
    let barrier = manager.barrier();
    barrier.put("keys/a", b"secret a").expect("put");
    barrier.put("keys/b", b"secret b").expect("put");
    let raw_a = backend
        .get(&raw_path("keys/a"))
        .expect("get")
        .expect("present");
    backend
        .put(&raw_path("keys/b"), &raw_a)
        .expect("swap in a's ciphertext");
    assert_corrupt(barrier.get("keys/b"), "keys/b");
    // The original is untouched.
    assert_eq!(
        barrier.get("keys/a").expect("get").as_deref(),
        Some(&b"secret a"[..])
    );
}

#[test]
fn tampered_or_truncated_entries_fail_naming_the_path() {
    let backend = Arc::new(MemoryStorage::new());
    let (manager, _) = unsealed(backend.clone());
    let barrier = manager.barrier();
    barrier.put("p", b"some plaintext value").expect("put");
    let raw = backend.get(&raw_path("p")).expect("get").expect("present");

    // Every single-byte flip, anywhere (header, nonce, ciphertext, tag), is caught.
    for i in 0..raw.len() {
        let mut tampered = raw.clone();
        tampered[i] ^= 0x01;
        backend.put(&raw_path("p"), &tampered).expect("put raw");
        assert_corrupt(barrier.get("p"), "p");
    }
    for len in [0, 1, 5, 17, raw.len() - 1] {
        backend.put(&raw_path("p"), &raw[..len]).expect("put raw");
        assert_corrupt(barrier.get("p"), "p");
    }
    // Compare-and-set reads through the barrier too: a corrupt current value is an
    // error, not a mismatch.
    let err = barrier
        .compare_and_set("p", Some(b"x"), Some(b"y"))
        .expect_err("corrupt current value");
    assert!(
        matches!(err, StorageError::Corrupt { ref path } if path == "p"),
        "{err}"
    );
    // Restored, it opens again.
    backend.put(&raw_path("p"), &raw).expect("restore");
    assert_eq!(
        barrier.get("p").expect("get").as_deref(),
        Some(&b"some plaintext value"[..])
    );
}

#[test]
fn rotation_keeps_old_entries_and_writes_under_the_new_term() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend: Arc<dyn Storage> = Arc::new(RedbStorage::open(dir.path()).expect("open"));
    let (manager, master) = unsealed(backend.clone());
    let barrier = manager.barrier();
    let term_of = |path: &str| {
        let raw = backend.get(&raw_path(path)).expect("get").expect("present");
        u32::from_be_bytes(raw[1..5].try_into().expect("header"))
    };

    barrier.put("old", b"written under term 1").expect("put");
    assert_eq!(term_of("old"), 1);
    assert_eq!(manager.status().key.expect("unsealed").term, 1);

    assert_eq!(manager.rotate().expect("rotate"), 2);
    assert_eq!(manager.status().key.expect("unsealed").term, 2);
    barrier.put("new", b"written under term 2").expect("put");
    assert_eq!(term_of("new"), 2);
    assert_eq!(term_of("old"), 1, "old entries are not re-encrypted");
    assert_eq!(manager.rotate().expect("rotate"), 3);

    // Both still open, also after sealing, reopening the database and unsealing.
    manager.seal().expect("seal");
    drop((manager, barrier, backend));
    let backend: Arc<dyn Storage> = Arc::new(RedbStorage::open(dir.path()).expect("reopen"));
    let manager = SealManager::new(backend).expect("manager");
    assert!(manager.status().sealed);
    manager.unseal(master.expose_secret()).expect("unseal");
    assert_eq!(manager.status().key.expect("unsealed").term, 3);
    let barrier = manager.barrier();
    assert_eq!(
        barrier.get("old").expect("get").as_deref(),
        Some(&b"written under term 1"[..])
    );
    assert_eq!(
        barrier.get("new").expect("get").as_deref(),
        Some(&b"written under term 2"[..])
    );
}

#[test]
fn a_rotation_by_another_node_is_picked_up() {
    let backend = Arc::new(MemoryStorage::new());
    let (node_a, master) = unsealed(backend.clone());
    let node_b = SealManager::new(backend.clone()).expect("second node");
    node_b.unseal(master.expose_secret()).expect("unseal b");

    assert_eq!(node_a.rotate().expect("rotate a"), 2);
    node_a.barrier().put("x", b"from a, term 2").expect("put");
    // Node b has only term 1 in memory; it reloads the keyring on the unknown term.
    assert_eq!(
        node_b.barrier().get("x").expect("get").as_deref(),
        Some(&b"from a, term 2"[..])
    );
    // Node b rotates from the stored keyring, so term 2 is not lost.
    assert_eq!(node_b.rotate().expect("rotate b"), 3);
    node_b.barrier().put("y", b"from b, term 3").expect("put");
    assert_eq!(
        node_a.barrier().get("y").expect("get").as_deref(),
        Some(&b"from b, term 3"[..])
    );
    assert_eq!(
        node_a.barrier().get("x").expect("get").as_deref(),
        Some(&b"from a, term 2"[..])
    );

    // A term nobody has is corruption, named by path.
    let mut raw = backend.get(&raw_path("x")).expect("get").expect("present");
    raw[1..5].copy_from_slice(&99u32.to_be_bytes());
    backend.put(&raw_path("x"), &raw).expect("put raw");
    assert_corrupt(node_a.barrier().get("x"), "x");
}

#[test]
fn sealed_barrier_refuses_everything() {
    let backend = Arc::new(MemoryStorage::new());
    let manager = SealManager::new(backend.clone()).expect("manager");
    let barrier = manager.barrier();
    let check = |barrier: &dyn Storage| {
        assert!(matches!(barrier.get("a"), Err(StorageError::Sealed)));
        assert!(matches!(barrier.put("a", b"v"), Err(StorageError::Sealed)));
        assert!(matches!(barrier.delete("a"), Err(StorageError::Sealed)));
        assert!(matches!(barrier.list(""), Err(StorageError::Sealed)));
        assert!(matches!(
            barrier.compare_and_set("a", None, Some(b"v")),
            Err(StorageError::Sealed)
        ));
    };
    // Not initialized.
    check(&*barrier);
    assert!(matches!(manager.rotate(), Err(SealError::Sealed)));

    let init = manager.init(1, 1).expect("init");
    // Initialized, still sealed.
    check(&*barrier);
    manager
        .unseal(init.shares[0].expose_secret())
        .expect("unseal");
    barrier.put("a", b"v").expect("put while unsealed");
    manager.seal().expect("seal");
    // The same Arc answers Sealed again, and the stored entry is untouched.
    check(&*barrier);
    assert!(backend.get(&raw_path("a")).expect("raw").is_some());
    assert_eq!(StorageError::Sealed.to_string(), "Vault is sealed");
}

#[test]
fn barrier_users_cannot_reach_the_seal_record() {
    let backend = Arc::new(MemoryStorage::new());
    let (manager, _) = unsealed(backend.clone());
    let barrier = manager.barrier();
    assert!(barrier.list("").expect("list").is_empty());
    assert_eq!(barrier.get("core/seal").expect("get"), None);
    barrier.put("core/seal", b"not the real one").expect("put");
    // The seal record is elsewhere; sealing and unsealing still work.
    assert_eq!(backend.list("").expect("raw list"), ["core/", "data/"]);
    manager.seal().expect("seal");
    let status = manager.unseal_with_master_key(&[0u8; 32]);
    assert!(matches!(status, Err(SealError::WrongShares)));
}

/// The data directory is useless without the shares: after writing a known secret
/// through the barrier, the raw redb file contains neither that plaintext, nor the
/// master key, nor any share.
#[test]
fn raw_database_file_holds_no_plaintext_and_no_key_material() {
    const PLAINTEXT: &[u8] = b"the quick brown fox: a known secret value 0123456789";
    let dir = tempfile::tempdir().expect("tempdir");
    let shares;
    let file;
    {
        let store = Arc::new(RedbStorage::open(dir.path()).expect("open"));
        file = store.file_path().to_owned();
        let manager = SealManager::new(store).expect("manager");
        shares = manager.init(5, 3).expect("init").shares;
        for share in &shares[..3] {
            manager.unseal(share.expose_secret()).expect("unseal");
        }
        let barrier = manager.barrier();
        barrier
            .put("transit/keys/customer", PLAINTEXT)
            .expect("put");
        barrier.put("transit/keys/other", PLAINTEXT).expect("put");
        manager.rotate().expect("rotate");
        barrier.put("transit/keys/third", PLAINTEXT).expect("put");
        assert!(
            barrier
                .compare_and_set("transit/keys/customer", Some(PLAINTEXT), Some(PLAINTEXT))
                .expect("cas")
        );
        manager.seal().expect("seal");
    }
    let master = shamir::combine(&shares[1..4]).expect("combine");
    let raw = std::fs::read(&file).expect("read the database file");
    let contains = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(PLAINTEXT), "plaintext found in the raw store");
    assert!(
        !contains(&PLAINTEXT[..16]),
        "a plaintext fragment found in the raw store"
    );
    assert!(
        !contains(master.expose_secret()),
        "master key found in the raw store"
    );
    assert!(
        !contains(&master.expose_secret()[..16]),
        "master key fragment found"
    );
    for share in &shares {
        assert!(
            !contains(&share.expose_secret()[..16]),
            "an unseal share found in the raw store"
        );
    }
    // And the entries are there (so the scan looked at the right file).
    assert!(contains(b"data/transit/keys/customer"));
}
