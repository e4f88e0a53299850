//! The CLI's `import` input: an export (JSON) or a Maximo key export (CSV or JSON). Never
//! panics; what imports is in the store afterwards, all of it or (on an error) none of it.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tower_apikey::lifecycle::{Export, MaximoKey};
use tower_apikey::store::KeyQuery;
use tower_apikey::{KeyManager, KeyStore, MemoryStore};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let [format, input @ ..] = data else { return };
    runtime().block_on(async {
        let store = MemoryStore::new();
        let keys = KeyManager::new(store.clone());
        if format % 2 == 0 {
            let Ok(export) = serde_json::from_slice::<Export>(input) else {
                return;
            };
            let ids: Vec<_> = export.keys.iter().map(|r| r.id.clone()).collect();
            match keys.import(export).await {
                Ok(n) => {
                    assert_eq!(n, ids.len());
                    for id in &ids {
                        assert!(store.get(id).await.unwrap().is_some(), "{id} imported");
                    }
                }
                Err(_) => assert!(
                    store.query(&KeyQuery::new()).await.unwrap().is_empty(),
                    "all or none"
                ),
            }
        } else {
            let Ok(rows) = MaximoKey::parse_export(input) else {
                return;
            };
            let n = rows.len();
            match keys.import_maximo(rows).await {
                Ok(records) => {
                    assert_eq!(records.len(), n);
                    for record in &records {
                        let stored = store.get(&record.id).await.unwrap().expect("imported");
                        assert!(stored.legacy, "a Maximo key is a legacy record");
                    }
                }
                Err(_) => assert!(
                    store.query(&KeyQuery::new()).await.unwrap().is_empty(),
                    "all or none"
                ),
            }
        }
    });
});
