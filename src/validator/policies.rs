//! Per-key policies in the validator: each key's policy state (shared by every identity made
//! for it), enforcing the policies on a request, and the quota leases taken from the store.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;

use super::counting::outcome_of_refusal;
use super::{Inner, PolicyError, Validator};
use crate::identity::Identity;
use crate::key::KeyId;
use crate::policy::{
    monotonic_nanos, PolicyRefusal, PolicyState, RateLimitStatus, Spend, MAX_BLOCK,
};
use crate::record::KeyRecord;
use crate::store::StoreError;

/// Each key's policy state, by id. Read and written when a key is cached and when the server
/// stops, never per request (the hot path reaches the state through the identity).
#[derive(Default)]
pub(super) struct Policies {
    usages: Mutex<HashMap<KeyId, Arc<PolicyState>>>,
    /// Uses in hand for policies a key no longer has, to give back on shutdown.
    orphaned: Mutex<Vec<(KeyId, u64, Timestamp)>>,
}

/// What a valid key's policies say about one request, before any store access.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Admitted, with the rate limit's state if the key has one.
    Pass(Option<RateLimitStatus>),
    /// Refused.
    Refused(PolicyRefusal),
    /// Admitted so far (rate limit counted), but no quota use in hand: take a lease first
    /// ([`Validator::spend_leased`]).
    Lease(Option<RateLimitStatus>),
}

impl Policies {
    /// The state for `record`'s policies: the one kept for its id while its policies stay
    /// the same, so a cache refill does not start its rate limit afresh.
    /// A fresh rate limit takes each request to stand for `servers` (the fleet's size as
    /// last heard) until the fleet is heard on the key.
    pub(super) fn usage_for(&self, record: &KeyRecord, servers: u32) -> Option<Arc<PolicyState>> {
        let mut usages = self.usages.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(usage) = usages
            .get(&record.id)
            .filter(|u| u.is_for(record.policies()))
        {
            return Some(Arc::clone(usage));
        }
        let fresh = PolicyState::of(record.policies()).map(Arc::new);
        if let Some(rate) = fresh.as_ref().and_then(|usage| usage.rate.as_ref()) {
            rate.forget_fleet(servers);
        }
        let old = match &fresh {
            Some(usage) => usages.insert(record.id.clone(), Arc::clone(usage)),
            None => usages.remove(&record.id),
        };
        drop(usages);
        let unspent = old
            .as_ref()
            .and_then(|old| old.quota.as_ref()?.surrender_to_return());
        if let Some((uses, period)) = unspent {
            self.orphaned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((record.id.clone(), uses, period));
        }
        fresh
    }

    /// Every key with a rate limit, and its state.
    pub(super) fn rate_limited(&self) -> Vec<(KeyId, Arc<PolicyState>)> {
        let usages = self.usages.lock().unwrap_or_else(PoisonError::into_inner);
        usages
            .iter()
            .filter(|(_, usage)| usage.rate.is_some())
            .map(|(id, usage)| (id.clone(), Arc::clone(usage)))
            .collect()
    }

    /// Every lease's unspent uses, taken out of the leases, to give back.
    fn surrender_all(&self) -> Vec<(KeyId, u64, Timestamp)> {
        let mut out =
            std::mem::take(&mut *self.orphaned.lock().unwrap_or_else(PoisonError::into_inner));
        let usages = self.usages.lock().unwrap_or_else(PoisonError::into_inner);
        out.extend(usages.iter().filter_map(|(id, usage)| {
            let (uses, period) = usage.quota.as_ref()?.surrender_to_return()?;
            Some((id.clone(), uses, period))
        }));
        out
    }
}

impl Inner {
    /// The identity `record` grants, sharing the key's policy state.
    pub(super) fn identity_of(&self, record: &KeyRecord) -> Identity {
        Identity::with_state(
            record,
            self.policies
                .usage_for(record, self.rate_share.fleet_servers()),
            self.counting.tally_for(&record.id),
        )
    }
}

impl Validator {
    /// Applies a valid key's policies to one request from the address `client` gives (asked
    /// only when the key has an allow-list): no I/O, no lock, no allocation. A key with no
    /// policy passes at the cost of one branch.
    #[inline]
    pub(crate) fn enforce_now(
        &self,
        identity: &Identity,
        client: impl FnOnce() -> Option<IpAddr>,
    ) -> Verdict {
        let Some(usage) = identity.usage() else {
            return Verdict::Pass(None);
        };
        if let Err(refusal) = usage.admits(client) {
            return self.refused(identity, refusal);
        }
        let status = match &usage.rate {
            Some(rate) => match rate.check(monotonic_nanos()) {
                Ok(status) => Some(status),
                Err(status) => return self.refused(identity, PolicyRefusal::RateLimited(status)),
            },
            None => None,
        };
        match usage.quota.as_ref().map(|lease| lease.spend()) {
            None | Some(Spend::Spent) => Verdict::Pass(status),
            Some(Spend::Exhausted(wait)) => self.refused(
                identity,
                PolicyRefusal::UsageExceeded {
                    retry_after: wait.map(Duration::from_secs),
                },
            ),
            Some(Spend::Lease) => Verdict::Lease(status),
        }
    }

    fn refused(&self, identity: &Identity, refusal: PolicyRefusal) -> Verdict {
        self.refuse(identity, refusal);
        Verdict::Refused(refusal)
    }

    /// Counts a valid key's request refused by a policy: in the totals, and against the key
    /// (moved from valid to the refusal).
    fn refuse(&self, identity: &Identity, refusal: PolicyRefusal) {
        self.inner
            .counters
            .policy_refused(identity.key_id(), refusal);
        identity.refuse_after_valid(outcome_of_refusal(&refusal));
    }

    /// Spends one quota use after [`Verdict::Lease`]: takes a lease from the store (one
    /// statement), then spends from it.
    ///
    /// The store call runs in a task of its own: a caller that goes away meanwhile does not
    /// lose the uses the store has already granted.
    pub(crate) async fn spend_leased(&self, identity: &Identity) -> Result<(), PolicyError> {
        let Some((usage, lease)) = identity
            .usage()
            .and_then(|usage| Some((usage, usage.quota.as_ref()?)))
        else {
            return Ok(());
        };
        // A few rounds: uses granted to this caller's lease may be spent by others first.
        for _ in 0..8 {
            let task = tokio::spawn(take_lease(
                Arc::clone(&self.inner),
                identity.key_id().clone(),
                Arc::clone(usage),
            ));
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(PolicyError::Unavailable(error)),
                Err(join) => return Err(PolicyError::Internal(join.into())),
            }
            match lease.spend() {
                Spend::Spent => return Ok(()),
                Spend::Exhausted(wait) => {
                    let refusal = PolicyRefusal::UsageExceeded {
                        retry_after: wait.map(Duration::from_secs),
                    };
                    self.refuse(identity, refusal);
                    return Err(PolicyError::Refused(refusal));
                }
                Spend::Lease => {}
            }
        }
        // Others kept spending every block first: the key is busy enough to wait.
        let refusal = PolicyRefusal::UsageExceeded {
            retry_after: Some(Duration::from_secs(1)),
        };
        self.refuse(identity, refusal);
        Err(PolicyError::Refused(refusal))
    }

    /// Applies a valid key's policies to one request from `client`: its allow-list, its rate
    /// limit, then its quota (taking a lease from the store when none is in hand). What
    /// [`ApiKeyLayer`](crate::ApiKeyLayer) does after a key is found valid; call it yourself
    /// when you use the validator without the layer.
    ///
    /// Returns the rate limit's state, if the key has one. Must be called within a Tokio
    /// runtime (a quota lease is taken in a task of its own, so a caller that leaves does
    /// not lose the uses it brought).
    ///
    /// # Errors
    /// [`PolicyError::Refused`] when a policy refuses the request;
    /// [`PolicyError::Unavailable`] when a lease could not be taken from the store.
    pub async fn enforce(
        &self,
        identity: &Identity,
        client: Option<IpAddr>,
    ) -> Result<Option<RateLimitStatus>, PolicyError> {
        match self.enforce_now(identity, || client) {
            Verdict::Pass(status) => Ok(status),
            Verdict::Refused(refusal) => Err(PolicyError::Refused(refusal)),
            Verdict::Lease(status) => self.spend_leased(identity).await.map(|()| status),
        }
    }

    /// Call when the server stops: gives unspent quota leases back to the store, writes the
    /// last uses ([`flush_last_used`](Self::flush_last_used)) and the last usage counts
    /// ([`flush_usage`](Self::flush_usage)), then leaves the fleet's rate-limit share
    /// ([`UsageStore::leave_rate_share`](crate::store::UsageStore::leave_rate_share)), so a
    /// server started in its place does not count it. Requests still running may take new
    /// leases; they are not given back, and their rate limits are no longer shared.
    ///
    /// # Errors
    /// The store's first failure; every lease, the last-use batch, the usage counts and the
    /// leaving are still tried.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        let mut first_error = None;
        for (id, uses, period) in self.inner.policies.surrender_all() {
            if let Err(error) = self.inner.store.return_quota(&id, uses, period).await {
                tracing::warn!(key_id = %id, uses, %error, "quota lease not given back");
                first_error.get_or_insert(error);
            }
        }
        let flushed = self.flush_last_used().await;
        let counted = self.flush_usage().await;
        let left = self.inner.leave_rate_share().await;
        match first_error {
            Some(error) => Err(error),
            None => flushed.and(counted).and(left),
        }
    }
}

/// Takes one lease for `id` unless another task got uses (or found none) meanwhile.
async fn take_lease(
    inner: Arc<Inner>,
    id: KeyId,
    usage: Arc<PolicyState>,
) -> Result<(), StoreError> {
    let Some(lease) = &usage.quota else {
        return Ok(());
    };
    let seen = lease.grants();
    lease.waiting.fetch_add(1, Ordering::Relaxed);
    let turn = lease.turn.lock().await;
    let waiting = lease.waiting.fetch_sub(1, Ordering::Relaxed);
    // Another task took a lease while this one waited: its grant is the answer (so a crowd
    // of callers costs the store one statement, not one each).
    if lease.has_answer() || lease.grants() != seen {
        return Ok(());
    }
    // Enough for everyone waiting now, so a burst on a fresh key is one lease.
    let block = lease.book().next_block.max(waiting).min(MAX_BLOCK);
    let grant = inner.store.take_quota(&id, block).await?;
    inner.counters.quota_lease();
    lease.receive(grant);
    drop(turn);
    Ok(())
}
