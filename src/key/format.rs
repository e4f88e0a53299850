//! The key layout: the prefix, the generator, the parser and the checksum.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::{
    all_bytes, is_alnum, random_base62, KeyError, KeyId, PlaintextKey, PresentedKey, RngError,
    BASE62, CHECKSUM_LEN, MAX_ID_LEN, MIN_SECRET_LEN, SECRET_LEN,
};

/// A presented key split into its parts; borrows the [`PresentedKey`].
pub struct ParsedKey<'a> {
    id: &'a str,
    key: &'a PresentedKey,
    secret_start: usize,
}

impl<'a> ParsedKey<'a> {
    /// The record id the key names.
    pub fn id(&self) -> &'a str {
        self.id
    }

    /// The whole key, the bytes its PBKDF2 record hashes.
    pub fn key(&self) -> &'a PresentedKey {
        self.key
    }

    /// The part after the id: secret and checksum. Handle with care.
    pub fn secret(&self) -> &'a [u8] {
        &self.key.expose()[self.secret_start..]
    }
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The key layout: its prefix, the generator and the parser.
///
/// Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyFormat {
    prefix: Arc<str>,
}

impl fmt::Debug for KeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFormat")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Default for KeyFormat {
    fn default() -> Self {
        Self {
            prefix: Self::DEFAULT_PREFIX.into(),
        }
    }
}

impl KeyFormat {
    /// The default prefix, `tak` (tower-apikey).
    pub const DEFAULT_PREFIX: &'static str = "tak";

    /// A format with another prefix (1 to 16 characters of `[a-z0-9]`), e.g. `acme`.
    ///
    /// # Errors
    /// [`KeyError::InvalidPrefix`].
    pub fn with_prefix(prefix: &str) -> Result<Self, KeyError> {
        let ok = (1..=16).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok {
            Ok(Self {
                prefix: prefix.into(),
            })
        } else {
            Err(KeyError::InvalidPrefix)
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether `key` claims this format: it starts with `<prefix>_`. Such a key is judged as
    /// one of ours (never as a legacy key), and a Basic password of that form is a whole key.
    pub fn claims(&self, key: &[u8]) -> bool {
        key.strip_prefix(self.prefix.as_bytes())
            .is_some_and(|rest| rest.first() == Some(&b'_'))
    }

    /// Generates a new key with a fresh random id.
    ///
    /// # Errors
    /// [`RngError`] when the OS RNG fails.
    pub fn generate(&self) -> Result<(KeyId, PlaintextKey), RngError> {
        let id = KeyId::generate()?;
        let key = self.generate_for(&id)?;
        Ok((id, key))
    }

    /// Generates a new key for an existing id (a regenerated secret keeps its id).
    ///
    /// # Errors
    /// [`RngError`] when the OS RNG fails.
    pub fn generate_for(&self, id: &KeyId) -> Result<PlaintextKey, RngError> {
        let secret = random_base62(SECRET_LEN)?;
        let mut key = String::with_capacity(
            self.prefix.len() + id.as_str().len() + SECRET_LEN + CHECKSUM_LEN + 2,
        );
        key.push_str(&self.prefix);
        key.push('_');
        key.push_str(id.as_str());
        key.push('_');
        key.push_str(&secret);
        let sum = checksum(key.as_bytes());
        key.extend(sum.iter().map(|&b| char::from(b)));
        Ok(PlaintextKey(Zeroizing::new(key)))
    }

    /// Splits a presented key into its parts, checking prefix, layout and checksum.
    ///
    /// Touches no store: a random or mistyped string fails here.
    ///
    /// # Errors
    /// [`KeyError::Layout`], [`KeyError::Prefix`] or [`KeyError::Checksum`].
    pub fn parse<'a>(&self, key: &'a PresentedKey) -> Result<ParsedKey<'a>, KeyError> {
        let parsed = self.split(key)?;
        let bytes = key.expose();
        let body = bytes.len() - CHECKSUM_LEN;
        if checksum(&bytes[..body]) != bytes[body..] {
            return Err(KeyError::Checksum);
        }
        Ok(parsed)
    }

    /// Checks the layout and prefix and splits the key, without the checksum.
    ///
    /// For the cache-hit path, where the digest comparison decides and a CRC would only add
    /// cost; anything that goes on to a store goes through [`parse`](Self::parse).
    pub(crate) fn split<'a>(&self, key: &'a PresentedKey) -> Result<ParsedKey<'a>, KeyError> {
        let bytes = key.expose();
        let prefix = self.prefix.as_bytes();
        let rest = match bytes.strip_prefix(prefix) {
            Some([b'_', rest @ ..]) => rest,
            _ => {
                return Err(if bytes.contains(&b'_') {
                    KeyError::Prefix
                } else {
                    KeyError::Layout
                })
            }
        };
        let id_len = rest
            .iter()
            .position(|&b| b == b'_')
            .ok_or(KeyError::Layout)?;
        let (id, tail) = (&rest[..id_len], &rest[id_len + 1..]);
        let id_ok =
            (1..=MAX_ID_LEN).contains(&id.len()) && all_bytes(id, |b| is_alnum(b) | (b == b'-'));
        let tail_ok = tail.len() >= MIN_SECRET_LEN + CHECKSUM_LEN && all_bytes(tail, is_alnum);
        if !id_ok || !tail_ok {
            return Err(KeyError::Layout);
        }
        // ASCII was checked just above.
        let id = std::str::from_utf8(id).map_err(|_| KeyError::Layout)?;
        Ok(ParsedKey {
            id,
            key,
            secret_start: prefix.len() + 1 + id_len + 1,
        })
    }
}

/// CRC32 of `data` as exactly [`CHECKSUM_LEN`] base62 characters.
fn checksum(data: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(data);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{GENERATED_ID_LEN, MAX_KEY_LEN};
    use proptest::prelude::*;

    #[test]
    fn a_key_claims_the_format_by_its_prefix_and_underscore() {
        let format = KeyFormat::with_prefix("acme").unwrap();
        assert!(format.claims(b"acme_x"));
        assert!(format.claims(b"acme_"));
        for other in [
            &b"acme"[..],
            b"acmex_",
            b"acm_",
            b"_acme_",
            b"",
            b"tak_acme_",
        ] {
            assert!(
                !format.claims(other),
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn generated_keys_parse_and_are_url_safe() {
        let format = KeyFormat::with_prefix("acme2").unwrap();
        for _ in 0..200 {
            let (id, key) = format.generate().unwrap();
            let text = key.expose();
            assert!(text.starts_with("acme2_"));
            assert!(
                text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "{}",
                id
            );
            assert_eq!(
                text.len(),
                5 + 1 + GENERATED_ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN
            );
            let presented = PresentedKey::new(text.as_bytes()).unwrap();
            let parsed = format.parse(&presented).unwrap();
            assert_eq!(parsed.id(), id.as_str());
            assert_eq!(parsed.key().expose(), text.as_bytes());
        }
    }

    #[test]
    fn every_single_character_change_is_caught() {
        let format = KeyFormat::default();
        let (_, key) = format.generate().unwrap();
        let original = key.expose().as_bytes().to_vec();
        let start = format.prefix().len() + 1 + GENERATED_ID_LEN + 1;
        for i in start..original.len() {
            for &c in BASE62.iter() {
                if c == original[i] {
                    continue;
                }
                let mut changed = original.clone();
                changed[i] = c;
                let presented = PresentedKey::new(&changed).unwrap();
                assert!(
                    format.parse(&presented).is_err(),
                    "change at {i} not caught"
                );
            }
        }
    }

    #[test]
    fn refuses_bad_shapes() {
        let format = KeyFormat::default();
        let (_, key) = format.generate().unwrap();
        let good = key.expose();
        let cases = [
            ("no separators", good.replace('_', "")),
            ("other prefix", good.replacen("tak", "tbk", 1)),
            ("truncated", good[..good.len() - 1].to_string()),
            ("extra char", format!("{good}A")),
            ("short secret", "tak_abc_0123456789".to_string()),
            ("bad id", good.replacen('_', "_a.b", 1)),
            (
                "not utf8",
                String::from_utf8_lossy(&[0xff, 0xfe]).into_owned(),
            ),
        ];
        for (why, case) in cases {
            let presented = PresentedKey::new(case.as_bytes()).unwrap();
            assert!(format.parse(&presented).is_err(), "{why}");
        }
        assert_eq!(
            format
                .parse(&PresentedKey::new(good.replacen("tak", "tbk", 1).as_bytes()).unwrap())
                .unwrap_err(),
            KeyError::Prefix
        );
        assert_eq!(PresentedKey::new(b"").unwrap_err(), KeyError::Empty);
        assert_eq!(
            PresentedKey::new(&[b'a'; MAX_KEY_LEN + 1]).unwrap_err(),
            KeyError::TooLong
        );
    }

    #[test]
    fn checksum_is_fixed_width() {
        assert_eq!(checksum(b""), *b"000000");
        assert_eq!(checksum(b"").len(), CHECKSUM_LEN);
        // 62^6 > 2^32, so every CRC fits.
        assert!(62u64.pow(6) > u64::from(u32::MAX));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 1..MAX_KEY_LEN)) {
            let presented = PresentedKey::new(&bytes).unwrap();
            let _ = KeyFormat::default().parse(&presented);
        }
    }

    #[test]
    fn ids_and_prefixes_are_checked() {
        assert!(KeyId::new("abc-DEF-123").is_ok());
        for bad in ["", "a_b", "a b", "é", &"a".repeat(MAX_ID_LEN + 1)] {
            assert_eq!(KeyId::new(bad), Err(KeyError::InvalidId), "{bad:?}");
        }
        for bad in ["", "ACME", "a_b", "abcdefghijklmnopq"] {
            assert_eq!(
                KeyFormat::with_prefix(bad),
                Err(KeyError::InvalidPrefix),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let format = KeyFormat::default();
        let (_, key) = format.generate().unwrap();
        let presented = PresentedKey::new(key.expose().as_bytes()).unwrap();
        let parsed = format.parse(&presented).unwrap();
        let secret = &key.expose()[key.expose().len() - 20..];
        for shown in [
            format!("{key:?}"),
            format!("{presented:?}"),
            format!("{parsed:?}"),
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
