//! One conformance suite for every `KeyStore` backend, and the file store's own promises.

mod common;

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tower_apikey::key::{KeyFormat, KeyId};
use tower_apikey::record::{HashParams, Pbkdf2Hash, Prf};
use tower_apikey::store::{ChangeListener, KeyQuery, StoreChange};
use tower_apikey::{FileStore, KeyRecord, KeyStatus, KeyStore, MemoryStore, StoreError};

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

/// What every backend must do.
async fn conformance<S: KeyStore>(store: S) {
    let recorder = Arc::new(Recorder::default());
    let weak: Weak<dyn ChangeListener> = Arc::downgrade(&recorder) as Weak<dyn ChangeListener>;
    store.subscribe(weak);

    // Empty.
    let missing = KeyId::new("missing").unwrap();
    assert!(store.get(&missing).await.unwrap().is_none());
    assert!(store.list(None).await.unwrap().is_empty());

    // Insert and get back every field.
    let mut a = record("alice");
    a.name = Some("ci".into());
    a.description = Some("deploys".into());
    a.permissions = vec!["read".into(), "write".into()];
    a.expires_at = Some("2030-01-01T00:00:00Z".parse().unwrap());
    a.created_by = Some("ops".into());
    a.updated_at = Some("2026-01-02T00:00:00Z".parse().unwrap());
    a.updated_by = Some("cli:root".into());
    a.protected = true;
    a.last_used_at = Some("2026-01-03T00:00:00Z".parse().unwrap());
    a.legacy = true;
    a.lookup_digest = Some("ab".repeat(32));
    store.insert(a.clone()).await.unwrap();
    assert_eq!(store.get(&a.id).await.unwrap().as_ref(), Some(&a));
    assert_eq!(recorder.take(), vec![StoreChange::Changed(a.id.clone())]);

    // Duplicate ids are refused and change nothing.
    let mut dup = record("mallory");
    dup.id = a.id.clone();
    assert!(matches!(store.insert(dup).await, Err(StoreError::AlreadyExists(id)) if id == a.id));
    assert_eq!(store.get(&a.id).await.unwrap().unwrap().principal, "alice");
    assert!(recorder.take().is_empty());

    // List, all and by principal, ordered by id.
    let b = record("alice");
    let c = record("bob");
    store.insert(b.clone()).await.unwrap();
    store.insert(c.clone()).await.unwrap();
    recorder.take();
    let all = store.list(None).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(
        all.windows(2).all(|w| w[0].id < w[1].id),
        "list is ordered by id"
    );
    let alice: Vec<KeyId> = store
        .list(Some("alice"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut expected = vec![a.id.clone(), b.id.clone()];
    expected.sort();
    assert_eq!(alice, expected);
    assert!(store.list(Some("nobody")).await.unwrap().is_empty());

    // Update.
    let mut revoked = a.clone();
    revoked.status = KeyStatus::Revoked;
    store.update(revoked.clone()).await.unwrap();
    assert_eq!(
        store.get(&a.id).await.unwrap().unwrap().status,
        KeyStatus::Revoked
    );
    assert_eq!(recorder.take(), vec![StoreChange::Changed(a.id.clone())]);
    let ghost = record("ghost");
    assert!(
        matches!(store.update(ghost.clone()).await, Err(StoreError::NotFound(id)) if id == ghost.id)
    );
    assert!(store.get(&ghost.id).await.unwrap().is_none());

    // Delete.
    assert!(store.delete(&b.id).await.unwrap());
    assert!(!store.delete(&b.id).await.unwrap());
    assert!(store.get(&b.id).await.unwrap().is_none());
    assert_eq!(recorder.take(), vec![StoreChange::Changed(b.id.clone())]);
    assert_eq!(store.list(None).await.unwrap().len(), 2);

    // Limited insert: live keys count (deactivated too), revoked and expired ones do not.
    let limit = 2;
    let carol = |status, expired: bool| {
        let mut r = record("carol");
        r.status = status;
        if expired {
            r.expires_at = Some("2020-01-01T00:00:00Z".parse().unwrap());
        }
        r
    };
    store
        .insert(carol(KeyStatus::Revoked, false))
        .await
        .unwrap();
    store.insert(carol(KeyStatus::Active, true)).await.unwrap();
    store
        .insert_limited(carol(KeyStatus::Inactive, false), limit)
        .await
        .unwrap();
    store
        .insert_limited(carol(KeyStatus::Active, false), limit)
        .await
        .unwrap();
    recorder.take();
    let third = carol(KeyStatus::Active, false);
    assert!(matches!(
        store.insert_limited(third.clone(), limit).await,
        Err(StoreError::LimitReached { principal, limit: 2 }) if principal == "carol"
    ));
    assert!(store.get(&third.id).await.unwrap().is_none());
    assert!(recorder.take().is_empty());
    store.insert_limited(record("dave"), 1).await.unwrap();
    assert!(matches!(
        store.insert_limited(record("dave"), 1).await,
        Err(StoreError::LimitReached { .. })
    ));

    // Many at once: all or none.
    let before = store.list(None).await.unwrap().len();
    let batch: Vec<KeyRecord> = (0..5).map(|_| record("erin")).collect();
    let mut clash = batch.clone();
    clash.push(c.clone());
    assert!(
        matches!(store.insert_many(clash).await, Err(StoreError::AlreadyExists(id)) if id == c.id)
    );
    assert_eq!(
        store.list(None).await.unwrap().len(),
        before,
        "nothing added"
    );
    let mut twice = batch.clone();
    twice.push(batch[0].clone());
    assert!(matches!(
        store.insert_many(twice).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(
        store.list(None).await.unwrap().len(),
        before,
        "nothing added"
    );
    recorder.take();
    store.insert_many(batch.clone()).await.unwrap();
    assert_eq!(store.list(Some("erin")).await.unwrap().len(), 5);
    let mut published = recorder.take();
    published.sort_by_key(|c| format!("{c:?}"));
    let mut expected: Vec<StoreChange> = batch
        .iter()
        .map(|r| StoreChange::Changed(r.id.clone()))
        .collect();
    expected.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(published, expected, "each record added is published");

    // Last use: recorded without a change published; a later time is kept; unknown ids
    // are skipped.
    let at: jiff::Timestamp = "2026-05-01T00:00:00Z".parse().unwrap();
    let earlier = at - jiff::SignedDuration::from_hours(1);
    store
        .record_last_used(vec![(c.id.clone(), at), (KeyId::new("ghost").unwrap(), at)])
        .await
        .unwrap();
    store
        .record_last_used(vec![(c.id.clone(), earlier)])
        .await
        .unwrap();
    assert_eq!(
        store.get(&c.id).await.unwrap().unwrap().last_used_at,
        Some(at)
    );
    assert!(store
        .get(&KeyId::new("ghost").unwrap())
        .await
        .unwrap()
        .is_none());
    assert!(recorder.take().is_empty(), "last use is not a change");

    // Replace: only over the record as read. A last use noted meanwhile is no conflict, and
    // is kept; any other change is, and nothing is written.
    let read = store.get(&c.id).await.unwrap().unwrap();
    let mut renamed = read.clone();
    renamed.name = Some("renamed".into());
    renamed.last_used_at = None;
    let later = at.checked_add(jiff::SignedDuration::from_secs(5)).unwrap();
    store
        .record_last_used(vec![(c.id.clone(), later)])
        .await
        .unwrap();
    store.replace(&read, renamed.clone()).await.unwrap();
    let now_stored = store.get(&c.id).await.unwrap().unwrap();
    assert_eq!(now_stored.name.as_deref(), Some("renamed"));
    assert_eq!(
        now_stored.last_used_at,
        Some(later),
        "the later use is kept"
    );
    assert_eq!(recorder.take(), vec![StoreChange::Changed(c.id.clone())]);

    let mut revoked = now_stored.clone();
    revoked.status = KeyStatus::Revoked;
    store.update(revoked).await.unwrap();
    recorder.take();
    let mut stale = now_stored.clone(); // read before the revocation
    stale.name = Some("stale".into());
    assert!(matches!(
        store.replace(&now_stored, stale).await,
        Err(StoreError::Conflict(id)) if id == c.id
    ));
    let kept = store.get(&c.id).await.unwrap().unwrap();
    assert_eq!(kept.status, KeyStatus::Revoked, "the revocation stands");
    assert_eq!(kept.name.as_deref(), Some("renamed"));
    assert!(
        recorder.take().is_empty(),
        "a refused replace is not a change"
    );
    let mut ghost = kept.clone();
    ghost.id = KeyId::new("ghost").unwrap();
    assert!(matches!(
        store.replace(&ghost, ghost.clone()).await,
        Err(StoreError::NotFound(_))
    ));

    // Pages of a query: the same records as filtering the whole list, in id order.
    let all = store.list(None).await.unwrap();
    assert!(all.len() >= 3);
    let ids = |records: &[KeyRecord]| records.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    let deploys = store
        .query(&KeyQuery::new().search("DEPLOY"))
        .await
        .unwrap();
    assert_eq!(
        ids(&deploys),
        vec![a.id.clone()],
        "search ignores case, reads descriptions"
    );
    let by_name = store
        .query(&KeyQuery::new().search("Renamed"))
        .await
        .unwrap();
    assert_eq!(ids(&by_name), vec![c.id.clone()]);
    let by_id = store
        .query(&KeyQuery::new().search(a.id.as_str()[2..9].to_lowercase()))
        .await
        .unwrap();
    assert_eq!(ids(&by_id), vec![a.id.clone()]);
    let odd = store.query(&KeyQuery::new().search("%_")).await.unwrap();
    assert!(odd.is_empty(), "search text is not a pattern");
    for query in [
        KeyQuery::new(),
        KeyQuery::new().principal("alice"),
        KeyQuery::new().status(KeyStatus::Revoked),
        KeyQuery::new().principal("alice").status(KeyStatus::Active),
        KeyQuery::new().search("ALICE"),
    ] {
        let expected: Vec<KeyId> = all
            .iter()
            .filter(|r| query.matches(r))
            .map(|r| r.id.clone())
            .collect();
        assert_eq!(
            ids(&store.query(&query).await.unwrap()),
            expected,
            "{query:?}"
        );
        // One at a time, each page after the last: every record once, in order.
        let mut paged = Vec::new();
        let mut page = query.clone().limit(1);
        loop {
            let got = store.query(&page).await.unwrap();
            assert!(got.len() <= 1);
            let Some(last) = got.last() else { break };
            paged.push(last.id.clone());
            page = page.after(last.id.clone());
        }
        assert_eq!(paged, expected, "{query:?} paged");
    }
    assert!(recorder.take().is_empty(), "a query is not a change");

    // Legacy records, and only those.
    let legacy: Vec<KeyId> = store
        .list_legacy()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(legacy, vec![a.id.clone()]);

    // A dropped listener is forgotten, not called.
    drop(recorder);
    store.delete(&c.id).await.unwrap();
}

#[tokio::test]
async fn memory_store_conforms() {
    conformance(MemoryStore::new()).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_store_conforms() {
    let Some((db, store)) = common::pg::migrated_store().await else {
        return;
    };
    assert_eq!(store.migrate().await.unwrap(), 0, "migrations apply once");
    drop(store);
    // What this store publishes itself, at once; following other writers is the fleet
    // tests' concern (a follower repeats these changes, whenever it next reads the log).
    let store = tower_apikey::store::PgKeyStore::builder(db.url.as_str())
        .follow_changes(false)
        .connect()
        .await
        .unwrap();
    conformance(store).await;
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
    assert_eq!(first.list(Some("frank")).await.unwrap().len(), 2);
}

#[tokio::test]
async fn file_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(FileStore::open(dir.path().join("keys.json")).await.unwrap()).await;
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
    cli.update(revoked).await.unwrap();
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
    assert_eq!(fresh.list(Some("frank")).await.unwrap().len(), 2);
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
    assert_eq!(reopened.list(None).await.unwrap().len(), 40);
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
    let params = HashParams::default().iterations(1).unwrap();
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
        writer.get(&id).await.unwrap().unwrap().last_used_at,
        Some(now)
    );
    // A real change still is published.
    let mut revoked = writer.get(&id).await.unwrap().unwrap();
    revoked.status = KeyStatus::Revoked;
    writer.update(revoked).await.unwrap();
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
