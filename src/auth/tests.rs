//! Token lifecycle, policy management and persistence of [`Auth`].

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::storage::MemoryStorage;

const T0: u64 = 1_700_000_000;

struct Fixture {
    storage: Arc<MemoryStorage>,
    clock: Arc<ManualClock>,
    auth: Auth,
    root: IssuedToken,
}

impl Fixture {
    fn new() -> Self {
        let storage = Arc::new(MemoryStorage::new());
        let clock = Arc::new(ManualClock::new(T0));
        let auth = Auth::open_with_clock(storage.clone(), clock.clone()).expect("open");
        let root = auth.create_root_token(None).expect("root token");
        Self {
            storage,
            clock,
            auth,
            root,
        }
    }

    fn reopen(&self) -> Auth {
        Auth::open_with_clock(self.storage.clone(), self.clock.clone()).expect("reopen")
    }

    fn child(&self, parent: &IssuedToken, request: TokenRequest) -> IssuedToken {
        self.auth
            .create_token(&parent.entry, &request)
            .expect("create token")
    }

    fn with_policies(&self, policies: &[&str]) -> IssuedToken {
        self.child(
            &self.root,
            TokenRequest {
                policies: names(policies),
                ..TokenRequest::default()
            },
        )
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

fn secret(issued: &IssuedToken) -> &str {
    issued.token.expose_secret()
}

fn invalid_request(result: Result<impl std::fmt::Debug, AuthError>) -> String {
    match result {
        Err(AuthError::InvalidRequest(message)) => message,
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

fn denied<T: std::fmt::Debug>(result: Result<T, AuthError>) -> bool {
    matches!(
        result,
        Err(AuthError::PermissionDenied | AuthError::UnknownToken)
    )
}

/// Every (path, value) in the store.
fn dump(storage: &dyn Storage) -> Vec<(String, Vec<u8>)> {
    fn walk(storage: &dyn Storage, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
        for child in storage.list(prefix).expect("list") {
            let path = format!("{prefix}{child}");
            if child.ends_with('/') {
                walk(storage, &path, out);
            } else {
                let value = storage
                    .get(&path)
                    .expect("get")
                    .expect("listed entry exists");
                out.push((path, value));
            }
        }
    }
    let mut out = Vec::new();
    walk(storage, "", &mut out);
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[test]
fn auth_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Auth>();
}

#[test]
fn open_creates_default_policy_and_lists_root() {
    let f = Fixture::new();
    assert_eq!(f.auth.list_policies(), ["default", "root"]);
    assert_eq!(f.auth.policy("root").as_deref(), Some(""));
    let default = f.auth.policy("default").expect("default policy");
    assert!(default.contains("auth/token/lookup-self"));
    assert!(f.auth.policy("nope").is_none());
}

#[test]
fn root_token_allows_everything_and_never_expires() {
    let f = Fixture::new();
    let token = secret(&f.root);
    assert!(token.starts_with("hvs."));
    let entry = f
        .auth
        .authorize(token, "sys/seal", Capability::Sudo)
        .expect("root may");
    assert_eq!(entry.policies, ["root"]);
    assert!(entry.is_root && entry.orphan && !entry.renewable);
    assert_eq!(entry.expire_time_unix, None);
    assert_eq!(entry.path, "auth/token/root");
    assert_eq!(entry.display_name, "root");
    f.clock.advance(10 * MAX_TTL_SECS);
    assert!(
        f.auth
            .authorize(token, "transit/keys/x", Capability::Delete)
            .is_ok()
    );
    assert_eq!(
        f.auth.capabilities(token, "anything").expect("caps"),
        ["root"]
    );
    assert!(matches!(
        f.auth.renew(token, None),
        Err(AuthError::NotRenewable)
    ));
    assert!(denied(f.auth.authorize(token, "x", Capability::Deny)));
}

#[test]
fn fixed_root_token_id() {
    let f = Fixture::new();
    let dev = f.auth.create_root_token(Some("root")).expect("dev root");
    assert_eq!(dev.token.expose_secret(), "root");
    assert!(
        f.auth
            .authorize("root", "transit/encrypt/a", Capability::Update)
            .is_ok()
    );
    assert_eq!(
        invalid_request(f.auth.create_root_token(Some("root"))),
        "cannot create a token with a duplicate ID"
    );
    assert_eq!(
        invalid_request(f.auth.create_root_token(Some("a.b"))),
        "token IDs can not contain a period"
    );
}

#[test]
fn unknown_and_empty_tokens_are_denied() {
    let f = Fixture::new();
    for token in ["", "hvs.nope", "root"] {
        assert!(denied(f.auth.authorize(
            token,
            "transit/keys/a",
            Capability::Read
        )));
        assert!(denied(f.auth.lookup(token)));
        assert!(denied(f.auth.capabilities(token, "a")));
    }
}

#[test]
fn child_policies_must_be_a_subset_unless_sudo() {
    let f = Fixture::new();
    f.auth
        .put_policy(
            "p1",
            r#"path "transit/encrypt/a" { capabilities = ["update"] }"#,
        )
        .expect("p1");
    f.auth
        .put_policy(
            "p2",
            r#"path "transit/decrypt/a" { capabilities = ["update"] }"#,
        )
        .expect("p2");
    let parent = f.child(
        &f.root,
        TokenRequest {
            policies: names(&["p1", "P2 "]),
            no_default_policy: true,
            ..TokenRequest::default()
        },
    );
    assert_eq!(parent.entry.policies, ["p1", "p2"]);
    assert!(!parent.entry.orphan);
    assert_eq!(
        parent.entry.parent_accessor.as_ref(),
        Some(&f.root.entry.accessor)
    );

    // Subset: fine, and `default` may be added even though the parent lacks it.
    let child = f.child(
        &parent,
        TokenRequest {
            policies: names(&["p1"]),
            ..TokenRequest::default()
        },
    );
    assert_eq!(child.entry.policies, ["default", "p1"]);
    // Inherit when none are given.
    let inherit = f.child(&parent, TokenRequest::default());
    assert_eq!(inherit.entry.policies, ["default", "p1", "p2"]);
    // Superset: refused.
    let request = TokenRequest {
        policies: names(&["p1", "p3"]),
        ..TokenRequest::default()
    };
    assert_eq!(
        invalid_request(f.auth.create_token(&parent.entry, &request)),
        "child policies must be subset of parent"
    );
    // Root: refused as a superset.
    let root_request = TokenRequest {
        policies: names(&["root"]),
        ..TokenRequest::default()
    };
    assert_eq!(
        invalid_request(f.auth.create_token(&parent.entry, &root_request)),
        "child policies must be subset of parent"
    );
    // Privileged options need root or sudo.
    for (request, message) in [
        (
            TokenRequest {
                id: Some("custom".to_owned()),
                ..TokenRequest::default()
            },
            "root or sudo privileges required to specify token id",
        ),
        (
            TokenRequest {
                no_parent: true,
                ..TokenRequest::default()
            },
            "root or sudo privileges required to create orphan token",
        ),
        (
            TokenRequest {
                period_secs: Some(60),
                ..TokenRequest::default()
            },
            "root or sudo privileges required to create periodic token",
        ),
    ] {
        assert_eq!(
            invalid_request(f.auth.create_token(&parent.entry, &request)),
            message
        );
    }
    // The create-orphan endpoint needs no sudo.
    let orphan = f.child(
        &parent,
        TokenRequest {
            orphan: true,
            ..TokenRequest::default()
        },
    );
    assert!(orphan.entry.orphan);
    assert_eq!(orphan.entry.parent_accessor, None);
    assert_eq!(orphan.entry.path, "auth/token/create-orphan");
}

#[test]
fn sudo_parent_may_exceed_its_policies_but_not_create_root() {
    let f = Fixture::new();
    f.auth
        .put_policy(
            "token-admin",
            r#"path "auth/token/create" { capabilities = ["update", "sudo"] }"#,
        )
        .expect("policy");
    let admin = f.with_policies(&["token-admin"]);
    let child = f.child(
        &admin,
        TokenRequest {
            policies: names(&["other"]),
            id: Some("custom-id".to_owned()),
            no_parent: true,
            period_secs: Some(600),
            ..TokenRequest::default()
        },
    );
    assert_eq!(child.entry.policies, ["default", "other"]);
    assert_eq!(child.token.expose_secret(), "custom-id");
    assert!(child.entry.orphan);
    assert_eq!(child.entry.ttl_secs, 600);
    assert_eq!(child.warnings, [r#"Policy "other" does not exist"#]);
    let request = TokenRequest {
        policies: names(&["root"]),
        ..TokenRequest::default()
    };
    assert_eq!(
        invalid_request(f.auth.create_token(&admin.entry, &request)),
        "root tokens may not be created without parent token being root"
    );
}

#[test]
fn root_parent_creates_root_children_without_ttl() {
    let f = Fixture::new();
    let child = f.child(&f.root, TokenRequest::default());
    assert_eq!(child.entry.policies, ["root"]);
    assert_eq!(child.entry.expire_time_unix, None);
    assert!(!child.entry.renewable);
    let limited = f.child(
        &f.root,
        TokenRequest {
            explicit_max_ttl_secs: Some(60),
            ..TokenRequest::default()
        },
    );
    assert_eq!(limited.entry.expire_time_unix, Some(T0 + 60));
    // An expiring root token cannot make a non-expiring one.
    assert_eq!(
        invalid_request(
            f.auth
                .create_token(&limited.entry, &TokenRequest::default())
        ),
        "expiring root tokens cannot create non-expiring root tokens"
    );
}

#[test]
fn token_request_fields_are_recorded() {
    let f = Fixture::new();
    let mut meta = BTreeMap::new();
    meta.insert("user".to_owned(), "alice".to_owned());
    let issued = f.child(
        &f.root,
        TokenRequest {
            policies: names(&["transit-user"]),
            ttl_secs: Some(3600),
            explicit_max_ttl_secs: Some(7200),
            renewable: Some(false),
            num_uses: 5,
            display_name: Some("web app".to_owned()),
            meta: meta.clone(),
            ..TokenRequest::default()
        },
    );
    let entry = &issued.entry;
    assert_eq!(entry.policies, ["default", "transit-user"]);
    assert_eq!(entry.ttl_secs, 3600);
    assert_eq!(entry.creation_ttl_secs, 3600);
    assert_eq!(entry.explicit_max_ttl_secs, 7200);
    assert_eq!(entry.expire_time_unix, Some(T0 + 3600));
    assert_eq!(entry.remaining_ttl_secs(T0 + 600), 3000);
    assert!(!entry.renewable);
    assert_eq!(entry.num_uses, 5);
    assert_eq!(entry.display_name, "token-web-app");
    assert_eq!(entry.meta, meta);
    assert_eq!(entry.path, "auth/token/create");
    assert_eq!(entry.accessor.len(), 24);
    assert_eq!(issued.warnings, [r#"Policy "transit-user" does not exist"#]);
    // Debug never shows the token.
    let debug = format!("{issued:?}");
    assert!(!debug.contains(secret(&issued)), "{debug}");
    // Default TTL.
    let default_ttl = f.with_policies(&["x"]);
    assert_eq!(default_ttl.entry.ttl_secs, DEFAULT_TTL_SECS);
    // TTL above the system max is capped, with Vault's warning.
    let capped = f.child(
        &f.root,
        TokenRequest {
            policies: names(&["default"]),
            ttl_secs: Some(MAX_TTL_SECS * 2),
            ..TokenRequest::default()
        },
    );
    assert_eq!(capped.entry.ttl_secs, MAX_TTL_SECS);
    assert!(capped.warnings.iter().any(|w| w.contains("capped")));
}

#[test]
fn tokens_expire_and_are_tidied() {
    let f = Fixture::new();
    let issued = f.child(
        &f.root,
        TokenRequest {
            ttl_secs: Some(60),
            policies: names(&["default"]),
            ..TokenRequest::default()
        },
    );
    let token = secret(&issued);
    assert!(
        f.auth
            .authorize(token, "auth/token/lookup-self", Capability::Read)
            .is_ok()
    );
    f.clock.advance(59);
    assert!(f.auth.lookup(token).is_ok());
    f.clock.advance(1);
    assert!(denied(f.auth.authorize(
        token,
        "auth/token/lookup-self",
        Capability::Read
    )));
    assert!(denied(f.auth.lookup(token)));
    assert!(denied(f.auth.renew(token, None)));
    assert_eq!(
        invalid_request(f.auth.lookup_accessor(&issued.entry.accessor)),
        "invalid accessor"
    );
    let before = f.auth.token_count();
    assert_eq!(f.auth.tidy_expired(f.clock.now_unix()), 1);
    assert_eq!(f.auth.token_count(), before - 1);
    assert!(f.reopen().lookup_accessor(&issued.entry.accessor).is_err());
}

#[test]
fn children_die_when_an_ancestor_expires() {
    let f = Fixture::new();
    f.auth
        .put_policy(
            "creator",
            r#"path "auth/token/create" { capabilities = ["update"] }"#,
        )
        .expect("policy");
    let parent = f.child(
        &f.root,
        TokenRequest {
            policies: names(&["creator"]),
            ttl_secs: Some(100),
            ..TokenRequest::default()
        },
    );
    let child = f.child(
        &parent,
        TokenRequest {
            ttl_secs: Some(1000),
            ..TokenRequest::default()
        },
    );
    let grandchild = f.child(&child, TokenRequest::default());
    assert!(f.auth.lookup(secret(&grandchild)).is_ok());
    f.clock.advance(100);
    assert!(denied(f.auth.lookup(secret(&child))));
    assert!(denied(f.auth.lookup(secret(&grandchild))));
    assert_eq!(f.auth.tidy_expired(f.clock.now_unix()), 3);
    assert!(f.auth.lookup(secret(&f.root)).is_ok());
}

#[test]
fn renewal() {
    let f = Fixture::new();
    let issued = f.child(
        &f.root,
        TokenRequest {
            policies: names(&["default"]),
            ttl_secs: Some(100),
            explicit_max_ttl_secs: Some(1000),
            ..TokenRequest::default()
        },
    );
    let token = secret(&issued);
    f.clock.advance(50);
    let renewed = f.auth.renew(token, None).expect("renew");
    assert_eq!(renewed.ttl_secs, 100);
    assert_eq!(renewed.expire_time_unix, Some(T0 + 150));
    assert_eq!(renewed.last_renewal_time_unix, Some(T0 + 50));
    assert_eq!(renewed.creation_ttl_secs, 100);
    let renewed = f
        .auth
        .renew(token, Some(500))
        .expect("renew with increment");
    assert_eq!(renewed.expire_time_unix, Some(T0 + 550));
    // Capped by the explicit max from creation.
    f.clock.advance(450);
    let renewed = f.auth.renew(token, Some(500)).expect("capped renew");
    assert_eq!(renewed.expire_time_unix, Some(T0 + 1000));
    assert_eq!(
        f.auth.lookup(token).expect("lookup").expire_time_unix,
        Some(T0 + 1000)
    );
    // Survives a restart.
    assert_eq!(
        f.reopen().lookup(token).expect("lookup").expire_time_unix,
        Some(T0 + 1000)
    );
    // By accessor.
    f.clock.set(T0 + 900);
    let by_accessor = f
        .auth
        .renew_accessor(&issued.entry.accessor, Some(10))
        .expect("renew-accessor");
    assert_eq!(by_accessor.expire_time_unix, Some(T0 + 910));

    let fixed = f.child(
        &f.root,
        TokenRequest {
            policies: names(&["default"]),
            renewable: Some(false),
            ..TokenRequest::default()
        },
    );
    assert!(matches!(
        f.auth.renew(secret(&fixed), None),
        Err(AuthError::NotRenewable)
    ));
}

#[test]
fn periodic_tokens_renew_to_their_period_forever() {
    let f = Fixture::new();
    let issued = f.child(
        &f.root,
        TokenRequest {
            policies: names(&["default"]),
            period_secs: Some(3600),
            ..TokenRequest::default()
        },
    );
    assert_eq!(issued.entry.ttl_secs, 3600);
    // Not renewed within its period: gone.
    f.clock.advance(3600);
    assert!(denied(f.auth.renew(secret(&issued), None)));
    let token = f.child(
        &f.root,
        TokenRequest {
            policies: names(&["default"]),
            period_secs: Some(3600),
            ..TokenRequest::default()
        },
    );
    for _ in 0..30 {
        f.clock.advance(3000);
        let renewed = f
            .auth
            .renew(secret(&token), Some(60))
            .expect("periodic renew");
        assert_eq!(renewed.ttl_secs, 3600, "the period, whatever the increment");
    }
    assert!(f.clock.now_unix() - token.entry.creation_time_unix > 3600 * 24);
}

#[test]
fn use_limited_tokens_are_revoked_at_their_last_use() {
    let f = Fixture::new();
    f.auth
        .put_policy(
            "enc",
            r#"
            path "transit/encrypt/a" { capabilities = ["update"] }
            path "auth/token/create" { capabilities = ["update"] }
            "#,
        )
        .expect("policy");
    let issued = f.child(
        &f.root,
        TokenRequest {
            policies: names(&["enc"]),
            num_uses: 3,
            ..TokenRequest::default()
        },
    );
    let token = secret(&issued);
    // Denied requests and lookups do not count.
    assert!(denied(f.auth.authorize(
        token,
        "transit/decrypt/a",
        Capability::Update
    )));
    assert_eq!(f.auth.lookup(token).expect("lookup").num_uses, 3);
    assert_eq!(
        f.auth
            .capabilities(token, "transit/encrypt/a")
            .expect("caps"),
        ["update"]
    );
    let first = f
        .auth
        .authorize(token, "transit/encrypt/a", Capability::Update)
        .expect("use 1");
    assert_eq!(first.num_uses, 2);
    // The count is persisted.
    assert_eq!(f.reopen().lookup(token).expect("lookup").num_uses, 2);
    let child = f.child(&issued, TokenRequest::default());
    assert_eq!(
        f.auth
            .authorize(token, "transit/encrypt/a", Capability::Update)
            .expect("use 2")
            .num_uses,
        1
    );
    assert_eq!(
        f.auth
            .authorize(token, "transit/encrypt/a", Capability::Update)
            .expect("use 3")
            .num_uses,
        0
    );
    assert!(denied(f.auth.authorize(
        token,
        "transit/encrypt/a",
        Capability::Update
    )));
    assert!(denied(f.auth.lookup(token)));
    // Its children went with it, in memory and in storage.
    assert!(denied(f.auth.lookup(secret(&child))));
    let reopened = f.reopen();
    assert!(denied(reopened.lookup(token)));
    assert!(denied(reopened.lookup(secret(&child))));
}

#[test]
fn revoke_tree_and_revoke_orphan() {
    let f = Fixture::new();
    let a = f.child(&f.root, TokenRequest::default());
    let b = f.child(&a, TokenRequest::default());
    let c = f.child(&b, TokenRequest::default());
    let d = f.child(&a, TokenRequest::default());
    f.auth.revoke(secret(&b)).expect("revoke b");
    assert!(denied(f.auth.lookup(secret(&b))));
    assert!(denied(f.auth.lookup(secret(&c))));
    assert!(f.auth.lookup(secret(&a)).is_ok());
    assert!(f.auth.lookup(secret(&d)).is_ok());

    let e = f.child(&d, TokenRequest::default());
    f.auth.revoke_orphan(secret(&a)).expect("revoke-orphan a");
    assert!(denied(f.auth.lookup(secret(&a))));
    let d_entry = f.auth.lookup(secret(&d)).expect("d survives");
    assert!(d_entry.orphan);
    assert_eq!(d_entry.parent_accessor, None);
    // Grandchildren keep their parent.
    assert_eq!(
        f.auth
            .lookup(secret(&e))
            .expect("e survives")
            .parent_accessor
            .as_ref(),
        Some(&d.entry.accessor)
    );
    // And all of it holds after a restart.
    let reopened = f.reopen();
    assert!(denied(reopened.lookup(secret(&a))));
    assert!(denied(reopened.lookup(secret(&c))));
    assert!(reopened.lookup(secret(&d)).expect("d").orphan);
    assert!(reopened.lookup(secret(&e)).is_ok());

    // Revoking d (now an orphan) by accessor takes e too.
    f.auth
        .revoke_accessor(&d.entry.accessor)
        .expect("revoke-accessor");
    assert!(denied(f.auth.lookup(secret(&e))));
    assert_eq!(
        invalid_request(f.auth.revoke_accessor("nope")),
        "invalid accessor"
    );
    // Unknown tokens: no error, as Vault's 204.
    f.auth.revoke("hvs.unknown").expect("revoke unknown");
    f.auth
        .revoke_orphan("hvs.unknown")
        .expect("revoke-orphan unknown");
    assert!(f.auth.lookup(secret(&f.root)).is_ok());
}

#[test]
fn lookup_accessor_and_accessors() {
    let f = Fixture::new();
    let issued = f.with_policies(&["x"]);
    let entry = f
        .auth
        .lookup_accessor(&issued.entry.accessor)
        .expect("lookup-accessor");
    assert_eq!(entry, issued.entry);
    let mut expected = vec![f.root.entry.accessor.clone(), issued.entry.accessor.clone()];
    expected.sort();
    assert_eq!(f.auth.accessors(), expected);
}

#[test]
fn persistence_across_reopen() {
    let f = Fixture::new();
    f.auth
        .put_policy(
            "Payments",
            r#"path "transit/encrypt/payments" { capabilities = ["update"] }"#,
        )
        .expect("policy");
    let issued = f.with_policies(&["payments"]);
    let reopened = f.reopen();
    assert_eq!(reopened.list_policies(), ["default", "payments", "root"]);
    assert!(reopened.policy("PAYMENTS").is_some());
    let entry = reopened
        .authorize(
            secret(&issued),
            "transit/encrypt/payments",
            Capability::Update,
        )
        .expect("token survives");
    assert_eq!(entry, issued.entry);
    assert!(
        reopened
            .authorize(secret(&f.root), "sys/seal", Capability::Sudo)
            .is_ok()
    );
    assert_eq!(reopened.token_count(), 2);
    // The default policy is created once, not overwritten.
    f.auth
        .put_policy("default", r#"path "custom" { capabilities = ["read"] }"#)
        .expect("edit default");
    assert!(
        f.reopen()
            .policy("default")
            .expect("default")
            .contains("custom")
    );
}

#[test]
fn storage_never_holds_a_token_string() {
    let f = Fixture::new();
    let dev = f
        .auth
        .create_root_token(Some("my-dev-root-token"))
        .expect("dev root");
    let child = f.with_policies(&["x"]);
    let entries = dump(f.storage.as_ref());
    assert!(
        entries
            .iter()
            .any(|(path, _)| path.starts_with("auth/token/accessor/"))
    );
    for issued in [&f.root, &dev, &child] {
        let token = secret(issued).as_bytes();
        let random_part = token.strip_prefix(b"hvs.").unwrap_or(token);
        for (path, value) in &entries {
            assert!(
                !contains(path.as_bytes(), random_part),
                "token in path {path}"
            );
            assert!(!contains(value, random_part), "token in value at {path}");
        }
    }
}

#[test]
fn dangling_children_are_pruned_on_open() {
    let f = Fixture::new();
    let parent = f.child(&f.root, TokenRequest::default());
    let child = f.child(&parent, TokenRequest::default());
    // Simulate a revocation that deleted only the top record.
    f.storage
        .delete(&format!("auth/token/accessor/{}", parent.entry.accessor))
        .expect("delete");
    let reopened = f.reopen();
    assert!(denied(reopened.lookup(secret(&child))));
    assert!(
        f.storage
            .get(&format!("auth/token/accessor/{}", child.entry.accessor))
            .expect("get")
            .is_none()
    );
}

#[test]
fn corrupt_records_are_reported_not_ignored() {
    let f = Fixture::new();
    f.storage.put("auth/token/salt", b"short").expect("put");
    match Auth::open(f.storage.clone()) {
        Err(AuthError::Storage(StorageError::Corrupt { path })) => {
            assert_eq!(path, "auth/token/salt")
        }
        other => panic!("expected a corrupt salt, got {other:?}"),
    }
}

#[test]
fn policy_management_rules() {
    let f = Fixture::new();
    assert_eq!(
        invalid_request(f.auth.put_policy("root", r#"path "a" {}"#)),
        "cannot update \"root\" policy"
    );
    assert_eq!(
        invalid_request(f.auth.put_policy("x", "  \n")),
        "'policy' parameter not supplied or empty"
    );
    match f.auth.put_policy("x", r#"path "x" {"#) {
        Err(error @ AuthError::InvalidPolicy { .. }) => {
            assert!(
                error
                    .to_string()
                    .starts_with("failed to parse policy: At 1:"),
                "{error}"
            );
        }
        other => panic!("expected InvalidPolicy, got {other:?}"),
    }
    assert!(
        f.auth.policy("x").is_none(),
        "a refused policy is not stored"
    );
    assert_eq!(
        invalid_request(f.auth.delete_policy("root")),
        "cannot delete \"root\" policy"
    );
    assert_eq!(
        invalid_request(f.auth.delete_policy("Default")),
        "cannot delete default policy"
    );
    f.auth
        .delete_policy("never-existed")
        .expect("deleting a missing policy is fine");
    assert_eq!(
        invalid_request(f.auth.put_policy("a/b", r#"path "a" {}"#)),
        "invalid policy name \"a/b\""
    );
}

#[test]
fn policy_changes_apply_immediately() {
    let f = Fixture::new();
    let token = f.with_policies(&["late"]);
    let t = secret(&token);
    assert!(denied(f.auth.authorize(
        t,
        "transit/encrypt/a",
        Capability::Update
    )));
    assert_eq!(
        f.auth.capabilities(t, "transit/encrypt/a").expect("caps"),
        ["deny"]
    );
    f.auth
        .put_policy(
            "late",
            r#"path "transit/encrypt/*" { capabilities = ["update", "create"] }"#,
        )
        .expect("policy");
    assert!(
        f.auth
            .authorize(t, "transit/encrypt/a", Capability::Update)
            .is_ok()
    );
    assert_eq!(
        f.auth.capabilities(t, "transit/encrypt/a").expect("caps"),
        ["create", "update"]
    );
    f.auth
        .put_policy(
            "late",
            r#"path "transit/encrypt/*" { capabilities = ["read"] }"#,
        )
        .expect("policy");
    assert!(denied(f.auth.authorize(
        t,
        "transit/encrypt/a",
        Capability::Update
    )));
    f.auth.delete_policy("late").expect("delete");
    assert!(denied(f.auth.authorize(
        t,
        "transit/encrypt/a",
        Capability::Read
    )));
    // The default policy still applies.
    assert!(
        f.auth
            .authorize(t, "auth/token/lookup-self", Capability::Read)
            .is_ok()
    );
}

#[test]
fn authorize_any_and_all() {
    let f = Fixture::new();
    f.auth
        .put_policy(
            "p",
            r#"
            path "transit/encrypt/a" { capabilities = ["update"] }
            path "sys/seal" { capabilities = ["update", "sudo"] }
            path "sys/audit" { capabilities = ["update"] }
            "#,
        )
        .expect("policy");
    let t = f.with_policies(&["p"]);
    let t = secret(&t);
    let upsert = [Capability::Create, Capability::Update];
    assert!(
        f.auth
            .authorize_any(t, "transit/encrypt/a", &upsert)
            .is_ok()
    );
    assert!(denied(f.auth.authorize_all(
        t,
        "transit/encrypt/a",
        &upsert
    )));
    assert!(denied(f.auth.authorize_any(t, "transit/encrypt/a", &[])));
    let root_protected = [Capability::Update, Capability::Sudo];
    assert!(f.auth.authorize_all(t, "sys/seal", &root_protected).is_ok());
    assert!(denied(f.auth.authorize_all(
        t,
        "sys/audit",
        &root_protected
    )));
}

#[test]
fn concurrent_authorize_and_revoke() {
    let f = Arc::new(Fixture::new());
    let tokens: Vec<IssuedToken> = (0..8).map(|_| f.with_policies(&["default"])).collect();
    let secrets: Vec<String> = tokens.iter().map(|t| secret(t).to_owned()).collect();
    std::thread::scope(|scope| {
        for secret in &secrets {
            let f = Arc::clone(&f);
            scope.spawn(move || {
                for _ in 0..200 {
                    let _ = f
                        .auth
                        .authorize(secret, "auth/token/lookup-self", Capability::Read);
                }
            });
        }
        let f = Arc::clone(&f);
        let secrets = &secrets;
        scope.spawn(move || {
            for secret in secrets.iter().step_by(2) {
                f.auth.revoke(secret).expect("revoke");
            }
        });
    });
    for (i, secret) in secrets.iter().enumerate() {
        assert_eq!(f.auth.lookup(secret).is_ok(), i % 2 == 1);
    }
}

/// `cargo test --release --lib auth::tests::authorize_speed -- --ignored --nocapture`
#[test]
#[ignore = "timing; run in release"]
fn authorize_speed() {
    let f = Fixture::new();
    f.auth
        .put_policy(
            "payments",
            r#"
            path "transit/encrypt/payments" { capabilities = ["update"] }
            path "transit/decrypt/payments" { capabilities = ["update"] }
            path "transit/keys/*" { capabilities = ["read"] }
            path "transit/+/orders" { capabilities = ["update"] }
            "#,
        )
        .expect("policy");
    let issued = f.with_policies(&["payments", "other"]);
    let token = secret(&issued);
    let iterations = 1_000_000u32;
    for (path, capability) in [
        ("transit/encrypt/payments", Capability::Update),
        ("transit/keys/payments", Capability::Read),
        ("transit/sign/orders", Capability::Update),
    ] {
        let start = std::time::Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(f.auth.authorize(token, path, capability).expect("allowed"));
        }
        println!("{path}: {:?} per authorize", start.elapsed() / iterations);
    }
}

#[test]
#[ignore = "timing; run in release"]
fn authorize_parts_speed() {
    let f = Fixture::new();
    let issued = f.with_policies(&["payments", "other"]);
    let token = secret(&issued).to_owned();
    let iterations = 1_000_000u32;
    let time = |name: &str, run: &dyn Fn()| {
        let start = std::time::Instant::now();
        for _ in 0..iterations {
            run();
        }
        println!("{name}: {:?}", start.elapsed() / iterations);
    };
    time("hash", &|| {
        std::hint::black_box(f.auth.hasher.hash(std::hint::black_box(&token)));
    });
    time("clock", &|| {
        std::hint::black_box(SystemClock.now_unix());
    });
    time("resolve", &|| {
        std::hint::black_box(f.auth.resolve(&token).expect("live"));
    });
    let (_, live) = f.auth.resolve(&token).expect("live");
    time("acl_of", &|| {
        std::hint::black_box(f.auth.acl_of(&live));
    });
    let acl = f.auth.acl_for(&issued.entry.policies);
    time("allows", &|| {
        std::hint::black_box(acl.allows("transit/encrypt/payments", Capability::Update));
    });
}

#[test]
#[ignore = "timing; run in release"]
fn hmac_speed() {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef");
    let token = "hvs.0123456789abcdefghijklmnopqrstuv";
    let iterations = 1_000_000u32;
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(ring::hmac::sign(
            &key,
            std::hint::black_box(token).as_bytes(),
        ));
    }
    println!("ring: {:?}", start.elapsed() / iterations);
    let ours = super::token::TokenHasher::new(b"0123456789abcdef0123456789abcdef");
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(ours.hash(std::hint::black_box(token)));
    }
    println!("hmac crate: {:?}", start.elapsed() / iterations);
}
