//! Checking a key reported as leaked (by `scan`, by a secret-scanning alert): whose key it
//! is, whatever its state, through the same bounded cold path as a request.

use super::{ValidationError, Validator};
use crate::key::{KeyId, PresentedKey};
use crate::record::KeyRecord;

impl Validator {
    /// The record `key` is the key of, whatever its state (active, inactive, expired or
    /// revoked): what a leak report needs, where [`validate`](Self::validate) would only say
    /// "refused". `None` when the key is not in this validator's format, no record has its
    /// id, or the secret does not match the record.
    ///
    /// One store read and one PBKDF2 derivation, admitted like a request's: when every
    /// place is taken it fails at once with [`ValidationError::Overloaded`], so a batch of
    /// reports checked one at a time never holds more than one place. The cache is neither
    /// read nor filled. Legacy (opaque) keys are not looked for. Must be called within a
    /// Tokio runtime.
    ///
    /// # Errors
    /// [`ValidationError::Overloaded`], [`Unavailable`](ValidationError::Unavailable),
    /// [`Internal`](ValidationError::Internal); never `Rejected`.
    pub async fn record_of(
        &self,
        key: &PresentedKey,
    ) -> Result<Option<KeyRecord>, ValidationError> {
        let inner = &self.inner;
        let Ok(parsed) = inner.format.parse(key) else {
            return Ok(None);
        };
        let Ok(id) = KeyId::new(parsed.id()) else {
            return Ok(None);
        };
        inner.counters.store_read();
        let Some(record) = inner.read_store(inner.store.get(&id)).await? else {
            return Ok(None);
        };
        let matched = inner
            .derive(record.hash.clone(), record.prf, key.clone())
            .await?;
        Ok(matched.then_some(record))
    }
}
