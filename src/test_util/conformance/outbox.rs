//! The outbox capability's rules: [`OutboxStore`].

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::{broken, ensure, expect, id, record, suite};
use crate::events::{AuditEntry, AuditQuery, Delivery, EventKind, KeyEvent, OutboxEntry};
use crate::record::{KeyStatus, Revocation, RevocationReason};
use crate::store::OutboxStore;

suite! {
    /// Checks a store's outbox capability ([`OutboxStore`]) against every rule of its contract.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")]
    /// # async fn main() {
    /// use tower_apikey::MemoryStore;
    /// tower_apikey::test_util::check_outbox_store(|| async {
    ///     let store = MemoryStore::new();
    ///     (store.clone(), store)
    /// })
    /// .await;
    /// # }
    /// ```
    pub async fn check_outbox_store<S: [OutboxStore]> {
        outbox_holds_each_changes_events: "each change writes its events (`KeyEvent::for_change`) in order, with their details and distinct ids; an import (`insert_many`) or a refused write writes none",
        outbox_claims_are_exclusive: "an event is claimed by one sender at a time (8 claiming at once take 20 events exactly once), retried when due with its attempt counted, gone once delivered, claimable again when its lease lapses; finishing an unknown or delivered event is no error",
        added_events_are_added_once: "`add_events` adds each id once, whoever adds it at the same moment (8 adders of 10 events add 10, and the audit trail holds each once), and never again once delivered",
        audit_trail_keeps_every_event: "`read_events` reads every event written, delivered or not, from either handle: newest first, each with its actor, reason and location; by key, principal, kind, actor and time; page by page through `before` with nothing skipped or repeated",
    }
}

async fn outbox_holds_each_changes_events<S: OutboxStore>((store, _): (S, S)) {
    const RULE: &str =
        "each change writes its events to the outbox, an import or a refused write none";
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
    // Not changes: an import, a refused write.
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

async fn outbox_claims_are_exclusive<S: OutboxStore>((store, _): (S, S)) {
    let store = Arc::new(store);
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

async fn added_events_are_added_once<S: OutboxStore>((store, _): (S, S)) {
    let store = Arc::new(store);
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
    let trail = expect(
        store.read_events(&AuditQuery::new()).await,
        RULE,
        "read_events",
    );
    ensure(
        trail.len() == 10,
        RULE,
        format!("the audit trail holds {} of 10 events", trail.len()),
    );
}

async fn audit_trail_keeps_every_event<S: OutboxStore>((store, other): (S, S)) {
    const RULE: &str = "the audit trail holds every event, newest first, filtered and paged";
    let since = Timestamp::now() - SignedDuration::from_secs(1);
    let mut a = record("a1", "alice");
    a.created_by = Some("cli:root".into());
    expect(store.insert(a.clone()).await, RULE, "insert");
    let mut b = record("b1", "bob");
    b.created_by = Some("admin:ops/k1".into());
    expect(store.insert(b.clone()).await, RULE, "insert");
    let mut gone = a.clone();
    gone.status = KeyStatus::Revoked;
    gone.revocation = Some(Revocation::leaked_at("https://example.com/x.env"));
    gone.updated_at = Some(Timestamp::now());
    gone.updated_by = Some("github-secret-scanning".into());
    expect(store.replace(&a, gone).await, RULE, "replace");
    let mut stamped = b.clone();
    stamped.updated_at = Some(Timestamp::now());
    stamped.updated_by = Some("cli:root".into());
    expect(store.replace(&b, stamped).await, RULE, "replace");
    expect(other.delete(&b.id).await, RULE, "delete");
    // Delivered: gone from the outbox, still in the trail.
    for entry in drain(&store, RULE).await {
        expect(
            store
                .finish_event(&entry.event.id, Delivery::Delivered)
                .await,
            RULE,
            "finish_event",
        );
    }

    let read = |query: AuditQuery| {
        let store = &store;
        async move { expect(store.read_events(&query).await, RULE, "read_events") }
    };
    let kinds = |entries: &[AuditEntry]| -> Vec<(EventKind, String, Option<String>)> {
        entries
            .iter()
            .map(|e| {
                let event = &e.event;
                (event.kind, event.key_id.to_string(), event.actor.clone())
            })
            .collect()
    };
    let all = read(AuditQuery::new()).await;
    let actor = |a: &str| Some(a.to_owned());
    let want = vec![
        (EventKind::Deleted, "b1".to_owned(), actor("cli:root")),
        (
            EventKind::Leaked,
            "a1".to_owned(),
            actor("github-secret-scanning"),
        ),
        (
            EventKind::Revoked,
            "a1".to_owned(),
            actor("github-secret-scanning"),
        ),
        (EventKind::Issued, "b1".to_owned(), actor("admin:ops/k1")),
        (EventKind::Issued, "a1".to_owned(), actor("cli:root")),
    ];
    ensure(
        kinds(&all) == want,
        RULE,
        format!("the trail read {:?}, want {want:?}", kinds(&all)),
    );
    ensure(
        all.windows(2).all(|w| w[0].seq > w[1].seq),
        RULE,
        "the trail's places do not fall from newest to oldest",
    );
    let leaked = &all[1].event;
    ensure(
        leaked.reason == Some(RevocationReason::Leaked)
            && leaked.location.as_deref() == Some("https://example.com/x.env"),
        RULE,
        format!("the leak lost its details in the trail: {leaked:?}"),
    );
    let from_other = expect(
        other.read_events(&AuditQuery::new()).await,
        RULE,
        "read_events",
    );
    ensure(
        from_other == all,
        RULE,
        "the other handle reads another trail",
    );

    // Filters, one at a time.
    let filtered = [
        (AuditQuery::new().key_id(id("a1")), vec![1, 2, 4]),
        (AuditQuery::new().principal("bob"), vec![0, 3]),
        (AuditQuery::new().kind(EventKind::Issued), vec![3, 4]),
        (AuditQuery::new().actor("cli:root"), vec![0, 4]),
        (AuditQuery::new().since(since), vec![0, 1, 2, 3, 4]),
        (
            AuditQuery::new().since(Timestamp::now() + SignedDuration::from_hours(1)),
            vec![],
        ),
        (
            AuditQuery::new().principal("bob").kind(EventKind::Deleted),
            vec![0],
        ),
    ];
    for (query, want) in filtered {
        let got = read(query.clone()).await;
        let want: Vec<AuditEntry> = want.iter().map(|&i| all[i].clone()).collect();
        ensure(
            got == want,
            RULE,
            format!("{query:?} read {:?}, want {:?}", kinds(&got), kinds(&want)),
        );
    }

    // Pages of two: every event once, in order.
    let mut paged: Vec<AuditEntry> = Vec::new();
    let mut before = None;
    loop {
        let mut query = AuditQuery::new().limit(2);
        if let Some(seq) = before {
            query = query.before(seq);
        }
        let page = read(query).await;
        ensure(
            page.len() <= 2,
            RULE,
            format!("a page of 2 held {}", page.len()),
        );
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        paged.extend(page);
        if paged.len() > all.len() {
            break;
        }
    }
    ensure(
        paged == all,
        RULE,
        format!("pages of two read {:?}", kinds(&paged)),
    );
}

/// Every event in the outbox, claimed (and so not claimable again for an hour).
pub(super) async fn drain<S: OutboxStore>(store: &S, rule: &str) -> Vec<OutboxEntry> {
    expect(
        store.claim_events(10_000, Duration::from_secs(3600)).await,
        rule,
        "claim_events",
    )
}
