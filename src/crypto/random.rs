//! Randomness for nonces and key generation.
//!
//! Nonces and keys come from `rand`'s thread-local generator: ChaCha12 seeded from
//! the operating system and reseeded periodically. It costs tens of nanoseconds per
//! nonce instead of a `getrandom` system call per request, which matters on the hot
//! path (see DESIGN.md). Nothing here does I/O beyond the OS seeding.

use rand::Rng;

/// Fills `out` with cryptographically secure random bytes.
pub fn fill(out: &mut [u8]) {
    rand::rng().fill_bytes(out);
}

/// `len` random bytes (not secret: for nonces and the `random` endpoint).
pub fn bytes(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fill(&mut out);
    out
}
