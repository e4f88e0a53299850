//! Callers that vanish: every cold-path entry is dropped at each of its await points in turn
//! (as hyper drops a request's future when the client disconnects), and every count, slot
//! and queue must come back to idle, with the next request served normally.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::{drop_after_waits, issue, FlakyStore};
use tower_apikey::hash::HashParams;
use tower_apikey::key::PresentedKey;
use tower_apikey::{Identity, KeyManager, KeyStore, ValidationError, Validator};

fn presented(key: &str) -> PresentedKey {
    PresentedKey::new(key.as_bytes()).unwrap()
}

/// An opaque key as Maximo hands them out.
fn opaque_key(i: usize) -> String {
    format!(
        "LEGACY{i:04}KEY{:016X}",
        (i as u64 + 7).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}

/// A store (every call an await point) with one key in this crate's format and `legacy`
/// imported Maximo records; the key and the legacy keys.
async fn store_with(legacy: usize, iterations: u32) -> (FlakyStore, String, Vec<String>) {
    let store = FlakyStore::default();
    let (record, key) = issue("alice");
    store.inner.insert(record).await.unwrap();
    let keys: Vec<String> = (0..legacy).map(opaque_key).collect();
    let rows = common::maximo_rows(&keys, iterations);
    if legacy > 0 {
        KeyManager::new(store.inner.clone())
            .import_maximo(rows)
            .await
            .unwrap();
    }
    store.set_yielding(true);
    (store, key.expose().to_owned(), keys)
}

fn validator(store: &FlakyStore) -> Validator {
    Validator::builder(store.clone())
        // Normal priority: what is tested is cancellation, and other tests running beside
        // these must not starve the derivations into a timeout.
        .low_priority_derivations(false)
        .max_concurrent_derivations(std::num::NonZeroUsize::new(1).unwrap())
        .max_queued_derivations(2)
        .legacy_scan_rate(std::num::NonZeroU32::new(1_000_000).unwrap())
        .last_used_flush_interval(None)
        .build()
}

/// Waits until no cold work runs or waits; fails the test after 30 s (a leak never settles;
/// a loaded machine may take a while).
async fn settle(validator: &Validator, what: &str) {
    let start = Instant::now();
    while !validator.stats().is_idle() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: cold work not back to idle: {:?}",
            validator.stats()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A fresh fixture for each attempt: the validator, the request to drop, and a check that
/// the request after it is served normally.
struct Attempt<F> {
    validator: Validator,
    store: FlakyStore,
    request: F,
    next: PresentedKey,
}

/// An attempt that validates `key` on a fresh validator over `store`, then `next`.
fn attempt(
    store: FlakyStore,
    validator: Validator,
    key: &str,
    next: &str,
) -> Attempt<impl Future<Output = Result<Identity, ValidationError>>> {
    let request = {
        let validator = validator.clone();
        let key = presented(key);
        async move { validator.validate(&key).await }
    };
    Attempt {
        validator,
        store,
        request,
        next: presented(next),
    }
}

/// Drops the request made by `make` after 0, 1, 2, … waits until one attempt finishes
/// before its drop point; after each drop, the validator must settle and serve `next`.
/// Returns the number of await points seen.
async fn drop_at_each_await_point<M, Fut, F>(what: &str, make: M) -> usize
where
    M: Fn() -> Fut,
    Fut: Future<Output = Attempt<F>>,
    F: Future<Output = Result<Identity, ValidationError>>,
{
    for waits in 0..64 {
        let attempt = make().await;
        let finished = drop_after_waits(attempt.request, waits).await;
        settle(&attempt.validator, what).await;
        attempt.store.set_down(false);
        let next = attempt.validator.validate(&attempt.next).await;
        assert!(
            next.is_ok(),
            "{what}, dropped after {waits} waits: the next request got {next:?}"
        );
        settle(&attempt.validator, what).await;
        if finished.is_some() {
            assert!(waits > 0, "{what}: no await point at all");
            return waits;
        }
    }
    panic!("{what}: still waiting after 64 await points");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cold_path_entry_can_be_dropped_at_every_await_point() {
    // A valid key: store read, derivation.
    let points = drop_at_each_await_point("valid key", || async {
        let (store, key, _) = store_with(0, 1_000).await;
        let validator = validator(&store);
        attempt(store, validator, &key, &key)
    })
    .await;
    // The store read always waits; the derivation too unless it is done first.
    assert!(points >= 1, "store read: {points}");

    // A wrong secret for a real id.
    drop_at_each_await_point("wrong secret", || async {
        let (store, key, _) = store_with(0, 1_000).await;
        let validator = validator(&store);
        let id = presented(&key);
        let id = tower_apikey::key::KeyFormat::default()
            .parse(&id)
            .unwrap()
            .id()
            .to_owned();
        let wrong = tower_apikey::key::KeyFormat::default()
            .generate_for(&tower_apikey::key::KeyId::new(&id).unwrap())
            .unwrap();
        let wrong = wrong.expose().to_owned();
        attempt(store, validator, &wrong, &key)
    })
    .await;

    // An id no record has.
    drop_at_each_await_point("unknown id", || async {
        let (store, key, _) = store_with(0, 1_000).await;
        let validator = validator(&store);
        let (_, other) = issue("nobody");
        attempt(store, validator, other.expose(), &key)
    })
    .await;

    // The store is down: 503, and the next request (store back) is served.
    drop_at_each_await_point("store down", || async {
        let (store, key, _) = store_with(0, 1_000).await;
        let validator = validator(&store);
        store.set_down(true);
        attempt(store, validator, &key, &key)
    })
    .await;

    // A legacy key's first use: index read, scan slot, scan, digest write.
    let points = drop_at_each_await_point("legacy first use", || async {
        let (store, _, legacy) = store_with(40, 20).await;
        let validator = validator(&store);
        attempt(store, validator, &legacy[30], &legacy[30])
    })
    .await;
    // The index read and the digest write always wait (every store call yields); the scan
    // waits too unless it is done before the future is polled again.
    assert!(points >= 2, "index read, digest write: {points}");

    // An opaque key that matches nothing: a whole scan.
    drop_at_each_await_point("legacy miss", || async {
        let (store, _, legacy) = store_with(40, 20).await;
        let validator = validator(&store);
        attempt(store, validator, "NOT-A-KEY-OF-ANYONE-0000", &legacy[3])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_queued_behind_a_busy_slot_can_be_dropped_at_every_await_point() {
    drop_at_each_await_point("queued for a derivation slot", || async {
        let (store, key, _) = store_with(0, 1_000).await;
        // A key whose derivation holds the only slot for a while.
        let params = HashParams::default().with_iterations(100_000).unwrap();
        let (slow, slow_key) = tower_apikey::KeyRecord::generate(
            "slow",
            &tower_apikey::key::KeyFormat::default(),
            &params,
        )
        .unwrap();
        store.inner.insert(slow).await.unwrap();
        let validator = validator(&store);
        let busy = validator.clone();
        tokio::spawn(async move { busy.validate(&presented(slow_key.expose())).await });
        while validator.stats().derivations_running == 0 {
            tokio::task::yield_now().await;
        }
        attempt(store, validator, &key, &key)
    })
    .await;
}

/// Finding: a legacy scan whose caller left ran to its end, and the next caller queued
/// another full scan behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_legacy_scan_stops_and_frees_the_slot() {
    let (store, _, legacy) = store_with(400, 20).await;
    let validator = Validator::builder(store.clone())
        .legacy_scan_rate(std::num::NonZeroU32::new(200).unwrap()) // 2 s for the whole scan
        .low_priority_derivations(false)
        .last_used_flush_interval(None)
        .build();
    let miss = presented("NOT-A-KEY-OF-ANYONE-0000");
    let scan = validator.validate(&miss);
    let watch = async {
        while validator.stats().derivations < 5 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        _ = scan => panic!("the scan ended before it was dropped"),
        _ = watch => {}
    }
    // Dropped. The scan sees it between two derivations and stops.
    let dropped_at = validator.stats().derivations;
    settle(&validator, "abandoned scan").await;
    let stopped_at = validator.stats().derivations;
    assert!(
        stopped_at <= dropped_at + 3,
        "the scan went on: {dropped_at} derivations when dropped, {stopped_at} when it stopped"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(validator.stats().derivations, stopped_at);
    // The slot is free at once for a real key.
    let identity = tokio::time::timeout(
        Duration::from_secs(5),
        validator.validate(&presented(&legacy[0])),
    )
    .await
    .expect("a legacy key is answered")
    .unwrap();
    assert_eq!(identity.principal(), "USER0");
}

/// Finding: the count of callers waiting for the scan slot went up before the wait and down
/// after it, so each dropped waiter leaked one place; after `max_queued` of them every
/// first-use legacy key arriving during a scan got 503 until restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_scan_waiters_give_their_places_back() {
    let (store, _, legacy) = store_with(400, 20).await;
    let validator = Validator::builder(store.clone())
        .legacy_scan_rate(std::num::NonZeroU32::new(400).unwrap()) // 1 s for a whole scan
        .max_queued_derivations(2)
        .low_priority_derivations(false)
        .last_used_flush_interval(None)
        .build();
    let holder = {
        let validator = validator.clone();
        tokio::spawn(async move {
            validator
                .validate(&presented("NOT-A-KEY-OF-ANYONE-0000"))
                .await
        })
    };
    while validator.stats().scans_running == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Clients that give up after 20 ms, as a client timeout does.
    for i in 0..20 {
        let key = presented(&format!("ANOTHER-RANDOM-KEY-{i:04}"));
        let waited =
            tokio::time::timeout(Duration::from_millis(20), validator.validate(&key)).await;
        assert!(
            waited.is_err(),
            "waiter {i} was not left waiting: {waited:?}"
        );
    }
    assert_eq!(validator.stats().scans_queued, 0, "{:?}", validator.stats());
    // A real key arriving during the scan waits for it and is served, not refused.
    let identity = validator.validate(&presented(&legacy[399])).await.unwrap();
    assert_eq!(identity.principal(), "USER399");
    holder.await.unwrap().unwrap_err();
    settle(&validator, "scan waiters").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_gone_while_its_lease_is_taken_loses_no_use() {
    // A quota of 5: however callers vanish mid-lease, five uses are admitted in all, and the
    // store never holds fewer than what was not admitted.
    for waits in 0..4 {
        let store = FlakyStore::default();
        store.set_yielding(true); // every store call an await point
        let (mut record, key) = issue("metered");
        record.quota = Some("5".parse().unwrap());
        store.inner.insert(record.clone()).await.unwrap();
        let validator = Validator::builder(store.clone()).build();
        let identity = validator.validate(&presented(key.expose())).await.unwrap();
        let dropped = drop_after_waits(validator.enforce(&identity, None), waits).await;
        // Let a lease task the dropped caller left behind finish.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut admitted = usize::from(matches!(dropped, Some(Ok(_))));
        for _ in 0..10 {
            admitted += usize::from(validator.enforce(&identity, None).await.is_ok());
        }
        assert_eq!(admitted, 5, "dropped after {waits} waits");
        validator.shutdown().await.unwrap();
        let left = store
            .inner
            .get(&record.id)
            .await
            .unwrap()
            .unwrap()
            .usage
            .quota_remaining;
        assert_eq!(left, Some(0), "dropped after {waits} waits");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_keys_first_share_outlives_a_caller_gone() {
    // The cold path of a rate-limited key hears the fleet (one share) before the key is
    // cached: dropped at each await point, the share still ends (in its own task) or is
    // tried again by the next caller, and the key is limited as one server alone.
    for waits in 0..64 {
        let store = FlakyStore::default();
        let (mut record, key) = issue("alice");
        record.rate_limit = Some("5/1h".parse().unwrap());
        store.inner.insert(record).await.unwrap();
        store.set_yielding(true);
        let validator = validator(&store);
        let key = presented(key.expose());
        let finished = drop_after_waits(validator.validate(&key), waits).await;
        settle(&validator, "rate-limited key").await;
        let identity = validator.validate(&key).await.unwrap();
        let admitted = (0..8)
            .filter(|_| ready_now(validator.enforce(&identity, None)).is_some_and(|r| r.is_ok()))
            .count();
        assert_eq!(
            admitted, 5,
            "dropped after {waits} waits: one server's burst"
        );
        // Said it is there when built, then heard the fleet on the key: two shares at least.
        let shares = store.share_calls.load(std::sync::atomic::Ordering::SeqCst);
        assert!(shares >= 2, "dropped after {waits} waits: {shares} shares");
        if finished.is_some() {
            // The store read and the share at least.
            assert!(waits >= 2, "{waits} await points");
            return;
        }
    }
    panic!("still waiting after 64 await points");
}

/// The output of `future` if it is ready at its first poll (a rate-limited key's enforce
/// never waits: no quota).
fn ready_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let waker = std::task::Waker::noop();
    match future
        .as_mut()
        .poll(&mut std::task::Context::from_waker(waker))
    {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}
