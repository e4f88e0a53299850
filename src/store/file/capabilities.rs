//! The store capabilities of [`FileStore`]: records, usage and the outbox, each write one
//! locked rewrite of the file.

use std::sync::{Arc, Weak};
use std::time::Duration;

use jiff::Timestamp;

use super::sidecar::{RATES, USAGE};
use super::{blocking, FileStore};
use crate::events::{AuditEntry, AuditQuery, Delivery, KeyEvent, OutboxEntry};
use crate::key::KeyId;
use crate::policy::{FleetRates, QuotaGrant, RateShare};
use crate::record::KeyRecord;
use crate::store::rate_totals::RateTotals;
use crate::store::{ChangeListener, KeyQuery, KeyStore, OutboxStore, StoreError, UsageStore};
use crate::usage::{Bucket, KeyTotal, UsageBatch, UsageRange, UsageTable};

impl KeyStore for FileStore {
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.read().records.get(id).cloned())
    }

    async fn query(&self, query: &KeyQuery) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self.read().records.query(query))
    }

    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.modify(move |records| records.insert(record)).await
    }

    async fn replace(&self, current: &KeyRecord, new: KeyRecord) -> Result<(), StoreError> {
        let current = current.clone();
        self.modify(move |records| records.replace(&current, new))
            .await
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        let id = id.clone();
        self.modify(move |records| Ok(records.delete(&id))).await
    }

    async fn insert_limited(&self, record: KeyRecord, limit: usize) -> Result<(), StoreError> {
        self.modify(move |records| records.insert_limited(record, limit))
            .await
    }

    async fn insert_many(&self, records: Vec<KeyRecord>) -> Result<(), StoreError> {
        self.modify(move |map| map.insert_many(records).map(drop))
            .await
    }

    fn subscribe(&self, listener: Weak<dyn ChangeListener>) {
        self.inner.feed.subscribe(listener);
    }
}

impl UsageStore for FileStore {
    async fn record_last_used(&self, used: Vec<(KeyId, Timestamp)>) -> Result<(), StoreError> {
        // One write for the whole batch; the reload diff ignores last use, so no process
        // drops a cached key for it.
        self.modify(move |records| {
            records.record_last_used(used);
            Ok(())
        })
        .await
    }

    async fn take_quota(&self, id: &KeyId, want: u64) -> Result<QuotaGrant, StoreError> {
        // One write per lease, under the file lock like every write; the reload diff ignores
        // usage, so no process drops a cached key for it.
        let id = id.clone();
        self.modify(move |records| Ok(records.take_quota(&id, want)))
            .await
    }

    async fn return_quota(
        &self,
        id: &KeyId,
        uses: u64,
        period_start: Timestamp,
    ) -> Result<bool, StoreError> {
        let id = id.clone();
        self.modify(move |records| Ok(records.return_quota(&id, uses, period_start)))
            .await
    }

    async fn share_rate_usage(&self, share: RateShare) -> Result<FleetRates, StoreError> {
        // Beside the store, in `<path>.rates`: every process on the file shares its counts.
        // Totals of keys gone are dropped (a key just made elsewhere and not read here yet
        // loses one share: its servers see the total start again).
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            RATES.update(&inner.path, &inner.lock_path, |totals: &mut RateTotals| {
                let state = inner.state();
                totals.retain(|id| {
                    state.records.contains(id) || share.admitted.iter().any(|(k, _)| k == id)
                });
                totals.share(share, Timestamp::now())
            })
        })
        .await
    }

    async fn leave_rate_share(&self, server: u64) -> Result<(), StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            RATES.update(&inner.path, &inner.lock_path, |totals: &mut RateTotals| {
                totals.leave(server);
            })
        })
        .await
    }

    async fn add_usage(&self, batch: UsageBatch) -> Result<(), StoreError> {
        // Beside the store, in `<path>.usage`, synced: counts are kept for their retention.
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            USAGE.update(&inner.path, &inner.lock_path, |table: &mut UsageTable| {
                table.add(batch, Timestamp::now());
            })
        })
        .await
    }

    async fn read_usage(&self, id: &KeyId, range: UsageRange) -> Result<Vec<Bucket>, StoreError> {
        let table = self.usage_table().await?;
        Ok(table.read(id, &range))
    }

    async fn top_usage(
        &self,
        principal: Option<&str>,
        range: UsageRange,
        limit: usize,
    ) -> Result<Vec<KeyTotal>, StoreError> {
        let table = self.usage_table().await?;
        let state = self.read();
        let counted = |id: &KeyId| {
            state
                .records
                .get(id)
                .is_some_and(|r| principal.is_none_or(|p| r.principal == p))
        };
        Ok(table.top(&range, counted, limit))
    }

    async fn prune_usage(
        &self,
        hourly_before: Timestamp,
        daily_before: Timestamp,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            USAGE.update(&inner.path, &inner.lock_path, |table: &mut UsageTable| {
                table.prune(hourly_before, daily_before, Timestamp::now(), limit)
            })
        })
        .await
    }
}

impl FileStore {
    /// The usage counts as the file holds them now.
    async fn usage_table(&self) -> Result<UsageTable, StoreError> {
        let path = self.inner.path.clone();
        blocking(move || USAGE.load(&path)).await
    }
}

impl OutboxStore for FileStore {
    async fn claim_events(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        // Nothing due as last read: no write (a sender asks every second). Another process's
        // events are read with its change, within the poll interval.
        if !self.read().records.outbox().has_due(Timestamp::now()) {
            return Ok(Vec::new());
        }
        self.modify(move |records| Ok(records.outbox_mut().claim(limit, lease, Timestamp::now())))
            .await
    }

    async fn finish_event(&self, id: &str, outcome: Delivery) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.modify(move |records| {
            records.outbox_mut().finish(&id, outcome, Timestamp::now());
            Ok(())
        })
        .await
    }

    async fn add_events(&self, events: Vec<KeyEvent>) -> Result<usize, StoreError> {
        // Known already as last read: no write (every server sweeps every minute).
        let known = {
            let state = self.read();
            let outbox = state.records.outbox().entries();
            events
                .iter()
                .all(|e| outbox.iter().any(|o| o.event.id == e.id))
        };
        if known {
            return Ok(0);
        }
        self.modify(move |records| Ok(records.emit_new(events)))
            .await
    }

    async fn read_events(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.read().records.audit().read(query))
    }
}
