//! `FileStore` reading arbitrary file contents: never panics. Contents that load are kept
//! whole by the next write; contents that do not are never overwritten.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tower_apikey::hash::HashParams;
use tower_apikey::key::KeyFormat;
use tower_apikey::store::KeyQuery;
use tower_apikey::{FileStore, KeyRecord, KeyStore, StoreError};

struct Fixture {
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        dir: tempfile::tempdir().unwrap(),
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let path = fixture.dir.path().join("apikeys.json");
    let _ = std::fs::remove_file(&path);
    fixture.runtime.block_on(async {
        // A handle opened on an empty store, as a server is; then the file appears.
        let server = FileStore::builder(&path).no_polling().open().await.unwrap();
        std::fs::write(&path, data).unwrap();
        let loaded = FileStore::builder(&path).no_polling().open().await;
        let reloaded = server.reload().await;
        assert_eq!(loaded.is_ok(), reloaded.is_ok(), "open and reload agree");
        let params = HashParams::default().with_iterations(1).unwrap();
        let (record, _) = KeyRecord::generate("fuzz", &KeyFormat::default(), &params).unwrap();
        let written = server.insert(record.clone()).await;
        match loaded {
            Ok(loaded) => {
                let before = loaded.query(&KeyQuery::new()).await.unwrap();
                match written {
                    Ok(()) => {
                        let after = FileStore::builder(&path).no_polling().open().await.unwrap();
                        for r in &before {
                            assert!(after.get(&r.id).await.unwrap().is_some(), "kept {}", r.id);
                        }
                        assert!(after.get(&record.id).await.unwrap().is_some());
                    }
                    // The loaded contents may already hold the new id (vanishingly rare).
                    Err(StoreError::AlreadyExists(_)) => {}
                    Err(error) => panic!("a store that loads takes a write: {error}"),
                }
            }
            Err(error) => {
                assert!(
                    matches!(error, StoreError::Corrupt { .. } | StoreError::Io { .. }),
                    "{error}"
                );
                assert!(
                    written.is_err(),
                    "a file that does not load is not written over"
                );
                assert_eq!(std::fs::read(&path).unwrap(), data, "and is left as it was");
            }
        }
    });
});
