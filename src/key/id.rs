//! Record ids: carried in clear in every key, so a lookup is one get by id.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{all_bytes, is_alnum, random_base62, KeyError, RngError, GENERATED_ID_LEN, MAX_ID_LEN};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_display_with_padding() {
        let id = KeyId::new("abc").unwrap();
        assert_eq!(format!("[{id:<5}]"), "[abc  ]");
    }
}
