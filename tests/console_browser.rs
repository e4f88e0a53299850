//! The admin console in a real headless Chromium, driven over WebDriver (chromedriver) the
//! way a person uses it: elements found by their visible labels and texts, keyboard and
//! clicks; the admin example (feature `console`) as its own process on 127.0.0.1. Every page
//! visited is checked with axe-core (no serious or critical violation) and saved as a
//! screenshot under `target/console-screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them it says so and passes,
//! unless `TOWER_APIKEY_REQUIRE_BROWSER` is set (as `.ci/run` does), when it fails.
#![cfg(feature = "console")]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::browser::{browser, button, labelled, link, start_driver, Visit, ENTER, TAB};
use fantoccini::Locator;

/// `/whoami` with `key`: its status.
fn whoami(addr: &str, key: &str) -> u16 {
    common::http_get(addr, "/whoami", Some(key)).0
}

/// Creates a key through "New key" for `principal`; returns its id and the key read from
/// `#new-key`.
async fn create_key(visit: &mut Visit<'_>, principal: &str, check: bool) -> (String, String) {
    visit.click(&link("New key")).await;
    visit.fill("Principal", principal).await;
    visit
        .fill("Name", &format!("{principal}'s integration"))
        .await;
    visit.fill("Permissions", "read, write").await;
    visit.fill("Expires", "90d").await;
    if check {
        visit.check("new-key-form").await;
    }
    visit.click(&button("Create key")).await;
    let key = visit.text_of("//*[@id='new-key']").await;
    assert!(visit
        .text_of("//*[@role='alert']")
        .await
        .contains("will not be shown again"));
    if check {
        visit.check("reveal").await;
    }
    visit.click(&link("I have copied the key")).await;
    let url = visit.client.current_url().await.unwrap();
    let id = url.path().rsplit('/').next().unwrap().to_owned();
    (id, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_manages_keys_in_chromium() {
    let Some(driver) = start_driver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(common::example_binary("admin"));
    command
        .env("APIKEY_STORE", dir.path().join("apikeys.json"))
        .env("USAGE_FLUSH_MS", "200");
    let (_server, addr, admin_key) = common::start_example(command);
    let admin_key = admin_key.unwrap();
    let client = browser(&driver).await;
    let mut visit = Visit {
        client: &client,
        checked: Vec::new(),
    };
    let origin = format!("http://{addr}");

    // 1. Sign in with the keyboard alone: Tab to the field, type, Enter.
    client.goto(&format!("{origin}/console")).await.unwrap();
    visit.find(&labelled("Admin API key")).await;
    assert!(client
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/console/sign-in"));
    visit.check("sign-in").await;
    let body = client.find(Locator::Css("body")).await.unwrap();
    let mut tabs = 0;
    loop {
        body.send_keys(TAB).await.unwrap();
        let active = client.active_element().await.unwrap();
        if active.attr("id").await.unwrap().as_deref() == Some("key") {
            // The focused field shows a focus ring.
            let outline = active.css_value("outline-style").await.unwrap();
            assert_ne!(outline, "none", "no visible focus ring");
            active.send_keys(&admin_key).await.unwrap();
            active.send_keys(ENTER).await.unwrap();
            break;
        }
        tabs += 1;
        assert!(tabs < 10, "the key field is not reachable by Tab");
    }
    visit.find(&link("New key")).await;
    visit.check("keys").await;

    // 2. Create a key and read it from #new-key; it works at once.
    let (id, key) = create_key(&mut visit, "partner", true).await;
    assert_eq!(whoami(&addr, &key), 200);

    // 5. The usage chart shows the requests made (written every 200 ms here).
    for _ in 0..4 {
        assert_eq!(whoami(&addr, &key), 200);
    }
    let wrong = format!("{}x", &key[..key.len() - 1]);
    assert_eq!(whoami(&addr, &wrong), 401);
    let started = Instant::now();
    loop {
        client.refresh().await.unwrap();
        let summary = visit.text_of("//figure//figcaption").await;
        if summary.contains("6 requests") {
            assert!(summary.contains("5 accepted, 1 refused"), "{summary}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "chart: {summary}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let chart = client.find(Locator::Css("figure.chart svg")).await.unwrap();
    assert_eq!(chart.attr("role").await.unwrap().as_deref(), Some("img"));
    visit.click(&link("7 d")).await;
    visit
        .find("//a[@aria-current='page' and normalize-space(.)='7 d']")
        .await;
    visit.click(&link("24 h")).await;
    visit.check("key").await;

    // 3. Revoke it in the console: refused at /whoami within a second.
    visit
        .find(&labelled("Reason"))
        .await
        .select_by_value("compromised")
        .await
        .unwrap();
    visit.fill("Location", "ticket 4711").await;
    visit.click(&button("Revoke key")).await;
    let started = Instant::now();
    while whoami(&addr, &key) != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not refused within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    visit.find("//dd[normalize-space(.)='ticket 4711']").await;
    visit.find("//dd[normalize-space(.)='compromised']").await;
    assert!(client.source().await.unwrap().contains(&id));

    // 4. Revoke three keys at once.
    let mut three = Vec::new();
    for principal in ["bulk-1", "bulk-2", "bulk-3"] {
        three.push(create_key(&mut visit, principal, false).await);
    }
    visit.click(&link("Keys")).await;
    for (id, _) in &three {
        visit.click(&labelled(&format!("Select {id}"))).await;
    }
    visit
        .find(&labelled("Reason"))
        .await
        .select_by_value("retired")
        .await
        .unwrap();
    visit.click(&button("Revoke selected")).await;
    assert!(visit
        .text_of("//*[@role='status']")
        .await
        .contains("Revoked 3 of 3"));
    visit.check("revoked-selected").await;
    for (_, key) in &three {
        assert_eq!(whoami(&addr, key), 401);
    }

    // The other pages: the audit log, a principal's keys, editing, verifying a key.
    visit.click(&link("Audit log")).await;
    visit.find("//td[normalize-space(.)='key.revoked']").await;
    visit.check("events").await;
    visit.click(&link("partner")).await;
    assert!(visit
        .text_of("//*[@role='status']")
        .await
        .contains("live keys in use"));
    visit.check("principal").await;
    let (_, live) = create_key(&mut visit, "editor", false).await;
    visit.click(&link("Edit")).await;
    visit.fill("Rate limit", "10/1s").await;
    visit.check("edit").await;
    visit.click(&button("Save")).await;
    visit.find("//dd[normalize-space(.)='10/1s']").await;
    visit.click(&link("Verify a key")).await;
    visit.fill("Key to verify", &live).await;
    visit.click(&button("Verify")).await;
    assert!(visit
        .text_of("//*[@role='status']")
        .await
        .contains("Valid."));
    visit.check("verify").await;

    // The list on a phone.
    client.set_window_size(390, 844).await.unwrap();
    visit.click(&link("Keys")).await;
    visit.find(&button("Revoke selected")).await;
    visit.check("keys-phone").await;
    client.set_window_size(1280, 900).await.unwrap();

    // 6. Sign out: the old cookie is refused.
    let cookie = client
        .get_named_cookie("tower-apikey-console")
        .await
        .unwrap();
    let cookie = format!("{}={}", cookie.name(), cookie.value());
    visit.click(&button("Sign out")).await;
    visit.find(&labelled("Admin API key")).await;
    let (status, _) =
        common::http_request("GET", &addr, "/console/keys", &[("cookie", &cookie)], b"");
    assert_eq!(status, 303, "the old cookie still signs in");

    let checked = std::mem::take(&mut visit.checked);
    client.close().await.unwrap();
    assert_eq!(
        checked,
        [
            "sign-in",
            "keys",
            "new-key-form",
            "reveal",
            "key",
            "revoked-selected",
            "events",
            "principal",
            "edit",
            "verify",
            "keys-phone"
        ]
    );
}
