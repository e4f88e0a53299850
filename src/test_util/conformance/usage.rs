//! The usage capability's rules: [`UsageStore`]; and where usage meets the outbox.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::task::JoinSet;

use super::outbox::drain;
use super::{broken, ensure, expect, id, parse, record, suite, Heard, RACERS};
use crate::events::{EventKind, KeyEvent};
// Times to the microsecond, as stores keep them (PostgreSQL does).
use crate::key::KeyId;
use crate::record::{record_time, KeyStatus};
use crate::store::{ChangeListener, FleetRates, OutboxStore, RateShare, UsageStore};

suite! {
    /// Checks a store's usage capability ([`UsageStore`]) against every rule of its contract.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")]
    /// # async fn main() {
    /// use tower_apikey::MemoryStore;
    /// tower_apikey::test_util::check_usage_store(|| async {
    ///     let store = MemoryStore::new();
    ///     (store.clone(), store)
    /// })
    /// .await;
    /// # }
    /// ```
    pub async fn check_usage_store<S: [UsageStore]> {
        last_use_keeps_the_latest: "`record_last_used` keeps the latest time and skips unknown ids",
        last_use_survives_a_replace: "a last use recorded between a read and a `replace` is no conflict, and is kept",
        quota_is_never_oversold: "`take_quota` grants at most what is left, however many take at once (16 racers of a quota of 100 get 100), a daily period refills a day after it starts, and a key without a quota (or no key) gets nothing; `return_quota` gives back into the same period only, never above the quota",
        quota_usage_is_no_edit: "quota usage is no edit: `replace` neither conflicts over it nor undoes it, unless it changes the quota, which starts afresh",
        quota_refills_as_the_record_rule_says: "`take_quota` refills and grants as `KeyRecord::take_quota` does: on period boundaries, whole periods skipped",
        rate_counts_add_up_across_handles: "`share_rate_usage` adds each call's counts once and returns the totals of every handle's counts, also under concurrent calls on two handles; it counts the servers that shared (an empty share too) and, per key, those that admitted it (a count above 0) within the share's window, the caller always",
        servers_leave_the_rate_share: "`leave_rate_share` forgets a server on every handle: it no longer counts among the servers or as admitting a key, what it admitted stays in the totals, and a server unknown or gone already may leave",
        usage_is_no_change: "usage (`record_last_used`, `take_quota`, `return_quota`, `share_rate_usage`, `leave_rate_share`) is no change: subscribers hear nothing of it",
        super::counts::usage_adds_up_by_hour_and_day: "`add_usage` adds each batch to its hours and UTC days, once however many times it is tried; `read_usage` answers every bucket of a range, zeros included, for a key with no usage too",
        super::counts::usage_from_two_handles_adds_up: "`add_usage` from 8 writers on two handles at once adds every batch once",
        super::counts::top_usage_lists_the_busiest: "`top_usage` lists the keys with records and the most requests first, of one principal if asked, at most the limit, by hour or by day",
        super::counts::usage_prunes_in_bounded_steps: "`prune_usage` removes hourly and daily buckets before their times, at most its limit of each a call, and keeps the rest",
    }
}

suite! {
    /// Checks the rules where a store's usage meets its outbox ([`UsageStore`] and
    /// [`OutboxStore`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")]
    /// # async fn main() {
    /// use tower_apikey::MemoryStore;
    /// tower_apikey::test_util::check_usage_with_outbox(|| async {
    ///     let store = MemoryStore::new();
    ///     (store.clone(), store)
    /// })
    /// .await;
    /// # }
    /// ```
    pub async fn check_usage_with_outbox<S: [UsageStore + OutboxStore]> {
        usage_writes_no_events: "usage writes no event (a last use, a quota taken but not used up, given back, a rate share)",
        quota_running_out_is_one_event: "a quota running out adds one `key.quota_exhausted` a period, in the same write, and it is `KeyEvent::quota_exhausted`'s, id and body",
    }
}

async fn last_use_keeps_the_latest<S: UsageStore>((store, _): (S, S)) {
    const RULE: &str = "record_last_used keeps the latest time and skips unknown ids";
    let a = record("a1", "alice");
    expect(store.insert(a.clone()).await, RULE, "insert");
    let later = record_time();
    let earlier = later - SignedDuration::from_mins(5);
    expect(
        store
            .record_last_used(vec![(a.id.clone(), later), (id("ghost"), later)])
            .await,
        RULE,
        "record_last_used",
    );
    expect(
        store.record_last_used(vec![(a.id.clone(), earlier)]).await,
        RULE,
        "record_last_used",
    );
    let got = expect(store.get(&a.id).await, RULE, "get").map(|r| r.usage.last_used_at);
    ensure(
        got == Some(Some(later)),
        RULE,
        format!("uses at {later} then {earlier} left {got:?}"),
    );
    ensure(
        expect(store.get(&id("ghost")).await, RULE, "get").is_none(),
        RULE,
        "a last use made a record",
    );
}

async fn last_use_survives_a_replace<S: UsageStore>((store, _): (S, S)) {
    let v1 = record("a1", "alice");
    expect(store.insert(v1.clone()).await, "test setup", "insert");
    let mut revoked = v1.clone();
    revoked.status = KeyStatus::Revoked;
    expect(
        store.replace(&v1, revoked.clone()).await,
        "test setup",
        "replace",
    );
    const LAST_USE: &str = "replace ignores last use in its compare, and keeps the later one";
    let used_at = record_time();
    expect(
        store.record_last_used(vec![(v1.id.clone(), used_at)]).await,
        LAST_USE,
        "record_last_used",
    );
    let mut described = revoked.clone();
    described.description = Some("kept".into());
    expect(
        store.replace(&revoked, described).await,
        LAST_USE,
        "replace after a last use",
    );
    let now = expect(store.get(&v1.id).await, LAST_USE, "get");
    ensure(
        now.as_ref().is_some_and(|r| {
            r.usage.last_used_at == Some(used_at) && r.description.as_deref() == Some("kept")
        }),
        LAST_USE,
        format!("read back {now:?}"),
    );
}

async fn quota_is_never_oversold<S: UsageStore>((store, _): (S, S)) {
    let store = Arc::new(store);
    const RULE: &str = "take_quota grants at most what is left, however many take at once";
    let mut a = record("a1", "alice");
    a.quota = Some(parse("100/1d"));
    expect(store.insert(a.clone()).await, RULE, "insert");
    let plain = record("b1", "bob");
    expect(store.insert(plain.clone()).await, RULE, "insert");
    let mut racers = JoinSet::new();
    for _ in 0..RACERS {
        let store = Arc::clone(&store);
        let id = a.id.clone();
        racers.spawn(async move {
            let mut got = 0;
            for _ in 0..4 {
                got += expect(store.take_quota(&id, 3).await, RULE, "take_quota").granted;
            }
            got
        });
    }
    let mut granted = 0;
    while let Some(got) = racers.join_next().await {
        granted += got.unwrap_or_else(|e| broken(RULE, e));
    }
    let rest = expect(store.take_quota(&a.id, 1_000).await, RULE, "take_quota");
    ensure(
        granted == 100 && rest.granted == 0 && rest.remaining == 0,
        RULE,
        format!(
            "{RACERS} racers asking for 192 took {granted} of 100, then {} more",
            rest.granted
        ),
    );
    let Some(period) = rest.period_start else {
        broken(RULE, "a grant of a quota named no period");
    };
    ensure(
        rest.refills_at == Some(period + SignedDuration::from_hours(24)),
        RULE,
        format!(
            "a daily quota's period starting {period} refills at {:?}",
            rest.refills_at
        ),
    );
    ensure(
        expect(store.take_quota(&plain.id, 5).await, RULE, "take_quota").granted == 0
            && expect(store.take_quota(&id("ghost"), 5).await, RULE, "take_quota").granted == 0,
        RULE,
        "a key without a quota, or no key, was granted uses",
    );
    const BACK: &str = "return_quota gives back into the same period only, never above the quota";
    let earlier = period - SignedDuration::from_hours(1);
    ensure(
        !expect(
            store.return_quota(&a.id, 5, earlier).await,
            BACK,
            "return_quota",
        ),
        BACK,
        "uses of another period were taken back",
    );
    ensure(
        expect(
            store.return_quota(&a.id, 500, period).await,
            BACK,
            "return_quota",
        ),
        BACK,
        "uses of the current period were refused",
    );
    let left = expect(store.get(&a.id).await, BACK, "get").and_then(|r| r.usage.quota_remaining);
    ensure(
        left == Some(100),
        BACK,
        format!("500 given back to a quota of 100 left {left:?}"),
    );
}

async fn quota_usage_is_no_edit<S: UsageStore>((store, _): (S, S)) {
    const RULE: &str = "quota usage is no edit: replace neither conflicts over it nor undoes it";
    let mut a = record("a1", "alice");
    a.quota = Some(parse("10"));
    expect(store.insert(a.clone()).await, RULE, "insert");
    let v1 = expect(store.get(&a.id).await, RULE, "get").unwrap_or_else(|| broken(RULE, "gone"));
    expect(store.take_quota(&a.id, 4).await, RULE, "take_quota");
    let mut renamed = v1.clone();
    renamed.name = Some("renamed".into());
    expect(
        store.replace(&v1, renamed).await,
        RULE,
        "replace after uses were taken",
    );
    let v2 = expect(store.get(&a.id).await, RULE, "get").unwrap_or_else(|| broken(RULE, "gone"));
    ensure(
        v2.usage.quota_remaining == Some(6) && v2.name.as_deref() == Some("renamed"),
        RULE,
        format!(
            "a rename after 4 uses left {:?} uses",
            v2.usage.quota_remaining
        ),
    );
    let mut bigger = v2.clone();
    bigger.set_quota(Some(parse("50")));
    expect(
        store.replace(&v2, bigger).await,
        RULE,
        "replace with a new quota",
    );
    let v3 = expect(store.get(&a.id).await, RULE, "get").unwrap_or_else(|| broken(RULE, "gone"));
    let grant = expect(store.take_quota(&a.id, 100).await, RULE, "take_quota");
    ensure(
        v3.usage.quota_remaining.is_none() && grant.granted == 50,
        RULE,
        format!(
            "a new quota of 50 granted {} ({:?} left)",
            grant.granted, v3.usage.quota_remaining
        ),
    );
}

async fn quota_refills_as_the_record_rule_says<S: UsageStore>((store, _): (S, S)) {
    const RULE: &str = "take_quota refills and grants as KeyRecord::take_quota does";
    let mut a = record("a1", "alice");
    a.quota = Some(parse("3/1s"));
    expect(store.insert(a.clone()).await, RULE, "insert");
    let first = expect(store.take_quota(&a.id, 2).await, RULE, "take_quota");
    let Some(start) = first.period_start else {
        broken(RULE, "a grant of a quota named no period");
    };
    ensure(
        (first.granted, first.remaining) == (2, 1)
            && first.refills_at == Some(start + SignedDuration::from_secs(1)),
        RULE,
        format!("the first 2 of 3 uses a second: {first:?}"),
    );
    // Into the next period, then past a whole one: each grant is the rule's, applied to the
    // record as stored at any time during the call.
    let mut compared = 0;
    for (at, want) in [(1_500, 1), (3_600, 5)] {
        let due = start + SignedDuration::from_millis(at);
        if let Ok(wait) = Duration::try_from(due.duration_since(Timestamp::now())) {
            tokio::time::sleep(wait).await;
        }
        let before =
            expect(store.get(&a.id).await, RULE, "get").unwrap_or_else(|| broken(RULE, "gone"));
        let t0 = Timestamp::now();
        let grant = expect(store.take_quota(&a.id, want).await, RULE, "take_quota");
        let t1 = Timestamp::now();
        let rule_then = before.clone().take_quota(want, t0);
        if rule_then == before.clone().take_quota(want, t1) {
            ensure(
                grant == rule_then,
                RULE,
                format!("{at} ms into a quota of 3 a second, asking for {want}: the store granted {grant:?}, the rule {rule_then:?}"),
            );
            compared += 1;
        }
    }
    ensure(compared > 0, RULE, "every call straddled a period boundary");
}

async fn rate_counts_add_up_across_handles<S: UsageStore>((one, other): (S, S)) {
    const RULE: &str = "share_rate_usage adds each call's counts once, returns every handle's totals and counts who shares";
    let (a, b) = (record("a1", "alice"), record("b1", "bob"));
    for r in [&a, &b] {
        expect(one.insert(r.clone()).await, RULE, "insert");
    }
    let share = |server: u64, counts: &[(&KeyId, u64)], within: Duration| {
        let admitted = counts.iter().map(|(k, n)| ((*k).clone(), *n)).collect();
        RateShare::new(server, admitted, within)
    };
    let minute = Duration::from_secs(60);
    let totals = |fleet: &FleetRates| -> Vec<(KeyId, u64, u32)> {
        fleet
            .keys
            .iter()
            .map(|k| (k.id.clone(), k.admitted, k.servers))
            .collect()
    };
    let got = expect(
        one.share_rate_usage(share(11, &[(&a.id, 5)], minute)).await,
        RULE,
        "share_rate_usage",
    );
    ensure(
        got.servers == 1 && totals(&got) == [(a.id.clone(), 5, 1)],
        RULE,
        format!("5 by server 11 on one handle: {got:?}"),
    );
    let got = expect(
        other
            .share_rate_usage(share(12, &[(&a.id, 3), (&b.id, 1)], minute))
            .await,
        RULE,
        "share_rate_usage",
    );
    ensure(
        got.servers == 2 && totals(&got) == [(a.id.clone(), 8, 2), (b.id.clone(), 1, 1)],
        RULE,
        format!("then 3 and 1 by server 12 on the other handle: {got:?} (two servers; a listed by both)"),
    );
    let got = expect(
        one.share_rate_usage(share(13, &[], minute)).await,
        RULE,
        "share_rate_usage",
    );
    ensure(
        got.servers == 3 && got.keys.is_empty(),
        RULE,
        format!("an empty share by server 13: {got:?} (three servers, no key)"),
    );
    // Server 11 admitted `a` over 100 ms ago: no longer admitting it within 100 ms; server
    // 12's count of 0 does not make it admit `a`, but the caller always counts.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let got = expect(
        other
            .share_rate_usage(share(12, &[(&a.id, 0)], Duration::from_millis(100)))
            .await,
        RULE,
        "share_rate_usage",
    );
    ensure(
        got.servers == 3 && totals(&got) == [(a.id.clone(), 8, 1)],
        RULE,
        format!("server 12 again, 0 of a, admitting within 100 ms: {got:?} (only itself)"),
    );
    // Eight validators, four on each handle, sharing at once.
    let (one, other) = (Arc::new(one), Arc::new(other));
    let mut sharers = JoinSet::new();
    for n in 0..8 {
        let store = Arc::clone(if n % 2 == 0 { &one } else { &other });
        let key = a.id.clone();
        sharers.spawn(async move {
            for _ in 0..10 {
                store
                    .share_rate_usage(RateShare::new(n, vec![(key.clone(), 1)], minute))
                    .await?;
            }
            Ok::<_, crate::store::StoreError>(())
        });
    }
    while let Some(done) = sharers.join_next().await {
        match done {
            Ok(result) => expect(result, RULE, "share_rate_usage"),
            Err(e) => broken(RULE, format!("a sharer panicked: {e}")),
        }
    }
    let got = expect(
        other
            .share_rate_usage(share(12, &[(&a.id, 0)], minute))
            .await,
        RULE,
        "share_rate_usage",
    );
    ensure(
        got.servers == 11 && totals(&got) == [(a.id.clone(), 88, 10)],
        RULE,
        format!("8 servers at once sharing 10 each onto 8: {got:?} (11 servers, 10 active on a)"),
    );
}

async fn servers_leave_the_rate_share<S: UsageStore>((one, other): (S, S)) {
    const RULE: &str = "leave_rate_share forgets a server on every handle, and keeps its counts";
    let a = record("a1", "alice");
    expect(one.insert(a.clone()).await, RULE, "insert");
    share_one(&one, 21, &a.id, 4, RULE).await;
    share_one(&other, 22, &a.id, 2, RULE).await;
    expect(one.leave_rate_share(21).await, RULE, "leave_rate_share");
    let got = share_one(&other, 22, &a.id, 1, RULE).await;
    ensure(
        got == (1, Some((7, 1))),
        RULE,
        format!("server 21 shared 4 and left on one handle, server 22 shared 2 then 1 on the other: (servers, (a's total, a's servers)) = {got:?}, not (1, (7, 1))"),
    );
    for (server, what) in [(21, "again"), (99, "of a stranger"), (22, "of the last")] {
        let leaving = other.leave_rate_share(server).await;
        expect(leaving, RULE, &format!("leave_rate_share {what}"));
    }
    let got = share_one(&one, 23, &a.id, 0, RULE).await;
    ensure(
        got == (1, Some((7, 1))),
        RULE,
        format!("every server left, then server 23 shared 0 of a: {got:?}, not (1, (7, 1)): itself alone, the total kept"),
    );
}

/// `server` shares `n` of `id` on `store` (a minute's window): the servers on the store, and
/// `id`'s total and servers admitting it.
async fn share_one<S: UsageStore>(
    store: &S,
    server: u64,
    id: &KeyId,
    n: u64,
    rule: &str,
) -> (u32, Option<(u64, u32)>) {
    let share = RateShare::new(server, vec![(id.clone(), n)], Duration::from_secs(60));
    let got = expect(
        store.share_rate_usage(share).await,
        rule,
        "share_rate_usage",
    );
    let key = got.keys.first().map(|k| (k.admitted, k.servers));
    (got.servers, key)
}

/// Writes every kind of usage for `key` (a key with an unspent quota): a last use, uses
/// taken and some given back, a rate share.
async fn use_every_way<S: UsageStore>(store: &S, key: &KeyId, rule: &str) {
    expect(
        store
            .record_last_used(vec![(key.clone(), record_time())])
            .await,
        rule,
        "record_last_used",
    );
    let grant = expect(store.take_quota(key, 4).await, rule, "take_quota");
    if let Some(start) = grant.period_start {
        expect(
            store.return_quota(key, 2, start).await,
            rule,
            "return_quota",
        );
    }
    expect(
        store
            .share_rate_usage(RateShare::new(
                1,
                vec![(key.clone(), 3)],
                Duration::from_secs(1),
            ))
            .await,
        rule,
        "share_rate_usage",
    );
    expect(store.leave_rate_share(1).await, rule, "leave_rate_share");
}

async fn usage_is_no_change<S: UsageStore>((store, _): (S, S)) {
    const RULE: &str = "usage is no change: subscribers hear nothing of it";
    let mut a = record("a1", "alice");
    a.quota = Some(parse("10/1d"));
    expect(store.insert(a.clone()).await, RULE, "insert");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let heard = Arc::new(Heard::default());
    let listener: Arc<dyn ChangeListener> = heard.clone();
    store.subscribe(Arc::downgrade(&listener));
    heard.take();
    use_every_way(&store, &a.id, RULE).await;
    let named = heard.named_any(&[&a.id]).await;
    ensure(
        named.is_empty(),
        RULE,
        format!("subscribers heard {named:?}: caches would drop keys for traffic"),
    );
    drop(listener);
}

async fn usage_writes_no_events<S: UsageStore + OutboxStore>((store, _): (S, S)) {
    const RULE: &str = "usage writes no event";
    let mut a = record("a1", "alice");
    a.quota = Some(parse("10/1d"));
    expect(store.insert(a.clone()).await, RULE, "insert");
    drain(&store, RULE).await;
    use_every_way(&store, &a.id, RULE).await;
    let events = drain(&store, RULE).await;
    let kinds: Vec<EventKind> = events.iter().map(|e| e.event.kind).collect();
    ensure(
        events.is_empty(),
        RULE,
        format!("the outbox held {kinds:?}"),
    );
}

async fn quota_running_out_is_one_event<S: UsageStore + OutboxStore>((store, _): (S, S)) {
    const RULE: &str =
        "a quota running out adds one key.quota_exhausted a period, in the same write";
    let mut a = record("a1", "alice");
    a.name = Some("metered".into());
    a.expires_at = Some(record_time() + SignedDuration::from_hours(48));
    a.set_quota(Some(
        crate::policy::Quota::new(3, None).unwrap_or_else(|e| broken("test setup", e)),
    ));
    expect(store.insert(a.clone()).await, RULE, "insert");
    drain(&store, RULE).await;
    let mut granted = Vec::new();
    for want in [2, 2, 1, 5] {
        granted.push(expect(store.take_quota(&a.id, want).await, RULE, "take_quota").granted);
    }
    ensure(
        granted == [2, 1, 0, 0],
        RULE,
        format!("granted {granted:?} of a quota of 3"),
    );
    let events = drain(&store, RULE).await;
    let kinds: Vec<(EventKind, &str)> = events
        .iter()
        .map(|e| (e.event.kind, e.event.key_id.as_str()))
        .collect();
    ensure(
        kinds == [(EventKind::QuotaExhausted, "a1")],
        RULE,
        format!("the outbox held {kinds:?}"),
    );
    const SAME: &str = "the quota event is KeyEvent::quota_exhausted, its id and body";
    let event = &events[0].event;
    let stored =
        expect(store.get(&a.id).await, SAME, "get").unwrap_or_else(|| broken(SAME, "gone"));
    let Some(start) = stored.usage.quota_period_start else {
        broken(SAME, "a quota in use has no period");
    };
    let mut want = KeyEvent::quota_exhausted(&stored, start);
    want.at = event.at;
    ensure(
        *event == want,
        SAME,
        format!("the outbox held {event:?}, KeyEvent::quota_exhausted makes {want:?}"),
    );
}
