//! A fleet of servers on one PostgreSQL database behaves as one: revocations reach every
//! server within a second (within the poll interval without notifications), and a database
//! that goes away and comes back needs no restart.
#![cfg(feature = "postgres")]

mod common;

use std::time::{Duration, Instant};

use tower_apikey::hash::HashParams;
use tower_apikey::key::PresentedKey;
use tower_apikey::store::PgKeyStore;
use tower_apikey::validator::RejectReason;
use tower_apikey::{KeyManager, NewKey, ValidationError, Validator};

fn presented(key: &str) -> PresentedKey {
    PresentedKey::new(key.as_bytes()).unwrap()
}

/// `n` servers' validators, each with a store (pool and change follower) of its own.
async fn servers(url: &str, n: usize, listen: bool, poll: Duration) -> Vec<Validator> {
    let mut validators = Vec::new();
    for _ in 0..n {
        let store = PgKeyStore::builder(url)
            .listen(listen)
            .poll_interval(poll)
            .connect()
            .await
            .unwrap();
        validators.push(Validator::builder(store).build());
    }
    // Let each follower read where the change log stands.
    tokio::time::sleep(Duration::from_millis(300)).await;
    validators
}

fn admin(store: PgKeyStore) -> KeyManager {
    KeyManager::new(store)
        .hash_params(HashParams::default().with_iterations(1).unwrap())
        .max_keys_per_principal(std::num::NonZeroUsize::new(1_000).unwrap())
}

/// Revokes `n` keys one by one, each cached on every server first; returns how long each
/// took to be refused by all of them.
async fn propagation(keys: &KeyManager, fleet: &[Validator], n: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let (record, key) = keys.issue(NewKey::new(format!("user{i}"))).await.unwrap();
        let key = presented(key.expose());
        for server in fleet {
            cache(server, &key).await;
        }
        let started = Instant::now();
        keys.revoke(&record.id).await.unwrap();
        for server in fleet {
            while matches!(server.validate_cached(&key), Some(Ok(_))) {
                assert!(started.elapsed() < Duration::from_secs(5), "never refused");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        times.push(started.elapsed());
        for server in fleet {
            assert!(matches!(
                server.validate(&key).await,
                Err(ValidationError::Rejected(RejectReason::Revoked))
            ));
        }
    }
    times.sort();
    times
}

/// Validates `key` on `server` until it is cached. The insert's own change notification may
/// arrive after the first fill and drop it: servers evict on every change they hear of.
async fn cache(server: &Validator, key: &PresentedKey) {
    let started = Instant::now();
    while !matches!(server.validate_cached(key), Some(Ok(_))) {
        server.validate(key).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "never cached");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_refuse_a_revoked_key_within_a_second() {
    let Some((db, store)) = common::pg::migrated_store().await else {
        return;
    };
    // The revoking admin is a fourth process: the three servers hear of it only through
    // the database.
    let keys = admin(store);
    let fleet = servers(&db.url, 3, true, Duration::from_secs(1)).await;
    let times = propagation(&keys, &fleet, 100).await;
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    println!(
        "fleet of 3, LISTEN/NOTIFY: revocation refused everywhere after p50 {p50:?}, p99 {p99:?}, max {:?} (100 revocations)",
        times[times.len() - 1]
    );
    assert!(times[times.len() - 1] < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notifications_the_poll_interval_bounds_propagation() {
    let Some((db, store)) = common::pg::migrated_store().await else {
        return;
    };
    let keys = admin(store);
    let poll = Duration::from_millis(250);
    let fleet = servers(&db.url, 3, false, poll).await;
    let times = propagation(&keys, &fleet, 20).await;
    let (p50, max) = (percentile(&times, 0.5), times[times.len() - 1]);
    println!(
        "fleet of 3, polling every {poll:?}, no NOTIFY: p50 {p50:?}, max {max:?} (20 revocations)"
    );
    assert!(max < poll + Duration::from_millis(200), "{max:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_and_coming_back_needs_no_restart() {
    let Some(db) = common::pg::database().await else {
        return;
    };
    let Some(cluster) = db.cluster.as_ref() else {
        eprintln!("SKIPPED: stopping the database needs a throwaway cluster, not DATABASE_URL");
        return;
    };
    let store = PgKeyStore::connect(db.url.as_str()).await.unwrap();
    store.migrate().await.unwrap();
    let keys = admin(store);
    let server = servers(&db.url, 1, true, Duration::from_millis(500))
        .await
        .remove(0);
    let (cached_record, cached) = keys.issue(NewKey::new("cached")).await.unwrap();
    let (_, cold) = keys.issue(NewKey::new("cold")).await.unwrap();
    let (cached, cold) = (presented(cached.expose()), presented(cold.expose()));
    // Let the server hear of both inserts, then cache one key.
    tokio::time::sleep(Duration::from_millis(300)).await;
    cache(&server, &cached).await;

    cluster.stop().unwrap();
    // Cached keys keep working; cold ones are "try again later", never "invalid".
    for _ in 0..20 {
        assert!(server.validate(&cached).await.is_ok());
    }
    let started = Instant::now();
    assert!(matches!(
        server.validate(&cold).await,
        Err(ValidationError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(5), "fails fast");

    cluster.start_again().unwrap();
    // The pool reconnects by itself.
    let started = Instant::now();
    loop {
        match server.validate(&cold).await {
            Ok(_) => break,
            Err(ValidationError::Unavailable(_)) => {}
            Err(other) => panic!("unexpected {other}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A revocation made by another process as the database comes back is honoured: the
    // server's follower reconnects and reads the change log from where it stopped.
    let started = Instant::now();
    while keys.revoke(&cached_record.id).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "admin never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    while server.validate(&cached).await.is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "revocation never seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "after the restart, the revocation was refused within {:?}",
        started.elapsed()
    );
}

/// The axum example's `/ready` follows the database: 503 within the check's timeout once it
/// stops, 200 once it is back, with no restart. `/health` stays 200 throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_the_database_without_a_restart() {
    let Some(db) = common::pg::database().await else {
        return;
    };
    let Some(cluster) = db.cluster.as_ref() else {
        eprintln!("SKIPPED: stopping the database needs a throwaway cluster, not DATABASE_URL");
        return;
    };
    let mut command = std::process::Command::new(common::example_binary("axum"));
    command.env("DATABASE_URL", &db.url);
    let (_server, addr, _demo) = common::start_example(command);
    let status_within = |path: &str, want: u16, bound: Duration| {
        let started = Instant::now();
        loop {
            let (status, _) = common::http_get(&addr, path, None);
            if status == want {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < bound,
                "{path} not {want} within {bound:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    status_within("/ready", 200, Duration::from_secs(5));

    // The throwaway cluster commits asynchronously: let the schema reach the disk first.
    std::thread::sleep(Duration::from_secs(1));
    cluster.stop().unwrap();
    // The check's own timeout is 1 s; a stopped server refuses connections at once.
    status_within("/ready", 503, Duration::from_secs(3));
    assert_eq!(common::http_get(&addr, "/health", None).0, 200);

    cluster.start_again().unwrap();
    status_within("/ready", 200, Duration::from_secs(10));
}
