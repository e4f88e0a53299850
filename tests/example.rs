//! The axum example from outside, as a new user runs it: a real server on 127.0.0.1, raw HTTP
//! requests, and the CLI changing the key file while the server runs.
#![cfg(feature = "cli")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cargo test` builds the examples next to the test binaries' directory.
fn example_binary() -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let path = deps.parent().unwrap().join("examples").join("axum");
    assert!(
        path.exists(),
        "the axum example was not built at {}",
        path.display()
    );
    path
}

/// Status code and body of a GET.
fn get(addr: &str, target: &str, apikey: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let header = apikey
        .map(|k| format!("apikey: {k}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\n{header}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("an HTTP status line");
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

fn cli(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tower-apikey"))
        .args(args)
        .output()
        .unwrap();
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
        if get(addr, "/whoami", Some(key)).0 == status {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not {status} within 1 s"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn example_server_with_cli_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("apikeys.json");
    let store_arg = store.to_str().unwrap();
    let mut child = Command::new(example_binary())
        .env("ADDR", "127.0.0.1:0")
        .env("APIKEY_STORE", &store)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let _server = Server(child);

    // The demo key, printed once, then the address.
    let mut demo = None;
    let mut addr = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        let trimmed = line.trim();
        if trimmed.starts_with("tak_") && demo.is_none() {
            demo = Some(trimmed.to_owned());
        }
        if let Some(rest) = trimmed.strip_prefix("listening on http://") {
            addr = Some(rest.split(' ').next().unwrap().to_owned());
            break;
        }
    }
    let demo = demo.expect("the demo key is printed on an empty store");
    let addr = addr.expect("the server says where it listens");

    assert_eq!(get(&addr, "/health", None).0, 200);
    let (status, body) = get(&addr, "/whoami", Some(&demo));
    assert_eq!(status, 200);
    let who: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(who["principal"], "demo");
    assert_eq!(who["permissions"], serde_json::json!(["read"]));
    assert_eq!(get(&addr, &format!("/whoami?apikey={demo}"), None).0, 200);
    assert_eq!(get(&addr, "/whoami", None).0, 401);
    assert_eq!(get(&addr, "/whoami", Some(&format!("{demo}x"))).0, 401);

    // A key issued with the CLI works within a second; revoked, it stops within a second.
    let key = cli(&["issue", "--store", store_arg, "--principal", "bob"]);
    within_a_second(&addr, &key, 200);
    let id = key.split('_').nth(1).unwrap();
    cli(&["revoke", "--store", store_arg, id]);
    within_a_second(&addr, &key, 401);
    // The demo key is untouched.
    assert_eq!(get(&addr, "/whoami", Some(&demo)).0, 200);
}
