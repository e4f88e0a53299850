//! The admin console over HTTP, outside in: the admin example (feature `console`) as its own
//! process on 127.0.0.1, driven by a client that keeps a cookie and sends what a browser
//! sends (`Origin`, form bodies). What a browser's user does is in `console_browser.rs`;
//! here, what an attacker would try: forged posts, hostile names, planted and stale cookies.
#![cfg(feature = "console")]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The headers every console response carries.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("cache-control", "no-store"),
];

struct Console {
    server: common::Server,
    addr: String,
    admin_key: String,
    _dir: tempfile::TempDir,
}

impl Console {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(common::example_binary("admin"));
        command.env("APIKEY_STORE", dir.path().join("apikeys.json"));
        let (server, addr, key) = common::start_example(command);
        Self {
            server,
            addr,
            admin_key: key.expect("the admin key is printed on an empty store"),
            _dir: dir,
        }
    }

    fn person(&self) -> Person {
        Person {
            client: Client::builder(TokioExecutor::new()).build_http(),
            origin: format!("http://{}", self.addr),
            cookie: None,
            seen: Vec::new(),
        }
    }

    /// A person signed in with `key`.
    async fn signed_in(&self, key: &str) -> Person {
        let mut person = self.person();
        let page = person.post("/console/sign-in", &[("key", key)]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        assert!(person.cookie.is_some());
        person
    }
}

/// One browser: its cookie, and every page it was sent.
struct Person {
    client: Client<HttpConnector, Full<Bytes>>,
    origin: String,
    cookie: Option<String>,
    seen: Vec<String>,
}

struct Page {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }

    /// The CSRF token its forms carry.
    fn token(&self) -> String {
        regex::Regex::new(r#"name="csrf" value="([^"]+)""#)
            .unwrap()
            .captures(&self.body)
            .unwrap_or_else(|| panic!("no CSRF token in {}", self.body))[1]
            .to_owned()
    }

    /// The key revealed, from the element with id `new-key`.
    fn new_key(&self) -> String {
        regex::Regex::new(r#"<code id="new-key">([^<]+)</code>"#)
            .unwrap()
            .captures(&self.body)
            .unwrap_or_else(|| panic!("no #new-key in {}", self.body))[1]
            .to_owned()
    }
}

impl Person {
    async fn send(&mut self, request: http::request::Builder, body: Vec<u8>) -> Page {
        let mut request = request;
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        let response = self
            .client
            .request(request.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        if let Some(set) = parts.headers.get("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            self.cookie = pair
                .split_once('=')
                .filter(|(_, v)| !v.is_empty())
                .map(|_| pair.clone());
        }
        self.seen.push(body.clone());
        Page {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = Request::builder()
            .method(Method::GET)
            .uri(format!("{}{path}", self.origin));
        self.send(request, Vec::new()).await
    }

    /// A form post from a console page: `Origin` is the console's own.
    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let origin = self.origin.clone();
        self.post_with(path, fields, &[("origin", &origin)]).await
    }

    async fn post_with(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", self.origin))
            .header("content-type", "application/x-www-form-urlencoded");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request, body.into_bytes()).await
    }

    /// Creates a key through "New key" with `fields` (the token added); the reveal page.
    async fn create(&mut self, fields: &[(&str, &str)]) -> Page {
        let token = self.get("/console/keys/new").await.token();
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.post("/console/keys/new", &all).await
    }
}

/// `/whoami` with `key`: its status.
fn whoami(addr: &str, key: &str) -> u16 {
    common::http_get(addr, "/whoami", Some(key)).0
}

fn id_of(reveal: &Page) -> String {
    regex::Regex::new(r#"href="/console/keys/([A-Za-z0-9]+)""#)
        .unwrap()
        .captures_iter(&reveal.body)
        .last()
        .expect("a link to the key's page")[1]
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_needs_an_admin_key_and_gives_a_new_session_every_time() {
    let console = Console::start();
    let mut anyone = console.person();
    let page = anyone.get("/console/keys").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/console/sign-in");
    let form = anyone.get("/console/sign-in").await;
    assert!(form
        .body
        .contains(r#"<label for="key">Admin API key</label>"#));
    assert!(form.body.contains(r#"<input type="password" id="key""#));

    // A planted cookie is replaced at sign-in; the new id works, the planted one does not.
    anyone.cookie = Some(format!("tower-apikey-console={}", "A".repeat(43)));
    let signed = anyone
        .post("/console/sign-in", &[("key", &console.admin_key)])
        .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER);
    assert_eq!(signed.location(), "/console/keys");
    let set = signed.headers["set-cookie"].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(set.contains("Path=/console"), "{set}");
    let first = anyone.cookie.clone().unwrap();
    assert_ne!(first, format!("tower-apikey-console={}", "A".repeat(43)));
    assert_eq!(anyone.get("/console/keys").await.status, StatusCode::OK);
    // Signing in again gives another id, and the first is gone.
    anyone
        .post("/console/sign-in", &[("key", &console.admin_key)])
        .await;
    let second = anyone.cookie.clone().unwrap();
    assert_ne!(first, second);
    anyone.cookie = Some(first);
    assert_eq!(
        anyone.get("/console/keys").await.status,
        StatusCode::SEE_OTHER
    );

    // Every key that cannot sign in gets the same answer: wrong, unprivileged, revoked,
    // garbage, none.
    let mut admin = console.signed_in(&console.admin_key).await;
    let plain = admin.create(&[("principal", "bob")]).await.new_key();
    let second_admin = admin
        .create(&[("principal", "ops2"), ("permissions", "apikeyAdmin")])
        .await;
    let (second_admin_id, second_admin) = (id_of(&second_admin), second_admin.new_key());
    let token = admin.get("/console/keys").await.token();
    admin
        .post(
            &format!("/console/keys/{second_admin_id}/revoke"),
            &[("csrf", &token)],
        )
        .await;
    let wrong = format!("{}x", &console.admin_key[..console.admin_key.len() - 1]);
    let mut answers = Vec::new();
    for key in [&wrong, &plain, &second_admin, "garbage", ""] {
        let page = console
            .person()
            .post("/console/sign-in", &[("key", key)])
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{key}");
        assert!(page.headers.get("set-cookie").is_none());
        answers.push(page.body);
    }
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "one answer for all"
    );
    assert!(answers[0].contains("That key cannot sign in here."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let console = Console::start();
    let mut admin = console.signed_in(&console.admin_key).await;
    let reveal = admin.create(&[("principal", "carol")]).await;
    let id = id_of(&reveal);
    let mut pages = vec![("reveal".to_owned(), reveal)];
    let (key_page, key_page_90d) = (
        format!("/console/keys/{id}"),
        format!("/console/keys/{id}?range=90d"),
    );
    for path in [
        "/console",
        "/console/sign-in",
        "/console/keys",
        "/console/keys?status=revoked&q=x",
        "/console/keys/new",
        &key_page,
        &key_page_90d,
        "/console/keys/nosuchkey",
        "/console/keys?status=bogus",
        "/console/nowhere",
        "/console/assets/console.css",
        "/console/assets/console.js",
    ] {
        pages.push((path.to_owned(), admin.get(path).await));
    }
    let token = pages
        .iter()
        .find(|(what, _)| what == "/console/keys")
        .unwrap()
        .1
        .token();
    pages.push((
        "a refused post".to_owned(),
        admin
            .post("/console/keys/revoke", &[("csrf", "nope")])
            .await,
    ));
    pages.push((
        "a bad form".to_owned(),
        admin
            .post(
                "/console/keys/new",
                &[("csrf", &token), ("rate_limit", "lots")],
            )
            .await,
    ));
    for (what, page) in &pages {
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(
                page.headers.get(name).map(|v| v.to_str().unwrap()),
                Some(value),
                "{name} on {what} ({})",
                page.status
            );
        }
        assert!(page.status.as_u16() < 500, "{what}: {}", page.status);
    }
    let status = |what: &str| pages.iter().find(|(w, _)| *w == what).unwrap().1.status;
    assert_eq!(status("/console/keys/nosuchkey"), StatusCode::NOT_FOUND);
    assert_eq!(
        status("/console/keys?status=bogus"),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(status("/console/nowhere"), StatusCode::NOT_FOUND);
    assert_eq!(status("a refused post"), StatusCode::FORBIDDEN);
    assert_eq!(status("a bad form"), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_is_shown_once_works_at_once_and_is_in_nothing_else() {
    let console = Console::start();
    let mut admin = console.signed_in(&console.admin_key).await;
    let reveal = admin
        .create(&[
            ("principal", "dave"),
            ("name", "billing job"),
            ("permissions", "read, write"),
            ("expires", "90d"),
            ("rate_limit", "100/1m"),
            ("quota", "10000/1d"),
            ("allowed_ips", "127.0.0.1, 10.0.0.0/8"),
        ])
        .await;
    assert_eq!(reveal.status, StatusCode::OK);
    assert!(reveal.body.contains("It will not be shown again."));
    assert!(reveal.body.contains("I have copied the key"));
    let key = reveal.new_key();
    let id = id_of(&reveal);
    assert_eq!(whoami(&console.addr, &key), 200);

    let page = admin.get(&format!("/console/keys/{id}")).await;
    for text in [
        "billing job",
        "dave",
        "100/1m",
        "10000/1d",
        "10.0.0.0/8",
        "key.issued",
        "console:admin/",
    ] {
        assert!(page.body.contains(text), "{text} on the key's page");
    }
    admin.get("/console/keys?q=billing").await;
    admin.get(&format!("/console/keys/{id}?range=7d")).await;
    // The key is on the reveal and nowhere else: no other page, header, cookie or log line.
    let shown: Vec<_> = admin.seen.iter().filter(|b| b.contains(&key)).collect();
    assert_eq!(shown.len(), 1, "the key was on {} pages", shown.len());
    assert!(!admin.cookie.as_ref().unwrap().contains(&key));
    let mut server = console.server;
    server.terminate(Duration::from_secs(10));
    assert!(server.output().iter().all(|line| !line.contains(&key)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_field_comes_back_marked_with_the_rest_kept_and_nothing_is_a_500() {
    let console = Console::start();
    let mut admin = console.signed_in(&console.admin_key).await;
    let page = admin
        .create(&[
            ("principal", "erin"),
            ("name", "kept name"),
            ("rate_limit", "lots"),
            ("allowed_ips", "999.1.1.1"),
        ])
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.body.contains(r#"id="rate_limit-error""#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"id="allowed_ips-error""#));
    assert!(page.body.contains(r#"value="kept name""#));
    assert!(page.body.contains(r#"value="lots""#));
    assert!(!page.body.contains(r#"id="name-error""#));
    // Whatever is typed: never a 500.
    let long = "x".repeat(5000);
    let hostile = [
        "",
        " ",
        "\u{0}",
        "\u{202e}",
        "-1",
        "0",
        "99999999999999999999",
        "1/0s",
        "P-1D",
        "::",
        "%",
        &long,
    ];
    let token = admin.get("/console/keys/new").await.token();
    for field in [
        "principal",
        "name",
        "description",
        "permissions",
        "expires",
        "rate_limit",
        "quota",
        "allowed_ips",
    ] {
        for value in hostile {
            let page = admin
                .post(
                    "/console/keys/new",
                    &[("csrf", &token), ("principal", "fuzz"), (field, value)],
                )
                .await;
            assert!(
                page.status.is_success() || page.status.is_client_error(),
                "{field}={value:?}: {}",
                page.status
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_show_as_text() {
    let console = Console::start();
    let mut admin = console.signed_in(&console.admin_key).await;
    let mut ids = Vec::new();
    for name in [
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
    ] {
        let reveal = admin
            .create(&[("principal", name), ("name", name), ("description", name)])
            .await;
        assert_eq!(reveal.status, StatusCode::OK, "{}", reveal.body);
        ids.push(id_of(&reveal));
    }
    let list = admin.get("/console/keys").await;
    let pages = [
        list,
        admin.get(&format!("/console/keys/{}", ids[0])).await,
        admin.get(&format!("/console/keys/{}", ids[1])).await,
    ];
    for page in &pages {
        assert!(!page.body.contains("<script>alert"), "{}", page.body);
        assert!(!page.body.contains("<img src=x"), "{}", page.body);
        assert!(
            page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
                || page.body.contains("&lt;img src=x onerror=alert(1)&gt;")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_posts_change_nothing() {
    let console = Console::start();
    let mut admin = console.signed_in(&console.admin_key).await;
    let reveal = admin.create(&[("principal", "frank")]).await;
    let (id, key) = (id_of(&reveal), reveal.new_key());
    let token = admin.get("/console/keys").await.token();
    let mut other = console.signed_in(&console.admin_key).await;
    let other_token = other.get("/console/keys").await.token();
    assert_ne!(token, other_token);

    let revoke = format!("/console/keys/{id}/revoke");
    let origin = admin.origin.clone();
    for (what, fields, headers) in [
        ("no token", vec![], vec![("origin", origin.as_str())]),
        (
            "another session's token",
            vec![("csrf", other_token.as_str())],
            vec![("origin", origin.as_str())],
        ),
        (
            "a foreign Origin",
            vec![("csrf", token.as_str())],
            vec![("origin", "http://evil.example")],
        ),
        (
            "Origin: null",
            vec![("csrf", token.as_str())],
            vec![("origin", "null")],
        ),
        (
            "a cross-site fetch without Origin",
            vec![("csrf", token.as_str())],
            vec![("sec-fetch-site", "cross-site")],
        ),
    ] {
        for path in [revoke.as_str(), "/console/keys/revoke", "/console/sign-out"] {
            let mut fields = fields.clone();
            fields.push(("id", id.as_str()));
            let page = admin.post_with(path, &fields, &headers).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{what} to {path}");
        }
        assert_eq!(whoami(&console.addr, &key), 200, "{what} changed the key");
    }
    // A GET changes nothing, whatever it names.
    admin.get(&format!("{revoke}?csrf={token}")).await;
    assert_eq!(whoami(&console.addr, &key), 200);
    // Still signed in after all that; the real form works.
    let page = admin
        .post(&revoke, &[("csrf", &token), ("revoke-reason", "leaked")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let started = Instant::now();
    while whoami(&console.addr, &key) != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not refused within 1 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let page = admin.get(&format!("/console/keys/{id}")).await;
    assert!(page.body.contains("leaked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_selected_revokes_each_checked_key() {
    let console = Console::start();
    let mut admin = console.signed_in(&console.admin_key).await;
    let mut keys = Vec::new();
    for principal in ["g1", "g2", "g3", "g4"] {
        let reveal = admin.create(&[("principal", principal)]).await;
        keys.push((id_of(&reveal), reveal.new_key()));
    }
    let token = admin.get("/console/keys").await.token();
    let mut fields = vec![("csrf", token.as_str()), ("reason", "retired")];
    for (id, _) in &keys[..3] {
        fields.push(("id", id.as_str()));
    }
    let page = admin.post("/console/keys/revoke", &fields).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Revoked 3 of 3"), "{}", page.body);
    for (i, (_, key)) in keys.iter().enumerate() {
        assert_eq!(whoami(&console.addr, key), if i < 3 { 401 } else { 200 });
    }
    let revoked = admin.get("/console/keys?status=revoked").await;
    assert_eq!(revoked.body.matches("badge revoked").count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_and_a_revoked_admin_key_end_the_session() {
    let console = Console::start();
    let mut admin = console.signed_in(&console.admin_key).await;
    let second = admin
        .create(&[("principal", "ops2"), ("permissions", "apikeyAdmin")])
        .await;
    let (second_id, second_key) = (id_of(&second), second.new_key());

    // Sign out: the old cookie is refused.
    let mut leaving = console.signed_in(&second_key).await;
    let old = leaving.cookie.clone();
    let token = leaving.get("/console/keys").await.token();
    let page = leaving.post("/console/sign-out", &[("csrf", &token)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/console/sign-in");
    assert!(page.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    leaving.cookie = old;
    assert_eq!(
        leaving.get("/console/keys").await.status,
        StatusCode::SEE_OTHER
    );

    // Revoking the admin key (through the admin API, as another process would) ends its
    // sessions within a second.
    let mut session = console.signed_in(&second_key).await;
    assert_eq!(session.get("/console/keys").await.status, StatusCode::OK);
    let (status, _) = common::http_request(
        "PATCH",
        &console.addr,
        &format!("/admin/keys/{second_id}"),
        &[("apikey", &console.admin_key)],
        br#"{"status": "revoked"}"#,
    );
    assert_eq!(status, 200);
    let started = Instant::now();
    while session.get("/console/keys").await.status == StatusCode::OK {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still signed in"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        session.get("/console/keys").await.location(),
        "/console/sign-in"
    );
}
