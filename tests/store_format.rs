//! The file store's format does not change: a store written by tower-apikey at 0.1.0
//! (`tests/data/store-0.1.0.json`, every record field in use) opens, reads back field for
//! field, is written back in the same shape, and the axum example accepts its live keys and
//! refuses the others.

mod common;

use std::collections::BTreeMap;

use serde_json::Value;
use tower_apikey::key::KeyId;
use tower_apikey::{FileStore, KeyStore, UsageStore};

struct Key {
    id: String,
    key: String,
    valid: bool,
}

fn keys() -> BTreeMap<String, Key> {
    let keys = common::vectors("store-0.1.0.keys.json");
    keys.as_object()
        .expect("an object of keys")
        .iter()
        .map(|(name, k)| {
            let field = |f: &str| k[f].as_str().expect("a string").to_owned();
            let key = Key {
                id: field("id"),
                key: field("key"),
                valid: field("outcome") == "valid",
            };
            (name.clone(), key)
        })
        .collect()
}

/// A copy of the old store in a directory of its own; the original's contents.
fn copy() -> (tempfile::TempDir, std::path::PathBuf, Value) {
    let original = common::vectors("store-0.1.0.json");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apikeys.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&original).unwrap()).unwrap();
    (dir, path, original)
}

fn records_by_id(contents: &Value) -> BTreeMap<String, Value> {
    contents["keys"]
        .as_array()
        .expect("a keys array")
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

#[tokio::test]
async fn an_old_store_reads_and_writes_in_the_same_shape() {
    let (_dir, path, original) = copy();
    let before = records_by_id(&original);
    assert_eq!(before.len(), 9, "the old store's records");
    let store = FileStore::open(&path).await.unwrap();
    for (id, stored) in &before {
        let record = store
            .get(&KeyId::new(id).unwrap())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{id} is missing"));
        assert_eq!(
            &serde_json::to_value(&record).unwrap(),
            stored,
            "{id} reads back as written"
        );
    }
    for name in ["full", "legacy_seen", "plain"] {
        let id = &keys()[name].id;
        let record = store.get(&KeyId::new(id).unwrap()).await.unwrap().unwrap();
        assert!(
            record.usage.last_used_at.is_some(),
            "{name} keeps its last use"
        );
    }

    // A write rewrites the file: every record and event keeps its shape.
    let first = KeyId::new(before.keys().next().unwrap()).unwrap();
    let at = jiff::Timestamp::now();
    store
        .record_last_used(vec![(first.clone(), at)])
        .await
        .unwrap();
    let rewritten: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(rewritten["version"], original["version"]);
    assert_eq!(rewritten["events"], original["events"], "the outbox");
    let mut after = records_by_id(&rewritten);
    let used = after.remove(first.as_str()).unwrap();
    assert_eq!(used["last_used_at"], serde_json::to_value(at).unwrap());
    let mut unchanged = before.clone();
    unchanged.remove(first.as_str());
    assert_eq!(after, unchanged, "the other records, byte for byte as JSON");
}

#[test]
fn the_server_accepts_an_old_stores_keys() {
    let (_dir, path, _) = copy();
    let mut command = std::process::Command::new(common::example_binary("axum"));
    command
        .env("APIKEY_STORE", &path)
        .env_remove("DATABASE_URL");
    let (_server, addr, demo) = common::start_example(command);
    assert!(demo.is_none(), "a store with keys gets no demo key");
    for (name, key) in keys() {
        let (status, body) = common::http_get(&addr, "/whoami", Some(&key.key));
        let want = if key.valid { 200 } else { 401 };
        assert_eq!(status, want, "{name}: {body}");
        if key.valid {
            let who: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(who["key_id"], key.id.as_str(), "{name}");
        }
    }
}
