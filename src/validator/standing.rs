//! Whether a key known only by its id still stands: what a console session, which holds its
//! admin key's id and never the key, checks on every request.

use jiff::Timestamp;

use super::{ValidationError, Validator};
use crate::identity::Identity;
use crate::key::KeyId;
use crate::record::KeyStatus;

impl Validator {
    /// The identity of the key `id` if it is usable now (active, not expired), else `None`
    /// (revoked, inactive, expired, deleted).
    ///
    /// From the cache when the key is cached valid: a revocation or deactivation drops that
    /// entry as the change feed brings it (on every server sharing the store, within the
    /// propagation bound), and the next call reads the store. Otherwise one store read, not
    /// cached (without the key there is nothing to cache it under). No derivation.
    ///
    /// # Errors
    /// [`ValidationError::Unavailable`] when the store cannot be read; never `Rejected`.
    pub async fn identity_by_id(&self, id: &KeyId) -> Result<Option<Identity>, ValidationError> {
        let now = Timestamp::now();
        if let Some(entry) = self.inner.cache.valid_entry(id.as_str()) {
            let expired = entry.identity.expires_at().is_some_and(|at| at <= now);
            return Ok((!expired).then_some(entry.identity));
        }
        let inner = &self.inner;
        inner.counters.store_read();
        let record = inner.read_store(inner.store.get(id)).await?;
        Ok(record
            .filter(|r| r.status == KeyStatus::Active && !r.is_expired_at(now))
            .map(|r| Identity::from_record(&r)))
    }
}
