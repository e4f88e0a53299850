//! Keys as secrets: a presented key and a newly generated one, zeroized on drop and never
//! printed; and the digest a legacy key is found by.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use super::{KeyError, MAX_KEY_LEN};

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

/// A newly generated key in plaintext, to show its owner once.
///
/// Zeroized on drop; `Debug` prints a placeholder and there is no `Display`: call
/// [`expose`](Self::expose) where the key is meant to be seen.
pub struct PlaintextKey(pub(super) Zeroizing<String>);

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

/// SHA-256 of a key, hex: how a store finds a legacy opaque key (which carries no id) once it
/// has been seen.
pub(crate) fn lookup_digest(key: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    crate::hash::Hex(&Sha256::digest(key)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookup_digest_is_sha256_hex() {
        // `printf abc | sha256sum`
        assert_eq!(
            lookup_digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
