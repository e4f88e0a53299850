//! The `tower-apikey` binary, driven as a script would drive it.
#![cfg(feature = "cli")]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tower-apikey"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before reading stdin closes it: not an error here.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn shared_vectors() -> Value {
    let path = format!(
        "{}/../shared/vectors/interop.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("shared vectors missing at {path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn verify_accepts_records_made_by_python_hashlib() {
    let vectors = shared_vectors();
    for v in vectors["valid"].as_array().unwrap() {
        let (key, prf, record) = (
            v["key"].as_str().unwrap(),
            v["prf"].as_str().unwrap(),
            v["record"].as_str().unwrap(),
        );
        let out = run(
            &["verify", "--record", record, "--prf", prf],
            format!("{key}\n").as_bytes(),
        );
        assert_eq!(code(&out), 0, "{v}: {}", text(&out.stderr));
        let out = run(
            &["verify", "--record", record, "--prf", prf],
            format!("{key}x\n").as_bytes(),
        );
        assert_eq!(code(&out), 1, "{v}");
        assert!(!text(&out.stderr).contains(key), "the key shows on stderr");
    }
    for v in vectors["malformed"].as_array().unwrap() {
        let out = run(
            &["verify", "--record", v["record"].as_str().unwrap()],
            b"key\n",
        );
        assert_eq!(code(&out), 2, "{v}");
        assert!(
            text(&out.stderr).contains("malformed record"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn hash_then_verify_with_every_option() {
    for prf in ["sha1", "sha256", "sha512"] {
        let out = run(
            &[
                "hash",
                "--prf",
                prf,
                "--iterations",
                "1200",
                "--salt-bytes",
                "16",
                "--hash-bytes",
                "32",
            ],
            b"s3cret\n",
        );
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
        let record = text(&out.stdout);
        let record = record.strip_suffix('\n').expect("one line");
        let parts: Vec<&str> = record.split(':').collect();
        assert_eq!((parts[0], parts[1].len(), parts[2].len()), ("1200", 32, 64));
        // One trailing newline is stripped, no more.
        assert_eq!(
            code(&run(
                &["verify", "--record", record, "--prf", prf],
                b"s3cret"
            )),
            0
        );
        assert_eq!(
            code(&run(
                &["verify", "--record", record, "--prf", prf],
                b"s3cret\n"
            )),
            0
        );
        assert_eq!(
            code(&run(
                &["verify", "--record", record, "--prf", prf],
                b"s3cret\n\n"
            )),
            1
        );
    }
    // Defaults: the Maximo form.
    let out = run(&["hash"], b"k\n");
    let record = text(&out.stdout);
    let parts: Vec<&str> = record.trim_end().split(':').collect();
    assert_eq!((parts[0], parts[1].len(), parts[2].len()), ("1000", 48, 48));
    // Bad input: exit 2 with a reason.
    for args in [
        vec!["hash", "--iterations", "0"],
        vec!["hash", "--prf", "md5"],
        vec!["hash", "--salt-bytes", "1"],
    ] {
        let out = run(&args, b"k\n");
        assert_eq!(code(&out), 2, "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    assert_eq!(code(&run(&["hash"], b"")), 2, "an empty key is refused");
}

#[test]
fn issue_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.json");
    let store = store.to_str().unwrap();

    let out = run(
        &[
            "issue",
            "--store",
            store,
            "--principal",
            "alice",
            "--name",
            "ci",
            "--permission",
            "read",
            "--permission",
            "write",
            "--expires",
            "P1W",
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "the key is the only line on stdout");
    let key = lines[0];
    assert!(key.starts_with("tak_"));
    assert!(
        !std::fs::read_to_string(dir.path().join("keys.json"))
            .unwrap()
            .contains(key),
        "the store holds no plaintext"
    );

    for expires in ["30d", "never", "2031-01-01T00:00:00Z"] {
        let out = run(
            &[
                "issue",
                "--store",
                store,
                "--principal",
                "bob",
                "--expires",
                expires,
            ],
            b"",
        );
        assert_eq!(code(&out), 0, "{expires}: {}", text(&out.stderr));
    }
    let out = run(
        &[
            "issue",
            "--store",
            store,
            "--principal",
            "bob",
            "--expires",
            "whenever",
        ],
        b"",
    );
    assert_eq!(code(&out), 2);

    let out = run(&["list", "--store", store, "--json"], b"");
    assert_eq!(code(&out), 0);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert!(!text(&out.stdout).contains(key));
    let id = key.split('_').nth(1).unwrap();
    let alice = rows
        .iter()
        .find(|r| r["id"] == id)
        .expect("the issued key is listed");
    assert_eq!(alice["principal"], "alice");
    assert_eq!(alice["status"], "active");
    assert_eq!(alice["permissions"], serde_json::json!(["read", "write"]));
    let expires: jiff::Timestamp = alice["expires_at"].as_str().unwrap().parse().unwrap();
    let week = expires.duration_since(jiff::Timestamp::now()).as_secs();
    assert!(
        (7 * 86400 - 60..=7 * 86400).contains(&week),
        "P1W is a week from now"
    );
    assert!(
        rows.iter().any(|r| r["expires_at"].is_null()),
        "never expires is null"
    );

    let out = run(&["list", "--store", store, "--principal", "alice"], b"");
    let table = text(&out.stdout);
    assert_eq!(table.lines().count(), 2, "header and one row:\n{table}");
    assert!(table.contains(id));
    let header = table.lines().next().unwrap();
    let row = table.lines().nth(1).unwrap();
    let column = header.find("PRINCIPAL").unwrap();
    assert!(
        row[column..].starts_with("alice"),
        "columns line up:\n{table}"
    );

    let out = run(&["revoke", "--store", store, id], b"");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let out = run(
        &["list", "--store", store, "--json", "--principal", "alice"],
        b"",
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["status"], "revoked");

    let out = run(&["revoke", "--store", store, "nosuchid"], b"");
    assert_eq!(code(&out), 1, "an unknown id is refused");
    let out = run(&["revoke", "--store", store, "bad_id"], b"");
    assert_eq!(code(&out), 2, "a malformed id is bad usage");
    let out = run(&["issue", "--store", store], b"");
    assert_eq!(code(&out), 2, "a missing --principal is bad usage");
}

#[test]
fn a_corrupt_store_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.json");
    std::fs::write(&store, "not json").unwrap();
    let out = run(
        &[
            "issue",
            "--store",
            store.to_str().unwrap(),
            "--principal",
            "a",
        ],
        b"",
    );
    assert_eq!(code(&out), 2);
    assert!(
        out.stdout.is_empty(),
        "no key is printed for a key that was not stored"
    );
    assert!(
        text(&out.stderr).contains("not valid"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&store).unwrap(), "not json");
}
