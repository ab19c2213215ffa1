//! Capabilities and compiled ACLs: which capabilities a set of policies grants on
//! a request path.
//!
//! An [`Acl`] is built once per distinct set of policy names (and cached by
//! [`super::Auth`]), then evaluated per request with no allocation except for
//! `list` checks on a path without its trailing `/`. The rules are Vault's
//! (`vault/acl.go`, reference §11):
//!
//! 1. Rules with the same pattern from several policies are merged: capabilities
//!    are unioned, and a `deny` on that pattern in any policy leaves only `deny`.
//! 2. An exact rule for the path wins outright. For `list`, an exact rule on the
//!    path without its trailing `/` counts as exact too.
//! 3. Otherwise, among the matching glob (`*` at the end: prefix) and segment
//!    (`+` = one segment) rules, only the highest-priority one applies; see
//!    [`Candidate::priority`].
//! 4. `deny` in the winning rule denies everything; no matching rule denies
//!    (deny by default). The `root` policy allows everything.
//!
//! Note what 1–3 imply, as in Vault: a `deny` only wins over rules with the *same*
//! pattern. `deny` on `transit/keys/*` does not override an exact grant on
//! `transit/keys/orders` from another policy, because the exact rule wins first.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

/// One of Vault's ACL capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    /// `create`: write to a target that does not exist yet (POST/PUT).
    Create,
    /// `delete`: DELETE.
    Delete,
    /// `deny`: never granted; in a policy it overrides every other capability.
    Deny,
    /// `list`: LIST (checked on the path with a trailing `/`).
    List,
    /// `patch`: PATCH.
    Patch,
    /// `read`: GET.
    Read,
    /// `sudo`: required in addition on root-protected paths.
    Sudo,
    /// `update`: write to an existing target (POST/PUT).
    Update,
}

impl Capability {
    /// Every capability, in alphabetical order.
    pub const ALL: [Capability; 8] = [
        Self::Create,
        Self::Delete,
        Self::Deny,
        Self::List,
        Self::Patch,
        Self::Read,
        Self::Sudo,
        Self::Update,
    ];

    /// Vault's name for the capability (`"create"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Delete => "delete",
            Self::Deny => "deny",
            Self::List => "list",
            Self::Patch => "patch",
            Self::Read => "read",
            Self::Sudo => "sudo",
            Self::Update => "update",
        }
    }

    fn bit(self) -> u16 {
        match self {
            Self::Create => Caps::CREATE,
            Self::Delete => Caps::DELETE,
            Self::Deny => Caps::DENY,
            Self::List => Caps::LIST,
            Self::Patch => Caps::PATCH,
            Self::Read => Caps::READ,
            Self::Sudo => Caps::SUDO,
            Self::Update => Caps::UPDATE,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The name is not one of Vault's capabilities.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid capability {0:?}")]
pub struct UnknownCapability(pub String);

impl FromStr for Capability {
    type Err = UnknownCapability;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|capability| capability.name() == name)
            .ok_or_else(|| UnknownCapability(name.to_owned()))
    }
}

/// A set of capabilities as Vault's bitmap. Besides [`Capability`] it carries
/// `subscribe` and `recover`, which newer Vault policies may name: they parse,
/// show in [`Caps::names`], and gate nothing in cipherd.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Caps(u16);

impl Caps {
    const CREATE: u16 = 1 << 0;
    const READ: u16 = 1 << 1;
    const UPDATE: u16 = 1 << 2;
    const DELETE: u16 = 1 << 3;
    const LIST: u16 = 1 << 4;
    const SUDO: u16 = 1 << 5;
    const PATCH: u16 = 1 << 6;
    const DENY: u16 = 1 << 7;
    const SUBSCRIBE: u16 = 1 << 8;
    const RECOVER: u16 = 1 << 9;

    /// Names and bits, sorted by name (the order `sys/capabilities` reports).
    const NAMES: [(&'static str, u16); 10] = [
        ("create", Self::CREATE),
        ("delete", Self::DELETE),
        ("deny", Self::DENY),
        ("list", Self::LIST),
        ("patch", Self::PATCH),
        ("read", Self::READ),
        ("recover", Self::RECOVER),
        ("subscribe", Self::SUBSCRIBE),
        ("sudo", Self::SUDO),
        ("update", Self::UPDATE),
    ];

    /// Only `deny`.
    pub(crate) const fn deny() -> Self {
        Self(Self::DENY)
    }

    /// The bit for a capability name as written in a policy.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(known, _)| *known == name)
            .map(|&(_, bit)| Self(bit))
    }

    /// Vault's legacy `policy = "..."` shorthand.
    pub(crate) fn legacy(policy: &str) -> Option<Self> {
        let crud = Self::CREATE | Self::READ | Self::UPDATE | Self::DELETE | Self::LIST;
        match policy {
            "deny" => Some(Self(Self::DENY)),
            "read" => Some(Self(Self::READ | Self::LIST)),
            "write" => Some(Self(crud)),
            "sudo" => Some(Self(crud | Self::SUDO)),
            _ => None,
        }
    }

    pub(crate) fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub(crate) fn is_deny(self) -> bool {
        self.0 & Self::DENY != 0
    }

    /// Vault's merge of two rules with the same pattern: `deny` absorbs everything.
    fn merge(self, other: Self) -> Self {
        if self.is_deny() || other.is_deny() {
            Self::deny()
        } else {
            self.union(other)
        }
    }

    /// True if `capability` is granted: its bit is set and `deny` is not.
    fn grants(self, capability: Capability) -> bool {
        capability != Capability::Deny && !self.is_deny() && self.0 & capability.bit() != 0
    }

    /// The names of the capabilities in the set, sorted; `["deny"]` when `deny`
    /// is set or the set is empty (as `sys/capabilities` reports them).
    pub(crate) fn names(self) -> Vec<String> {
        if self.is_deny() || self.0 == 0 {
            return vec!["deny".to_owned()];
        }
        Self::NAMES
            .iter()
            .filter(|(_, bit)| self.0 & bit != 0)
            .map(|(name, _)| (*name).to_owned())
            .collect()
    }
}

/// One `path "<pattern>" { ... }` rule of a parsed policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PathRule {
    /// The pattern as written, without a leading `/`.
    pub(crate) pattern: String,
    /// What the rule grants (only `deny` when it denies).
    pub(crate) caps: Caps,
}

/// The compiled ACL of one set of policies.
#[derive(Debug, Default)]
pub(crate) struct Acl {
    root: bool,
    exact: HashMap<Box<str>, Caps>,
    /// Prefix (`...*`) rules without `+`, keyed by the prefix, longest first.
    prefix: Vec<(Box<str>, Caps)>,
    /// Rules containing `+`, with or without a trailing `*`.
    segment: Vec<SegmentRule>,
}

#[derive(Debug)]
struct SegmentRule {
    /// The pattern without its trailing `*`.
    path: Box<str>,
    /// `path` split on `/`.
    parts: Box<[Box<str>]>,
    is_prefix: bool,
    /// Byte index of the first `+` in the pattern.
    first_wildcard: usize,
    /// Number of `+` segments.
    wildcards: usize,
    caps: Caps,
}

/// A matching non-exact rule, with what Vault ranks it by.
struct Candidate<'a> {
    first_wildcard: usize,
    is_prefix: bool,
    wildcards: usize,
    path: &'a str,
    caps: Caps,
}

impl Candidate<'_> {
    /// Vault's priority among matching glob and segment rules (reference §11):
    /// `a` ranks below `b` when, in order, its first `+` or `*` comes earlier; it
    /// ends in `*` and `b` does not; it has more `+` segments; it is shorter; it
    /// sorts lexicographically smaller.
    fn priority(&self, other: &Self) -> Ordering {
        self.first_wildcard
            .cmp(&other.first_wildcard)
            .then_with(|| other.is_prefix.cmp(&self.is_prefix))
            .then_with(|| other.wildcards.cmp(&self.wildcards))
            .then_with(|| self.path.len().cmp(&other.path.len()))
            .then_with(|| self.path.cmp(other.path))
    }
}

impl Acl {
    /// The ACL of the `root` policy: everything is allowed.
    pub(crate) fn root() -> Self {
        Self {
            root: true,
            ..Self::default()
        }
    }

    /// Merges the rules of several policies (rule 1 of the module doc).
    /// Templated patterns (`{{identity...}}`) are skipped: cipherd has no
    /// identity store, and Vault drops them for tokens without an entity.
    pub(crate) fn build<'a>(rules: impl IntoIterator<Item = &'a PathRule>) -> Self {
        let mut merged: BTreeMap<&str, Caps> = BTreeMap::new();
        for rule in rules {
            if rule.pattern.contains("{{") {
                continue;
            }
            merged
                .entry(rule.pattern.as_str())
                .and_modify(|caps| *caps = caps.merge(rule.caps))
                .or_insert(rule.caps);
        }
        let mut acl = Self::default();
        for (pattern, caps) in merged {
            if let Some(first_wildcard) = pattern.find('+') {
                let (path, is_prefix) = match pattern.strip_suffix('*') {
                    Some(path) => (path, true),
                    None => (pattern, false),
                };
                let parts: Box<[Box<str>]> = path.split('/').map(Box::from).collect();
                let wildcards = parts.iter().filter(|part| &***part == "+").count();
                acl.segment.push(SegmentRule {
                    path: path.into(),
                    parts,
                    is_prefix,
                    first_wildcard,
                    wildcards,
                    caps,
                });
            } else if let Some(prefix) = pattern.strip_suffix('*') {
                acl.prefix.push((prefix.into(), caps));
            } else {
                acl.exact.insert(pattern.into(), caps);
            }
        }
        acl.prefix.sort_by_key(|(prefix, _)| Reverse(prefix.len()));
        acl
    }

    /// True if `capability` is allowed on `path` (no `v1/` prefix). `list` is
    /// checked on `path` with a trailing `/`, as Vault's router does.
    pub(crate) fn allows(&self, path: &str, capability: Capability) -> bool {
        if self.root {
            return capability != Capability::Deny;
        }
        let path = path.trim_start_matches('/');
        let caps = if capability == Capability::List {
            if path.ends_with('/') {
                self.caps(path, true)
            } else {
                self.caps(&format!("{path}/"), true)
            }
        } else {
            self.caps(path, false)
        };
        caps.grants(capability)
    }

    /// What `sys/capabilities-self` reports for `path`: `["root"]`, the sorted
    /// names, or `["deny"]`. Like Vault, an exact rule on the path without its
    /// trailing `/` counts.
    pub(crate) fn capability_names(&self, path: &str) -> Vec<String> {
        if self.root {
            return vec!["root".to_owned()];
        }
        self.caps(path.trim_start_matches('/'), true).names()
    }

    /// The capabilities of the winning rule for `path` (empty when none matches).
    fn caps(&self, path: &str, list_fallback: bool) -> Caps {
        if let Some(caps) = self.exact.get(path) {
            return *caps;
        }
        if list_fallback
            && let Some(trimmed) = path.strip_suffix('/')
            && let Some(caps) = self.exact.get(trimmed)
        {
            return *caps;
        }
        self.non_exact(path).unwrap_or_default()
    }

    fn non_exact(&self, path: &str) -> Option<Caps> {
        // The longest matching prefix rule is the only prefix candidate.
        let mut best = self
            .prefix
            .iter()
            .find(|(prefix, _)| path.starts_with(&**prefix))
            .map(|(prefix, caps)| Candidate {
                first_wildcard: prefix.len(),
                is_prefix: true,
                wildcards: 0,
                path: prefix,
                caps: *caps,
            });
        if self.segment.is_empty() {
            return best.map(|candidate| candidate.caps);
        }
        let path_segments = path.bytes().filter(|&b| b == b'/').count() + 1;
        for rule in &self.segment {
            if !rule.matches(path, path_segments) {
                continue;
            }
            let candidate = Candidate {
                first_wildcard: rule.first_wildcard,
                is_prefix: rule.is_prefix,
                wildcards: rule.wildcards,
                path: &rule.path,
                caps: rule.caps,
            };
            if best
                .as_ref()
                .is_none_or(|current| current.priority(&candidate) == Ordering::Less)
            {
                best = Some(candidate);
            }
        }
        best.map(|candidate| candidate.caps)
    }
}

impl SegmentRule {
    /// Vault's segment match: `+` matches any one segment, other segments match
    /// literally, and with a trailing `*` the last pattern segment is a prefix of
    /// the request's segment and further request segments are allowed.
    fn matches(&self, path: &str, path_segments: usize) -> bool {
        if path_segments < self.parts.len()
            || (!self.is_prefix && path_segments != self.parts.len())
        {
            return false;
        }
        let last = self.parts.len() - 1;
        self.parts
            .iter()
            .zip(path.split('/'))
            .enumerate()
            .all(|(i, (part, segment))| {
                &**part == "+"
                    || &**part == segment
                    || (self.is_prefix && i == last && segment.starts_with(&**part))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, caps: &[&str]) -> PathRule {
        let caps = caps
            .iter()
            .map(|name| Caps::parse(name).expect("known capability"))
            .fold(Caps::default(), Caps::union);
        let caps = if caps.is_deny() { Caps::deny() } else { caps };
        PathRule {
            pattern: pattern.to_owned(),
            caps,
        }
    }

    fn acl(rules: &[PathRule]) -> Acl {
        Acl::build(rules)
    }

    #[test]
    fn capability_names_round_trip() {
        for capability in Capability::ALL {
            assert_eq!(capability.name().parse::<Capability>(), Ok(capability));
            assert_eq!(capability.to_string(), capability.name());
        }
        assert_eq!(
            "Read".parse::<Capability>(),
            Err(UnknownCapability("Read".to_owned()))
        );
    }

    #[test]
    fn deny_by_default() {
        let acl = acl(&[]);
        for capability in Capability::ALL {
            assert!(!acl.allows("transit/encrypt/a", capability));
        }
        assert_eq!(acl.capability_names("anything"), ["deny"]);
    }

    #[test]
    fn exact_match_only_matches_itself() {
        let acl = acl(&[rule("transit/encrypt/payments", &["update"])]);
        assert!(acl.allows("transit/encrypt/payments", Capability::Update));
        assert!(!acl.allows("transit/encrypt/payments", Capability::Read));
        assert!(!acl.allows("transit/encrypt/payments/x", Capability::Update));
        assert!(!acl.allows("transit/encrypt/payment", Capability::Update));
        assert!(!acl.allows("transit/encrypt/paymentsx", Capability::Update));
        // A leading slash on the request path is ignored, as in Vault.
        assert!(acl.allows("/transit/encrypt/payments", Capability::Update));
    }

    #[test]
    fn glob_is_a_plain_prefix() {
        let acl = acl(&[rule("transit/keys/ord*", &["read"])]);
        assert!(acl.allows("transit/keys/orders", Capability::Read));
        assert!(acl.allows("transit/keys/ord", Capability::Read));
        assert!(acl.allows("transit/keys/ord/x", Capability::Read));
        assert!(!acl.allows("transit/keys/or", Capability::Read));
        assert!(!acl.allows("transit/keys/other", Capability::Read));
    }

    #[test]
    fn longest_prefix_wins() {
        let acl = acl(&[
            rule("transit/*", &["read"]),
            rule("transit/keys/*", &["update"]),
        ]);
        assert!(acl.allows("transit/keys/a", Capability::Update));
        assert!(!acl.allows("transit/keys/a", Capability::Read));
        assert!(acl.allows("transit/export/a", Capability::Read));
    }

    #[test]
    fn plus_matches_exactly_one_segment() {
        let acl = acl(&[rule("transit/+/orders", &["update"])]);
        assert!(acl.allows("transit/encrypt/orders", Capability::Update));
        assert!(acl.allows("transit/decrypt/orders", Capability::Update));
        assert!(!acl.allows("transit/orders", Capability::Update));
        assert!(!acl.allows("transit/a/b/orders", Capability::Update));
        assert!(!acl.allows("transit/encrypt/orders/x", Capability::Update));
        assert!(!acl.allows("transit/encrypt/ordersx", Capability::Update));
    }

    #[test]
    fn plus_with_trailing_glob() {
        let acl = acl(&[rule("transit/+/ord*", &["update"])]);
        assert!(acl.allows("transit/encrypt/orders", Capability::Update));
        assert!(acl.allows("transit/encrypt/ord/more/segments", Capability::Update));
        assert!(!acl.allows("transit/encrypt/other", Capability::Update));
        assert!(!acl.allows("transit/encrypt", Capability::Update));
    }

    #[test]
    fn exact_beats_glob_even_with_deny_on_the_glob() {
        // Vault: the exact rule wins first, so a deny on a glob in another policy
        // does not reach this path.
        let acl = acl(&[
            rule("transit/keys/orders", &["read"]),
            rule("transit/keys/*", &["deny"]),
        ]);
        assert!(acl.allows("transit/keys/orders", Capability::Read));
        assert!(!acl.allows("transit/keys/other", Capability::Read));
    }

    #[test]
    fn exact_deny_beats_glob_grant() {
        let acl = acl(&[
            rule("transit/keys/*", &["read", "list"]),
            rule("transit/keys/orders", &["deny"]),
        ]);
        assert!(!acl.allows("transit/keys/orders", Capability::Read));
        assert!(acl.allows("transit/keys/other", Capability::Read));
        assert_eq!(acl.capability_names("transit/keys/orders"), ["deny"]);
    }

    #[test]
    fn same_pattern_is_merged_and_deny_absorbs() {
        let union = acl(&[rule("a/b", &["read"]), rule("a/b", &["update"])]);
        assert!(union.allows("a/b", Capability::Read));
        assert!(union.allows("a/b", Capability::Update));
        assert_eq!(union.capability_names("a/b"), ["read", "update"]);

        let denied = acl(&[
            rule("a/*", &["read", "sudo"]),
            rule("a/*", &["deny"]),
            rule("a/*", &["update"]),
        ]);
        for capability in Capability::ALL {
            assert!(!denied.allows("a/x", capability), "{capability}");
        }
    }

    #[test]
    fn priority_first_wildcard_position() {
        // `foo/a*` (glob at 5) beats `foo/+` (plus at 4).
        let acl = acl(&[rule("foo/+", &["read"]), rule("foo/a*", &["update"])]);
        assert!(acl.allows("foo/abc", Capability::Update));
        assert!(!acl.allows("foo/abc", Capability::Read));
        assert!(acl.allows("foo/xyz", Capability::Read));
        // `foo/bar/+/baz` beats `foo/+/bar/baz`.
        let acl2 = self::acl(&[
            rule("foo/+/bar/baz", &["read"]),
            rule("foo/bar/+/baz", &["update"]),
        ]);
        assert!(acl2.allows("foo/bar/bar/baz", Capability::Update));
        assert!(!acl2.allows("foo/bar/bar/baz", Capability::Read));
    }

    #[test]
    fn priority_non_glob_beats_glob_at_same_position() {
        // `foo/+` beats `foo/*`; `foo/+/bar` beats `foo/+/ba*`.
        let acl = acl(&[rule("foo/*", &["read"]), rule("foo/+", &["update"])]);
        assert!(acl.allows("foo/x", Capability::Update));
        assert!(!acl.allows("foo/x", Capability::Read));
        assert!(acl.allows("foo/x/y", Capability::Read));
        let acl2 = self::acl(&[rule("foo/+/ba*", &["read"]), rule("foo/+/bar", &["update"])]);
        assert!(acl2.allows("foo/x/bar", Capability::Update));
        assert!(!acl2.allows("foo/x/bar", Capability::Read));
        assert!(acl2.allows("foo/x/baz", Capability::Read));
    }

    #[test]
    fn priority_fewer_wildcards_then_longer() {
        let acl = acl(&[
            rule("foo/+/+/baz", &["read"]),
            rule("foo/+/x/baz", &["update"]),
        ]);
        assert!(acl.allows("foo/a/x/baz", Capability::Update));
        assert!(!acl.allows("foo/a/x/baz", Capability::Read));
        assert!(acl.allows("foo/a/y/baz", Capability::Read));
        // Same position, both globs, same wildcards: the longer one wins.
        let acl2 = self::acl(&[
            rule("foo/+/bar/b*", &["read"]),
            rule("foo/+/bar/ba*", &["update"]),
        ]);
        assert!(acl2.allows("foo/x/bar/baz", Capability::Update));
        assert!(!acl2.allows("foo/x/bar/baz", Capability::Read));
        assert!(acl2.allows("foo/x/bar/bz", Capability::Read));
    }

    #[test]
    fn list_uses_trailing_slash_and_exact_fallback() {
        let glob = acl(&[rule("transit/keys/*", &["list"])]);
        assert!(glob.allows("transit/keys", Capability::List));
        assert!(glob.allows("transit/keys/", Capability::List));
        let exact = acl(&[rule("transit/keys", &["list"])]);
        assert!(exact.allows("transit/keys", Capability::List));
        assert!(exact.allows("transit/keys/", Capability::List));
        let dir = acl(&[rule("transit/keys/", &["list"])]);
        assert!(dir.allows("transit/keys", Capability::List));
        // Read is not normalised.
        assert!(!dir.allows("transit/keys", Capability::Read));
    }

    #[test]
    fn root_allows_everything_but_deny() {
        let acl = Acl::root();
        assert!(acl.allows("sys/seal", Capability::Sudo));
        assert!(acl.allows("anything/at/all", Capability::Delete));
        assert!(!acl.allows("anything", Capability::Deny));
        assert_eq!(acl.capability_names("x"), ["root"]);
    }

    #[test]
    fn templated_patterns_never_match() {
        let acl = acl(&[rule("identity/entity/id/{{identity.entity.id}}", &["read"])]);
        assert!(!acl.allows(
            "identity/entity/id/{{identity.entity.id}}",
            Capability::Read
        ));
    }

    #[test]
    fn capability_names_are_sorted() {
        let acl = acl(&[rule(
            "a",
            &["update", "sudo", "create", "read", "subscribe"],
        )]);
        assert_eq!(
            acl.capability_names("a"),
            ["create", "read", "subscribe", "sudo", "update"]
        );
    }
}
