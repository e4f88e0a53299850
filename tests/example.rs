//! The axum example from outside, as a new user runs it: a real server on 127.0.0.1, raw HTTP
//! requests, and the CLI changing the key file while the server runs.
#![cfg(feature = "cli")]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

fn cli(args: &[&str]) -> String {
    let out = common::run_cli(args, b"");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

/// Polls until `status` is answered, for at most one second.
fn within_a_second(addr: &str, key: &str, status: u16) {
    let started = Instant::now();
    loop {
        if common::http_get(addr, "/whoami", Some(key)).0 == status {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not {status} within 1 s"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Starts the example on `store`; returns the server guard, its address, and the demo key
/// it printed, if it did (on an empty store).
fn start_printing(store: &std::path::Path) -> (common::Server, String, Option<String>) {
    let mut command = Command::new(common::example_binary("axum"));
    command
        .env("APIKEY_STORE", store)
        .env_remove("DATABASE_URL");
    common::start_example(command)
}

#[test]
fn example_server_with_cli_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("apikeys.json");
    let store_arg = store.to_str().unwrap();
    let (_server, addr, demo) = start_printing(&store);
    let demo = demo.expect("the demo key is printed on an empty store");

    assert_eq!(common::http_get(&addr, "/health", None).0, 200);
    let (status, body) = common::http_get(&addr, "/whoami", Some(&demo));
    assert_eq!(status, 200);
    let who: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(who["principal"], "demo");
    assert_eq!(who["permissions"], serde_json::json!(["read"]));
    assert_eq!(
        common::http_get(&addr, &format!("/whoami?apikey={demo}"), None).0,
        200
    );
    assert_eq!(common::http_get(&addr, "/whoami", None).0, 401);
    assert_eq!(
        common::http_get(&addr, "/whoami", Some(&format!("{demo}x"))).0,
        401
    );

    // A key issued with the CLI works within a second; revoked, it stops within a second.
    let key = cli(&["issue", "--store", store_arg, "--principal", "bob"]);
    within_a_second(&addr, &key, 200);
    let id = key.split('_').nth(1).unwrap();
    cli(&["revoke", "--store", store_arg, id]);
    within_a_second(&addr, &key, 401);
    // The demo key is untouched.
    assert_eq!(common::http_get(&addr, "/whoami", Some(&demo)).0, 200);
}

/// Starts the example on `store`; returns the server guard and its address.
fn start(store: &std::path::Path) -> (common::Server, String) {
    let (server, addr, _) = start_printing(store);
    (server, addr)
}

/// Exit code, stdout and stderr of one CLI command, with `stdin`.
fn cli_with(args: &[&str], stdin: &str) -> (i32, String, String) {
    let out = common::run_cli(args, stdin.as_bytes());
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// An operator's session with the CLI while the server runs, step by step as a script would.
#[test]
fn operator_session_against_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("apikeys.json");
    let s = store.to_str().unwrap();
    let (_server, addr) = start(&store);
    let key_of = |out: &str| {
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "the key is the only line on stdout: {out:?}"
        );
        lines[0].to_owned()
    };
    let id_of = |key: &str| key.split('_').nth(1).unwrap().to_owned();

    // Two keys for one principal; a third is refused by the limit (exit 1), no key printed.
    let one = key_of(&cli(&[
        "issue",
        "--store",
        s,
        "--principal",
        "ops",
        "--expires",
        "30d",
    ]));
    let two = key_of(&cli(&["issue", "--store", s, "--principal", "ops"]));
    let (code, out, err) = cli_with(&["issue", "--store", s, "--principal", "ops"], "");
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    within_a_second(&addr, &one, 200);
    within_a_second(&addr, &two, 200);

    // Rotate: with both slots taken a grace period does not fit (exit 1); with none, it does.
    let (code, _, err) = cli_with(&["rotate", "--store", s, &id_of(&one), "--grace", "7d"], "");
    assert_eq!(code, 1, "{err}");
    let (code, out, err) = cli_with(&["rotate", "--store", s, &id_of(&one), "--grace", "0s"], "");
    assert_eq!(code, 0, "{err}");
    let three = key_of(&out);
    within_a_second(&addr, &three, 200);
    within_a_second(&addr, &one, 401);

    // Regenerate: same id, new secret; the running server refuses the old one within 1 s.
    let (code, out, err) = cli_with(&["regenerate", "--store", s, &id_of(&three)], "");
    assert_eq!(code, 0, "{err}");
    let four = key_of(&out);
    assert_eq!(id_of(&four), id_of(&three));
    within_a_second(&addr, &three, 401);
    within_a_second(&addr, &four, 200);

    // Deactivate, then try to regenerate: refused (exit 1).
    assert_eq!(
        cli_with(&["deactivate", "--store", s, &id_of(&two)], "").0,
        0
    );
    within_a_second(&addr, &two, 401);
    let (code, out, err) = cli_with(&["regenerate", "--store", s, &id_of(&two)], "");
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.contains("inactive"));
    for key in [&one, &two, &three, &four] {
        assert!(!err.contains(key.as_str()));
    }

    // Export, import into an empty store, and a server on it accepts the same keys.
    let (code, export, _) = cli_with(&["export", "--store", s], "");
    assert_eq!(code, 0);
    for key in [&one, &two, &three, &four] {
        assert!(!export.contains(key.as_str()), "no secret in an export");
    }
    let moved = dir.path().join("moved.json");
    let m = moved.to_str().unwrap();
    let (code, _, err) = cli_with(&["import", "--store", m], &export);
    assert_eq!(code, 0, "{err}");
    let (_second, moved_addr) = start(&moved);
    assert_eq!(common::http_get(&moved_addr, "/whoami", Some(&four)).0, 200);
    assert_eq!(
        common::http_get(&moved_addr, "/whoami", Some(&two)).0,
        401,
        "still inactive"
    );
    assert_eq!(
        common::http_get(&moved_addr, "/whoami", Some(&one)).0,
        401,
        "still expired"
    );
    assert_eq!(cli_with(&["activate", "--store", m, &id_of(&two)], "").0, 0);
    within_a_second(&moved_addr, &two, 200);
}

/// Two copies of the example on one PostgreSQL database are a fleet: a key revoked with the
/// CLI is refused by both within a second.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_servers_on_one_database_form_a_fleet() {
    let Some(db) = common::pg::database().await else {
        return;
    };
    let on_db = || {
        let mut command = Command::new(common::example_binary("axum"));
        command.env("DATABASE_URL", &db.url);
        common::start_example(command)
    };
    let (_first, first, demo) = on_db();
    let demo = demo.expect("the first server finds the database empty and issues a demo key");
    let (_second, second, none) = on_db();
    assert!(none.is_none(), "the second finds the demo key there");
    for addr in [&first, &second] {
        assert_eq!(common::http_get(addr, "/whoami", Some(&demo)).0, 200);
    }
    let key = cli_with(
        &["issue", "--database-url", &db.url, "--principal", "bob"],
        "",
    )
    .1;
    let key = key.trim().to_owned();
    within_a_second(&first, &key, 200);
    within_a_second(&second, &key, 200);
    let id = key.split('_').nth(1).unwrap();
    assert_eq!(
        cli_with(&["revoke", "--database-url", &db.url, id], "").0,
        0
    );
    within_a_second(&first, &key, 401);
    within_a_second(&second, &key, 401);
    assert_eq!(common::http_get(&second, "/whoami", Some(&demo)).0, 200);
}
