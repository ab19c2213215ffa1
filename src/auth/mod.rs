//! Tokens and ACL policies: who may do what. Deny by default.
//!
//! [`Auth`] owns every token (stored only as a keyed hash, with a public
//! accessor, TTL, use count and parent) and every ACL policy (HCL text, parsed
//! and compiled to an ACL). The service layer asks it one question per request:
//! may this token use this capability on this path ([`Auth::authorize`])? The
//! answer comes from memory: tokens and compiled ACLs are loaded at
//! [`Auth::open`] and kept in maps; storage is written only when something
//! changes (create, renew, revoke, a use of a use-limited token, a policy write).
//!
//! # What this module does not do
//!
//! It knows nothing of HTTP, gRPC or JSON wire formats: paths arrive as Vault
//! request paths without `v1/` (`transit/encrypt/payments`), capabilities as
//! [`Capability`], durations as seconds, and results leave as Rust values. It
//! does not decide which capability a request needs (the service does), does
//! not audit, and never logs or returns a token string except once, in
//! [`IssuedToken`]. It does no I/O of its own: everything persists through
//! [`Storage`] (the barrier), under `auth/token/` and `sys/policy/`.
//!
//! # Rules
//!
//! ACL semantics are Vault's (reference §11); see `acl.rs` for the exact
//! resolution order and `policy.rs` for the accepted language. Token semantics
//! follow reference §10.2 and Vault's token store: child tokens are revoked with
//! their parent (and stop working as soon as an ancestor expires), the last use
//! of a use-limited token revokes it. Unknown, expired, revoked and used-up
//! tokens get [`AuthError::UnknownToken`], ACL denials
//! [`AuthError::PermissionDenied`]: both say only "permission denied" (the REST
//! bodies differ in shape, as OpenBao's do).
//!
//! # Storage layout
//!
//! | path | value |
//! |---|---|
//! | `auth/token/salt` | 32 random bytes: the HMAC-SHA256 key for token hashes |
//! | `auth/token/accessor/<accessor>` | CBOR: token hash + [`TokenEntry`] |
//! | `sys/policy/<name>` | CBOR: policy name + HCL text |
//!
//! A token whose parent record is missing is dead: revoking a tree deletes the
//! top record first, so one write revokes the whole tree even if deleting the
//! descendants' records fails (they are pruned at the next open).

mod acl;
mod clock;
mod error;
mod policy;
mod token;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

pub use acl::{Capability, UnknownCapability};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::AuthError;
pub use token::{
    DEFAULT_TTL_SECS, IssuedToken, MAX_TTL_SECS, SecretString, TokenEntry, TokenRequest,
};

use acl::{Acl, PathRule};
use token::{Live, Slot, StoredToken, TokenHash, TokenHasher, TokenTable};

use crate::crypto::SecretBytes;
use crate::storage::{Storage, StorageError};

const SALT_PATH: &str = "auth/token/salt";
const TOKEN_DIR: &str = "auth/token/accessor/";
const POLICY_DIR: &str = "sys/policy/";
const SALT_LEN: usize = 32;
/// Distinct policy sets whose compiled ACL is cached; past this the cache restarts.
const ACL_CACHE_LIMIT: usize = 4096;

/// Tokens and policies. `Send + Sync`; share it behind an `Arc`. Reads (the hot
/// path) take only read locks; writes are serialized per kind.
pub struct Auth {
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    hasher: TokenHasher,
    tokens: RwLock<TokenTable>,
    policies: ArcSwap<PolicySet>,
    /// Serializes token mutations (storage write + table update).
    token_writes: Mutex<()>,
    /// Serializes policy mutations.
    policy_writes: Mutex<()>,
}

/// Every stored policy at one moment, plus the ACLs compiled from it.
struct PolicySet {
    /// Bumped by every policy write: tokens' cached ACLs from an older
    /// generation are recompiled.
    generation: u64,
    /// By name; `root` is built in and not in here.
    entries: BTreeMap<String, Arc<PolicyEntry>>,
    /// Compiled ACLs by (sorted) policy-name list, valid for this set only.
    acls: RwLock<HashMap<Vec<String>, Arc<Acl>>>,
}

struct PolicyEntry {
    text: String,
    rules: Vec<PathRule>,
}

#[derive(Serialize, Deserialize)]
struct StoredPolicy {
    name: String,
    text: String,
}

impl PolicySet {
    fn new(generation: u64, entries: BTreeMap<String, Arc<PolicyEntry>>) -> Self {
        Self {
            generation,
            entries,
            acls: RwLock::new(HashMap::new()),
        }
    }

    fn compile(&self, names: &[String]) -> Acl {
        if names.iter().any(|name| name == "root") {
            return Acl::root();
        }
        Acl::build(
            names
                .iter()
                .filter_map(|name| self.entries.get(name))
                .flat_map(|entry| entry.rules.iter()),
        )
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.read().len())
            .field("policies", &self.policies.load().entries.len())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Loads tokens and policies from `storage` (creating the token-hash key and
    /// the `default` policy when absent), with the system clock.
    pub fn open(storage: Arc<dyn Storage>) -> Result<Self, AuthError> {
        Self::open_with_clock(storage, Arc::new(SystemClock))
    }

    /// [`Auth::open`] with an explicit clock (tests use [`ManualClock`]).
    pub fn open_with_clock(
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AuthError> {
        let key = load_or_create_salt(storage.as_ref())?;
        let hasher = TokenHasher::new(key.expose_secret());
        let policies = load_policies(storage.as_ref())?;
        let tokens = load_tokens(storage.as_ref())?;
        Ok(Self {
            storage,
            clock,
            hasher,
            tokens: RwLock::new(tokens),
            policies: ArcSwap::from_pointee(PolicySet::new(0, policies)),
            token_writes: Mutex::new(()),
            policy_writes: Mutex::new(()),
        })
    }

    // ----- tokens -------------------------------------------------------------

    /// A root token: policies `["root"]`, no TTL, orphan, not renewable. `id`
    /// fixes the token string (`--dev-root-token-id`); it must not contain `.`.
    pub fn create_root_token(&self, id: Option<&str>) -> Result<IssuedToken, AuthError> {
        let _writes = self.token_writes.lock();
        let now = self.clock.now_unix();
        let token = match id.filter(|id| !id.is_empty()) {
            Some(id) => custom_token(id)?,
            None => token::generate_token(),
        };
        let entry = TokenEntry {
            accessor: self.new_accessor(),
            policies: vec!["root".to_owned()],
            parent_accessor: None,
            path: "auth/token/root".to_owned(),
            display_name: "root".to_owned(),
            meta: BTreeMap::new(),
            creation_time_unix: now,
            creation_ttl_secs: 0,
            ttl_secs: 0,
            explicit_max_ttl_secs: 0,
            expire_time_unix: None,
            last_renewal_time_unix: None,
            renewable: false,
            num_uses: 0,
            orphan: true,
            period_secs: 0,
            is_root: true,
        };
        self.issue(token, entry, Vec::new())
    }

    /// `auth/token/create` (and `create-orphan` when `request.orphan`), on behalf
    /// of `parent`, the caller's token (already authorized for the endpoint).
    /// Follows Vault: without root or `sudo` on the endpoint path, the child's
    /// policies must be a subset of the parent's (plus `default`), and `id`,
    /// `no_parent` and `period` are refused; only a root parent can create a
    /// root token; `default` is added unless `no_default_policy`.
    pub fn create_token(
        &self,
        parent: &TokenEntry,
        request: &TokenRequest,
    ) -> Result<IssuedToken, AuthError> {
        let _writes = self.token_writes.lock();
        let now = self.clock.now_unix();
        let parent = {
            let tokens = self.tokens.read();
            let slot = tokens
                .by_accessor(&parent.accessor)
                .ok_or(AuthError::UnknownToken)?;
            if !tokens.is_live(&slot.entry, now) {
                return Err(AuthError::UnknownToken);
            }
            Arc::clone(&slot.entry)
        };
        let endpoint = if request.orphan {
            "auth/token/create-orphan"
        } else {
            "auth/token/create"
        };
        let parent_acl = self.acl_for(&parent.policies);
        let is_sudo = parent_acl.allows(endpoint, Capability::Sudo);

        let token = match request.id.as_deref().filter(|id| !id.is_empty()) {
            Some(id) => {
                let token = custom_token(id)?;
                if !is_sudo {
                    return Err(AuthError::invalid(
                        "root or sudo privileges required to specify token id",
                    ));
                }
                token
            }
            None => token::generate_token(),
        };
        if request.no_parent && !is_sudo {
            return Err(AuthError::invalid(
                "root or sudo privileges required to create orphan token",
            ));
        }
        let period = request.period_secs.unwrap_or(0);
        if period > 0 && !is_sudo {
            return Err(AuthError::invalid(
                "root or sudo privileges required to create periodic token",
            ));
        }

        // Policies.
        let requested = token::sanitize_policies(&request.policies, false);
        let mut policies = if requested.is_empty() {
            parent.policies.clone()
        } else {
            requested
        };
        if !is_sudo {
            let allowed = token::sanitize_policies(&parent.policies, true);
            if !policies.iter().all(|name| allowed.contains(name)) {
                return Err(AuthError::invalid(
                    "child policies must be subset of parent",
                ));
            }
        }
        policies = token::sanitize_policies(&policies, !request.no_default_policy);
        if request.no_default_policy {
            policies.retain(|name| name != "default");
        }
        let is_root = policies.iter().any(|name| name == "root");
        if is_root && !parent.is_root {
            return Err(AuthError::invalid(
                "root tokens may not be created without parent token being root",
            ));
        }

        // TTL (Vault: root tokens without a TTL never expire).
        let explicit_max = request.explicit_max_ttl_secs.unwrap_or(0);
        let requested_ttl = request.ttl_secs.unwrap_or(0);
        let mut warnings = Vec::new();
        let mut ttl = requested_ttl;
        if period > 0 || requested_ttl > 0 || !is_root {
            let (granted, ttl_warnings) =
                token::calculate_ttl(0, requested_ttl, period, explicit_max, now, now)?;
            ttl = granted;
            warnings.extend(ttl_warnings);
        }
        if ttl == 0 && explicit_max > 0 {
            ttl = explicit_max;
        }
        let mut renewable = request.renewable.unwrap_or(true);
        if ttl == 0 {
            if parent.expire_time_unix.is_some() {
                return Err(AuthError::invalid(
                    "expiring root tokens cannot create non-expiring root tokens",
                ));
            }
            renewable = false;
        }

        {
            let set = self.policies.load();
            for name in &policies {
                if name != "root" && !set.entries.contains_key(name) {
                    warnings.push(format!("Policy {name:?} does not exist"));
                }
            }
        }

        let orphan = request.no_parent || request.orphan;
        let entry = TokenEntry {
            accessor: self.new_accessor(),
            policies,
            parent_accessor: (!orphan).then(|| parent.accessor.clone()),
            path: endpoint.to_owned(),
            display_name: token::display_name(request.display_name.as_deref()),
            meta: request.meta.clone(),
            creation_time_unix: now,
            creation_ttl_secs: ttl,
            ttl_secs: ttl,
            explicit_max_ttl_secs: explicit_max,
            expire_time_unix: (ttl > 0).then(|| now.saturating_add(ttl)),
            last_renewal_time_unix: None,
            renewable,
            num_uses: request.num_uses,
            orphan,
            period_secs: period,
            is_root,
        };
        self.issue(token, entry, warnings)
    }

    /// The hot path: resolves `token`, checks that its policies grant
    /// `capability` on `path` (no `v1/` prefix), consumes one use of a
    /// use-limited token (revoking it at its last use), and returns its entry.
    /// Unknown, expired and used-up tokens get [`AuthError::UnknownToken`],
    /// denied ones [`AuthError::PermissionDenied`].
    pub fn authorize(
        &self,
        token: &str,
        path: &str,
        capability: Capability,
    ) -> Result<Arc<TokenEntry>, AuthError> {
        self.authorize_any(token, path, std::slice::from_ref(&capability))
    }

    /// [`Auth::authorize`], allowed if any of `capabilities` is granted (e.g.
    /// an encrypt upsert needs `create` or `update`).
    pub fn authorize_any(
        &self,
        token: &str,
        path: &str,
        capabilities: &[Capability],
    ) -> Result<Arc<TokenEntry>, AuthError> {
        let (hash, live) = self.resolve(token)?;
        let acl = self.acl_of(&live);
        if !capabilities
            .iter()
            .any(|&capability| acl.allows(path, capability))
        {
            return Err(AuthError::PermissionDenied);
        }
        self.use_once(hash, &live.entry)
    }

    /// [`Auth::authorize`], allowed only if every one of `capabilities` is
    /// granted (root-protected paths: e.g. `update` and `sudo` on `sys/seal`).
    /// An empty list is denied.
    pub fn authorize_all(
        &self,
        token: &str,
        path: &str,
        capabilities: &[Capability],
    ) -> Result<Arc<TokenEntry>, AuthError> {
        let (hash, live) = self.resolve(token)?;
        let acl = self.acl_of(&live);
        if capabilities.is_empty()
            || !capabilities
                .iter()
                .all(|&capability| acl.allows(path, capability))
        {
            return Err(AuthError::PermissionDenied);
        }
        self.use_once(hash, &live.entry)
    }

    /// The token's capabilities on `path` (for `sys/capabilities-self`): sorted
    /// Vault names, `["root"]` for root tokens, `["deny"]` when none. Does not
    /// consume a use.
    pub fn capabilities(&self, token: &str, path: &str) -> Result<Vec<String>, AuthError> {
        let (_, live) = self.resolve(token)?;
        Ok(self.acl_of(&live).capability_names(path))
    }

    /// The entry of a live token, with no ACL check and no use consumed.
    pub fn lookup(&self, token: &str) -> Result<Arc<TokenEntry>, AuthError> {
        self.resolve(token).map(|(_, live)| Arc::clone(&live.entry))
    }

    /// The entry of a live token by accessor; `invalid accessor` (400) if none.
    pub fn lookup_accessor(&self, accessor: &str) -> Result<Arc<TokenEntry>, AuthError> {
        self.live_slot_by_accessor(accessor).map(|slot| slot.entry)
    }

    /// Sorted accessors of every token (`LIST auth/token/accessors`).
    pub fn accessors(&self) -> Vec<String> {
        let mut accessors: Vec<String> = self.tokens.read().accessors().cloned().collect();
        accessors.sort_unstable();
        accessors
    }

    /// Renews a token: the new TTL is `increment_secs` (or the current TTL; the
    /// period for periodic tokens), capped by the explicit max TTL and the system
    /// max from creation. Root and non-renewable tokens get
    /// [`AuthError::NotRenewable`]; unknown or expired ones `UnknownToken`.
    pub fn renew(
        &self,
        token: &str,
        increment_secs: Option<u64>,
    ) -> Result<Arc<TokenEntry>, AuthError> {
        let _writes = self.token_writes.lock();
        let (_, live) = self.resolve(token)?;
        let slot = self
            .tokens
            .read()
            .by_accessor(&live.entry.accessor)
            .cloned()
            .ok_or(AuthError::UnknownToken)?;
        self.renew_locked(slot, increment_secs)
    }

    /// [`Auth::renew`] by accessor (`auth/token/renew-accessor`).
    pub fn renew_accessor(
        &self,
        accessor: &str,
        increment_secs: Option<u64>,
    ) -> Result<Arc<TokenEntry>, AuthError> {
        let _writes = self.token_writes.lock();
        let slot = self.live_slot_by_accessor(accessor)?;
        self.renew_locked(slot, increment_secs)
    }

    /// Revokes a token and all its descendants. An unknown token is not an
    /// error (Vault answers 204).
    pub fn revoke(&self, token: &str) -> Result<(), AuthError> {
        let _writes = self.token_writes.lock();
        let accessor = self.accessor_of(token);
        match accessor {
            Some(accessor) => self.revoke_tree_locked(&accessor).map(drop),
            None => Ok(()),
        }
    }

    /// Revokes a token; its children become orphans. An unknown token is not an
    /// error.
    pub fn revoke_orphan(&self, token: &str) -> Result<(), AuthError> {
        let _writes = self.token_writes.lock();
        let Some(accessor) = self.accessor_of(token) else {
            return Ok(());
        };
        let children = self.tokens.read().children_of(&accessor);
        for child in children {
            let Some(slot) = self.tokens.read().by_accessor(&child).cloned() else {
                continue;
            };
            let mut entry = (*slot.entry).clone();
            entry.parent_accessor = None;
            entry.orphan = true;
            self.persist_token(&slot.hash, &entry)?;
            self.tokens.write().insert(slot.hash, Arc::new(entry));
        }
        self.storage.delete(&token_path(&accessor))?;
        self.tokens.write().remove(&accessor);
        Ok(())
    }

    /// Revokes the token with this accessor and its descendants; `invalid
    /// accessor` (400) if there is none.
    pub fn revoke_accessor(&self, accessor: &str) -> Result<(), AuthError> {
        let _writes = self.token_writes.lock();
        if self.tokens.read().by_accessor(accessor).is_none() {
            return Err(AuthError::invalid("invalid accessor"));
        }
        self.revoke_tree_locked(accessor).map(drop)
    }

    /// Drops every token expired at `now_unix`, with its descendants, from memory
    /// and storage; returns how many were dropped. Storage failures are logged
    /// and retried on the next call.
    pub fn tidy_expired(&self, now_unix: u64) -> usize {
        let _writes = self.token_writes.lock();
        let expired: Vec<String> = self
            .tokens
            .read()
            .slots()
            .filter(|slot| slot.entry.is_expired(now_unix))
            .map(|slot| slot.entry.accessor.clone())
            .collect();
        let mut removed = 0;
        for accessor in expired {
            // An earlier tree in this loop may already have taken it.
            if self.tokens.read().by_accessor(&accessor).is_none() {
                continue;
            }
            match self.revoke_tree_locked(&accessor) {
                Ok(count) => removed += count,
                Err(error) => {
                    tracing::warn!(%accessor, %error, "could not revoke an expired token");
                }
            }
        }
        removed
    }

    /// Number of tokens in memory (expired ones included until tidied).
    pub fn token_count(&self) -> usize {
        self.tokens.read().len()
    }

    // ----- policies -----------------------------------------------------------

    /// Parses, validates and stores a policy (`sys/policy/:name`). The name is
    /// lower-cased; `root` is refused; bad text is
    /// [`AuthError::InvalidPolicy`]. Takes effect for every token at once.
    pub fn put_policy(&self, name: &str, hcl: &str) -> Result<(), AuthError> {
        let name = policy_name(name)?;
        if name == "root" {
            return Err(AuthError::invalid("cannot update \"root\" policy"));
        }
        if hcl.trim().is_empty() {
            return Err(AuthError::invalid(
                "'policy' parameter not supplied or empty",
            ));
        }
        let rules = policy::parse(hcl).map_err(|reason| AuthError::InvalidPolicy { reason })?;
        let _writes = self.policy_writes.lock();
        let record = StoredPolicy {
            name: name.clone(),
            text: hcl.to_owned(),
        };
        self.storage.put(&policy_path(&name), &encode(&record)?)?;
        let current = self.policies.load_full();
        let mut entries = current.entries.clone();
        entries.insert(
            name,
            Arc::new(PolicyEntry {
                text: record.text,
                rules,
            }),
        );
        self.policies
            .store(Arc::new(PolicySet::new(current.generation + 1, entries)));
        Ok(())
    }

    /// The stored text of a policy; `Some("")` for the built-in `root` (as Vault
    /// reads it), `None` if there is no such policy.
    pub fn policy(&self, name: &str) -> Option<String> {
        let name = name.trim().to_lowercase();
        if name == "root" {
            return Some(String::new());
        }
        self.policies
            .load()
            .entries
            .get(&name)
            .map(|entry| entry.text.clone())
    }

    /// Every policy name, sorted, including `root` and `default`.
    pub fn list_policies(&self) -> Vec<String> {
        let mut names: Vec<String> = self.policies.load().entries.keys().cloned().collect();
        names.push("root".to_owned());
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Deletes a policy; `root` and `default` are refused with Vault's messages;
    /// a missing policy is not an error.
    pub fn delete_policy(&self, name: &str) -> Result<(), AuthError> {
        let name = policy_name(name)?;
        match name.as_str() {
            "root" => return Err(AuthError::invalid("cannot delete \"root\" policy")),
            "default" => return Err(AuthError::invalid("cannot delete default policy")),
            _ => {}
        }
        let _writes = self.policy_writes.lock();
        self.storage.delete(&policy_path(&name))?;
        let current = self.policies.load_full();
        let mut entries = current.entries.clone();
        if entries.remove(&name).is_some() {
            self.policies
                .store(Arc::new(PolicySet::new(current.generation + 1, entries)));
        }
        Ok(())
    }

    // ----- internals ----------------------------------------------------------

    /// The hash and in-memory record of a live token.
    fn resolve(&self, token: &str) -> Result<(TokenHash, Arc<Live>), AuthError> {
        let hash = self.hasher.hash(token);
        let now = self.clock.now_unix();
        let tokens = self.tokens.read();
        match tokens.by_hash(&hash) {
            Some(live) if tokens.is_live(&live.entry, now) => Ok((hash, Arc::clone(live))),
            _ => Err(AuthError::UnknownToken),
        }
    }

    fn accessor_of(&self, token: &str) -> Option<String> {
        let hash = self.hasher.hash(token);
        self.tokens
            .read()
            .by_hash(&hash)
            .map(|live| live.entry.accessor.clone())
    }

    fn live_slot_by_accessor(&self, accessor: &str) -> Result<Slot, AuthError> {
        let now = self.clock.now_unix();
        let tokens = self.tokens.read();
        match tokens.by_accessor(accessor) {
            Some(slot) if tokens.is_live(&slot.entry, now) => Ok(slot.clone()),
            _ => Err(AuthError::invalid("invalid accessor")),
        }
    }

    /// The compiled ACL of a live token: cached on the token for the current
    /// policy generation, else from the per-generation cache, else compiled.
    fn acl_of(&self, live: &Live) -> Arc<Acl> {
        let set = self.policies.load();
        if let Some(acl) = live.cached_acl(set.generation) {
            return acl;
        }
        let acl = Self::acl_in(&set, &live.entry.policies);
        live.cache_acl(set.generation, Arc::clone(&acl));
        acl
    }

    /// The compiled ACL for a list of policy names.
    fn acl_for(&self, names: &[String]) -> Arc<Acl> {
        Self::acl_in(&self.policies.load(), names)
    }

    fn acl_in(set: &PolicySet, names: &[String]) -> Arc<Acl> {
        if let Some(acl) = set.acls.read().get(names) {
            return Arc::clone(acl);
        }
        let acl = Arc::new(set.compile(names));
        let mut cache = set.acls.write();
        if cache.len() >= ACL_CACHE_LIMIT {
            cache.clear();
        }
        Arc::clone(cache.entry(names.to_vec()).or_insert(acl))
    }

    /// After a successful ACL check: counts one use of a use-limited token.
    fn use_once(
        &self,
        hash: TokenHash,
        entry: &Arc<TokenEntry>,
    ) -> Result<Arc<TokenEntry>, AuthError> {
        if entry.num_uses == 0 {
            return Ok(Arc::clone(entry));
        }
        let _writes = self.token_writes.lock();
        let now = self.clock.now_unix();
        let current = {
            let tokens = self.tokens.read();
            match tokens.by_hash(&hash) {
                Some(current) if tokens.is_live(&current.entry, now) => Arc::clone(&current.entry),
                // Another request took the last use meanwhile.
                _ => return Err(AuthError::UnknownToken),
            }
        };
        let mut updated = (*current).clone();
        updated.num_uses = updated.num_uses.saturating_sub(1);
        if updated.num_uses == 0 {
            // The last use: this request proceeds, the token (and its tree) goes.
            self.revoke_tree_locked(&updated.accessor)?;
            return Ok(Arc::new(updated));
        }
        self.persist_token(&hash, &updated)?;
        let updated = Arc::new(updated);
        self.tokens.write().insert(hash, Arc::clone(&updated));
        Ok(updated)
    }

    fn renew_locked(
        &self,
        slot: Slot,
        increment_secs: Option<u64>,
    ) -> Result<Arc<TokenEntry>, AuthError> {
        let entry = &slot.entry;
        if entry.expire_time_unix.is_none() || !entry.renewable {
            return Err(AuthError::NotRenewable);
        }
        let now = self.clock.now_unix();
        let (ttl, _warnings) = token::calculate_ttl(
            increment_secs.unwrap_or(0),
            entry.ttl_secs,
            entry.period_secs,
            entry.explicit_max_ttl_secs,
            entry.creation_time_unix,
            now,
        )?;
        let mut renewed = (**entry).clone();
        renewed.ttl_secs = ttl;
        renewed.expire_time_unix = Some(now.saturating_add(ttl));
        renewed.last_renewal_time_unix = Some(now);
        self.persist_token(&slot.hash, &renewed)?;
        let renewed = Arc::new(renewed);
        self.tokens.write().insert(slot.hash, Arc::clone(&renewed));
        Ok(renewed)
    }

    /// Revokes `accessor` and its descendants; the caller holds `token_writes`.
    /// Returns how many tokens went.
    fn revoke_tree_locked(&self, accessor: &str) -> Result<usize, AuthError> {
        let subtree = self.tokens.read().subtree(accessor);
        // This one write is the revocation: descendants without it are dead.
        self.storage.delete(&token_path(accessor))?;
        {
            let mut tokens = self.tokens.write();
            for member in &subtree {
                tokens.remove(member);
            }
        }
        for member in subtree.iter().skip(1) {
            if let Err(error) = self.storage.delete(&token_path(member)) {
                tracing::warn!(accessor = %member, %error, "could not delete a revoked child token; it is pruned at the next open");
            }
        }
        Ok(subtree.len())
    }

    /// Stores a new token and makes it live.
    fn issue(
        &self,
        token: SecretString,
        entry: TokenEntry,
        warnings: Vec<String>,
    ) -> Result<IssuedToken, AuthError> {
        let hash = self.hasher.hash(token.expose_secret());
        if self.tokens.read().by_hash(&hash).is_some() {
            return Err(AuthError::invalid(
                "cannot create a token with a duplicate ID",
            ));
        }
        self.persist_token(&hash, &entry)?;
        let entry = Arc::new(entry);
        self.tokens.write().insert(hash, Arc::clone(&entry));
        Ok(IssuedToken {
            token,
            entry,
            warnings,
        })
    }

    fn persist_token(&self, hash: &TokenHash, entry: &TokenEntry) -> Result<(), AuthError> {
        let record = StoredToken {
            version: 1,
            hash: hash.to_vec(),
            entry: entry.clone(),
        };
        self.storage
            .put(&token_path(&entry.accessor), &encode(&record)?)?;
        Ok(())
    }

    fn new_accessor(&self) -> String {
        let tokens = self.tokens.read();
        loop {
            let accessor = token::generate_accessor();
            if tokens.by_accessor(&accessor).is_none() {
                return accessor;
            }
        }
    }
}

/// A caller-chosen token ID, checked as Vault does.
fn custom_token(id: &str) -> Result<SecretString, AuthError> {
    if id.contains('.') {
        return Err(AuthError::invalid("token IDs can not contain a period"));
    }
    Ok(SecretString::new(id.to_owned()))
}

/// Normalizes a policy name (trimmed, lower-case) and checks it can be a
/// storage path segment.
fn policy_name(name: &str) -> Result<String, AuthError> {
    let name = name.trim().to_lowercase();
    if name.is_empty() {
        return Err(AuthError::invalid("missing policy name"));
    }
    if name.contains('/') || name.chars().any(char::is_control) {
        return Err(AuthError::invalid(format!("invalid policy name {name:?}")));
    }
    Ok(name)
}

fn token_path(accessor: &str) -> String {
    format!("{TOKEN_DIR}{accessor}")
}

fn policy_path(name: &str) -> String {
    format!("{POLICY_DIR}{name}")
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out)
        .map_err(|error| StorageError::backend("encode an auth record", error))?;
    Ok(out)
}

fn decode<T: for<'de> Deserialize<'de>>(path: &str, bytes: &[u8]) -> Result<T, StorageError> {
    ciborium::from_reader(bytes).map_err(|_| StorageError::Corrupt {
        path: path.to_owned(),
    })
}

/// The token-hash key: read, or created once (compare-and-set, so two nodes
/// starting together agree on one).
fn load_or_create_salt(storage: &dyn Storage) -> Result<SecretBytes, AuthError> {
    let stored = match storage.get(SALT_PATH)? {
        Some(stored) => stored,
        None => {
            let fresh = SecretBytes::random(SALT_LEN);
            if storage.compare_and_set(SALT_PATH, None, Some(fresh.expose_secret()))? {
                return Ok(fresh);
            }
            storage
                .get(SALT_PATH)?
                .ok_or_else(|| StorageError::Corrupt {
                    path: SALT_PATH.to_owned(),
                })?
        }
    };
    if stored.len() != SALT_LEN {
        return Err(StorageError::Corrupt {
            path: SALT_PATH.to_owned(),
        }
        .into());
    }
    Ok(SecretBytes::new(stored))
}

/// Every stored policy, plus `default` (created when absent). A stored policy
/// that no longer parses grants nothing (fail closed) and is logged.
fn load_policies(storage: &dyn Storage) -> Result<BTreeMap<String, Arc<PolicyEntry>>, AuthError> {
    let mut entries = BTreeMap::new();
    for name in storage.list(POLICY_DIR)? {
        if name.ends_with('/') {
            continue;
        }
        let path = policy_path(&name);
        let Some(bytes) = storage.get(&path)? else {
            continue;
        };
        let record: StoredPolicy = decode(&path, &bytes)?;
        let rules = policy::parse(&record.text).unwrap_or_else(|reason| {
            tracing::warn!(policy = %record.name, %reason, "stored policy does not parse; it grants nothing");
            Vec::new()
        });
        entries.insert(
            record.name,
            Arc::new(PolicyEntry {
                text: record.text,
                rules,
            }),
        );
    }
    if !entries.contains_key("default") {
        let record = StoredPolicy {
            name: "default".to_owned(),
            text: policy::DEFAULT_POLICY.to_owned(),
        };
        storage.compare_and_set(&policy_path("default"), None, Some(&encode(&record)?))?;
        let rules = policy::parse(policy::DEFAULT_POLICY).unwrap_or_default();
        entries.insert(
            record.name,
            Arc::new(PolicyEntry {
                text: record.text,
                rules,
            }),
        );
    }
    Ok(entries)
}

/// Every stored token; tokens whose parent is missing (a revocation that did
/// not finish deleting descendants) are pruned.
fn load_tokens(storage: &dyn Storage) -> Result<TokenTable, AuthError> {
    let mut table = TokenTable::default();
    for accessor in storage.list(TOKEN_DIR)? {
        if accessor.ends_with('/') {
            continue;
        }
        let path = token_path(&accessor);
        let Some(bytes) = storage.get(&path)? else {
            continue;
        };
        let record: StoredToken = decode(&path, &bytes)?;
        let hash: TokenHash = record
            .hash
            .as_slice()
            .try_into()
            .map_err(|_| StorageError::Corrupt { path: path.clone() })?;
        if record.entry.accessor != accessor {
            return Err(StorageError::Corrupt { path }.into());
        }
        table.insert(hash, Arc::new(record.entry));
    }
    let dangling: Vec<String> = table
        .slots()
        .filter(|slot| {
            slot.entry
                .parent_accessor
                .as_deref()
                .is_some_and(|parent| table.by_accessor(parent).is_none())
        })
        .map(|slot| slot.entry.accessor.clone())
        .collect();
    for top in dangling {
        for member in table.subtree(&top) {
            table.remove(&member);
            if let Err(error) = storage.delete(&token_path(&member)) {
                tracing::warn!(accessor = %member, %error, "could not delete a token of a revoked tree");
            }
        }
    }
    Ok(table)
}
