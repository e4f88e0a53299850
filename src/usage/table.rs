//! The usage rule for stores that keep their counts in memory (the memory and file stores; a
//! store of your own can hold a [`UsageTable`] too): hourly and daily buckets, each batch
//! added once, pruned in bounded steps.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{Bucket, Counts, Granularity, KeyTotal, UsageBatch, UsageRange};
use crate::key::KeyId;

/// How long a batch's id is remembered: a batch is tried again within minutes, not days.
const BATCH_IDS_KEPT: SignedDuration = SignedDuration::from_hours(24);

/// Hourly and daily usage buckets, and the ids of the batches added.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Wire", into = "Wire")]
pub struct UsageTable {
    hourly: Buckets,
    daily: Buckets,
    /// Batch id → when it was added.
    batches: BTreeMap<String, Timestamp>,
}

/// One granularity's buckets, by key and by time (for ranges over every key, and pruning).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Buckets {
    by_key: BTreeMap<(KeyId, Timestamp), Counts>,
    by_time: BTreeMap<Timestamp, BTreeSet<KeyId>>,
}

impl Buckets {
    fn add(&mut self, key: &KeyId, start: Timestamp, counts: &Counts) {
        self.by_key
            .entry((key.clone(), start))
            .or_insert_with(|| {
                self.by_time.entry(start).or_default().insert(key.clone());
                Counts::default()
            })
            .merge(counts);
    }

    fn read(&self, key: &KeyId, range: &UsageRange) -> Vec<Bucket> {
        let stored = self
            .by_key
            .range((key.clone(), range.from())..(key.clone(), range.to()))
            .map(|((_, start), counts)| Bucket::new(*start, *counts));
        range.zero_filled(stored)
    }

    fn totals(
        &self,
        range: &UsageRange,
        counted: impl Fn(&KeyId) -> bool,
    ) -> BTreeMap<KeyId, Counts> {
        let mut totals = BTreeMap::<KeyId, Counts>::new();
        for (start, keys) in self.by_time.range(range.from()..range.to()) {
            for key in keys.iter().filter(|key| counted(key)) {
                if let Some(counts) = self.by_key.get(&(key.clone(), *start)) {
                    totals.entry(key.clone()).or_default().merge(counts);
                }
            }
        }
        totals
    }

    /// Removes up to `limit` buckets starting before `before`; returns how many.
    fn prune(&mut self, before: Timestamp, limit: usize) -> usize {
        let old: Vec<(Timestamp, KeyId)> = self
            .by_time
            .range(..before)
            .flat_map(|(start, keys)| keys.iter().map(|key| (*start, key.clone())))
            .take(limit)
            .collect();
        for (start, key) in &old {
            self.by_key.remove(&(key.clone(), *start));
            if let Some(keys) = self.by_time.get_mut(start) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_time.remove(start);
                }
            }
        }
        old.len()
    }

    fn lines(&self) -> Vec<WireLine> {
        self.by_key
            .iter()
            .map(|((key, start), counts)| WireLine {
                key: key.clone(),
                start: *start,
                counts: *counts,
            })
            .collect()
    }
}

impl UsageTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `batch` to the hourly and daily buckets at `now`, unless a batch with its id was
    /// added already; returns whether it was added.
    pub fn add(&mut self, batch: UsageBatch, now: Timestamp) -> bool {
        if self.batches.contains_key(&batch.id) {
            return false;
        }
        for line in &batch.lines {
            self.hourly.add(
                &line.key,
                Granularity::Hour.bucket_of(line.hour),
                &line.counts,
            );
            self.daily.add(
                &line.key,
                Granularity::Day.bucket_of(line.hour),
                &line.counts,
            );
        }
        self.batches.insert(batch.id, now);
        true
    }

    /// `key`'s buckets over `range`, every bucket of it, zeros included.
    pub fn read(&self, key: &KeyId, range: &UsageRange) -> Vec<Bucket> {
        self.buckets(range.granularity()).read(key, range)
    }

    /// The keys `counted` keeps, with their requests over `range`, busiest first (ties by
    /// id), at most `limit`.
    pub fn top(
        &self,
        range: &UsageRange,
        counted: impl Fn(&KeyId) -> bool,
        limit: usize,
    ) -> Vec<KeyTotal> {
        let mut totals: Vec<KeyTotal> = self
            .buckets(range.granularity())
            .totals(range, counted)
            .into_iter()
            .map(|(id, counts)| KeyTotal::new(id, counts))
            .collect();
        totals.sort_by(|a, b| {
            b.counts
                .total()
                .cmp(&a.counts.total())
                .then(a.id.cmp(&b.id))
        });
        totals.truncate(limit);
        totals
    }

    /// Removes hourly buckets starting before `hourly_before` and daily ones before
    /// `daily_before`, at most `limit` of each, and batch ids older than a day. Returns how
    /// many buckets went.
    pub fn prune(
        &mut self,
        hourly_before: Timestamp,
        daily_before: Timestamp,
        now: Timestamp,
        limit: usize,
    ) -> usize {
        let hourly = self.hourly.prune(hourly_before, limit);
        let daily = self.daily.prune(daily_before, limit);
        self.batches
            .retain(|_, at| now.duration_since(*at) < BATCH_IDS_KEPT);
        hourly + daily
    }

    fn buckets(&self, granularity: Granularity) -> &Buckets {
        match granularity {
            Granularity::Hour => &self.hourly,
            Granularity::Day => &self.daily,
        }
    }
}

/// The table as JSON: each granularity's lines, and the batch ids.
#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(default)]
    hourly: Vec<WireLine>,
    #[serde(default)]
    daily: Vec<WireLine>,
    #[serde(default)]
    batches: BTreeMap<String, Timestamp>,
}

#[derive(Serialize, Deserialize)]
struct WireLine {
    key: KeyId,
    start: Timestamp,
    counts: Counts,
}

impl From<UsageTable> for Wire {
    fn from(table: UsageTable) -> Self {
        Wire {
            hourly: table.hourly.lines(),
            daily: table.daily.lines(),
            batches: table.batches,
        }
    }
}

impl From<Wire> for UsageTable {
    fn from(wire: Wire) -> Self {
        let mut table = UsageTable {
            batches: wire.batches,
            ..UsageTable::default()
        };
        for line in wire.hourly {
            table.hourly.add(&line.key, line.start, &line.counts);
        }
        for line in wire.daily {
            table.daily.add(&line.key, line.start, &line.counts);
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{HourCounts, Outcome};

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn valid(n: u64) -> Counts {
        let mut c = Counts::default();
        c.add(Outcome::Valid, n);
        c
    }

    #[test]
    fn batches_add_once_roll_up_by_day_and_prune_in_bounded_steps() {
        let (a, b) = (KeyId::new("a").unwrap(), KeyId::new("b").unwrap());
        let mut table = UsageTable::new();
        let batch = UsageBatch::new(
            "s1-1",
            [
                HourCounts::new(a.clone(), at("2026-03-01T10:00:00Z"), valid(2)),
                HourCounts::new(a.clone(), at("2026-03-01T23:00:00Z"), valid(3)),
                HourCounts::new(b.clone(), at("2026-03-01T10:00:00Z"), valid(9)),
            ],
        );
        let now = at("2026-03-02T00:00:00Z");
        assert!(table.add(batch.clone(), now));
        assert!(
            !table.add(batch, now),
            "a batch tried again is not added again"
        );
        let day = UsageRange::new(
            at("2026-03-01T00:00:00Z"),
            at("2026-03-02T00:00:00Z"),
            Granularity::Day,
        )
        .unwrap();
        assert_eq!(table.read(&a, &day)[0].counts.get(Outcome::Valid), 5);
        let top = table.top(&day, |_| true, 10);
        assert_eq!((top[0].id.as_str(), top[1].id.as_str()), ("b", "a"));
        assert_eq!(table.top(&day, |k| *k == a, 10).len(), 1);

        let json = serde_json::to_string(&table).unwrap();
        let back: UsageTable = serde_json::from_str(&json).unwrap();
        assert_eq!(back, table);

        assert_eq!(
            table.prune(
                at("2026-03-01T12:00:00Z"),
                at("2020-01-01T00:00:00Z"),
                now,
                1
            ),
            1
        );
        assert_eq!(
            table.prune(
                at("2026-03-01T12:00:00Z"),
                at("2020-01-01T00:00:00Z"),
                now,
                10
            ),
            1
        );
        let hours = UsageRange::new(
            at("2026-03-01T00:00:00Z"),
            at("2026-03-02T00:00:00Z"),
            Granularity::Hour,
        )
        .unwrap();
        let left: u64 = table
            .read(&a, &hours)
            .iter()
            .map(|b| b.counts.total())
            .sum();
        assert_eq!(left, 3, "the 23:00 hour is kept");
        assert_eq!(
            table.read(&a, &day)[0].counts.total(),
            5,
            "days are kept longer"
        );
    }
}
