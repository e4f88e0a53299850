//! The token endpoint's requests: `TokenRequest::parse` never panics on any headers and form
//! body, and the endpoint, with a real key behind it, never answers 5xx, always says
//! `Cache-Control: no-store`, challenges every 401, and hands a token only with a body that
//! holds one.
//!
//! The first byte picks the headers (content type, Basic, `apikey`); `KEY` in the rest is
//! replaced by the real key, so inputs reach the paths past authentication.
#![no_main]

use std::sync::Mutex;

use axum::body::Body;
use base64::Engine as _;
use http::Request;
use libfuzzer_sys::fuzz_target;
use tower_apikey::hash::HashParams;
use tower_apikey::tokens::{
    SigningKey, TokenAlgorithm, TokenEndpoint, TokenIssuer, TokenKeys, TokenRequest,
};
use tower_apikey::{KeyManager, MemoryStore, NewKey, Validator};

struct Fixture {
    endpoint: TokenEndpoint,
    key: String,
    id: String,
}

static STATE: Mutex<Option<(tokio::runtime::Runtime, Fixture)>> = Mutex::new(None);

fn fixture(runtime: &tokio::runtime::Runtime) -> Fixture {
    runtime.block_on(async {
        let store = MemoryStore::new();
        let keys = KeyManager::new(store.clone())
            .hash_params(HashParams::default().with_iterations(1).unwrap());
        let (record, key) = keys
            .issue(NewKey::new("alice").permissions(["read", "reports:*"]))
            .await
            .unwrap();
        let validator = Validator::builder(store)
            .last_used_flush_interval(None)
            .usage_flush_interval(None)
            .build();
        let issuer = TokenIssuer::new(
            TokenKeys::new(SigningKey::generate(TokenAlgorithm::EdDsa).unwrap()),
            "http://fuzz.test",
        );
        Fixture {
            endpoint: TokenEndpoint::new(validator, issuer),
            key: key.expose().to_owned(),
            id: record.id.to_string(),
        }
    })
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while !rest.is_empty() {
        if rest.starts_with(needle) {
            out.extend_from_slice(with);
            rest = &rest[needle.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [selector, rest @ ..] = data else { return };
    let mut state = STATE.lock().unwrap();
    let (runtime, fixture) = state.get_or_insert_with(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let fixture = fixture(&runtime);
        (runtime, fixture)
    });
    let body = replace(rest, b"KEY", fixture.key.as_bytes());
    let body = replace(&body, b"ID", fixture.id.as_bytes());
    let mut request = Request::post("/oauth/token");
    request = match selector % 4 {
        0 => request.header("content-type", "application/x-www-form-urlencoded"),
        1 => request.header(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        ),
        2 => request.header("content-type", "application/json"),
        _ => request,
    };
    if selector & 4 != 0 {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", fixture.id, fixture.key));
        request = request.header("authorization", format!("Basic {basic}"));
    }
    if selector & 8 != 0 {
        request = request.header("apikey", fixture.key.as_str());
    }
    if selector & 16 != 0 {
        // The body's first line as an Authorization header, whatever it holds.
        if let Some(line) = body.split(|b| *b == b'\n').next() {
            if let Ok(value) = http::HeaderValue::from_bytes(line) {
                request = request.header("authorization", value);
            }
        }
    }
    let Ok(request) = request.body(Body::from(body.clone())) else {
        return;
    };
    let _ = TokenRequest::parse(request.headers(), &body);
    let response = runtime.block_on(fixture.endpoint.exchange(request));
    let (parts, body) = response.into_parts();
    let bytes = runtime
        .block_on(axum::body::to_bytes(body, 1 << 20))
        .unwrap();
    assert!(
        !parts.status.is_server_error(),
        "{}: {:?}",
        parts.status,
        bytes
    );
    assert_eq!(parts.headers["cache-control"], "no-store");
    let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    if parts.status == 401 {
        assert!(parts.headers.contains_key("www-authenticate"));
        assert_eq!(answer["error"], "invalid_client");
    }
    if parts.status == 200 {
        assert_eq!(answer["token_type"], "Bearer");
        assert!(answer["access_token"].is_string());
    } else {
        assert!(answer["error"].is_string());
        assert!(!String::from_utf8_lossy(&bytes).contains(&fixture.key));
    }
});
