//! Scale: a million records in the memory and file stores, and a million cached keys.
//!
//! - **Cold lookup at 1M vs 1k**: the same probe keys (the Maximo form: SHA-1, 1000
//!   iterations) planted in a 1k-record and a 1M-record store, each validated cold (store
//!   read + one PBKDF2) by a fresh validator; rounds alternate small, large, small, large so
//!   drift hits both. The store read alone is timed the same way.
//! - **File store at 1M**: the file's size, the time to open (read and parse) it, and the
//!   resident memory it adds.
//! - **Memory per cached key**: resident memory before and after a validator caches N keys
//!   (read from `/proc/self/statm`, so what the allocator really holds, not an estimate).
//! - **Legacy scan**: an opaque key that matches none of N imported Maximo records (SHA-1,
//!   1000 iterations) scans them all, uncapped here; its time against one cold lookup of a
//!   key in this crate's format, measured alternately.
//!
//! - **PostgreSQL**: cold lookups at 1k and 1M records; what the admin console asks at 1M
//!   records (a page of the listing, first, by principal, searched; a key's usage over 90
//!   days by the hour and by the day; the busiest keys of 30 days) against 90 days of hourly
//!   usage for 1,000 keys and an hour of it for every key, each timed alone (target 50 ms).
//!
//! `cargo bench --bench scale` runs at 1M (a few minutes with PostgreSQL; `-- postgres` for
//! that part alone); `-- --test` (as `bench/run.sh smoke` passes) at 10k.

use std::time::{Duration, Instant};

use tower_apikey::hash::{HashParams, Pbkdf2Hash};
use tower_apikey::key::{KeyFormat, KeyId, PresentedKey};
use tower_apikey::lifecycle::MaximoKey;
use tower_apikey::store::KeyQuery;
use tower_apikey::{
    FileStore, KeyManager, KeyRecord, KeyStore, MemoryStore, UsageStore, ValidationError, Validator,
};

/// Probe keys per store, validated cold in every round.
const PROBES: usize = 100;
const ROUNDS: usize = 5;

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("statm's second field");
    pages * 4096
}

/// `n` records hashed with one iteration (filling is setup, not what is measured) plus the
/// probes, hashed as Maximo does; returns the records and the probes' keys.
fn records(n: usize, probes: &[(KeyRecord, String)]) -> Vec<KeyRecord> {
    let format = KeyFormat::default();
    let cheap = HashParams::default().with_iterations(1).unwrap();
    let mut records: Vec<KeyRecord> = (0..n - probes.len())
        .map(|i| {
            KeyRecord::generate(format!("user{i}"), &format, &cheap)
                .unwrap()
                .0
        })
        .collect();
    records.extend(probes.iter().map(|(r, _)| r.clone()));
    records
}

fn probes() -> Vec<(KeyRecord, String)> {
    let format = KeyFormat::default();
    (0..PROBES)
        .map(|i| {
            let (record, key) =
                KeyRecord::generate(format!("probe{i}"), &format, &HashParams::default()).unwrap();
            (record, key.expose().to_owned())
        })
        .collect()
}

/// Mean time of one cold validation of each probe, by a fresh validator over `store`.
async fn cold_lookup<S: UsageStore + Clone>(store: &S, probes: &[(KeyRecord, String)]) -> Duration {
    let validator = Validator::builder(store.clone()).build();
    let started = Instant::now();
    for (_, key) in probes {
        let key = PresentedKey::new(key.as_bytes()).unwrap();
        validator
            .validate(&key)
            .await
            .expect("a probe key is valid");
    }
    started.elapsed() / probes.len() as u32
}

/// Mean time of one store read of each probe's id.
async fn store_read<S: KeyStore>(store: &S, probes: &[(KeyRecord, String)]) -> Duration {
    let started = Instant::now();
    for _ in 0..100 {
        for (record, _) in probes {
            assert!(store.get(&record.id).await.unwrap().is_some());
        }
    }
    started.elapsed() / (100 * probes.len()) as u32
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Cold lookups in the small and the large store, alternating; prints the ratio.
async fn compare<S: UsageStore + Clone>(
    label: &str,
    small: &S,
    large: &S,
    probes: &[(KeyRecord, String)],
    sizes: (usize, usize),
    target: &str,
) {
    let (mut cold_small, mut cold_large, mut read_small, mut read_large) =
        (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        cold_small.push(cold_lookup(small, probes).await);
        cold_large.push(cold_lookup(large, probes).await);
        read_small.push(store_read(small, probes).await);
        read_large.push(store_read(large, probes).await);
    }
    let (cs, cl) = (median(cold_small), median(cold_large));
    let (rs, rl) = (median(read_small), median(read_large));
    println!(
        "scale {label}: cold lookup at {} records {:.2}x at {} (target <= {target}); store read alone {:.2}x",
        sizes.1,
        cl.as_secs_f64() / cs.as_secs_f64(),
        sizes.0,
        rl.as_secs_f64() / rs.as_secs_f64(),
    );
}

/// An admin listing's page of 50 (a search on the name, from the middle of the ids) read with
/// `KeyStore::query`, against the whole list filtered in memory, alternating.
async fn admin_page<S: KeyStore>(label: &str, store: &S, n: usize) {
    let query = KeyQuery::new()
        .search("USER")
        .after(KeyId::new("M").unwrap())
        .limit(51);
    let (mut paged, mut listed) = (vec![], vec![]);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let page = store.query(&query).await.unwrap();
        paged.push(started.elapsed());
        let started = Instant::now();
        let all = store.query(&KeyQuery::new()).await.unwrap();
        let filtered: Vec<&KeyRecord> = all
            .iter()
            .filter(|r| r.id > *query.after.as_ref().unwrap() && query.matches(r))
            .take(51)
            .collect();
        listed.push(started.elapsed());
        assert_eq!(page.len(), filtered.len());
    }
    let (p, l) = (median(paged), median(listed));
    println!(
        "scale {label}: admin page of 50 at {n} records read as a query {:.4}x the whole list ({:.2} ms against {:.1} ms)",
        p.as_secs_f64() / l.as_secs_f64(),
        p.as_secs_f64() * 1e3,
        l.as_secs_f64() * 1e3,
    );
}

/// Cold lookups in PostgreSQL at 1k and `large` records, in a throwaway cluster.
#[cfg(feature = "postgres")]
async fn postgres(large: usize, probes: &[(KeyRecord, String)]) {
    use tower_apikey::store::PgKeyStore;
    use tower_apikey::test_util::TempCluster;
    let cluster = match TempCluster::start() {
        Ok(cluster) => cluster,
        Err(error) => {
            println!("scale postgres: skipped, no PostgreSQL here ({error})");
            return;
        }
    };
    let (mut stores, mut urls) = (Vec::new(), Vec::new());
    for n in [1_000, large] {
        let url = cluster.fresh_database().await.unwrap();
        urls.push(url.clone());
        let store = PgKeyStore::connect(url).await.unwrap();
        store.migrate().await.unwrap();
        let started = Instant::now();
        let all = records(n, probes);
        for chunk in all.chunks(10_000) {
            store.insert_many(chunk.to_vec()).await.unwrap();
        }
        if n == large {
            println!(
                "scale postgres: {n} records imported in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        stores.push(store);
    }
    compare(
        "postgres",
        &stores[0],
        &stores[1],
        probes,
        (1_000, large),
        "1.2x",
    )
    .await;
    admin_page("postgres", &stores[1], large).await;
    console(&stores[1], &urls[1], large, &probes[0].0).await;
}

/// What the admin console asks of PostgreSQL at `n` records, each timed alone (median of
/// [`ROUNDS`]), with usage seeded in SQL: 90 days by the hour (and by the day) for 1,000
/// keys (20 in a quick pass), `probe` among them, and one hour for every key.
#[cfg(feature = "postgres")]
async fn console(store: &tower_apikey::store::PgKeyStore, url: &str, n: usize, probe: &KeyRecord) {
    use tower_apikey::usage::{Granularity, UsageRange};

    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let started = Instant::now();
    let busy = if n >= 100_000 { 1_000 } else { 20 };
    let counts = "(random() * 1000)::BIGINT, (random() * 3)::BIGINT, 0, 0, 0, 0, 0, 0, 0";
    client
        .batch_execute(&format!(
            "CREATE TEMP TABLE busy AS SELECT id FROM tower_apikey_keys WHERE id <> '{probe}' LIMIT {others}; \
             INSERT INTO busy VALUES ('{probe}'); \
             INSERT INTO tower_apikey_usage_hourly SELECT b.id, h, {counts} FROM busy AS b, \
               generate_series(date_trunc('hour', now()) - interval '90 days', date_trunc('hour', now()) - interval '2 hours', interval '1 hour') AS h; \
             INSERT INTO tower_apikey_usage_hourly SELECT id, date_trunc('hour', now()) - interval '1 hour', {counts} \
               FROM tower_apikey_keys; \
             INSERT INTO tower_apikey_usage_daily SELECT b.id, d, {counts} FROM busy AS b, \
               generate_series(date_trunc('day', now(), 'UTC') - interval '90 days', date_trunc('day', now(), 'UTC') - interval '1 day', interval '1 day') AS d; \
             INSERT INTO tower_apikey_usage_daily SELECT id, date_trunc('day', now(), 'UTC'), {counts} \
               FROM tower_apikey_keys; \
             ANALYZE",
            probe = probe.id,
            others = busy - 1,
        ))
        .await
        .unwrap();
    let rows: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM tower_apikey_usage_hourly) + (SELECT count(*) FROM tower_apikey_usage_daily)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    println!(
        "scale postgres console: {n} records, {rows} usage rows seeded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let now = jiff::Timestamp::now();
    let days = |d: i64| now - jiff::SignedDuration::from_hours(24 * d);
    let hours_90 = UsageRange::new(days(90), now, Granularity::Hour).unwrap();
    let days_90 = UsageRange::new(days(90), now, Granularity::Day).unwrap();
    let days_30 = UsageRange::last(Granularity::Day, now);
    let rare = probe.id.as_str().to_lowercase();
    let mut lines = Vec::new();
    macro_rules! timed {
        ($what:expr, $call:expr) => {{
            let mut times = Vec::new();
            for _ in 0..ROUNDS {
                let started = Instant::now();
                let _ = $call.await.unwrap();
                times.push(started.elapsed());
            }
            lines.push(($what, median(times)));
        }};
    }
    timed!(
        "listing, first page of 50",
        store.query(&KeyQuery::new().limit(51))
    );
    timed!(
        "listing, a principal's keys",
        store.query(&KeyQuery::new().principal("user500000").limit(51))
    );
    timed!(
        "listing, searched for one key's id",
        store.query(&KeyQuery::new().search(&rare).limit(51))
    );
    timed!(
        "a key's usage, 90 days by the hour",
        store.read_usage(&probe.id, hours_90)
    );
    timed!(
        "a key's usage, 90 days by the day",
        store.read_usage(&probe.id, days_90)
    );
    timed!(
        "the 10 busiest keys of 30 days",
        store.top_usage(None, days_30, 10)
    );
    #[cfg(feature = "console")]
    lines.extend(console_pages(store, probe, &rare).await);
    for (what, time) in lines {
        println!(
            "scale postgres console: {what} at {n} records, {:.1} ms (target <= 50 ms)",
            time.as_secs_f64() * 1e3
        );
    }
}

/// The console's pages over the same store, through its router (server time: request in,
/// whole page out): signed in once with an admin key, then each page `ROUNDS` times.
#[cfg(all(feature = "postgres", feature = "console"))]
async fn console_pages(
    store: &tower_apikey::store::PgKeyStore,
    probe: &KeyRecord,
    rare: &str,
) -> Vec<(&'static str, Duration)> {
    use axum::body::Body;
    use tower::ServiceExt;
    use tower_apikey::console::Console;

    let keys = KeyManager::new(store.clone());
    let (_, admin) = keys
        .issue(
            tower_apikey::NewKey::new("console-bench")
                .permissions([tower_apikey::permission::API_KEY_ADMIN]),
        )
        .await
        .unwrap();
    let router = Console::new(
        keys,
        Validator::builder(store.clone()).build(),
        store.clone(),
    )
    .into_router::<()>();
    let signed = router
        .clone()
        .oneshot(
            http::Request::post("/sign-in")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!("key={}", admin.expose())))
                .unwrap(),
        )
        .await
        .unwrap();
    let cookie = signed.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let mut lines = Vec::new();
    for (what, path) in [
        ("console page: keys, first page", "/keys".to_owned()),
        (
            "console page: keys of a principal",
            "/keys?principal=user500000".to_owned(),
        ),
        (
            "console page: keys searched for one id",
            format!("/keys?q={rare}"),
        ),
        (
            "console page: a key, 24 h chart and events",
            format!("/keys/{}", probe.id),
        ),
        (
            "console page: a key, 90 d chart",
            format!("/keys/{}?range=90d", probe.id),
        ),
    ] {
        let mut times = Vec::new();
        for _ in 0..ROUNDS {
            let request = http::Request::get(&path)
                .header("cookie", &cookie)
                .body(Body::empty())
                .unwrap();
            let started = Instant::now();
            let response = router.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            let body = axum::body::to_bytes(response.into_body(), 1 << 24)
                .await
                .unwrap();
            times.push(started.elapsed());
            assert!(body.len() > 1000);
        }
        lines.push((what, median(times)));
    }
    lines
}

/// One full scan of `n` legacy records against one cold lookup, alternating.
async fn legacy_scan(n: usize, probes: &[(KeyRecord, String)]) {
    let params = HashParams::default();
    let rows: Vec<MaximoKey> = (0..n)
        .map(|i| MaximoKey {
            userid: format!("USER{i}"),
            apikey: Pbkdf2Hash::create(format!("MAXIMOKEY{i:017}").as_bytes(), &params)
                .unwrap()
                .to_string(),
            expiration: -1,
        })
        .collect();
    let store = MemoryStore::with_records(probes.iter().map(|(r, _)| r.clone()));
    KeyManager::new(store.clone())
        .import_maximo(rows)
        .await
        .unwrap();
    let (mut scans, mut colds) = (vec![], vec![]);
    for round in 0..3 {
        let validator = Validator::builder(store.clone())
            .legacy_scan_rate(std::num::NonZeroU32::new(u32::MAX).unwrap())
            .build();
        let unknown = PresentedKey::new(format!("NOSUCHKEY{round:017}").as_bytes()).unwrap();
        let started = Instant::now();
        let refused = validator.validate(&unknown).await;
        scans.push(started.elapsed());
        assert!(matches!(refused, Err(ValidationError::Rejected(_))));
        assert_eq!(
            validator.stats().derivations,
            n as u64,
            "one derivation per record"
        );
        colds.push(cold_lookup(&store, &probes[..10]).await);
    }
    let (scan, cold) = (median(scans), median(colds));
    println!(
        "scale legacy scan: one scan of {n} legacy records {:.0}x a cold lookup ({:.0} ms; {:.2}x a cold lookup per record)",
        scan.as_secs_f64() / cold.as_secs_f64(),
        scan.as_secs_f64() * 1e3,
        scan.as_secs_f64() / cold.as_secs_f64() / n as f64,
    );
}

fn main() {
    let test = std::env::args().any(|a| a == "--test");
    // `-- postgres`: the PostgreSQL part alone.
    let only_postgres = std::env::args().skip(1).any(|a| a == "postgres");
    // cargo bench passes `--bench`; anything else is a filter this bench has no use for.
    let large = if test { 10_000 } else { 1_000_000 };
    let small = 1_000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let probes = probes();
        if only_postgres {
            #[cfg(feature = "postgres")]
            postgres(large, &probes).await;
            return;
        }

        // Memory per cached key first, before other phases leave freed memory for the
        // allocator to reuse (which would hide growth from the RSS): a validator caches every
        // key of a fresh store.
        let format = KeyFormat::default();
        let cheap = HashParams::default().with_iterations(1).unwrap();
        let store = MemoryStore::new();
        let mut keys = Vec::with_capacity(large);
        for i in 0..large {
            let (record, key) = KeyRecord::generate(format!("user{i}"), &format, &cheap).unwrap();
            store.insert(record).await.unwrap();
            keys.push(key.expose().to_owned());
        }
        // A TTL longer than the fill: this measures memory, not expiry.
        let validator = Validator::builder(store.clone())
            .max_cached_keys(large as u64 * 2)
            .cache_ttl(Duration::from_secs(3600))
            .build();
        let before = rss();
        for key in &keys {
            let key = PresentedKey::new(key.as_bytes()).unwrap();
            validator.validate(&key).await.unwrap();
        }
        let cached = keys
            .iter()
            .filter(|k| {
                let key = PresentedKey::new(k.as_bytes()).unwrap();
                matches!(validator.validate_cached(&key), Some(Ok(_)))
            })
            .count();
        assert_eq!(cached, large, "every key stays cached");
        let per_key = rss().saturating_sub(before) as f64 / large as f64;
        println!("scale cache: {per_key:.0} B resident per cached key at {large} cached keys (target <= 600 B)");
        drop((validator, store, keys));



        // Memory store. (Its resident size is not read: the cache phase's freed memory is
        // reused, so the RSS would not show it; the file store's below is the same records.)
        let big = MemoryStore::with_records(records(large, &probes));
        let little = MemoryStore::with_records(records(small, &probes));
        compare("memory store", &little, &big, &probes, (small, large), "1.1x").await;
        admin_page("memory store", &big, large).await;

        // File store: written once as the file format, then opened.
        let dir = tempfile::tempdir().unwrap();
        let write = |n: usize, name: &str| {
            let path = dir.path().join(name);
            let keys = records(n, &probes);
            let contents = serde_json::json!({ "version": 1, "revision": 1, "keys": keys });
            std::fs::write(&path, serde_json::to_vec(&contents).unwrap()).unwrap();
            path
        };
        let (big_path, little_path) = (write(large, "large.json"), write(small, "small.json"));
        let size = std::fs::metadata(&big_path).unwrap().len();
        let before = rss();
        let started = Instant::now();
        let big_file = FileStore::builder(&big_path).no_polling().open().await.unwrap();
        let opened = started.elapsed();
        let grown = rss().saturating_sub(before);
        let little_file = FileStore::builder(&little_path).no_polling().open().await.unwrap();
        println!(
            "scale file store: {large} records, {:.0} MB file, opened in {:.2} s, {:.0} MB resident ({:.0} B per record)",
            size as f64 / 1e6,
            opened.as_secs_f64(),
            grown as f64 / 1e6,
            grown as f64 / large as f64,
        );
        compare("file store", &little_file, &big_file, &probes, (small, large), "1.1x").await;
        drop((big_file, little_file));

        legacy_scan(if test { 50 } else { 1_000 }, &probes).await;

        #[cfg(feature = "postgres")]
        postgres(if test { 5_000 } else { large }, &probes).await;
    });
}
