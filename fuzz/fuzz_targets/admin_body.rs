//! The admin API's JSON bodies and query strings: never panics, never a 5xx; every refusal
//! is a JSON `{"error", "message"}` with a 4xx status, every success is JSON.
#![no_main]

use std::sync::Mutex;

use axum::body::Body;
use http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use tower_apikey::admin::AdminApi;
use tower_apikey::hash::HashParams;
use tower_apikey::permission::API_KEY_ADMIN;
use tower_apikey::{ApiKeyLayer, KeyManager, MemoryStore, NewKey, Validator};

struct Fixture {
    router: axum::Router,
    admin: String,
    id: String,
    uses: u32,
}

/// A fresh store every few hundred inputs, so what the inputs create stays bounded.
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
        let validator = Validator::builder(store)
            .last_used_flush_interval(None)
            .build();
        let router = AdminApi::new(keys, ApiKeyLayer::new(validator)).into_router();
        Fixture {
            router,
            admin: admin.expose().to_owned(),
            id: record.id.to_string(),
            uses: 0,
        }
    })
}

static STATE: Mutex<Option<(tokio::runtime::Runtime, Option<Fixture>)>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let [route, rest @ ..] = data else { return };
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
    let text = String::from_utf8_lossy(rest);
    let (method, target, body) = match route % 5 {
        0 => (Method::POST, "/keys".to_owned(), rest.to_vec()),
        1 => (
            Method::PATCH,
            format!("/keys/{}", fixture.id),
            rest.to_vec(),
        ),
        2 => (
            Method::POST,
            "/principals/bob/keys".to_owned(),
            rest.to_vec(),
        ),
        3 => (Method::GET, format!("/keys?{text}"), Vec::new()),
        _ => (
            Method::GET,
            format!("/principals/alice/keys?{text}"),
            Vec::new(),
        ),
    };
    let Ok(request) = Request::builder()
        .method(method)
        .uri(target)
        .header("apikey", &fixture.admin)
        .header("content-type", "application/json")
        .body(Body::from(body))
    else {
        return;
    };
    let response = runtime
        .block_on(fixture.router.clone().oneshot(request))
        .unwrap();
    let status = response.status();
    let bytes = runtime
        .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
        .unwrap();
    assert!(
        !status.is_server_error(),
        "{status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    if status.is_client_error() {
        let error: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON error");
        assert!(
            error["error"].is_string() && error["message"].is_string(),
            "{error}"
        );
    } else if !bytes.is_empty() {
        serde_json::from_slice::<serde_json::Value>(&bytes).expect("a JSON answer");
    }
});
