//! A store written outside the crate, as a user would, with every capability, checked by the
//! published conformance suites (`test_util::check_store_contract`); and a store with the
//! classic race (count, then insert), which the records suite must catch and name.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use jiff::Timestamp;
use tower_apikey::events::{
    AuditEntry, AuditLog, AuditQuery, Delivery, KeyEvent, Outbox, OutboxEntry,
};
use tower_apikey::key::KeyId;
use tower_apikey::store::{
    ChangeFeed, ChangeListener, FleetRates, KeyFleetRate, KeyQuery, KeyStore, OutboxStore,
    QuotaGrant, RateShare, StoreChange, StoreError, UsageStore,
};
use tower_apikey::test_util::{check_key_store, check_store_contract, check_usage_store};
use tower_apikey::usage::{Bucket, KeyTotal, UsageBatch, UsageRange, UsageTable};
use tower_apikey::KeyRecord;

/// Records in a `Vec` kept sorted by id, the outbox and the rate totals, behind one mutex:
/// nothing shared with the crate's own stores but the traits, the change feed helper and the
/// outbox rules. Cloning gives another handle to the same store.
#[derive(Clone, Default)]
struct VecStore {
    inner: Arc<Shared>,
    /// Counts, waits, then inserts: the race the contract forbids.
    racy_limit: bool,
    /// Shares no rate-limit counts (what `share_rate_usage` did by default once): each
    /// server on the store would limit alone, and say nothing.
    silent_rates: bool,
    /// Never forgets a server that leaves: a server restarted would spread each key's
    /// burst over its gone predecessor for an hour.
    never_leaves: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    feed: ChangeFeed,
}

#[derive(Default)]
struct State {
    records: Vec<KeyRecord>,
    outbox: Outbox,
    rates: BTreeMap<KeyId, u64>,
    /// When each server last admitted each key, and last shared.
    listed: BTreeMap<(KeyId, u64), std::time::Instant>,
    servers: BTreeMap<u64, std::time::Instant>,
    usage: UsageTable,
    audit: AuditLog,
}

impl State {
    /// Writes `events` to the outbox and the audit trail, in the same step as their change.
    fn emit(&mut self, events: Vec<KeyEvent>) {
        self.audit.record(
            &events,
            Timestamp::now(),
            tower_apikey::events::AUDIT_RETENTION,
        );
        self.outbox.push(events);
    }

    /// Writes the events the outbox does not hold yet; how many.
    fn emit_new(&mut self, events: Vec<KeyEvent>) -> usize {
        let fresh: Vec<KeyEvent> = events
            .into_iter()
            .filter(|e| !self.outbox.contains(&e.id))
            .collect();
        let added = fresh.len();
        self.emit(fresh);
        added
    }
}

impl VecStore {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    fn position(records: &[KeyRecord], id: &KeyId) -> Result<usize, usize> {
        records.binary_search_by(|r| r.id.cmp(id))
    }

    fn changed(&self, id: &KeyId) {
        self.inner.feed.publish(&StoreChange::Changed(id.clone()));
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
    fn issue(state: &mut State, record: KeyRecord) -> Result<(), StoreError> {
        let events = KeyEvent::for_change(None, Some(&record));
        Self::add(&mut state.records, record)?;
        state.emit(events);
        Ok(())
    }
}

impl KeyStore for VecStore {
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.with(|state| {
            Self::position(&state.records, id)
                .ok()
                .map(|at| state.records[at].clone())
        }))
    }

    async fn query(&self, query: &KeyQuery) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self.with(|state| {
            state
                .records
                .iter()
                .filter(|r| query.after.as_ref().is_none_or(|after| r.id > *after))
                .filter(|r| query.matches(r))
                .take(query.limit.unwrap_or(usize::MAX))
                .cloned()
                .collect()
        }))
    }

    async fn insert_limited(&self, record: KeyRecord, limit: usize) -> Result<(), StoreError> {
        let id = record.id.clone();
        if self.racy_limit {
            let live = self.with(|state| Self::live_keys(&state.records, &record.principal));
            tokio::time::sleep(Duration::from_millis(20)).await;
            if live >= limit {
                return Err(StoreError::LimitReached {
                    principal: record.principal,
                    limit,
                });
            }
            self.with(|state| Self::issue(state, record))?;
        } else {
            self.with(|state| {
                if Self::live_keys(&state.records, &record.principal) >= limit
                    && Self::position(&state.records, &record.id).is_err()
                {
                    return Err(StoreError::LimitReached {
                        principal: record.principal.clone(),
                        limit,
                    });
                }
                Self::issue(state, record)
            })?;
        }
        self.changed(&id);
        Ok(())
    }

    async fn insert_many(&self, new: Vec<KeyRecord>) -> Result<(), StoreError> {
        let ids: Vec<KeyId> = new.iter().map(|r| r.id.clone()).collect();
        self.with(|state| {
            let mut merged = state.records.clone();
            for record in new {
                Self::add(&mut merged, record)?;
            }
            state.records = merged;
            Ok(())
        })?;
        for id in &ids {
            self.changed(id);
        }
        Ok(())
    }

    async fn replace(&self, current: &KeyRecord, new: KeyRecord) -> Result<(), StoreError> {
        self.with(|state| {
            let at = Self::position(&state.records, &current.id)
                .map_err(|_| StoreError::NotFound(current.id.clone()))?;
            let stored = &mut state.records[at];
            if stored.differs_beyond_usage(current) {
                return Err(StoreError::Conflict(current.id.clone()));
            }
            let new = new.keeping_usage(stored, current);
            let events = KeyEvent::for_change(Some(stored), Some(&new));
            *stored = new;
            state.emit(events);
            Ok(())
        })?;
        self.changed(&current.id);
        Ok(())
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        let existed = self.with(|state| match Self::position(&state.records, id) {
            Ok(at) => {
                let old = state.records.remove(at);
                state.emit(KeyEvent::for_change(Some(&old), None));
                true
            }
            Err(_) => false,
        });
        if existed {
            self.changed(id);
        }
        Ok(existed)
    }

    fn subscribe(&self, listener: Weak<dyn ChangeListener>) {
        self.inner.feed.subscribe(listener);
    }
}

impl UsageStore for VecStore {
    async fn record_last_used(&self, used: Vec<(KeyId, Timestamp)>) -> Result<(), StoreError> {
        self.with(|state| {
            for (id, at) in used {
                if let Ok(i) = Self::position(&state.records, &id) {
                    let seen = &mut state.records[i].usage.last_used_at;
                    *seen = (*seen).max(Some(at));
                }
            }
        });
        Ok(())
    }

    async fn take_quota(&self, id: &KeyId, want: u64) -> Result<QuotaGrant, StoreError> {
        Ok(self.with(|state| match Self::position(&state.records, id) {
            Ok(at) => {
                let record = &mut state.records[at];
                let grant = record.take_quota(want, Timestamp::now());
                if let (0, Some(start)) = (grant.remaining, grant.period_start) {
                    let event = KeyEvent::quota_exhausted(record, start);
                    state.emit_new(vec![event]);
                }
                grant
            }
            Err(_) => QuotaGrant::NONE,
        }))
    }

    async fn return_quota(
        &self,
        id: &KeyId,
        uses: u64,
        period_start: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|state| match Self::position(&state.records, id) {
            Ok(at) => state.records[at].give_back_quota(uses, period_start),
            Err(_) => false,
        }))
    }

    async fn share_rate_usage(&self, share: RateShare) -> Result<FleetRates, StoreError> {
        if self.silent_rates {
            return Ok(FleetRates::new(1, Vec::new()));
        }
        Ok(self.with(|state| {
            let now = std::time::Instant::now();
            state.servers.insert(share.server, now);
            let recent =
                |at: &std::time::Instant, within: Duration| now.duration_since(*at) < within;
            let keys = share
                .admitted
                .into_iter()
                .map(|(id, n)| {
                    let total = state.rates.entry(id.clone()).or_default();
                    *total += n;
                    let total = *total;
                    if n > 0 {
                        state.listed.insert((id.clone(), share.server), now);
                    }
                    let others = state
                        .listed
                        .iter()
                        .filter(|((key, server), at)| {
                            *key == id && *server != share.server && recent(at, share.active_within)
                        })
                        .count();
                    KeyFleetRate::new(id, total, others as u32 + 1)
                })
                .collect();
            let servers = state
                .servers
                .values()
                .filter(|at| recent(at, RateShare::SERVER_MEMORY))
                .count();
            FleetRates::new(servers as u32, keys)
        }))
    }

    async fn leave_rate_share(&self, server: u64) -> Result<(), StoreError> {
        if self.never_leaves {
            return Ok(());
        }
        self.with(|state| {
            state.servers.remove(&server);
            state.listed.retain(|(_, listed), _| *listed != server);
        });
        Ok(())
    }

    async fn add_usage(&self, batch: UsageBatch) -> Result<(), StoreError> {
        self.with(|state| state.usage.add(batch, Timestamp::now()));
        Ok(())
    }

    async fn read_usage(&self, id: &KeyId, range: UsageRange) -> Result<Vec<Bucket>, StoreError> {
        Ok(self.with(|state| state.usage.read(id, &range)))
    }

    async fn top_usage(
        &self,
        principal: Option<&str>,
        range: UsageRange,
        limit: usize,
    ) -> Result<Vec<KeyTotal>, StoreError> {
        Ok(self.with(|state| {
            let counted = |id: &KeyId| {
                Self::position(&state.records, id)
                    .is_ok_and(|at| principal.is_none_or(|p| state.records[at].principal == p))
            };
            state.usage.top(&range, counted, limit)
        }))
    }

    async fn prune_usage(
        &self,
        hourly_before: Timestamp,
        daily_before: Timestamp,
        limit: usize,
    ) -> Result<usize, StoreError> {
        Ok(self.with(|state| {
            state
                .usage
                .prune(hourly_before, daily_before, Timestamp::now(), limit)
        }))
    }
}

impl OutboxStore for VecStore {
    async fn claim_events(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(self.with(|state| state.outbox.claim(limit, lease, Timestamp::now())))
    }

    async fn finish_event(&self, id: &str, outcome: Delivery) -> Result<(), StoreError> {
        self.with(|state| state.outbox.finish(id, outcome, Timestamp::now()));
        Ok(())
    }

    async fn add_events(&self, events: Vec<KeyEvent>) -> Result<usize, StoreError> {
        Ok(self.with(|state| state.emit_new(events)))
    }

    async fn read_events(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.with(|state| state.audit.read(query)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_outside_the_crate_meets_the_contract() {
    check_store_contract(|| async {
        let store = VecStore::default();
        (store.clone(), store)
    })
    .await;
}

/// The message a suite panicked with, run on `store`'s kind: it must fail.
async fn failure<F: std::future::Future<Output = ()> + Send + 'static>(suite: F) -> String {
    let panic = tokio::spawn(suite)
        .await
        .expect_err("a store that breaks a rule must fail the suite")
        .into_panic();
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_names_the_rule_a_racy_store_breaks() {
    let message = failure(check_key_store(|| async {
        let store = VecStore {
            racy_limit: true,
            ..VecStore::default()
        };
        (store.clone(), store)
    }))
    .await;
    assert!(
        message.contains("insert_limited holds under concurrent writers"),
        "the failure names the rule: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_shares_no_rate_counts_fails_the_usage_suite() {
    let message = failure(check_usage_store(|| async {
        let store = VecStore {
            silent_rates: true,
            ..VecStore::default()
        };
        (store.clone(), store)
    }))
    .await;
    assert!(
        message.contains("share_rate_usage adds each call's counts once"),
        "the failure names the rule: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_never_forgets_a_server_fails_the_usage_suite() {
    let message = failure(check_usage_store(|| async {
        let store = VecStore {
            never_leaves: true,
            ..VecStore::default()
        };
        (store.clone(), store)
    }))
    .await;
    assert!(
        message.contains("leave_rate_share forgets a server on every handle"),
        "the failure names the rule: {message}"
    );
}
