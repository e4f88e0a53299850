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

mod format;
mod id;
mod secret;

use zeroize::Zeroizing;

pub use self::format::{KeyFormat, ParsedKey};
pub use self::id::KeyId;
pub(crate) use self::secret::lookup_digest;
pub use self::secret::{PlaintextKey, PresentedKey};
use crate::random::fill_random;
pub use crate::random::RngError;

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
