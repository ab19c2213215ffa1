//! The JSON text primitives audit entries are written with.
//!
//! Entries are written straight into one `String` instead of being built as
//! `serde_json::Value` trees and serialized: an audited request writes two
//! entries, and under load building and dropping those trees cost more than
//! the request itself. What is written here is parsed back by `verify` and
//! `report` with `serde_json`, so the two must agree; the tests check that
//! they do.

use std::fmt::Write as _;

/// Appends `text` as a JSON string literal, quotes included, escaped as
/// `serde_json` escapes it.
pub fn push_str(out: &mut String, text: &str) {
    if !needs_escape(text.as_bytes()) {
        push_plain(out, text);
        return;
    }
    out.push('"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every byte matched above is ASCII, so `at` is a char boundary.
        out.push_str(&text[start..at]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
        }
        start = at + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// Appends `text`, which needs no escaping (hashes, RFC 3339 times, ids),
/// between quotes.
pub fn push_plain(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    out.push_str(text);
    out.push('"');
}

/// Whether any byte of `bytes` must be escaped. Checked 16 bytes at a time
/// without an early exit inside a block, so the compiler can vectorize it:
/// most strings in an entry need no escaping at all.
fn needs_escape(bytes: &[u8]) -> bool {
    let escapes = |byte: u8| byte < 0x20 || byte == b'"' || byte == b'\\';
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        if block.iter().fold(false, |any, &byte| any | escapes(byte)) {
            return true;
        }
    }
    blocks.remainder().iter().any(|&byte| escapes(byte))
}

/// Appends `"name":` (names are ASCII identifiers chosen by cipherd or
/// field names of a request; both are escaped all the same).
pub fn push_key(out: &mut String, name: &str) {
    push_str(out, name);
    out.push(':');
}

/// Appends an unsigned number.
pub fn push_u64(out: &mut String, value: u64) {
    // itoa: `write!` goes through `fmt` machinery (`core::fmt::write` was
    // 2% of an audited gRPC call's profile).
    out.push_str(itoa::Buffer::new().format(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_serde_json_does() {
        for text in [
            "plain",
            "",
            "quote \" and backslash \\",
            "line\nbreak\ttab\rreturn",
            "\u{0}\u{1}\u{8}\u{c}\u{1f}",
            "unicode é ✓ 𝄞",
            "</script>",
            "a long string without anything to escape, over sixteen bytes",
            "a long string with a \\ backslash after sixteen bytes",
            "0123456789abcdef\u{7f}\u{1}",
        ] {
            let mut out = String::new();
            push_str(&mut out, text);
            assert_eq!(out, serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }
}
