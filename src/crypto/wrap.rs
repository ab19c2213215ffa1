//! AES Key Wrap with Padding (RFC 5649), the inner layer of Vault's BYOK import
//! format (reference §8.8). The RSA-OAEP outer layer lives with the RSA keys in
//! [`asymmetric`](super::asymmetric).

use aes_kw::{KeyInit, KwpAes128, KwpAes192, KwpAes256};

use super::{CryptoError, SecretBytes};

/// Wraps `key_data` (1 to 2^32-1 bytes) under the KEK (16, 24 or 32 bytes).
pub fn aes_kwp_wrap(kek: &[u8], key_data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if key_data.is_empty() {
        return Err(CryptoError::InvalidOutputLength(0));
    }
    let mut out = vec![0u8; key_data.len().div_ceil(8) * 8 + 8];
    let result = match kek.len() {
        16 => kwp::<KwpAes128>(kek)?
            .wrap_key(key_data, &mut out)
            .map(<[u8]>::len),
        24 => kwp::<KwpAes192>(kek)?
            .wrap_key(key_data, &mut out)
            .map(<[u8]>::len),
        32 => kwp::<KwpAes256>(kek)?
            .wrap_key(key_data, &mut out)
            .map(<[u8]>::len),
        got => return Err(kek_error(got)),
    };
    let len = result.map_err(|_| CryptoError::InvalidOutputLength(key_data.len()))?;
    out.truncate(len);
    Ok(out)
}

/// Unwraps RFC 5649 output; any integrity or padding failure is the opaque
/// [`CryptoError::AuthenticationFailed`].
pub fn aes_kwp_unwrap(kek: &[u8], wrapped: &[u8]) -> Result<SecretBytes, CryptoError> {
    if !matches!(kek.len(), 16 | 24 | 32) {
        return Err(kek_error(kek.len()));
    }
    if wrapped.len() < 16 || !wrapped.len().is_multiple_of(8) {
        return Err(CryptoError::AuthenticationFailed);
    }
    let mut buf = vec![0u8; wrapped.len()];
    let result = match kek.len() {
        16 => kwp::<KwpAes128>(kek)?
            .unwrap_key(wrapped, &mut buf)
            .map(<[u8]>::len),
        24 => kwp::<KwpAes192>(kek)?
            .unwrap_key(wrapped, &mut buf)
            .map(<[u8]>::len),
        32 => kwp::<KwpAes256>(kek)?
            .unwrap_key(wrapped, &mut buf)
            .map(<[u8]>::len),
        got => return Err(kek_error(got)),
    };
    match result {
        Ok(len) => {
            let out = SecretBytes::from_slice(&buf[..len]);
            zeroize::Zeroize::zeroize(&mut buf);
            Ok(out)
        }
        Err(_) => {
            zeroize::Zeroize::zeroize(&mut buf);
            Err(CryptoError::AuthenticationFailed)
        }
    }
}

fn kwp<K: KeyInit>(kek: &[u8]) -> Result<K, CryptoError> {
    K::new_from_slice(kek).map_err(|_| kek_error(kek.len()))
}

fn kek_error(got: usize) -> CryptoError {
    CryptoError::InvalidKeyLength {
        algorithm: "aes-kwp",
        got,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5649_example_192_bit_kek() {
        // RFC 5649 §6, first example (20 octets of key data).
        let kek = hex::decode("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8").unwrap();
        let data = hex::decode("c37b7e6492584340bed12207808941155068f738").unwrap();
        let wrapped = aes_kwp_wrap(&kek, &data).unwrap();
        assert_eq!(
            hex::encode(&wrapped),
            "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"
        );
        assert_eq!(
            aes_kwp_unwrap(&kek, &wrapped).unwrap().expose_secret(),
            &data[..]
        );
    }

    #[test]
    fn tampered_wrap_is_rejected() {
        let kek = [1u8; 32];
        let mut wrapped = aes_kwp_wrap(&kek, &[9u8; 32]).unwrap();
        wrapped[3] ^= 1;
        assert_eq!(
            aes_kwp_unwrap(&kek, &wrapped).map(|_| ()),
            Err(CryptoError::AuthenticationFailed)
        );
        assert!(aes_kwp_unwrap(&kek, &[0u8; 7]).is_err());
    }
}
