//! Usage per key: how many requests each key made, by outcome, per hour and per UTC day.
//!
//! A [`Validator`](crate::Validator) counts each request with a real key once, by its
//! [`Outcome`], in memory (one atomic add per request), and writes the counts as one
//! [`UsageBatch`] per interval to the store's [usage capability](crate::UsageStore), which
//! adds them to hourly and daily buckets. Requests that match no record (an unknown id, a
//! malformed key, no key) are not counted here: an attacker must not be able to grow a table;
//! [`Validator::stats`](crate::Validator::stats) counts them in total.
//!
//! # Example
//! ```
//! use tower_apikey::usage::{Counts, Granularity, Outcome, UsageRange};
//!
//! let mut counts = Counts::default();
//! counts.add(Outcome::Valid, 3);
//! counts.add(Outcome::WrongSecret, 1);
//! assert_eq!(counts.total(), 4);
//! assert_eq!(serde_json::to_value(counts)?["wrong_secret"], 1);
//!
//! // Ranges align down to their buckets: from inclusive, to exclusive.
//! let range = UsageRange::new(
//!     "2026-03-01T10:20:00Z".parse()?,
//!     "2026-03-01T12:05:00Z".parse()?,
//!     Granularity::Hour,
//! )?;
//! assert_eq!(range.buckets().count(), 2); // 10:00 and 11:00
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod range;
mod table;
mod tally;

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use range::{Granularity, RangeError, UnknownGranularity, UsageRange};
pub use table::UsageTable;
pub(crate) use tally::KeyTally;

use crate::key::KeyId;

/// What became of one request that carried a real key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Outcome {
    /// Accepted, and let through by every policy and permission check.
    Valid,
    /// The id of a real key, with another secret.
    WrongSecret,
    /// The key has expired.
    Expired,
    /// The key is deactivated.
    Inactive,
    /// The key is revoked.
    Revoked,
    /// Over the key's rate limit.
    RateLimited,
    /// The key's quota is used up.
    UsageExceeded,
    /// From an address outside the key's allow-list (or with none where it has one).
    IpNotAllowed,
    /// Without a permission a guard required.
    PermissionDenied,
}

impl Outcome {
    /// Every outcome, in the order [`Counts`] keeps them.
    pub const ALL: [Outcome; 9] = [
        Outcome::Valid,
        Outcome::WrongSecret,
        Outcome::Expired,
        Outcome::Inactive,
        Outcome::Revoked,
        Outcome::RateLimited,
        Outcome::UsageExceeded,
        Outcome::IpNotAllowed,
        Outcome::PermissionDenied,
    ];

    /// The label: the reason the metrics use (`wrong_secret`, `rate_limited`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Valid => "valid",
            Outcome::WrongSecret => "wrong_secret",
            Outcome::Expired => "expired",
            Outcome::Inactive => "inactive",
            Outcome::Revoked => "revoked",
            Outcome::RateLimited => "rate_limited",
            Outcome::UsageExceeded => "usage_exceeded",
            Outcome::IpNotAllowed => "ip_not_allowed",
            Outcome::PermissionDenied => "permission_denied",
        }
    }

    /// Its place in [`Counts`].
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Requests by [`Outcome`]. JSON: an object with every outcome's label, zeros included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Counts([u64; 9]);

impl Counts {
    /// Requests with `outcome`.
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.0[outcome.index()]
    }

    /// Adds `n` requests with `outcome`.
    pub fn add(&mut self, outcome: Outcome, n: u64) {
        let slot = &mut self.0[outcome.index()];
        *slot = slot.saturating_add(n);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Counts) {
        for outcome in Outcome::ALL {
            self.add(outcome, other.get(outcome));
        }
    }

    /// Requests of every outcome.
    pub fn total(&self) -> u64 {
        self.0.iter().fold(0, |sum, n| sum.saturating_add(*n))
    }

    /// Whether no request is counted.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|n| *n == 0)
    }

    /// Each outcome with its count, in [`Outcome::ALL`]'s order.
    pub fn iter(&self) -> impl Iterator<Item = (Outcome, u64)> + '_ {
        Outcome::ALL.into_iter().map(|o| (o, self.get(o)))
    }

    /// The counts in [`Outcome::ALL`]'s order: what a database row holds.
    pub fn as_array(&self) -> [u64; 9] {
        self.0
    }

    /// Counts from [`Outcome::ALL`]'s order.
    pub fn from_array(counts: [u64; 9]) -> Self {
        Self(counts)
    }
}

impl Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(Outcome::ALL.len()))?;
        for (outcome, n) in self.iter() {
            map.serialize_entry(outcome.as_str(), &n)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, u64>::deserialize(deserializer)?;
        let mut counts = Counts::default();
        for (label, n) in map {
            // An outcome this version does not know (written by a later one) is left out.
            if let Some(outcome) = Outcome::ALL.into_iter().find(|o| o.as_str() == label) {
                counts.add(outcome, n);
            }
        }
        Ok(counts)
    }
}

/// One bucket of a key's usage: the hour or UTC day starting at `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Bucket {
    /// Where the hour or day starts.
    pub start: Timestamp,
    /// Its requests.
    pub counts: Counts,
}

impl Bucket {
    /// The bucket starting at `start`.
    pub fn new(start: Timestamp, counts: Counts) -> Self {
        Self { start, counts }
    }
}

/// One key's requests in one hour: a line of a [`UsageBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HourCounts {
    /// The key.
    pub key: KeyId,
    /// The start of the hour.
    pub hour: Timestamp,
    /// Its requests in that hour.
    pub counts: Counts,
}

impl HourCounts {
    /// `key`'s `counts` in the hour starting at `hour`.
    pub fn new(key: KeyId, hour: Timestamp, counts: Counts) -> Self {
        Self { key, hour, counts }
    }
}

/// What one validator counted since its last write, written at once: at most one line per
/// key and hour, ordered by key, then hour.
///
/// Its `id` is unique and the same on every try: a store adds a batch once, whatever the
/// number of tries (a write whose answer was lost is tried again).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsageBatch {
    /// Unique per batch; the same on every try.
    pub id: String,
    /// The counts, one line per key and hour.
    pub lines: Vec<HourCounts>,
}

impl UsageBatch {
    /// A batch of `lines` (sorted and merged here, so each key and hour is one line).
    pub fn new(id: impl Into<String>, lines: impl IntoIterator<Item = HourCounts>) -> Self {
        let mut merged = std::collections::BTreeMap::<(KeyId, Timestamp), Counts>::new();
        for line in lines {
            merged
                .entry((line.key, line.hour))
                .or_default()
                .merge(&line.counts);
        }
        Self {
            id: id.into(),
            lines: merged
                .into_iter()
                .filter(|(_, counts)| !counts.is_empty())
                .map(|((key, hour), counts)| HourCounts { key, hour, counts })
                .collect(),
        }
    }
}

/// A key's requests over a range, for a listing of the busiest keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyTotal {
    /// The key.
    pub id: KeyId,
    /// Its requests over the range.
    pub counts: Counts,
}

impl KeyTotal {
    /// `id`'s `counts`.
    pub fn new(id: KeyId, counts: Counts) -> Self {
        Self { id, counts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_serialize_every_outcome_by_its_label() {
        let mut counts = Counts::default();
        counts.add(Outcome::RateLimited, 2);
        let json = serde_json::to_value(counts).unwrap();
        assert_eq!(json.as_object().unwrap().len(), 9);
        assert_eq!(json["rate_limited"], 2);
        assert_eq!(json["valid"], 0);
        let mut later = json.clone();
        later["a_later_outcome"] = 5.into();
        assert_eq!(serde_json::from_value::<Counts>(later).unwrap(), counts);
    }

    #[test]
    fn a_batch_has_one_line_per_key_and_hour_in_order() {
        let (a, b) = (KeyId::new("a").unwrap(), KeyId::new("b").unwrap());
        let h: Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
        let one = |n| {
            let mut c = Counts::default();
            c.add(Outcome::Valid, n);
            c
        };
        let batch = UsageBatch::new(
            "x",
            [
                HourCounts::new(b.clone(), h, one(1)),
                HourCounts::new(a.clone(), h, one(2)),
                HourCounts::new(b.clone(), h, one(3)),
                HourCounts::new(a.clone(), h, Counts::default()),
            ],
        );
        let lines: Vec<(&str, u64)> = batch
            .lines
            .iter()
            .map(|l| (l.key.as_str(), l.counts.get(Outcome::Valid)))
            .collect();
        assert_eq!(lines, [("a", 2), ("b", 4)]);
    }
}
