//! Per-key policies across a fleet: three axum example servers on one real PostgreSQL, a key
//! hammered at three times its rate limit (split evenly, then all to one server), and a quota
//! spent through all three. What each admits is counted from outside, over real sockets.
#![cfg(all(feature = "postgres", feature = "axum"))]

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use tower_apikey::hash::HashParams;
use tower_apikey::store::PgKeyStore;
use tower_apikey::{KeyManager, KeyStore, NewKey};

/// The rate limit: R requests a second, a burst of R.
const RATE: u64 = 20;
/// How often servers share rate-limit use (the validator's default).
const SHARE: Duration = Duration::from_millis(200);
const SERVERS: u64 = 3;
/// How long each phase hammers.
const PHASE: Duration = Duration::from_secs(10);

/// Status of one GET /whoami with `apikey`.
fn whoami(addr: &str, apikey: &str) -> u16 {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "GET /whoami HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\napikey: {apikey}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    raw[9..12].parse().unwrap()
}

/// Sends `per_second` requests a second for `PHASE`, the i-th to `targets[i % len]`;
/// returns how many were admitted and how long it took.
fn hammer(targets: &[&str], key: &str, per_second: u64) -> (u64, Duration) {
    let started = Instant::now();
    let spacing = Duration::from_secs(1) / per_second as u32;
    let mut admitted = 0;
    let mut i = 0u32;
    while started.elapsed() < PHASE {
        let due = started + spacing * i;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let status = whoami(targets[i as usize % targets.len()], key);
        assert!(status == 200 || status == 429, "status {status}");
        admitted += u64::from(status == 200);
        i += 1;
    }
    (admitted, started.elapsed())
}

/// Rows written to the rate-usage table so far (inserted or updated): one per key per share.
async fn share_rows(url: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // Statistics reach the view when backends report them (at most once a second).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    client
        .query_one(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0)::BIGINT FROM pg_stat_user_tables \
             WHERE relname = 'tower_apikey_rate_usage'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[test]
fn three_servers_hold_a_rate_limit_and_a_quota_between_them() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = runtime.block_on(common::pg::database()) else {
        return;
    };
    let (rate_key, quota_key, crash_key) = runtime.block_on(async {
        let store = PgKeyStore::connect(db.url.as_str()).await.unwrap();
        store.migrate().await.unwrap();
        let keys =
            KeyManager::new(store).hash_params(HashParams::default().with_iterations(1).unwrap());
        let limit = format!("{RATE}/1s").parse().unwrap();
        let (_, rate_key) = keys
            .issue(NewKey::new("rated").rate_limit(Some(limit)))
            .await
            .unwrap();
        let (_, quota_key) = keys
            .issue(NewKey::new("metered").quota(Some("300".parse().unwrap())))
            .await
            .unwrap();
        let (_, crash_key) = keys
            .issue(NewKey::new("crashed").quota(Some("300".parse().unwrap())))
            .await
            .unwrap();
        (
            rate_key.expose().to_owned(),
            quota_key.expose().to_owned(),
            crash_key.expose().to_owned(),
        )
    });
    let mut servers: Vec<(common::Server, String)> = (0..SERVERS)
        .map(|_| {
            let mut command = Command::new(common::example_binary("axum"));
            command.env("DATABASE_URL", &db.url);
            let (server, addr, _) = common::start_example(command);
            (server, addr)
        })
        .collect();
    let owned: Vec<String> = servers.iter().map(|(_, addr)| addr.clone()).collect();
    let addrs: Vec<&str> = owned.iter().map(String::as_str).collect();

    // The error a fleet adds, as the validator documents it: each other server's burst,
    // and what it admits in the two share intervals before it hears of the rest.
    let burst = RATE;
    let extra = (SERVERS - 1) * (burst + 2 * RATE * SHARE.as_millis() as u64 / 1_000);
    let rows_before = runtime.block_on(share_rows(&db.url));
    let rows_since = Instant::now();
    for (phase, targets) in [("split evenly", &addrs[..]), ("all to one", &addrs[..1])] {
        let (admitted, took) = hammer(targets, &rate_key, 3 * RATE);
        let allowed = RATE as f64 * took.as_secs_f64();
        let bound = allowed + (burst + extra) as f64;
        let error = (admitted as f64 - allowed - burst as f64) / allowed;
        eprintln!(
            "fleet rate limit, {phase}: {admitted} admitted of {} offered in {took:.1?} \
             (limit {allowed:.0} + burst {burst}; error {:+.1}%, stated bound {:.0}%)",
            3 * RATE * took.as_secs(),
            error * 100.0,
            extra as f64 / allowed * 100.0,
        );
        assert!(
            (admitted as f64) <= bound,
            "{phase}: {admitted} admitted, more than {bound:.0}"
        );
        assert!(
            admitted as f64 >= 0.8 * allowed,
            "{phase}: {admitted} admitted, the limit refuses what it should admit"
        );
    }
    let rows = runtime.block_on(share_rows(&db.url)) - rows_before;
    let window = rows_since.elapsed();
    let per_second = rows as f64 / window.as_secs_f64();
    eprintln!(
        "fleet rate limit: {rows} share statements in {window:.1?} ({per_second:.1}/s; at most \
         {}/s: {SERVERS} servers, one statement each per {SHARE:?})",
        SERVERS * 1_000 / SHARE.as_millis() as u64
    );
    assert!(
        per_second <= (SERVERS * 1_000 / SHARE.as_millis() as u64) as f64 * 1.1,
        "{per_second}/s share statements"
    );

    // A quota of 300 over 1,000 requests through all three: exactly 300.
    let admitted = (0..1_000)
        .filter(|i| whoami(addrs[i % addrs.len()], &quota_key) == 200)
        .count();
    eprintln!("fleet quota of 300: {admitted} of 1000 requests admitted");
    assert_eq!(admitted, 300);

    // Another quota of 300, and a server killed (SIGKILL: no lease given back) a third of
    // the way through: never more than 300, and at most its lease in hand lost.
    let mut admitted = 0;
    for i in 0..1_000 {
        if i == 150 {
            servers[2].0.child.kill().unwrap();
            servers[2].0.child.wait().unwrap();
        }
        let live = if i < 150 { SERVERS as usize } else { 2 };
        admitted += usize::from(whoami(addrs[i % live], &crash_key) == 200);
    }
    eprintln!("fleet quota of 300, one server killed: {admitted} of 1000 requests admitted");
    assert!(admitted <= 300, "{admitted} admitted: oversold");
    assert!(
        admitted >= 300 - 64,
        "{admitted} admitted: more stranded than one lease"
    );
    servers.pop();
    for (server, _) in &mut servers {
        assert!(server.terminate(Duration::from_secs(10)).success());
    }
    let left = runtime.block_on(async {
        let store = PgKeyStore::connect(db.url.as_str()).await.unwrap();
        let id = quota_key.split('_').nth(1).unwrap().parse().unwrap();
        store.get(&id).await.unwrap().unwrap().usage.quota_remaining
    });
    assert_eq!(left, Some(0), "every use spent, none stranded");
}
