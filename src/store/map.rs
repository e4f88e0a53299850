//! The store contract on an id-ordered map: what the memory and file stores share, so each
//! rule (the per-principal limit, compare-and-swap, paging, last use) is written once.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use jiff::Timestamp;

use super::{KeyQuery, StoreError};
use crate::events::{AuditLog, KeyEvent, Outbox, AUDIT_RETENTION};
use crate::key::KeyId;
use crate::policy::QuotaGrant;
use crate::record::KeyRecord;

/// Records by id, with each [`KeyStore`](super::KeyStore) operation as a method, and the
/// outbox each change writes its events to in the same step. The caller holds the lock and
/// publishes the changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RecordMap {
    records: BTreeMap<KeyId, KeyRecord>,
    outbox: Outbox,
    audit: AuditLog,
}

impl RecordMap {
    pub(crate) fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Sets the audit trail; what a load does.
    pub(crate) fn load_audit(&mut self, audit: AuditLog) {
        self.audit = audit;
    }

    /// Writes `events` to the outbox and the audit trail.
    fn emit(&mut self, events: Vec<KeyEvent>) {
        self.audit
            .record(&events, Timestamp::now(), AUDIT_RETENTION);
        self.outbox.push(events);
    }

    /// Writes the events whose ids neither the outbox nor the trail holds yet; how many.
    pub(crate) fn emit_new(&mut self, events: Vec<KeyEvent>) -> usize {
        let mut fresh: Vec<KeyEvent> = Vec::with_capacity(events.len());
        for event in events {
            let known = self.outbox.contains(&event.id) || self.audit.contains(&event.id);
            if !known && fresh.iter().all(|e| e.id != event.id) {
                fresh.push(event);
            }
        }
        let added = fresh.len();
        self.emit(fresh);
        added
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub(crate) fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    /// Sets the outbox; what a load does.
    pub(crate) fn load_outbox(&mut self, outbox: Outbox) {
        self.outbox = outbox;
    }

    pub(crate) fn get(&self, id: &KeyId) -> Option<&KeyRecord> {
        self.records.get(id)
    }

    pub(crate) fn contains(&self, id: &KeyId) -> bool {
        self.records.contains_key(id)
    }

    pub(crate) fn records(&self) -> impl Iterator<Item = &KeyRecord> {
        self.records.values()
    }

    /// Walks from `after` and clones only the page.
    pub(crate) fn query(&self, query: &KeyQuery) -> Vec<KeyRecord> {
        let from = match &query.after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        self.records
            .range::<KeyId, _>((from, Bound::Unbounded))
            .map(|(_, r)| r)
            .filter(|r| query.matches(r))
            .take(query.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// Adds `record` with its event, or says the id is taken.
    pub(crate) fn insert(&mut self, record: KeyRecord) -> Result<(), StoreError> {
        if self.records.contains_key(&record.id) {
            return Err(StoreError::AlreadyExists(record.id));
        }
        self.emit(KeyEvent::for_change(None, Some(&record)));
        self.records.insert(record.id.clone(), record);
        Ok(())
    }

    /// Adds a record, a later duplicate id replacing an earlier one; what a load does.
    pub(crate) fn load(&mut self, record: KeyRecord) -> Option<KeyRecord> {
        self.records.insert(record.id.clone(), record)
    }

    pub(crate) fn insert_limited(
        &mut self,
        record: KeyRecord,
        limit: usize,
    ) -> Result<(), StoreError> {
        if self.records.contains_key(&record.id) {
            return Err(StoreError::AlreadyExists(record.id));
        }
        let now = Timestamp::now();
        let live = self
            .records
            .values()
            .filter(|r| r.principal == record.principal && r.is_live_at(now))
            .count();
        if live >= limit {
            return Err(StoreError::LimitReached {
                principal: record.principal,
                limit,
            });
        }
        self.insert(record)
    }

    pub(crate) fn replace(
        &mut self,
        current: &KeyRecord,
        new: KeyRecord,
    ) -> Result<(), StoreError> {
        let Some(stored) = self.records.get_mut(&current.id) else {
            return Err(StoreError::NotFound(current.id.clone()));
        };
        if stored.differs_beyond_usage(current) {
            return Err(StoreError::Conflict(current.id.clone()));
        }
        let new = new.keeping_usage(stored, current);
        let events = KeyEvent::for_change(Some(stored), Some(&new));
        *stored = new;
        self.emit(events);
        Ok(())
    }

    pub(crate) fn delete(&mut self, id: &KeyId) -> bool {
        let Some(old) = self.records.remove(id) else {
            return false;
        };
        self.emit(KeyEvent::for_change(Some(&old), None));
        true
    }

    pub(crate) fn record_last_used(&mut self, used: Vec<(KeyId, Timestamp)>) {
        for (id, at) in used {
            if let Some(record) = self.records.get_mut(&id) {
                let last = &mut record.usage.last_used_at;
                *last = Some(last.map_or(at, |seen| seen.max(at)));
            }
        }
    }

    /// Takes up to `want` uses of a key's quota (see [`KeyRecord::take_quota`]); nothing for
    /// an unknown id. The quota running out is an event, once per period.
    pub(crate) fn take_quota(&mut self, id: &KeyId, want: u64) -> QuotaGrant {
        let Some(record) = self.records.get_mut(id) else {
            return QuotaGrant::NONE;
        };
        let grant = record.take_quota(want, Timestamp::now());
        if let (0, Some(start)) = (grant.remaining, grant.period_start) {
            let event = KeyEvent::quota_exhausted(record, start);
            self.emit_new(vec![event]);
        }
        grant
    }

    /// Gives uses back (see [`KeyRecord::give_back_quota`]); whether they were taken.
    pub(crate) fn return_quota(&mut self, id: &KeyId, uses: u64, period_start: Timestamp) -> bool {
        self.records
            .get_mut(id)
            .is_some_and(|record| record.give_back_quota(uses, period_start))
    }

    /// All or nothing. Returns the ids added.
    pub(crate) fn insert_many(&mut self, new: Vec<KeyRecord>) -> Result<Vec<KeyId>, StoreError> {
        let mut seen = BTreeSet::new();
        for record in &new {
            if self.records.contains_key(&record.id) || !seen.insert(&record.id) {
                return Err(StoreError::AlreadyExists(record.id.clone()));
            }
        }
        let ids = new.iter().map(|r| r.id.clone()).collect();
        self.records
            .extend(new.into_iter().map(|r| (r.id.clone(), r)));
        Ok(ids)
    }

    /// The ids whose records differ between `self` and `other`, last use aside.
    pub(crate) fn changed_ids(&self, other: &RecordMap) -> Vec<KeyId> {
        let mut changed: Vec<KeyId> = self
            .records
            .iter()
            .filter(|(id, old)| {
                other
                    .records
                    .get(*id)
                    .is_none_or(|new| old.differs_beyond_usage(new))
            })
            .map(|(id, _)| id.clone())
            .collect();
        changed.extend(
            other
                .records
                .keys()
                .filter(|id| !self.records.contains_key(*id))
                .cloned(),
        );
        changed
    }
}

impl FromIterator<KeyRecord> for RecordMap {
    fn from_iter<I: IntoIterator<Item = KeyRecord>>(iter: I) -> Self {
        let mut map = Self::default();
        map.extend(iter);
        map
    }
}

impl Extend<KeyRecord> for RecordMap {
    fn extend<I: IntoIterator<Item = KeyRecord>>(&mut self, iter: I) {
        self.records
            .extend(iter.into_iter().map(|r| (r.id.clone(), r)));
    }
}
