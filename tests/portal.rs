//! Self-service keys outside in: the portal example (an app with users of its own) as its own
//! process on 127.0.0.1, two users, alice (`read,write`) and bob (`read`), over the JSON API
//! and in a real headless Chromium; and the example's `/health` and SIGTERM.
#![cfg(feature = "selfservice")]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tower_apikey::hash::{HashParams, Pbkdf2Hash};

struct Portal {
    server: common::Server,
    addr: String,
    store: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Portal {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let record = |password: &str| {
            Pbkdf2Hash::create(password.as_bytes(), &HashParams::default())
                .unwrap()
                .to_string()
        };
        let users = dir.path().join("users.txt");
        std::fs::write(
            &users,
            format!(
                "# name:permissions:record\nalice:read,write:{}\nbob:read:{}\n",
                record("alice-password"),
                record("bob-password")
            ),
        )
        .unwrap();
        let store = dir.path().join("apikeys.json");
        let mut command = Command::new(common::example_binary("portal"));
        command
            .env("APIKEY_STORE", &store)
            .env("PORTAL_USERS", &users);
        let (server, addr, _) = common::start_example(command);
        Self {
            server,
            addr,
            store,
            _dir: dir,
        }
    }

    /// The session cookie of `user`, signed in with the form.
    fn sign_in(&self, user: &str) -> String {
        let body = format!("user={user}&password={user}-password");
        let (status, headers, _) = common::http_exchange(
            "POST",
            &self.addr,
            "/sign-in",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        );
        assert_eq!(status, 303);
        let set = &headers.iter().find(|(n, _)| n == "set-cookie").unwrap().1;
        set.split(';').next().unwrap().to_owned()
    }

    /// A JSON API call as the user with `cookie`, from the app's own pages (`Origin` its own).
    fn api(&self, cookie: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
        let origin = format!("http://{}", self.addr);
        let (status, _, text) = common::http_exchange(
            method,
            &self.addr,
            &format!("/api/account/keys{path}"),
            &[
                ("Cookie", cookie),
                ("Origin", &origin),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        );
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn whoami(&self, key: &str) -> u16 {
        common::http_get(&self.addr, "/whoami", Some(key)).0
    }
}

#[test]
fn two_users_each_reach_only_their_own_keys() {
    let portal = Portal::start();
    let (alice, bob) = (portal.sign_in("alice"), portal.sign_in("bob"));
    // No user: 401.
    assert_eq!(portal.api("portal-session=nobody", "GET", "", "").0, 401);

    let (status, made) = portal.api(
        &alice,
        "POST",
        "",
        r#"{"name": "reports", "permissions": ["read"], "expires": "90d"}"#,
    );
    assert_eq!(status, 201, "{made}");
    let (id, key) = (
        made["record"]["id"].as_str().unwrap().to_owned(),
        made["key"].as_str().unwrap().to_owned(),
    );
    assert_eq!(portal.whoami(&key), 200);

    // bob: never sees it, cannot touch it (404 as a missing id), cannot ask for write.
    let (_, list) = portal.api(&bob, "GET", "", "");
    assert!(!list.to_string().contains(&id));
    for (method, path) in [
        ("POST", format!("/{id}/revoke")),
        ("POST", format!("/{id}/rotate")),
        ("POST", format!("/{id}/regenerate")),
        ("DELETE", format!("/{id}")),
    ] {
        let (status, answer) = portal.api(&bob, method, &path, "");
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }
    assert_eq!(portal.whoami(&key), 200);
    let (status, answer) = portal.api(
        &bob,
        "POST",
        "",
        r#"{"name": "x", "permissions": ["write"], "expires": "30d"}"#,
    );
    assert_eq!((status, answer["error"].as_str()), (403, Some("forbidden")));
    for body in [
        r#"{"name": "x", "permissions": ["read"], "expires": "400d"}"#,
        r#"{"name": "x", "permissions": ["read"]}"#,
    ] {
        let (status, answer) = portal.api(&bob, "POST", "", body);
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("bad_request")),
            "{body}"
        );
    }
    // The per-user cap (the key manager's limit, 2): 409.
    let second = r#"{"name": "second", "permissions": [], "expires": "7d"}"#;
    assert_eq!(portal.api(&alice, "POST", "", second).0, 201);
    let (status, answer) = portal.api(&alice, "POST", "", second);
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("limit_reached"))
    );

    // Another site: 403, over the API and on the page; a page's post without its token: 403.
    let (status, _, _) = common::http_exchange(
        "POST",
        &portal.addr,
        "/api/account/keys",
        &[
            ("Cookie", &alice),
            ("Origin", "http://evil.example"),
            ("Content-Type", "application/json"),
        ],
        br#"{"name": "x", "permissions": [], "expires": "7d"}"#,
    );
    assert_eq!(status, 403);
    let page_post = |origin: &str, body: &str| {
        common::http_exchange(
            "POST",
            &portal.addr,
            &format!("/account/api-keys/{id}/revoke"),
            &[
                ("Cookie", &alice),
                ("Origin", origin),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            body.as_bytes(),
        )
        .0
    };
    let own = format!("http://{}", portal.addr);
    assert_eq!(page_post(&own, "csrf=forged"), 403);
    assert_eq!(page_post("http://evil.example", ""), 403);
    assert_eq!(portal.whoami(&key), 200);

    // alice revokes her key: refused within a second.
    assert_eq!(
        portal.api(&alice, "POST", &format!("/{id}/revoke"), "").0,
        200
    );
    let started = Instant::now();
    while portal.whoami(&key) != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not refused within 1 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The audit log names alice as the actor.
    let store = portal.store.to_str().unwrap().to_owned();
    let out = common::run_cli(&["events", "--store", &store, "--key", &id, "--json"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Value = serde_json::from_slice(&out.stdout).unwrap();
    let actors: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap_or_default())
        .collect();
    assert!(
        actors.len() >= 2 && actors.iter().all(|a| *a == "alice"),
        "{actors:?}"
    );
}

#[test]
fn the_portal_answers_health_and_stops_on_sigterm() {
    let mut portal = Portal::start();
    assert_eq!(common::http_get(&portal.addr, "/health", None).0, 200);
    assert_eq!(common::http_get(&portal.addr, "/whoami", None).0, 401);
    let status = portal.server.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[cfg(feature = "console")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_makes_a_key_in_chromium_and_bob_never_sees_it() {
    use common::browser::{browser, button, labelled, link, start_driver, Visit};

    let Some(driver) = start_driver() else {
        return;
    };
    let portal = Portal::start();
    let origin = format!("http://{}", portal.addr);
    let client = browser(&driver).await;
    let mut visit = Visit {
        client: &client,
        checked: Vec::new(),
    };
    sign_in(&visit, &origin, "alice").await;
    visit.check("portal-keys").await;
    visit.fill("Name", "reporting").await;
    visit.click(&labelled("read")).await;
    visit
        .find(&labelled("Expires"))
        .await
        .select_by_value("30d")
        .await
        .unwrap();
    visit.click(&button("Create key")).await;
    let key = visit.text_of("//*[@id='new-key']").await;
    visit.check("portal-reveal").await;
    assert_eq!(portal.whoami(&key), 200);
    visit.click(&link("I have copied the key")).await;
    visit.find("//td[normalize-space(.)='reporting']").await;

    // bob's page never shows it.
    client.delete_all_cookies().await.unwrap();
    sign_in(&visit, &origin, "bob").await;
    let page = client.source().await.unwrap();
    assert!(!page.contains("reporting"));
    assert!(!page.contains(&key[4..20]), "alice's key id on bob's page");
    // bob's page offers only what he holds.
    assert!(client
        .find(fantoccini::Locator::XPath(&labelled("write")))
        .await
        .is_err());
    visit.check("portal-keys-bob").await;
    let checked = std::mem::take(&mut visit.checked);
    client.close().await.unwrap();
    assert_eq!(checked, ["portal-keys", "portal-reveal", "portal-keys-bob"]);
}

/// Signs `user` in with the portal's form, as a person would.
#[cfg(feature = "console")]
async fn sign_in(visit: &common::browser::Visit<'_>, origin: &str, user: &str) {
    use common::browser::button;

    visit
        .client
        .goto(&format!("{origin}/sign-in"))
        .await
        .unwrap();
    visit.fill("User name", user).await;
    visit.fill("Password", &format!("{user}-password")).await;
    visit.click(&button("Sign in")).await;
    visit.find("//h1[normalize-space(.)='Your API keys']").await;
}
