//! Usage per key through the layer: every request with a real key counted once, by its
//! outcome, written as one batch a flush; a batch tried again after a lost answer counted
//! once; counting off writes nothing.
#![cfg(feature = "axum")]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use jiff::Timestamp;
use tower::ServiceExt;
use tower_apikey::key::{KeyId, PlaintextKey};
use tower_apikey::permission::require_permission;
use tower_apikey::store::UsageStore;
use tower_apikey::test_util::{Forward, StoreDouble};
use tower_apikey::usage::{Counts, Granularity, Outcome, UsageBatch, UsageRange};
use tower_apikey::{ApiKeyLayer, KeyManager, MemoryStore, NewKey, StoreError, Validator};

/// The app: `/open` behind the key check, `/reports` also needing `reports:read`.
fn app(validator: Validator) -> Router {
    Router::new()
        .route("/reports", get(|| async { "reports" }))
        .layer(require_permission("reports:read"))
        .route("/open", get(|| async { "open" }))
        .layer(ApiKeyLayer::new(validator))
}

async fn call(app: &Router, path: &str, key: &str) -> u16 {
    let request = http::Request::get(path)
        .header("apikey", key)
        .body(axum::body::Body::empty())
        .unwrap();
    app.clone()
        .oneshot(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn this_hour() -> UsageRange {
    UsageRange::last(Granularity::Hour, Timestamp::now())
}

async fn counts(store: &impl UsageStore, id: &KeyId) -> Counts {
    let mut total = Counts::default();
    for bucket in store.read_usage(id, this_hour()).await.unwrap() {
        total.merge(&bucket.counts);
    }
    total
}

fn shown(counts: &Counts) -> Vec<(&'static str, u64)> {
    counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(o, n)| (o.as_str(), n))
        .collect()
}

struct Keys {
    reader: (KeyId, PlaintextKey),
    limited: (KeyId, PlaintextKey),
    revoked: (KeyId, PlaintextKey),
}

async fn keys(store: &MemoryStore) -> Keys {
    let manager = KeyManager::new(store.clone()).hash_params(
        tower_apikey::hash::HashParams::default()
            .with_iterations(1)
            .unwrap(),
    );
    let (r, reader) = manager
        .issue(NewKey::new("alice").permissions(["reports:read"]))
        .await
        .unwrap();
    let (l, limited) = manager
        .issue(NewKey::new("bob").rate_limit(Some("2/1h".parse().unwrap())))
        .await
        .unwrap();
    let (v, revoked) = manager.issue(NewKey::new("carol")).await.unwrap();
    manager.revoke(&v.id).await.unwrap();
    Keys {
        reader: (r.id, reader),
        limited: (l.id, limited),
        revoked: (v.id, revoked),
    }
}

/// `key` with its last secret character changed: its id, another secret.
fn wrong(key: &PlaintextKey) -> String {
    let mut text = key.expose().to_owned();
    let last = text.pop().unwrap();
    text.push(if last == 'a' { 'b' } else { 'a' });
    text
}

#[tokio::test]
async fn each_request_is_counted_once_by_its_outcome() {
    let store = MemoryStore::new();
    let keys = keys(&store).await;
    let validator = Validator::builder(store.clone()).build();
    let app = app(validator.clone());
    let (reader_id, reader) = &keys.reader;
    let (limited_id, limited) = &keys.limited;
    let (revoked_id, revoked) = &keys.revoked;

    // alice: 3 valid (cold, then cached), 2 wrong secrets (refused from the cache).
    for _ in 0..3 {
        assert_eq!(call(&app, "/open", reader.expose()).await, 200);
    }
    for _ in 0..2 {
        assert_eq!(call(&app, "/open", &wrong(reader)).await, 401);
    }
    // bob: a rate limit of 2, 5 requests.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(call(&app, "/open", limited.expose()).await);
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429]);
    // carol: revoked, 2 requests (cold, then the cached refusal).
    for _ in 0..2 {
        assert_eq!(call(&app, "/open", revoked.expose()).await, 401);
    }
    // dave has no record: counted nowhere per key.
    assert_eq!(call(&app, "/open", "tak_nobody0000000000_x").await, 401);
    // alice may read reports.
    assert_eq!(call(&app, "/reports", reader.expose()).await, 200);

    validator.flush_usage().await.unwrap();
    assert_eq!(
        shown(&counts(&store, reader_id).await),
        [("valid", 4), ("wrong_secret", 2)]
    );
    assert_eq!(
        shown(&counts(&store, limited_id).await),
        [("valid", 2), ("rate_limited", 3)]
    );
    assert_eq!(shown(&counts(&store, revoked_id).await), [("revoked", 2)]);
    // Nothing twice: a second flush adds nothing.
    validator.flush_usage().await.unwrap();
    assert_eq!(counts(&store, reader_id).await.total(), 6);
}

#[tokio::test]
async fn a_permission_refusal_is_counted_as_one_not_as_valid_too() {
    let store = MemoryStore::new();
    let manager = KeyManager::new(store.clone()).hash_params(
        tower_apikey::hash::HashParams::default()
            .with_iterations(1)
            .unwrap(),
    );
    let (record, key) = manager.issue(NewKey::new("eve")).await.unwrap();
    let validator = Validator::builder(store.clone()).build();
    let app = app(validator.clone());
    assert_eq!(call(&app, "/reports", key.expose()).await, 403);
    assert_eq!(call(&app, "/reports", key.expose()).await, 403);
    assert_eq!(call(&app, "/open", key.expose()).await, 200);
    validator.flush_usage().await.unwrap();
    assert_eq!(
        shown(&counts(&store, &record.id).await),
        [("valid", 1), ("permission_denied", 2)]
    );
}

/// A store whose first `add_usage` lands but answers as if it had failed: the answer lost.
#[derive(Clone, Default)]
struct LostAnswer {
    inner: MemoryStore,
    lost: Arc<AtomicBool>,
}

impl StoreDouble for LostAnswer {
    type Inner = MemoryStore;

    fn inner(&self) -> &MemoryStore {
        &self.inner
    }

    async fn add_usage(&self, batch: UsageBatch) -> Result<(), StoreError> {
        self.inner.add_usage(batch).await?;
        if self.lost.swap(true, Ordering::SeqCst) {
            Ok(())
        } else {
            Err(StoreError::Unavailable("connection reset".into()))
        }
    }
}

#[tokio::test]
async fn a_batch_tried_again_after_a_lost_answer_is_counted_once() {
    let double = LostAnswer::default();
    let store = Forward(double.clone());
    let manager = KeyManager::new(store.clone()).hash_params(
        tower_apikey::hash::HashParams::default()
            .with_iterations(1)
            .unwrap(),
    );
    let (record, key) = manager.issue(NewKey::new("frank")).await.unwrap();
    let validator = Validator::builder(store.clone()).build();
    let app = Router::new()
        .route("/open", get(|| async { "open" }))
        .layer(ApiKeyLayer::new(validator.clone()));
    for _ in 0..3 {
        assert_eq!(call(&app, "/open", key.expose()).await, 200);
    }
    assert!(
        validator.flush_usage().await.is_err(),
        "the answer was lost"
    );
    assert_eq!(call(&app, "/open", key.expose()).await, 200);
    validator.flush_usage().await.unwrap();
    assert_eq!(
        shown(&counts(&double.inner, &record.id).await),
        [("valid", 4)],
        "the first batch once, and the request after it"
    );
}

#[tokio::test]
async fn counting_off_writes_nothing() {
    let store = MemoryStore::new();
    let keys = keys(&store).await;
    let validator = Validator::builder(store.clone())
        .usage_flush_interval(None)
        .build();
    let app = app(validator.clone());
    assert_eq!(call(&app, "/open", keys.reader.1.expose()).await, 200);
    validator.shutdown().await.unwrap();
    assert_eq!(counts(&store, &keys.reader.0).await.total(), 0);
    assert!(Outcome::ALL.iter().all(|o| !o.as_str().is_empty()));
}
