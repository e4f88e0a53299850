//! Usage from outside: the axum example counts a key's requests and writes them when it stops
//! (SIGTERM) or every interval; a server SIGKILLed loses at most what it counted since its
//! last write; the CLI's `usage` and the admin API's answer agree.
#![cfg(all(feature = "cli", feature = "admin"))]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

fn cli(args: &[&str]) -> String {
    let out = common::run_cli(args, b"");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The axum example on `store`, writing usage every `flush_ms`.
fn axum_on(store: &Path, flush_ms: u64) -> (common::Server, String) {
    let mut command = Command::new(common::example_binary("axum"));
    command
        .env("APIKEY_STORE", store)
        .env("USAGE_FLUSH_MS", flush_ms.to_string())
        .env_remove("DATABASE_URL");
    let (server, addr, _) = common::start_example(command);
    (server, addr)
}

/// Buckets with traffic: (start, counts) as JSON text, for comparing two readers.
fn busy(answer: &Value) -> Vec<(String, Value)> {
    answer["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| {
            b["counts"]
                .as_object()
                .unwrap()
                .values()
                .any(|n| n.as_u64() != Some(0))
        })
        .map(|b| (b["start"].as_str().unwrap().to_owned(), b["counts"].clone()))
        .collect()
}

fn total(answer: &Value, outcome: &str) -> u64 {
    busy(answer)
        .iter()
        .map(|(_, counts)| counts[outcome].as_u64().unwrap())
        .sum()
}

fn wrong(key: &str) -> String {
    let mut text = key.to_owned();
    let last = text.pop().unwrap();
    text.push(if last == 'a' { 'b' } else { 'a' });
    text
}

#[test]
fn sigterm_writes_the_last_batch_and_the_cli_agrees_with_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("apikeys.json");
    let store_arg = store.to_str().unwrap();
    let key = cli(&[
        "issue",
        "--store",
        store_arg,
        "--principal",
        "alice",
        "--iterations",
        "1",
    ])
    .trim()
    .to_owned();
    let id = key.split('_').nth(1).unwrap().to_owned();

    // A minute between writes: only SIGTERM writes these.
    let (mut server, addr) = axum_on(&store, 60_000);
    for _ in 0..3 {
        assert_eq!(common::http_get(&addr, "/whoami", Some(&key)).0, 200);
    }
    for _ in 0..2 {
        assert_eq!(
            common::http_get(&addr, "/whoami", Some(&wrong(&key))).0,
            401
        );
    }
    assert!(server.terminate(Duration::from_secs(10)).success());

    let by_cli: Value =
        serde_json::from_str(&cli(&["usage", "--store", store_arg, &id, "--json"])).unwrap();
    assert_eq!(
        (total(&by_cli, "valid"), total(&by_cli, "wrong_secret")),
        (3, 2),
        "{by_cli}"
    );
    let table = cli(&["usage", "--store", store_arg, &id]);
    assert!(
        table.contains("5 requests: valid 3, wrong_secret 2"),
        "{table}"
    );
    assert!(table.contains('█'), "{table}");

    // The admin API on the same file reads the same buckets.
    let mut command = Command::new(common::example_binary("admin"));
    command
        .env("APIKEY_STORE", &store)
        .env_remove("DATABASE_URL");
    let (_admin, admin_addr, admin_key) = common::start_example(command);
    let admin_key = admin_key.expect("the admin example issues an admin key");
    let (status, body) = common::http_get(
        &admin_addr,
        &format!("/admin/keys/{id}/usage"),
        Some(&admin_key),
    );
    assert_eq!(status, 200, "{body}");
    let by_api: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(busy(&by_api), busy(&by_cli));
}

#[test]
fn a_server_killed_loses_at_most_what_it_counted_since_its_last_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("apikeys.json");
    let store_arg = store.to_str().unwrap();
    let key = cli(&[
        "issue",
        "--store",
        store_arg,
        "--principal",
        "bob",
        "--iterations",
        "1",
    ])
    .trim()
    .to_owned();
    let id = key.split('_').nth(1).unwrap().to_owned();
    let (mut server, addr) = axum_on(&store, 300);
    for _ in 0..4 {
        assert_eq!(common::http_get(&addr, "/whoami", Some(&key)).0, 200);
    }
    // Two writes' time: the four are in the store.
    std::thread::sleep(Duration::from_millis(1_500));
    for _ in 0..3 {
        assert_eq!(common::http_get(&addr, "/whoami", Some(&key)).0, 200);
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let usage: Value =
        serde_json::from_str(&cli(&["usage", "--store", store_arg, &id, "--json"])).unwrap();
    let valid = total(&usage, "valid");
    assert!(
        (4..=7).contains(&valid),
        "4 requests before a write and 3 after, then SIGKILL: {valid} counted"
    );
}

/// Three axum servers on one PostgreSQL database, each serving its share of known requests:
/// after SIGTERM the stored counts are exactly the requests served, by outcome.
#[cfg(feature = "postgres")]
#[test]
fn three_servers_on_one_postgres_count_exactly_what_they_served() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some((db, _)) = runtime.block_on(common::pg::migrated_store()) else {
        return;
    };
    let url = db.url.as_str();
    let issue = |principal: &str, more: &[&str]| -> String {
        let mut args = vec![
            "issue",
            "--database-url",
            url,
            "--principal",
            principal,
            "--iterations",
            "1",
        ];
        args.extend(more);
        cli(&args).trim().to_owned()
    };
    let key = issue("alice", &[]);
    let limited = issue("bob", &["--rate-limit", "2/1h"]);
    let revoked = issue("carol", &[]);
    let id_of = |key: &str| key.split('_').nth(1).unwrap().to_owned();
    cli(&["revoke", "--database-url", url, &id_of(&revoked)]);

    let mut servers: Vec<(common::Server, String)> = (0..3)
        .map(|_| {
            let mut command = Command::new(common::example_binary("axum"));
            command
                .env("DATABASE_URL", url)
                .env("USAGE_FLUSH_MS", "60000");
            let (server, addr, _) = common::start_example(command);
            (server, addr)
        })
        .collect();
    // Server i: 3 + i valid, 1 + i wrong secret, 2 revoked; server 1 alone: 10 for the key
    // limited to 2 an hour (a limit one server enforces alone, so the split is exact).
    let mut want = [0u64; 4]; // valid, wrong secret, revoked
    for (i, (_, addr)) in servers.iter().enumerate() {
        for _ in 0..3 + i {
            assert_eq!(common::http_get(addr, "/whoami", Some(&key)).0, 200);
            want[0] += 1;
        }
        for _ in 0..1 + i {
            assert_eq!(common::http_get(addr, "/whoami", Some(&wrong(&key))).0, 401);
            want[1] += 1;
        }
        for _ in 0..2 {
            assert_eq!(common::http_get(addr, "/whoami", Some(&revoked)).0, 401);
            want[2] += 1;
        }
    }
    // 50 ms apart: a server of three, taking up a key, spends its burst of 2 as if the others
    // were spending theirs too (one request), and gets the other back at its next share.
    let statuses: Vec<u16> = (0..10)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            common::http_get(&servers[1].1, "/whoami", Some(&limited)).0
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        8,
        "{statuses:?}"
    );
    for (server, _) in &mut servers {
        assert!(server.terminate(Duration::from_secs(10)).success());
    }

    // Read through the admin API of a fourth server on the same database.
    let mut command = Command::new(common::example_binary("admin"));
    command.env("DATABASE_URL", url);
    let (_admin, admin_addr, admin_key) = common::start_example(command);
    let admin_key = admin_key.expect("the admin example issues an admin key");
    let usage = |key: &str| -> Value {
        let (status, body) = common::http_get(
            &admin_addr,
            &format!("/admin/keys/{}/usage", id_of(key)),
            Some(&admin_key),
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let (a, b, c) = (usage(&key), usage(&limited), usage(&revoked));
    assert_eq!(
        (total(&a, "valid"), total(&a, "wrong_secret")),
        (want[0], want[1]),
        "{a}"
    );
    assert_eq!(total(&c, "revoked"), want[2], "{c}");
    assert_eq!(
        (total(&b, "valid"), total(&b, "rate_limited")),
        (2, 8),
        "{b}"
    );
    let every = |answer: &Value| -> u64 {
        busy(answer)
            .iter()
            .flat_map(|(_, counts)| counts.as_object().unwrap().values())
            .map(|n| n.as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        (every(&a), every(&b), every(&c)),
        (want[0] + want[1], 10, want[2]),
        "nothing else counted"
    );
    // The CLI reads the same.
    let by_cli: Value = serde_json::from_str(&cli(&[
        "usage",
        "--database-url",
        url,
        &id_of(&key),
        "--json",
    ]))
    .unwrap();
    assert_eq!(busy(&by_cli), busy(&a));
}
