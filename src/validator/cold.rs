//! The cold path for a key in this crate's format: one store read, then one PBKDF2
//! derivation admitted through [`Admission`](super::admission::Admission) and shared by every
//! caller presenting the same key at once; the outcome is cached behind the epoch fence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use jiff::Timestamp;
use tokio::sync::OnceCell;
use tracing::Instrument;

use super::cache::{refusal_of, Fill, Refusal, ValidEntry};
use super::{Inner, RejectReason, ValidationError};
use crate::hash::{Pbkdf2Hash, Prf};
use crate::identity::Identity;
use crate::key::{KeyId, ParsedKey, PresentedKey};

/// One cell per (id, key digest) being derived, so concurrent callers share the work.
pub(super) type Inflight = Mutex<HashMap<InflightKey, Arc<OnceCell<bool>>>>;

type InflightKey = (KeyId, [u8; 32]);

impl Inner {
    /// Validates `key`, which parsed as this format's `parsed`; caches the outcome.
    pub(super) async fn validate_parsed(
        self: &Arc<Self>,
        key: &PresentedKey,
        parsed: ParsedKey<'_>,
    ) -> Result<Identity, ValidationError> {
        let Ok(id) = KeyId::new(parsed.id()) else {
            return Err(ValidationError::Rejected(
                self.counters.rejected(None, RejectReason::Malformed),
            ));
        };
        let reject = |id: &KeyId, reason| {
            Err(ValidationError::Rejected(
                self.counters.rejected(Some(id.as_str()), reason),
            ))
        };
        tracing::Span::current().record("key_id", tracing::field::display(&id));
        let epoch = self.cache.epoch();
        self.counters.store_read();
        let record = self
            .read_store(
                self.store
                    .get(&id)
                    .instrument(tracing::debug_span!("apikey.store_get")),
            )
            .await?;
        let refusal = match &record {
            None => Some(RejectReason::UnknownKey),
            Some(r) => refusal_of(r, Timestamp::now()),
        };
        let record = match (record, refusal) {
            (Some(record), None) => record,
            (record, reason) => {
                let reason = reason.unwrap_or(RejectReason::UnknownKey);
                // Only a real key's refusals are counted against it.
                let tally = record.and_then(|_| self.counted_refusal(&id, reason));
                self.cache
                    .fill(id.clone(), Fill::Refused(Refusal { reason, tally }), epoch);
                return reject(&id, reason);
            }
        };
        let digest = self.cache.digest(parsed.secret());
        // Callers presenting the same key share one derivation. The in-flight slot is held
        // until the cache is filled, so a late caller finds one or the other.
        let inflight = self.join_inflight(&id, digest);
        let matched = inflight
            .cell
            .get_or_try_init(|| {
                let span = tracing::debug_span!(
                    "apikey.derive",
                    prf = record.prf.as_str(),
                    iterations = record.hash.iterations()
                );
                self.derive(record.hash.clone(), record.prf, key.clone())
                    .instrument(span)
            })
            .await
            .copied()?;
        if !matched {
            self.counted_refusal(&id, RejectReason::WrongSecret);
            return reject(&id, RejectReason::WrongSecret);
        }
        let identity = self.identity_of(&record);
        if let Some(usage) = identity.usage().filter(|usage| usage.rate.is_some()) {
            self.introduce_rate_limit(&id, usage).await;
        }
        let entry = ValidEntry {
            digest,
            identity: identity.clone(),
        };
        // The identity's id as the cache key: one allocation per cached key fewer.
        self.cache
            .fill(identity.key_id().clone(), Fill::Valid(entry), epoch);
        drop(inflight);
        Ok(identity)
    }

    /// Runs one derivation once admitted; refused at once when every place is taken.
    pub(super) async fn derive(
        &self,
        hash: Pbkdf2Hash,
        prf: Prf,
        key: PresentedKey,
    ) -> Result<bool, ValidationError> {
        let admitted = match self.derivation_work.admit().await {
            Ok(admitted) => admitted,
            Err(_) => return Err(self.shed()),
        };
        self.note_admitted();
        self.counters.derivation();
        // The slot moves into the job: if the caller gives up, it stays taken until the
        // derivation really ends (or is dropped unstarted), so the bound holds.
        admitted
            .run(move |_| hash.verify(prf, key.expose()))
            .await
            .map_err(|e| ValidationError::Internal(Box::new(e)))
    }

    /// The shared derivation slot for (`id`, `digest`), created if no caller holds one.
    fn join_inflight(&self, id: &KeyId, digest: [u8; 32]) -> InflightGuard<'_> {
        let slot = (id.clone(), digest);
        let cell = {
            let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(inflight.entry(slot.clone()).or_default())
        };
        InflightGuard {
            map: &self.inflight,
            slot,
            cell,
        }
    }
}

/// Removes an in-flight cell once its last waiter is done (or gone).
struct InflightGuard<'a> {
    map: &'a Inflight,
    slot: InflightKey,
    cell: Arc<OnceCell<bool>>,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = map.get(&self.slot) {
            // The map holds one reference and this guard one: no one else is waiting.
            let last_waiter =
                Arc::ptr_eq(current, &self.cell) && Arc::strong_count(&self.cell) <= 2;
            if last_waiter || (Arc::ptr_eq(current, &self.cell) && self.cell.initialized()) {
                map.remove(&self.slot);
            }
        }
    }
}
