//! Per-key policies tried from outside: the axum example on a real socket, keys issued and
//! changed with the real CLI on the file store it serves, and requests as a client (or a
//! proxy, or someone forging one) would send them.
#![cfg(all(feature = "cli", feature = "axum"))]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::run_cli;

/// A response: status, headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One HTTP/1.1 request to `/whoami` with `apikey` and `extra` headers.
fn whoami(addr: &str, apikey: &str, extra: &[(&str, &str)]) -> Reply {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "GET /whoami HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\napikey: {apikey}\r\n"
    );
    for (name, value) in extra {
        request += &format!("{name}: {value}\r\n");
    }
    request += "\r\n";
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Issues a key with the CLI on `store`; returns it.
fn issue(store: &Path, principal: &str, flags: &[&str]) -> String {
    let store = store.to_str().unwrap();
    let mut args = vec!["issue", "--store", store, "--principal", principal];
    args.extend(["--iterations", "1", "--max-keys-per-principal", "10"]);
    args.extend(flags);
    let out = run_cli(&args, b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Changes `key`'s record with the CLI's `update` and `flags`.
fn update(store: &Path, key: &str, flags: &[&str]) {
    let mut args = vec!["update", "--store", store.to_str().unwrap(), id_of(key)];
    args.extend(flags);
    let out = run_cli(&args, b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits (2 s at most) until the server admits `key`: a change reaching it.
fn until_admitted(addr: &str, key: &str, change: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while whoami(addr, key, &[]).status != 200 {
        assert!(
            Instant::now() < deadline,
            "{change} did not reach the server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The id part of a key (`tak_<id>_<secret>`).
fn id_of(key: &str) -> &str {
    key.split('_').nth(1).unwrap()
}

fn start(store: &Path, trusted_proxies: Option<&str>) -> (common::Server, String) {
    let mut command = Command::new(common::example_binary("axum"));
    command
        .env("APIKEY_STORE", store)
        .env_remove("DATABASE_URL")
        .env_remove("TRUSTED_PROXIES");
    if let Some(proxies) = trusted_proxies {
        command.env("TRUSTED_PROXIES", proxies);
    }
    let (server, addr, _) = common::start_example(command);
    (server, addr)
}

#[test]
fn a_rate_limited_key_gets_its_burst_then_429_with_the_headers_and_its_neighbour_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.json");
    let limited = issue(&store, "limited", &["--rate-limit", "5/1s"]);
    let neighbour = issue(&store, "neighbour", &[]);
    let (_server, addr) = start(&store, None);
    // Cold, then a second at rest so the burst is whole again.
    assert_eq!(whoami(&addr, &limited, &[]).status, 200);
    assert_eq!(whoami(&addr, &neighbour, &[]).status, 200);
    std::thread::sleep(Duration::from_millis(1_100));

    let started = Instant::now();
    let replies: Vec<Reply> = (0..50).map(|_| whoami(&addr, &limited, &[])).collect();
    let elapsed = started.elapsed();
    let neighbours: Vec<u16> = (0..50)
        .map(|_| whoami(&addr, &neighbour, &[]).status)
        .collect();

    let admitted = replies.iter().filter(|r| r.status == 200).count();
    // The burst of 5, plus one per 200 ms the 50 requests took.
    let most = 5 + (elapsed.as_millis() / 200) as usize + 1;
    assert!(
        elapsed < Duration::from_secs(1),
        "50 requests took {elapsed:?}"
    );
    assert!(
        (5..=most).contains(&admitted),
        "admitted {admitted} in {elapsed:?}"
    );
    for refused in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(refused.status, 429, "{}", refused.body);
        let retry: u64 = refused.headers["retry-after"].parse().unwrap();
        assert_eq!(
            retry, 1,
            "a 5/1s limit frees a place within 200 ms, rounded up"
        );
        assert_eq!(refused.headers["ratelimit-policy"], "\"apikey\";q=5;w=1");
        assert!(
            refused.headers["ratelimit"].starts_with("\"apikey\";r=0;t="),
            "{}",
            refused.headers["ratelimit"]
        );
        let body: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
        assert_eq!(body["error"], "rate_limited");
        assert!(!refused.body.contains(&limited), "the key is never echoed");
    }
    assert!(neighbours.iter().all(|s| *s == 200), "{neighbours:?}");
    // The handler sees what is left.
    std::thread::sleep(Duration::from_millis(1_100));
    let ok = whoami(&addr, &limited, &[]);
    let body: serde_json::Value = serde_json::from_str(&ok.body).unwrap();
    assert_eq!(body["rate_limit_remaining"], 4, "{}", ok.body);
}

#[test]
fn a_quota_of_30_admits_exactly_30_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.json");
    let key = issue(&store, "metered", &["--quota", "30"]);
    let (mut server, addr) = start(&store, None);
    let first: Vec<u16> = (0..20).map(|_| whoami(&addr, &key, &[]).status).collect();
    assert!(first.iter().all(|s| *s == 200), "{first:?}");
    // SIGTERM: the server gives its unspent lease back on the way out.
    assert!(server.terminate(Duration::from_secs(10)).success());
    let (_server, addr) = start(&store, None);
    let second: Vec<Reply> = (0..20).map(|_| whoami(&addr, &key, &[])).collect();
    let admitted = second.iter().filter(|r| r.status == 200).count();
    assert_eq!(admitted, 10, "30 in all: 20 before the restart, 10 after");
    for refused in second.iter().filter(|r| r.status != 200) {
        assert_eq!(refused.status, 429);
        let body: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
        assert_eq!(body["error"], "usage_exceeded");
        assert!(
            !refused.headers.contains_key("retry-after"),
            "a quota that never refills has no retry time"
        );
    }
    let shown = run_cli(
        &[
            "show",
            "--store",
            store.to_str().unwrap(),
            id_of(&key),
            "--json",
        ],
        b"",
    );
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["quota_remaining"], 0);
    // A new quota, set with the CLI, takes effect on the running server.
    update(&store, &key, &["--quota", "3"]);
    until_admitted(&addr, &key, "the new quota");
    let rest: Vec<u16> = (0..5).map(|_| whoami(&addr, &key, &[]).status).collect();
    assert_eq!(
        rest,
        [200, 200, 429, 429, 429],
        "3 uses: one above, two here"
    );
}

#[test]
fn a_restarted_server_gives_a_fresh_key_its_whole_burst() {
    // A server stopped with SIGTERM leaves the fleet on the store; the one started after it
    // is alone there, and does not spread a key's burst over its gone predecessor.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.json");
    let before = issue(&store, "before", &["--rate-limit", "3/1s"]);
    let fresh = issue(&store, "fresh", &["--rate-limit", "3/1s"]);
    let (mut server, addr) = start(&store, None);
    assert_eq!(whoami(&addr, &before, &[]).status, 200);
    assert!(server.terminate(Duration::from_secs(10)).success());

    let (_server, addr) = start(&store, None);
    let at_once = std::sync::Barrier::new(6);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let asked: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    at_once.wait();
                    whoami(&addr, &fresh, &[]).status
                })
            })
            .collect();
        asked.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(admitted, 3, "a burst of 3 from rest, alone: {statuses:?}");
}

#[test]
fn an_allow_list_refuses_other_addresses_as_an_invalid_key_and_admits_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.json");
    let elsewhere = issue(&store, "elsewhere", &["--allow-ip", "10.0.0.0/8"]);
    let here = issue(&store, "here", &["--allow-ip", "127.0.0.1/32"]);
    let (_server, addr) = start(&store, None);
    let refused = whoami(&addr, &elsewhere, &[]);
    let made_up = issue(&dir.path().join("other.json"), "nobody", &[]);
    let invalid = whoami(&addr, &made_up, &[]);
    assert_eq!(refused.status, 401);
    assert_eq!(
        (
            refused.body.as_str(),
            refused.headers.get("www-authenticate")
        ),
        (
            invalid.body.as_str(),
            invalid.headers.get("www-authenticate")
        ),
        "outside its allow-list a key is answered as an invalid one"
    );
    assert_eq!(whoami(&addr, &here, &[]).status, 200);
    // Widened with the CLI: the running server admits it within a second.
    update(
        &store,
        &elsewhere,
        &["--allow-ip", "10.0.0.0/8", "--allow-ip", "127.0.0.1"],
    );
    until_admitted(&addr, &elsewhere, "the allow-list change");
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_address_decides_and_a_forged_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.json");
    let key = issue(&store, "partner", &["--allow-ip", "203.0.113.0/24"]);

    // The test client is on 127.0.0.1: as the proxy here.
    let (_proxied, addr) = start(&store, Some("127.0.0.1/32"));
    let via = |xff: &str| whoami(&addr, &key, &[("X-Forwarded-For", xff)]).status;
    assert_eq!(via("203.0.113.5"), 200, "the client the proxy saw");
    assert_eq!(
        via("198.51.100.1, 203.0.113.5"),
        200,
        "left of it: the client's own words"
    );
    assert_eq!(
        via("203.0.113.5, 10.0.0.9"),
        401,
        "the rightmost untrusted hop decides"
    );
    assert_eq!(
        via("unknown"),
        401,
        "an address that does not parse fails closed"
    );
    assert_eq!(
        whoami(&addr, &key, &[]).status,
        401,
        "no header: the proxy itself"
    );

    // Not trusted: the same header from the peer changes nothing.
    let (_direct, addr) = start(&store, None);
    let forged = whoami(&addr, &key, &[("X-Forwarded-For", "203.0.113.5")]);
    assert_eq!(forged.status, 401);
}
