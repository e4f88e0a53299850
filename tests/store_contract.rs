//! A `KeyStore` written outside the crate, as a user would, checked by the published
//! conformance suite (`test_util::check_store_contract`); and a store with the classic race
//! (count, then insert), which the suite must catch and name.

use std::sync::{Mutex, PoisonError, Weak};
use std::time::Duration;

use jiff::Timestamp;
use tower_apikey::events::{Delivery, KeyEvent, Outbox, OutboxEntry};
use tower_apikey::key::KeyId;
use tower_apikey::policy::QuotaGrant;
use tower_apikey::store::{ChangeFeed, ChangeListener, KeyStore, StoreChange, StoreError};
use tower_apikey::test_util::check_store_contract;
use tower_apikey::KeyRecord;

/// Records in a `Vec` kept sorted by id, and the outbox, behind one mutex: nothing shared
/// with the crate's own stores but the trait, the change feed helper and the outbox rules.
#[derive(Default)]
struct VecStore {
    records: Mutex<(Vec<KeyRecord>, Outbox)>,
    feed: ChangeFeed,
    /// Counts, waits, then inserts: the race the contract forbids.
    racy_limit: bool,
}

impl VecStore {
    fn with<T>(&self, f: impl FnOnce(&mut Vec<KeyRecord>) -> T) -> T {
        f(&mut self
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0)
    }

    /// Records and outbox together: a change and its events in one step.
    fn with_outbox<T>(&self, f: impl FnOnce(&mut Vec<KeyRecord>, &mut Outbox) -> T) -> T {
        let mut state = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let (records, outbox) = &mut *state;
        f(records, outbox)
    }

    fn position(records: &[KeyRecord], id: &KeyId) -> Result<usize, usize> {
        records.binary_search_by(|r| r.id.cmp(id))
    }

    fn changed(&self, id: &KeyId) {
        self.feed.publish(&StoreChange::Changed(id.clone()));
    }

    fn live_keys(records: &[KeyRecord], principal: &str) -> usize {
        let now = Timestamp::now();
        records
            .iter()
            .filter(|r| r.principal == principal && r.is_live_at(now))
            .count()
    }

    fn add(records: &mut Vec<KeyRecord>, record: KeyRecord) -> Result<(), StoreError> {
        match Self::position(records, &record.id) {
            Ok(_) => Err(StoreError::AlreadyExists(record.id)),
            Err(at) => {
                records.insert(at, record);
                Ok(())
            }
        }
    }

    /// Adds `record` and its event.
    fn issue(
        records: &mut Vec<KeyRecord>,
        outbox: &mut Outbox,
        record: KeyRecord,
    ) -> Result<(), StoreError> {
        let events = KeyEvent::for_change(None, Some(&record));
        Self::add(records, record)?;
        outbox.push(events);
        Ok(())
    }
}

impl KeyStore for VecStore {
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.with(|records| {
            Self::position(records, id)
                .ok()
                .map(|at| records[at].clone())
        }))
    }

    async fn list(&self, principal: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self.with(|records| {
            records
                .iter()
                .filter(|r| principal.is_none_or(|p| r.principal == p))
                .cloned()
                .collect()
        }))
    }

    async fn insert_limited(&self, record: KeyRecord, limit: usize) -> Result<(), StoreError> {
        let id = record.id.clone();
        if self.racy_limit {
            let live = self.with(|records| Self::live_keys(records, &record.principal));
            tokio::time::sleep(Duration::from_millis(20)).await;
            if live >= limit {
                return Err(StoreError::LimitReached {
                    principal: record.principal,
                    limit,
                });
            }
            self.with_outbox(|records, outbox| Self::issue(records, outbox, record))?;
        } else {
            self.with_outbox(|records, outbox| {
                if Self::live_keys(records, &record.principal) >= limit
                    && Self::position(records, &record.id).is_err()
                {
                    return Err(StoreError::LimitReached {
                        principal: record.principal.clone(),
                        limit,
                    });
                }
                Self::issue(records, outbox, record)
            })?;
        }
        self.changed(&id);
        Ok(())
    }

    async fn insert_many(&self, new: Vec<KeyRecord>) -> Result<(), StoreError> {
        let ids: Vec<KeyId> = new.iter().map(|r| r.id.clone()).collect();
        self.with(|records| {
            let mut merged = records.clone();
            for record in new {
                Self::add(&mut merged, record)?;
            }
            *records = merged;
            Ok(())
        })?;
        for id in &ids {
            self.changed(id);
        }
        Ok(())
    }

    async fn replace(&self, current: &KeyRecord, new: KeyRecord) -> Result<(), StoreError> {
        self.with_outbox(|records, outbox| {
            let at = Self::position(records, &current.id)
                .map_err(|_| StoreError::NotFound(current.id.clone()))?;
            let stored = &mut records[at];
            if stored.differs_beyond_usage(current) {
                return Err(StoreError::Conflict(current.id.clone()));
            }
            let new = new.keeping_usage(stored, current);
            outbox.push(KeyEvent::for_change(Some(stored), Some(&new)));
            *stored = new;
            Ok(())
        })?;
        self.changed(&current.id);
        Ok(())
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        let existed = self.with_outbox(|records, outbox| match Self::position(records, id) {
            Ok(at) => {
                let old = records.remove(at);
                outbox.push(KeyEvent::for_change(Some(&old), None));
                true
            }
            Err(_) => false,
        });
        if existed {
            self.changed(id);
        }
        Ok(existed)
    }

    async fn record_last_used(&self, used: Vec<(KeyId, Timestamp)>) -> Result<(), StoreError> {
        self.with(|records| {
            for (id, at) in used {
                if let Ok(i) = Self::position(records, &id) {
                    let seen = &mut records[i].last_used_at;
                    *seen = (*seen).max(Some(at));
                }
            }
        });
        Ok(())
    }

    async fn take_quota(&self, id: &KeyId, want: u64) -> Result<QuotaGrant, StoreError> {
        Ok(
            self.with_outbox(|records, outbox| match Self::position(records, id) {
                Ok(at) => {
                    let grant = QuotaGrant::take(&mut records[at], want, Timestamp::now());
                    if let (0, Some(start)) = (grant.remaining, grant.period_start) {
                        outbox.push_new(vec![KeyEvent::quota_exhausted(&records[at], start)]);
                    }
                    grant
                }
                Err(_) => QuotaGrant::NONE,
            }),
        )
    }

    async fn return_quota(
        &self,
        id: &KeyId,
        uses: u64,
        period_start: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|records| match Self::position(records, id) {
            Ok(at) => QuotaGrant::give_back(&mut records[at], uses, period_start),
            Err(_) => false,
        }))
    }

    async fn claim_events(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(self.with_outbox(|_, outbox| outbox.claim(limit, lease, Timestamp::now())))
    }

    async fn finish_event(&self, id: &str, outcome: Delivery) -> Result<(), StoreError> {
        self.with_outbox(|_, outbox| outbox.finish(id, outcome, Timestamp::now()));
        Ok(())
    }

    async fn add_events(&self, events: Vec<KeyEvent>) -> Result<usize, StoreError> {
        Ok(self.with_outbox(|_, outbox| outbox.push_new(events)))
    }

    fn subscribe(&self, listener: Weak<dyn ChangeListener>) {
        self.feed.subscribe(listener);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_outside_the_crate_meets_the_contract() {
    check_store_contract(|| async { VecStore::default() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_names_the_rule_a_racy_store_breaks() {
    let suite = tokio::spawn(check_store_contract(|| async {
        VecStore {
            racy_limit: true,
            ..VecStore::default()
        }
    }));
    let panic = suite
        .await
        .expect_err("a store that counts, waits, then inserts must fail the suite");
    let panic = panic.into_panic();
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(
        message.contains("insert_limited holds under concurrent writers"),
        "the failure names the rule: {message}"
    );
}
