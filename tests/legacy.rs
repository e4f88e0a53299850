//! Legacy opaque keys (Maximo imports): found by a bounded scan once, then by lookup digest.

mod common;

use std::time::Instant;

use tower_apikey::key::PresentedKey;

use tower_apikey::validator::RejectReason;
use tower_apikey::{KeyManager, KeyStore, MemoryStore, ValidationError, Validator};

fn presented(key: &str) -> PresentedKey {
    PresentedKey::new(key.as_bytes()).unwrap()
}

/// An opaque key as Maximo hands them out: letters and digits, no id inside.
fn opaque_key(i: usize) -> String {
    let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..26)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            alphabet[(state % alphabet.len() as u64) as usize] as char
        })
        .collect()
}

/// A store holding `n` legacy records imported as Maximo exports them, and their keys.
async fn imported(n: usize) -> (MemoryStore, Vec<String>) {
    // Few iterations: what is counted here is derivations, not their cost.
    let keys: Vec<String> = (0..n).map(opaque_key).collect();
    let rows = common::maximo_rows(&keys, 20);
    let store = MemoryStore::new();
    KeyManager::new(store.clone())
        .import_maximo(rows)
        .await
        .unwrap();
    (store, keys)
}

fn rejected(result: Result<tower_apikey::Identity, ValidationError>) -> RejectReason {
    match result {
        Err(ValidationError::Rejected(reason)) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn the_first_use_scans_and_no_later_use_does() {
    let (store, keys) = imported(1_000).await;
    let validator = Validator::builder(store.clone())
        .legacy_scan_rate(std::num::NonZeroU32::new(1_000_000).unwrap())
        .build();
    let key = presented(&keys[700]);

    let identity = validator.validate(&key).await.unwrap();
    assert_eq!(identity.principal(), "USER700");
    let first = validator.stats();
    assert_eq!(first.legacy_scans, 1);
    assert!((1..=1_000).contains(&first.derivations), "{first:?}");

    // Cached: no scan, no derivation.
    validator.validate(&key).await.unwrap();
    assert!(matches!(validator.validate_cached(&key), Some(Ok(_))));
    assert_eq!(validator.stats().derivations, first.derivations);
    assert_eq!(validator.stats().legacy_scans, 1);

    // The store learned the key's lookup digest: a server with a cold cache pays one
    // derivation and no scan.
    let record = store.get(identity.key_id()).await.unwrap().unwrap();
    assert_eq!(record.lookup_digest.as_ref().map(String::len), Some(64));
    let other = Validator::builder(store.clone()).build();
    assert_eq!(other.validate(&key).await.unwrap().principal(), "USER700");
    assert_eq!(other.stats().legacy_scans, 0);
    assert_eq!(other.stats().derivations, 1);

    // A wrong opaque key scans every record not yet seen once, then is remembered.
    let before = validator.stats();
    let wrong = presented("NOSUCHMAXIMOKEY00000000000");
    assert_eq!(
        rejected(validator.validate(&wrong).await),
        RejectReason::UnknownKey
    );
    let after = validator.stats();
    assert_eq!(after.legacy_scans, before.legacy_scans + 1);
    assert_eq!(after.derivations - before.derivations, 999);
    assert_eq!(
        rejected(validator.validate(&wrong).await),
        RejectReason::UnknownKey
    );
    assert_eq!(validator.stats().derivations, after.derivations);

    // Revoking the record refuses the key at once, cached or not.
    KeyManager::new(store.clone())
        .revoke(identity.key_id())
        .await
        .unwrap();
    assert_eq!(
        rejected(validator.validate(&key).await),
        RejectReason::Revoked
    );
    assert_eq!(rejected(other.validate(&key).await), RejectReason::Revoked);
}

#[tokio::test]
async fn legacy_keys_can_be_switched_off_and_never_touch_our_format() {
    let (store, keys) = imported(10).await;
    let off = Validator::builder(store.clone()).legacy_keys(false).build();
    assert_eq!(
        rejected(off.validate(&presented(&keys[3])).await),
        RejectReason::Malformed
    );
    assert_eq!(off.stats().store_reads, 0);

    // A key that claims this crate's format is never looked for among legacy records.
    let on = Validator::builder(store).build();
    assert_eq!(
        rejected(on.validate(&presented("tak_notakey")).await),
        RejectReason::Malformed
    );
    assert_eq!(on.stats().legacy_scans, 0);
    assert!(on.validate(&presented(&keys[3])).await.is_ok());
}

#[tokio::test]
async fn a_flood_of_unknown_opaque_keys_is_capped() {
    let (store, _) = imported(100).await;
    let rate = 500;
    let validator = Validator::builder(store)
        .legacy_scan_rate(std::num::NonZeroU32::new(rate).unwrap())
        .max_queued_derivations(4)
        .build();
    let started = Instant::now();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let validator = validator.clone();
            tokio::spawn(async move {
                let key = presented(&format!("FLOOD{i:021}"));
                validator.validate(&key).await
            })
        })
        .collect();
    let (mut refused, mut overloaded) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Err(ValidationError::Rejected(RejectReason::UnknownKey)) => refused += 1,
            Err(ValidationError::Overloaded) => overloaded += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = validator.stats();
    let per_second = stats.derivations as f64 / elapsed;
    println!(
        "flood of 50 unknown opaque keys over 100 legacy records: {} scans, {} derivations in {elapsed:.2} s ({per_second:.0}/s, cap {rate}/s), {refused} refused, {overloaded} told to retry",
        stats.legacy_scans, stats.derivations
    );
    // One scan at a time, four waiting; the rest are told to come back (503) at once.
    assert_eq!(refused + overloaded, 50);
    assert!(overloaded >= 45, "{overloaded}");
    assert_eq!(stats.legacy_scans, refused as u64);
    assert_eq!(stats.derivations, 100 * stats.legacy_scans);
    // The cap holds: the burst allowance is a tenth of a second's worth.
    assert!(
        stats.derivations as f64 <= f64::from(rate) * elapsed + f64::from(rate) / 10.0 + 1.0,
        "{per_second:.0}/s over a cap of {rate}/s"
    );
}
