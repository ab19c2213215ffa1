//! Init, unseal with Shamir shares, seal: the state machine `sys/init`,
//! `sys/unseal`, `sys/seal` and `sys/seal-status` are built on.

use std::sync::Arc;

use cipherd::crypto::SecretBytes;
use cipherd::seal::{ConfigDefect, SealError, SealManager, SealStatus, ShareDefect, shamir};
use cipherd::storage::{MemoryStorage, RedbStorage, Storage, StorageError};

fn manager() -> SealManager {
    SealManager::new(Arc::new(MemoryStorage::new())).expect("manager")
}

fn submit(manager: &SealManager, share: &SecretBytes) -> SealStatus {
    manager.unseal(share.expose_secret()).expect("unseal step")
}

#[test]
fn status_before_init() {
    let manager = manager();
    let status = manager.status();
    assert_eq!(
        status,
        SealStatus {
            initialized: false,
            sealed: true,
            threshold: 0,
            shares: 0,
            progress: 0,
            nonce: String::new(),
            key: None,
            cluster_name: None,
            cluster_id: None,
        }
    );
    assert!(matches!(
        manager.unseal(&[1u8; 33]),
        Err(SealError::NotInitialized)
    ));
    assert!(matches!(
        manager.unseal_with_master_key(&[1u8; 32]),
        Err(SealError::NotInitialized)
    ));
    assert_eq!(manager.unseal_reset().progress, 0);
    manager
        .seal()
        .expect("sealing an uninitialized server is ok");
    assert_eq!(
        SealError::NotInitialized.to_string(),
        "Vault is not initialized"
    );
}

#[test]
fn init_parameters_follow_vault() {
    let manager = manager();
    let cases = [
        (
            0,
            0,
            ConfigDefect::SharesTooFew,
            "shares must be at least one",
        ),
        (
            3,
            0,
            ConfigDefect::ThresholdTooFew,
            "threshold must be at least one",
        ),
        (
            5,
            1,
            ConfigDefect::ThresholdOneWithManyShares,
            "threshold must be greater than one for multiple shares",
        ),
        (
            2,
            3,
            ConfigDefect::ThresholdAboveShares,
            "threshold cannot be larger than shares",
        ),
    ];
    for (shares, threshold, defect, message) in cases {
        match manager.init(shares, threshold) {
            Err(err @ SealError::InvalidParameters { defect: got }) => {
                assert_eq!(got, defect);
                assert_eq!(
                    err.to_string(),
                    format!("invalid seal configuration: {message}")
                );
            }
            other => panic!("({shares}, {threshold}): {other:?}"),
        }
    }
    // Values above 255 are refused by the checker the REST layer calls first.
    assert_eq!(
        shamir::check_config(256, 3),
        Err(ConfigDefect::SharesTooMany)
    );
    assert_eq!(
        shamir::check_config(255, 300),
        Err(ConfigDefect::ThresholdTooMany)
    );
    assert!(
        !manager.status().initialized,
        "a refused init leaves nothing behind"
    );
}

#[test]
fn init_returns_shares_and_stays_sealed() {
    let manager = manager();
    let init = manager.init(5, 3).expect("init");
    assert_eq!(init.shares.len(), 5);
    for (i, share) in init.shares.iter().enumerate() {
        assert_eq!(share.len(), 33, "32-byte key + x-coordinate, as Vault");
        for other in &init.shares[i + 1..] {
            assert!(!share.ct_eq(other.expose_secret()));
        }
    }
    let status = manager.status();
    assert!(status.initialized && status.sealed);
    assert_eq!(
        (status.shares, status.threshold, status.progress),
        (5, 3, 0)
    );
    assert!(matches!(
        manager.init(5, 3),
        Err(SealError::AlreadyInitialized)
    ));
    assert!(matches!(
        manager.init(1, 1),
        Err(SealError::AlreadyInitialized)
    ));
    assert_eq!(
        SealError::AlreadyInitialized.to_string(),
        "Vault is already initialized"
    );
    // Debug never prints share bytes.
    assert!(!format!("{init:?}").contains(&format!("{:?}", &init.shares[0].expose_secret()[..4])));
}

#[test]
fn any_three_of_five_unseal_in_any_order() {
    let manager = manager();
    let shares = manager.init(5, 3).expect("init").shares;
    let orders: [[usize; 3]; 5] = [[0, 1, 2], [2, 1, 0], [4, 0, 3], [1, 3, 4], [3, 4, 2]];
    for order in orders {
        let first = submit(&manager, &shares[order[0]]);
        assert!(first.sealed);
        assert_eq!(first.progress, 1);
        assert_eq!(first.nonce.len(), 36, "a UUID identifies the attempt");
        let second = submit(&manager, &shares[order[1]]);
        assert_eq!(second.progress, 2);
        assert_eq!(second.nonce, first.nonce, "one nonce per attempt");
        let done = submit(&manager, &shares[order[2]]);
        assert!(!done.sealed, "{order:?}");
        assert_eq!((done.progress, done.nonce.as_str()), (0, ""));
        assert!(
            done.cluster_name
                .as_deref()
                .is_some_and(|n| n.starts_with("vault-cluster-"))
        );
        assert_eq!(done.cluster_id.as_deref().map(str::len), Some(36));
        assert_eq!(done.key.map(|k| k.term), Some(1));

        let barrier = manager.barrier();
        barrier.put("k", b"v").expect("put");
        assert_eq!(barrier.get("k").expect("get").as_deref(), Some(&b"v"[..]));
        // Already unsealed: another share just returns the status.
        assert!(!submit(&manager, &shares[0]).sealed);

        manager.seal().expect("seal");
        let sealed = manager.status();
        assert!(sealed.sealed && sealed.key.is_none() && sealed.cluster_name.is_none());
        assert_eq!(sealed.progress, 0);
        assert!(matches!(barrier.get("k"), Err(StorageError::Sealed)));
    }
}

#[test]
fn bad_shares_are_refused_without_touching_progress() {
    let manager = manager();
    let shares = manager.init(5, 3).expect("init").shares;
    let first = submit(&manager, &shares[0]);
    let unchanged = |manager: &SealManager| {
        let status = manager.status();
        assert_eq!(status.progress, 1);
        assert_eq!(status.nonce, first.nonce);
        assert!(status.sealed);
    };

    assert!(matches!(
        manager.unseal(shares[0].expose_secret()),
        Err(SealError::DuplicateShare)
    ));
    unchanged(&manager);

    for len in [0, 16, 32, 34, 64] {
        let err = manager.unseal(&vec![7u8; len]).expect_err("wrong length");
        assert!(
            matches!(err, SealError::InvalidShare { defect: ShareDefect::LengthMismatch { expected: 33, got } } if got == len),
            "{err}"
        );
        unchanged(&manager);
    }

    let mut zero_index = shares[1].expose_secret().to_vec();
    zero_index[32] = 0;
    assert!(matches!(
        manager.unseal(&zero_index),
        Err(SealError::InvalidShare {
            defect: ShareDefect::ZeroIndex
        })
    ));
    unchanged(&manager);

    // Same x-coordinate as the submitted share, different bytes.
    let mut same_index = shares[1].expose_secret().to_vec();
    same_index[32] = shares[0].expose_secret()[32];
    assert!(matches!(
        manager.unseal(&same_index),
        Err(SealError::InvalidShare {
            defect: ShareDefect::IndexReused
        })
    ));
    unchanged(&manager);

    // The round goes on with good shares.
    assert_eq!(submit(&manager, &shares[3]).progress, 2);
    assert!(!submit(&manager, &shares[4]).sealed);
}

#[test]
fn wrong_shares_reset_progress_and_stay_sealed() {
    let manager = manager();
    let shares = manager.init(5, 3).expect("init").shares;
    let foreign = self::manager().init(5, 3).expect("other init").shares;

    // All three from another initialisation.
    submit(&manager, &foreign[0]);
    submit(&manager, &foreign[1]);
    let err = manager
        .unseal(foreign[2].expose_secret())
        .expect_err("wrong key");
    assert!(matches!(err, SealError::WrongShares), "{err}");
    assert!(
        err.to_string()
            .starts_with("unable to retrieve stored keys")
    );
    let status = manager.status();
    assert!(status.sealed);
    assert_eq!((status.progress, status.nonce.as_str()), (0, ""));

    // Two good and one foreign (a distinct index) also combine to a wrong key.
    submit(&manager, &shares[0]);
    submit(&manager, &shares[1]);
    assert!(matches!(
        manager.unseal(foreign[2].expose_secret()),
        Err(SealError::WrongShares)
    ));
    assert_eq!(manager.status().progress, 0);

    // A corrupted genuine share too.
    let mut flipped = shares[2].expose_secret().to_vec();
    flipped[0] ^= 1;
    submit(&manager, &shares[0]);
    submit(&manager, &shares[1]);
    assert!(matches!(
        manager.unseal(&flipped),
        Err(SealError::WrongShares)
    ));

    // The real ones still work.
    for share in &shares[2..] {
        submit(&manager, share);
    }
    assert!(!manager.status().sealed);
}

#[test]
fn reset_and_seal_discard_progress() {
    let manager = manager();
    let shares = manager.init(3, 2).expect("init").shares;
    submit(&manager, &shares[0]);
    let reset = manager.unseal_reset();
    assert_eq!((reset.progress, reset.nonce.as_str()), (0, ""));
    // The same share counts again in the new attempt.
    assert_eq!(submit(&manager, &shares[0]).progress, 1);
    manager.seal().expect("seal while sealed");
    assert_eq!(manager.status().progress, 0);
    submit(&manager, &shares[2]);
    assert!(!submit(&manager, &shares[1]).sealed);
}

#[test]
fn one_share_is_the_master_key() {
    let manager = manager();
    let shares = manager.init(1, 1).expect("init").shares;
    assert_eq!(shares.len(), 1);
    assert_eq!(shares[0].len(), 32);
    assert!(matches!(
        manager.unseal(&[0u8; 33]),
        Err(SealError::InvalidShare {
            defect: ShareDefect::LengthMismatch {
                expected: 32,
                got: 33
            }
        })
    ));
    assert!(matches!(
        manager.unseal(&[0u8; 32]),
        Err(SealError::WrongShares)
    ));
    assert!(matches!(
        manager.unseal_with_master_key(&[9u8; 32]),
        Err(SealError::WrongShares)
    ));
    assert!(matches!(
        manager.unseal_with_master_key(&[9u8; 31]),
        Err(SealError::InvalidShare { .. })
    ));
    let status = manager
        .unseal_with_master_key(shares[0].expose_secret())
        .expect("unseal");
    assert!(!status.sealed);
}

#[test]
fn master_key_from_combined_shares_unseals_directly() {
    let manager = manager();
    let shares = manager.init(5, 3).expect("init").shares;
    let too_few = shamir::combine(&shares[..2]).expect("combine two");
    assert!(matches!(
        manager.unseal_with_master_key(too_few.expose_secret()),
        Err(SealError::WrongShares)
    ));
    let master = shamir::combine(&[
        shares[4].duplicate(),
        shares[1].duplicate(),
        shares[2].duplicate(),
    ])
    .expect("combine three");
    assert!(
        !manager
            .unseal_with_master_key(master.expose_secret())
            .expect("unseal")
            .sealed
    );
}

#[test]
fn init_with_setup_writes_through_a_private_barrier() {
    let manager = manager();
    let (init, token_path) = manager
        .init_with_setup(1, 1, |barrier| {
            barrier.put("auth/token/root", b"hashed root token")?;
            Ok("auth/token/root")
        })
        .expect("init");
    // The shared barrier never unsealed.
    assert!(manager.status().sealed);
    assert!(matches!(
        manager.barrier().get(token_path),
        Err(StorageError::Sealed)
    ));
    manager
        .unseal(init.shares[0].expose_secret())
        .expect("unseal");
    assert_eq!(
        manager.barrier().get(token_path).expect("get").as_deref(),
        Some(&b"hashed root token"[..])
    );
}

#[test]
fn a_failed_init_setup_is_rolled_back() {
    let backend = Arc::new(MemoryStorage::new());
    let manager = SealManager::new(backend.clone()).expect("manager");
    let err = manager
        .init_with_setup(5, 3, |storage| {
            storage.put("auth/token/root", b"written before the failure")?;
            storage.put("auth/other", b"also")?;
            Err::<(), _>(StorageError::InvalidPath {
                path: "x".to_owned(),
                reason: "simulated failure",
            })
        })
        .expect_err("setup failed");
    assert!(
        matches!(err, SealError::Storage(StorageError::InvalidPath { .. })),
        "{err}"
    );
    assert!(!manager.status().initialized);
    assert!(
        backend.list("").expect("raw list").is_empty(),
        "nothing left behind"
    );
    // And init can be run again.
    let shares = manager.init(1, 1).expect("init again").shares;
    manager.unseal(shares[0].expose_secret()).expect("unseal");
}

#[test]
fn a_restarted_server_is_initialized_and_sealed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shares = {
        let backend = Arc::new(RedbStorage::open(dir.path()).expect("open"));
        let manager = SealManager::new(backend).expect("manager");
        let shares = manager.init(5, 3).expect("init").shares;
        for share in &shares[2..] {
            submit(&manager, share);
        }
        manager
            .barrier()
            .put("transit/keys/a", b"key a")
            .expect("put");
        shares
    };
    let backend: Arc<dyn Storage> = Arc::new(RedbStorage::open(dir.path()).expect("reopen"));
    let manager = SealManager::new(backend).expect("manager");
    let status = manager.status();
    assert!(status.initialized && status.sealed);
    assert_eq!((status.shares, status.threshold), (5, 3));
    assert!(matches!(
        manager.init(5, 3),
        Err(SealError::AlreadyInitialized)
    ));
    for share in [&shares[1], &shares[4], &shares[0]] {
        submit(&manager, share);
    }
    assert_eq!(
        manager
            .barrier()
            .get("transit/keys/a")
            .expect("get")
            .as_deref(),
        Some(&b"key a"[..])
    );
}

#[test]
fn a_damaged_seal_record_is_reported() {
    let backend = Arc::new(MemoryStorage::new());
    let manager = SealManager::new(backend.clone()).expect("manager");
    let init = manager.init(1, 1).expect("init");
    let mut raw = backend.get("core/seal").expect("get").expect("present");
    // Damage the sealed keyring (the tail of the record): unseal must fail, not guess.
    let last = raw.len() - 1;
    raw[last] ^= 0x01;
    backend.put("core/seal", &raw).expect("put");
    let fresh = SealManager::new(backend.clone()).expect("config still parses");
    assert!(fresh.unseal(init.shares[0].expose_secret()).is_err());
    assert!(fresh.status().sealed);
    // Garbage instead of a record: a Corrupt error naming the path.
    backend.put("core/seal", b"garbage").expect("put");
    match SealManager::new(backend) {
        Err(SealError::Storage(StorageError::Corrupt { path })) => assert_eq!(path, "core/seal"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn seal_manager_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SealManager>();
    assert_send_sync::<cipherd::seal::Barrier>();
    let manager = Arc::new(manager());
    let shares = manager.init(3, 2).expect("init").shares;
    // Shares submitted from several threads at once still unseal exactly once.
    let handles: Vec<_> = shares
        .iter()
        .map(|share| {
            let manager = manager.clone();
            let share = share.duplicate();
            std::thread::spawn(move || manager.unseal(share.expose_secret()).map(|s| s.sealed))
        })
        .collect();
    for handle in handles {
        // Each submission either advanced the round or found it already unsealed.
        handle.join().expect("thread").expect("unseal");
    }
    assert!(!manager.status().sealed);
}
