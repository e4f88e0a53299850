//! The `tower-apikey` binary, driven as a script would drive it.
#![cfg(feature = "cli")]

mod common;

use std::process::Output;

use common::run_cli as run;
use serde_json::Value;

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn shared_vectors() -> Value {
    common::vectors("interop.json")
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

    for (principal, expires) in [
        ("bob", "30d"),
        ("carol", "never"),
        ("dave", "2031-01-01T00:00:00Z"),
    ] {
        let out = run(
            &[
                "issue",
                "--store",
                store,
                "--principal",
                principal,
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

/// Exit code, stdout and stderr of one command; asserts no secret reached stderr.
fn step(args: &[&str], stdin: &[u8], secrets: &[&str]) -> (i32, String, String) {
    let out = run(args, stdin);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    for secret in secrets {
        assert!(
            !stderr.contains(secret),
            "{args:?} put a key on stderr: {stderr}"
        );
    }
    (code(&out), stdout, stderr)
}

#[test]
fn show_delete_protected_activate_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.json");
    let store = store.to_str().unwrap();
    let issue = |extra: &[&str]| {
        let mut args = vec![
            "issue",
            "--store",
            store,
            "--principal",
            "ops",
            "--iterations",
            "1",
        ];
        args.extend_from_slice(extra);
        step(&args, b"", &[])
    };
    let (c, key, _) = issue(&["--protected", "--name", "deploy"]);
    assert_eq!(c, 0);
    let key = key.trim().to_owned();
    let id = key.split('_').nth(1).unwrap().to_owned();
    let (c, _, _) = issue(&[]);
    assert_eq!(c, 0);
    let (c, out, err) = issue(&[]);
    assert_eq!(
        (c, out.as_str()),
        (1, ""),
        "a third key is refused by the limit"
    );
    assert!(err.contains("ops already has 2 live key(s)"), "{err}");
    let (c, _, _) = issue(&["--max-keys-per-principal", "3"]);
    assert_eq!(c, 0, "a higher limit lets it in");
    let (c, _, _) = issue(&["--max-keys-per-principal", "0"]);
    assert_eq!(c, 2);

    // show: text and JSON, no secrets.
    let (c, out, _) = step(&["show", "--store", store, &id], b"", &[&key]);
    assert_eq!(c, 0);
    assert!(!out.contains(&key));
    assert!(
        out.contains("principal     ops") && out.contains("protected     yes"),
        "{out}"
    );
    assert!(out.contains("created by    cli:"), "{out}");
    let (_, out, _) = step(&["show", "--store", store, &id, "--json"], b"", &[&key]);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["name"], "deploy");
    assert_eq!(shown["key_expired"], false);
    assert_eq!(shown["last_used_at"], Value::Null);
    assert_eq!(step(&["show", "--store", store, "nosuchid"], b"", &[]).0, 1);

    // deactivate / activate; the listing shows the status.
    assert_eq!(
        step(&["deactivate", "--store", store, &id], b"", &[&key]).0,
        0
    );
    let (_, out, _) = step(&["list", "--store", store, "--json"], b"", &[]);
    let rows: Value = serde_json::from_str(&out).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap();
    assert_eq!(row["status"], "inactive");
    let (c, _, err) = step(&["regenerate", "--store", store, &id], b"", &[&key]);
    assert_eq!(c, 1, "an inactive key is not regenerated");
    assert!(err.contains("inactive"), "{err}");
    assert_eq!(step(&["activate", "--store", store, &id], b"", &[]).0, 0);

    // delete: protected needs --force; then the id is unknown.
    let (c, _, err) = step(&["delete", "--store", store, &id], b"", &[&key]);
    assert_eq!(c, 1);
    assert!(err.contains("protected"), "{err}");
    assert_eq!(
        step(&["delete", "--store", store, &id, "--force"], b"", &[]).0,
        0
    );
    assert_eq!(
        step(&["delete", "--store", store, &id, "--force"], b"", &[]).0,
        1
    );
    assert_eq!(step(&["activate", "--store", store, &id], b"", &[]).0, 1);

    // Revoked is final.
    let (_, other, _) = issue(&["--max-keys-per-principal", "5"]);
    let other_id = other.trim().split('_').nth(1).unwrap().to_owned();
    assert_eq!(
        step(&["revoke", "--store", store, &other_id], b"", &[]).0,
        0
    );
    assert_eq!(
        step(&["activate", "--store", store, &other_id], b"", &[]).0,
        1
    );
    let (_, out, _) = step(&["list", "--store", store], b"", &[]);
    assert!(out.lines().next().unwrap().contains("LAST USED"), "{out}");
}

#[test]
fn issue_key_stdin_and_maximo_import() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.json");
    let store = store.to_str().unwrap();

    // A key in our format keeps its id; an opaque one becomes a legacy record.
    let (c, key, _) = step(
        &[
            "issue",
            "--store",
            store,
            "--principal",
            "a",
            "--iterations",
            "1",
        ],
        b"",
        &[],
    );
    assert_eq!(c, 0);
    let key = key.trim().to_owned();
    let id = key.split('_').nth(1).unwrap();
    let other = tempfile::tempdir().unwrap();
    let other_store = other.path().join("keys.json");
    let other_store = other_store.to_str().unwrap();
    let (c, out, _) = step(
        &[
            "issue",
            "--store",
            other_store,
            "--principal",
            "a",
            "--key-stdin",
        ],
        format!("{key}\n").as_bytes(),
        &[&key],
    );
    assert_eq!(c, 0);
    assert_eq!(out.trim(), id, "the id is the only line on stdout");
    assert!(!out.contains(&key));
    let opaque = "MAXAPIKEY7f3kq9zz0a1b2c3d4e5f6";
    let (c, out, _) = step(
        &[
            "issue",
            "--store",
            other_store,
            "--principal",
            "b",
            "--key-stdin",
        ],
        opaque.as_bytes(),
        &[opaque],
    );
    assert_eq!(c, 0);
    let legacy_id = out.trim().to_owned();
    let (_, shown, _) = step(
        &["show", "--store", other_store, &legacy_id, "--json"],
        b"",
        &[opaque],
    );
    assert!(!shown.contains(opaque));
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["legacy"], true);
    assert_eq!(
        step(
            &[
                "issue",
                "--store",
                other_store,
                "--principal",
                "b",
                "--key-stdin"
            ],
            b"",
            &[]
        )
        .0,
        2
    );

    // Maximo import: CSV with or without a header, or JSON; all or none.
    let vectors = shared_vectors();
    let case = &vectors["valid"][0];
    let record = case["record"].as_str().unwrap();
    let csv = format!("userid,apikey,expiration\nMXINTADM,{record},-1\nWILSON, {record} ,1440\n");
    let (c, _, err) = step(
        &["import", "--store", store, "--format", "maximo"],
        csv.as_bytes(),
        &[],
    );
    assert_eq!(c, 0, "{err}");
    assert!(err.contains("imported 2"), "{err}");
    let json = format!(r#"[{{"userid":"JSONUSER","apikey":"{record}","expiration":60}}]"#);
    assert_eq!(
        step(
            &["import", "--store", store, "--format", "maximo"],
            json.as_bytes(),
            &[]
        )
        .0,
        0
    );
    let (_, out, _) = step(&["list", "--store", store, "--json"], b"", &[]);
    let rows: Value = serde_json::from_str(&out).unwrap();
    let legacy: Vec<&Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["legacy"] == true)
        .collect();
    assert_eq!(legacy.len(), 3);
    let wilson = legacy.iter().find(|r| r["principal"] == "WILSON").unwrap();
    assert!(wilson["expires_at"].is_string());
    let before = rows.as_array().unwrap().len();
    // A bad row: refused as bad input, naming the line, adding nothing, echoing no record.
    let bad = format!("A,{record},-1\nB,1000:zz:00,-1\n");
    let (c, _, err) = step(
        &["import", "--store", store, "--format", "maximo"],
        bad.as_bytes(),
        &[record],
    );
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("row 2"), "{err}");
    let (c, _, err) = step(
        &["import", "--store", store, "--format", "maximo"],
        b"A,B\n",
        &[],
    );
    assert_eq!(c, 2);
    assert!(err.contains("line 1"), "{err}");
    let (_, out, _) = step(&["list", "--store", store, "--json"], b"", &[]);
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), before);

    // A plain export / import round trip, and the import is all or none.
    let (c, export, _) = step(&["export", "--store", store], b"", &[&key]);
    assert_eq!(c, 0);
    assert!(!export.contains(&key));
    let (c, _, err) = step(&["import", "--store", store], export.as_bytes(), &[]);
    assert_eq!(c, 1, "every id is taken already: {err}");
    assert_eq!(step(&["import", "--store", store], b"{not json", &[]).0, 2);
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn every_store_command_takes_a_database_url() {
    let Some(db) = common::pg::database().await else {
        return;
    };
    let url = db.url.as_str();
    let (c, _, err) = step(&["migrate", "--database-url", url], b"", &[]);
    assert_eq!(c, 0, "{err}");
    assert!(err.contains("applied 6"), "{err}");
    let (c, _, err) = step(&["migrate", "--database-url", url], b"", &[]);
    assert_eq!(c, 0);
    assert!(err.contains("applied 0"), "{err}");

    let pg = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--database-url", url]);
        step(&all, b"", &[])
    };
    let (c, key, _) = pg(&["issue", "--principal", "ops", "--iterations", "1"]);
    assert_eq!(c, 0);
    let key = key.trim().to_owned();
    let id = key.split('_').nth(1).unwrap().to_owned();
    assert_eq!(
        pg(&["issue", "--principal", "ops", "--iterations", "1"]).0,
        0
    );
    assert_eq!(
        pg(&["issue", "--principal", "ops"]).0,
        1,
        "the limit holds in PostgreSQL"
    );
    let (c, shown, _) = pg(&["show", &id, "--json"]);
    assert_eq!(c, 0);
    assert!(!shown.contains(&key));
    assert_eq!(pg(&["deactivate", &id]).0, 0);
    assert_eq!(pg(&["regenerate", &id]).0, 1);
    assert_eq!(pg(&["revoke", &id]).0, 0);
    assert_eq!(pg(&["delete", &id]).0, 0);
    assert_eq!(pg(&["delete", &id]).0, 1);
    let (c, listed, _) = pg(&["list", "--json"]);
    assert_eq!(c, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&listed)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // File -> PostgreSQL -> file: the keys survive the moves.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.json");
    let file = file.to_str().unwrap();
    let (_, moved_key, _) = step(
        &[
            "issue",
            "--store",
            file,
            "--principal",
            "mover",
            "--iterations",
            "1",
        ],
        b"",
        &[],
    );
    let (_, export, _) = step(&["export", "--store", file], b"", &[]);
    let (c, _, err) = step(&["import", "--database-url", url], export.as_bytes(), &[]);
    assert_eq!(c, 0, "{err}");
    let (_, back, _) = pg(&["export"]);
    let again = dir.path().join("again.json");
    let again = again.to_str().unwrap();
    assert_eq!(
        step(&["import", "--store", again], back.as_bytes(), &[]).0,
        0
    );
    let store = tower_apikey::FileStore::open(again).await.unwrap();
    let validator = tower_apikey::Validator::builder(store).build();
    let presented = tower_apikey::key::PresentedKey::new(moved_key.trim().as_bytes()).unwrap();
    assert!(validator.validate(&presented).await.is_ok());

    // Neither flag nor DATABASE_URL: told what to give.
    if std::env::var_os("DATABASE_URL").is_none() {
        let out = run(&["list"], b"");
        assert_eq!(code(&out), 2);
        assert!(text(&out.stderr).contains("--store PATH or --database-url URL"));
    }
}

#[test]
fn the_cli_refuses_what_the_admin_api_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.json");
    let store = store.to_str().unwrap();
    let long_name = "n".repeat(tower_apikey::lifecycle::MAX_NAME_CHARS + 1);
    let out = run(
        &[
            "issue",
            "--store",
            store,
            "--principal",
            "alice",
            "--name",
            &long_name,
        ],
        b"",
    );
    assert_eq!(code(&out), 2, "bad input: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("name must be at most 200 characters"));
    let out = run(
        &[
            "issue",
            "--store",
            store,
            "--principal",
            "alice",
            "--permission",
            "",
        ],
        b"",
    );
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("a permission must not be empty"));
    let listed = run(&["list", "--store", store, "--json"], b"");
    assert_eq!(text(&listed.stdout).trim(), "[]", "nothing was issued");
}

#[test]
fn policies_on_issue_and_update_and_bad_values_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.json");
    let store = store.to_str().unwrap();
    let out = run(
        &[
            "issue",
            "--store",
            store,
            "--principal",
            "p",
            "--iterations",
            "1",
            "--rate-limit",
            "100/1m",
            "--quota",
            "10000/1d",
            "--allow-ip",
            "10.1.2.3/8",
            "--allow-ip",
            "2001:db8::1",
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let key = text(&out.stdout);
    let id = key.trim().split('_').nth(1).unwrap().to_owned();
    let show = |id: &str| -> Value {
        serde_json::from_slice(&run(&["show", "--store", store, id, "--json"], b"").stdout).unwrap()
    };
    let shown = show(&id);
    assert_eq!(shown["rate_limit"], "100/1m");
    assert_eq!(shown["quota"], "10000/1d");
    assert_eq!(shown["quota_remaining"], 10000);
    assert_eq!(
        shown["allowed_ips"],
        serde_json::json!(["10.0.0.0/8", "2001:db8::1/128"]),
        "host bits dropped, an address is a host CIDR"
    );

    let out = run(
        &[
            "update",
            "--store",
            store,
            &id,
            "--rate-limit",
            "none",
            "--quota",
            "5",
            "--allow-ip",
            "none",
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let shown = show(&id);
    assert_eq!(
        (&shown["rate_limit"], &shown["quota"], &shown["allowed_ips"]),
        (&Value::Null, &Value::from("5"), &serde_json::json!([]))
    );

    for (flags, says) in [
        (&["--rate-limit", "0/1s"][..], "between 1 and"),
        (&["--rate-limit", "100"][..], "<requests>/<period>"),
        (&["--quota", "10/1w"][..], "s, m, h or d"),
        (
            &["--allow-ip", "example.com"][..],
            "not an IP address or CIDR",
        ),
        (
            &["--allow-ip", "none", "--allow-ip", "10.0.0.1"][..],
            "cannot be given with addresses",
        ),
        (&[][..], "nothing to change"),
    ] {
        let mut args = vec!["update", "--store", store, &id];
        args.extend(flags);
        let out = run(&args, b"");
        assert_eq!(code(&out), 2, "{flags:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{flags:?}: {}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).contains(key.trim()));
    }
    let out = run(
        &[
            "update",
            "--store",
            store,
            "nosuchid00000000",
            "--quota",
            "1",
        ],
        b"",
    );
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
}
