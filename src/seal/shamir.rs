//! Shamir's secret sharing over GF(2^8), in Vault's share layout.
//!
//! The arithmetic is `vsss-rs`'s [`Gf256`]: maintained, audited, and constant time
//! (no lookup tables indexed by secret bytes). This module only adapts it:
//!
//! - **Layout.** A share is `y-bytes || x` (as Vault lays them out: 32 + 1 = 33
//!   bytes for a 32-byte key). `vsss-rs` puts the x-coordinate first; we swap.
//! - **One share.** With `shares == 1` (and so `threshold == 1`) the single "share"
//!   is the secret itself, as in Vault; `vsss-rs` requires a threshold of at least 2.
//! - **Limits** are Vault's (see [`check_config`]).
//!
//! Shares carry no integrity: fewer than `threshold` shares, or a wrong share,
//! combine to a wrong secret, not an error. The seal detects that when the combined
//! key fails to open the stored keyring.
//!
//! Every intermediate buffer holding shares or the secret is zeroized. (The
//! polynomial coefficients inside `vsss-rs`'s split are its own business.)

use vsss_rs::Gf256;
use zeroize::{Zeroize, Zeroizing};

use super::error::{ConfigDefect, SealError, ShareDefect};
use crate::crypto::SecretBytes;

/// Checks `shares` / `threshold` against Vault's rules, in Vault's order: both at
/// least one, threshold at least two when there are several shares, both at most
/// 255, threshold at most shares.
pub fn check_config(shares: u64, threshold: u64) -> Result<(u8, u8), ConfigDefect> {
    if shares < 1 {
        return Err(ConfigDefect::SharesTooFew);
    }
    if threshold < 1 {
        return Err(ConfigDefect::ThresholdTooFew);
    }
    if shares > 1 && threshold == 1 {
        return Err(ConfigDefect::ThresholdOneWithManyShares);
    }
    let shares = u8::try_from(shares).map_err(|_| ConfigDefect::SharesTooMany)?;
    let threshold = u8::try_from(threshold).map_err(|_| ConfigDefect::ThresholdTooMany)?;
    if threshold > shares {
        return Err(ConfigDefect::ThresholdAboveShares);
    }
    Ok((shares, threshold))
}

/// Splits `secret` into `shares` shares, any `threshold` of which recombine it.
pub fn split(secret: &[u8], shares: u8, threshold: u8) -> Result<Vec<SecretBytes>, SealError> {
    check_config(shares.into(), threshold.into())
        .map_err(|defect| SealError::InvalidParameters { defect })?;
    if secret.is_empty() {
        return Err(SealError::InvalidShare {
            defect: ShareDefect::TooShort { min: 1 },
        });
    }
    if shares == 1 {
        return Ok(vec![SecretBytes::from_slice(secret)]);
    }
    let mut raw = Gf256::split_bytes(
        usize::from(threshold),
        usize::from(shares),
        secret,
        rand::rng(),
    )
    // Parameters and secret were checked above, so vsss-rs has nothing to refuse;
    // map anything it does refuse to the parameter error rather than panic.
    .map_err(|_| SealError::InvalidParameters {
        defect: ConfigDefect::ThresholdAboveShares,
    })?;
    let out = raw.iter().map(|share| to_vault_layout(share)).collect();
    raw.zeroize();
    Ok(out)
}

/// Recombines `shares` (all in the layout [`split`] produces). A single share is
/// returned as is (the `shares == 1` case). The result is only correct when at
/// least `threshold` genuine shares of one split are given.
pub fn combine(shares: &[SecretBytes]) -> Result<SecretBytes, SealError> {
    let invalid = |defect| SealError::InvalidShare { defect };
    let [first, rest @ ..] = shares else {
        return Err(invalid(ShareDefect::NoShares));
    };
    if rest.is_empty() {
        return Ok(first.duplicate());
    }
    if first.len() < 2 {
        return Err(invalid(ShareDefect::TooShort { min: 2 }));
    }
    let mut raw: Zeroizing<Vec<Vec<u8>>> = Zeroizing::new(Vec::with_capacity(shares.len()));
    for share in shares {
        if share.len() != first.len() {
            return Err(invalid(ShareDefect::LengthMismatch {
                expected: first.len(),
                got: share.len(),
            }));
        }
        let bytes = share.expose_secret();
        let (y, x) = bytes.split_at(bytes.len() - 1);
        if x[0] == 0 {
            return Err(invalid(ShareDefect::ZeroIndex));
        }
        if raw.iter().any(|other| other[0] == x[0]) {
            return Err(if raw.iter().any(|other| other[1..] == *y) {
                SealError::DuplicateShare
            } else {
                invalid(ShareDefect::IndexReused)
            });
        }
        let mut inner = Vec::with_capacity(bytes.len());
        inner.push(x[0]);
        inner.extend_from_slice(y);
        raw.push(inner);
    }
    // Lengths, zero and repeated indices were checked above; vsss-rs checks nothing else.
    let secret = Gf256::combine_bytes(&*raw).map_err(|_| invalid(ShareDefect::IndexReused))?;
    Ok(SecretBytes::new(secret))
}

/// `x || y-bytes` (vsss-rs) to `y-bytes || x` (Vault).
fn to_vault_layout(share: &[u8]) -> SecretBytes {
    let mut out = Vec::with_capacity(share.len());
    if let [x, y @ ..] = share {
        out.extend_from_slice(y);
        out.push(*x);
    }
    SecretBytes::new(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SecretBytes {
        SecretBytes::random(32)
    }

    fn pick(shares: &[SecretBytes], indices: &[usize]) -> Vec<SecretBytes> {
        indices.iter().map(|&i| shares[i].duplicate()).collect()
    }

    #[test]
    fn split_and_combine_round_trip() {
        for (n, k) in [
            (1u8, 1u8),
            (2, 2),
            (3, 2),
            (5, 3),
            (10, 7),
            (255, 255),
            (255, 2),
        ] {
            let s = secret();
            let shares = split(s.expose_secret(), n, k).expect("valid config");
            assert_eq!(shares.len(), usize::from(n));
            let expected_len = if n == 1 { 32 } else { 33 };
            assert!(shares.iter().all(|share| share.len() == expected_len));
            // The first k, the last k, and every other share (when enough).
            let first: Vec<usize> = (0..usize::from(k)).collect();
            let last: Vec<usize> = (usize::from(n - k)..usize::from(n)).collect();
            for subset in [first, last] {
                let combined = combine(&pick(&shares, &subset)).expect("combine");
                assert!(combined.ct_eq(s.expose_secret()), "n={n} k={k}");
            }
            // More than the threshold also works.
            let all = combine(&shares).expect("combine all");
            assert!(all.ct_eq(s.expose_secret()), "n={n} k={k} all");
        }
    }

    #[test]
    fn every_three_of_five_in_any_order() {
        let s = secret();
        let shares = split(s.expose_secret(), 5, 3).expect("split");
        for a in 0..5 {
            for b in 0..5 {
                for c in 0..5 {
                    if a == b || b == c || a == c {
                        continue;
                    }
                    let combined = combine(&pick(&shares, &[a, b, c])).expect("combine");
                    assert!(combined.ct_eq(s.expose_secret()));
                }
            }
        }
    }

    #[test]
    fn fewer_than_threshold_gives_a_wrong_secret() {
        let s = secret();
        let shares = split(s.expose_secret(), 5, 3).expect("split");
        let combined = combine(&pick(&shares, &[0, 3])).expect("combine runs");
        assert!(!combined.ct_eq(s.expose_secret()));
    }

    #[test]
    fn shares_of_a_split_differ_and_are_not_the_secret() {
        let s = secret();
        let shares = split(s.expose_secret(), 5, 3).expect("split");
        for (i, a) in shares.iter().enumerate() {
            assert!(
                !a.expose_secret()
                    .windows(32)
                    .any(|w| w == s.expose_secret())
            );
            for b in &shares[i + 1..] {
                assert!(!a.ct_eq(b.expose_secret()));
            }
        }
    }

    /// A fixed vector computed by hand in GF(2^8) with the AES polynomial
    /// x^8 + x^4 + x^3 + x + 1: secret bytes [0x01, 0x02] with polynomials
    /// f0(x) = 0x01 + 0x03·x and f1(x) = 0x02 + 0x05·x. Then
    /// f0(1) = 0x02, f0(2) = 0x01 ^ 0x06 = 0x07, f1(1) = 0x07, f1(2) = 0x02 ^ 0x0a = 0x08.
    /// In Vault's layout: share x=1 is [0x02, 0x07, 0x01], share x=2 is [0x07, 0x08, 0x02].
    #[test]
    fn combine_matches_a_hand_computed_vector() {
        let shares = [
            SecretBytes::from_slice(&[0x02, 0x07, 0x01]),
            SecretBytes::from_slice(&[0x07, 0x08, 0x02]),
        ];
        let combined = combine(&shares).expect("combine");
        assert_eq!(combined.expose_secret(), &[0x01, 0x02]);

        // This one needs a reduction, so it pins the field polynomial (the one Vault
        // uses too): f(x) = 0x00 + 0x80·x, f(1) = 0x80, f(2) = 0x100 mod 0x11b = 0x1b.
        let shares = [
            SecretBytes::from_slice(&[0x80, 0x01]),
            SecretBytes::from_slice(&[0x1b, 0x02]),
        ];
        let combined = combine(&shares).expect("combine");
        assert_eq!(combined.expose_secret(), &[0x00]);
    }

    #[test]
    fn config_limits_follow_vault() {
        assert_eq!(check_config(5, 3), Ok((5, 3)));
        assert_eq!(check_config(1, 1), Ok((1, 1)));
        assert_eq!(check_config(255, 255), Ok((255, 255)));
        assert_eq!(check_config(0, 1), Err(ConfigDefect::SharesTooFew));
        assert_eq!(check_config(0, 0), Err(ConfigDefect::SharesTooFew));
        assert_eq!(check_config(3, 0), Err(ConfigDefect::ThresholdTooFew));
        assert_eq!(
            check_config(3, 1),
            Err(ConfigDefect::ThresholdOneWithManyShares)
        );
        assert_eq!(check_config(256, 2), Err(ConfigDefect::SharesTooMany));
        assert_eq!(check_config(255, 256), Err(ConfigDefect::ThresholdTooMany));
        assert_eq!(check_config(3, 4), Err(ConfigDefect::ThresholdAboveShares));
        assert_eq!(check_config(1, 2), Err(ConfigDefect::ThresholdAboveShares));
    }

    #[test]
    fn bad_share_sets_are_rejected() {
        let s = secret();
        let shares = split(s.expose_secret(), 5, 3).expect("split");
        assert!(matches!(
            combine(&[]),
            Err(SealError::InvalidShare {
                defect: ShareDefect::NoShares
            })
        ));
        assert!(matches!(
            combine(&pick(&shares, &[0, 0, 1])),
            Err(SealError::DuplicateShare)
        ));
        let mut forged = shares[1].expose_secret().to_vec();
        forged[32] = shares[0].expose_secret()[32];
        let same_index = [shares[0].duplicate(), SecretBytes::new(forged)];
        assert!(matches!(
            combine(&same_index),
            Err(SealError::InvalidShare {
                defect: ShareDefect::IndexReused
            })
        ));
        let mut zero = shares[1].expose_secret().to_vec();
        zero[32] = 0;
        assert!(matches!(
            combine(&[shares[0].duplicate(), SecretBytes::new(zero)]),
            Err(SealError::InvalidShare {
                defect: ShareDefect::ZeroIndex
            })
        ));
        let short = SecretBytes::from_slice(&shares[1].expose_secret()[..20]);
        assert!(matches!(
            combine(&[shares[0].duplicate(), short]),
            Err(SealError::InvalidShare {
                defect: ShareDefect::LengthMismatch {
                    expected: 33,
                    got: 20
                }
            })
        ));
        assert!(matches!(
            split(s.expose_secret(), 3, 1),
            Err(SealError::InvalidParameters {
                defect: ConfigDefect::ThresholdOneWithManyShares
            })
        ));
    }
}
