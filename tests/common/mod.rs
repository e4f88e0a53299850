//! Fixtures shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use jiff::Timestamp;
use std::sync::{Arc, Weak};

use tower_apikey::key::{KeyFormat, KeyId, PlaintextKey};
use tower_apikey::record::HashParams;
use tower_apikey::store::ChangeListener;
use tower_apikey::{KeyRecord, KeyStore, MemoryStore, StoreError};

/// A fresh key for `principal`; the record carries the `read` permission.
pub fn issue(principal: &str) -> (KeyRecord, PlaintextKey) {
    let (mut record, key) =
        KeyRecord::generate(principal, &KeyFormat::default(), &HashParams::default()).unwrap();
    record.permissions = vec!["read".into()];
    (record, key)
}

/// A memory store that can be switched off, as a database that went away.
#[derive(Clone, Default)]
pub struct FlakyStore {
    pub inner: MemoryStore,
    down: Arc<AtomicBool>,
    /// How many `record_last_used` batches reached the store.
    pub last_used_writes: Arc<AtomicUsize>,
}

impl FlakyStore {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("connection refused".into()))
        } else {
            Ok(())
        }
    }
}

impl KeyStore for FlakyStore {
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.check()?;
        self.inner.get(id).await
    }

    async fn list(&self, principal: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        self.check()?;
        self.inner.list(principal).await
    }

    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert(record).await
    }

    async fn update(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.check()?;
        self.inner.update(record).await
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete(id).await
    }

    async fn record_last_used(&self, used: Vec<(KeyId, Timestamp)>) -> Result<(), StoreError> {
        self.check()?;
        self.last_used_writes.fetch_add(1, Ordering::SeqCst);
        self.inner.record_last_used(used).await
    }

    fn subscribe(&self, listener: Weak<dyn ChangeListener>) {
        self.inner.subscribe(listener);
    }
}

/// Runs the `tower-apikey` binary with `stdin` and waits for it.
#[cfg(feature = "cli")]
pub fn run_cli(args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_tower-apikey"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before reading stdin closes it: not an error here.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

/// A PostgreSQL database for one test.
#[cfg(feature = "postgres")]
pub mod pg {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tower_apikey::store::{PgKeyStore, TempCluster};

    /// A fresh, empty database, and the throwaway cluster it lives in (none when it is on
    /// DATABASE_URL's server).
    pub struct TestDb {
        pub url: String,
        pub cluster: Option<TempCluster>,
    }

    /// A fresh database with the schema in place, and a store on it.
    pub async fn migrated_store() -> Option<(TestDb, PgKeyStore)> {
        let db = database().await?;
        let store = PgKeyStore::connect(db.url.as_str()).await.unwrap();
        assert_eq!(
            store.migrate().await.unwrap(),
            1,
            "a fresh database takes every migration"
        );
        Some((db, store))
    }

    /// A database on DATABASE_URL's server when that is set, else in a throwaway cluster.
    /// Without PostgreSQL: `None` and a notice, or a failure when TOWER_APIKEY_REQUIRE_PG is
    /// set (as `.ci/run` does).
    pub async fn database() -> Option<TestDb> {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "tak_test_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("DATABASE_URL reachable");
            tokio::spawn(connection);
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("CREATE DATABASE on DATABASE_URL's server");
            let url = if url.contains("://") {
                let (base, _) = url.rsplit_once('/').unwrap();
                format!("{base}/{name}")
            } else {
                format!("{url} dbname={name}")
            };
            return Some(TestDb { url, cluster: None });
        }
        match TempCluster::start() {
            Ok(cluster) => {
                let url = cluster.fresh_database().await.expect("a fresh database");
                Some(TestDb {
                    url,
                    cluster: Some(cluster),
                })
            }
            Err(error) if std::env::var_os("TOWER_APIKEY_REQUIRE_PG").is_some() => {
                panic!("PostgreSQL is required here (TOWER_APIKEY_REQUIRE_PG) but: {error}")
            }
            Err(error) => {
                eprintln!(
                    "SKIPPED: no PostgreSQL ({error}); install the server or set DATABASE_URL"
                );
                None
            }
        }
    }
}
