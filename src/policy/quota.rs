//! Usage quotas: the policy on a key (`10000/1d`: ten thousand uses, refilled daily), the
//! store's side (spending uses in leases, refilling), and the lease a validator spends from.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use jiff::{SignedDuration, Timestamp};

use super::{Period, PeriodError};
use crate::record::KeyRecord;

/// A number of uses, optionally refilled to that number every period. Written `10000`
/// (never refilled) or `10000/1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    uses: u64,
    refill: Option<Period>,
}

/// A quota that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// Not `<uses>` or `<uses>/<period>`.
    #[error("a quota is <uses> or <uses>/<refill period>, e.g. 10000 or 10000/1d")]
    Syntax,
    /// More than 10^15 uses.
    #[error("a quota allows at most 1000000000000000 uses")]
    Uses,
    /// The refill period does not parse.
    #[error(transparent)]
    Period(#[from] PeriodError),
}

impl Quota {
    /// The most uses a quota may hold.
    pub const MAX_USES: u64 = 1_000_000_000_000_000;

    /// `uses`, refilled every `refill` if given. Zero uses is a key that is refused until
    /// its quota is changed (or refilled).
    ///
    /// # Errors
    /// [`QuotaError::Uses`] above [`MAX_USES`](Self::MAX_USES).
    pub fn new(uses: u64, refill: Option<Period>) -> Result<Self, QuotaError> {
        if uses > Self::MAX_USES {
            return Err(QuotaError::Uses);
        }
        Ok(Self { uses, refill })
    }

    /// Uses per period (or in all, when never refilled).
    pub const fn uses(&self) -> u64 {
        self.uses
    }

    /// How often the uses are refilled, if they are.
    pub const fn refill(&self) -> Option<Period> {
        self.refill
    }
}

impl FromStr for Quota {
    type Err = QuotaError;

    fn from_str(text: &str) -> Result<Self, QuotaError> {
        let (uses, refill) = match text.split_once('/') {
            Some((uses, period)) => (uses, Some(period.parse()?)),
            None => (text, None),
        };
        if uses.is_empty() || !uses.bytes().all(|b| b.is_ascii_digit()) {
            return Err(QuotaError::Syntax);
        }
        Self::new(uses.parse().map_err(|_| QuotaError::Uses)?, refill)
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.refill {
            Some(period) => write!(f, "{}/{period}", self.uses),
            None => write!(f, "{}", self.uses),
        }
    }
}

super::serde_as_string!(Quota, "a quota such as 10000 or 10000/1d");

/// What [`KeyStore::take_quota`](crate::KeyStore::take_quota) hands out: uses to spend, and
/// the quota period they belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuotaGrant {
    /// Uses granted: up to the number asked for, 0 when none are left.
    pub granted: u64,
    /// Uses left in the store after this grant.
    pub remaining: u64,
    /// When the current period started (the last refill); what
    /// [`return_quota`](crate::KeyStore::return_quota) is given back, so uses of an earlier
    /// period are not returned into a later one. `None` for a key without a quota.
    pub period_start: Option<Timestamp>,
    /// When the uses are next refilled, if they are.
    pub refills_at: Option<Timestamp>,
}

impl QuotaGrant {
    /// The answer for a key without a quota: nothing granted.
    pub const NONE: QuotaGrant = QuotaGrant {
        granted: 0,
        remaining: 0,
        period_start: None,
        refills_at: None,
    };

    /// Takes up to `want` uses from `record` at `now`, refilling first if a period has
    /// passed: the rule every store applies under its lock (PostgreSQL in SQL).
    pub fn take(record: &mut KeyRecord, want: u64, now: Timestamp) -> Self {
        let Some(quota) = record.quota else {
            return Self::NONE;
        };
        let start = refill(record, quota, now);
        let remaining = record.quota_remaining.unwrap_or(quota.uses);
        let granted = want.min(remaining);
        record.quota_remaining = Some(remaining - granted);
        Self {
            granted,
            remaining: remaining - granted,
            period_start: Some(start),
            refills_at: quota.refill.map(|p| start + span(p)),
        }
    }

    /// Gives `uses` back to `record`, if its period still starts at `period_start` and its
    /// quota still holds them: the rule [`KeyStore::return_quota`](crate::KeyStore::return_quota)
    /// applies. Returns whether they were taken back.
    pub fn give_back(record: &mut KeyRecord, uses: u64, period_start: Timestamp) -> bool {
        let Some(quota) = record.quota else {
            return false;
        };
        if record.quota_period_start != Some(period_start) {
            return false;
        }
        let remaining = record.quota_remaining.unwrap_or(quota.uses);
        record.quota_remaining = Some(remaining.saturating_add(uses).min(quota.uses));
        true
    }
}

fn span(period: Period) -> SignedDuration {
    SignedDuration::from_secs(period.as_secs() as i64)
}

/// Starts the record's first period at `now`, or refills it if whole periods have passed
/// since it started; returns the current period's start.
fn refill(record: &mut KeyRecord, quota: Quota, now: Timestamp) -> Timestamp {
    let Some(start) = record.quota_period_start else {
        record.quota_period_start = Some(now);
        record.quota_remaining = Some(record.quota_remaining.unwrap_or(quota.uses));
        return now;
    };
    let Some(period) = quota.refill else {
        return start;
    };
    let elapsed = now.duration_since(start);
    let whole = elapsed.as_secs().div_euclid(period.as_secs() as i64);
    if whole < 1 {
        return start;
    }
    let start = start + SignedDuration::from_secs(whole * period.as_secs() as i64);
    record.quota_period_start = Some(start);
    record.quota_remaining = Some(quota.uses);
    start
}

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
            store_left: AtomicU64::new(quota.uses),
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
    /// [`KeyStore::return_quota`](crate::KeyStore::return_quota) is given. `None` when there
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
    use crate::hash::HashParams;
    use crate::key::KeyFormat;

    fn record(quota: &str) -> KeyRecord {
        let (mut record, _) = KeyRecord::generate(
            "q",
            &KeyFormat::default(),
            &HashParams::default().iterations(1000).unwrap(),
        )
        .unwrap();
        record.quota = Some(quota.parse().unwrap());
        record
    }

    #[test]
    fn parses_and_shows() {
        let quota: Quota = "10000/1d".parse().unwrap();
        assert_eq!(
            (quota.uses(), quota.refill().map(Period::as_secs)),
            (10_000, Some(86_400))
        );
        assert_eq!(quota.to_string(), "10000/1d");
        assert_eq!("30".parse::<Quota>().unwrap().to_string(), "30");
        for bad in ["", "/1d", "x", "-1", "1e3", " 1"] {
            assert_eq!(bad.parse::<Quota>(), Err(QuotaError::Syntax), "{bad}");
        }
        assert_eq!("1000000000000001".parse::<Quota>(), Err(QuotaError::Uses));
        assert!(matches!(
            "1/1w".parse::<Quota>(),
            Err(QuotaError::Period(_))
        ));
    }

    #[test]
    fn takes_refills_and_gives_back_into_the_same_period_only() {
        let mut r = record("10/1h");
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let first = QuotaGrant::take(&mut r, 4, t0);
        assert_eq!((first.granted, first.remaining), (4, 6));
        assert_eq!(first.period_start, Some(t0));
        assert_eq!(first.refills_at, Some(t0 + SignedDuration::from_hours(1)));
        assert_eq!(QuotaGrant::take(&mut r, 100, t0).granted, 6);
        assert_eq!(QuotaGrant::take(&mut r, 1, t0).granted, 0);
        assert!(QuotaGrant::give_back(&mut r, 3, t0));
        assert_eq!(r.quota_remaining, Some(3));
        // 2.5 periods later: refilled, the period starts on the period boundary.
        let later = t0 + SignedDuration::from_mins(150);
        let grant = QuotaGrant::take(&mut r, 1, later);
        assert_eq!((grant.granted, grant.remaining), (1, 9));
        assert_eq!(grant.period_start, Some(t0 + SignedDuration::from_hours(2)));
        // Uses of the old period are not given back into the new one.
        assert!(!QuotaGrant::give_back(&mut r, 3, t0));
        assert_eq!(r.quota_remaining, Some(9));
        // Never above the quota.
        assert!(QuotaGrant::give_back(
            &mut r,
            50,
            grant.period_start.unwrap()
        ));
        assert_eq!(r.quota_remaining, Some(10));
    }

    #[test]
    fn a_quota_that_never_refills_runs_out_for_good() {
        let mut r = record("3");
        let t0 = Timestamp::now();
        assert_eq!(QuotaGrant::take(&mut r, 5, t0).granted, 3);
        let later = t0 + SignedDuration::from_hours(24 * 400);
        let grant = QuotaGrant::take(&mut r, 5, later);
        assert_eq!((grant.granted, grant.refills_at), (0, None));
        assert_eq!(
            QuotaGrant::take(&mut KeyRecord { quota: None, ..r }, 1, t0),
            QuotaGrant::NONE
        );
    }

    #[test]
    fn a_lease_spends_what_it_was_granted_then_asks_or_waits() {
        let lease = QuotaLease::new("5/1h".parse().unwrap());
        assert_eq!(lease.spend(), Spend::Lease);
        assert!(!lease.has_answer());
        let mut r = record("5/1h");
        lease.receive(QuotaGrant::take(&mut r, 2, Timestamp::now()));
        assert!(lease.has_answer());
        assert_eq!(
            (lease.spend(), lease.spend(), lease.spend()),
            (Spend::Spent, Spend::Spent, Spend::Lease)
        );
        assert_eq!(lease.remaining(), 3);
        lease.receive(QuotaGrant::take(&mut r, 10, Timestamp::now()));
        assert_eq!(lease.surrender(), 3);
        lease.receive(QuotaGrant::take(&mut r, 10, Timestamp::now()));
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
