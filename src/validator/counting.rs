//! Requests counted per key, hour and outcome: a tally per key (one relaxed add per request,
//! reached through the identity or the cached refusal), taken at each hour's turn and at
//! each flush, and written as one batch per flush interval. A batch keeps its id until the
//! store has it, so a write tried again is never counted twice; a server killed loses at most
//! what it counted since its last flush.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::{Inner, RejectReason};
use crate::key::KeyId;
use crate::policy::PolicyRefusal;
use crate::store::{ErasedUsageStore, StoreError};
use crate::usage::{Counts, Granularity, HourCounts, KeyTally, Outcome, UsageBatch};

/// The most batches kept for a store that does not answer (at the default interval, 16
/// hours of them): beyond it the oldest is dropped, and said so.
const MAX_SEALED: usize = 1_000;

/// Buckets pruned a call, at most, and how often: bounded work per server.
const PRUNE_LIMIT: usize = 10_000;
const PRUNE_EVERY: i64 = 60;

/// How long usage is kept: hourly buckets, and the UTC days'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Retention {
    pub(super) hourly: SignedDuration,
    pub(super) daily: SignedDuration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            hourly: SignedDuration::from_hours(24 * 90),
            daily: SignedDuration::from_hours(24 * 730),
        }
    }
}

pub(super) struct Counting {
    /// How often to write; `None` counts nothing.
    pub(super) flush: Option<Duration>,
    retention: Retention,
    /// This validator's batch ids start with it: unique without coordination.
    server: String,
    sequence: AtomicU64,
    tallies: Mutex<HashMap<KeyId, Arc<KeyTally>>>,
    /// The hour (unix seconds) the counts in the tallies belong to.
    hour: AtomicI64,
    /// Counts taken, not yet sealed into a batch.
    pending: Mutex<BTreeMap<(KeyId, Timestamp), Counts>>,
    /// Batches not yet written, oldest first, each tried again under its id.
    sealed: Mutex<VecDeque<UsageBatch>>,
    pruned_at: AtomicI64,
}

impl Counting {
    pub(super) fn new(flush: Option<Duration>, retention: Retention) -> Self {
        let mut server = [0u8; 8];
        // Without OS randomness, the clock: ids must differ between servers, not be secret.
        if crate::random::fill_random(&mut server).is_err() {
            server = Timestamp::now().as_nanosecond().to_le_bytes()[..8]
                .try_into()
                .unwrap_or_default();
        }
        Self {
            flush,
            retention,
            server: server.iter().map(|b| format!("{b:02x}")).collect(),
            sequence: AtomicU64::new(0),
            tallies: Mutex::default(),
            hour: AtomicI64::new(hour_of(Timestamp::now())),
            pending: Mutex::default(),
            sealed: Mutex::default(),
            pruned_at: AtomicI64::new(0),
        }
    }

    /// The tally `id`'s requests are counted in, or `None` when counting is off.
    pub(super) fn tally_for(&self, id: &KeyId) -> Option<Arc<KeyTally>> {
        self.flush?;
        let mut tallies = self.tallies.lock().unwrap_or_else(PoisonError::into_inner);
        Some(Arc::clone(tallies.entry(id.clone()).or_default()))
    }

    /// Once a second: at an hour's turn, what the tallies hold goes to the hour that ended.
    pub(super) fn tick(&self, now: Timestamp) {
        if self.flush.is_some() && hour_of(now) != self.hour.load(Ordering::Relaxed) {
            self.take(now);
        }
    }

    /// Takes every tally's counts into the pending batch, under the hour they were counted
    /// in, and forgets tallies no identity or refusal holds any more.
    fn take(&self, now: Timestamp) {
        let hour = self.hour.swap(hour_of(now), Ordering::Relaxed);
        let Ok(hour) = Timestamp::from_second(hour) else {
            return;
        };
        let taken: Vec<(KeyId, Counts)> = {
            let mut tallies = self.tallies.lock().unwrap_or_else(PoisonError::into_inner);
            let taken = tallies
                .iter()
                .map(|(id, tally)| (id.clone(), tally.take()))
                .filter(|(_, counts)| !counts.is_empty())
                .collect();
            tallies.retain(|_, tally| Arc::strong_count(tally) > 1 || !tally.is_idle());
            taken
        };
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, counts) in taken {
            pending.entry((id, hour)).or_default().merge(&counts);
        }
    }

    /// Takes what was counted, seals it into a batch, and writes every batch not yet
    /// written, oldest first; then prunes past the retention, at most once a minute.
    ///
    /// A batch is removed only once the store has it: a failed write keeps it (and its id)
    /// for the next flush, and a flush cut short (its caller gone) leaves it for the next.
    pub(super) async fn flush(&self, store: &dyn ErasedUsageStore) -> Result<(), StoreError> {
        if self.flush.is_none() {
            return Ok(());
        }
        let now = Timestamp::now();
        self.take(now);
        self.seal();
        let batches: Vec<UsageBatch> = self
            .sealed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        for batch in batches {
            let id = batch.id.clone();
            store.add_usage(batch).await?;
            self.sealed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|b| b.id != id);
        }
        let last = self.pruned_at.load(Ordering::Relaxed);
        if now.as_second() - last >= PRUNE_EVERY
            && self
                .pruned_at
                .compare_exchange(last, now.as_second(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let retention = self.retention;
            store
                .prune_usage(now - retention.hourly, now - retention.daily, PRUNE_LIMIT)
                .await?;
        }
        Ok(())
    }

    /// The pending counts as a batch of their own, with a new id.
    fn seal(&self) {
        let lines: Vec<HourCounts> = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::take(&mut *pending)
                .into_iter()
                .map(|((id, hour), counts)| HourCounts::new(id, hour, counts))
                .collect()
        };
        if lines.is_empty() {
            return;
        }
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let batch = UsageBatch::new(format!("{}-{n}", self.server), lines);
        let mut sealed = self.sealed.lock().unwrap_or_else(PoisonError::into_inner);
        sealed.push_back(batch);
        if sealed.len() > MAX_SEALED {
            if let Some(dropped) = sealed.pop_front() {
                let requests: u64 = dropped.lines.iter().map(|l| l.counts.total()).sum();
                tracing::error!(
                    requests,
                    batches = MAX_SEALED,
                    "usage counts not written for too long: the oldest batch is dropped"
                );
            }
        }
    }
}

impl Inner {
    /// Counts a refusal of the real key `id`; returns its tally (for a cached refusal to
    /// count the next ones), `None` when counting is off or the refusal is no key's.
    pub(super) fn counted_refusal(
        &self,
        id: &KeyId,
        reason: RejectReason,
    ) -> Option<Arc<KeyTally>> {
        let outcome = outcome_of(reason)?;
        let tally = self.counting.tally_for(id)?;
        tally.count(outcome);
        Some(tally)
    }
}

fn hour_of(at: Timestamp) -> i64 {
    Granularity::Hour.bucket_of(at).as_second()
}

/// The outcome a refused key is counted as; `None` for a refusal that matches no record
/// (counted in total only, by the validator's counters).
pub(super) fn outcome_of(reason: RejectReason) -> Option<Outcome> {
    match reason {
        RejectReason::WrongSecret => Some(Outcome::WrongSecret),
        RejectReason::Expired => Some(Outcome::Expired),
        RejectReason::Inactive => Some(Outcome::Inactive),
        RejectReason::Revoked => Some(Outcome::Revoked),
        RejectReason::Malformed | RejectReason::UnknownKey => None,
    }
}

/// The outcome a policy's refusal is counted as.
pub(super) fn outcome_of_refusal(refusal: &PolicyRefusal) -> Outcome {
    match refusal {
        PolicyRefusal::RateLimited(_) => Outcome::RateLimited,
        PolicyRefusal::UsageExceeded { .. } => Outcome::UsageExceeded,
        PolicyRefusal::IpNotAllowed | PolicyRefusal::NoClientAddress => Outcome::IpNotAllowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{usage_handle, MemoryStore, UsageStore};
    use crate::usage::UsageRange;

    #[tokio::test]
    async fn counts_go_to_the_hour_they_were_made_in() {
        let store = MemoryStore::new();
        let counting = Counting::new(Some(Duration::from_secs(60)), Retention::default());
        let id = KeyId::new("k1").unwrap();
        let tally = counting.tally_for(&id).unwrap();
        let now = Timestamp::now();
        let hour = Granularity::Hour.bucket_of(now);
        tally.count(Outcome::Valid);
        tally.count(Outcome::Valid);
        // The hour turns: what was counted goes to the hour that ended.
        counting.tick(now + SignedDuration::from_hours(1));
        tally.count(Outcome::Revoked);
        counting.flush(&*usage_handle(store.clone())).await.unwrap();
        let range = UsageRange::new(
            hour,
            hour + SignedDuration::from_hours(3),
            Granularity::Hour,
        )
        .unwrap();
        let buckets = UsageStore::read_usage(&store, &id, range).await.unwrap();
        let seen: Vec<(u64, u64)> = buckets
            .iter()
            .map(|b| (b.counts.get(Outcome::Valid), b.counts.get(Outcome::Revoked)))
            .collect();
        assert_eq!(seen, [(2, 0), (0, 1), (0, 0)]);
        // Nobody holds the tally any more: forgotten at the next take.
        drop(tally);
        counting.flush(&*usage_handle(store)).await.unwrap();
        assert!(counting.tallies.lock().unwrap().is_empty());
    }
}
