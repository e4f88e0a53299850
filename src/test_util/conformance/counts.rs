//! The usage capability's rules for requests counted per key: adding up, once per batch,
//! reading back zero-filled, the busiest keys, retention.

use std::sync::Arc;

use jiff::Timestamp;
use tokio::task::JoinSet;

use super::{broken, ensure, expect, id, record};
use crate::store::UsageStore;
use crate::usage::{
    Bucket, Counts, Granularity, HourCounts, KeyTotal, Outcome, UsageBatch, UsageRange,
};

fn at(text: &str) -> Timestamp {
    text.parse()
        .unwrap_or_else(|e| broken("the suite's own times parse", format!("{text}: {e}")))
}

fn counted(outcome: Outcome, n: u64) -> Counts {
    let mut counts = Counts::default();
    counts.add(outcome, n);
    counts
}

fn range(from: &str, to: &str, granularity: Granularity) -> UsageRange {
    UsageRange::new(at(from), at(to), granularity).unwrap_or_else(|e| broken("test setup", e))
}

fn totals(buckets: &[Bucket]) -> Vec<u64> {
    buckets.iter().map(|b| b.counts.total()).collect()
}

pub(super) async fn usage_adds_up_by_hour_and_day<S: UsageStore>((store, _): (S, S)) {
    const RULE: &str =
        "add_usage adds to the hour and the UTC day, and a batch tried again is added once";
    let a = record("a1", "alice");
    expect(store.insert(a.clone()).await, RULE, "insert");
    let mut hour = counted(Outcome::Valid, 2);
    hour.add(Outcome::WrongSecret, 1);
    let first = UsageBatch::new(
        "server1-1",
        [
            HourCounts::new(a.id.clone(), at("2026-03-01T10:00:00Z"), hour),
            HourCounts::new(
                a.id.clone(),
                at("2026-03-01T23:00:00Z"),
                counted(Outcome::Revoked, 3),
            ),
        ],
    );
    expect(store.add_usage(first.clone()).await, RULE, "add_usage");
    let second = UsageBatch::new(
        "server1-2",
        [HourCounts::new(
            a.id.clone(),
            at("2026-03-01T10:00:00Z"),
            counted(Outcome::Valid, 4),
        )],
    );
    expect(store.add_usage(second).await, RULE, "add_usage");
    expect(
        store.add_usage(first).await,
        RULE,
        "add_usage (the first tried again)",
    );
    let hours = expect(
        store
            .read_usage(
                &a.id,
                range(
                    "2026-03-01T09:00:00Z",
                    "2026-03-01T12:00:00Z",
                    Granularity::Hour,
                ),
            )
            .await,
        RULE,
        "read_usage",
    );
    let ten = hours.get(1).map(|b| {
        (
            b.counts.get(Outcome::Valid),
            b.counts.get(Outcome::WrongSecret),
        )
    });
    ensure(
        totals(&hours) == [0, 7, 0] && ten == Some((6, 1)),
        RULE,
        format!("09:00 to 12:00 after 2+1 and 4 at 10:00, the first batch twice: {hours:?}"),
    );
    let days = expect(
        store
            .read_usage(
                &a.id,
                range(
                    "2026-03-01T00:00:00Z",
                    "2026-03-03T00:00:00Z",
                    Granularity::Day,
                ),
            )
            .await,
        RULE,
        "read_usage",
    );
    ensure(
        totals(&days) == [10, 0]
            && days[0].start == at("2026-03-01T00:00:00Z")
            && days[0].counts.get(Outcome::Revoked) == 3,
        RULE,
        format!("the UTC day of 10:00 and 23:00: {days:?}"),
    );
    let nobody = expect(
        store
            .read_usage(
                &id("nobody"),
                range(
                    "2026-03-01T00:00:00Z",
                    "2026-03-02T00:00:00Z",
                    Granularity::Hour,
                ),
            )
            .await,
        RULE,
        "read_usage",
    );
    ensure(
        nobody.len() == 24 && totals(&nobody).iter().all(|n| *n == 0),
        RULE,
        format!(
            "a key with no usage read {} buckets, not 24 zeros",
            nobody.len()
        ),
    );
}

pub(super) async fn usage_from_two_handles_adds_up<S: UsageStore>((one, other): (S, S)) {
    const RULE: &str = "add_usage from many writers on two handles adds every batch once";
    let a = record("a1", "alice");
    expect(one.insert(a.clone()).await, RULE, "insert");
    let (one, other) = (Arc::new(one), Arc::new(other));
    let mut writers = JoinSet::new();
    for writer in 0..8 {
        let store = Arc::clone(if writer % 2 == 0 { &one } else { &other });
        let key = a.id.clone();
        writers.spawn(async move {
            for n in 0..5 {
                let line = HourCounts::new(
                    key.clone(),
                    at("2026-03-01T10:00:00Z"),
                    counted(Outcome::Valid, 1),
                );
                store
                    .add_usage(UsageBatch::new(format!("server{writer}-{n}"), [line]))
                    .await?;
            }
            Ok::<_, crate::store::StoreError>(())
        });
    }
    while let Some(done) = writers.join_next().await {
        match done {
            Ok(result) => expect(result, RULE, "add_usage"),
            Err(e) => broken(RULE, format!("a writer panicked: {e}")),
        }
    }
    let day = expect(
        other
            .read_usage(
                &a.id,
                range(
                    "2026-03-01T00:00:00Z",
                    "2026-03-02T00:00:00Z",
                    Granularity::Day,
                ),
            )
            .await,
        RULE,
        "read_usage",
    );
    ensure(
        totals(&day) == [40],
        RULE,
        format!("8 writers of 5 batches of 1 read {:?}", totals(&day)),
    );
}

pub(super) async fn top_usage_lists_the_busiest<S: UsageStore>((store, _): (S, S)) {
    const RULE: &str = "top_usage lists the keys with the most requests first, of a principal if asked, at most the limit";
    let keys = [
        ("a1", "alice", 5),
        ("b1", "bob", 9),
        ("c1", "alice", 7),
        ("d1", "alice", 0),
    ];
    for (key, principal, _) in keys {
        expect(store.insert(record(key, principal)).await, RULE, "insert");
    }
    let lines = keys
        .iter()
        .filter(|(_, _, n)| *n > 0)
        .map(|(key, _, n)| {
            HourCounts::new(
                id(key),
                at("2026-03-01T10:00:00Z"),
                counted(Outcome::RateLimited, *n),
            )
        })
        // A key with no record: counted once, deleted since, never listed.
        .chain([HourCounts::new(
            id("gone"),
            at("2026-03-01T10:00:00Z"),
            counted(Outcome::Valid, 99),
        )]);
    expect(
        store.add_usage(UsageBatch::new("server1-1", lines)).await,
        RULE,
        "add_usage",
    );
    let day = range(
        "2026-03-01T00:00:00Z",
        "2026-03-02T00:00:00Z",
        Granularity::Day,
    );
    let listed = |top: &[KeyTotal]| -> Vec<(String, u64)> {
        top.iter()
            .map(|t| (t.id.to_string(), t.counts.total()))
            .collect()
    };
    let all = expect(store.top_usage(None, day, 10).await, RULE, "top_usage");
    let want = [
        ("b1".to_owned(), 9),
        ("c1".to_owned(), 7),
        ("a1".to_owned(), 5),
    ];
    ensure(
        listed(&all) == want,
        RULE,
        format!("every principal: {:?}", listed(&all)),
    );
    let alice = expect(
        store.top_usage(Some("alice"), day, 1).await,
        RULE,
        "top_usage",
    );
    ensure(
        listed(&alice) == [("c1".to_owned(), 7)],
        RULE,
        format!("alice's busiest one: {:?}", listed(&alice)),
    );
    let hours = range(
        "2026-03-01T10:00:00Z",
        "2026-03-01T11:00:00Z",
        Granularity::Hour,
    );
    let by_hour = expect(store.top_usage(None, hours, 10).await, RULE, "top_usage");
    ensure(
        listed(&by_hour) == want,
        RULE,
        format!("by the hour: {:?}", listed(&by_hour)),
    );
}

pub(super) async fn usage_prunes_in_bounded_steps<S: UsageStore>((store, _): (S, S)) {
    const RULE: &str =
        "prune_usage removes the buckets before its times, at most its limit of each a call";
    let a = record("a1", "alice");
    expect(store.insert(a.clone()).await, RULE, "insert");
    let lines = [
        "2026-01-01T10:00:00Z",
        "2026-01-01T11:00:00Z",
        "2026-01-02T10:00:00Z",
        "2026-03-01T10:00:00Z",
    ]
    .map(|hour| HourCounts::new(a.id.clone(), at(hour), counted(Outcome::Valid, 1)));
    expect(
        store.add_usage(UsageBatch::new("server1-1", lines)).await,
        RULE,
        "add_usage",
    );
    // Hours before February go; days are kept from 2026 on.
    let (hours_before, days_before) = (at("2026-02-01T00:00:00Z"), at("2025-01-01T00:00:00Z"));
    let mut rounds = Vec::new();
    loop {
        let pruned = expect(
            store.prune_usage(hours_before, days_before, 2).await,
            RULE,
            "prune_usage",
        );
        rounds.push(pruned);
        if pruned == 0 || rounds.len() > 5 {
            break;
        }
    }
    ensure(
        rounds == [2, 1, 0],
        RULE,
        format!("3 old hours pruned 2 at a time went as {rounds:?}"),
    );
    let hours = expect(
        store
            .read_usage(
                &a.id,
                range(
                    "2026-01-01T00:00:00Z",
                    "2026-03-02T00:00:00Z",
                    Granularity::Hour,
                ),
            )
            .await,
        RULE,
        "read_usage",
    );
    let days = expect(
        store
            .read_usage(
                &a.id,
                range(
                    "2026-01-01T00:00:00Z",
                    "2026-03-02T00:00:00Z",
                    Granularity::Day,
                ),
            )
            .await,
        RULE,
        "read_usage",
    );
    let (hours, days): (u64, u64) = (totals(&hours).iter().sum(), totals(&days).iter().sum());
    ensure(
        (hours, days) == (1, 4),
        RULE,
        format!(
            "after pruning hours before February: {hours} hourly and {days} daily requests left"
        ),
    );
}
