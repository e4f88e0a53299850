//! The validator's cold path: sharing, bounds, negative caching, expiry, fencing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tower_apikey::hash::{HashParams, Pbkdf2Hash};
use tower_apikey::key::{KeyFormat, KeyId, PresentedKey};
use tower_apikey::test_util::{Forward, StoreDouble};
use tower_apikey::validator::RejectReason;
use tower_apikey::{
    KeyRecord, KeyStatus, KeyStore, MemoryStore, StoreError, ValidationError, Validator,
};

use common::issue;

fn presented(key: &str) -> PresentedKey {
    PresentedKey::new(key.as_bytes()).unwrap()
}

fn rejected(result: Result<tower_apikey::Identity, ValidationError>) -> RejectReason {
    match result {
        Err(ValidationError::Rejected(reason)) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_with_one_key_share_one_derivation() {
    let store = MemoryStore::new();
    // Slow enough that all callers arrive while the first derivation runs.
    let params = HashParams::default().with_iterations(200_000).unwrap();
    let (record, key) = KeyRecord::generate("alice", &KeyFormat::default(), &params).unwrap();
    store.insert(record).await.unwrap();
    let validator = Validator::builder(store).build();
    let key = Arc::new(presented(key.expose()));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (v, k) = (validator.clone(), Arc::clone(&key));
            tokio::spawn(async move { v.validate(&k).await.map(|i| i.principal().to_owned()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "alice");
    }
    assert_eq!(validator.stats().derivations, 1);
}

#[tokio::test]
async fn unknown_ids_reach_the_store_once() {
    let validator = Validator::builder(MemoryStore::new()).build();
    let (_, key) = issue("ghost");
    for _ in 0..50 {
        assert_eq!(
            rejected(validator.validate(&presented(key.expose())).await),
            RejectReason::UnknownKey
        );
    }
    assert_eq!(validator.stats().store_reads, 1);
    assert_eq!(validator.stats().derivations, 0);
}

#[tokio::test]
async fn malformed_keys_never_reach_the_store() {
    // Keys that claim this format but break it; with legacy keys off, any key not in it.
    let claimed = Validator::builder(MemoryStore::new()).build();
    let off = Validator::builder(MemoryStore::new())
        .legacy_keys(false)
        .build();
    for key in [
        "tak_abc_def",
        "tak_AAAAAAAAAAAAAAAA_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        assert_eq!(
            rejected(claimed.validate(&presented(key)).await),
            RejectReason::Malformed
        );
    }
    assert_eq!(claimed.stats().store_reads, 0);
    for key in ["x", "tak_abc_def", "opaque-key-of-another-system"] {
        assert_eq!(
            rejected(off.validate(&presented(key)).await),
            RejectReason::Malformed
        );
    }
    assert_eq!(off.stats().store_reads, 0);
}

#[tokio::test]
async fn a_wrong_secret_for_a_cached_id_costs_no_derivation() {
    let store = MemoryStore::new();
    let (record, key) = issue("alice");
    store.insert(record.clone()).await.unwrap();
    let validator = Validator::builder(store).build();
    validator.validate(&presented(key.expose())).await.unwrap();
    let wrong = KeyFormat::default().generate_for(&record.id).unwrap();
    for _ in 0..20 {
        assert!(matches!(
            validator.validate_cached(&presented(wrong.expose())),
            Some(Err(RejectReason::WrongSecret))
        ));
    }
    assert_eq!(validator.stats().derivations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derivations_are_bounded_and_excess_is_shed() {
    let store = MemoryStore::new();
    let params = HashParams::default().with_iterations(100_000).unwrap();
    let (record, _) = KeyRecord::generate("alice", &KeyFormat::default(), &params).unwrap();
    store.insert(record.clone()).await.unwrap();
    let validator = Validator::builder(store)
        .max_concurrent_derivations(std::num::NonZeroUsize::new(1).unwrap())
        .max_queued_derivations(2)
        .build();
    // Twenty different wrong secrets for one id: each needs its own derivation.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let v = validator.clone();
            let wrong = KeyFormat::default().generate_for(&record.id).unwrap();
            tokio::spawn(async move { v.validate(&presented(wrong.expose())).await })
        })
        .collect();
    let mut overloaded = 0;
    for t in tasks {
        match t.await.unwrap() {
            Err(ValidationError::Overloaded) => overloaded += 1,
            Err(ValidationError::Rejected(RejectReason::WrongSecret)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let stats = validator.stats();
    assert!(overloaded > 0, "some callers are shed");
    assert_eq!(stats.shed, overloaded);
    assert_eq!(stats.derivations + stats.shed, 20);
    assert!(
        stats.derivations >= 3,
        "one running and two queued get through"
    );
}

/// A validator with a long cache TTL and a key that expires in `ms` milliseconds.
fn expiring_key(ms: i64) -> (Validator, PresentedKey) {
    let (mut record, key) = issue("alice");
    record.expires_at = Some(jiff::Timestamp::now() + jiff::SignedDuration::from_millis(ms));
    let store = MemoryStore::with_records([record]);
    (
        Validator::builder(store)
            .cache_ttl(Duration::from_secs(3600))
            .build(),
        presented(key.expose()),
    )
}

#[tokio::test]
async fn expiry_is_checked_on_every_hit() {
    let (validator, key) = expiring_key(400);
    validator.validate(&key).await.unwrap();
    assert!(matches!(validator.validate_cached(&key), Some(Ok(_))));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rejected(validator.validate(&key).await),
        RejectReason::Expired
    );
}

/// A store whose `get` pauses after reading, so a change can land mid cold path.
#[derive(Clone)]
struct Pausing {
    inner: MemoryStore,
    read_done: Arc<Notify>,
    resume: Arc<Notify>,
}

impl StoreDouble for Pausing {
    type Inner = MemoryStore;

    fn inner(&self) -> &MemoryStore {
        &self.inner
    }

    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let record = self.inner.get(id).await;
        self.read_done.notify_one();
        self.resume.notified().await;
        record
    }
}

#[tokio::test]
async fn a_fill_that_raced_a_revocation_does_not_resurrect_the_key() {
    let inner = MemoryStore::new();
    let (record, key) = issue("alice");
    inner.insert(record.clone()).await.unwrap();
    let store = Forward(Pausing {
        inner: inner.clone(),
        read_done: Arc::default(),
        resume: Arc::default(),
    });
    let validator = Validator::builder(store.clone()).build();
    let key = Arc::new(presented(key.expose()));

    let cold = tokio::spawn({
        let (v, k) = (validator.clone(), Arc::clone(&key));
        async move { v.validate(&k).await }
    });
    store.read_done.notified().await;
    // The cold path has read an active record; now the key is revoked.
    let mut revoked = record.clone();
    revoked.status = KeyStatus::Revoked;
    inner.replace(&record, revoked).await.unwrap();
    store.resume.notify_one();
    // It read the record before the revocation, so it may succeed, but must not be cached.
    assert!(cold.await.unwrap().is_ok());
    assert!(
        validator.validate_cached(&key).is_none(),
        "a stale fill was cached"
    );
    store.resume.notify_one();
    assert_eq!(
        rejected(validator.validate(&key).await),
        RejectReason::Revoked
    );
}

#[tokio::test]
async fn records_made_elsewhere_validate_with_their_prf() {
    // A key hashed with SHA-512 at 4096 iterations, as another system might store it.
    let store = MemoryStore::new();
    let (id, key) = KeyFormat::default().generate().unwrap();
    let params = HashParams::default()
        .with_prf(tower_apikey::hash::Prf::Sha512)
        .with_iterations(4096)
        .unwrap()
        .with_hash_len(64)
        .unwrap();
    let hash = Pbkdf2Hash::create(key.expose().as_bytes(), &params).unwrap();
    store
        .insert(KeyRecord::new(id, "svc", hash, params.prf()))
        .await
        .unwrap();
    let validator = Validator::builder(store).build();
    assert_eq!(
        validator
            .validate(&presented(key.expose()))
            .await
            .unwrap()
            .principal(),
        "svc"
    );
}

#[tokio::test]
async fn refusals_expire_after_the_negative_ttl_and_inserts_evict_them() {
    let store = MemoryStore::new();
    let validator = Validator::builder(store.clone())
        .negative_ttl(Duration::from_millis(100))
        .build();
    let (record, key) = issue("late");
    let key = presented(key.expose());
    assert_eq!(
        rejected(validator.validate(&key).await),
        RejectReason::UnknownKey
    );
    assert_eq!(
        rejected(validator.validate(&key).await),
        RejectReason::UnknownKey
    );
    assert_eq!(validator.stats().store_reads, 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        rejected(validator.validate(&key).await),
        RejectReason::UnknownKey
    );
    assert_eq!(validator.stats().store_reads, 2, "the refusal expired");

    // Issuing the key drops the cached refusal at once.
    store.insert(record).await.unwrap();
    assert_eq!(validator.validate(&key).await.unwrap().principal(), "late");
}

#[tokio::test]
async fn an_expired_key_is_refused_from_the_cache_without_a_store_read() {
    let (validator, key) = expiring_key(300);
    validator.validate(&key).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The cache TTL is an hour; the hit's own expiry check refuses it.
    assert!(matches!(
        validator.validate_cached(&key),
        Some(Err(RejectReason::Expired))
    ));
    assert_eq!(validator.stats().store_reads, 1);
    assert_eq!(validator.stats().derivations, 1);
}

#[tokio::test]
async fn last_use_is_noted_in_memory_and_written_in_one_batch() {
    let store = common::FlakyStore::default();
    let (record, key) = issue("alice");
    let id = record.id.clone();
    store.inner.insert(record).await.unwrap();
    let writes = || {
        store
            .last_used_writes
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let last_used = || async {
        store
            .inner
            .get(&id)
            .await
            .unwrap()
            .unwrap()
            .usage
            .last_used_at
    };
    let validator = Validator::builder(store.clone()).build();
    let key = presented(key.expose());
    validator.validate(&key).await.unwrap();
    for _ in 0..1_000 {
        assert!(matches!(validator.validate_cached(&key), Some(Ok(_))));
    }
    assert_eq!(writes(), 0, "no write per request");
    assert!(last_used().await.is_none());

    // A failed flush keeps the uses for the next one.
    store.set_down(true);
    assert!(validator.flush_last_used().await.is_err());
    store.set_down(false);
    validator.flush_last_used().await.unwrap();
    assert_eq!(writes(), 1);
    let age = jiff::Timestamp::now()
        .duration_since(last_used().await.unwrap())
        .as_secs();
    assert!((0..=2).contains(&age), "{age}");

    // Writing last use evicts nothing: the key is still answered from the cache.
    assert!(matches!(validator.validate_cached(&key), Some(Ok(_))));
    assert_eq!(validator.stats().derivations, 1);
    // Nothing new to write: no batch.
    validator.flush_last_used().await.unwrap();
    assert_eq!(writes(), 1);
}

#[tokio::test]
async fn last_use_is_flushed_on_the_interval_and_can_be_off() {
    let store = MemoryStore::new();
    let (record, key) = issue("alice");
    let id = record.id.clone();
    store.insert(record).await.unwrap();
    let key = presented(key.expose());

    let off = Validator::builder(store.clone())
        .last_used_flush_interval(None)
        .build();
    off.validate(&key).await.unwrap();
    off.flush_last_used().await.unwrap();
    assert!(last_used(&store, &id).await.is_none());

    let on = Validator::builder(store.clone())
        .last_used_flush_interval(Some(Duration::from_secs(1)))
        .build();
    on.validate(&key).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(last_used(&store, &id).await.is_some());
}

#[tokio::test]
async fn a_use_survives_its_cache_entry_expiring_before_the_flush() {
    let store = MemoryStore::new();
    let (record, key) = issue("alice");
    let id = record.id.clone();
    store.insert(record).await.unwrap();
    let validator = Validator::builder(store.clone())
        .cache_ttl(Duration::from_millis(200))
        .build();
    validator.validate(&presented(key.expose())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    validator.flush_last_used().await.unwrap();
    assert!(last_used(&store, &id).await.is_some());
}

/// The last use `store` holds for `id`.
async fn last_used(store: &MemoryStore, id: &KeyId) -> Option<jiff::Timestamp> {
    store.get(id).await.unwrap().unwrap().usage.last_used_at
}

#[tokio::test]
async fn check_store_says_whether_the_store_answers_in_time() {
    let store = Forward(Pausing {
        inner: MemoryStore::new(),
        read_done: Arc::default(),
        resume: Arc::default(),
    });
    let validator = Validator::builder(store.clone()).build();
    // A read that never finishes: the check gives up at its timeout.
    let timeout = Duration::from_millis(50);
    assert!(matches!(
        validator.check_store(timeout).await,
        Err(tower_apikey::validator::StoreCheckError::Timeout(t)) if t == timeout
    ));
    // A read that finishes: ready, whatever it found.
    store.resume.notify_one();
    validator.check_store(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_sharing_goes_on_after_a_store_panics_in_a_share() {
    use std::sync::atomic::Ordering;

    let store = common::FlakyStore::default();
    let (mut record, key) = issue("rated");
    record.rate_limit = Some("1000/1s".parse().unwrap());
    store.inner.insert(record).await.unwrap();
    let validator = Validator::builder(store.clone())
        .rate_limit_sync(Some(Duration::from_millis(20)))
        .build();
    let key = presented(key.expose());
    let use_key = || async {
        let identity = validator.validate(&key).await.unwrap();
        validator.enforce(&identity, None).await.unwrap();
    };
    store.set_panicking_shares(true);
    use_key().await;
    let calls = || store.share_calls.load(Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while calls() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no share was tried");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The store works again: shares go on (before, the panicked one left sharing stuck).
    store.set_panicking_shares(false);
    let before = calls();
    while calls() < before + 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sharing stopped after a share panicked ({} calls)",
            calls()
        );
        use_key().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_shut_down_leaves_the_fleet_once_its_share_under_way_is_done() {
    use std::sync::atomic::Ordering;
    use tower_apikey::store::{RateShare, UsageStore};

    let store = common::FlakyStore::default();
    let (mut record, key) = issue("rated");
    record.rate_limit = Some("1000/1s".parse().unwrap());
    store.inner.insert(record).await.unwrap();
    let build = || {
        Validator::builder(store.clone())
            .rate_limit_sync(Some(Duration::from_millis(20)))
            .build()
    };
    let (leaving, staying) = (build(), build());
    // The servers on the store, this probe included.
    let servers = || async {
        let probe = RateShare::new(u64::MAX, Vec::new(), Duration::from_secs(1));
        store.inner.share_rate_usage(probe).await.unwrap().servers
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while servers().await < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the validators never said they are there"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let key = presented(key.expose());
    let use_key = || async {
        let identity = leaving.validate(&key).await.unwrap();
        leaving.enforce(&identity, None).await.unwrap();
    };
    use_key().await;
    // A share is under way (slow) when the server stops: it must not land after the leaving.
    store.set_share_delay(Duration::from_millis(200));
    let calls = store.share_calls.load(Ordering::SeqCst);
    use_key().await;
    while store.share_calls.load(Ordering::SeqCst) == calls {
        assert!(tokio::time::Instant::now() < deadline, "no share was tried");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    leaving.shutdown().await.unwrap();
    assert_eq!(servers().await, 2, "the staying validator and the probe");
    // Requests go on at the server that left: it shares no more.
    for _ in 0..10 {
        use_key().await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(
        servers().await,
        2,
        "a share after leaving counts the server again"
    );
    drop(staying);
}
