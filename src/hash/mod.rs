//! PBKDF2 hashes in the `iterations:salt_hex:hash_hex` form ([`Pbkdf2Hash`]): parse, display, verify, create.
//!
//! This is the form IBM Maximo and the CrackStation reference code store API keys in, e.g.
//! `1000:<24-byte salt>:<24-byte hash>` made with HMAC-SHA1. The record does not name its
//! pseudo-random function, so the caller (a [`KeyRecord`](crate::KeyRecord), or
//! configuration) supplies a [`Prf`]; the iteration count and output length come from the
//! record itself.
//!
//! # Example
//! ```
//! use tower_apikey::hash::{Pbkdf2Hash, Prf};
//!
//! // Made by Python's hashlib.pbkdf2_hmac("sha1", ...), not by this crate.
//! let record: Pbkdf2Hash = "1000:9324cb602a857ff0e7d0713c62a9b90285bce134cfb3a1ae:\
//!     18532e80f50f225378776e882e88bcf4b1abca52815e0f02".parse()?;
//! assert!(record.verify(Prf::Sha1, b"DOIfRzrWSZ6zt9N2axzd41m2"));
//! assert!(!record.verify(Prf::Sha1, b"DOIfRzrWSZ6zt9N2axzd41m3"));
//! # Ok::<(), tower_apikey::hash::HashError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::random::{fill_random, RngError};

mod params;
mod pbkdf2;
#[cfg(feature = "tokens")]
mod version;

pub use params::HashParams;
#[cfg(feature = "tokens")]
pub(crate) use version::KeyVersion;

/// The largest iteration count a record may carry.
///
/// A corrupt or hostile record must not stall a worker: at this cap one SHA-1 derivation of a
/// 24-byte hash takes about half a second on the machines this crate is benchmarked on. It
/// leaves room for OWASP's 2023 advice (1,300,000 for SHA-1, 600,000 for SHA-256).
pub const MAX_ITERATIONS: u32 = 2_000_000;
/// The shortest salt a record may carry, in bytes.
pub const MIN_SALT_LEN: usize = 8;
/// The longest salt a record may carry, in bytes.
pub const MAX_SALT_LEN: usize = 256;
/// The shortest stored hash a record may carry, in bytes (shorter would be guessable).
pub const MIN_HASH_LEN: usize = 16;
/// The longest stored hash a record may carry, in bytes (one SHA-512 output).
pub const MAX_HASH_LEN: usize = 64;

/// The HMAC hash function a PBKDF2 record was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prf {
    /// HMAC-SHA1, the Maximo default.
    #[default]
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl Prf {
    /// The PRF's output length in bytes: one PBKDF2 block.
    pub const fn output_len(self) -> usize {
        match self {
            Prf::Sha1 => 20,
            Prf::Sha256 => 32,
            Prf::Sha512 => 64,
        }
    }

    /// The lower-case name used in configuration, JSON and the CLI (`sha1`, `sha256`, `sha512`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Prf::Sha1 => "sha1",
            Prf::Sha256 => "sha256",
            Prf::Sha512 => "sha512",
        }
    }
}

impl fmt::Display for Prf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Prf {
    type Err = HashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sha1" | "sha-1" => Ok(Prf::Sha1),
            "sha256" | "sha-256" => Ok(Prf::Sha256),
            "sha512" | "sha-512" => Ok(Prf::Sha512),
            _ => Err(HashError::UnknownPrf),
        }
    }
}

/// Why a record (or a PRF name, or hashing parameters) was refused.
///
/// Messages name the problem and never echo the record, which may be sensitive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// The record is empty.
    #[error("record is empty")]
    Empty,
    /// The record does not have exactly three `:`-separated fields.
    #[error("record must have three fields `iterations:salt_hex:hash_hex`, found {0}")]
    FieldCount(usize),
    /// The iteration count is not a plain decimal number (no sign, spaces or exponent).
    #[error("iterations must be a decimal number without sign or spaces")]
    IterationsNotDecimal,
    /// The iteration count is zero.
    #[error("iterations must be at least 1")]
    ZeroIterations,
    /// The iteration count exceeds [`MAX_ITERATIONS`].
    #[error("iterations exceed the maximum of {MAX_ITERATIONS}")]
    TooManyIterations,
    /// A hex field is empty.
    #[error("{0} is empty")]
    EmptyField(&'static str),
    /// A hex field has an odd number of digits.
    #[error("{0} has an odd number of hex digits")]
    OddLength(&'static str),
    /// A hex field has a character that is not a hex digit.
    #[error("{0} has a character that is not a hex digit")]
    NotHex(&'static str),
    /// The salt is shorter or longer than allowed.
    #[error("salt must be {MIN_SALT_LEN} to {MAX_SALT_LEN} bytes, found {0}")]
    SaltLength(usize),
    /// The stored hash is shorter or longer than allowed.
    #[error("hash must be {MIN_HASH_LEN} to {MAX_HASH_LEN} bytes, found {0}")]
    HashLength(usize),
    /// The PRF name is not one of `sha1`, `sha256`, `sha512`.
    #[error("unknown PRF: expected sha1, sha256 or sha512")]
    UnknownPrf,
}

/// A parsed PBKDF2 record: iteration count, salt and derived hash.
///
/// `Debug` shows the parameters, not the salt or hash bytes; `Display` gives the stored form
/// (lower-case hex), which round-trips through [`FromStr`].
#[derive(Clone, PartialEq, Eq)]
pub struct Pbkdf2Hash {
    iterations: u32,
    salt: Box<[u8]>,
    hash: Box<[u8]>,
}

impl fmt::Debug for Pbkdf2Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pbkdf2Hash")
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .field("hash_len", &self.hash.len())
            .finish_non_exhaustive()
    }
}

impl Pbkdf2Hash {
    /// Builds a record from its parts, checking the same limits as parsing.
    ///
    /// # Errors
    /// [`HashError`] when a part is out of bounds.
    pub fn from_parts(iterations: u32, salt: &[u8], hash: &[u8]) -> Result<Self, HashError> {
        if iterations == 0 {
            return Err(HashError::ZeroIterations);
        }
        if iterations > MAX_ITERATIONS {
            return Err(HashError::TooManyIterations);
        }
        if !(MIN_SALT_LEN..=MAX_SALT_LEN).contains(&salt.len()) {
            return Err(HashError::SaltLength(salt.len()));
        }
        if !(MIN_HASH_LEN..=MAX_HASH_LEN).contains(&hash.len()) {
            return Err(HashError::HashLength(hash.len()));
        }
        Ok(Self {
            iterations,
            salt: salt.into(),
            hash: hash.into(),
        })
    }

    /// Hashes `key` with a fresh random salt under `params`.
    ///
    /// Runs PBKDF2: call it off the async runtime (`spawn_blocking`) in a server.
    ///
    /// # Errors
    /// [`RngError`] when the OS RNG fails.
    pub fn create(key: &[u8], params: &HashParams) -> Result<Self, RngError> {
        let mut salt = vec![0u8; params.salt_len()];
        fill_random(&mut salt)?;
        let mut hash = vec![0u8; params.hash_len()];
        derive(params.prf(), key, &salt, params.iterations(), &mut hash);
        // `HashParams` setters keep every field in bounds.
        Ok(Self {
            iterations: params.iterations(),
            salt: salt.into(),
            hash: hash.into(),
        })
    }

    /// The iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// The salt bytes.
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// The stored derived hash.
    pub fn hash(&self) -> &[u8] {
        &self.hash
    }

    /// Checks `key` against this record under `prf`, comparing in constant time.
    ///
    /// Derives the first PBKDF2 block and compares it before deriving the rest, so a wrong
    /// key costs one block of a multi-block record (the Maximo form, 24 bytes of SHA-1, is
    /// two blocks). The early stop reveals only that the first block differed, which an
    /// attacker without the record learns nothing from.
    pub fn verify(&self, prf: Prf, key: &[u8]) -> bool {
        pbkdf2::verify(prf, key, &self.salt, self.iterations, &self.hash)
    }
}

impl fmt::Display for Pbkdf2Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.iterations,
            Hex(&self.salt),
            Hex(&self.hash)
        )
    }
}

/// Bytes shown as lower-case hex.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for b in self.0 {
            let pair = [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]];
            f.write_str(std::str::from_utf8(&pair).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl FromStr for Pbkdf2Hash {
    type Err = HashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(HashError::Empty);
        }
        let fields: Vec<&str> = s.split(':').collect();
        let [iterations, salt, hash] = fields[..] else {
            return Err(HashError::FieldCount(fields.len()));
        };
        // `u32::from_str` accepts a leading `+`; the format does not.
        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HashError::IterationsNotDecimal);
        }
        let iterations = match iterations.parse::<u32>() {
            Ok(n) => n,
            // All digits, so the only failure left is overflow.
            Err(_) => return Err(HashError::TooManyIterations),
        };
        let salt = decode_hex(salt, "salt")?;
        let hash = decode_hex(hash, "hash")?;
        Self::from_parts(iterations, &salt, &hash)
    }
}

impl Serialize for Pbkdf2Hash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pbkdf2Hash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn decode_hex(field: &str, name: &'static str) -> Result<Vec<u8>, HashError> {
    if field.is_empty() {
        return Err(HashError::EmptyField(name));
    }
    let digits = field.as_bytes();
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(HashError::NotHex(name));
    }
    if !digits.len().is_multiple_of(2) {
        return Err(HashError::OddLength(name));
    }
    let nibble = |d: u8| match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        _ => d - b'A' + 10,
    };
    Ok(digits
        .chunks_exact(2)
        .map(|p| nibble(p[0]) << 4 | nibble(p[1]))
        .collect())
}

/// Fills `out` with PBKDF2-HMAC-`prf`(`password`, `salt`, `iterations`).
///
/// No limits are applied here (RFC 6070 has a 16,777,216-iteration vector); records are
/// bounded when parsed. Runs for as long as the iterations say: call it off the async runtime.
pub fn derive(prf: Prf, password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    pbkdf2::derive(prf, password, salt, iterations, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display_round_trips_lowercase() {
        let rec: Pbkdf2Hash = "1000:26FAF709BBA90C28E6BD5E4C0815ED5FBA55789972DEF175:F3CAE9D6AE3F254191B34C1794810091340933341122C563"
            .parse()
            .unwrap();
        let shown = rec.to_string();
        assert_eq!(shown, "1000:26faf709bba90c28e6bd5e4c0815ed5fba55789972def175:f3cae9d6ae3f254191b34c1794810091340933341122c563");
        assert_eq!(shown.parse::<Pbkdf2Hash>().unwrap(), rec);
    }

    #[test]
    fn debug_hides_bytes() {
        let rec = Pbkdf2Hash::create(b"k", &HashParams::default()).unwrap();
        let dbg = format!("{rec:?}");
        assert!(!dbg.contains(&rec.to_string()[5..15]), "{dbg}");
        assert!(dbg.contains("iterations: 1000"));
    }

    #[test]
    fn create_then_verify_each_prf() {
        for prf in [Prf::Sha1, Prf::Sha256, Prf::Sha512] {
            let params = HashParams::default()
                .with_prf(prf)
                .with_iterations(50)
                .unwrap()
                .with_hash_len(48)
                .unwrap();
            let rec = Pbkdf2Hash::create(b"secret", &params).unwrap();
            assert_eq!(rec.hash().len(), 48);
            assert!(rec.verify(prf, b"secret"));
            assert!(!rec.verify(prf, b"secreT"));
            let other = if prf == Prf::Sha1 {
                Prf::Sha256
            } else {
                Prf::Sha1
            };
            assert!(!rec.verify(other, b"secret"));
        }
    }

    #[test]
    fn limits_are_enforced() {
        let s = "00".repeat(24);
        let over = format!("{}:{s}:{s}", MAX_ITERATIONS + 1);
        assert_eq!(
            over.parse::<Pbkdf2Hash>(),
            Err(HashError::TooManyIterations)
        );
        let at = format!("{MAX_ITERATIONS}:{s}:{s}");
        assert!(at.parse::<Pbkdf2Hash>().is_ok());
        let short_salt = format!("1000:{}:{s}", "00".repeat(MIN_SALT_LEN - 1));
        assert_eq!(
            short_salt.parse::<Pbkdf2Hash>(),
            Err(HashError::SaltLength(MIN_SALT_LEN - 1))
        );
        let short_hash = format!("1000:{s}:{}", "00".repeat(MIN_HASH_LEN - 1));
        assert_eq!(
            short_hash.parse::<Pbkdf2Hash>(),
            Err(HashError::HashLength(MIN_HASH_LEN - 1))
        );
        assert!(HashParams::default().with_iterations(0).is_err());
        assert!(HashParams::default()
            .with_salt_len(MAX_SALT_LEN + 1)
            .is_err());
    }

    #[test]
    fn prf_names() {
        for prf in [Prf::Sha1, Prf::Sha256, Prf::Sha512] {
            assert_eq!(prf.as_str().parse::<Prf>().unwrap(), prf);
        }
        assert_eq!("md5".parse::<Prf>(), Err(HashError::UnknownPrf));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn derive_matches_pbkdf2_crate(
            password in proptest::collection::vec(any::<u8>(), 0..200),
            salt in proptest::collection::vec(any::<u8>(), 0..80),
            iterations in 1u32..40,
            len in 1usize..150,
        ) {
            let mut ours = vec![0u8; len];
            let mut theirs = vec![0u8; len];
            derive(Prf::Sha1, &password, &salt, iterations, &mut ours);
            ::pbkdf2::pbkdf2_hmac::<sha1::Sha1>(&password, &salt, iterations, &mut theirs);
            prop_assert_eq!(&ours, &theirs);
            derive(Prf::Sha256, &password, &salt, iterations, &mut ours);
            ::pbkdf2::pbkdf2_hmac::<sha2::Sha256>(&password, &salt, iterations, &mut theirs);
            prop_assert_eq!(&ours, &theirs);
            derive(Prf::Sha512, &password, &salt, iterations, &mut ours);
            ::pbkdf2::pbkdf2_hmac::<sha2::Sha512>(&password, &salt, iterations, &mut theirs);
            prop_assert_eq!(&ours, &theirs);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,120}") {
            let _ = s.parse::<Pbkdf2Hash>();
        }
    }
}
