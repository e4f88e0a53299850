//! The validator's counters through the `metrics` facade, read back from a recorder.
#![cfg(feature = "metrics")]

mod common;

use std::collections::HashMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower_apikey::key::{KeyFormat, PresentedKey};
use tower_apikey::{KeyStore, MemoryStore, ValidationError, Validator};

use common::issue;

fn presented(key: &str) -> PresentedKey {
    PresentedKey::new(key.as_bytes()).unwrap()
}

/// Counter values by name and `reason` label.
fn counters(recorder: &DebuggingRecorder) -> HashMap<String, u64> {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let key = key.key();
            let name = match key.labels().find(|l| l.key() == "reason") {
                Some(reason) => format!("{}{{{}}}", key.name(), reason.value()),
                None => key.name().to_owned(),
            };
            match value {
                DebugValue::Counter(n) => Some((name, n)),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn hits_misses_derivations_rejections_and_shed_are_counted() {
    let recorder = DebuggingRecorder::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let store = MemoryStore::new();
            let (record, key) = issue("alice");
            // Slow to derive (500,000 iterations), so the first of the two is still deriving
            // when the second asks, however loaded the machine is.
            let slow = tower_apikey::hash::HashParams::default()
                .with_iterations(500_000)
                .unwrap();
            let slow_key = |principal: &str| {
                tower_apikey::KeyRecord::generate(principal, &KeyFormat::default(), &slow).unwrap()
            };
            let (other, other_key) = slow_key("bob");
            let (third, third_key) = slow_key("carol");
            for r in [record.clone(), other, third] {
                store.insert(r).await.unwrap();
            }
            // One derivation at a time and no queue, so a second cold key is shed.
            let validator = Validator::builder(store)
                .max_concurrent_derivations(std::num::NonZeroUsize::new(1).unwrap())
                .max_queued_derivations(0)
                .build();
            tower_apikey::validator::describe_metrics();

            validator.validate(&presented(key.expose())).await.unwrap(); // miss, derivation
            validator.validate(&presented(key.expose())).await.unwrap(); // hit
            validator.validate(&presented(key.expose())).await.unwrap(); // hit
            let wrong = KeyFormat::default().generate_for(&record.id).unwrap();
            assert!(validator
                .validate(&presented(wrong.expose()))
                .await
                .is_err()); // wrong_secret
            let (_, unknown) = issue("nobody");
            assert!(validator
                .validate(&presented(unknown.expose()))
                .await
                .is_err()); // miss, unknown_key
            assert!(validator.validate(&presented("tak_bad")).await.is_err()); // malformed

            let (other_key, third_key) =
                (presented(other_key.expose()), presented(third_key.expose()));
            let (a, b) = tokio::join!(
                validator.validate(&other_key),
                validator.validate(&third_key)
            );
            let shed = [&a, &b]
                .iter()
                .filter(|r| matches!(r, Err(ValidationError::Overloaded)))
                .count();
            assert_eq!(shed, 1, "{a:?} {b:?}");
        });
    });

    let counts = counters(&recorder);
    let get = |name: &str| counts.get(name).copied().unwrap_or(0);
    assert_eq!(get("tower_apikey_cache_hits_total"), 2, "{counts:?}");
    // alice, the unknown key, bob and carol; the malformed key never reaches the cold path.
    assert_eq!(get("tower_apikey_cache_misses_total"), 4, "{counts:?}");
    // alice, and one of bob and carol.
    assert_eq!(get("tower_apikey_derivations_total"), 2, "{counts:?}");
    assert_eq!(
        get("tower_apikey_rejections_total{wrong_secret}"),
        1,
        "{counts:?}"
    );
    assert_eq!(
        get("tower_apikey_rejections_total{unknown_key}"),
        1,
        "{counts:?}"
    );
    assert_eq!(
        get("tower_apikey_rejections_total{malformed}"),
        1,
        "{counts:?}"
    );
    assert_eq!(get("tower_apikey_shed_total"), 1, "{counts:?}");
}

/// The counters in a Prometheus text scrape, by name and labels (`name{reason="…"}`).
#[cfg(feature = "axum")]
fn scrape(addr: &str) -> HashMap<String, f64> {
    let (status, body) = common::http_get(addr, "/metrics", None);
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("`name value`");
            (name.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// The axum example from outside: Prometheus scrapes `/metrics` and sees each counter move
/// with the requests that move it.
#[cfg(feature = "axum")]
#[test]
fn the_axum_example_serves_the_counters_to_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(common::example_binary("axum"));
    command
        .env("APIKEY_STORE", dir.path().join("apikeys.json"))
        .env_remove("DATABASE_URL");
    let (_server, addr, demo) = common::start_example(command);
    let demo = demo.expect("the demo key is printed on an empty store");

    let before = scrape(&addr);
    let get =
        |scraped: &HashMap<String, f64>, name: &str| scraped.get(name).copied().unwrap_or(0.0);
    assert_eq!(common::http_get(&addr, "/whoami", Some(&demo)).0, 200); // miss, derivation
    for _ in 0..3 {
        assert_eq!(common::http_get(&addr, "/whoami", Some(&demo)).0, 200); // hits
    }
    let (_, unknown) = issue("nobody");
    assert_eq!(
        common::http_get(&addr, "/whoami", Some(unknown.expose())).0,
        401
    );
    assert_eq!(common::http_get(&addr, "/whoami", Some("tak_bad")).0, 401);
    let after = scrape(&addr);

    let moved = |name: &str| get(&after, name) - get(&before, name);
    assert_eq!(moved("tower_apikey_cache_hits_total"), 3.0, "{after:?}");
    assert_eq!(moved("tower_apikey_cache_misses_total"), 2.0, "{after:?}");
    assert_eq!(moved("tower_apikey_derivations_total"), 1.0, "{after:?}");
    assert_eq!(
        moved("tower_apikey_rejections_total{reason=\"unknown_key\"}"),
        1.0,
        "{after:?}"
    );
    assert_eq!(
        moved("tower_apikey_rejections_total{reason=\"malformed\"}"),
        1.0,
        "{after:?}"
    );
    // No key, no label value, no principal in what is scraped.
    let (_, text) = common::http_get(&addr, "/metrics", None);
    assert!(!text.contains(&demo) && !text.contains("demo"), "{text}");
}
