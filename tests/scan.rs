//! Finding leaked keys: the `scan` command over a tree of code, logs and JSON, and the
//! gitleaks rule the repository ships, checked against generated keys.

mod common;

use std::path::Path;

use tower_apikey::key::KeyFormat;

#[test]
fn the_shipped_gitleaks_rule_is_the_scanners_pattern_and_matches_generated_keys() {
    let rules = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/gitleaks.toml"),
    )
    .unwrap();
    let regex = rules
        .lines()
        .find_map(|line| line.strip_prefix("regex = '''")?.strip_suffix("'''"))
        .expect("a regex line in contrib/gitleaks.toml");
    let format = KeyFormat::default();
    assert_eq!(regex, tower_apikey::scan::pattern(&format));
    let regex = regex::Regex::new(regex).unwrap();
    for _ in 0..200 {
        let (_, key) = format.generate().unwrap();
        let text = format!("config: apikey=\"{}\"; done", key.expose());
        let matched = regex.find(&text).map(|m| m.as_str());
        assert_eq!(matched, Some(key.expose()));
        assert!(
            !regex.is_match(&format!("x{}", key.expose())),
            "needs a word boundary"
        );
    }
}

#[cfg(feature = "cli")]
mod cli {
    use std::process::Output;

    use super::*;
    use common::run_cli as run;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    fn issue(store: &Path, principal: &str) -> String {
        let out = run(
            &[
                "issue",
                "--store",
                store.to_str().unwrap(),
                "--principal",
                principal,
                "--iterations",
                "1",
            ],
            b"",
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    }

    fn id(key: &str) -> &str {
        key.split('_').nth(1).unwrap()
    }

    fn assert_no_secret(out: &Output, keys: &[&str]) {
        for key in keys {
            let secret = &key[key.len() - 20..];
            assert!(!text(&out.stdout).contains(secret), "a secret on stdout");
            assert!(!text(&out.stderr).contains(secret), "a secret on stderr");
        }
    }

    #[test]
    fn scan_finds_each_key_once_says_which_are_live_and_prints_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("keys.json");
        let live = issue(&store, "alice");
        let revoked = issue(&store, "bob");
        let out = run(
            &["revoke", "--store", store.to_str().unwrap(), id(&revoked)],
            b"",
        );
        assert!(out.status.success());
        let (_, stranger) = KeyFormat::default().generate().unwrap();
        let stranger = stranger.expose().to_owned();

        let tree = dir.path().join("repo");
        std::fs::create_dir_all(tree.join("src/deep")).unwrap();
        std::fs::write(
            tree.join("src/main.rs"),
            format!("fn main() {{\n    let key = \"{live}\";\n}}\n"),
        )
        .unwrap();
        std::fs::write(
            tree.join("src/deep/app.log"),
            format!("GET /x?apikey={revoked} 200\nGET /y 401\napikey: {stranger}\n"),
        )
        .unwrap();
        std::fs::write(
            tree.join("settings.json"),
            format!(
                "{{\"key\": \"{live}\", \"other\": \"tak_notakey_{}\"}}",
                "A".repeat(40)
            ),
        )
        .unwrap();
        std::os::unix::fs::symlink(&tree, tree.join("src/loop")).unwrap();

        let out = run(&["scan", tree.to_str().unwrap()], b"");
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let root = tree.display();
        assert_eq!(
            text(&out.stdout),
            format!(
                "{root}/settings.json:1: key {}\n\
                 {root}/src/deep/app.log:1: key {}\n\
                 {root}/src/deep/app.log:3: key {}\n\
                 {root}/src/main.rs:2: key {}\n",
                id(&live),
                id(&revoked),
                id(&stranger),
                id(&live)
            )
        );
        assert_no_secret(&out, &[&live, &revoked, &stranger]);

        let out = run(
            &[
                "scan",
                tree.to_str().unwrap(),
                "--store",
                store.to_str().unwrap(),
            ],
            b"",
        );
        assert_eq!(out.status.code(), Some(1));
        let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
        let said = |key: &str| -> Vec<&str> {
            lines
                .iter()
                .filter(|l| l.contains(&format!("key {} ", id(key))))
                .map(|l| l.rsplit_once(&format!("{} ", id(key))).unwrap().1)
                .collect()
        };
        assert_eq!(said(&live), ["live", "live"]);
        assert_eq!(said(&revoked), ["revoked"]);
        assert_eq!(said(&stranger), ["not ours"]);
        assert_no_secret(&out, &[&live, &revoked, &stranger]);

        // Stdin; nothing found is 0; a path that is not there is 2.
        let out = run(&["scan"], format!("token={live}\n").as_bytes());
        assert_eq!(
            (out.status.code(), text(&out.stdout)),
            (Some(1), format!("-:1: key {}\n", id(&live)))
        );
        let out = run(&["scan"], b"nothing to see tak_here_too_short\n");
        assert_eq!(
            (out.status.code(), text(&out.stdout)),
            (Some(0), String::new())
        );
        let out = run(&["scan", dir.path().join("missing").to_str().unwrap()], b"");
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    }

    fn show(store: &Path, key: &str) -> serde_json::Value {
        let out = run(
            &[
                "show",
                "--store",
                store.to_str().unwrap(),
                id(key),
                "--json",
            ],
            b"",
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    #[test]
    fn scan_revoke_revokes_exactly_ours_not_yet_revoked_as_leaked_with_where() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("keys.json");
        let s = store.to_str().unwrap();
        let live = issue(&store, "alice");
        let paused = issue(&store, "bob");
        let retired = issue(&store, "carol");
        let untouched = issue(&store, "dave");
        assert!(run(&["deactivate", "--store", s, id(&paused)], b"")
            .status
            .success());
        let out = run(
            &["revoke", "--store", s, id(&retired), "--reason", "retired"],
            b"",
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let (_, stranger) = KeyFormat::default().generate().unwrap();
        let stranger = stranger.expose().to_owned();
        // A well-formed key with a stored id and another secret: not ours, not revoked.
        let forged = KeyFormat::default()
            .generate_for(&tower_apikey::key::KeyId::new(id(&untouched)).unwrap())
            .unwrap();
        let forged = forged.expose().to_owned();

        let tree = dir.path().join("repo");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(
            tree.join("a.env"),
            format!("KEY={live}\nOLD={paused}\nGONE={retired}\n"),
        )
        .unwrap();
        std::fs::write(
            tree.join("b.log"),
            format!("{stranger} {forged}\nagain {live}\n"),
        )
        .unwrap();

        let out = run(&["scan", "--revoke", tree.to_str().unwrap()], b"");
        assert_eq!(out.status.code(), Some(2), "--revoke without a store");

        let out = run(
            &["scan", "--revoke", tree.to_str().unwrap(), "--store", s],
            b"",
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let root = tree.display();
        assert_eq!(
            text(&out.stdout),
            format!(
                "{root}/a.env:1: key {} live, revoked now\n\
                 {root}/a.env:2: key {} inactive, revoked now\n\
                 {root}/a.env:3: key {} revoked\n\
                 {root}/b.log:1: key {} not ours\n\
                 {root}/b.log:1: key {} not ours\n\
                 {root}/b.log:2: key {} live\n",
                id(&live),
                id(&paused),
                id(&retired),
                id(&stranger),
                id(&untouched),
                id(&live),
            )
        );
        assert_no_secret(&out, &[&live, &paused, &retired, &stranger, &untouched]);

        let record = show(&store, &live);
        assert_eq!(record["status"], "revoked");
        assert_eq!(record["revocation"]["reason"], "leaked");
        assert_eq!(
            record["revocation"]["location"],
            format!("{root}/a.env:1").as_str()
        );
        assert_eq!(show(&store, &paused)["revocation"]["reason"], "leaked");
        let kept = show(&store, &retired);
        assert_eq!(
            kept["revocation"]["reason"], "retired",
            "the first revocation stands"
        );
        assert_eq!(show(&store, &untouched)["status"], "active");

        // Nothing left to revoke.
        let out = run(
            &["scan", "--revoke", tree.to_str().unwrap(), "--store", s],
            b"",
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(
            !text(&out.stdout).contains("revoked now"),
            "{}",
            text(&out.stdout)
        );
    }
}
