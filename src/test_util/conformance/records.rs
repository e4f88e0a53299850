//! The records capability's rules: [`KeyStore`].

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use tokio::task::JoinSet;

use super::{broken, ensure, expect, id, ids, parse, record, suite, Heard, RACERS};

// Times to the microsecond, as stores keep them (PostgreSQL does).
use crate::record::{record_time, KeyStatus, Revocation, RevocationReason, Usage};
use crate::store::{ChangeListener, KeyQuery, KeyStore, StoreError};

suite! {
    /// Checks a store's records capability ([`KeyStore`]) against every rule of its contract.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")]
    /// # async fn main() {
    /// use tower_apikey::MemoryStore;
    /// tower_apikey::test_util::check_key_store(|| async {
    ///     let store = MemoryStore::new();
    ///     (store.clone(), store)
    /// })
    /// .await;
    /// # }
    /// ```
    pub async fn check_key_store<S: [KeyStore]> {
        insert_and_get: "`get` returns what `insert` stored, and `None` for an unknown id; `insert` of a taken id is `AlreadyExists` and changes nothing; a revocation's reason and location are kept",
        super::listing::listing_order: "`query` lists in id order: every record, one principal's, the legacy ones",
        super::listing::paging: "`query` pages and filters: `after`, `limit`, `principal`, `status`, `search` (id, principal, name, description, ignoring case, never a pattern); walking pages visits every match once, in id order, as `KeyQuery::matches` picks them",
        super::listing::expiring_by_lists_what_expires: "`query` with `expiring_by` lists the records expiring by then, revoked ones aside",
        limit_counts_live_keys: "`insert_limited` counts live keys: inactive ones count, revoked and expired ones do not; a taken id is `AlreadyExists`",
        limit_holds_under_races: "`insert_limited` holds under concurrent writers: of 16 racing for one place, one gets it",
        replace_is_compare_and_swap: "`replace` is compare-and-swap: a stale `current` is `Conflict` (a revocation is never undone), a missing one `NotFound`; usage is no part of the compare, and the stored usage is kept",
        replace_holds_under_races: "`replace` holds under concurrent writers: of 16 that read the same version, one wins",
        insert_many_all_or_nothing: "`insert_many` is all or nothing: a taken id, or one given twice, adds nothing",
        delete_says_what_it_did: "`delete` removes the record and says whether there was one",
        policies_round_trip: "a record's rate limit, quota and allowed IPs read back as written, by `insert` and `insert_many`",
        change_feed: "every change (`insert`, `insert_limited`, `insert_many`, `replace`, `delete`) reaches subscribers within a second, as the id changed or a reset; a refused change or a read is not a change",
        feed_reaches_other_handles: "a change through one handle reaches another handle's subscribers within a second, and the other handle reads it",
    }
}

async fn insert_and_get<S: KeyStore>((store, _): (S, S)) {
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
    a.usage.last_used_at = Some(a.created_at + SignedDuration::from_secs(2));
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

async fn limit_counts_live_keys<S: KeyStore>((store, _): (S, S)) {
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

async fn limit_holds_under_races<S: KeyStore>((store, _): (S, S)) {
    let store = Arc::new(store);
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
    let live = expect(
        store.query(&KeyQuery::new().principal("alice")).await,
        RULE,
        "query",
    )
    .len();
    ensure(
        admitted == 1 && live == 2,
        RULE,
        format!("{RACERS} writers raced for the one place left under a limit of 2: {admitted} got in, alice now holds {live}"),
    );
}

async fn replace_is_compare_and_swap<S: KeyStore>((store, _): (S, S)) {
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

    const USAGE: &str = "replace ignores usage in its compare, and keeps the stored one";
    // A version read before the key was used, replaced after: no conflict, the use kept.
    let used_at = record_time();
    let mut used = record("u1", "alice");
    used.usage.last_used_at = Some(used_at);
    used.usage.quota_remaining = Some(3);
    used.quota = Some(parse("10"));
    expect(store.insert(used.clone()).await, USAGE, "insert");
    let mut read_before = used.clone();
    read_before.usage = Usage::default();
    let mut described = read_before.clone();
    described.description = Some("kept".into());
    expect(
        store.replace(&read_before, described).await,
        USAGE,
        "replace of a version read before its last use",
    );
    let now = expect(store.get(&used.id).await, USAGE, "get");
    ensure(
        now.as_ref().is_some_and(|r| {
            r.usage.last_used_at == Some(used_at)
                && r.usage.quota_remaining == Some(3)
                && r.description.as_deref() == Some("kept")
        }),
        USAGE,
        format!("read back {now:?}"),
    );
}

async fn replace_holds_under_races<S: KeyStore>((store, _): (S, S)) {
    let store = Arc::new(store);
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

async fn insert_many_all_or_nothing<S: KeyStore>((store, _): (S, S)) {
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
    let all = expect(store.query(&KeyQuery::new()).await, RULE, "query");
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
    let all = expect(store.query(&KeyQuery::new()).await, RULE, "query");
    ensure(
        ids(&all) == ["a1", "b2", "c3"],
        RULE,
        format!("a batch of a1, c3 left {:?}", ids(&all)),
    );
}

async fn delete_says_what_it_did<S: KeyStore>((store, _): (S, S)) {
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

async fn policies_round_trip<S: KeyStore>((store, _): (S, S)) {
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

async fn change_feed<S: KeyStore>((store, _): (S, S)) {
    const RULE: &str = "every change reaches subscribers within a second";
    let heard = Arc::new(Heard::default());
    let listener: Arc<dyn ChangeListener> = heard.clone();
    store.subscribe(Arc::downgrade(&listener));

    let a = record("a1", "alice");
    expect(store.insert(a.clone()).await, RULE, "insert");
    heard.expect_word_of(&a.id, RULE, "insert").await;
    let b = record("b2", "alice");
    expect(
        store.insert_limited(b.clone(), 5).await,
        RULE,
        "insert_limited",
    );
    heard.expect_word_of(&b.id, RULE, "insert_limited").await;
    let c = record("c3", "carol");
    expect(
        store.insert_many(vec![c.clone()]).await,
        RULE,
        "insert_many",
    );
    heard.expect_word_of(&c.id, RULE, "insert_many").await;
    let mut revoked = a.clone();
    revoked.status = KeyStatus::Revoked;
    expect(store.replace(&a, revoked).await, RULE, "replace");
    heard
        .expect_word_of(&a.id, RULE, "replace (a revocation)")
        .await;
    expect(store.delete(&b.id).await, RULE, "delete");
    heard.expect_word_of(&b.id, RULE, "delete").await;

    const QUIET: &str = "a refused change or a read is not a change";
    tokio::time::sleep(Duration::from_millis(100)).await;
    heard.take();
    let taken = store.insert(record("c3", "mallory")).await;
    ensure(taken.is_err(), QUIET, "insert of a taken id succeeded");
    let stale = store.replace(&a, a.clone()).await;
    ensure(stale.is_err(), QUIET, "replace over a revocation succeeded");
    expect(store.query(&KeyQuery::new()).await, QUIET, "query");
    let named = heard.named_any(&[&a.id, &c.id]).await;
    ensure(
        named.is_empty(),
        QUIET,
        format!("subscribers heard {named:?}: caches would drop keys for nothing"),
    );
    drop(listener);
}

/// A change made through one handle reaches the other's subscribers: what every server of a
/// fleet relies on to drop a revoked key.
async fn feed_reaches_other_handles<S: KeyStore>((one, other): (S, S)) {
    const RULE: &str =
        "a change through one handle reaches another handle's subscribers within a second";
    let heard = Arc::new(Heard::default());
    let listener: Arc<dyn ChangeListener> = heard.clone();
    other.subscribe(Arc::downgrade(&listener));
    let a = record("a1", "alice");
    expect(one.insert(a.clone()).await, RULE, "insert");
    heard
        .expect_word_of(&a.id, RULE, "an insert on the other handle")
        .await;
    let mut revoked = a.clone();
    revoked.status = KeyStatus::Revoked;
    expect(one.replace(&a, revoked).await, RULE, "replace");
    heard
        .expect_word_of(&a.id, RULE, "a revocation on the other handle")
        .await;
    let seen = expect(other.get(&a.id).await, RULE, "get");
    ensure(
        seen.is_some_and(|r| r.status == KeyStatus::Revoked),
        RULE,
        "the other handle read the record as it was before the revocation",
    );
    drop(listener);
}
