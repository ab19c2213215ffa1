//! The one record the seal keeps outside the barrier: seal configuration in the
//! clear, and the barrier keyring encrypted under the master key.
//!
//! Both live in a single entry at [`SEAL_PATH`] so that `init` is one
//! compare-and-set (absent -> record): two racing inits cannot interleave, and a
//! crash cannot leave a configuration without its keyring. Rotation rewrites the
//! entry with compare-and-set too, so two nodes sharing a backend never lose a
//! term.
//!
//! # Formats
//!
//! The record is CBOR ([`SealRecord`]); nothing in it is secret except the keyring
//! field, which is `0x01 || nonce(12) || AES-256-GCM(keyring) || tag(16)` with
//! associated data `"core/seal" || 0x01`.
//!
//! The keyring plaintext is a fixed binary layout rather than CBOR, so it is
//! written into one buffer of exactly the right size (no reallocation leaves an
//! unzeroized copy of a key behind) and key types need no `Serialize`:
//!
//! ```text
//! version u8 (= 1) | active term u32 BE | count u32 BE |
//! count x ( term u32 BE | installed unix seconds u64 BE | key [u8; 32] )
//! ```

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::SecretBytes;
use crate::crypto::aead::{AeadAlgorithm, AeadKey, TAG_LEN};
use crate::storage::{Storage, StorageError};

/// Physical path of the seal record (outside the barrier's `data/` namespace).
pub(crate) const SEAL_PATH: &str = "core/seal";

/// Length of the master key and of every barrier key.
pub(crate) const KEY_LEN: usize = 32;

const RECORD_VERSION: u8 = 1;
const SEALED_KEYRING_FORMAT: u8 = 1;
const KEYRING_VERSION: u8 = 1;
const KEYRING_HEADER_LEN: usize = 1 + 4 + 4;
const KEYRING_ENTRY_LEN: usize = 4 + 8 + KEY_LEN;
const GCM_NONCE_LEN: usize = 12;

/// The stored seal record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SealRecord {
    /// Format version of this record.
    pub(crate) version: u8,
    /// Number of unseal shares handed out at init.
    pub(crate) secret_shares: u8,
    /// Shares needed to unseal.
    pub(crate) secret_threshold: u8,
    /// Vault-style cluster name, reported when unsealed.
    pub(crate) cluster_name: String,
    /// Vault-style cluster id (a UUID), reported when unsealed.
    pub(crate) cluster_id: String,
    /// The keyring, sealed under the master key (see the module doc).
    #[serde(with = "serde_bytes")]
    pub(crate) keyring: Vec<u8>,
}

impl SealRecord {
    /// A fresh record with its keyring sealed under `master`.
    pub(crate) fn new(
        secret_shares: u8,
        secret_threshold: u8,
        keyring: &Keyring,
        master: &SecretBytes,
    ) -> Result<Self, StorageError> {
        Ok(Self {
            version: RECORD_VERSION,
            secret_shares,
            secret_threshold,
            cluster_name: format!(
                "vault-cluster-{}",
                hex::encode(crate::crypto::random::bytes(4))
            ),
            cluster_id: uuid_v4(),
            keyring: keyring.seal(master)?,
        })
    }

    /// Reads the record: `None` when the store is not initialized; the raw bytes are
    /// returned too, for a later compare-and-set.
    pub(crate) fn load(store: &dyn Storage) -> Result<Option<(Self, Vec<u8>)>, StorageError> {
        let Some(raw) = store.get(SEAL_PATH)? else {
            return Ok(None);
        };
        let record = Self::decode(&raw)?;
        Ok(Some((record, raw)))
    }

    /// Parses a stored record.
    pub(crate) fn decode(raw: &[u8]) -> Result<Self, StorageError> {
        let corrupt = || StorageError::Corrupt {
            path: SEAL_PATH.to_owned(),
        };
        let record: Self = ciborium::from_reader(raw).map_err(|_| corrupt())?;
        if record.version != RECORD_VERSION
            || super::shamir::check_config(
                record.secret_shares.into(),
                record.secret_threshold.into(),
            )
            .is_err()
        {
            return Err(corrupt());
        }
        Ok(record)
    }

    /// The stored form.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, StorageError> {
        let mut out = Vec::with_capacity(128 + self.keyring.len());
        ciborium::into_writer(self, &mut out)
            .map_err(|e| StorageError::backend("encode the seal record", e))?;
        Ok(out)
    }
}

/// All terms of the barrier key, and which one new writes use.
pub(crate) struct Keyring {
    active: u32,
    terms: BTreeMap<u32, TermKey>,
}

/// One barrier key term.
pub(crate) struct TermKey {
    key: SecretBytes,
    installed_unix: u64,
}

impl TermKey {
    /// The raw 32-byte key.
    pub(crate) fn key(&self) -> &SecretBytes {
        &self.key
    }

    /// When this term was installed, in Unix seconds.
    pub(crate) fn installed_unix(&self) -> u64 {
        self.installed_unix
    }
}

/// Why a sealed keyring did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyringOpenError {
    /// The blob or the plaintext inside it is malformed.
    Malformed,
    /// Authentication failed: not the master key this keyring was sealed under.
    WrongKey,
}

impl Keyring {
    /// A keyring with one fresh random key, term 1.
    pub(crate) fn first() -> Self {
        let mut terms = BTreeMap::new();
        terms.insert(
            1,
            TermKey {
                key: SecretBytes::random(KEY_LEN),
                installed_unix: now_unix(),
            },
        );
        Self { active: 1, terms }
    }

    /// The term new writes use.
    pub(crate) fn active_term(&self) -> u32 {
        self.active
    }

    /// The active key term and its key.
    pub(crate) fn active(&self) -> Option<&TermKey> {
        self.terms.get(&self.active)
    }

    /// The key of `term`, if this keyring has it.
    pub(crate) fn term(&self, term: u32) -> Option<&TermKey> {
        self.terms.get(&term)
    }

    /// Adds a fresh random key as the next term and makes it active.
    pub(crate) fn add_term(&mut self) -> Result<u32, StorageError> {
        let last = self.terms.keys().next_back().copied().unwrap_or(0);
        let term = last.checked_add(1).ok_or_else(|| {
            StorageError::backend(
                "rotate the barrier key",
                std::io::Error::other("barrier key term overflow"),
            )
        })?;
        self.terms.insert(
            term,
            TermKey {
                key: SecretBytes::random(KEY_LEN),
                installed_unix: now_unix(),
            },
        );
        self.active = term;
        Ok(term)
    }

    /// `0x01 || nonce || AES-256-GCM(encode(self)) || tag` under `master`.
    pub(crate) fn seal(&self, master: &SecretBytes) -> Result<Vec<u8>, StorageError> {
        let plaintext = self.encode();
        let cipher =
            AeadKey::new(AeadAlgorithm::Aes256Gcm, master.expose_secret()).map_err(|_| {
                StorageError::Corrupt {
                    path: SEAL_PATH.to_owned(),
                }
            })?;
        // Exact capacity: sealing copies the plaintext into `out` and encrypts it in
        // place, so no reallocation may leave a plaintext copy behind.
        let mut out = Vec::with_capacity(1 + GCM_NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(SEALED_KEYRING_FORMAT);
        cipher.seal_with_random_nonce(&keyring_aad(), &plaintext, &mut out);
        Ok(out)
    }

    /// Opens a keyring sealed by [`seal`](Self::seal).
    pub(crate) fn open(master: &SecretBytes, sealed: &[u8]) -> Result<Self, KeyringOpenError> {
        let Some((&SEALED_KEYRING_FORMAT, body)) = sealed.split_first() else {
            return Err(KeyringOpenError::Malformed);
        };
        let cipher = AeadKey::new(AeadAlgorithm::Aes256Gcm, master.expose_secret())
            .map_err(|_| KeyringOpenError::WrongKey)?;
        let plaintext = Zeroizing::new(cipher.open_prefixed(&keyring_aad(), body).map_err(
            |e| match e {
                crate::crypto::CryptoError::AuthenticationFailed => KeyringOpenError::WrongKey,
                _ => KeyringOpenError::Malformed,
            },
        )?);
        Self::decode(&plaintext).ok_or(KeyringOpenError::Malformed)
    }

    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let len = KEYRING_HEADER_LEN + self.terms.len() * KEYRING_ENTRY_LEN;
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        out.push(KEYRING_VERSION);
        out.extend_from_slice(&self.active.to_be_bytes());
        // The number of terms is bounded by u32 terms, so this cannot truncate.
        out.extend_from_slice(&(self.terms.len() as u32).to_be_bytes());
        for (term, key) in &self.terms {
            out.extend_from_slice(&term.to_be_bytes());
            out.extend_from_slice(&key.installed_unix.to_be_bytes());
            out.extend_from_slice(key.key.expose_secret());
        }
        debug_assert_eq!(out.len(), len);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (header, mut entries) = bytes.split_at_checked(KEYRING_HEADER_LEN)?;
        if header[0] != KEYRING_VERSION {
            return None;
        }
        let active = u32::from_be_bytes(header[1..5].try_into().ok()?);
        let count = u32::from_be_bytes(header[5..9].try_into().ok()?) as usize;
        if count == 0 || entries.len() != count.checked_mul(KEYRING_ENTRY_LEN)? {
            return None;
        }
        let mut terms = BTreeMap::new();
        while let Some((entry, rest)) = entries.split_at_checked(KEYRING_ENTRY_LEN) {
            let term = u32::from_be_bytes(entry[0..4].try_into().ok()?);
            let installed_unix = u64::from_be_bytes(entry[4..12].try_into().ok()?);
            let key = SecretBytes::from_slice(&entry[12..]);
            if terms
                .insert(
                    term,
                    TermKey {
                        key,
                        installed_unix,
                    },
                )
                .is_some()
            {
                return None;
            }
            entries = rest;
        }
        terms
            .contains_key(&active)
            .then_some(Self { active, terms })
    }
}

/// Associated data of the sealed keyring: its path and format byte.
fn keyring_aad() -> Vec<u8> {
    let mut aad = Vec::with_capacity(SEAL_PATH.len() + 1);
    aad.extend_from_slice(SEAL_PATH.as_bytes());
    aad.push(SEALED_KEYRING_FORMAT);
    aad
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A random (version 4) UUID string, as Vault uses for unseal nonces and cluster ids.
pub(crate) fn uuid_v4() -> String {
    let mut b = crate::crypto::random::bytes(16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyring_round_trips_and_needs_the_master_key() {
        let master = SecretBytes::random(KEY_LEN);
        let mut keyring = Keyring::first();
        assert_eq!(keyring.add_term().expect("term"), 2);
        let sealed = keyring.seal(&master).expect("seal");
        let opened = Keyring::open(&master, &sealed).expect("open");
        assert_eq!(opened.active_term(), 2);
        for term in [1, 2] {
            let a = keyring.term(term).expect("term").key();
            let b = opened.term(term).expect("term").key();
            assert!(a.ct_eq(b.expose_secret()));
        }
        let other = SecretBytes::random(KEY_LEN);
        assert_eq!(
            Keyring::open(&other, &sealed).err(),
            Some(KeyringOpenError::WrongKey)
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            Keyring::open(&master, &tampered).err(),
            Some(KeyringOpenError::WrongKey)
        );
        assert_eq!(
            Keyring::open(&master, &[]).err(),
            Some(KeyringOpenError::Malformed)
        );
        assert_eq!(
            Keyring::open(&master, &sealed[..10]).err(),
            Some(KeyringOpenError::Malformed)
        );
    }

    #[test]
    fn malformed_plaintext_is_rejected() {
        assert!(Keyring::decode(&[]).is_none());
        let good = Keyring::first().encode();
        assert!(Keyring::decode(&good).is_some());
        assert!(Keyring::decode(&good[..good.len() - 1]).is_none());
        let mut wrong_active = good.to_vec();
        wrong_active[4] = 9;
        assert!(Keyring::decode(&wrong_active).is_none());
    }

    #[test]
    fn uuid_shape() {
        let id = uuid_v4();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
        assert_ne!(id, uuid_v4());
    }
}
