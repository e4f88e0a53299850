//! API keys: the presented secret, its record id, the generator and the checksum.
//!
//! A key this crate issues has the layout (version 1)
//!
//! ```text
//! <prefix>_<id>_<secret><checksum>
//! tak_4kQ9mZp1XbT0aLw2_Xv3k...32 chars...W0r7Qa
//! ```
//!
//! - `prefix`: 1–16 lower-case ASCII letters and digits, configurable ([`KeyFormat`]); a new
//!   layout will come with a new prefix, so the prefix versions the format;
//! - `id`: the record id in clear ([`KeyId`]), so a lookup is one get by id, never a scan;
//! - `secret`: 32 base62 characters from the OS RNG (190 bits);
//! - `checksum`: CRC32 of everything before it, as 6 base62 characters (GitHub's scheme), so
//!   a mistyped or made-up key is refused without touching a store.
//!
//! Every character is in `[A-Za-z0-9_]`: no percent-encoding in a query string, a header or a
//! shell. The whole key, prefix to checksum, is what the PBKDF2 record hashes.
//!
//! # Example
//! ```
//! use tower_apikey::key::{KeyFormat, PresentedKey};
//!
//! let format = KeyFormat::default();
//! let (id, plaintext) = format.generate()?;
//! let presented = PresentedKey::new(plaintext.expose().as_bytes())?;
//! let parsed = format.parse(&presented)?;
//! assert_eq!(parsed.id(), id.as_str());
//! // Secrets never show in Debug output.
//! assert!(!format!("{presented:?}").contains(plaintext.expose()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// The longest key accepted from a request, in bytes.
///
/// Generated keys are far shorter (about 60 bytes); the bound lets a presented key live in a
/// fixed buffer that is zeroized on drop, with no allocation on the request path.
pub const MAX_KEY_LEN: usize = 256;
/// The longest record id, in characters.
pub const MAX_ID_LEN: usize = 64;
/// Length of the secret part of a generated key, in base62 characters (≈ 190 bits).
pub const SECRET_LEN: usize = 32;
/// Length of the checksum, in base62 characters.
pub const CHECKSUM_LEN: usize = 6;
/// Length of a generated record id, in base62 characters (≈ 95 bits).
pub const GENERATED_ID_LEN: usize = 16;
/// Fewest secret characters a parsed key may carry (128 bits of base62).
pub(crate) const MIN_SECRET_LEN: usize = 22;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a key, a key id or a key format was refused.
///
/// No variant carries the key or any part of its secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is empty.
    #[error("key is empty")]
    Empty,
    /// The key is longer than [`MAX_KEY_LEN`].
    #[error("key is longer than {MAX_KEY_LEN} bytes")]
    TooLong,
    /// The key does not have the `<prefix>_<id>_<secret><checksum>` layout.
    #[error("key does not have the <prefix>_<id>_<secret><checksum> layout")]
    Layout,
    /// The key's prefix is not the configured one.
    #[error("key prefix does not match")]
    Prefix,
    /// The checksum does not match: a typo, a truncated key or a made-up one.
    #[error("key checksum does not match")]
    Checksum,
    /// A record id is empty, too long or has a character outside `[A-Za-z0-9-]`.
    #[error("key id must be 1 to {MAX_ID_LEN} characters of A-Z, a-z, 0-9 or '-'")]
    InvalidId,
    /// A prefix is empty, too long or has a character outside `[a-z0-9]`.
    #[error("key prefix must be 1 to 16 characters of a-z or 0-9")]
    InvalidPrefix,
}

/// The operating system's random number generator failed; nothing was generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the OS random number generator failed: {0}")]
pub struct RngError(#[source] getrandom::Error);

/// Fills `buf` from the operating system's RNG.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), RngError> {
    getrandom::fill(buf).map_err(RngError)
}

/// `len` uniformly random base62 characters from the OS RNG.
fn random_base62(len: usize) -> Result<Zeroizing<String>, RngError> {
    let mut out = Zeroizing::new(String::with_capacity(len));
    let mut pool = Zeroizing::new([0u8; 64]);
    while out.len() < len {
        fill_random(&mut pool[..])?;
        // Rejection sampling: 248 = 4 × 62, so `b % 62` is uniform for b < 248.
        for &b in pool.iter().filter(|&&b| b < 248) {
            if out.len() == len {
                break;
            }
            out.push(char::from(BASE62[usize::from(b % 62)]));
        }
    }
    Ok(out)
}

/// Whether every byte passes `test`, without stopping early.
///
/// `Iterator::all` branches per byte (measured here: 35 ns for a 38-byte secret); a fold with
/// `&` has no early exit, so the compiler can vectorise it. This runs on every request.
#[inline]
fn all_bytes(bytes: &[u8], test: impl Fn(u8) -> bool) -> bool {
    bytes.iter().fold(true, |ok, &b| ok & test(b))
}

#[inline]
fn is_alnum(b: u8) -> bool {
    b.is_ascii_digit() | b.is_ascii_uppercase() | b.is_ascii_lowercase()
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

/// SHA-256 of a key, hex: how a store finds a legacy opaque key (which carries no id) once it
/// has been seen.
pub(crate) fn lookup_digest(key: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    crate::hash::Hex(&Sha256::digest(key)).to_string()
}

/// The id of a key record, carried in clear in every key this crate issues.
///
/// 1 to [`MAX_ID_LEN`] characters of `[A-Za-z0-9-]`. Ids are not secret: they appear in logs,
/// listings and cache keys. Cloning is a reference-count increment.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(Arc<str>);

impl KeyId {
    /// Checks and wraps an id.
    ///
    /// # Errors
    /// [`KeyError::InvalidId`] when `id` is empty, too long or has another character.
    pub fn new(id: &str) -> Result<Self, KeyError> {
        if is_valid_id(id) {
            Ok(Self(id.into()))
        } else {
            Err(KeyError::InvalidId)
        }
    }

    /// A fresh random id of [`GENERATED_ID_LEN`] base62 characters.
    ///
    /// # Errors
    /// [`RngError`] when the OS RNG fails.
    pub fn generate() -> Result<Self, RngError> {
        Ok(Self(random_base62(GENERATED_ID_LEN)?.as_str().into()))
    }

    /// An id no key is given (generated ids have no `-`): what a readiness check reads.
    pub(crate) fn readiness_probe() -> Self {
        Self("readiness-probe".into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && all_bytes(id.as_bytes(), |b| is_alnum(b) | (b == b'-'))
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so width and alignment apply (`{:<18}` in the CLI's table).
        f.pad(&self.0)
    }
}

impl FromStr for KeyId {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Borrow<str> for KeyId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for KeyId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A key as presented by a caller: a secret.
///
/// Held in a fixed buffer that is zeroized on drop, so taking a key from a request allocates
/// nothing. `Debug` prints a placeholder; there is no `Display`.
pub struct PresentedKey {
    buf: [u8; MAX_KEY_LEN],
    len: usize,
}

impl PresentedKey {
    /// Copies a presented key.
    ///
    /// # Errors
    /// [`KeyError::Empty`] or [`KeyError::TooLong`].
    pub fn new(key: &[u8]) -> Result<Self, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong);
        }
        let mut buf = [0u8; MAX_KEY_LEN];
        buf[..key.len()].copy_from_slice(key);
        Ok(Self {
            buf,
            len: key.len(),
        })
    }

    /// Joins `parts` into one presented key (HTTP Basic `id` and `secret`, say).
    ///
    /// # Errors
    /// [`KeyError::Empty`] or [`KeyError::TooLong`].
    pub fn concat(parts: &[&[u8]]) -> Result<Self, KeyError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len == 0 {
            return Err(KeyError::Empty);
        }
        if len > MAX_KEY_LEN {
            return Err(KeyError::TooLong);
        }
        let mut buf = [0u8; MAX_KEY_LEN];
        let mut at = 0;
        for part in parts {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Ok(Self { buf, len })
    }

    /// The key's bytes. Handle with care: this is the secret.
    pub fn expose(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Clone for PresentedKey {
    fn clone(&self) -> Self {
        Self {
            buf: self.buf,
            len: self.len,
        }
    }
}

impl PartialEq for PresentedKey {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.expose().ct_eq(other.expose()).into()
    }
}

impl Eq for PresentedKey {}

impl Drop for PresentedKey {
    fn drop(&mut self) {
        // Only `len` bytes were ever written; zeroize's volatile writes cost per byte.
        self.buf[..self.len].zeroize();
    }
}

impl fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresentedKey(<redacted>)")
    }
}

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

/// A newly generated key in plaintext, to show its owner once.
///
/// Zeroized on drop; `Debug` prints a placeholder and there is no `Display`: call
/// [`expose`](Self::expose) where the key is meant to be seen.
pub struct PlaintextKey(Zeroizing<String>);

impl PlaintextKey {
    /// The key as text.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Wraps a key given by an operator (read from stdin, say), to hash and store it.
    pub fn from_secret(key: String) -> Self {
        Self(Zeroizing::new(key))
    }
}

impl fmt::Debug for PlaintextKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlaintextKey(<redacted>)")
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

#[cfg(test)]
mod tests {
    use super::*;
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
    fn the_lookup_digest_is_sha256_hex() {
        // `printf abc | sha256sum`
        assert_eq!(
            lookup_digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
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
    fn ids_display_with_padding() {
        let id = KeyId::new("abc").unwrap();
        assert_eq!(format!("[{id:<5}]"), "[abc  ]");
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
}
