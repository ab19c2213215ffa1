//! Vault's versioned output strings: `vault:v<N>:<payload>` (reference §8.1).
//!
//! Ciphertexts, signatures and HMACs share this wrapper. Parsing is split from
//! decoding the payload so that callers can name the defect precisely; this module
//! knows nothing about what the payload contains.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// The literal prefix of every versioned string (kept as `vault:` for
/// compatibility with clients that look for it).
pub const PREFIX: &str = "vault:v";

/// What is wrong with a versioned string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// It does not start with `vault:v`.
    #[error("no prefix")]
    NoPrefix,
    /// There is no `:` between the version and the payload.
    #[error("wrong number of fields")]
    WrongNumberOfFields,
    /// The version is not a decimal number.
    #[error("version number could not be decoded")]
    BadVersion,
    /// The payload is not valid base64.
    #[error("could not decode base64")]
    BadBase64,
}

/// A parsed `vault:v<N>:<payload>` string; the payload is still encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versioned<'a> {
    /// The key version, as written (0 is kept; callers decide what it means).
    pub version: u32,
    /// The encoded payload after the second colon.
    pub payload: &'a str,
}

impl<'a> Versioned<'a> {
    /// Splits `text` into version and payload. The payload is everything after
    /// the first `:` that follows the prefix (so a third `:` lands in the payload).
    pub fn parse(text: &'a str) -> Result<Self, FormatError> {
        let rest = text.strip_prefix(PREFIX).ok_or(FormatError::NoPrefix)?;
        let (version, payload) = rest
            .split_once(':')
            .ok_or(FormatError::WrongNumberOfFields)?;
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FormatError::BadVersion);
        }
        let version = version.parse().map_err(|_| FormatError::BadVersion)?;
        Ok(Self { version, payload })
    }

    /// Decodes a standard, padded base64 payload.
    pub fn decode_base64(&self) -> Result<Vec<u8>, FormatError> {
        STANDARD
            .decode(self.payload)
            .map_err(|_| FormatError::BadBase64)
    }

    /// Decodes a URL-safe unpadded payload (JWS-marshaled ECDSA signatures).
    pub fn decode_base64url(&self) -> Result<Vec<u8>, FormatError> {
        URL_SAFE_NO_PAD
            .decode(self.payload)
            .map_err(|_| FormatError::BadBase64)
    }
}

/// `vault:v<version>:<base64(payload)>` with standard padded base64.
pub fn encode(version: u32, payload: &[u8]) -> String {
    let mut out = String::with_capacity(PREFIX.len() + 11 + payload.len().div_ceil(3) * 4);
    push_prefix(&mut out, version);
    STANDARD.encode_string(payload, &mut out);
    out
}

/// `vault:v<version>:<base64url-nopad(payload)>` (JWS signatures).
pub fn encode_url_safe(version: u32, payload: &[u8]) -> String {
    let mut out = String::with_capacity(PREFIX.len() + 11 + payload.len().div_ceil(3) * 4);
    push_prefix(&mut out, version);
    URL_SAFE_NO_PAD.encode_string(payload, &mut out);
    out
}

fn push_prefix(out: &mut String, version: u32) {
    use std::fmt::Write as _;
    out.push_str(PREFIX);
    // Writing to a String cannot fail.
    let _ = write!(out, "{version}:");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_encodes() {
        let text = encode(12, b"hello");
        assert_eq!(text, "vault:v12:aGVsbG8=");
        let parsed = Versioned::parse(&text).unwrap();
        assert_eq!(parsed.version, 12);
        assert_eq!(parsed.decode_base64().unwrap(), b"hello");
    }

    #[test]
    fn names_each_defect() {
        assert_eq!(Versioned::parse("vault:x1:abc"), Err(FormatError::NoPrefix));
        assert_eq!(
            Versioned::parse("vault:v1"),
            Err(FormatError::WrongNumberOfFields)
        );
        assert_eq!(
            Versioned::parse("vault:vx:abc"),
            Err(FormatError::BadVersion)
        );
        assert_eq!(
            Versioned::parse("vault:v:abc"),
            Err(FormatError::BadVersion)
        );
        assert_eq!(
            Versioned::parse("vault:v-1:abc"),
            Err(FormatError::BadVersion)
        );
        assert_eq!(
            Versioned::parse("vault:v99999999999:abc"),
            Err(FormatError::BadVersion)
        );
        let odd = Versioned::parse("vault:v1:ab:c").unwrap();
        assert_eq!(odd.payload, "ab:c");
        assert_eq!(odd.decode_base64(), Err(FormatError::BadBase64));
        assert_eq!(Versioned::parse("vault:v01:AA==").unwrap().version, 1);
    }
}
