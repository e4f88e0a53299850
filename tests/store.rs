//! One conformance suite for every `KeyStore` backend, and the file store's own promises.

mod common;

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tower_apikey::hash::{HashParams, Pbkdf2Hash, Prf};
use tower_apikey::key::{KeyFormat, KeyId};
use tower_apikey::store::{ChangeListener, KeyQuery, StoreChange};
use tower_apikey::test_util::{check_session_store, check_store_contract};
use tower_apikey::{
    FileStore, KeyRecord, KeyStatus, KeyStore, MemoryStore, StoreError, UsageStore,
};

/// Records what a store publishes.
#[derive(Default)]
struct Recorder(Mutex<Vec<StoreChange>>);

impl ChangeListener for Recorder {
    fn on_change(&self, change: &StoreChange) {
        self.0.lock().unwrap().push(change.clone());
    }
}

impl Recorder {
    fn take(&self) -> Vec<StoreChange> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn record(principal: &str) -> KeyRecord {
    let hash: Pbkdf2Hash = "2:000102030405060708090a0b:000102030405060708090a0b0c0d0e0f"
        .parse()
        .unwrap();
    KeyRecord::new(KeyId::generate().unwrap(), principal, hash, Prf::Sha256)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    check_store_contract(|| async {
        let store = MemoryStore::new();
        (store.clone(), store)
    })
    .await;
}

/// Two handles on one new file at `path`, as two processes would hold.
async fn two_handles_on_a_fresh_file(path: std::path::PathBuf) -> (FileStore, FileStore) {
    let one = FileStore::open(&path).await.unwrap();
    (one, FileStore::open(&path).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_keeps_sessions() {
    check_session_store(|| async {
        let store = MemoryStore::new();
        (store.clone(), store)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_keeps_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    check_session_store(|| {
        n += 1;
        two_handles_on_a_fresh_file(dir.path().join(format!("keys{n}.json")))
    })
    .await;
}

/// Two stores (two servers) on a fresh, migrated database: in `cluster`, or on DATABASE_URL's
/// server.
#[cfg(feature = "postgres")]
async fn two_servers_on_a_fresh_database(
    cluster: Option<&tower_apikey::test_util::TempCluster>,
) -> (
    tower_apikey::store::PgKeyStore,
    tower_apikey::store::PgKeyStore,
) {
    let url = match cluster {
        Some(cluster) => cluster.fresh_database().await.unwrap(),
        None => common::pg::database().await.unwrap().url,
    };
    let store = tower_apikey::store::PgKeyStore::connect(url.as_str())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let other = tower_apikey::store::PgKeyStore::connect(url.as_str())
        .await
        .unwrap();
    (store, other)
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_keeps_sessions() {
    let Some((db, _)) = common::pg::migrated_store().await else {
        return;
    };
    let cluster = db.cluster.as_ref();
    check_session_store(|| two_servers_on_a_fresh_database(cluster)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    // One cluster, a fresh database per rule.
    let Some((db, store)) = common::pg::migrated_store().await else {
        return;
    };
    assert_eq!(store.migrate().await.unwrap(), 0, "migrations apply once");
    drop(store);
    let cluster = db.cluster.as_ref();
    check_store_contract(|| two_servers_on_a_fresh_database(cluster)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_limit_holds_across_stores_writing_at_once() {
    let Some((db, first)) = common::pg::migrated_store().await else {
        return;
    };
    // Eight servers' stores race for two slots.
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(
            tower_apikey::store::PgKeyStore::connect(db.url.as_str())
                .await
                .unwrap(),
        );
    }
    assert_eq!(race_for_two_slots(stores).await, 2);
    assert_eq!(
        first
            .query(&KeyQuery::new().principal("frank"))
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    check_store_contract(|| {
        n += 1;
        two_handles_on_a_fresh_file(dir.path().join(format!("keys{n}.json")))
    })
    .await;
}

#[tokio::test]
async fn file_store_persists_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let store = FileStore::open(&path).await.unwrap();
    let (rec, _key) =
        KeyRecord::generate("alice", &KeyFormat::default(), &HashParams::default()).unwrap();
    store.insert(rec.clone()).await.unwrap();
    drop(store);
    let again = FileStore::open(&path).await.unwrap();
    assert_eq!(again.get(&rec.id).await.unwrap(), Some(rec));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key file is readable by its owner only");
    }
}

#[tokio::test]
async fn file_store_sees_another_process_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let server = FileStore::open(&path).await.unwrap();
    let recorder = Arc::new(Recorder::default());
    server.subscribe(Arc::downgrade(&recorder) as Weak<dyn ChangeListener>);
    // Another handle with no watcher, as the CLI opens it.
    let cli = FileStore::builder(&path).no_polling().open().await.unwrap();
    let rec = record("alice");
    cli.insert(rec.clone()).await.unwrap();

    let started = Instant::now();
    while server.get(&rec.id).await.unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "change not seen within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(recorder
        .take()
        .contains(&StoreChange::Changed(rec.id.clone())));

    let mut revoked = rec.clone();
    revoked.status = KeyStatus::Revoked;
    cli.replace(&rec, revoked).await.unwrap();
    let started = Instant::now();
    while server.get(&rec.id).await.unwrap().unwrap().status != KeyStatus::Revoked {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "revocation not seen within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(recorder.take(), vec![StoreChange::Changed(rec.id.clone())]);
}

#[tokio::test]
async fn file_store_limit_holds_across_handles_writing_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let mut handles = Vec::new();
    for _ in 0..8 {
        handles.push(FileStore::builder(&path).no_polling().open().await.unwrap());
    }
    // Eight writers (as eight processes would, each with its own view) race for two slots.
    assert_eq!(race_for_two_slots(handles).await, 2);
    let fresh = FileStore::open(&path).await.unwrap();
    assert_eq!(
        fresh
            .query(&KeyQuery::new().principal("frank"))
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn file_store_writers_do_not_lose_each_others_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    // Handles that never reload: each must re-read under the lock before writing.
    let mut handles = Vec::new();
    for _ in 0..4 {
        handles.push(FileStore::builder(&path).no_polling().open().await.unwrap());
    }
    let mut tasks = Vec::new();
    for (i, store) in handles.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                store.insert(record(&format!("p{i}"))).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let reopened = FileStore::open(&path).await.unwrap();
    assert_eq!(reopened.query(&KeyQuery::new()).await.unwrap().len(), 40);
}

#[tokio::test]
async fn file_store_never_overwrites_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    std::fs::write(&path, "{ not json").unwrap();
    assert!(matches!(
        FileStore::open(&path).await,
        Err(StoreError::Corrupt { .. })
    ));

    // A good store whose file is later damaged keeps its last good contents, and refuses
    // to write over the damage.
    std::fs::remove_file(&path).unwrap();
    let store = FileStore::builder(&path)
        .poll_interval(Duration::from_millis(20))
        .open()
        .await
        .unwrap();
    let rec = record("alice");
    store.insert(rec.clone()).await.unwrap();
    std::fs::write(
        &path,
        "{\"version\": 1, \"keys\": [ {\"id\": \"bad id\"} ]}",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        store.get(&rec.id).await.unwrap().is_some(),
        "last good contents stay in use"
    );
    assert!(matches!(
        store.insert(record("bob")).await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(
        std::fs::read_to_string(&path).unwrap().contains("bad id"),
        "the damaged file is left for a person to see"
    );

    std::fs::write(&path, "{\"version\": 7, \"keys\": []}").unwrap();
    let err = FileStore::open(&path).await.unwrap_err();
    assert!(err.to_string().contains("version 7"), "{err}");
}

#[tokio::test]
async fn file_store_last_use_writes_evict_no_cache_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let params = HashParams::default().with_iterations(1).unwrap();
    let (record, key) = KeyRecord::generate("alice", &KeyFormat::default(), &params).unwrap();
    let id = record.id.clone();
    let writer = FileStore::builder(&path).no_polling().open().await.unwrap();
    writer.insert(record).await.unwrap();
    // Another process's server, watching the file.
    let server_store = FileStore::builder(&path)
        .poll_interval(Duration::from_millis(50))
        .open()
        .await
        .unwrap();
    let recorder = Arc::new(Recorder::default());
    server_store.subscribe(Arc::downgrade(&recorder) as Weak<dyn ChangeListener>);

    let now = jiff::Timestamp::now();
    writer
        .record_last_used(vec![(id.clone(), now)])
        .await
        .unwrap();
    let started = Instant::now();
    while server_store
        .get(&id)
        .await
        .unwrap()
        .unwrap()
        .usage
        .last_used_at
        .is_none()
    {
        assert!(started.elapsed() < Duration::from_secs(2), "reloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        recorder.take().is_empty(),
        "last use is not a change to publish"
    );
    // An older time does not replace a newer one.
    writer
        .record_last_used(vec![(
            id.clone(),
            now - jiff::SignedDuration::from_hours(1),
        )])
        .await
        .unwrap();
    assert_eq!(
        writer.get(&id).await.unwrap().unwrap().usage.last_used_at,
        Some(now)
    );
    // A real change still is published.
    let read = writer.get(&id).await.unwrap().unwrap();
    let mut revoked = read.clone();
    revoked.status = KeyStatus::Revoked;
    writer.replace(&read, revoked).await.unwrap();
    let started = Instant::now();
    while recorder.take().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(2), "published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(key);
}

/// Each store inserts a key for one principal at once, under a limit of two; returns how
/// many got in.
async fn race_for_two_slots<S: KeyStore>(stores: Vec<S>) -> usize {
    let tasks: Vec<_> = stores
        .into_iter()
        .map(|store| tokio::spawn(async move { store.insert_limited(record("frank"), 2).await }))
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::LimitReached { .. }) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    ok
}

#[tokio::test]
async fn a_poll_interval_that_would_spin_is_refused_not_clamped() {
    let dir = tempfile::tempdir().unwrap();
    for interval in [Duration::ZERO, Duration::from_millis(9)] {
        let opened = FileStore::builder(dir.path().join("keys.json"))
            .poll_interval(interval)
            .open()
            .await;
        let error = opened.expect_err("a poll interval under 10 ms");
        assert!(matches!(error, StoreError::Config(_)), "{error:?}");
        assert!(error.to_string().contains("poll interval"), "{error}");
    }
    FileStore::builder(dir.path().join("keys.json"))
        .poll_interval(Duration::from_millis(10))
        .open()
        .await
        .unwrap();
}

/// The search's trigram indexes where pg_trgm can be had; where it cannot (a role that may
/// not create extensions), the migration still applies and the search still finds keys.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_search_uses_trigram_indexes_and_works_without_them() {
    use tower_apikey::store::PgKeyStore;

    let Some((db, store)) = common::pg::migrated_store().await else {
        return;
    };
    let search_indexes = |url: String| async move {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'tower_apikey_keys_search_%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        n
    };
    assert_eq!(search_indexes(db.url.clone()).await, 4);
    let finds = |store: PgKeyStore| async move {
        let mut named = record("alice");
        named.name = Some("Nightly_Export 100%".into());
        store.insert(named.clone()).await.unwrap();
        store.insert(record("bob")).await.unwrap();
        for (text, want) in [("_export 100%", 1), ("LICE", 1), ("y_e", 1), ("zzz", 0)] {
            let found = store.query(&KeyQuery::new().search(text)).await.unwrap();
            assert_eq!(found.len(), want, "search {text:?}");
        }
    };
    finds(store).await;

    // Without pg_trgm: a role that owns nothing but its schema rights.
    let Some(cluster) = db.cluster.as_ref() else {
        return; // DATABASE_URL's server: its roles are not ours to make.
    };
    let url = cluster.fresh_database().await.unwrap();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE ROLE limited LOGIN; GRANT CREATE, USAGE ON SCHEMA public TO limited; \
             DROP EXTENSION IF EXISTS pg_trgm",
        )
        .await
        .unwrap();
    let limited = url.replace("user=postgres", "user=limited");
    let store = PgKeyStore::connect(limited.as_str()).await.unwrap();
    store
        .migrate()
        .await
        .expect("the migration applies without pg_trgm");
    assert_eq!(search_indexes(limited.clone()).await, 0);
    finds(store).await;
}

/// A quota period that starts after the statement's `now()` (a lease statement that waited for
/// the row lock while another began the first period) is the current one: nothing is
/// refilled. PostgreSQL once counted it as a period ended and refilled the quota (109 of 100
/// leased to 16 racers, seen in CI under load).
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_never_refills_a_quota_for_a_period_that_starts_later() {
    use tower_apikey::UsageStore;

    let Some((db, store)) = common::pg::migrated_store().await else {
        return;
    };
    let mut key = record("quentin");
    key.quota = Some("100/1d".parse().unwrap());
    store.insert(key.clone()).await.unwrap();
    assert_eq!(store.take_quota(&key.id, 100).await.unwrap().granted, 100);
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute(
            "UPDATE tower_apikey_keys SET quota_period_start = now() + interval '10 seconds' \
             WHERE id = $1",
            &[&key.id.as_str()],
        )
        .await
        .unwrap();
    let grant = store.take_quota(&key.id, 5).await.unwrap();
    assert_eq!(
        (grant.granted, grant.remaining),
        (0, 0),
        "refilled: {grant:?}"
    );
}
