//! The session capability's rules: [`SessionStore`].

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use super::{broken, ensure, expect, id, suite};
use crate::session::{Session, SessionId};
use crate::store::SessionStore;

suite! {
    /// Checks a store's session capability ([`SessionStore`]) against every rule of its
    /// contract.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")]
    /// # async fn main() {
    /// use tower_apikey::MemoryStore;
    /// tower_apikey::test_util::check_session_store(|| async {
    ///     let store = MemoryStore::new();
    ///     (store.clone(), store)
    /// })
    /// .await;
    /// # }
    /// ```
    pub async fn check_session_store<S: [SessionStore]> {
        sessions_are_shared_by_every_handle: "a session inserted through one handle is read whole through the other, by its digest only; a touch moves `seen_at` forward, never back; a deletion is seen by both at once and says whether there was one",
        sessions_are_pruned_when_ended: "`prune_sessions` removes those last seen or signed in before its bounds, at most `limit` a call, and keeps the rest",
        concurrent_sign_ins_are_all_kept: "16 sessions inserted at once from both handles are all kept, and each deletion removes only its own",
    }
}

fn at(text: &str) -> Timestamp {
    text.parse()
        .unwrap_or_else(|e| broken("the suite's own times parse", e))
}

fn new_session(principal: &str, now: Timestamp) -> (SessionId, Session) {
    let sid = SessionId::generate().unwrap_or_else(|e| broken("test setup", e));
    let session =
        Session::new(&sid, id("k1"), principal, now).unwrap_or_else(|e| broken("test setup", e));
    (sid, session)
}

async fn sessions_are_shared_by_every_handle<S: SessionStore>((one, two): (S, S)) {
    const RULE: &str = "a session is shared by every handle, found by its digest";
    let t0 = at("2026-03-01T10:00:00Z");
    let (sid, session) = new_session("ops", t0);
    let digest = sid.digest();
    ensure(
        expect(two.session(&digest).await, RULE, "session").is_none(),
        RULE,
        "a session before it was inserted",
    );
    expect(
        one.insert_session(session.clone()).await,
        RULE,
        "insert_session",
    );
    let read = expect(two.session(&digest).await, RULE, "session");
    ensure(
        read.as_ref() == Some(&session),
        RULE,
        format!("read back {read:?}, wrote {session:?}"),
    );
    let later = t0 + SignedDuration::from_mins(5);
    ensure(
        expect(two.touch_session(&digest, later).await, RULE, "touch"),
        RULE,
        "touching a session there said it was not",
    );
    let _ = expect(one.touch_session(&digest, t0).await, RULE, "touch");
    let seen = expect(one.session(&digest).await, RULE, "session").map(|s| s.seen_at);
    ensure(
        seen == Some(later),
        RULE,
        format!("seen_at {seen:?} after touches at +5 min then +0: a touch went back"),
    );
    let (other, _) = new_session("ops", t0);
    ensure(
        !expect(
            one.touch_session(&other.digest(), later).await,
            RULE,
            "touch",
        ),
        RULE,
        "touching a session never inserted said it was there",
    );
    ensure(
        expect(two.delete_session(&digest).await, RULE, "delete"),
        RULE,
        "deleting a session there said it was not",
    );
    for handle in [&one, &two] {
        ensure(
            expect(handle.session(&digest).await, RULE, "session").is_none(),
            RULE,
            "a deleted session is still read",
        );
    }
    ensure(
        !expect(one.delete_session(&digest).await, RULE, "delete"),
        RULE,
        "deleting it again said it was there",
    );
}

async fn sessions_are_pruned_when_ended<S: SessionStore>((one, two): (S, S)) {
    const RULE: &str = "prune_sessions removes ended sessions, bounded";
    let t0 = at("2026-03-01T10:00:00Z");
    // Idle: last seen at t0. Old: signed in long before, seen just now. Live: both recent.
    let mut idle = Vec::new();
    for _ in 0..3 {
        let (sid, session) = new_session("idle", t0);
        expect(one.insert_session(session).await, RULE, "insert");
        idle.push(sid.digest());
    }
    let (old_id, mut old) = new_session("old", t0 - SignedDuration::from_hours(13));
    old.seen_at = t0 + SignedDuration::from_mins(50);
    expect(one.insert_session(old).await, RULE, "insert");
    let (live_id, mut live) = new_session("live", t0 + SignedDuration::from_mins(40));
    live.seen_at = t0 + SignedDuration::from_mins(50);
    expect(one.insert_session(live).await, RULE, "insert");

    // At t0 + 1 h: idle past 30 min means seen before t0 + 30 min; old past 12 h means
    // created before t0 - 11 h.
    let seen_before = t0 + SignedDuration::from_mins(30);
    let created_before = t0 - SignedDuration::from_hours(11);
    let first = expect(
        two.prune_sessions(seen_before, created_before, 2).await,
        RULE,
        "prune",
    );
    ensure(first == 2, RULE, format!("limit 2 pruned {first}"));
    let rest = expect(
        two.prune_sessions(seen_before, created_before, 100).await,
        RULE,
        "prune",
    );
    ensure(
        rest == 2,
        RULE,
        format!("then pruned {rest}, not the other 2 ended"),
    );
    for digest in idle.iter().chain([&old_id.digest()]) {
        ensure(
            expect(one.session(digest).await, RULE, "session").is_none(),
            RULE,
            "an ended session was kept",
        );
    }
    ensure(
        expect(one.session(&live_id.digest()).await, RULE, "session").is_some(),
        RULE,
        "a live session was pruned",
    );
}

async fn concurrent_sign_ins_are_all_kept<S: SessionStore>((one, two): (S, S)) {
    const RULE: &str = "concurrent sign-ins are all kept";
    let (one, two) = (Arc::new(one), Arc::new(two));
    let t0 = at("2026-03-01T10:00:00Z");
    let mut tasks = Vec::new();
    for i in 0..super::RACERS {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move {
            let (sid, session) = new_session(&format!("p{i}"), t0);
            store.insert_session(session).await.map(|()| sid.digest())
        }));
    }
    let mut digests = Vec::new();
    for task in tasks {
        let joined = task.await.unwrap_or_else(|e| broken(RULE, e));
        digests.push(expect(joined, RULE, "insert"));
    }
    for digest in &digests {
        ensure(
            expect(one.session(digest).await, RULE, "session").is_some(),
            RULE,
            "a session inserted at the same moment as others was lost",
        );
    }
    let mut tasks = Vec::new();
    for (i, digest) in digests.iter().take(8).cloned().enumerate() {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(
            async move { store.delete_session(&digest).await },
        ));
    }
    for task in tasks {
        let joined = task.await.unwrap_or_else(|e| broken(RULE, e));
        ensure(
            expect(joined, RULE, "delete"),
            RULE,
            "a deletion found nothing",
        );
    }
    for (i, digest) in digests.iter().enumerate() {
        let there = expect(two.session(digest).await, RULE, "session").is_some();
        ensure(
            there == (i >= 8),
            RULE,
            format!("session {i} there: {there} after deleting the first 8"),
        );
    }
}
