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
            let (other, other_key) = issue("bob");
            let (third, third_key) = issue("carol");
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
