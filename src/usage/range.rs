//! Which buckets a reading of usage covers: hours or UTC days, from inclusive, to exclusive.

use std::fmt;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};

/// The size of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// An hour.
    Hour,
    /// A UTC day.
    Day,
}

impl Granularity {
    /// `hour` or `day`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }

    /// How long a bucket is.
    pub fn span(self) -> SignedDuration {
        match self {
            Granularity::Hour => SignedDuration::from_hours(1),
            Granularity::Day => SignedDuration::from_hours(24),
        }
    }

    /// The start of the bucket `at` falls in (UTC: a day starts at midnight UTC).
    pub fn bucket_of(self, at: Timestamp) -> Timestamp {
        let span = self.span().as_secs();
        let start = at.as_second().div_euclid(span) * span;
        Timestamp::from_second(start).unwrap_or(at)
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A granularity that is not `hour` or `day`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown granularity: expected hour or day")]
pub struct UnknownGranularity;

impl FromStr for Granularity {
    type Err = UnknownGranularity;

    fn from_str(text: &str) -> Result<Self, UnknownGranularity> {
        match text {
            "hour" => Ok(Granularity::Hour),
            "day" => Ok(Granularity::Day),
            _ => Err(UnknownGranularity),
        }
    }
}

/// Why a range of usage was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// `from` is after `to`.
    #[error("from ({from}) is after to ({to})")]
    Reversed {
        /// The start asked for.
        from: Timestamp,
        /// The end asked for.
        to: Timestamp,
    },
    /// Longer than [`UsageRange::MAX_DAYS`].
    #[error("a range covers at most {max} days; {from} to {to} is longer", max = UsageRange::MAX_DAYS)]
    TooLong {
        /// The start asked for.
        from: Timestamp,
        /// The end asked for.
        to: Timestamp,
    },
}

/// The buckets a reading covers: every `granularity` bucket from `from` (inclusive) to `to`
/// (exclusive), both aligned down to their bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageRange {
    from: Timestamp,
    to: Timestamp,
    granularity: Granularity,
}

impl UsageRange {
    /// The longest range, in days.
    pub const MAX_DAYS: i64 = 400;

    /// From `from` to `to` (exclusive), aligned down to `granularity`'s buckets.
    ///
    /// # Errors
    /// [`RangeError::Reversed`] when `from` is after `to`; [`RangeError::TooLong`] past
    /// [`MAX_DAYS`](Self::MAX_DAYS).
    pub fn new(
        from: Timestamp,
        to: Timestamp,
        granularity: Granularity,
    ) -> Result<Self, RangeError> {
        if from > to {
            return Err(RangeError::Reversed { from, to });
        }
        if to.duration_since(from) > SignedDuration::from_hours(24 * Self::MAX_DAYS) {
            return Err(RangeError::TooLong { from, to });
        }
        Ok(Self {
            from: granularity.bucket_of(from),
            to: granularity.bucket_of(to),
            granularity,
        })
    }

    /// The default reading up to `now`, the bucket `now` is in included: the last 24 hours
    /// for [`Granularity::Hour`], the last 30 days for [`Granularity::Day`].
    pub fn last(granularity: Granularity, now: Timestamp) -> Self {
        let to = granularity.bucket_of(now) + granularity.span();
        let buckets = match granularity {
            Granularity::Hour => 24,
            Granularity::Day => 30,
        };
        Self {
            from: to - granularity.span() * buckets,
            to,
            granularity,
        }
    }

    /// The first bucket's start.
    pub fn from(&self) -> Timestamp {
        self.from
    }

    /// Where the range ends (the first bucket after it).
    pub fn to(&self) -> Timestamp {
        self.to
    }

    /// The buckets' size.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// Whether `at` falls in the range.
    pub fn contains(&self, at: Timestamp) -> bool {
        self.from <= at && at < self.to
    }

    /// Each bucket's start, in order.
    pub fn buckets(&self) -> impl Iterator<Item = Timestamp> + '_ {
        let span = self.granularity.span();
        std::iter::successors(Some(self.from), move |at| Some(*at + span))
            .take_while(|at| *at < self.to)
    }

    /// Every bucket of the range, in order: those in `stored` (buckets of this granularity,
    /// any order, those outside the range ignored) with their counts, the others as zeros.
    pub fn zero_filled(
        &self,
        stored: impl IntoIterator<Item = super::Bucket>,
    ) -> Vec<super::Bucket> {
        let stored: std::collections::BTreeMap<Timestamp, super::Counts> = stored
            .into_iter()
            .filter(|b| self.contains(b.start))
            .map(|b| (b.start, b.counts))
            .collect();
        self.buckets()
            .map(|start| super::Bucket::new(start, stored.get(&start).copied().unwrap_or_default()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_align_down_and_refuse_what_they_cannot_answer() {
        let r = UsageRange::new(
            at("2026-03-01T10:20:00Z"),
            at("2026-03-03T00:00:00Z"),
            Granularity::Day,
        )
        .unwrap();
        let days: Vec<Timestamp> = r.buckets().collect();
        assert_eq!(
            days,
            [at("2026-03-01T00:00:00Z"), at("2026-03-02T00:00:00Z")]
        );
        assert!(matches!(
            UsageRange::new(
                at("2026-03-02T00:00:00Z"),
                at("2026-03-01T00:00:00Z"),
                Granularity::Hour
            ),
            Err(RangeError::Reversed { .. })
        ));
        assert!(matches!(
            UsageRange::new(
                at("2025-01-01T00:00:00Z"),
                at("2026-03-01T00:00:00Z"),
                Granularity::Day
            ),
            Err(RangeError::TooLong { .. })
        ));
        assert_eq!("week".parse::<Granularity>(), Err(UnknownGranularity));
    }

    #[test]
    fn the_default_range_ends_with_the_bucket_now_is_in() {
        let now = at("2026-03-01T10:20:00Z");
        let hours = UsageRange::last(Granularity::Hour, now);
        assert_eq!(
            (hours.from(), hours.to()),
            (at("2026-02-28T11:00:00Z"), at("2026-03-01T11:00:00Z"))
        );
        assert_eq!(hours.buckets().count(), 24);
        let days = UsageRange::last(Granularity::Day, now);
        assert_eq!(days.buckets().count(), 30);
        assert!(days.contains(now));
    }

    #[test]
    fn zero_filled_keeps_the_stored_and_fills_the_rest() {
        let r = UsageRange::new(
            at("2026-03-01T10:00:00Z"),
            at("2026-03-01T13:00:00Z"),
            Granularity::Hour,
        )
        .unwrap();
        let mut c = super::super::Counts::default();
        c.add(super::super::Outcome::Valid, 7);
        let filled = r.zero_filled([
            super::super::Bucket::new(at("2026-03-01T11:00:00Z"), c),
            super::super::Bucket::new(at("2026-03-01T13:00:00Z"), c),
        ]);
        let totals: Vec<u64> = filled.iter().map(|b| b.counts.total()).collect();
        assert_eq!(totals, [0, 7, 0]);
    }
}
