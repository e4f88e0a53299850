//! Finding leaked keys in text: every string in this crate's key format whose checksum holds,
//! recognised offline, without a store.
//!
//! A key is `<prefix>_<id>_<secret><checksum>` (see [`key`](crate::key)); as a regular
//! expression, for the default prefix:
//!
//! ```text
//! \btak_[A-Za-z0-9-]{1,64}_[A-Za-z0-9]{28,}\b
//! ```
//!
//! and a match is a key only when its last 6 characters are the CRC32 of everything before
//! them in base62 — what [`KeyFormat::parse`] checks. Random text almost never passes (1 in
//! 56.8 billion), so a scanner reports keys, not noise.
//!
//! # Example
//! ```
//! use tower_apikey::key::KeyFormat;
//! use tower_apikey::scan::find_keys;
//!
//! let format = KeyFormat::default();
//! let (id, key) = format.generate()?;
//! let log = format!("GET /orders?apikey={} 200\nnothing here tak_fake_{}\n", key.expose(), "x".repeat(40));
//! let found = find_keys(&format, log.as_bytes());
//! assert_eq!(found.len(), 1);
//! assert_eq!((found[0].line, found[0].id.as_str()), (1, id.as_str()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use crate::key::{KeyFormat, KeyId, PresentedKey, CHECKSUM_LEN, MAX_ID_LEN, MIN_SECRET_LEN};

/// A key found in text: where, and which record it names. Holds the key itself, for a
/// caller that checks it against a store; `Debug` does not show it.
#[non_exhaustive]
pub struct FoundKey {
    /// The line it is on, from 1.
    pub line: usize,
    /// The record id it carries.
    pub id: KeyId,
    /// The key as found.
    pub key: PresentedKey,
}

impl fmt::Debug for FoundKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FoundKey")
            .field("line", &self.line)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The regular expression that finds candidates for keys of `format`; a candidate is a key
/// when its checksum holds. What to give GitHub, GitLab, gitleaks or trufflehog.
pub fn pattern(format: &KeyFormat) -> String {
    format!(
        r"\b{}_[A-Za-z0-9-]{{1,{MAX_ID_LEN}}}_[A-Za-z0-9]{{{},}}\b",
        format.prefix(),
        MIN_SECRET_LEN + CHECKSUM_LEN
    )
}

/// Every key of `format` in `text` (any bytes: a log, a binary, a JSON file), in order, each
/// occurrence once.
pub fn find_keys(format: &KeyFormat, text: &[u8]) -> Vec<FoundKey> {
    let start = format!("{}_", format.prefix());
    let start = start.as_bytes();
    let mut found = Vec::new();
    let mut line = 1;
    let mut counted = 0;
    let mut at = 0;
    while let Some(offset) = find(&text[at..], start) {
        let begin = at + offset;
        at = begin + 1;
        // A word boundary before: `xtak_…` is not a key.
        if begin > 0 && is_word(text[begin - 1]) {
            continue;
        }
        let end = begin
            + text[begin..]
                .iter()
                .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
                .unwrap_or(text.len() - begin);
        let candidate = &text[begin..end];
        let Ok(key) = PresentedKey::new(candidate) else {
            continue;
        };
        let Ok(parsed) = format.parse(&key) else {
            continue;
        };
        let Ok(id) = KeyId::new(parsed.id()) else {
            continue;
        };
        line += text[counted..begin].iter().filter(|&&b| b == b'\n').count();
        counted = begin;
        found.push(FoundKey { line, id, key });
        at = end;
    }
    found
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_in_code_logs_and_json_once_each_and_nothing_else() {
        let format = KeyFormat::default();
        let keys: Vec<(KeyId, String)> = (0..3)
            .map(|_| {
                let (id, key) = format.generate().unwrap();
                (id, key.expose().to_owned())
            })
            .collect();
        let (a, b, c) = (&keys[0].1, &keys[1].1, &keys[2].1);
        // A key with one character changed fails its checksum.
        let mut typo = c.clone().into_bytes();
        let last = typo.len() - 10;
        typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        let text = format!(
            "let key = \"{a}\";\n\
             {{\"apikey\": \"{b}\", \"again\": \"{a}\"}}\n\
             curl -H 'apikey: {typo}'\n\
             x{c} and {c}_more and {c}\n"
        );
        let found = find_keys(&format, text.as_bytes());
        let seen: Vec<(usize, &str)> = found.iter().map(|f| (f.line, f.id.as_str())).collect();
        assert_eq!(
            seen,
            [
                (1, keys[0].0.as_str()),
                (2, keys[1].0.as_str()),
                (2, keys[0].0.as_str()),
                (4, keys[2].0.as_str()),
            ]
        );
        assert!(
            !format!("{found:?}").contains(a.as_str()),
            "Debug shows no key"
        );
    }

    #[test]
    fn the_pattern_matches_generated_keys() {
        let format = KeyFormat::with_prefix("acme").unwrap();
        assert_eq!(
            pattern(&format),
            r"\bacme_[A-Za-z0-9-]{1,64}_[A-Za-z0-9]{28,}\b"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = find_keys(&KeyFormat::default(), &text);
            let mut with_prefix = b"tak_".to_vec();
            with_prefix.extend(&text);
            let _ = find_keys(&KeyFormat::default(), &with_prefix);
        }
    }
}
