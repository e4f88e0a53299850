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

/// A key with `key`'s id and another secret (its checksum right): what a guess at a known
/// id looks like.
fn same_id_other_secret(key: &str) -> String {
    let id = tower_apikey::key::KeyId::new(key.split('_').nth(1).unwrap()).unwrap();
    tower_apikey::key::KeyFormat::default()
        .generate_for(&id)
        .unwrap()
        .expose()
        .to_owned()
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
    let wrong = same_id_other_secret(&console.admin_key);
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
    let (key_page, key_page_90d, key_page_edit) = (
        format!("/console/keys/{id}"),
        format!("/console/keys/{id}?range=90d"),
        format!("/console/keys/{id}/edit"),
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
        "/console/events",
        "/console/events?type=key.issued",
        "/console/verify",
        "/console/principals/carol",
        &key_page_edit,
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

/// The host app's own authentication: who may administer keys is the app's call; the
/// console keeps its token and origin checks, and records the person as the actor.
#[tokio::test]
async fn the_host_apps_authentication_signs_people_in() {
    use axum::body::Body;
    use tower::ServiceExt;
    use tower_apikey::console::Console;
    use tower_apikey::events::AuditQuery;
    use tower_apikey::{KeyManager, MemoryStore, Validator};

    /// What the app's own login middleware leaves in each request.
    #[derive(Clone)]
    struct User {
        name: String,
        admin: bool,
    }

    let store = MemoryStore::new();
    let keys = KeyManager::new(store.clone());
    let console = Console::new(
        keys.clone(),
        Validator::builder(store.clone()).build(),
        store,
    )
    .authenticate_with(|parts| {
        let user = parts.extensions.get::<User>()?;
        user.admin.then(|| user.name.clone())
    });
    // The app's login: `x-user: name` (an admin when it starts with "admin-").
    let app = axum::Router::new()
        .nest("/console", console.into_router())
        .layer(axum::middleware::from_fn(
            |mut request: axum::extract::Request, next: axum::middleware::Next| async move {
                if let Some(name) = request.headers().get("x-user") {
                    let name = name.to_str().unwrap().to_owned();
                    let admin = name.starts_with("admin-");
                    request.extensions_mut().insert(User { name, admin });
                }
                next.run(request).await
            },
        ));
    let send = |request: http::Request<Body>| {
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            (parts, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let get = |user: &str| {
        http::Request::get("/console/keys")
            .header("x-user", user)
            .body(Body::empty())
            .unwrap()
    };
    // Not signed in, or not an admin: refused, with no sign-in form of the console's.
    let (nobody, _) = send(
        http::Request::get("/console/keys")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(nobody.status, StatusCode::FORBIDDEN);
    let (user, _) = send(get("bob")).await;
    assert_eq!(user.status, StatusCode::FORBIDDEN);
    let (form, _) = send(
        http::Request::get("/console/sign-in")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(form.status, StatusCode::NOT_FOUND);

    let (page, body) = send(get("admin-alice")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(body.contains("admin-alice"));
    assert!(!body.contains("Sign out"), "the app signs its people out");
    let cookie = page.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let (_, body) = send(
        http::Request::get("/console/keys/new")
            .header("x-user", "admin-alice")
            .header("cookie", &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let token = regex::Regex::new(r#"name="csrf" value="([^"]+)""#)
        .unwrap()
        .captures(&body)
        .unwrap()[1]
        .to_owned();
    let post = |cookie: Option<&str>, token: &str| {
        let mut request = http::Request::post("/console/keys/new")
            .header("x-user", "admin-alice")
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request
            .body(Body::from(format!("csrf={token}&principal=partner")))
            .unwrap()
    };
    // The token without its cookie (another site's form) is refused, and makes nothing.
    let (forged, _) = send(post(None, &token)).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let (wrong, _) = send(post(Some(&cookie), "x")).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(keys.list(Some("partner")).await.unwrap().is_empty());
    let (made, body) = send(post(Some(&cookie), &token)).await;
    assert_eq!(made.status, StatusCode::OK, "{body}");
    assert!(body.contains(r#"id="new-key""#));
    let events = keys.events(&AuditQuery::new()).await.unwrap();
    assert_eq!(
        events[0].event.actor.as_deref(),
        Some("console:admin-alice")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_rotate_regenerate_delete_verify_principals_and_the_audit_log() {
    let console = Console::start();
    let mut admin = console.signed_in(&console.admin_key).await;
    let reveal = admin
        .create(&[
            ("principal", "hank"),
            ("name", "old name"),
            ("protected", "on"),
        ])
        .await;
    let (id, first) = (id_of(&reveal), reveal.new_key());
    let page = format!("/console/keys/{id}");
    let token = admin.get(&page).await.token();

    // Edit: a bad field comes back marked; a good one is saved.
    let edit = format!("{page}/edit");
    let form = admin.get(&edit).await;
    assert!(
        form.body.contains(r#"value="old name""#),
        "{} {}",
        form.status,
        form.body
    );
    let bad = admin
        .post(&edit, &[("csrf", &token), ("name", "x"), ("quota", "none")])
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains(r#"id="quota-error""#));
    let saved = admin
        .post(
            &edit,
            &[
                ("csrf", &token),
                ("name", "new name"),
                ("rate_limit", "5/1s"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    let shown = admin.get(&page).await.body;
    assert!(shown.contains("new name") && shown.contains("5/1s"));

    // Rotate with a grace period: both keys work; the new one is revealed once.
    let rotated = admin
        .post(
            &format!("{page}/rotate"),
            &[("csrf", &token), ("grace", "1h")],
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK);
    let (new_id, second) = (id_of(&rotated), rotated.new_key());
    assert_ne!(new_id, id);
    assert_eq!(whoami(&console.addr, &first), 200);
    assert_eq!(whoami(&console.addr, &second), 200);
    // Regenerate the new one: its old secret stops at once.
    let regenerated = admin
        .post(
            &format!("/console/keys/{new_id}/regenerate"),
            &[("csrf", &token)],
        )
        .await;
    let third = regenerated.new_key();
    assert_eq!(whoami(&console.addr, &third), 200);
    assert_eq!(whoami(&console.addr, &second), 401);

    // The principal's page counts their live keys against the limit (2).
    let principal = admin.get("/console/principals/hank").await;
    assert!(principal.body.contains("2 of 2"), "{}", principal.body);

    // Verify: whose, and why refused; the key is never shown back.
    let verify_token = admin.get("/console/verify").await.token();
    let valid = admin
        .post(
            "/console/verify",
            &[("csrf", &verify_token), ("key", &third)],
        )
        .await;
    assert!(valid.body.contains("Valid.") && valid.body.contains("hank"));
    assert!(!valid.body.contains(&third));
    let unknown = admin
        .post(
            "/console/verify",
            &[("csrf", &verify_token), ("key", "nonsense")],
        )
        .await;
    assert!(unknown.body.contains("Not valid"));

    // Delete: a protected key needs its id typed.
    let delete = format!("{page}/delete");
    let refused = admin.post(&delete, &[("csrf", &token)]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(whoami(&console.addr, &first), 200);
    let deleted = admin
        .post(&delete, &[("csrf", &token), ("confirm", &id)])
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(admin.get(&page).await.status, StatusCode::NOT_FOUND);
    assert_eq!(whoami(&console.addr, &first), 401);

    // The audit log: every change, by the console's person, filtered.
    let log = admin.get("/console/events?principal=hank").await.body;
    for kind in [
        "key.issued",
        "key.updated",
        "key.rotated",
        "key.regenerated",
        "key.deleted",
    ] {
        assert!(
            log.contains(&format!("<td>{kind}</td>")),
            "{kind} in the audit log"
        );
    }
    assert!(log.contains("console:admin/"));
    let rotations = admin.get("/console/events?type=key.rotated").await.body;
    assert!(rotations.contains("<td>key.rotated</td>"));
    assert!(!rotations.contains("<td>key.deleted</td>"));
    assert_eq!(
        admin.get("/console/events?type=nonsense").await.status,
        StatusCode::BAD_REQUEST
    );
    assert!(admin.seen.iter().filter(|b| b.contains(&third)).count() == 1);
}

/// A wrong admin key on the sign-in form costs what the same key costs at the API: the
/// same store reads and derivations (none for an unknown id or a malformed key, one for a
/// real id with a wrong secret, each time).
#[tokio::test]
async fn a_wrong_admin_key_costs_what_any_wrong_key_costs() {
    use axum::body::Body;
    use tower::ServiceExt;
    use tower_apikey::console::Console;
    use tower_apikey::permission::API_KEY_ADMIN;
    use tower_apikey::{ApiKeyLayer, KeyManager, MemoryStore, NewKey, Validator};

    let store = MemoryStore::new();
    let keys = KeyManager::new(store.clone());
    let (_, admin) = keys
        .issue(NewKey::new("ops").permissions([API_KEY_ADMIN]))
        .await
        .unwrap();
    let wrong_secret = same_id_other_secret(admin.expose());
    let unknown_id = tower_apikey::key::KeyFormat::default()
        .generate()
        .unwrap()
        .1
        .expose()
        .to_owned();
    // Two validators on one store: one behind the console, one behind an API.
    let console_side = Validator::builder(store.clone()).build();
    let api_side = Validator::builder(store.clone()).build();
    let console = Console::new(keys, console_side.clone(), store).into_router::<()>();
    let api = axum::Router::new()
        .route("/whoami", axum::routing::get(|| async { "ok" }))
        .layer(ApiKeyLayer::new(api_side.clone()));
    let cost = |v: &Validator| {
        let s = v.stats();
        (s.derivations, s.store_reads)
    };
    for key in [
        &unknown_id,
        &wrong_secret,
        &wrong_secret,
        &"garbage".to_owned(),
    ] {
        let (before_console, before_api) = (cost(&console_side), cost(&api_side));
        let signed = console
            .clone()
            .oneshot(
                http::Request::post("/sign-in")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from(format!("key={key}")))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(signed.status(), StatusCode::UNAUTHORIZED);
        let called = api
            .clone()
            .oneshot(
                http::Request::get("/whoami")
                    .header("apikey", key.as_str())
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(called.status(), StatusCode::UNAUTHORIZED);
        let (after_console, after_api) = (cost(&console_side), cost(&api_side));
        assert_eq!(
            (
                after_console.0 - before_console.0,
                after_console.1 - before_console.1
            ),
            (after_api.0 - before_api.0, after_api.1 - before_api.1),
            "derivations and store reads of {key:.12}…"
        );
    }
    assert_eq!(
        cost(&console_side).0,
        2,
        "a derivation for each wrong secret, no other"
    );
}

/// Two servers behind a load balancer on one PostgreSQL database: a session made on one
/// works on the other; a sign-out on one ends it on both; revoking the admin key on one ends
/// its sessions on the other within a second.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_on_postgres_shares_sessions_and_ends_them_everywhere() {
    let Some((db, _)) = common::pg::migrated_store().await else {
        return;
    };
    let start = || {
        let mut command = Command::new(common::example_binary("admin"));
        command.env("DATABASE_URL", &db.url);
        common::start_example(command)
    };
    let (_one, one_addr, admin_key) = start();
    let (_two, two_addr, _) = start();
    let admin_key = admin_key.expect("the first server issues the admin key");
    let console = |addr: &str| Person {
        client: Client::builder(TokioExecutor::new()).build_http(),
        origin: format!("http://{addr}"),
        cookie: None,
        seen: Vec::new(),
    };
    let mut on_one = console(&one_addr);
    on_one
        .post("/console/sign-in", &[("key", &admin_key)])
        .await;
    let second_admin = on_one
        .create(&[("principal", "ops2"), ("permissions", "apikeyAdmin")])
        .await;
    let (second_id, second_key) = (id_of(&second_admin), second_admin.new_key());

    // Signed in on one, the same cookie works on two; sign out on two, refused on one.
    let mut a = console(&one_addr);
    a.post("/console/sign-in", &[("key", &second_key)]).await;
    let mut b = console(&two_addr);
    b.cookie = a.cookie.clone();
    assert_eq!(b.get("/console/keys").await.status, StatusCode::OK);
    let token = b.get("/console/keys/new").await.token();
    assert_eq!(
        b.post("/console/sign-out", &[("csrf", &token)])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(a.get("/console/keys").await.status, StatusCode::SEE_OTHER);

    // Revoked on one: its session on two ends within a second.
    let mut c = console(&two_addr);
    c.post("/console/sign-in", &[("key", &second_key)]).await;
    assert_eq!(c.get("/console/keys").await.status, StatusCode::OK);
    let revoke_token = on_one.get("/console/keys").await.token();
    on_one
        .post(
            &format!("/console/keys/{second_id}/revoke"),
            &[("csrf", &revoke_token)],
        )
        .await;
    let started = Instant::now();
    while c.get("/console/keys").await.status == StatusCode::OK {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still signed in on two"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Over HTTPS the cookie is `Secure`, `__Host-` named, on `Path=/`; a session ends on the
/// server when idle past its lifetime, and when its admin key is deactivated.
#[tokio::test]
async fn sessions_end_when_idle_or_when_the_key_is_deactivated_and_https_cookies_are_host_only() {
    use axum::body::Body;
    use tower::ServiceExt;
    use tower_apikey::console::Console;
    use tower_apikey::permission::API_KEY_ADMIN;
    use tower_apikey::session::SessionLifetime;
    use tower_apikey::{KeyManager, MemoryStore, NewKey, Validator};

    let store = MemoryStore::new();
    let keys = KeyManager::new(store.clone());
    let (admin, key) = keys
        .issue(NewKey::new("ops").permissions([API_KEY_ADMIN]))
        .await
        .unwrap();
    let router = Console::new(
        keys.clone(),
        Validator::builder(store.clone()).build(),
        store,
    )
    .secure_cookies(true)
    .session_lifetime(SessionLifetime {
        idle: Duration::from_millis(400),
        max: Duration::from_secs(3600),
    })
    .into_router::<()>();
    let sign_in = || async {
        let response = router
            .clone()
            .oneshot(
                http::Request::post("/sign-in")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from(format!("key={}", key.expose())))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let page = |cookie: String| {
        let router = router.clone();
        async move {
            router
                .oneshot(
                    http::Request::get("/keys")
                        .header("cookie", cookie)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap()
                .status()
        }
    };
    let set = sign_in().await;
    assert!(set.starts_with("__Host-tower-apikey-console="), "{set}");
    assert!(
        set.contains("HttpOnly; SameSite=Strict; Path=/; Secure"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    // A plain-HTTP cookie name is not read over HTTPS.
    let plain = cookie.replacen("__Host-", "", 1);
    assert_eq!(page(plain).await, StatusCode::SEE_OTHER);
    assert_eq!(page(cookie.clone()).await, StatusCode::OK);
    // Idle past its lifetime: over.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(page(cookie).await, StatusCode::SEE_OTHER);

    // Deactivated: over at once (the validator on the same store hears of it).
    let cookie = sign_in().await.split(';').next().unwrap().to_owned();
    assert_eq!(page(cookie.clone()).await, StatusCode::OK);
    keys.deactivate(&admin.id).await.unwrap();
    assert_eq!(page(cookie.clone()).await, StatusCode::SEE_OTHER);
    keys.activate(&admin.id).await.unwrap();
    assert_eq!(
        page(cookie).await,
        StatusCode::SEE_OTHER,
        "a session ended stays ended"
    );
}
