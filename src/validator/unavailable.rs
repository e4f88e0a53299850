//! Answers that are not the key's fault (503): the store unreachable, or cold work at its
//! bound. Each is counted and logged as a run — when it begins and when it ends, with the
//! number refused meanwhile — never once per request.

use std::future::Future;

use super::{Inner, ValidationError};
use crate::store::StoreError;

impl Inner {
    /// Counts and answers a caller refused because every place for cold work is taken.
    pub(super) fn shed(&self) -> ValidationError {
        self.counters.shed();
        if self.shedding.fail() {
            tracing::warn!("API key verifications are at their bound; refusing more with 503");
        }
        ValidationError::Overloaded
    }

    /// Notes that cold work was admitted: ends a run of refusals.
    pub(super) fn note_admitted(&self) {
        if let Some(ended) = self.shedding.succeed() {
            tracing::info!(
                refused = ended.failures,
                lasted_ms = ended.lasted.as_millis() as u64,
                "API key verifications below their bound again"
            );
        }
    }

    /// Notes a failed store read and answers it as unavailable (a store's own bug as
    /// internal: no outage to wait out).
    pub(super) fn store_failed(&self, error: StoreError) -> ValidationError {
        if let StoreError::Internal(_) = error {
            tracing::error!(%error, "key store failed");
            return ValidationError::Internal(Box::new(error));
        }
        if self.store_outage.fail() {
            tracing::warn!(%error, "key store unreachable; uncached keys are refused with 503 until it answers");
        }
        ValidationError::Unavailable(error)
    }

    /// A store call on the cold path: its failure counted as part of an outage, and an
    /// answer after failures logged as the outage's end.
    pub(super) async fn read_store<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, ValidationError> {
        match call.await {
            Ok(value) => {
                if let Some(ended) = self.store_outage.succeed() {
                    tracing::warn!(
                        refused = ended.failures,
                        lasted_ms = ended.lasted.as_millis() as u64,
                        "key store reachable again"
                    );
                }
                Ok(value)
            }
            Err(error) => Err(self.store_failed(error)),
        }
    }
}
