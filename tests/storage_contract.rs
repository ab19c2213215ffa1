//! The `Storage` contract, run against every implementation: `MemoryStorage`,
//! `RedbStorage`, and the barrier over each. Also redb persistence and a
//! compare-and-set race.

use std::sync::Arc;

use cipherd::seal::SealManager;
use cipherd::storage::{MemoryStorage, RedbStorage, Storage, StorageError};

/// One function, every backend: get / put / delete / list / compare_and_set.
fn contract(store: &dyn Storage) {
    // Empty store.
    assert_eq!(store.get("a").expect("get"), None);
    assert!(store.list("").expect("list").is_empty());
    store
        .delete("missing")
        .expect("deleting a missing path is ok");

    // Put, overwrite, empty and binary values.
    store.put("a", b"1").expect("put");
    assert_eq!(store.get("a").expect("get").as_deref(), Some(&b"1"[..]));
    store.put("a", b"22").expect("overwrite");
    assert_eq!(store.get("a").expect("get").as_deref(), Some(&b"22"[..]));
    store.put("empty", b"").expect("put empty");
    assert_eq!(store.get("empty").expect("get").as_deref(), Some(&b""[..]));
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    store.put("bin", &binary).expect("put binary");
    assert_eq!(store.get("bin").expect("get").as_deref(), Some(&binary[..]));

    // Nested listing: leaves, "dir/" once per directory, sorted.
    for path in [
        "dir/x",
        "dir/sub/y",
        "dir/sub/z",
        "dir2/w",
        "dir.txt",
        "dir/sub/deeper/q",
    ] {
        store.put(path, path.as_bytes()).expect("put nested");
    }
    assert_eq!(
        store.list("").expect("list root"),
        ["a", "bin", "dir.txt", "dir/", "dir2/", "empty"]
    );
    assert_eq!(store.list("dir/").expect("list dir"), ["sub/", "x"]);
    assert_eq!(
        store.list("dir/sub/").expect("list sub"),
        ["deeper/", "y", "z"]
    );
    assert!(store.list("nothing/").expect("list missing").is_empty());
    assert_eq!(
        store.get("dir/sub/y").expect("get").as_deref(),
        Some(&b"dir/sub/y"[..])
    );
    assert_eq!(
        store.get("dir/sub").expect("a directory is not a value"),
        None
    );

    // Invalid paths and prefixes are refused, naming the path.
    assert!(matches!(
        store.list("dir"),
        Err(StorageError::InvalidPath { .. })
    ));
    assert!(matches!(
        store.get(""),
        Err(StorageError::InvalidPath { .. })
    ));
    let err = store.put("x/", b"v").expect_err("trailing slash");
    assert!(err.to_string().contains("\"x/\""), "{err}");

    // Delete, and directories vanish with their last entry.
    store.delete("dir/sub/y").expect("delete");
    assert_eq!(store.get("dir/sub/y").expect("get"), None);
    store.delete("dir/sub/z").expect("delete");
    store.delete("dir/sub/deeper/q").expect("delete");
    assert_eq!(store.list("dir/").expect("list"), ["x"]);
    store.delete("dir/sub/z").expect("delete twice");

    // Compare-and-set.
    assert!(
        store
            .compare_and_set("c", None, Some(b"1"))
            .expect("create")
    );
    assert_eq!(store.get("c").expect("get").as_deref(), Some(&b"1"[..]));
    assert!(
        !store
            .compare_and_set("c", None, Some(b"2"))
            .expect("exists")
    );
    assert!(
        !store
            .compare_and_set("c", Some(b"x"), Some(b"2"))
            .expect("mismatch")
    );
    assert_eq!(store.get("c").expect("get").as_deref(), Some(&b"1"[..]));
    assert!(
        store
            .compare_and_set("c", Some(b"1"), Some(b"2"))
            .expect("swap")
    );
    assert_eq!(store.get("c").expect("get").as_deref(), Some(&b"2"[..]));
    assert!(
        store
            .compare_and_set("c", Some(b"2"), None)
            .expect("delete")
    );
    assert_eq!(store.get("c").expect("get"), None);
    assert!(
        !store
            .compare_and_set("c", Some(b"2"), None)
            .expect("already gone")
    );
    assert!(
        store
            .compare_and_set("c", None, None)
            .expect("absent stays absent")
    );
    assert_eq!(store.get("c").expect("get"), None);
    // Absent is not the same as empty.
    assert!(
        !store
            .compare_and_set("c", Some(b""), Some(b"3"))
            .expect("absent != empty")
    );
    assert!(
        !store
            .compare_and_set("empty", None, Some(b"3"))
            .expect("empty != absent")
    );
    assert!(
        store
            .compare_and_set("empty", Some(b""), Some(b"3"))
            .expect("empty")
    );
    assert!(matches!(
        store.compare_and_set("", None, Some(b"v")),
        Err(StorageError::InvalidPath { .. })
    ));
}

/// Several threads increment one counter with compare-and-set loops; no update is lost.
fn cas_race(store: Arc<dyn Storage>) {
    const THREADS: u32 = 4;
    const INCREMENTS: u32 = 10;
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                for _ in 0..INCREMENTS {
                    loop {
                        let current = store.get("counter").expect("get");
                        let n = current
                            .as_deref()
                            .map_or(0, |b| u32::from_be_bytes(b.try_into().expect("4 bytes")));
                        let next = (n + 1).to_be_bytes();
                        if store
                            .compare_and_set("counter", current.as_deref(), Some(&next))
                            .expect("cas")
                        {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("thread");
    }
    let total = store.get("counter").expect("get").expect("present");
    assert_eq!(
        u32::from_be_bytes(total[..].try_into().expect("4 bytes")),
        THREADS * INCREMENTS
    );
}

/// A barrier over `backend`, initialized with one share and unseale.
fn unsealed_barrier(backend: Arc<dyn Storage>) -> (SealManager, Arc<dyn Storage>) {
    let manager = SealManager::new(backend).expect("manager");
    let init = manager.init(1, 1).expect("init");
    manager
        .unseal(init.shares[0].expose_secret())
        .expect("unseal");
    let barrier: Arc<dyn Storage> = manager.barrier();
    (manager, barrier)
}

#[test]
fn memory_storage_meets_the_contract() {
    contract(&MemoryStorage::new());
    cas_race(Arc::new(MemoryStorage::new()));
}

#[test]
fn redb_storage_meets_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    contract(&RedbStorage::open(dir.path()).expect("open"));
    let dir = tempfile::tempdir().expect("tempdir");
    cas_race(Arc::new(RedbStorage::open(dir.path()).expect("open")));
}

#[test]
fn barrier_over_memory_meets_the_contract() {
    let (_manager, barrier) = unsealed_barrier(Arc::new(MemoryStorage::new()));
    contract(&*barrier);
    cas_race(barrier);
}

#[test]
fn barrier_over_redb_meets_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_manager, barrier) =
        unsealed_barrier(Arc::new(RedbStorage::open(dir.path()).expect("open")));
    contract(&*barrier);
    cas_race(barrier);
}

#[test]
fn redb_persists_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = RedbStorage::open(dir.path()).expect("open");
        store.put("keys/a", b"alpha").expect("put");
        store.put("keys/b", b"beta").expect("put");
        assert!(
            store
                .compare_and_set("keys/c", None, Some(b"gamma"))
                .expect("cas")
        );
        store.delete("keys/b").expect("delete");
    }
    let store = RedbStorage::open(dir.path()).expect("reopen");
    assert_eq!(
        store.get("keys/a").expect("get").as_deref(),
        Some(&b"alpha"[..])
    );
    assert_eq!(store.get("keys/b").expect("get"), None);
    assert_eq!(
        store.get("keys/c").expect("get").as_deref(),
        Some(&b"gamma"[..])
    );
    assert_eq!(store.list("keys/").expect("list"), ["a", "c"]);
    assert!(store.file_path().starts_with(dir.path()));
}

#[test]
fn redb_creates_the_directory_and_refuses_a_second_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nested = dir.path().join("a/b");
    let first = RedbStorage::open(&nested).expect("open creates the directory");
    let second = RedbStorage::open(&nested).expect_err("already open");
    assert!(matches!(second, StorageError::Backend { .. }), "{second}");
    drop(first);
    RedbStorage::open(&nested).expect("open again after close");
}

#[test]
fn redb_reports_a_damaged_file_instead_of_trusting_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = {
        let store = RedbStorage::open(dir.path()).expect("open");
        store.put("a", &[7u8; 4096]).expect("put");
        store.file_path().to_owned()
    };
    let mut bytes = std::fs::read(&file).expect("read");
    // Scribble over everything after the header region.
    let len = bytes.len();
    for byte in &mut bytes[len / 2..] {
        *byte ^= 0x5a;
    }
    std::fs::write(&file, &bytes).expect("write");
    match RedbStorage::open(dir.path()) {
        Err(StorageError::Backend { .. }) => {}
        Err(other) => panic!("unexpected error {other}"),
        // If the damage hit only free pages the open may succeed; the data must then
        // still read back correctly or fail with an error, never silently differ.
        Ok(store) => match store.get("a") {
            Ok(Some(value)) => assert_eq!(value, [7u8; 4096]),
            Ok(None) => panic!("entry silently vanished"),
            Err(_) => {}
        },
    }
}
