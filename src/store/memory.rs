//! The in-process key store.

use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use jiff::Timestamp;

use super::map::RecordMap;
use super::rate_totals::RateTotals;
use super::{
    ChangeFeed, ChangeListener, KeyQuery, KeyStore, OutboxStore, SessionStore, StoreChange,
    StoreError, UsageStore,
};
use crate::events::{AuditEntry, AuditQuery, Delivery, KeyEvent, OutboxEntry};
use crate::key::KeyId;
use crate::policy::{FleetRates, QuotaGrant, RateShare};
use crate::record::KeyRecord;
use crate::session::{Session, SessionDigest, SessionTable};
use crate::usage::{Bucket, KeyTotal, UsageBatch, UsageRange, UsageTable};

/// A store in memory, with every capability: for tests, and for applications that load keys
/// themselves.
///
/// Cloning gives another handle to the same records; validators on two handles share their
/// rate-limit counts as a fleet on one database does.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    records: RwLock<RecordMap>,
    rates: Mutex<RateTotals>,
    usage: Mutex<UsageTable>,
    sessions: Mutex<SessionTable>,
    feed: ChangeFeed,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `records` (a later duplicate id replaces an earlier one).
    pub fn with_records(records: impl IntoIterator<Item = KeyRecord>) -> Self {
        let store = Self::new();
        store.write().extend(records);
        store
    }

    fn read(&self) -> RwLockReadGuard<'_, RecordMap> {
        self.inner
            .records
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, RecordMap> {
        self.inner
            .records
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, UsageTable> {
        self.inner
            .usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, SessionTable> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn rates(&self) -> std::sync::MutexGuard<'_, RateTotals> {
        self.inner
            .rates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self, id: KeyId) {
        self.inner.feed.publish(&StoreChange::Changed(id));
    }
}

impl KeyStore for MemoryStore {
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.read().get(id).cloned())
    }

    async fn query(&self, query: &KeyQuery) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self.read().query(query))
    }

    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        let id = record.id.clone();
        self.write().insert(record)?;
        self.changed(id);
        Ok(())
    }

    async fn replace(&self, current: &KeyRecord, new: KeyRecord) -> Result<(), StoreError> {
        self.write().replace(current, new)?;
        self.changed(current.id.clone());
        Ok(())
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        let existed = self.write().delete(id);
        if existed {
            // Its rate-limit total goes with it, as PostgreSQL's row does.
            self.rates().retain(|x| x != id);
            self.changed(id.clone());
        }
        Ok(existed)
    }

    async fn insert_limited(&self, record: KeyRecord, limit: usize) -> Result<(), StoreError> {
        let id = record.id.clone();
        self.write().insert_limited(record, limit)?;
        self.changed(id);
        Ok(())
    }

    async fn insert_many(&self, records: Vec<KeyRecord>) -> Result<(), StoreError> {
        let ids = self.write().insert_many(records)?;
        for id in ids {
            self.changed(id);
        }
        Ok(())
    }

    fn subscribe(&self, listener: Weak<dyn ChangeListener>) {
        self.inner.feed.subscribe(listener);
    }
}

impl UsageStore for MemoryStore {
    async fn record_last_used(&self, used: Vec<(KeyId, Timestamp)>) -> Result<(), StoreError> {
        self.write().record_last_used(used);
        Ok(())
    }

    async fn take_quota(&self, id: &KeyId, want: u64) -> Result<QuotaGrant, StoreError> {
        Ok(self.write().take_quota(id, want))
    }

    async fn return_quota(
        &self,
        id: &KeyId,
        uses: u64,
        period_start: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.write().return_quota(id, uses, period_start))
    }

    async fn share_rate_usage(&self, share: RateShare) -> Result<FleetRates, StoreError> {
        Ok(self.rates().share(share, Timestamp::now()))
    }

    async fn leave_rate_share(&self, server: u64) -> Result<(), StoreError> {
        self.rates().leave(server);
        Ok(())
    }

    async fn add_usage(&self, batch: UsageBatch) -> Result<(), StoreError> {
        self.usage().add(batch, Timestamp::now());
        Ok(())
    }

    async fn read_usage(&self, id: &KeyId, range: UsageRange) -> Result<Vec<Bucket>, StoreError> {
        Ok(self.usage().read(id, &range))
    }

    async fn top_usage(
        &self,
        principal: Option<&str>,
        range: UsageRange,
        limit: usize,
    ) -> Result<Vec<KeyTotal>, StoreError> {
        let records = self.read();
        let counted = |id: &KeyId| {
            records
                .get(id)
                .is_some_and(|r| principal.is_none_or(|p| r.principal == p))
        };
        Ok(self.usage().top(&range, counted, limit))
    }

    async fn prune_usage(
        &self,
        hourly_before: Timestamp,
        daily_before: Timestamp,
        limit: usize,
    ) -> Result<usize, StoreError> {
        Ok(self
            .usage()
            .prune(hourly_before, daily_before, Timestamp::now(), limit))
    }
}

impl OutboxStore for MemoryStore {
    async fn claim_events(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(self
            .write()
            .outbox_mut()
            .claim(limit, lease, Timestamp::now()))
    }

    async fn finish_event(&self, id: &str, outcome: Delivery) -> Result<(), StoreError> {
        self.write()
            .outbox_mut()
            .finish(id, outcome, Timestamp::now());
        Ok(())
    }

    async fn add_events(&self, events: Vec<KeyEvent>) -> Result<usize, StoreError> {
        Ok(self.write().emit_new(events))
    }

    async fn read_events(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.read().audit().read(query))
    }
}

impl SessionStore for MemoryStore {
    async fn insert_session(&self, session: Session) -> Result<(), StoreError> {
        self.sessions().insert(session);
        Ok(())
    }

    async fn session(&self, digest: &SessionDigest) -> Result<Option<Session>, StoreError> {
        Ok(self.sessions().get(digest).cloned())
    }

    async fn touch_session(
        &self,
        digest: &SessionDigest,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.sessions().touch(digest, at))
    }

    async fn delete_session(&self, digest: &SessionDigest) -> Result<bool, StoreError> {
        Ok(self.sessions().remove(digest))
    }

    async fn prune_sessions(
        &self,
        seen_before: Timestamp,
        created_before: Timestamp,
        limit: usize,
    ) -> Result<usize, StoreError> {
        Ok(self.sessions().prune(seen_before, created_before, limit))
    }
}
