//! Usage through the admin API: a key's buckets, zero-filled, by the hour and by the day;
//! the busiest keys; and every bad range answered 400 with what is wrong.
#![cfg(feature = "admin")]

mod common;

use axum::Router;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use tower::ServiceExt;
use tower_apikey::admin::AdminApi;
use tower_apikey::key::PlaintextKey;
use tower_apikey::permission::API_KEY_ADMIN;
use tower_apikey::store::UsageStore;
use tower_apikey::usage::{Counts, Granularity, HourCounts, Outcome, UsageBatch};
use tower_apikey::{ApiKeyLayer, KeyManager, KeyRecord, MemoryStore, NewKey, Validator};

struct Admin {
    app: Router,
    key: PlaintextKey,
    store: MemoryStore,
    manager: KeyManager,
}

fn admin() -> Admin {
    let store = MemoryStore::new();
    let manager = KeyManager::new(store.clone()).hash_params(
        tower_apikey::hash::HashParams::default()
            .with_iterations(1)
            .unwrap(),
    );
    let (_, key) = futures_block(manager.issue(NewKey::new("ops").permissions([API_KEY_ADMIN])));
    let validator = Validator::builder(store.clone()).build();
    let app = Router::new().nest(
        "/admin",
        AdminApi::new(manager.clone(), ApiKeyLayer::new(validator)).into_router(),
    );
    Admin {
        app,
        key,
        store,
        manager,
    }
}

fn futures_block<T>(
    f: impl std::future::Future<Output = Result<T, tower_apikey::LifecycleError>>,
) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f)).unwrap()
}

impl Admin {
    async fn get(&self, path: &str) -> (u16, Value) {
        let request = http::Request::get(path)
            .header("apikey", self.key.expose())
            .body(axum::body::Body::empty())
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn key(&self, principal: &str, name: &str) -> KeyRecord {
        self.manager
            .issue(NewKey::new(principal).name(name))
            .await
            .unwrap()
            .0
    }
}

fn counted(outcome: Outcome, n: u64) -> Counts {
    let mut counts = Counts::default();
    counts.add(outcome, n);
    counts
}

fn hour(text: &str) -> Timestamp {
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_usage_by_the_hour_and_by_the_day() {
    let admin = admin();
    let key = admin.key("alice", "billing").await;
    let mut ten = counted(Outcome::Valid, 5);
    ten.add(Outcome::WrongSecret, 2);
    let lines = [
        HourCounts::new(key.id.clone(), hour("2026-03-01T10:00:00Z"), ten),
        HourCounts::new(
            key.id.clone(),
            hour("2026-03-02T01:00:00Z"),
            counted(Outcome::RateLimited, 4),
        ),
    ];
    admin
        .store
        .add_usage(UsageBatch::new("s1-1", lines))
        .await
        .unwrap();
    let path = |q: &str| format!("/admin/keys/{}/usage{q}", key.id);

    let (status, hours) = admin
        .get(&path("?from=2026-03-01T09:30:00Z&to=2026-03-01T12:00:00Z"))
        .await;
    assert_eq!(status, 200, "{hours}");
    let buckets = hours["buckets"].as_array().unwrap();
    let starts: Vec<&str> = buckets
        .iter()
        .map(|b| b["start"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "2026-03-01T09:00:00Z",
            "2026-03-01T10:00:00Z",
            "2026-03-01T11:00:00Z"
        ]
    );
    assert_eq!(buckets[1]["counts"]["valid"], 5);
    assert_eq!(buckets[1]["counts"]["wrong_secret"], 2);
    let zeros = buckets[0]["counts"].as_object().unwrap();
    assert_eq!(zeros.len(), 9, "every outcome, zeros included");
    assert!(zeros.values().all(|n| *n == 0));

    let (status, days) = admin
        .get(&path(
            "?from=2026-03-01T00:00:00Z&to=2026-03-03T00:00:00Z&granularity=day",
        ))
        .await;
    assert_eq!(status, 200, "{days}");
    let totals: Vec<(u64, u64)> = days["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["counts"]["valid"].as_u64().unwrap(),
                b["counts"]["rate_limited"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(totals, [(5, 0), (0, 4)]);

    // The defaults: the last 24 hours by the hour, the last 30 days by the day.
    let (_, default) = admin.get(&path("")).await;
    assert_eq!(default["buckets"].as_array().unwrap().len(), 24);
    let (_, by_day) = admin.get(&path("?granularity=day")).await;
    assert_eq!(by_day["buckets"].as_array().unwrap().len(), 30);
    let last = by_day["buckets"][29]["start"].as_str().unwrap();
    assert_eq!(
        last.parse::<Timestamp>().unwrap(),
        Granularity::Day.bucket_of(Timestamp::now()),
        "the current day is the last bucket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ranges_and_ids_are_refused_with_what_is_wrong() {
    let admin = admin();
    let key = admin.key("alice", "billing").await;
    let path = |q: &str| format!("/admin/keys/{}/usage{q}", key.id);
    let long_ago = (Timestamp::now() - SignedDuration::from_hours(24 * 401)).to_string();
    for (query, says) in [
        (
            "?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z".to_owned(),
            "is after to",
        ),
        (format!("?from={long_ago}"), "at most 400 days"),
        ("?granularity=week".to_owned(), "unknown granularity"),
        ("?from=yesterday".to_owned(), "not an RFC 3339 time"),
    ] {
        let (status, body) = admin.get(&path(&query)).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"], "bad_request");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(says), "{query}: {message}");
    }
    for id in ["nothere123", "not_an_id"] {
        let (status, body) = admin.get(&format!("/admin/keys/{id}/usage")).await;
        assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    }
    let (status, body) = admin.get("/admin/usage?limit=0").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_busiest_keys_first() {
    let admin = admin();
    let a = admin.key("alice", "a").await;
    let b = admin.key("bob", "b").await;
    let c = admin.key("alice", "c").await;
    let now = Granularity::Hour.bucket_of(Timestamp::now());
    let lines = [(&a, 3), (&b, 7), (&c, 5)]
        .map(|(k, n)| HourCounts::new(k.id.clone(), now, counted(Outcome::Valid, n)));
    admin
        .store
        .add_usage(UsageBatch::new("s1-1", lines))
        .await
        .unwrap();
    let listed = |body: &Value| -> Vec<(String, u64)> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["name"].as_str().unwrap().to_owned(),
                    i["total"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let (status, all) = admin.get("/admin/usage").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        listed(&all),
        [("b".into(), 7), ("c".into(), 5), ("a".into(), 3)]
    );
    assert_eq!(all["items"][0]["principal"], "bob");
    assert_eq!(all["items"][0]["counts"]["valid"], 7);
    let (_, alice) = admin.get("/admin/usage?principal=alice&limit=1").await;
    assert_eq!(listed(&alice), [("c".into(), 5)]);
    let (_, hours) = admin.get("/admin/usage?granularity=hour").await;
    assert_eq!(listed(&hours).len(), 3);
}
