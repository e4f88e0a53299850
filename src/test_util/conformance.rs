//! The [`KeyStore`] conformance suite: every rule of the contract, checked on fresh stores.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::task::JoinSet;

use crate::events::{Delivery, EventKind, KeyEvent, OutboxEntry};
use crate::hash::{Pbkdf2Hash, Prf};
use crate::key::KeyId;
// Times to the microsecond, as stores keep them (PostgreSQL does).
use crate::record::{record_time, KeyRecord, KeyStatus, Revocation, RevocationReason};
use crate::store::{ChangeListener, KeyQuery, KeyStore, StoreChange, StoreError};

/// How long a change may take to reach the feed (a store may publish from a follower task);
/// the validator's promise is a second.
const FEED_BOUND: Duration = Duration::from_secs(1);

/// Writers racing in the concurrency rules.
const RACERS: usize = 16;

/// Checks `fresh()` stores against every rule of the [`KeyStore`] contract, and panics with a
/// message naming the first rule broken.
///
/// `fresh` must return a new, empty store each time (a new temporary file, a new database);
/// each rule runs on its own store. Run it inside a Tokio runtime; a multi-threaded one races
/// the concurrency rules on several threads:
///
/// ```
/// # #[tokio::main(flavor = "multi_thread")]
/// # async fn main() {
/// use tower_apikey::MemoryStore;
/// tower_apikey::test_util::check_store_contract(|| async { MemoryStore::new() }).await;
/// # }
/// ```
///
/// The rules:
/// - `get` returns what `insert` stored, and `None` for an unknown id; `insert` of a taken id
///   is [`StoreError::AlreadyExists`];
/// - `list` and `list_legacy` are ordered by id and filter as documented;
/// - `query` pages: `after`, `limit`, `principal`, `status` and `search` (ignoring case), and
///   walking pages visits every match once, in id order;
/// - `insert_limited` counts live keys (inactive ones count, revoked and expired ones do not)
///   and holds under concurrent writers: of 16 racing for one place, one gets it;
/// - `replace` is compare-and-swap: a stale `current` is [`StoreError::Conflict`], a missing
///   one [`StoreError::NotFound`]; a newer last use is no conflict and is kept; of racing
///   writers that read the same version, one wins;
/// - `insert_many` is all or nothing;
/// - `delete` says whether there was a record;
/// - `record_last_used` keeps the latest time and skips unknown ids;
/// - a record's rate limit, quota and allowed IPs read back as written;
/// - `take_quota` grants at most what is left, however many take at once (16 racers of a
///   quota of 100 get 100 between them), and nothing for a key without a quota;
///   `return_quota` gives back into the same period only, never above the quota;
/// - quota usage is no edit: `replace` neither conflicts over it nor undoes it, unless it
///   changes the quota;
/// - every change reaches subscribers within a second, as the id changed or a reset; a last
///   use is not a change.
///
/// # Panics
/// When the store breaks a rule, or fails an operation that should succeed.
pub async fn check_store_contract<S, F, Fut>(mut fresh: F)
where
    S: KeyStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    insert_and_get(fresh().await).await;
    listing_order(fresh().await).await;
    paging(fresh().await).await;
    limit_counts_live_keys(fresh().await).await;
    limit_holds_under_races(Arc::new(fresh().await)).await;
    replace_is_compare_and_swap(fresh().await).await;
    replace_holds_under_races(Arc::new(fresh().await)).await;
    insert_many_all_or_nothing(fresh().await).await;
    delete_says_what_it_did(fresh().await).await;
    last_use_keeps_the_latest(fresh().await).await;
    policies_round_trip(fresh().await).await;
    quota_is_never_oversold(Arc::new(fresh().await)).await;
    quota_usage_is_no_edit(fresh().await).await;
    change_feed(fresh().await).await;
    outbox_holds_each_changes_events(fresh().await).await;
    outbox_claims_are_exclusive(Arc::new(fresh().await)).await;
    added_events_are_added_once(Arc::new(fresh().await)).await;
    list_expiring_reads_what_expires(fresh().await).await;
    quota_running_out_is_one_event(fresh().await).await;
}

#[track_caller]
fn broken(rule: &str, detail: impl std::fmt::Display) -> ! {
    panic!("KeyStore contract broken: {rule}: {detail}")
}

#[track_caller]
fn ensure(ok: bool, rule: &str, detail: impl std::fmt::Display) {
    if !ok {
        broken(rule, detail);
    }
}

#[track_caller]
fn expect<T>(result: Result<T, StoreError>, rule: &str, what: &str) -> T {
    result.unwrap_or_else(|e| broken(rule, format!("{what} failed: {e}")))
}

fn id(text: &str) -> KeyId {
    KeyId::new(text).unwrap_or_else(|e| broken("test setup", e))
}

/// A record with a fixed hash: the suite checks storage, not hashing.
fn record(key_id: &str, principal: &str) -> KeyRecord {
    let hash = Pbkdf2Hash::from_parts(1000, &[7; 24], &[9; 24])
        .unwrap_or_else(|e| broken("test setup", e));
    KeyRecord::new(id(key_id), principal, hash, Prf::Sha1)
}

fn ids(records: &[KeyRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

async fn insert_and_get<S: KeyStore>(store: S) {
    const RULE: &str = "get returns what insert stored";
    let mut a = record("a1", "alice");
    a.name = Some("deploy".into());
    a.description = Some("CI deploys".into());
    a.permissions = vec!["read".into(), "write".into()];
    a.expires_at = Some(a.created_at + SignedDuration::from_hours(24));
    a.created_by = Some("admin".into());
    a.updated_at = Some(a.created_at + SignedDuration::from_secs(1));
    a.updated_by = Some("cli:root".into());
    a.protected = true;
    a.last_used_at = Some(a.created_at + SignedDuration::from_secs(2));
    a.legacy = true;
    a.lookup_digest = Some("ab".repeat(32));
    expect(store.insert(a.clone()).await, RULE, "insert");
    let got = expect(store.get(&a.id).await, RULE, "get");
    ensure(
        got.as_ref() == Some(&a),
        RULE,
        format!("stored {a:?}, read back {got:?}"),
    );
    let missing = expect(store.get(&id("nope")).await, RULE, "get");
    ensure(
        missing.is_none(),
        RULE,
        "get of an unknown id returned a record",
    );

    const TAKEN: &str = "insert of a taken id is AlreadyExists";
    let again = store.insert(record("a1", "mallory")).await;
    ensure(
        matches!(&again, Err(StoreError::AlreadyExists(x)) if *x == a.id),
        TAKEN,
        format!("got {again:?}"),
    );
    let got = expect(store.get(&a.id).await, TAKEN, "get");
    ensure(
        got.as_ref() == Some(&a),
        TAKEN,
        "the refused insert changed the record",
    );

    const REVOKED: &str = "a revocation's reason and location are kept";
    let mut revoked = a.clone();
    revoked.status = KeyStatus::Revoked;
    revoked.revocation = Some(Revocation::leaked_at("https://example.com/blob/1/x.env"));
    expect(store.replace(&a, revoked.clone()).await, REVOKED, "replace");
    let got = expect(store.get(&a.id).await, REVOKED, "get");
    ensure(
        got.as_ref() == Some(&revoked),
        REVOKED,
        format!("stored {revoked:?}, read back {got:?}"),
    );
    let mut b = record("b1", "bob");
    b.status = KeyStatus::Revoked;
    b.revocation = Some(Revocation::new(RevocationReason::Retired));
    expect(store.insert(b.clone()).await, REVOKED, "insert");
    let got = expect(store.get(&b.id).await, REVOKED, "get");
    ensure(
        got.as_ref() == Some(&b),
        REVOKED,
        format!("stored {b:?}, read back {got:?}"),
    );
}

async fn listing_order<S: KeyStore>(store: S) {
    const RULE: &str = "list and list_legacy are ordered by id and filtered";
    for (key_id, principal, legacy) in [
        ("c3", "alice", false),
        ("a1", "bob", true),
        ("b2", "alice", true),
        ("d4", "bob", false),
    ] {
        let mut r = record(key_id, principal);
        r.legacy = legacy;
        expect(store.insert(r).await, RULE, "insert");
    }
    let all = expect(store.list(None).await, RULE, "list");
    ensure(
        ids(&all) == ["a1", "b2", "c3", "d4"],
        RULE,
        format!("list(None) gave {:?}", ids(&all)),
    );
    let alice = expect(store.list(Some("alice")).await, RULE, "list");
    ensure(
        ids(&alice) == ["b2", "c3"],
        RULE,
        format!("list(alice) gave {:?}", ids(&alice)),
    );
    let legacy = expect(store.list_legacy().await, RULE, "list_legacy");
    ensure(
        ids(&legacy) == ["a1", "b2"],
        RULE,
        format!("list_legacy gave {:?}", ids(&legacy)),
    );
}

async fn paging<S: KeyStore>(store: S) {
    const RULE: &str = "query pages in id order and filters";
    let mut expected = Vec::new();
    for n in 0..25 {
        let principal = if n % 3 == 0 { "alice" } else { "bob" };
        let mut r = record(&format!("k{n:03}"), principal);
        if n % 5 == 0 {
            r.status = KeyStatus::Inactive;
        }
        if n == 7 {
            r.name = Some("Nightly DEPLOY".into());
        }
        if n == 11 {
            r.description = Some("for deployments".into());
        }
        if principal == "bob" {
            expected.push(r.id.clone());
        }
        expect(store.insert(r).await, RULE, "insert");
    }
    let mut walked = Vec::new();
    let mut query = KeyQuery::new().principal("bob").limit(4);
    loop {
        let page = expect(store.query(&query).await, RULE, "query");
        ensure(
            page.len() <= 4,
            RULE,
            format!("a page of limit 4 held {}", page.len()),
        );
        let Some(last) = page.last() else { break };
        query = query.after(last.id.clone());
        walked.extend(page.into_iter().map(|r| r.id));
    }
    ensure(
        walked == expected,
        RULE,
        format!("walking bob's pages gave {walked:?}, want {expected:?}"),
    );

    let inactive = expect(
        store
            .query(&KeyQuery::new().status(KeyStatus::Inactive))
            .await,
        RULE,
        "query",
    );
    ensure(
        ids(&inactive) == ["k000", "k005", "k010", "k015", "k020"],
        RULE,
        format!("status inactive gave {:?}", ids(&inactive)),
    );
    let found = expect(
        store.query(&KeyQuery::new().search("dePloy")).await,
        RULE,
        "query",
    );
    ensure(
        ids(&found) == ["k007", "k011"],
        RULE,
        format!(
            "search `dePloy` (name, description, ignoring case) gave {:?}",
            ids(&found)
        ),
    );
    let by_id = expect(
        store.query(&KeyQuery::new().search("K02")).await,
        RULE,
        "query",
    );
    ensure(
        ids(&by_id) == ["k020", "k021", "k022", "k023", "k024"],
        RULE,
        format!("search `K02` (id) gave {:?}", ids(&by_id)),
    );
    let pattern = expect(
        store.query(&KeyQuery::new().search("%_")).await,
        RULE,
        "query",
    );
    ensure(
        pattern.is_empty(),
        RULE,
        "search text `%_` was read as a pattern",
    );

    // Every filter, whole and page by page, gives what `KeyQuery::matches` picks from `list`.
    let all = expect(store.list(None).await, RULE, "list");
    for query in [
        KeyQuery::new(),
        KeyQuery::new().principal("alice"),
        KeyQuery::new().status(KeyStatus::Active),
        KeyQuery::new().principal("bob").status(KeyStatus::Inactive),
        KeyQuery::new().search("ALICE"),
    ] {
        let want: Vec<&str> = all
            .iter()
            .filter(|r| query.matches(r))
            .map(|r| r.id.as_str())
            .collect();
        let whole = expect(store.query(&query).await, RULE, "query");
        ensure(
            ids(&whole) == want,
            RULE,
            format!("{query:?} gave {:?}, want {want:?}", ids(&whole)),
        );
        let mut paged = Vec::new();
        let mut page = query.clone().limit(3);
        loop {
            let got = expect(store.query(&page).await, RULE, "query");
            let Some(last) = got.last() else { break };
            page = page.after(last.id.clone());
            paged.extend(got.into_iter().map(|r| r.id));
        }
        let paged: Vec<&str> = paged.iter().map(KeyId::as_str).collect();
        ensure(
            paged == want,
            RULE,
            format!("{query:?} in pages of 3 gave {paged:?}, want {want:?}"),
        );
    }
}

async fn limit_counts_live_keys<S: KeyStore>(store: S) {
    const RULE: &str =
        "insert_limited counts live keys: inactive ones count, revoked and expired ones do not";
    let now = record_time();
    let mut revoked = record("r1", "alice");
    revoked.status = KeyStatus::Revoked;
    let mut expired = record("e1", "alice");
    expired.expires_at = Some(now - SignedDuration::from_hours(1));
    let mut inactive = record("i1", "alice");
    inactive.status = KeyStatus::Inactive;
    for r in [revoked, expired, inactive, record("b1", "bob")] {
        expect(store.insert(r).await, RULE, "insert");
    }
    expect(
        store.insert_limited(record("a1", "alice"), 2).await,
        RULE,
        "insert_limited under the limit",
    );
    let over = store.insert_limited(record("a2", "alice"), 2).await;
    ensure(
        matches!(&over, Err(StoreError::LimitReached { limit: 2, .. })),
        RULE,
        format!("a third live key for a limit of 2 got {over:?}"),
    );
    let absent = expect(store.get(&id("a2")).await, RULE, "get");
    ensure(absent.is_none(), RULE, "a refused key was stored");
    let taken = store.insert_limited(record("b1", "carol"), 2).await;
    ensure(
        matches!(&taken, Err(StoreError::AlreadyExists(_))),
        "insert_limited of a taken id is AlreadyExists",
        format!("got {taken:?}"),
    );
}

async fn limit_holds_under_races<S: KeyStore>(store: Arc<S>) {
    const RULE: &str = "insert_limited holds under concurrent writers";
    expect(store.insert(record("first", "alice")).await, RULE, "insert");
    let mut racers = JoinSet::new();
    for n in 0..RACERS {
        let store = Arc::clone(&store);
        racers.spawn(async move {
            store
                .insert_limited(record(&format!("race{n}"), "alice"), 2)
                .await
        });
    }
    let mut admitted = 0;
    while let Some(outcome) = racers.join_next().await {
        match outcome.unwrap_or_else(|e| broken(RULE, format!("a writer panicked: {e}"))) {
            Ok(()) => admitted += 1,
            Err(StoreError::LimitReached { .. }) => {}
            Err(e) => broken(RULE, format!("a writer failed: {e}")),
        }
    }
    let live = expect(store.list(Some("alice")).await, RULE, "list").len();
    ensure(
        admitted == 1 && live == 2,
        RULE,
        format!("{RACERS} writers raced for the one place left under a limit of 2: {admitted} got in, alice now holds {live}"),
    );
}

async fn replace_is_compare_and_swap<S: KeyStore>(store: S) {
    const RULE: &str = "replace is compare-and-swap";
    let v1 = record("a1", "alice");
    expect(store.insert(v1.clone()).await, RULE, "insert");
    let mut revoked = v1.clone();
    revoked.status = KeyStatus::Revoked;
    expect(
        store.replace(&v1, revoked.clone()).await,
        RULE,
        "replace of the current version",
    );
    let mut renamed = v1.clone();
    renamed.name = Some("stale".into());
    let stale = store.replace(&v1, renamed).await;
    ensure(
        matches!(&stale, Err(StoreError::Conflict(x)) if *x == v1.id),
        RULE,
        format!("a write over a version changed since it was read got {stale:?}"),
    );
    let now = expect(store.get(&v1.id).await, RULE, "get");
    ensure(
        now.as_ref().is_some_and(|r| r.status == KeyStatus::Revoked),
        RULE,
        "a stale write undid a revocation",
    );
    let ghost = record("ghost", "alice");
    let missing = store.replace(&ghost, ghost.clone()).await;
    ensure(
        matches!(&missing, Err(StoreError::NotFound(_))),
        RULE,
        format!("replace of a missing record got {missing:?}"),
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
            r.last_used_at == Some(used_at) && r.description.as_deref() == Some("kept")
        }),
        LAST_USE,
        format!("read back {now:?}"),
    );
}

async fn replace_holds_under_races<S: KeyStore>(store: Arc<S>) {
    const RULE: &str = "replace holds under concurrent writers";
    let v1 = record("a1", "alice");
    expect(store.insert(v1.clone()).await, RULE, "insert");
    let mut racers = JoinSet::new();
    for n in 0..RACERS {
        let (store, current) = (Arc::clone(&store), v1.clone());
        racers.spawn(async move {
            let mut new = current.clone();
            new.name = Some(format!("writer{n}"));
            store.replace(&current, new).await
        });
    }
    let mut won = 0;
    while let Some(outcome) = racers.join_next().await {
        match outcome.unwrap_or_else(|e| broken(RULE, format!("a writer panicked: {e}"))) {
            Ok(()) => won += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => broken(RULE, format!("a writer failed: {e}")),
        }
    }
    ensure(
        won == 1,
        RULE,
        format!("{RACERS} writers replaced one version: {won} succeeded"),
    );
}

async fn insert_many_all_or_nothing<S: KeyStore>(store: S) {
    const RULE: &str = "insert_many is all or nothing";
    expect(store.insert(record("b2", "bob")).await, RULE, "insert");
    let clash = store
        .insert_many(vec![
            record("a1", "alice"),
            record("b2", "alice"),
            record("c3", "alice"),
        ])
        .await;
    ensure(
        matches!(&clash, Err(StoreError::AlreadyExists(_))),
        RULE,
        format!("a batch with a taken id got {clash:?}"),
    );
    let twice = store
        .insert_many(vec![record("d4", "alice"), record("d4", "alice")])
        .await;
    ensure(
        matches!(&twice, Err(StoreError::AlreadyExists(_))),
        RULE,
        format!("a batch with an id given twice got {twice:?}"),
    );
    let all = expect(store.list(None).await, RULE, "list");
    ensure(
        ids(&all) == ["b2"],
        RULE,
        format!("refused batches left {:?}", ids(&all)),
    );
    expect(
        store
            .insert_many(vec![record("c3", "carol"), record("a1", "alice")])
            .await,
        RULE,
        "insert_many",
    );
    let all = expect(store.list(None).await, RULE, "list");
    ensure(
        ids(&all) == ["a1", "b2", "c3"],
        RULE,
        format!("a batch of a1, c3 left {:?}", ids(&all)),
    );
}

async fn delete_says_what_it_did<S: KeyStore>(store: S) {
    const RULE: &str = "delete removes the record and says whether there was one";
    let a = record("a1", "alice");
    expect(store.insert(a.clone()).await, RULE, "insert");
    ensure(
        expect(store.delete(&a.id).await, RULE, "delete"),
        RULE,
        "delete of a record said there was none",
    );
    ensure(
        !expect(store.delete(&a.id).await, RULE, "delete"),
        RULE,
        "a second delete said there was a record",
    );
    ensure(
        expect(store.get(&a.id).await, RULE, "get").is_none(),
        RULE,
        "the record is still there",
    );
}

async fn last_use_keeps_the_latest<S: KeyStore>(store: S) {
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
    let got = expect(store.get(&a.id).await, RULE, "get").map(|r| r.last_used_at);
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

async fn policies_round_trip<S: KeyStore>(store: S) {
    const RULE: &str = "a record's rate limit, quota and allowed IPs read back as written";
    let mut a = record("a1", "alice");
    a.rate_limit = Some(parse("100/1m"));
    a.quota = Some(parse("10000/1d"));
    a.allowed_ips = vec![parse("10.0.0.0/8"), parse("2001:db8::/32")];
    let mut b = record("b1", "bob");
    b.quota = Some(parse("30"));
    expect(store.insert(a.clone()).await, RULE, "insert");
    expect(
        store.insert_many(vec![b.clone()]).await,
        RULE,
        "insert_many",
    );
    for want in [a, b] {
        let got = expect(store.get(&want.id).await, RULE, "get");
        ensure(
            got.as_ref() == Some(&want),
            RULE,
            format!("wrote {want:?}, read {got:?}"),
        );
    }
}

fn parse<T: std::str::FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    match text.parse() {
        Ok(value) => value,
        Err(error) => broken(
            "the suite's own policies parse",
            format!("{text}: {error:?}"),
        ),
    }
}

async fn quota_is_never_oversold<S: KeyStore>(store: Arc<S>) {
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
    let left = expect(store.get(&a.id).await, BACK, "get").and_then(|r| r.quota_remaining);
    ensure(
        left == Some(100),
        BACK,
        format!("500 given back to a quota of 100 left {left:?}"),
    );
}

async fn quota_usage_is_no_edit<S: KeyStore>(store: S) {
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
        v2.quota_remaining == Some(6) && v2.name.as_deref() == Some("renamed"),
        RULE,
        format!("a rename after 4 uses left {:?} uses", v2.quota_remaining),
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
        v3.quota_remaining.is_none() && grant.granted == 50,
        RULE,
        format!(
            "a new quota of 50 granted {} ({:?} left)",
            grant.granted, v3.quota_remaining
        ),
    );
}

/// What a subscriber has been told.
#[derive(Default)]
struct Heard(Mutex<Vec<StoreChange>>);

impl ChangeListener for Heard {
    fn on_change(&self, change: &StoreChange) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(change.clone());
    }
}

impl Heard {
    fn take(&self) -> Vec<StoreChange> {
        std::mem::take(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn covers(changes: &[StoreChange], key_id: &KeyId) -> bool {
        changes.iter().any(|c| match c {
            StoreChange::Changed(x) => x == key_id,
            StoreChange::Reset => true,
        })
    }

    /// Waits up to [`FEED_BOUND`] for word of `key_id`.
    async fn expect_word_of(&self, key_id: &KeyId, after: &str) {
        let deadline = tokio::time::Instant::now() + FEED_BOUND;
        let mut heard = Vec::new();
        loop {
            heard.extend(self.take());
            if Self::covers(&heard, key_id) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                broken(
                    "every change reaches subscribers within a second",
                    format!("after {after}, subscribers heard {heard:?}, nothing of {key_id}"),
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn change_feed<S: KeyStore>(store: S) {
    const RULE: &str = "every change reaches subscribers within a second";
    let heard = Arc::new(Heard::default());
    let listener: Arc<dyn ChangeListener> = heard.clone();
    store.subscribe(Arc::downgrade(&listener));

    let a = record("a1", "alice");
    expect(store.insert(a.clone()).await, RULE, "insert");
    heard.expect_word_of(&a.id, "insert").await;
    let b = record("b2", "alice");
    expect(
        store.insert_limited(b.clone(), 5).await,
        RULE,
        "insert_limited",
    );
    heard.expect_word_of(&b.id, "insert_limited").await;
    let c = record("c3", "carol");
    expect(
        store.insert_many(vec![c.clone()]).await,
        RULE,
        "insert_many",
    );
    heard.expect_word_of(&c.id, "insert_many").await;
    let mut revoked = a.clone();
    revoked.status = KeyStatus::Revoked;
    expect(store.replace(&a, revoked).await, RULE, "replace");
    heard.expect_word_of(&a.id, "replace (a revocation)").await;
    expect(store.delete(&b.id).await, RULE, "delete");
    heard.expect_word_of(&b.id, "delete").await;

    const QUIET: &str = "a last use, a refused change or a read is not a change";
    tokio::time::sleep(Duration::from_millis(100)).await;
    heard.take();
    expect(
        store
            .record_last_used(vec![(c.id.clone(), record_time())])
            .await,
        QUIET,
        "record_last_used",
    );
    let taken = store.insert(record("c3", "mallory")).await;
    ensure(taken.is_err(), QUIET, "insert of a taken id succeeded");
    let stale = store.replace(&a, a.clone()).await;
    ensure(stale.is_err(), QUIET, "replace over a revocation succeeded");
    expect(store.query(&KeyQuery::new()).await, QUIET, "query");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let heard_since = heard.take();
    let named = |x: &KeyId| heard_since.contains(&StoreChange::Changed(x.clone()));
    ensure(
        !named(&a.id) && !named(&c.id),
        QUIET,
        format!("subscribers heard {heard_since:?}: caches would drop keys for nothing"),
    );
    drop(listener);
}

/// Every event in the outbox, claimed (and so not claimable again for an hour).
async fn drain<S: KeyStore>(store: &S, rule: &str) -> Vec<OutboxEntry> {
    expect(
        store.claim_events(10_000, Duration::from_secs(3600)).await,
        rule,
        "claim_events",
    )
}

async fn outbox_holds_each_changes_events<S: KeyStore>(store: S) {
    const RULE: &str = "each change writes its events to the outbox, usage and imports none";
    let a = record("a1", "alice");
    expect(store.insert(a.clone()).await, RULE, "insert");
    let b = record("b1", "bob");
    expect(
        store.insert_limited(b.clone(), 10).await,
        RULE,
        "insert_limited",
    );
    let mut off = a.clone();
    off.status = KeyStatus::Inactive;
    expect(store.replace(&a, off.clone()).await, RULE, "replace");
    let mut gone = off.clone();
    gone.status = KeyStatus::Revoked;
    gone.revocation = Some(Revocation::leaked_at("https://example.com/x.env"));
    expect(store.replace(&off, gone).await, RULE, "replace");
    expect(store.delete(&b.id).await, RULE, "delete");
    // Not changes: last use, quota, an import, a refused write.
    expect(
        store
            .record_last_used(vec![(a.id.clone(), record_time())])
            .await,
        RULE,
        "record_last_used",
    );
    expect(
        store.insert_many(vec![record("c1", "carol")]).await,
        RULE,
        "insert_many",
    );
    let _ = store.insert(record("a1", "mallory")).await;
    let entries = drain(&store, RULE).await;
    let seen: Vec<(EventKind, &str)> = entries
        .iter()
        .map(|e| (e.event.kind, e.event.key_id.as_str()))
        .collect();
    let want = [
        (EventKind::Issued, "a1"),
        (EventKind::Issued, "b1"),
        (EventKind::Deactivated, "a1"),
        (EventKind::Revoked, "a1"),
        (EventKind::Leaked, "a1"),
        (EventKind::Deleted, "b1"),
    ];
    ensure(
        seen == want,
        RULE,
        format!("outbox held {seen:?}, want {want:?}"),
    );
    let leaked = &entries[4].event;
    ensure(
        leaked.location.as_deref() == Some("https://example.com/x.env")
            && leaked.reason == Some(RevocationReason::Leaked)
            && leaked.principal == "alice",
        RULE,
        format!("the leak event lost its details: {leaked:?}"),
    );
    let mut ids: Vec<&str> = entries.iter().map(|e| e.event.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ensure(ids.len() == entries.len(), RULE, "two events share an id");
}

async fn outbox_claims_are_exclusive<S: KeyStore>(store: Arc<S>) {
    const RULE: &str =
        "an event is claimed by one sender at a time, retried when due, gone when delivered";
    for i in 0..20 {
        expect(
            store.insert(record(&format!("k{i:02}"), "alice")).await,
            RULE,
            "insert",
        );
    }
    // 8 senders at once, 5 events each at most: every event claimed exactly once.
    let claims = (0..8).map(|_| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.claim_events(5, Duration::from_secs(3600)).await })
    });
    let mut claimed: Vec<String> = Vec::new();
    for claim in claims {
        let entries = match claim.await {
            Ok(result) => expect(result, RULE, "claim_events"),
            Err(e) => broken(RULE, format!("a claim panicked: {e}")),
        };
        claimed.extend(entries.into_iter().map(|e| e.event.id));
    }
    let mut unique = claimed.clone();
    unique.sort_unstable();
    unique.dedup();
    ensure(
        claimed.len() == 20 && unique.len() == 20,
        RULE,
        format!(
            "20 events claimed as {} claims of {} events",
            claimed.len(),
            unique.len()
        ),
    );
    let more = expect(
        store.claim_events(100, Duration::from_secs(3600)).await,
        RULE,
        "claim_events",
    );
    ensure(
        more.is_empty(),
        RULE,
        "a claimed event was claimed again before its lease ended",
    );

    // Delivered: gone. To retry now: claimable again, with its attempt counted.
    expect(
        store.finish_event(&unique[0], Delivery::Delivered).await,
        RULE,
        "finish_event",
    );
    let retry_at = Timestamp::now() - SignedDuration::from_secs(1);
    expect(
        store
            .finish_event(&unique[1], Delivery::RetryAt(retry_at))
            .await,
        RULE,
        "finish_event",
    );
    let later = Timestamp::now() + SignedDuration::from_hours(1);
    expect(
        store
            .finish_event(&unique[2], Delivery::RetryAt(later))
            .await,
        RULE,
        "finish_event",
    );
    // Finishing an unknown or delivered event is no error.
    expect(
        store.finish_event("evt_unknown", Delivery::Delivered).await,
        RULE,
        "finish_event",
    );
    expect(
        store.finish_event(&unique[0], Delivery::Delivered).await,
        RULE,
        "finish_event",
    );
    let again = expect(
        store.claim_events(100, Duration::from_millis(1)).await,
        RULE,
        "claim_events",
    );
    let again: Vec<(&str, u32)> = again
        .iter()
        .map(|e| (e.event.id.as_str(), e.attempts))
        .collect();
    ensure(
        again == [(unique[1].as_str(), 2)],
        RULE,
        format!("after delivered / retry now / retry in an hour, claimed {again:?}"),
    );
    // A lease that ran out (a sender that died): claimable again.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let taken_over = expect(
        store.claim_events(100, Duration::from_secs(3600)).await,
        RULE,
        "claim_events",
    );
    ensure(
        taken_over.len() == 1 && taken_over[0].event.id == unique[1],
        RULE,
        format!("an expired claim was not taken over: {taken_over:?}"),
    );
}

async fn added_events_are_added_once<S: KeyStore>(store: Arc<S>) {
    const RULE: &str = "add_events adds each id once, whoever adds it at the same moment";
    let a = record("a1", "alice");
    let events: Vec<KeyEvent> = (0..10)
        .map(|i| {
            let mut event = KeyEvent::new(EventKind::Expiring, &a);
            event.id = format!("evt_expiring_a1_{i}");
            event
        })
        .collect();
    let adders = (0..8).map(|_| {
        let store = Arc::clone(&store);
        let events = events.clone();
        tokio::spawn(async move { store.add_events(events).await })
    });
    let mut added = 0;
    for adder in adders {
        added += match adder.await {
            Ok(result) => expect(result, RULE, "add_events"),
            Err(e) => broken(RULE, format!("an add panicked: {e}")),
        };
    }
    ensure(
        added == 10,
        RULE,
        format!("8 adders of the same 10 events added {added}"),
    );
    let claimed = drain(&*store, RULE).await;
    ensure(
        claimed.len() == 10,
        RULE,
        format!("the outbox holds {}", claimed.len()),
    );
    for entry in &claimed {
        expect(
            store
                .finish_event(&entry.event.id, Delivery::Delivered)
                .await,
            RULE,
            "finish_event",
        );
    }
    let again = expect(store.add_events(events).await, RULE, "add_events");
    ensure(
        again == 0,
        RULE,
        format!("{again} delivered events were added again"),
    );
}

async fn list_expiring_reads_what_expires<S: KeyStore>(store: S) {
    const RULE: &str = "list_expiring returns the records expiring by then, revoked ones aside";
    let now = record_time();
    let at = |hours: i64| now + SignedDuration::from_hours(hours);
    let mut soon = record("b-soon", "alice");
    soon.expires_at = Some(at(1));
    let mut gone = record("a-gone", "alice");
    gone.expires_at = Some(at(-1));
    let mut later = record("c-later", "alice");
    later.expires_at = Some(at(48));
    let never = record("d-never", "alice");
    let mut revoked = record("e-revoked", "alice");
    revoked.expires_at = Some(at(1));
    revoked.status = KeyStatus::Revoked;
    for r in [&soon, &gone, &later, &never, &revoked] {
        expect(store.insert(r.clone()).await, RULE, "insert");
    }
    let listed = expect(store.list_expiring(at(24)).await, RULE, "list_expiring");
    ensure(
        ids(&listed) == ["a-gone", "b-soon"],
        RULE,
        format!("expiring within a day: {:?}", ids(&listed)),
    );
}

async fn quota_running_out_is_one_event<S: KeyStore>(store: S) {
    const RULE: &str =
        "a quota running out adds one key.quota_exhausted a period, in the same write";
    let mut a = record("a1", "alice");
    a.name = Some("metered".into());
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
    let event = &events[0].event;
    ensure(
        event.principal == "alice" && event.name.as_deref() == Some("metered"),
        RULE,
        format!("the event lost its details: {event:?}"),
    );
}
