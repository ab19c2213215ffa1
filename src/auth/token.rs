//! Token values: entries, requests, the secret token string, its keyed hash,
//! and the in-memory table the hot path reads.
//!
//! A token string is shown once, in [`IssuedToken`], and never stored: storage
//! and memory hold only its HMAC-SHA256 under a per-install key, and an entry is
//! indexed by that hash and by its accessor.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::acl::Acl;
use super::error::AuthError;
use crate::crypto::random;

/// Default TTL of a token created without one: 768h (32 days), Vault's default.
pub const DEFAULT_TTL_SECS: u64 = 768 * 3600;

/// System maximum TTL: 768h, Vault's default `max_lease_ttl`. Non-periodic tokens
/// cannot live (or be renewed) past creation + this.
pub const MAX_TTL_SECS: u64 = 768 * 3600;

/// Prefix of generated service tokens (Vault's modern `hvs.`).
pub(crate) const TOKEN_PREFIX: &str = "hvs.";

/// Random base62 characters after the prefix (~190 bits).
const TOKEN_RANDOM_CHARS: usize = 32;

/// Length of an accessor (as Vault's).
const ACCESSOR_CHARS: usize = 24;

/// What a token is and may do. Holds no secret: the token string itself is never
/// part of an entry, so `Debug` and serialization cannot leak it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// Public handle: can look up or revoke the token, not use it.
    pub accessor: String,
    /// Sorted, deduplicated, lower-case policy names.
    pub policies: Vec<String>,
    /// The parent's accessor; `None` for orphans.
    pub parent_accessor: Option<String>,
    /// Creation path (`auth/token/create`, `auth/token/create-orphan`,
    /// `auth/token/root`).
    pub path: String,
    /// `token`, `root`, or `token-<name>`.
    pub display_name: String,
    /// Caller-supplied metadata.
    pub meta: BTreeMap<String, String>,
    /// Creation time, Unix seconds.
    pub creation_time_unix: u64,
    /// The TTL granted at creation (Vault's `creation_ttl`); 0 = never expires.
    pub creation_ttl_secs: u64,
    /// The TTL granted at creation or by the last renewal (the lease duration);
    /// 0 = never expires.
    pub ttl_secs: u64,
    /// Hard cap on the lifetime from creation; 0 = none (system max applies).
    pub explicit_max_ttl_secs: u64,
    /// When the token stops working, Unix seconds; `None` = never.
    pub expire_time_unix: Option<u64>,
    /// Time of the last renewal, if any.
    pub last_renewal_time_unix: Option<u64>,
    /// Whether `renew` may extend it.
    pub renewable: bool,
    /// Remaining uses; 0 = unlimited. After the last use the token is revoked.
    pub num_uses: u64,
    /// True when the token has no parent (revoking a parent does not reach it).
    pub orphan: bool,
    /// Periodic tokens: every renewal grants this TTL; 0 = not periodic.
    pub period_secs: u64,
    /// True when the token has the `root` policy.
    pub is_root: bool,
}

impl TokenEntry {
    /// Seconds left before expiry at `now_unix` (0 for non-expiring tokens, as
    /// Vault's `ttl` field).
    pub fn remaining_ttl_secs(&self, now_unix: u64) -> u64 {
        self.expire_time_unix
            .map_or(0, |expire| expire.saturating_sub(now_unix))
    }

    /// True if the token itself has expired at `now_unix` (ancestors aside).
    pub fn is_expired(&self, now_unix: u64) -> bool {
        self.expire_time_unix
            .is_some_and(|expire| now_unix >= expire)
    }
}

/// Parameters of `auth/token/create` (reference §10.2), already decoded from the
/// wire. Durations are in seconds.
#[derive(Default, Clone, Debug)]
pub struct TokenRequest {
    /// A fixed token ID (root or sudo only; must not contain `.`).
    pub id: Option<String>,
    /// Requested policies; empty = the parent's.
    pub policies: Vec<String>,
    /// Do not attach `default`.
    pub no_default_policy: bool,
    /// Orphan token from `auth/token/create` (root or sudo only).
    pub no_parent: bool,
    /// Set by the `auth/token/create-orphan` endpoint: an orphan token without
    /// needing sudo (its ACL check on that path is the gate, as in Vault).
    pub orphan: bool,
    /// TTL; `None`/0 = system default (or the period).
    pub ttl_secs: Option<u64>,
    /// Hard cap on the lifetime.
    pub explicit_max_ttl_secs: Option<u64>,
    /// Periodic token (root or sudo only).
    pub period_secs: Option<u64>,
    /// Default true.
    pub renewable: Option<bool>,
    /// 0 = unlimited.
    pub num_uses: u64,
    /// Shown as `token-<name>`.
    pub display_name: Option<String>,
    /// Stored and shown in lookups.
    pub meta: BTreeMap<String, String>,
}

/// A token string: zeroized on drop, never printed. Read it with
/// [`SecretString::expose_secret`], only to hand it to the client.
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub(crate) fn new(secret: String) -> Self {
        Self(Zeroizing::new(secret))
    }

    /// The secret itself.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

/// A freshly created token: the only time its string is available.
#[derive(Debug)]
pub struct IssuedToken {
    /// The token string to give the client (`hvs.` + 32 base62, or a custom ID).
    pub token: SecretString,
    /// Its entry.
    pub entry: Arc<TokenEntry>,
    /// Vault's warnings (`Policy "x" does not exist`, TTL capped, ...).
    pub warnings: Vec<String>,
}

/// HMAC-SHA256 of a token under the install's key: the only form in which a
/// token is kept.
pub(crate) type TokenHash = [u8; 32];

/// Keyed hashing of tokens. The HMAC state is keyed once (the inner and outer
/// pads are already absorbed), so each hash costs two SHA-256 blocks for a
/// token of normal length. `crypto::HashAlgorithm::hmac` re-keys on every call,
/// which the hot path cannot afford.
pub(crate) struct TokenHasher(Hmac<Sha256>);

impl TokenHasher {
    pub(crate) fn new(key: &[u8]) -> Self {
        // HMAC accepts keys of every length (RFC 2104 §3), so this cannot fail.
        let mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        Self(mac)
    }

    pub(crate) fn hash(&self, token: &str) -> TokenHash {
        let mut mac = self.0.clone();
        mac.update(token.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// `len` characters of `[0-9A-Za-z]`, uniformly (rejection sampling).
pub(crate) fn random_base62(len: usize) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(len);
    let mut buffer = Zeroizing::new([0u8; 64]);
    while out.len() < len {
        random::fill(&mut buffer[..]);
        // 248 = 4 * 62: bytes at or above it would bias the modulo.
        for &byte in buffer.iter().filter(|&&byte| byte < 248) {
            out.push(char::from(ALPHABET[usize::from(byte % 62)]));
            if out.len() == len {
                break;
            }
        }
    }
    out
}

/// A new random token string.
pub(crate) fn generate_token() -> SecretString {
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + TOKEN_RANDOM_CHARS);
    token.push_str(TOKEN_PREFIX);
    token.push_str(&random_base62(TOKEN_RANDOM_CHARS));
    SecretString::new(token)
}

/// A new random accessor.
pub(crate) fn generate_accessor() -> String {
    random_base62(ACCESSOR_CHARS)
}

/// Vault's display name rule: `token-<name>`, characters outside
/// `[a-zA-Z0-9-]` replaced by `-`, trailing `-` removed; `token` when empty.
pub(crate) fn display_name(requested: Option<&str>) -> String {
    match requested {
        Some(name) if !name.is_empty() => {
            let full: String = format!("token-{name}")
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            full.trim_end_matches('-').to_owned()
        }
        _ => "token".to_owned(),
    }
}

/// Vault's `policyutil.SanitizePolicies`: trim, lower-case, drop empties; `root`
/// alone if present; add `default` when asked (never next to `root`); sort and
/// deduplicate.
pub(crate) fn sanitize_policies(names: &[String], add_default: bool) -> Vec<String> {
    let mut set: BTreeSet<String> = names
        .iter()
        .map(|name| name.trim().to_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    if set.contains("root") {
        return vec!["root".to_owned()];
    }
    if add_default {
        set.insert("default".to_owned());
    }
    set.into_iter().collect()
}

/// Vault's `framework.CalculateTTL` with no backend max: the TTL to grant at
/// `now` for a token created at `start`, and warnings when it was capped.
pub(crate) fn calculate_ttl(
    increment: u64,
    current_ttl: u64,
    period: u64,
    explicit_max: u64,
    start: u64,
    now: u64,
) -> Result<(u64, Vec<String>), AuthError> {
    let mut warnings = Vec::new();
    let max_ttl = if explicit_max > 0 && explicit_max < MAX_TTL_SECS {
        explicit_max
    } else {
        MAX_TTL_SECS
    };
    let (mut ttl, max_valid) = if period > 0 {
        let mut period = period;
        if period > max_ttl {
            warnings.push(format!(
                "period of {:?} exceeded the effective max_ttl of {:?}; period value is capped accordingly",
                go_duration(period),
                go_duration(max_ttl)
            ));
            period = max_ttl;
        }
        let max_valid = (explicit_max > 0).then(|| start.saturating_add(explicit_max));
        (period, max_valid)
    } else {
        let ttl = if increment > 0 {
            increment
        } else if current_ttl > 0 {
            current_ttl
        } else {
            DEFAULT_TTL_SECS
        };
        (ttl, Some(start.saturating_add(max_ttl)))
    };
    if let Some(max_valid) = max_valid {
        if max_valid <= now {
            return Err(AuthError::invalid("past the max TTL, cannot renew"));
        }
        let left = max_valid - now;
        if ttl > left {
            warnings.push(format!(
                "TTL of {:?} exceeded the effective max_ttl of {:?}; TTL value is capped accordingly",
                go_duration(ttl),
                go_duration(left)
            ));
            ttl = left;
        }
    }
    Ok((ttl, warnings))
}

/// Seconds as Go prints a `time.Duration` (`768h0m0s`, `1m30s`, `5s`), for
/// Vault-shaped warnings.
pub(crate) fn go_duration(secs: u64) -> String {
    let (hours, minutes, seconds) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// The stored form of a token: its hash and entry, at
/// `auth/token/accessor/<accessor>`.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredToken {
    /// Format version (1).
    pub(crate) version: u32,
    #[serde(with = "serde_bytes")]
    pub(crate) hash: Vec<u8>,
    pub(crate) entry: TokenEntry,
}

/// One token in memory, as the hot path sees it: the entry, and the ACL compiled
/// for its policies (cached per policy generation, so a policy write is seen by
/// the next request).
pub(crate) struct Live {
    pub(crate) entry: Arc<TokenEntry>,
    acl: ArcSwapOption<CachedAcl>,
}

pub(crate) struct CachedAcl {
    pub(crate) generation: u64,
    pub(crate) acl: Arc<Acl>,
}

impl Live {
    fn new(entry: Arc<TokenEntry>) -> Self {
        Self {
            entry,
            acl: ArcSwapOption::empty(),
        }
    }

    /// The cached ACL if it was compiled for policy `generation`.
    pub(crate) fn cached_acl(&self, generation: u64) -> Option<Arc<Acl>> {
        self.acl
            .load()
            .as_ref()
            .filter(|cached| cached.generation == generation)
            .map(|cached| Arc::clone(&cached.acl))
    }

    pub(crate) fn cache_acl(&self, generation: u64, acl: Arc<Acl>) {
        self.acl
            .store(Some(Arc::new(CachedAcl { generation, acl })));
    }
}

/// One token, as management operations see it.
#[derive(Clone)]
pub(crate) struct Slot {
    pub(crate) hash: TokenHash,
    pub(crate) entry: Arc<TokenEntry>,
}

/// A fast multiplicative hasher (FxHash's mixing) for maps whose keys an
/// attacker cannot choose: HMAC outputs and random accessors. SipHash's HashDoS
/// protection buys nothing there and costs a large share of the hot path.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Every token, indexed for the hot path (by hash) and for management (by
/// accessor, and parent -> children for revocation trees).
#[derive(Default)]
pub(crate) struct TokenTable {
    by_hash: FastMap<TokenHash, Arc<Live>>,
    by_accessor: FastMap<String, Slot>,
    children: HashMap<String, BTreeSet<String>>,
}

impl TokenTable {
    pub(crate) fn len(&self) -> usize {
        self.by_accessor.len()
    }

    pub(crate) fn by_hash(&self, hash: &TokenHash) -> Option<&Arc<Live>> {
        self.by_hash.get(hash)
    }

    pub(crate) fn by_accessor(&self, accessor: &str) -> Option<&Slot> {
        self.by_accessor.get(accessor)
    }

    pub(crate) fn accessors(&self) -> impl Iterator<Item = &String> {
        self.by_accessor.keys()
    }

    pub(crate) fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.by_accessor.values()
    }

    /// Adds a token, or replaces the entry of the token with the same accessor
    /// (whose hash must be the same).
    pub(crate) fn insert(&mut self, hash: TokenHash, entry: Arc<TokenEntry>) {
        let accessor = entry.accessor.clone();
        if let Some(old) = self.by_accessor.get(&accessor)
            && let Some(parent) = &old.entry.parent_accessor
            && let Some(siblings) = self.children.get_mut(parent)
        {
            siblings.remove(&accessor);
        }
        if let Some(parent) = &entry.parent_accessor {
            self.children
                .entry(parent.clone())
                .or_default()
                .insert(accessor.clone());
        }
        self.by_hash
            .insert(hash, Arc::new(Live::new(Arc::clone(&entry))));
        self.by_accessor.insert(accessor, Slot { hash, entry });
    }

    /// Removes one token (not its children); returns it.
    pub(crate) fn remove(&mut self, accessor: &str) -> Option<Slot> {
        let slot = self.by_accessor.remove(accessor)?;
        self.by_hash.remove(&slot.hash);
        if let Some(parent) = &slot.entry.parent_accessor
            && let Some(siblings) = self.children.get_mut(parent)
        {
            siblings.remove(accessor);
            if siblings.is_empty() {
                self.children.remove(parent);
            }
        }
        Some(slot)
    }

    /// The direct children of a token.
    pub(crate) fn children_of(&self, accessor: &str) -> Vec<String> {
        self.children
            .get(accessor)
            .map(|children| children.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// `accessor` followed by all its descendants, parents before children.
    pub(crate) fn subtree(&self, accessor: &str) -> Vec<String> {
        let mut out = vec![accessor.to_owned()];
        let mut next = 0;
        while next < out.len() {
            let children = self.children_of(&out[next]);
            out.extend(children);
            next += 1;
        }
        out
    }

    /// True if `entry` is usable at `now`: it has not expired, and every
    /// ancestor still exists and has not expired (children die with their
    /// parent, as Vault revokes the tree when a parent expires).
    pub(crate) fn is_live(&self, entry: &TokenEntry, now: u64) -> bool {
        if entry.is_expired(now) {
            return false;
        }
        let mut parent = entry.parent_accessor.as_deref();
        // The chain is acyclic by construction; the bound guards corrupt storage.
        let mut hops = 0;
        while let Some(accessor) = parent {
            let Some(slot) = self.by_accessor.get(accessor) else {
                return false;
            };
            if slot.entry.is_expired(now) || hops > self.by_accessor.len() {
                return false;
            }
            parent = slot.entry.parent_accessor.as_deref();
            hops += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_accessors_look_like_vaults() {
        let token = generate_token();
        let text = token.expose_secret();
        assert!(text.starts_with("hvs."));
        assert_eq!(text.len(), 4 + TOKEN_RANDOM_CHARS);
        assert!(text[4..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(generate_token().expose_secret(), text);
        let accessor = generate_accessor();
        assert_eq!(accessor.len(), 24);
        assert!(accessor.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(format!("{token:?}"), "SecretString([redacted])");
    }

    #[test]
    fn hash_is_keyed_and_stable() {
        let a = TokenHasher::new(b"key one");
        let b = TokenHasher::new(b"key two");
        assert_eq!(a.hash("hvs.x"), a.hash("hvs.x"));
        assert_ne!(a.hash("hvs.x"), a.hash("hvs.y"));
        assert_ne!(a.hash("hvs.x"), b.hash("hvs.x"));
        // Matches the one-shot HMAC of the crypto layer.
        let expected = crate::crypto::HashAlgorithm::Sha2_256.hmac(b"key one", b"hvs.x");
        assert_eq!(a.hash("hvs.x").to_vec(), expected);
    }

    #[test]
    fn display_names() {
        assert_eq!(display_name(None), "token");
        assert_eq!(display_name(Some("")), "token");
        assert_eq!(display_name(Some("web app")), "token-web-app");
        assert_eq!(display_name(Some("svc!")), "token-svc");
    }

    #[test]
    fn sanitize_like_vault() {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            sanitize_policies(&names(&[" B", "a", "", "b"]), true),
            ["a", "b", "default"]
        );
        assert_eq!(sanitize_policies(&names(&["a", "root"]), true), ["root"]);
        assert_eq!(sanitize_policies(&names(&["a"]), false), ["a"]);
    }

    #[test]
    fn ttl_calculation() {
        let now = 1_000_000;
        // Default TTL.
        assert_eq!(
            calculate_ttl(0, 0, 0, 0, now, now).map(|r| r.0).ok(),
            Some(DEFAULT_TTL_SECS)
        );
        // Requested TTL above the system max is capped, with a warning.
        let (ttl, warnings) = calculate_ttl(0, MAX_TTL_SECS + 10, 0, 0, now, now).expect("ttl");
        assert_eq!(ttl, MAX_TTL_SECS);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("768h0m0s"), "{warnings:?}");
        // Explicit max caps.
        assert_eq!(
            calculate_ttl(0, 3600, 0, 60, now, now).map(|r| r.0).ok(),
            Some(60)
        );
        // Renewal later is capped by what is left of the explicit max.
        assert_eq!(
            calculate_ttl(3600, 3600, 0, 100, now, now + 40)
                .map(|r| r.0)
                .ok(),
            Some(60)
        );
        // Past the max.
        assert!(calculate_ttl(10, 10, 0, 100, now, now + 100).is_err());
        // Periodic: the period, capped by explicit max from creation only.
        assert_eq!(
            calculate_ttl(0, 0, 300, 0, now, now + 5 * MAX_TTL_SECS)
                .map(|r| r.0)
                .ok(),
            Some(300)
        );
        assert_eq!(
            calculate_ttl(0, 0, 300, 1000, now, now + 900)
                .map(|r| r.0)
                .ok(),
            Some(100)
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(90), "1m30s");
        assert_eq!(go_duration(DEFAULT_TTL_SECS), "768h0m0s");
    }
}
