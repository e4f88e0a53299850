//! A name for the secret a PBKDF2 record verifies, that verifies nothing itself: what an
//! access token carries so that a regenerated key's earlier tokens end (feature `tokens`).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::Pbkdf2Hash;

/// Names a key's secret as it stands: the first 8 bytes of a SHA-256 of its PBKDF2 record.
/// A regeneration changes it; an edit of the key's name or permissions does not. A token
/// carries it (claim `key_version`), so servers that share the store refuse a regenerated
/// key's earlier tokens. It verifies nothing: the record's salt is not in it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct KeyVersion([u8; 8]);

impl KeyVersion {
    /// For a token that carries none (one another issuer signed).
    pub(crate) const NONE: KeyVersion = KeyVersion([0; 8]);

    /// The version of the secret `hash` verifies.
    pub(crate) fn of(hash: &Pbkdf2Hash) -> Self {
        let digest = Sha256::digest(hash.to_string().as_bytes());
        let mut version = [0u8; 8];
        version.copy_from_slice(&digest[..8]);
        Self(version)
    }

    pub(crate) fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    pub(crate) fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyVersion({})", self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashParams;
    use crate::key::KeyFormat;
    use crate::KeyRecord;

    #[test]
    fn key_versions_follow_the_secret() {
        let params = HashParams::default().with_iterations(1).unwrap();
        let (record, _) = KeyRecord::generate("a", &KeyFormat::default(), &params).unwrap();
        let (other, _) = KeyRecord::generate("a", &KeyFormat::default(), &params).unwrap();
        let version = KeyVersion::of(&record.hash);
        assert_eq!(version, KeyVersion::of(&record.hash.clone()));
        assert_ne!(version, KeyVersion::of(&other.hash));
        assert_eq!(KeyVersion::decode(&version.encode()), Some(version));
        assert_eq!(KeyVersion::decode("short"), None);
    }
}
