//! What a fleet costs its PostgreSQL database, counted by the server itself
//! (`pg_stat_statements`) in a throwaway cluster: statements and rows for one cold lookup, one
//! change (the write, the NOTIFY and every follower's read), one idle poll, a last-use and
//! a usage flush, and rate-limit shares (a key hot, in use, at rest), with 1 and 10 validators (each with its own pool and follower connection),
//! notifications on and off; and the bytes a usage row takes, for the capacity guide.
//!
//! `cargo bench --bench fleet --features postgres` (`-- --test`: a quick pass, as CI runs it).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tower_apikey::hash::HashParams;
use tower_apikey::key::{KeyFormat, PresentedKey};
use tower_apikey::store::PgKeyStore;
use tower_apikey::test_util::TempCluster;
use tower_apikey::{KeyManager, KeyRecord, KeyStore, Validator};

/// What the statements run in a window did, by kind.
#[derive(Debug, Default, Clone, Copy)]
struct Load {
    /// Statements, and rows they returned or changed.
    calls: f64,
    rows: f64,
}

/// Statement kinds, told apart by their text.
fn kind(query: &str) -> &'static str {
    if query.contains("FROM tower_apikey_changes WHERE version >") {
        "change-log read"
    } else if query.contains("max(version)") {
        "follower start"
    } else if query.contains("FROM tower_apikey_keys WHERE id = $1")
        && !query.contains("FOR UPDATE")
    {
        "key read"
    } else if query.contains("last_used_at") && query.starts_with("UPDATE") {
        "last-use write"
    } else if query.contains("INSERT INTO tower_apikey_usage_batches") {
        "usage write"
    } else if query.contains("DELETE FROM tower_apikey_usage_hourly") {
        "usage prune"
    } else if query.contains("tower_apikey_rate_servers") {
        "rate share"
    } else if query.contains("pg_stat_statements") {
        "bench"
    } else {
        "write transaction"
    }
}

/// A connection over the cluster's socket, for the counters.
async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Has each server validate its own `per_server` of `keys` (server `i` the `i`th share);
/// returns how many were validated.
async fn validate_each(
    validators: &[Validator],
    keys: &[PresentedKey],
    per_server: usize,
) -> usize {
    let mut n = 0;
    for (i, validator) in validators.iter().enumerate() {
        for key in keys.iter().skip(i * per_server).take(per_server) {
            validator.validate(key).await.unwrap();
            n += 1;
        }
    }
    n
}

async fn reset(stats: &tokio_postgres::Client) {
    stats
        .execute("SELECT pg_stat_statements_reset()", &[])
        .await
        .unwrap();
}

/// Statements and rows since the last reset, by kind.
async fn read(stats: &tokio_postgres::Client) -> HashMap<&'static str, Load> {
    let rows = stats
        .query(
            "SELECT query, calls::FLOAT8, rows::FLOAT8 FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .unwrap();
    let mut by_kind: HashMap<&'static str, Load> = HashMap::new();
    for row in rows {
        let query: String = row.get(0);
        let load = by_kind.entry(kind(&query)).or_default();
        load.calls += row.get::<_, f64>(1);
        load.rows += row.get::<_, f64>(2);
    }
    by_kind.remove("bench");
    by_kind
}

fn get(load: &HashMap<&'static str, Load>, kind: &str) -> Load {
    load.get(kind).copied().unwrap_or_default()
}

/// Keys in the database: records for the store and the keys to present.
fn keys(n: usize) -> (Vec<KeyRecord>, Vec<PresentedKey>) {
    let cheap = HashParams::default().with_iterations(1).unwrap();
    (0..n)
        .map(|i| {
            let (record, key) =
                KeyRecord::generate(format!("user{i}"), &KeyFormat::default(), &cheap).unwrap();
            (record, PresentedKey::new(key.expose().as_bytes()).unwrap())
        })
        .unzip()
}

struct Sizes {
    keys: usize,
    idle: Duration,
    lookups_per_server: usize,
    changes: usize,
}

/// One database and what the runs share.
struct Bench {
    url: String,
    stats: tokio_postgres::Client,
    sizes: Sizes,
    keys: Vec<PresentedKey>,
    writer: KeyManager,
    /// Keys to revoke, from the end (lookups use keys from the start).
    changed: Vec<tower_apikey::key::KeyId>,
    /// The first key the next fleet looks up: each fleet its own keys, so its usage rows are
    /// new ones.
    next_key: usize,
}

async fn fleet(bench: &mut Bench, servers: usize, listen: bool) {
    let Bench {
        url,
        stats,
        sizes,
        keys,
        writer,
        changed,
        next_key,
    } = bench;
    let ours = &keys[*next_key..];
    *next_key += servers * sizes.lookups_per_server;
    let (url, stats, sizes) = (url.as_str(), &*stats, &*sizes);
    let mut validators = Vec::new();
    for _ in 0..servers {
        let store = PgKeyStore::builder(url)
            .listen(listen)
            .connect()
            .await
            .unwrap();
        validators.push(Validator::builder(store).build());
    }
    // Each follower's first read.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let label = format!(
        "fleet {servers} server(s), notifications {}",
        if listen { "on" } else { "off" }
    );

    // Idle: each follower reads the change log once a poll interval.
    reset(stats).await;
    let started = Instant::now();
    tokio::time::sleep(sizes.idle).await;
    let idle = read(stats).await;
    let seconds = started.elapsed().as_secs_f64();
    let polls = get(&idle, "change-log read");
    println!(
        "{label}: idle, {:.2} change-log reads per server per second ({:.2} rows each), {:.0} other statements",
        polls.calls / servers as f64 / seconds,
        polls.rows / polls.calls.max(1.0),
        idle.values().map(|l| l.calls).sum::<f64>() - polls.calls,
    );

    // Cold lookups: each server validates keys it has not seen.
    reset(stats).await;
    let started = Instant::now();
    let n = validate_each(&validators, ours, sizes.lookups_per_server).await;
    let cold = read(stats).await;
    let seconds = started.elapsed().as_secs_f64();
    let reads = get(&cold, "key read");
    let polls = get(&cold, "change-log read");
    println!(
        "{label}: cold lookup, {:.2} statements and {:.2} rows each ({n} lookups; {:.0} change-log polls in the {seconds:.1} s)",
        reads.calls / n as f64,
        reads.rows / n as f64,
        polls.calls,
    );

    // Changes: revocations one at a time, each seen by every server before the next.
    reset(stats).await;
    let started = Instant::now();
    let mut propagation = Vec::new();
    for _ in 0..sizes.changes {
        let id = changed.pop().unwrap();
        let at = Instant::now();
        writer.revoke(&id).await.unwrap();
        propagation.push(at.elapsed());
        tokio::time::sleep(Duration::from_millis(if listen { 50 } else { 300 })).await;
    }
    // The last change's reads.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let change = read(stats).await;
    let seconds = started.elapsed().as_secs_f64();
    // The writer reads the record, then writes it in one transaction; no server re-reads it
    // (none presents the key again).
    let write = get(&change, "write transaction").calls + get(&change, "key read").calls;
    let follow = get(&change, "change-log read");
    propagation.sort();
    println!(
        "{label}: change, {:.1} statements by the writer (median {:.1} ms); followers read the log {:.1} times per server in the {seconds:.1} s window of {} changes ({:.2} rows per change per server)",
        write / sizes.changes as f64,
        propagation[propagation.len() / 2].as_secs_f64() * 1e3,
        follow.calls / servers as f64,
        sizes.changes,
        follow.rows / sizes.changes as f64 / servers as f64,
    );

    // A burst: changes back to back, as an import or a bulk revocation makes them.
    reset(stats).await;
    for _ in 0..sizes.changes {
        writer.revoke(&changed.pop().unwrap()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let follow = get(&read(stats).await, "change-log read");
    println!(
        "{label}: burst of {} changes, followers read the log {:.1} times per server (polls included)",
        sizes.changes,
        follow.calls / servers as f64,
    );

    // Last use: one batched statement per server per flush (every 60 s by default).
    reset(stats).await;
    for validator in &validators {
        validator.flush_last_used().await.unwrap();
    }
    let last = get(&read(stats).await, "last-use write");
    println!(
        "{label}: last-use flush, {:.1} statements per server, {:.0} rows per server",
        last.calls / servers as f64,
        last.rows / servers as f64,
    );
    // Usage: one statement per server per flush, adding each key's hour to its hourly and
    // daily rows. First flush: the keys each server looked up, new rows; then the same keys
    // again in the same hour, rows updated in place.
    for round in ["new key-hours", "the same key-hours again"] {
        if round != "new key-hours" {
            validate_each(&validators, ours, sizes.lookups_per_server).await;
        }
        let before = usage_rows(stats).await;
        reset(stats).await;
        for validator in &validators {
            validator.flush_usage().await.unwrap();
        }
        let flushed = read(stats).await;
        let write = get(&flushed, "usage write");
        let prune = get(&flushed, "usage prune");
        let grown = usage_rows(stats).await - before;
        println!(
            "{label}: usage flush ({round}), {:.1} statements per server ({:.1} prune), {:.0} daily rows upserted and {:.0} rows added per server ({} keys each)",
            write.calls / servers as f64,
            prune.calls / servers as f64,
            write.rows / servers as f64,
            grown as f64 / servers as f64,
            sizes.lookups_per_server,
        );
    }
    rate_shares(&label, stats, writer, &validators).await;
    drop(validators);
}

/// Rate-limit sharing: a key over its limit on every server (hot: each shares every 50 ms),
/// then in use below it (every 200 ms), then at rest (nothing). Statements per server per
/// second in each.
async fn rate_shares(
    label: &str,
    stats: &tokio_postgres::Client,
    writer: &KeyManager,
    validators: &[Validator],
) {
    let limit = "100/1s".parse().unwrap();
    // A principal per fleet: a principal holds at most two keys.
    static FLEETS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = FLEETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (_, key) = writer
        .issue(tower_apikey::NewKey::new(format!("rated{n}")).rate_limit(Some(limit)))
        .await
        .unwrap();
    let key = PresentedKey::new(key.expose().as_bytes()).unwrap();
    // The cold path hears the fleet once per server.
    reset(stats).await;
    let mut identities = Vec::new();
    for validator in validators {
        identities.push(validator.validate(&key).await.unwrap());
    }
    let first = get(&read(stats).await, "rate share");
    let servers = validators.len() as f64;
    let shares = |phase: &str, load: &HashMap<&'static str, Load>, seconds: f64| {
        let share = get(load, "rate share");
        println!(
            "{label}: rate limits {phase}, {:.2} share statements per server per second ({:.1} rows each)",
            share.calls / servers / seconds,
            share.rows / share.calls.max(1.0),
        );
    };
    println!(
        "{label}: rate limits, {:.1} share statements per server to take up a key",
        first.calls / servers
    );
    // Each server offered `per_second` requests a second of the key for 2 s.
    for (phase, per_second) in [
        ("hot (3× the limit offered)", 300),
        ("in use (half the limit)", 50),
    ] {
        let per_server = per_second / validators.len().max(1) as u64;
        // A period and a half apart: the state of the phase before has drained.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        reset(stats).await;
        let started = Instant::now();
        let mut sent = 0u64;
        while started.elapsed() < Duration::from_secs(2) {
            for (validator, identity) in validators.iter().zip(&identities) {
                let _ = validator.enforce(identity, None).await;
            }
            sent += 1;
            let due = started + Duration::from_secs(1) * sent as u32 / per_server.max(1) as u32;
            tokio::time::sleep_until(due.into()).await;
        }
        let load = read(stats).await;
        shares(phase, &load, started.elapsed().as_secs_f64());
    }
    // At rest: a period after the last request, no key is shared.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    reset(stats).await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let load = read(stats).await;
    shares("idle", &load, started.elapsed().as_secs_f64());
}

/// Rows in the usage tables (hourly, daily, batch ids).
async fn usage_rows(stats: &tokio_postgres::Client) -> i64 {
    stats
        .query_one(
            "SELECT (SELECT count(*) FROM tower_apikey_usage_hourly) \
                  + (SELECT count(*) FROM tower_apikey_usage_daily) \
                  + (SELECT count(*) FROM tower_apikey_usage_batches)",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// What usage costs at a fleet's size: `batches` batches of `lines` fresh key-hours each (one
/// server's flush of that many distinct keys), written one after another, then again. The
/// database's mean time per batch each time, and the bytes an hourly and a daily row take on
/// disk with their indexes (measured after the first pass, vacuumed).
async fn usage_at_size(
    url: &str,
    stats: &tokio_postgres::Client,
    batches: usize,
    lines: usize,
) -> UsageAtSize {
    use tower_apikey::store::UsageStore;
    use tower_apikey::usage::{Counts, HourCounts, Outcome, UsageBatch};

    let store = PgKeyStore::builder(url)
        .follow_changes(false)
        .connect()
        .await
        .unwrap();
    let hour = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 30);
    let mut counts = Counts::default();
    counts.add(Outcome::Valid, 1_000);
    counts.add(Outcome::WrongSecret, 3);
    let size = "SELECT pg_total_relation_size('tower_apikey_usage_hourly')::FLOAT8, \
         pg_total_relation_size('tower_apikey_usage_daily')::FLOAT8";
    let mean_ms = "SELECT sum(total_exec_time) / sum(calls) FROM pg_stat_statements \
         WHERE query LIKE '%INSERT INTO tower_apikey_usage_batches%'";
    stats.batch_execute("VACUUM").await.unwrap();
    let before = stats.query_one(size, &[]).await.unwrap();
    // The first pass adds rows; the second, the same key-hours under new batch ids, adds to
    // them in place (a fleet's steady state: the same keys, hour after hour).
    let mut timings = Vec::new();
    let mut after = None;
    for pass in 0..2 {
        reset(stats).await;
        for b in 0..batches {
            let batch = (0..lines).map(|i| {
                let id = format!("sizing{b:05}x{i:07}");
                HourCounts::new(tower_apikey::key::KeyId::new(&id).unwrap(), hour, counts)
            });
            store
                .add_usage(UsageBatch::new(format!("sizing-{pass}-{b}"), batch))
                .await
                .unwrap();
        }
        timings.push(
            stats
                .query_one(mean_ms, &[])
                .await
                .unwrap()
                .get::<_, f64>(0),
        );
        if pass == 0 {
            stats.batch_execute("VACUUM").await.unwrap();
            after = Some(stats.query_one(size, &[]).await.unwrap());
        }
    }
    let after = after.unwrap();
    let rows = (batches * lines) as f64;
    let per_row = |i: usize| (after.get::<_, f64>(i) - before.get::<_, f64>(i)) / rows;
    UsageAtSize {
        new_ms: timings[0],
        update_ms: timings[1],
        hourly_bytes: per_row(0),
        daily_bytes: per_row(1),
    }
}

/// What [`usage_at_size`] measured.
struct UsageAtSize {
    new_ms: f64,
    update_ms: f64,
    hourly_bytes: f64,
    daily_bytes: f64,
}

fn main() {
    let test = std::env::args().any(|a| a == "--test");
    let sizes = if test {
        Sizes {
            keys: 500,
            idle: Duration::from_secs(2),
            lookups_per_server: 20,
            changes: 3,
        }
    } else {
        Sizes {
            keys: 10_000,
            idle: Duration::from_secs(10),
            lookups_per_server: 200,
            changes: 20,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let cluster = match TempCluster::start() {
            Ok(cluster) => cluster,
            Err(error) => {
                println!("fleet: skipped, no PostgreSQL here ({error})");
                return;
            }
        };
        // pg_stat_statements is loaded at start.
        admin(&cluster.url("postgres"))
            .await
            .batch_execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            .await
            .unwrap();
        cluster.stop().unwrap();
        cluster.start_again().unwrap();
        let url = cluster.fresh_database().await.unwrap();
        let stats = admin(&url).await;
        stats
            .batch_execute("CREATE EXTENSION pg_stat_statements")
            .await
            .unwrap();

        let store = PgKeyStore::builder(url.as_str())
            .follow_changes(false)
            .connect()
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let (records, keys) = keys(sizes.keys);
        let ids: Vec<_> = records.iter().map(|r| r.id.clone()).collect();
        store.insert_many(records).await.unwrap();
        println!(
            "fleet: {} keys in PostgreSQL, poll interval 1 s, pg_stat_statements counting",
            sizes.keys
        );
        let mut bench = Bench {
            url,
            stats,
            sizes,
            keys,
            writer: KeyManager::new(store),
            changed: ids,
            next_key: 0,
        };
        for (servers, listen) in [(1, true), (10, true), (10, false)] {
            fleet(&mut bench, servers, listen).await;
        }
        // One server's minute at the capacity guide's load: 5,000 distinct keys.
        let (batches, lines) = if test { (2, 5_000) } else { (20, 5_000) };
        let at = usage_at_size(&bench.url, &bench.stats, batches, lines).await;
        println!(
            "fleet: usage at size, {:.1} ms of database time per batch of {lines} new key-hours, {:.1} ms per batch adding to them (means of {batches}); on disk with the indexes, {:.0} bytes an hourly row, {:.0} bytes a daily row",
            at.new_ms, at.update_ms, at.hourly_bytes, at.daily_bytes,
        );
    });
}
