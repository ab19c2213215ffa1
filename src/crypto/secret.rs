//! Secret byte strings: the one type every layer uses to hold key material.
//!
//! A [`SecretBytes`] zeroizes its buffer on drop, prints as `[redacted]`, compares
//! in constant time, and has no `Clone` by accident: copying a secret is an explicit
//! [`SecretBytes::duplicate`]. Reading the bytes goes through
//! [`SecretBytes::expose_secret`], so every place that touches raw material is
//! greppable.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// Owned secret bytes, zeroized on drop, never printed.
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`; the vector is zeroized when this value drops.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Copies `bytes` into a new secret. The caller remains responsible for its own copy.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }

    /// `len` bytes from the operating system's CSPRNG (through the thread-local
    /// generator it seeds).
    pub fn random(len: usize) -> Self {
        let mut bytes = vec![0u8; len];
        super::random::fill(&mut bytes);
        Self::new(bytes)
    }

    /// The raw bytes. Callers must not log, format or persist them unencrypted.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// Mutable access to the raw bytes, for filling a buffer in place.
    pub fn expose_secret_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// An explicit second copy (both are zeroized on drop).
    pub fn duplicate(&self) -> Self {
        Self::from_slice(&self.0)
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time equality (the lengths are not secret).
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        ct_eq(&self.0, other)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes([redacted])")
    }
}

impl Zeroize for SecretBytes {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

/// Constant-time comparison of two byte strings. Different lengths compare unequal
/// (in time that depends only on the lengths).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let secret = SecretBytes::from_slice(b"hunter2");
        assert_eq!(format!("{secret:?}"), "SecretBytes([redacted])");
    }

    #[test]
    fn constant_time_equality() {
        let secret = SecretBytes::from_slice(b"abc");
        assert!(secret.ct_eq(b"abc"));
        assert!(!secret.ct_eq(b"abd"));
        assert!(!secret.ct_eq(b"ab"));
    }

    #[test]
    fn random_has_requested_length_and_varies() {
        let a = SecretBytes::random(32);
        let b = SecretBytes::random(32);
        assert_eq!(a.len(), 32);
        assert!(!a.ct_eq(b.expose_secret()));
    }
}
