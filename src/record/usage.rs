//! What traffic writes to a record, and the quota rule every store applies to it.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::KeyRecord;
use crate::policy::{Quota, QuotaGrant};

/// What traffic writes to a record: its last use and its quota spent, as the store counts them.
///
/// Not a setting: [`KeyStore::replace`](crate::KeyStore::replace) neither conflicts over it nor
/// undoes it ([`KeyRecord::differs_beyond_usage`], [`Usage::kept`]), and changing it is no
/// change a cache hears of or an event records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// When the key was last accepted, to within the validator's flush interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Timestamp>,
    /// Uses left in the quota's current period, as the store counts them (validators hold
    /// leases of some); `None` is the whole quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_remaining: Option<u64>,
    /// When the quota's current period began; `None` until the key is first used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_period_start: Option<Timestamp>,
}

impl Usage {
    /// The usage a replace keeps, this being the new version's usage, `stored` the stored
    /// record's and `current` the version the writer read: the later of the two last uses,
    /// and the stored quota usage unless the writer changed the quota (`quota_changed`) or its
    /// usage (a new quota starts afresh; uses spent meanwhile are not undone).
    pub fn kept(&self, stored: &Usage, current: &Usage, quota_changed: bool) -> Usage {
        let mut kept = self.clone();
        kept.last_used_at = self.last_used_at.max(stored.last_used_at);
        let quota_unchanged = !quota_changed
            && self.quota_remaining == current.quota_remaining
            && self.quota_period_start == current.quota_period_start;
        if quota_unchanged {
            kept.quota_remaining = stored.quota_remaining;
            kept.quota_period_start = stored.quota_period_start;
        }
        kept
    }
}

impl KeyRecord {
    /// Takes up to `want` uses of the record's quota at `now`, refilling it first if a period
    /// has passed: the rule every store applies under its lock for
    /// [`UsageStore::take_quota`](crate::store::UsageStore::take_quota) (PostgreSQL in SQL; a
    /// conformance rule holds the two together). [`QuotaGrant::NONE`] without a quota.
    pub fn take_quota(&mut self, want: u64, now: Timestamp) -> QuotaGrant {
        let Some(quota) = self.quota else {
            return QuotaGrant::NONE;
        };
        let start = self.refill(quota, now);
        let remaining = self.usage.quota_remaining.unwrap_or(quota.uses());
        let granted = want.min(remaining);
        self.usage.quota_remaining = Some(remaining - granted);
        QuotaGrant {
            granted,
            remaining: remaining - granted,
            period_start: Some(start),
            refills_at: quota.refill().map(|p| start + p.span()),
        }
    }

    /// Gives `uses` back, if the quota's period still starts at `period_start` and the quota
    /// still holds them (never above it): the rule of
    /// [`UsageStore::return_quota`](crate::store::UsageStore::return_quota). Returns whether
    /// they were taken back.
    pub fn give_back_quota(&mut self, uses: u64, period_start: Timestamp) -> bool {
        let Some(quota) = self.quota else {
            return false;
        };
        if self.usage.quota_period_start != Some(period_start) {
            return false;
        }
        let remaining = self.usage.quota_remaining.unwrap_or(quota.uses());
        self.usage.quota_remaining = Some(remaining.saturating_add(uses).min(quota.uses()));
        true
    }

    /// Starts the first period at `now`, or refills the quota if whole periods have passed
    /// since its period started; returns the current period's start.
    fn refill(&mut self, quota: Quota, now: Timestamp) -> Timestamp {
        let usage = &mut self.usage;
        let Some(start) = usage.quota_period_start else {
            usage.quota_period_start = Some(now);
            usage.quota_remaining = Some(usage.quota_remaining.unwrap_or(quota.uses()));
            return now;
        };
        let Some(period) = quota.refill() else {
            return start;
        };
        let span = period.as_secs() as i64;
        let whole = now.duration_since(start).as_secs().div_euclid(span);
        if whole < 1 {
            return start;
        }
        let start = start + SignedDuration::from_secs(whole * span);
        usage.quota_period_start = Some(start);
        usage.quota_remaining = Some(quota.uses());
        start
    }
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
            &HashParams::default().with_iterations(1000).unwrap(),
        )
        .unwrap();
        record.quota = Some(quota.parse().unwrap());
        record
    }

    #[test]
    fn takes_refills_and_gives_back_into_the_same_period_only() {
        let mut r = record("10/1h");
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let first = r.take_quota(4, t0);
        assert_eq!((first.granted, first.remaining), (4, 6));
        assert_eq!(first.period_start, Some(t0));
        assert_eq!(first.refills_at, Some(t0 + SignedDuration::from_hours(1)));
        assert_eq!(r.take_quota(100, t0).granted, 6);
        assert_eq!(r.take_quota(1, t0).granted, 0);
        assert!(r.give_back_quota(3, t0));
        assert_eq!(r.usage.quota_remaining, Some(3));
        // 2.5 periods later: refilled, the period starts on the period boundary.
        let later = t0 + SignedDuration::from_mins(150);
        let grant = r.take_quota(1, later);
        assert_eq!((grant.granted, grant.remaining), (1, 9));
        assert_eq!(grant.period_start, Some(t0 + SignedDuration::from_hours(2)));
        // Uses of the old period are not given back into the new one.
        assert!(!r.give_back_quota(3, t0));
        assert_eq!(r.usage.quota_remaining, Some(9));
        // Never above the quota.
        assert!(r.give_back_quota(50, grant.period_start.unwrap()));
        assert_eq!(r.usage.quota_remaining, Some(10));
    }

    #[test]
    fn a_quota_that_never_refills_runs_out_for_good() {
        let mut r = record("3");
        let t0 = Timestamp::now();
        assert_eq!(r.take_quota(5, t0).granted, 3);
        let later = t0 + SignedDuration::from_hours(24 * 400);
        let grant = r.take_quota(5, later);
        assert_eq!((grant.granted, grant.refills_at), (0, None));
        r.quota = None;
        assert_eq!(r.take_quota(1, t0), QuotaGrant::NONE);
    }
}
