//! The layer end to end through `oneshot`: sources, rejections, caching, failures.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_apikey::layer::{KeySource, MaximoRejection, Rejection};
use tower_apikey::{ApiKeyLayer, Identity, KeyStatus, KeyStore, MemoryStore, Validator};

use common::{issue, FlakyStore};

type Body = Full<Bytes>;

/// Answers 200 with what it saw: principal, URI, and whether an `apikey` header was left.
async fn echo(req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let who = req
        .extensions()
        .get::<Identity>()
        .map_or("-".to_owned(), |i| i.principal().to_owned());
    let seen = format!(
        "{who} {} header={}",
        req.uri(),
        req.headers().contains_key("apikey")
    );
    Ok(Response::new(Full::from(seen)))
}

fn app<R>(
    layer: ApiKeyLayer<R>,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone
where
    R: tower_apikey::layer::RejectionResponse<Body> + Clone,
{
    ServiceBuilder::new().layer(layer).service_fn(echo)
}

/// Status, headers and body of a response.
async fn call<S>(service: &S, req: Request<Body>) -> (StatusCode, HeaderMap, String)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    let response = service.clone().oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

fn get(uri: &str) -> http::request::Builder {
    Request::get(uri)
}

fn empty(builder: http::request::Builder) -> Request<Body> {
    builder.body(Body::default()).unwrap()
}

async fn setup() -> (MemoryStore, Validator, String, tower_apikey::KeyRecord) {
    let store = MemoryStore::new();
    let (record, key) = issue("alice");
    store.insert(record.clone()).await.unwrap();
    let validator = Validator::builder(store.clone()).build();
    (store, validator, key.expose().to_owned(), record)
}

#[tokio::test]
async fn key_in_header_or_query() {
    let (_, validator, key, _) = setup().await;
    let svc = app(ApiKeyLayer::new(validator));

    let (status, _, body) = call(&svc, empty(get("/r").header("apikey", &key))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("alice /r"), "{body}");

    let (status, _, _) = call(&svc, empty(get(&format!("/r?x=1&apikey={key}")))).await;
    assert_eq!(status, StatusCode::OK);

    // Percent-encoded characters are decoded as a servlet's getParameter decodes them.
    let encoded: String = key.bytes().map(|b| format!("%{b:02X}")).collect();
    let (status, _, _) = call(&svc, empty(get(&format!("/r?apikey={encoded}")))).await;
    assert_eq!(status, StatusCode::OK);

    // `+` is a space, so a literal plus changes the key.
    let (status, _, _) = call(&svc, empty(get(&format!("/r?apikey={key}+")))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(&svc, empty(get(&format!("/r?apikey={key}%2B")))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The same key in both places is fine.
    let (status, _, _) = call(
        &svc,
        empty(get(&format!("/r?apikey={key}")).header("apikey", &key)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn two_different_keys_are_refused() {
    let (store, validator, key, _) = setup().await;
    let (other, other_key) = issue("bob");
    store.insert(other).await.unwrap();
    let svc = app(ApiKeyLayer::new(validator));
    let req = empty(get(&format!("/r?apikey={}", other_key.expose())).header("apikey", &key));
    let (status, _, body) = call(&svc, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("conflicting_api_keys"), "{body}");
}

#[tokio::test]
async fn missing_key_is_401_with_a_challenge() {
    let (_, validator, _, _) = setup().await;
    let svc = app(ApiKeyLayer::new(validator));
    let (status, headers, body) = call(&svc, empty(get("/r"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "ApiKey realm=\"api\"");
    assert_eq!(headers["content-type"], "application/json");
    assert!(body.contains("missing_api_key"));
}

#[tokio::test]
async fn every_bad_key_gets_the_same_response_byte_for_byte() {
    let (store, validator, key, record) = setup().await;
    let svc = app(ApiKeyLayer::new(validator.clone()));
    let now = jiff::Timestamp::now();

    let (mut expired, expired_key) = issue("e");
    expired.expires_at = Some(now - jiff::SignedDuration::from_secs(1));
    let (mut inactive, inactive_key) = issue("i");
    inactive.status = KeyStatus::Inactive;
    let (mut revoked, revoked_key) = issue("r");
    revoked.status = KeyStatus::Revoked;
    let (_, unknown_key) = issue("u"); // never stored
    for r in [expired, inactive, revoked] {
        store.insert(r).await.unwrap();
    }
    // A wrong secret for a real id, with a valid checksum, so it reaches the store.
    let wrong_secret = tower_apikey::key::KeyFormat::default()
        .generate_for(&record.id)
        .unwrap();

    let keys = [
        ("malformed", "not-a-key".to_owned()),
        ("bad checksum", {
            // Another last character (a key ending in `A` would otherwise be unchanged).
            let other = if key.ends_with('A') { 'B' } else { 'A' };
            format!("{}{other}", &key[..key.len() - 1])
        }),
        ("unknown id", unknown_key.expose().to_owned()),
        ("wrong secret, cold", wrong_secret.expose().to_owned()),
        ("expired", expired_key.expose().to_owned()),
        ("inactive", inactive_key.expose().to_owned()),
        ("revoked", revoked_key.expose().to_owned()),
    ];
    let mut responses = Vec::new();
    for (why, bad) in &keys {
        let first = call(&svc, empty(get("/r").header("apikey", bad))).await;
        // Again, now that refusals are cached.
        let again = call(&svc, empty(get("/r").header("apikey", bad))).await;
        assert_eq!(first, again, "{why}: cached refusal differs");
        responses.push((why, first));
    }
    // A wrong secret for a cached id (the hot path).
    assert_eq!(
        call(&svc, empty(get("/r").header("apikey", &key))).await.0,
        StatusCode::OK
    );
    let hot = call(
        &svc,
        empty(get("/r").header("apikey", wrong_secret.expose())),
    )
    .await;
    responses.push((&"wrong secret, hot", hot));

    let (_, reference) = &responses[0];
    assert_eq!(reference.0, StatusCode::UNAUTHORIZED);
    for (why, response) in &responses {
        assert_eq!(
            response, reference,
            "{why} differs from a malformed key's response"
        );
    }
}

#[tokio::test]
async fn revocation_evicts_the_cached_key_at_once() {
    let (store, validator, key, mut record) = setup().await;
    let svc = app(ApiKeyLayer::new(validator.clone()));
    assert_eq!(
        call(&svc, empty(get("/r").header("apikey", &key))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&svc, empty(get("/r").header("apikey", &key))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        validator.stats().derivations,
        1,
        "the second request is served from the cache"
    );

    let active = record.clone();
    record.status = KeyStatus::Revoked;
    store.replace(&active, record.clone()).await.unwrap();
    // No sleep, no yield: the very next request is refused.
    assert_eq!(
        call(&svc, empty(get("/r").header("apikey", &key))).await.0,
        StatusCode::UNAUTHORIZED
    );

    store.replace(&record, active).await.unwrap();
    assert_eq!(
        call(&svc, empty(get("/r").header("apikey", &key))).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn deletion_evicts_too() {
    let (store, validator, key, record) = setup().await;
    let svc = app(ApiKeyLayer::new(validator));
    assert_eq!(
        call(&svc, empty(get("/r").header("apikey", &key))).await.0,
        StatusCode::OK
    );
    store.delete(&record.id).await.unwrap();
    assert_eq!(
        call(&svc, empty(get("/r").header("apikey", &key))).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn store_failure_is_503_and_cached_keys_keep_working() {
    let store = FlakyStore::default();
    let (cached, cached_key) = issue("alice");
    let (cold, cold_key) = issue("bob");
    store.insert(cached).await.unwrap();
    store.insert(cold).await.unwrap();
    let svc = app(ApiKeyLayer::new(Validator::builder(store.clone()).build()));
    assert_eq!(
        call(&svc, empty(get("/r").header("apikey", cached_key.expose())))
            .await
            .0,
        StatusCode::OK
    );

    store.set_down(true);
    assert_eq!(
        call(&svc, empty(get("/r").header("apikey", cached_key.expose())))
            .await
            .0,
        StatusCode::OK
    );
    let (status, headers, body) =
        call(&svc, empty(get("/r").header("apikey", cold_key.expose()))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert!(body.contains("unavailable"), "{body}");

    store.set_down(false);
    assert_eq!(
        call(&svc, empty(get("/r").header("apikey", cold_key.expose())))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_store_bug_is_500_internal_never_503() {
    let store = FlakyStore::default();
    let (record, key) = issue("alice");
    store.insert(record).await.unwrap();
    let svc = app(ApiKeyLayer::new(Validator::builder(store.clone()).build()));
    store.set_broken(true);
    let (status, headers, body) = call(&svc, empty(get("/r").header("apikey", key.expose()))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(
        headers.get("retry-after").is_none(),
        "no outage to wait out"
    );
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "internal");

    store.set_broken(false);
    assert_eq!(
        call(&svc, empty(get("/r").header("apikey", key.expose())))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn strip_key_hides_it_from_the_inner_service() {
    let (store, validator, key, _) = setup().await;
    let plain = app(ApiKeyLayer::new(validator));
    let stripped = app(ApiKeyLayer::new(Validator::builder(store).build()).strip_key(true));
    let req = || empty(get(&format!("/r?a=1&apikey={key}&b=2")).header("apikey", &key));

    let (_, _, body) = call(&plain, req()).await;
    assert!(
        body.contains(&key) && body.ends_with("header=true"),
        "without stripping the key is seen"
    );
    // Cold path (nothing cached in this validator yet), then hot path.
    for _ in 0..2 {
        let (status, _, body) = call(&stripped, req()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "alice /r?a=1&b=2 header=false");
    }
}

#[tokio::test]
async fn maximo_preset_and_custom_rejections() {
    let (_, validator, _, _) = setup().await;
    let maximo = app(ApiKeyLayer::new(validator.clone()).rejection(MaximoRejection::new()));
    let (status, _, body) = call(&maximo, empty(get("/r").header("apikey", "tak_x_y"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        r#"{"Error":{"message":"BMXAA9549E - The API key token is invalid. Either the token may have expired or the token has been revoked by the administrator.","reasonCode":"BMXAA9549E","statusCode":"400"}}"#
    );

    let custom = app(ApiKeyLayer::new(validator).rejection(|r: Rejection| {
        let mut res = Response::new(Full::from(format!("{r:?}")));
        *res.status_mut() = StatusCode::FORBIDDEN;
        res
    }));
    let (status, _, body) = call(&custom, empty(get("/r"))).await;
    assert_eq!((status, body.as_str()), (StatusCode::FORBIDDEN, "Missing"));
    let (_, _, body) = call(&custom, empty(get("/r?apikey=junk"))).await;
    assert_eq!(body, "Invalid");
}

#[tokio::test]
async fn configured_sources_and_basic_auth() {
    use base64::Engine;
    let (_, validator, key, record) = setup().await;
    let svc = app(ApiKeyLayer::new(validator).sources([
        KeySource::Header(http::HeaderName::from_static("x-api-key")),
        KeySource::Basic,
    ]));
    assert_eq!(
        call(&svc, empty(get("/r").header("x-api-key", &key)))
            .await
            .0,
        StatusCode::OK
    );
    // The default names are not read any more.
    assert_eq!(
        call(&svc, empty(get("/r").header("apikey", &key))).await.0,
        StatusCode::UNAUTHORIZED
    );
    let secret = key.rsplit('_').next().unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{secret}", record.id));
    let req = empty(get("/r").header("authorization", format!("Basic {basic}")));
    assert_eq!(call(&svc, req).await.0, StatusCode::OK);
    let wrong =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{secret}x", record.id));
    let req = empty(get("/r").header("authorization", format!("Basic {wrong}")));
    assert_eq!(call(&svc, req).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn inner_errors_pass_through() {
    let (_, validator, key, _) = setup().await;
    let svc = ServiceBuilder::new()
        .layer(ApiKeyLayer::new(validator))
        .service_fn(|_: Request<Body>| async {
            Err::<Response<Body>, BoxError>("inner failed".into())
        });
    let err = svc
        .oneshot(empty(get("/r").header("apikey", &key)))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "inner failed");
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_extractor_says_when_the_layer_is_missing() {
    use axum::{routing::get as route, Router};
    let app = Router::new().route(
        "/r",
        route(|who: Identity| async move { who.principal().to_owned() }),
    );
    let res = app
        .oneshot(Request::get("/r").body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // The crate's one error body; why goes to the log, not to the caller.
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "internal");
    assert!(!body["message"].as_str().unwrap().contains("ApiKeyLayer"));
}

/// Optional authentication: no key passes as anonymous, a bad key of any kind is still
/// refused, and a permission check inside answers an anonymous request 401.
#[tokio::test]
async fn optional_lets_keyless_requests_through_and_still_refuses_bad_keys() {
    let (store, validator, key, record) = setup().await;
    let svc = app(ApiKeyLayer::new(validator.clone()).optional(true));

    let (status, _, body) = call(&svc, empty(get("/r"))).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "- /r header=false")
    );
    let (status, _, body) = call(&svc, empty(get("/r").header("apikey", &key))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("alice "), "{body}");

    // Never anonymous: unknown, wrong secret, malformed, two different keys, revoked.
    let (_, unknown) = issue("nobody");
    let wrong = tower_apikey::key::KeyFormat::default()
        .generate_for(&record.id)
        .unwrap();
    let (_, other) = issue("bob");
    for (what, req, expected) in [
        (
            "unknown",
            empty(get("/r").header("apikey", unknown.expose())),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong secret",
            empty(get("/r").header("apikey", wrong.expose())),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "malformed",
            empty(get("/r").header("apikey", "tak_bad")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "two keys",
            empty(get(&format!("/r?apikey={}", other.expose())).header("apikey", &key)),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, _, body) = call(&svc, req).await;
        assert_eq!(status, expected, "{what}: {body}");
        assert!(!body.starts_with('-'), "{what} passed as anonymous");
    }
    let mut revoked = record.clone();
    revoked.status = KeyStatus::Revoked;
    store.replace(&record, revoked).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (status, _, _) = call(&svc, empty(get("/r").header("apikey", &key))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked");

    // Inside it, a permission guard answers an anonymous request as a missing key.
    let guarded = ServiceBuilder::new()
        .layer(ApiKeyLayer::new(validator.clone()).optional(true))
        .layer(tower_apikey::permission::require_permission("read"))
        .service_fn(echo);
    let (status, _, body) = call(&guarded, empty(get("/r"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("missing_api_key"), "{body}");

    // Off (the default), no key is 401.
    let strict = app(ApiKeyLayer::new(validator));
    assert_eq!(
        call(&strict, empty(get("/r"))).await.0,
        StatusCode::UNAUTHORIZED
    );
}

/// axum's `Option<Identity>`: `None` only when the optional layer let the request through;
/// a route the layer was never applied to is still a 500, never anonymous.
#[cfg(feature = "axum")]
#[tokio::test]
async fn option_identity_is_none_only_behind_the_optional_layer() {
    use axum::routing::get as route;
    async fn who(identity: Option<Identity>) -> String {
        identity.map_or("anonymous".to_owned(), |i| i.principal().to_owned())
    }
    let (_, validator, key, _) = setup().await;
    let router = axum::Router::new().route("/", route(who));
    let behind = router
        .clone()
        .layer(ApiKeyLayer::new(validator).optional(true));
    let ask = |app: axum::Router, key: Option<&str>| {
        let mut req = Request::get("/");
        if let Some(key) = key {
            req = req.header("apikey", key);
        }
        let req = req.body(axum::body::Body::empty()).unwrap();
        async move {
            let response = app.oneshot(req).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    assert_eq!(
        ask(behind.clone(), None).await,
        (StatusCode::OK, "anonymous".to_owned())
    );
    assert_eq!(
        ask(behind, Some(&key)).await,
        (StatusCode::OK, "alice".to_owned())
    );
    assert_eq!(ask(router, None).await.0, StatusCode::INTERNAL_SERVER_ERROR);
}

/// A request from `peer` (as a server puts it in the extensions), with `key`.
fn from_peer(key: &str, peer: Option<&str>) -> Request<Body> {
    let mut request = empty(get("/").header("apikey", key));
    if let Some(peer) = peer {
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        request.extensions_mut().insert(peer);
    }
    request
}

#[tokio::test]
async fn an_allow_list_answers_as_an_invalid_key_or_403_and_fails_closed_without_an_address() {
    let store = MemoryStore::new();
    let (mut record, key) = issue("partner");
    record.allowed_ips = vec!["10.0.0.0/8".parse().unwrap()];
    store.insert(record).await.unwrap();
    let validator = Validator::builder(store).build();
    let key = key.expose().to_owned();
    let default = app(ApiKeyLayer::new(validator.clone()));
    let forbidding =
        app(ApiKeyLayer::new(validator.clone())
            .ip_refusal(tower_apikey::layer::IpRefusal::Forbidden));
    let (_, unknown) = issue("nobody");
    let invalid = call(&default, empty(get("/").header("apikey", unknown.expose()))).await;

    let inside = call(&default, from_peer(&key, Some("10.1.2.3:5000"))).await;
    assert_eq!(inside.0, StatusCode::OK, "{}", inside.2);
    let outside = call(&default, from_peer(&key, Some("192.0.2.1:5000"))).await;
    assert_eq!(
        (outside.0, outside.2.as_str()),
        (invalid.0, invalid.2.as_str()),
        "outside: the invalid-key answer"
    );
    let forbidden = call(&forbidding, from_peer(&key, Some("192.0.2.1:5000"))).await;
    assert_eq!(forbidden.0, StatusCode::FORBIDDEN);
    // No address at all: refused, never let through.
    let unknown_peer = call(&default, from_peer(&key, None)).await;
    assert_eq!(unknown_peer.0, StatusCode::UNAUTHORIZED);
    let stats = validator.stats();
    assert_eq!(stats.ip_refusals, 3, "{stats:?}");
    assert_eq!((stats.rate_limited, stats.usage_exceeded), (0, 0));
}

#[tokio::test]
async fn rate_limit_and_quota_refusals_are_counted_and_the_identity_shows_what_is_left() {
    let store = MemoryStore::new();
    let (mut record, key) = issue("metered");
    record.rate_limit = Some("3/1h".parse().unwrap());
    record.quota = Some("2".parse().unwrap());
    store.insert(record.clone()).await.unwrap();
    let validator = Validator::builder(store.clone()).build();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let service = {
        let seen = seen.clone();
        ServiceBuilder::new()
            .layer(ApiKeyLayer::new(validator.clone()))
            .service_fn(move |req: Request<Body>| {
                let identity = req.extensions().get::<Identity>().unwrap();
                let left = (
                    identity.rate_limit().map(|s| s.remaining),
                    identity.quota_remaining(),
                );
                seen.lock().unwrap().push(left);
                async { Ok::<_, Infallible>(Response::new(Body::default())) }
            })
    };
    let request = || empty(get("/").header("apikey", key.expose()));
    let statuses: Vec<StatusCode> = {
        let mut out = Vec::new();
        for _ in 0..4 {
            out.push(service.clone().oneshot(request()).await.unwrap().status());
        }
        out
    };
    // Two uses, then the quota is out; the fourth is over the rate limit of 3.
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [(Some(2), Some(1)), (Some(1), Some(0))]
    );
    let stats = validator.stats();
    assert_eq!(
        (stats.usage_exceeded, stats.rate_limited),
        (1, 1),
        "{stats:?}"
    );
    assert!(stats.quota_leases >= 2, "{stats:?}");
    // The store counted the two uses.
    let stored = store.get(&record.id).await.unwrap().unwrap();
    assert_eq!(stored.usage.quota_remaining, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_on_a_fresh_quota_key_is_served_from_one_or_two_leases() {
    let store = MemoryStore::new();
    let (mut record, key) = issue("busy");
    record.quota = Some("10000".parse().unwrap());
    store.insert(record).await.unwrap();
    let validator = Validator::builder(store).build();
    let presented = tower_apikey::key::PresentedKey::new(key.expose().as_bytes()).unwrap();
    let identity = validator.validate(&presented).await.unwrap();
    let crowd: Vec<_> = (0..200)
        .map(|_| {
            let (validator, identity) = (validator.clone(), identity.clone());
            tokio::spawn(async move { validator.enforce(&identity, None).await })
        })
        .collect();
    for caller in crowd {
        assert!(
            caller.await.unwrap().is_ok(),
            "a use refused with 9,800 left"
        );
    }
    let leases = validator.stats().quota_leases;
    assert!(leases <= 10, "{leases} leases for 200 callers");
}
