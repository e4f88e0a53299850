//! The records capability's listing rules: what `KeyStore::query` returns, in what order,
//! page by page.

use jiff::SignedDuration;

use super::{ensure, expect, ids, record};
use crate::key::KeyId;
use crate::record::{record_time, KeyStatus};
use crate::store::{KeyQuery, KeyStore};

pub(super) async fn listing_order<S: KeyStore>((store, _): (S, S)) {
    const RULE: &str = "query lists in id order: every record, one principal's, the legacy ones";
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
    let all = expect(store.query(&KeyQuery::new()).await, RULE, "query");
    ensure(
        ids(&all) == ["a1", "b2", "c3", "d4"],
        RULE,
        format!("every record gave {:?}", ids(&all)),
    );
    let alice = expect(
        store.query(&KeyQuery::new().principal("alice")).await,
        RULE,
        "query",
    );
    ensure(
        ids(&alice) == ["b2", "c3"],
        RULE,
        format!("alice's gave {:?}", ids(&alice)),
    );
    let legacy = expect(store.query(&KeyQuery::new().legacy()).await, RULE, "query");
    ensure(
        ids(&legacy) == ["a1", "b2"],
        RULE,
        format!("the legacy ones gave {:?}", ids(&legacy)),
    );
}

pub(super) async fn paging<S: KeyStore>((store, _): (S, S)) {
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

    // Every filter, whole and page by page, gives what `KeyQuery::matches` picks from all.
    let all = expect(store.query(&KeyQuery::new()).await, RULE, "query");
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

pub(super) async fn expiring_by_lists_what_expires<S: KeyStore>((store, _): (S, S)) {
    const RULE: &str = "a query for what expires by a time lists those records, revoked ones aside";
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
    let listed = expect(
        store.query(&KeyQuery::new().expiring_by(at(24))).await,
        RULE,
        "query",
    );
    ensure(
        ids(&listed) == ["a-gone", "b-soon"],
        RULE,
        format!("expiring within a day: {:?}", ids(&listed)),
    );
}
