//! The console's form bodies and query strings, decoded and handled: `FormFields::parse`
//! never panics and keeps every pair it is given; a signed-in person's form, whatever it
//! holds, never gets a 5xx and every answer carries the console's security headers.
#![no_main]

use std::sync::Mutex;

use axum::body::Body;
use http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use tower_apikey::console::{Console, FormFields};
use tower_apikey::hash::HashParams;
use tower_apikey::permission::API_KEY_ADMIN;
use tower_apikey::{KeyManager, MemoryStore, NewKey, Validator};

struct Fixture {
    router: axum::Router,
    cookie: String,
    token: String,
    id: String,
    uses: u32,
}

async fn send(router: &axum::Router, request: Request<Body>) -> (http::response::Parts, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    (parts, String::from_utf8_lossy(&bytes).into_owned())
}

/// A console over a fresh store, signed in; a fresh one every few hundred inputs, so what
/// the inputs create stays bounded.
fn fixture(runtime: &tokio::runtime::Runtime) -> Fixture {
    runtime.block_on(async {
        let store = MemoryStore::new();
        let keys = KeyManager::new(store.clone())
            .hash_params(HashParams::default().with_iterations(1).unwrap())
            .max_keys_per_principal(std::num::NonZeroUsize::new(4).unwrap());
        let (_, admin) = keys
            .issue(NewKey::new("ops").permissions([API_KEY_ADMIN]))
            .await
            .unwrap();
        let (record, _) = keys.issue(NewKey::new("alice")).await.unwrap();
        let validator = Validator::builder(store.clone())
            .last_used_flush_interval(None)
            .usage_flush_interval(None)
            .build();
        let router = Console::new(keys, validator, store).into_router();
        let body = format!("key={}", admin.expose());
        let (parts, _) = send(
            &router,
            Request::post("/sign-in")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
        let cookie = parts.headers["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let (_, page) = send(
            &router,
            Request::get("/keys")
                .header("cookie", &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        let token = page
            .split(r#"name="csrf" value=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned();
        Fixture {
            router,
            cookie,
            token,
            id: record.id.to_string(),
            uses: 0,
        }
    })
}

static STATE: Mutex<Option<(tokio::runtime::Runtime, Option<Fixture>)>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let [route, rest @ ..] = data else { return };
    // The decoder alone: every `&`-separated pair is one field.
    if let Ok(form) = FormFields::parse(rest) {
        let pairs = rest.split(|b| *b == b'&').filter(|p| !p.is_empty()).count();
        assert_eq!(form.len(), pairs);
    }
    let mut state = STATE.lock().unwrap();
    let (runtime, slot) = state.get_or_insert_with(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        (runtime, None)
    });
    if slot.as_ref().is_none_or(|f| f.uses >= 256) {
        *slot = Some(fixture(runtime));
    }
    let fixture = slot.as_mut().unwrap();
    fixture.uses += 1;
    // The session's token first: a decoder reads the first `csrf`.
    let mut body = format!("csrf={}&", fixture.token).into_bytes();
    body.extend_from_slice(rest);
    let text = String::from_utf8_lossy(rest);
    let (method, target, body) = match route % 5 {
        0 => (Method::POST, "/keys/new".to_owned(), body),
        1 => (Method::POST, "/keys/revoke".to_owned(), body),
        2 => (Method::POST, format!("/keys/{}/revoke", fixture.id), body),
        3 => (Method::GET, format!("/keys?{text}"), Vec::new()),
        _ => (
            Method::GET,
            format!("/keys/{}?{text}", fixture.id),
            Vec::new(),
        ),
    };
    let Ok(request) = Request::builder()
        .method(method)
        .uri(target)
        .header("cookie", &fixture.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
    else {
        return;
    };
    let (parts, page) = runtime.block_on(send(&fixture.router, request));
    assert!(!parts.status.is_server_error(), "{}: {page}", parts.status);
    for header in [
        "content-security-policy",
        "x-content-type-options",
        "referrer-policy",
        "cache-control",
    ] {
        assert!(parts.headers.contains_key(header), "{header} missing");
    }
});
