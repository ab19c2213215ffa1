//! ACL matrix: policies x paths x capabilities, every allowed and denied case
//! asserted from one table, through the public `cipherd::auth` API (tokens
//! created by a root token, policies written as HCL and JSON).

use std::collections::BTreeMap;
use std::sync::Arc;

use cipherd::auth::{Auth, Capability, IssuedToken, TokenRequest};
use cipherd::storage::MemoryStorage;

use Capability::{Create, Delete, Deny, List, Patch, Read, Sudo, Update};

/// The policies under test, by name.
const POLICIES: &[(&str, &str)] = &[
    (
        "payments-encrypt-only",
        r#"
        # Services that write payment rows: encrypt only, on one key.
        path "transit/encrypt/payments" {
          capabilities = ["update"]
        }
        "#,
    ),
    (
        "payments-decrypt",
        r#"{"path": {"transit/decrypt/payments": {"capabilities": ["update"]}}}"#,
    ),
    (
        "read-all-transit-keys",
        r#"
        path "transit/keys/*" {
          capabilities = ["read", "list"]
        }
        "#,
    ),
    (
        "deny-export",
        r#"
        path "transit/*" {
          capabilities = ["create", "read", "update", "delete", "list"]
        }
        path "transit/export/*" {
          capabilities = ["deny"]
        }
        path "transit/backup/*" {
          capabilities = ["deny"]
        }
        "#,
    ),
    (
        "plus-segment",
        r#"
        path "transit/+/orders" {
          capabilities = ["update"]
        }
        path "transit/sign/+/sha2-*" {
          capabilities = ["update"]
        }
        "#,
    ),
    (
        "deny-secret-key",
        r#"
        path "transit/keys/secret" {
          capabilities = ["deny"]
        }
        "#,
    ),
    (
        "deny-all-keys",
        r#"
        path "transit/keys/*" {
          capabilities = ["deny"]
        }
        "#,
    ),
    (
        "operator",
        r#"
        path "sys/seal" {
          capabilities = ["update", "sudo"]
        }
        path "sys/policy/*" {
          policy = "write"
        }
        path "transit/keys/+/rotate" {
          capabilities = ["update"]
        }
        "#,
    ),
];

/// Tokens under test: label -> policies (`default` is always added; an empty
/// list would inherit the root parent's `root`). `root` is the root token.
const TOKENS: &[(&str, &[&str])] = &[
    ("payments-encrypt-only", &["payments-encrypt-only"]),
    (
        "payments-both",
        &["payments-encrypt-only", "payments-decrypt"],
    ),
    ("read-all-transit-keys", &["read-all-transit-keys"]),
    ("deny-export", &["deny-export"]),
    ("plus-segment", &["plus-segment"]),
    (
        "keys-but-secret",
        &["read-all-transit-keys", "deny-secret-key"],
    ),
    (
        "keys-glob-denied",
        &["read-all-transit-keys", "deny-all-keys"],
    ),
    ("operator", &["operator"]),
    ("default", &["default"]),
    ("missing-policy", &["no-such-policy"]),
];

/// (token, path, capability, allowed).
const MATRIX: &[(&str, &str, Capability, bool)] = &[
    // payments-encrypt-only: exactly one path, exactly one capability.
    (
        "payments-encrypt-only",
        "transit/encrypt/payments",
        Update,
        true,
    ),
    (
        "payments-encrypt-only",
        "transit/encrypt/payments",
        Create,
        false,
    ),
    (
        "payments-encrypt-only",
        "transit/encrypt/payments",
        Read,
        false,
    ),
    (
        "payments-encrypt-only",
        "transit/decrypt/payments",
        Update,
        false,
    ),
    (
        "payments-encrypt-only",
        "transit/encrypt/payroll",
        Update,
        false,
    ),
    (
        "payments-encrypt-only",
        "transit/encrypt/payments/v2",
        Update,
        false,
    ),
    (
        "payments-encrypt-only",
        "transit/encrypt/payment",
        Update,
        false,
    ),
    (
        "payments-encrypt-only",
        "transit/keys/payments",
        Read,
        false,
    ),
    (
        "payments-encrypt-only",
        "transit/encrypt/payments",
        Sudo,
        false,
    ),
    (
        "payments-encrypt-only",
        "auth/token/lookup-self",
        Read,
        true,
    ),
    // Two policies: capabilities from both, nothing more.
    ("payments-both", "transit/encrypt/payments", Update, true),
    ("payments-both", "transit/decrypt/payments", Update, true),
    ("payments-both", "transit/rewrap/payments", Update, false),
    ("payments-both", "transit/decrypt/payments", Read, false),
    // read-all-transit-keys: prefix glob, list on the directory.
    ("read-all-transit-keys", "transit/keys/payments", Read, true),
    ("read-all-transit-keys", "transit/keys/a/b/c", Read, true),
    ("read-all-transit-keys", "transit/keys/", List, true),
    ("read-all-transit-keys", "transit/keys", List, true),
    ("read-all-transit-keys", "transit/keys", Read, false),
    (
        "read-all-transit-keys",
        "transit/keys/payments",
        Update,
        false,
    ),
    (
        "read-all-transit-keys",
        "transit/keys/payments",
        Delete,
        false,
    ),
    (
        "read-all-transit-keys",
        "transit/keys/payments/config",
        Update,
        false,
    ),
    (
        "read-all-transit-keys",
        "transit/export/encryption-key/payments",
        Read,
        false,
    ),
    (
        "read-all-transit-keys",
        "transit/encrypt/payments",
        Update,
        false,
    ),
    // deny-export: broad grant, deny on the export and backup subtrees.
    ("deny-export", "transit/encrypt/payments", Update, true),
    ("deny-export", "transit/encrypt/payments", Create, true),
    ("deny-export", "transit/keys/payments", Delete, true),
    ("deny-export", "transit/keys/", List, true),
    (
        "deny-export",
        "transit/export/encryption-key/payments",
        Read,
        false,
    ),
    (
        "deny-export",
        "transit/export/encryption-key/payments/1",
        Read,
        false,
    ),
    ("deny-export", "transit/backup/payments", Read, false),
    ("deny-export", "transit/export/", List, false),
    ("deny-export", "transit/keys/payments", Patch, false),
    ("deny-export", "transit/keys/payments", Sudo, false),
    ("deny-export", "sys/mounts", Read, false),
    // plus-segment: `+` is exactly one segment; `+` with a trailing glob.
    ("plus-segment", "transit/encrypt/orders", Update, true),
    ("plus-segment", "transit/decrypt/orders", Update, true),
    ("plus-segment", "transit/orders", Update, false),
    ("plus-segment", "transit/a/b/orders", Update, false),
    ("plus-segment", "transit/encrypt/orders/x", Update, false),
    ("plus-segment", "transit/encrypt/orders", Read, false),
    ("plus-segment", "transit/sign/orders/sha2-256", Update, true),
    ("plus-segment", "transit/sign/orders/sha2-512", Update, true),
    ("plus-segment", "transit/sign/orders/sha1", Update, false),
    ("plus-segment", "transit/sign/orders", Update, true),
    ("plus-segment", "transit/sign/payments", Update, false),
    // Exact deny beats the glob grant of another policy.
    ("keys-but-secret", "transit/keys/secret", Read, false),
    ("keys-but-secret", "transit/keys/secret", List, false),
    ("keys-but-secret", "transit/keys/public", Read, true),
    ("keys-but-secret", "transit/keys/secret/more", Read, true),
    // Same pattern in two policies: deny absorbs the grant.
    ("keys-glob-denied", "transit/keys/public", Read, false),
    ("keys-glob-denied", "transit/keys/", List, false),
    ("keys-glob-denied", "auth/token/lookup-self", Read, true),
    // operator: sudo where granted, legacy `policy = "write"`, + in the middle.
    ("operator", "sys/seal", Update, true),
    ("operator", "sys/seal", Sudo, true),
    ("operator", "sys/seal", Read, false),
    ("operator", "sys/policy/transit-user", Create, true),
    ("operator", "sys/policy/transit-user", Delete, true),
    ("operator", "sys/policy/transit-user", Sudo, false),
    ("operator", "sys/policy/", List, true),
    ("operator", "transit/keys/payments/rotate", Update, true),
    ("operator", "transit/keys/payments/trim", Update, false),
    ("operator", "transit/keys/payments", Update, false),
    // default: only the self-service paths.
    ("default", "auth/token/lookup-self", Read, true),
    ("default", "auth/token/renew-self", Update, true),
    ("default", "auth/token/revoke-self", Update, true),
    ("default", "sys/capabilities-self", Update, true),
    ("default", "auth/token/lookup-self", Update, false),
    ("default", "auth/token/create", Update, false),
    ("default", "sys/policy/default", Read, false),
    ("default", "transit/encrypt/payments", Update, false),
    ("default", "transit/keys/", List, false),
    // A token whose policy does not exist gets only `default`.
    ("missing-policy", "transit/encrypt/payments", Update, false),
    ("missing-policy", "auth/token/lookup-self", Read, true),
    // root: everything, including sudo; `deny` is never "granted".
    ("root", "transit/export/encryption-key/payments", Read, true),
    ("root", "sys/seal", Sudo, true),
    ("root", "sys/audit/file", Update, true),
    ("root", "transit/keys/", List, true),
    ("root", "any/path/at/all", Delete, true),
    ("root", "transit/keys/payments", Deny, false),
    // Nobody is granted `deny`.
    (
        "deny-export",
        "transit/export/encryption-key/payments",
        Deny,
        false,
    ),
    (
        "payments-encrypt-only",
        "transit/encrypt/payments",
        Deny,
        false,
    ),
];

struct World {
    storage: Arc<MemoryStorage>,
    auth: Auth,
    root: IssuedToken,
    tokens: BTreeMap<&'static str, IssuedToken>,
}

fn world() -> World {
    let storage = Arc::new(MemoryStorage::new());
    let auth = Auth::open(storage.clone()).expect("open auth");
    for (name, text) in POLICIES {
        auth.put_policy(name, text)
            .unwrap_or_else(|error| panic!("policy {name}: {error}"));
    }
    let root = auth.create_root_token(None).expect("root token");
    let tokens = TOKENS
        .iter()
        .map(|(label, policies)| {
            let request = TokenRequest {
                policies: policies.iter().map(|p| (*p).to_owned()).collect(),
                ..TokenRequest::default()
            };
            let issued = auth
                .create_token(&root.entry, &request)
                .unwrap_or_else(|error| panic!("token {label}: {error}"));
            (*label, issued)
        })
        .collect();
    World {
        storage,
        auth,
        root,
        tokens,
    }
}

impl World {
    fn token(&self, label: &str) -> &str {
        if label == "root" {
            return self.root.token.expose_secret();
        }
        self.tokens
            .get(label)
            .unwrap_or_else(|| panic!("no token labelled {label}"))
            .token
            .expose_secret()
    }
}

#[test]
fn acl_matrix() {
    check_matrix(&world());
}

#[test]
fn acl_matrix_holds_after_reopen() {
    let mut world = world();
    world.auth = Auth::open(world.storage.clone()).expect("reopen auth");
    check_matrix(&world);
}

fn check_matrix(world: &World) {
    let mut failures = Vec::new();
    for &(label, path, capability, expected) in MATRIX {
        let token = world.token(label);
        let allowed = world.auth.authorize(token, path, capability).is_ok();
        if allowed != expected {
            failures.push(format!(
                "{label:<22} {capability:<7} {path:<45} expected {}, got {}",
                verdict(expected),
                verdict(allowed)
            ));
        }
        // authorize_any with the same single capability agrees.
        assert_eq!(
            world.auth.authorize_any(token, path, &[capability]).is_ok(),
            allowed,
            "{label} {capability} {path}"
        );
    }
    let allowed = MATRIX.iter().filter(|row| row.3).count();
    println!(
        "ACL matrix: {} cases ({allowed} allowed, {} denied), {} policies, {} tokens",
        MATRIX.len(),
        MATRIX.len() - allowed,
        POLICIES.len(),
        TOKENS.len() + 1
    );
    assert!(MATRIX.len() >= 60);
    assert!(
        allowed > 20 && MATRIX.len() - allowed > 20,
        "both kinds of case are covered"
    );
    assert!(
        failures.is_empty(),
        "ACL matrix failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn matrix_covers_every_token_and_policy() {
    for (label, _) in TOKENS {
        assert!(
            MATRIX.iter().any(|row| row.0 == *label),
            "token {label} has no case"
        );
    }
    for (name, _) in POLICIES {
        assert!(
            TOKENS.iter().any(|(_, policies)| policies.contains(name)),
            "policy {name} is attached to no token"
        );
    }
}

#[test]
fn capabilities_self_view_matches_the_matrix() {
    let world = world();
    let caps = |label: &str, path: &str| {
        world
            .auth
            .capabilities(world.token(label), path)
            .expect("capabilities")
    };
    assert_eq!(
        caps("payments-encrypt-only", "transit/encrypt/payments"),
        ["update"]
    );
    assert_eq!(
        caps("payments-encrypt-only", "transit/decrypt/payments"),
        ["deny"]
    );
    assert_eq!(
        caps("read-all-transit-keys", "transit/keys/x"),
        ["list", "read"]
    );
    assert_eq!(
        caps("deny-export", "transit/keys/x"),
        ["create", "delete", "list", "read", "update"]
    );
    assert_eq!(
        caps("deny-export", "transit/export/encryption-key/x"),
        ["deny"]
    );
    assert_eq!(caps("keys-but-secret", "transit/keys/secret"), ["deny"]);
    assert_eq!(caps("operator", "sys/seal"), ["sudo", "update"]);
    assert_eq!(caps("root", "transit/anything"), ["root"]);
    assert_eq!(caps("default", "auth/token/lookup-self"), ["read"]);
}

#[test]
fn upsert_needs_create_or_update() {
    let world = world();
    let upsert = [Create, Update];
    let encrypt_only = world.token("payments-encrypt-only");
    assert!(
        world
            .auth
            .authorize_any(encrypt_only, "transit/encrypt/payments", &upsert)
            .is_ok()
    );
    assert!(
        world
            .auth
            .authorize(encrypt_only, "transit/encrypt/payments", Create)
            .is_err(),
        "auto-creating the key needs `create`"
    );
    assert!(
        world
            .auth
            .authorize_any(encrypt_only, "transit/encrypt/other", &upsert)
            .is_err()
    );
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "denied" }
}
