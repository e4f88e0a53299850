//! A validator's lease of one key's quota: uses taken from the store in blocks, spent here
//! with one atomic per request, given back when the server stops.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use jiff::Timestamp;

use super::{Quota, QuotaGrant};

/// A validator's lease of one key's uses: taken from the store in blocks, spent here with
/// one atomic per request, and given back when the server stops.
#[derive(Debug)]
pub(crate) struct QuotaLease {
    pub(crate) quota: Quota,
    /// Uses in hand.
    left: AtomicU64,
    /// What the store had left after the last grant (for handlers and metrics).
    store_left: AtomicU64,
    /// Unix seconds until which the store has nothing to grant: 0 for "ask", `i64::MAX` for
    /// "until the quota changes".
    empty_until: AtomicI64,
    /// Unix seconds when the lease's period ends (uses in hand expire with it); `i64::MAX`
    /// for a quota that is never refilled.
    period_ends: AtomicI64,
    /// The lease's period and the next block's size: touched once per lease.
    book: Mutex<LeaseBook>,
    /// One lease taken at a time per key. An async mutex, held across the store call on
    /// purpose: callers that find no use in hand wait for the lease under way, not take
    /// one each.
    pub(crate) turn: tokio::sync::Mutex<()>,
    /// Grants received so far: a caller that waited for the turn while another took a lease
    /// sees it move, and asks the store no more.
    grants: AtomicU64,
    /// Callers waiting for a lease now: the next block is at least this big.
    pub(crate) waiting: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseBook {
    pub(crate) period_start: Option<Timestamp>,
    pub(crate) next_block: u64,
    taken_at: Option<std::time::Instant>,
}

/// What spending one use found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spend {
    /// Spent.
    Spent,
    /// None left anywhere; retry after this many seconds, if ever.
    Exhausted(Option<u64>),
    /// None in hand: take a lease from the store.
    Lease,
}

/// The largest block a lease takes at once.
pub(crate) const MAX_BLOCK: u64 = 1_000;

impl QuotaLease {
    pub(crate) fn new(quota: Quota) -> Self {
        Self {
            quota,
            left: AtomicU64::new(0),
            store_left: AtomicU64::new(quota.uses()),
            empty_until: AtomicI64::new(0),
            period_ends: AtomicI64::new(i64::MAX),
            book: Mutex::new(LeaseBook {
                period_start: None,
                next_block: 1,
                taken_at: None,
            }),
            turn: tokio::sync::Mutex::new(()),
            grants: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
        }
    }

    /// Spends one use in hand, if the lease's period has not ended.
    #[inline]
    pub(crate) fn spend(&self) -> Spend {
        // The clock is read only for a quota that refills (or one known empty until then).
        let ends = self.period_ends.load(Ordering::Relaxed);
        if ends != i64::MAX && unix_now() >= ends {
            // Uses of an ended period are not spent in the next one (nor given back).
            self.left.store(0, Ordering::Relaxed);
        }
        let spent = self
            .left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if spent.is_ok() {
            return Spend::Spent;
        }
        match self.empty_until.load(Ordering::Relaxed) {
            0 => Spend::Lease,
            i64::MAX => Spend::Exhausted(None),
            until => match until - unix_now() {
                wait if wait > 0 => Spend::Exhausted(Some(wait as u64)),
                _ => Spend::Lease,
            },
        }
    }

    /// Whether spending would not need a lease: uses in hand, or the store known empty.
    pub(crate) fn has_answer(&self) -> bool {
        self.left.load(Ordering::Relaxed) > 0
            || match self.empty_until.load(Ordering::Relaxed) {
                0 => false,
                until => until > unix_now(),
            }
    }

    /// The lease's period and block size.
    pub(crate) fn book(&self) -> LeaseBook {
        *self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Grants received so far.
    pub(crate) fn grants(&self) -> u64 {
        self.grants.load(Ordering::Acquire)
    }

    /// Adds a grant from the store.
    pub(crate) fn receive(&self, grant: QuotaGrant) {
        let now = std::time::Instant::now();
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        // A block used up within a second doubles the next; one that lasted a minute halves
        // it: few store writes for a busy key, few stranded uses for a quiet one.
        if let Some(at) = book.taken_at {
            let lasted = now.duration_since(at);
            if lasted < std::time::Duration::from_secs(1) {
                book.next_block = (book.next_block * 2).min(MAX_BLOCK);
            } else if lasted > std::time::Duration::from_secs(60) {
                book.next_block = (book.next_block / 2).max(1);
            }
        }
        book.taken_at = Some(now);
        if book.period_start != grant.period_start {
            // A new period: what is in hand belongs to the old one.
            self.left.store(0, Ordering::Relaxed);
        }
        book.period_start = grant.period_start;
        self.period_ends.store(
            grant.refills_at.map_or(i64::MAX, |at| at.as_second()),
            Ordering::Relaxed,
        );
        self.store_left.store(grant.remaining, Ordering::Relaxed);
        if grant.granted == 0 {
            let until = grant.refills_at.map_or(i64::MAX, |at| at.as_second());
            self.empty_until.store(until, Ordering::Relaxed);
        } else {
            self.empty_until.store(0, Ordering::Relaxed);
            self.left.fetch_add(grant.granted, Ordering::Relaxed);
        }
        self.grants.fetch_add(1, Ordering::Release);
    }

    /// Takes every use in hand away, to give back to the store.
    pub(crate) fn surrender(&self) -> u64 {
        self.left.swap(0, Ordering::Relaxed)
    }

    /// Takes every use in hand away, with the period they belong to: what
    /// [`UsageStore::return_quota`](crate::store::UsageStore::return_quota) is given. `None` when there
    /// is nothing to give back.
    pub(crate) fn surrender_to_return(&self) -> Option<(u64, Timestamp)> {
        let period = self.book().period_start;
        let uses = self.surrender();
        period.filter(|_| uses > 0).map(|period| (uses, period))
    }

    /// Uses left: in hand plus in the store, as last heard.
    pub(crate) fn remaining(&self) -> u64 {
        self.left.load(Ordering::Relaxed) + self.store_left.load(Ordering::Relaxed)
    }
}

fn unix_now() -> i64 {
    Timestamp::now().as_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grant of `granted` uses of a quota of 5 an hour, `remaining` left in the store.
    fn grant(granted: u64, remaining: u64, start: Timestamp) -> QuotaGrant {
        let refills_at = start + jiff::SignedDuration::from_hours(1);
        QuotaGrant::new(granted, remaining, Some(start), Some(refills_at))
    }

    #[test]
    fn a_lease_spends_what_it_was_granted_then_asks_or_waits() {
        let lease = QuotaLease::new("5/1h".parse().unwrap());
        assert_eq!(lease.spend(), Spend::Lease);
        assert!(!lease.has_answer());
        let start = Timestamp::now();
        lease.receive(grant(2, 3, start));
        assert!(lease.has_answer());
        assert_eq!(
            (lease.spend(), lease.spend(), lease.spend()),
            (Spend::Spent, Spend::Spent, Spend::Lease)
        );
        assert_eq!(lease.remaining(), 3);
        lease.receive(grant(3, 0, start));
        assert_eq!(lease.surrender(), 3);
        lease.receive(grant(0, 0, start));
        match lease.spend() {
            Spend::Exhausted(Some(wait)) => assert!((3_590..=3_600).contains(&wait), "{wait}"),
            other => panic!("{other:?}"),
        }
        assert!(lease.has_answer());
        assert_eq!(
            lease.book().next_block,
            4,
            "each block taken within a second of the last doubles it"
        );
    }
}
