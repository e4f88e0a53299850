//! Reading what keys did and what was done to them, through the key manager: a key's
//! requests by hour or day, the busiest keys, and the audit trail.

use super::{KeyManager, LifecycleError};
use crate::events::{AuditEntry, AuditQuery};
use crate::key::KeyId;
use crate::record::KeyRecord;
use crate::usage::{Bucket, Counts, UsageRange};

impl KeyManager {
    /// `id`'s requests over `range`, by outcome: every bucket of the range, oldest first,
    /// those without traffic as zeros. What validators counted and wrote (each writes once a
    /// [flush interval](crate::validator::ValidatorBuilder::usage_flush_interval)).
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] for an id with no record; the store's failure.
    pub async fn usage(
        &self,
        id: &KeyId,
        range: UsageRange,
    ) -> Result<Vec<Bucket>, LifecycleError> {
        self.get(id).await?;
        Ok(self.store.read_usage(id, range).await?)
    }

    /// The keys (of `principal`, if given) with the most requests over `range`, each with its
    /// record and its requests by outcome, busiest first, at most `limit`.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn top_usage(
        &self,
        principal: Option<&str>,
        range: UsageRange,
        limit: usize,
    ) -> Result<Vec<(KeyRecord, Counts)>, LifecycleError> {
        let totals = self.store.top_usage(principal, range, limit).await?;
        let mut top = Vec::with_capacity(totals.len());
        for total in totals {
            // A key deleted since its usage was read is left out.
            if let Some(record) = self.store.get(&total.id).await? {
                top.push((record, total.counts));
            }
        }
        Ok(top)
    }

    /// The audit trail's events `query` asks for, newest first: who changed which key, when,
    /// and why (`actor`, `reason`, `location`), kept
    /// [400 days](crate::events::AUDIT_RETENTION) by default whether delivered or not.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn events(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, LifecycleError> {
        Ok(self.store.read_events(query).await?)
    }
}
