//! Access tokens in process: the token endpoint's answers (RFC 6749 §5.1/§5.2), the token's
//! header and claims (RFC 9068), the scope and lifetime rules, the validator's policies and
//! usage counts carried over; `BearerTokenLayer`'s refusals of every forgery with one answer;
//! and revocation through the store's change feed.
#![cfg(feature = "tokens")]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use jiff::Timestamp;
use serde_json::{json, Value};
use tower::ServiceExt;
use tower_apikey::hash::HashParams;
use tower_apikey::key::{KeyFormat, PlaintextKey};
use tower_apikey::permission::RequirePermissionLayer;
use tower_apikey::tokens::{
    BearerTokenLayer, Jwks, SigningKey, TokenAlgorithm, TokenEndpoint, TokenIssuer, TokenKeys,
    TokenRevocations, TokenVerifier,
};
use tower_apikey::usage::{Counts, Granularity, Outcome, UsageRange};
use tower_apikey::{
    Identity, KeyManager, KeyPatch, KeyRecord, KeyStore, MemoryStore, UsageStore, Validator,
};

const ISSUER: &str = "http://auth.test";

struct World {
    store: MemoryStore,
    validator: Validator,
    signing: SigningKey,
    issuer: TokenIssuer,
    /// The token endpoint and, behind `BearerTokenLayer`, `/internal/whoami` and
    /// `/internal/write` (needs `write`).
    app: Router,
}

fn params() -> HashParams {
    HashParams::default().with_iterations(1).unwrap()
}

fn world_with(algorithm: TokenAlgorithm, lifetime: Duration) -> World {
    let store = MemoryStore::new();
    let validator = Validator::builder(store.clone())
        .usage_flush_interval(Some(Duration::from_secs(3600)))
        .build();
    let signing = SigningKey::generate(algorithm).unwrap();
    let issuer = TokenIssuer::new(TokenKeys::new(signing.clone()), ISSUER).lifetime(lifetime);
    let verifier = TokenVerifier::builder(
        Jwks::from_keys(issuer.keys().verifying().cloned()),
        ISSUER,
        "tower-apikey",
    )
    .revocations(TokenRevocations::watch(store.clone()))
    .build();
    let internal = Router::new()
        .route(
            "/internal/whoami",
            get(|who: Identity| async move { axum::Json(who) }),
        )
        .route(
            "/internal/write",
            get(|| async { "written" }).layer(RequirePermissionLayer::new("write")),
        )
        .layer(BearerTokenLayer::new(verifier));
    let app = TokenEndpoint::new(validator.clone(), issuer.clone())
        .into_router()
        .merge(internal);
    World {
        store,
        validator,
        signing,
        issuer,
        app,
    }
}

fn world() -> World {
    world_with(TokenAlgorithm::EdDsa, Duration::from_secs(300))
}

impl World {
    async fn key(
        &self,
        permissions: &[&str],
        edit: impl FnOnce(&mut KeyRecord),
    ) -> (KeyRecord, PlaintextKey) {
        let (mut record, key) =
            KeyRecord::generate("alice", &KeyFormat::default(), &params()).unwrap();
        record.permissions = permissions.iter().map(|p| (*p).to_owned()).collect();
        edit(&mut record);
        self.store.insert(record.clone()).await.unwrap();
        (record, key)
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
        let response: Response<Body> = self.app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (parts.status, parts.headers, value)
    }

    async fn token_request(
        &self,
        way: Way,
        id: &str,
        key: &str,
        extra: &str,
    ) -> (StatusCode, http::HeaderMap, Value) {
        self.send(token_request(way, id, key, extra)).await
    }

    async fn token(&self, record: &KeyRecord, key: &PlaintextKey, scope: Option<&str>) -> String {
        let extra = scope.map(|s| format!("&scope={s}")).unwrap_or_default();
        let (status, _, body) = self
            .token_request(Way::Header, record.id.as_str(), key.expose(), &extra)
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn internal(&self, path: &str, token: &str) -> (StatusCode, http::HeaderMap, Value) {
        let request = Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        self.send(request).await
    }

    fn forge(&self, header: Value, claims: &Value) -> String {
        let encoding =
            jsonwebtoken::EncodingKey::from_ed_pem(self.signing.to_pem().as_bytes()).unwrap();
        let mut jwt_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        jwt_header.typ = header["typ"].as_str().map(str::to_owned);
        jwt_header.kid = header["kid"].as_str().map(str::to_owned);
        jsonwebtoken::encode(&jwt_header, claims, &encoding).unwrap()
    }

    fn kid(&self) -> String {
        self.signing.verifying_key().kid().to_owned()
    }
}

#[derive(Clone, Copy, Debug)]
enum Way {
    Basic,
    Header,
    Form,
}

fn token_request(way: Way, id: &str, key: &str, extra: &str) -> Request<Body> {
    let mut request =
        Request::post("/oauth/token").header("content-type", "application/x-www-form-urlencoded");
    let mut body = format!("grant_type=client_credentials{extra}");
    match way {
        Way::Basic => {
            let basic = STANDARD.encode(format!("{id}:{key}"));
            request = request.header("authorization", format!("Basic {basic}"));
        }
        Way::Header => request = request.header("apikey", key),
        Way::Form => body += &format!("&client_id={id}&client_secret={key}"),
    }
    request.body(Body::from(body)).unwrap()
}

fn parts(token: &str) -> (Value, Value) {
    let mut segments = token.split('.');
    let mut decode = || -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments.next().unwrap()).unwrap()).unwrap()
    };
    (decode(), decode())
}

fn claims_now(client_id: &str) -> Value {
    let now = Timestamp::now().as_second();
    json!({
        "iss": ISSUER, "sub": "alice", "aud": "tower-apikey", "exp": now + 60, "iat": now,
        "jti": "j1", "client_id": client_id, "scope": "read",
    })
}

#[tokio::test]
async fn each_way_of_sending_the_key_gets_an_rfc_9068_token() {
    let world = world();
    let (record, key) = world.key(&["read", "write"], |_| {}).await;
    for way in [Way::Basic, Way::Header, Way::Form] {
        let (status, headers, body) = world
            .token_request(way, record.id.as_str(), key.expose(), "")
            .await;
        assert_eq!(status, 200, "{way:?}: {body}");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["scope"], "read write");
        let token = body["access_token"].as_str().unwrap();
        let (header, claims) = parts(token);
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], world.kid().as_str());
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], "tower-apikey");
        assert_eq!(claims["client_id"], record.id.as_str());
        assert_eq!(claims["scope"], "read write");
        assert!(claims["jti"].as_str().is_some_and(|jti| jti.len() >= 16));
        let (exp, iat) = (
            claims["exp"].as_i64().unwrap(),
            claims["iat"].as_i64().unwrap(),
        );
        assert_eq!(body["expires_in"].as_i64().unwrap(), exp - iat);
        assert_eq!(exp - iat, 300);
        assert!((iat - Timestamp::now().as_second()).abs() <= 2);
        // The metadata's issuer is the token's iss (RFC 8414 §2, RFC 9068 §4).
        assert_eq!(world.issuer.metadata()["issuer"], claims["iss"]);
    }
}

#[tokio::test]
async fn es256_keys_sign_es256_tokens_that_verify() {
    let world = world_with(TokenAlgorithm::Es256, Duration::from_secs(60));
    let (record, key) = world.key(&["read"], |_| {}).await;
    let token = world.token(&record, &key, None).await;
    assert_eq!(parts(&token).0["alg"], "ES256");
    let (status, _, body) = world.internal("/internal/whoami", &token).await;
    assert_eq!(status, 200);
    assert_eq!(body["key_id"], record.id.as_str());
}

#[tokio::test]
async fn every_bad_key_gets_one_answer_whichever_way_it_came() {
    let world = world();
    let (record, key) = world.key(&["read"], |_| {}).await;
    let (revoked, revoked_key) = world
        .key(&["read"], |r| r.status = tower_apikey::KeyStatus::Revoked)
        .await;
    let (inactive, inactive_key) = world
        .key(&["read"], |r| r.status = tower_apikey::KeyStatus::Inactive)
        .await;
    let (expired, expired_key) = world
        .key(&["read"], |r| {
            r.expires_at = Some(Timestamp::now() - jiff::SignedDuration::from_secs(5))
        })
        .await;
    let wrong_secret = format!("{}x", &key.expose()[..key.expose().len() - 1]);
    let cases: Vec<(String, String)> = vec![
        (record.id.to_string(), wrong_secret),
        (revoked.id.to_string(), revoked_key.expose().to_owned()),
        (inactive.id.to_string(), inactive_key.expose().to_owned()),
        (expired.id.to_string(), expired_key.expose().to_owned()),
        (
            "nosuchkeyid00000".to_owned(),
            "tak_nosuchkeyid00000_garbage".to_owned(),
        ),
        ("x".to_owned(), "not-a-key-at-all".to_owned()),
    ];
    let mut answers = Vec::new();
    for (id, secret) in &cases {
        for way in [Way::Basic, Way::Header, Way::Form] {
            let (status, headers, body) = world.token_request(way, id, secret, "").await;
            answers.push((
                status,
                headers.get("www-authenticate").cloned(),
                headers.get("cache-control").cloned(),
                body,
            ));
        }
    }
    assert_eq!(answers[0].0, 401);
    assert_eq!(answers[0].3["error"], "invalid_client");
    assert!(answers[0].1.is_some());
    assert!(
        answers.iter().all(|answer| *answer == answers[0]),
        "{answers:#?}"
    );
    // A client_id that is not the key's own: the same answer.
    let (status, _, body) = world
        .token_request(Way::Basic, "otherkeyid000000", key.expose(), "")
        .await;
    assert_eq!((status, &body), (answers[0].0, &answers[0].3));
}

#[tokio::test]
async fn malformed_requests_get_the_rfc_6749_error_codes() {
    let world = world();
    let (record, key) = world.key(&["read", "run reports"], |_| {}).await;
    let id = record.id.as_str();
    let send = |content_type: &'static str, body: String, apikey: Option<&str>| {
        let mut request = Request::post("/oauth/token").header("content-type", content_type);
        if let Some(apikey) = apikey {
            request = request.header("apikey", apikey);
        }
        request.body(Body::from(body)).unwrap()
    };
    let form = "application/x-www-form-urlencoded";
    let k = Some(key.expose());
    for (request, status, code) in [
        (
            send(form, "grant_type=password".into(), k),
            400,
            "unsupported_grant_type",
        ),
        (send(form, "scope=read".into(), k), 400, "invalid_request"),
        (
            send("application/json", "{}".into(), k),
            400,
            "invalid_request",
        ),
        (
            send(
                form,
                "grant_type=client_credentials&grant_type=client_credentials".into(),
                k,
            ),
            400,
            "invalid_request",
        ),
        (
            send(
                form,
                format!(
                    "grant_type=client_credentials&client_id={id}&client_secret={}",
                    key.expose()
                ),
                k,
            ),
            400,
            "invalid_request",
        ),
        (
            send(form, "grant_type=client_credentials".into(), None),
            401,
            "invalid_client",
        ),
        (
            send(form, "grant_type=client_credentials&scope=admin".into(), k),
            400,
            "invalid_scope",
        ),
        (
            send(
                form,
                format!("grant_type=client_credentials&x={}", "y".repeat(9000)),
                k,
            ),
            400,
            "invalid_request",
        ),
    ] {
        let (got, headers, body) = world.send(request).await;
        assert_eq!(
            (got.as_u16(), body["error"].as_str().unwrap()),
            (status, code),
            "{body}"
        );
        assert!(body["error_description"].is_string());
        assert_eq!(headers["cache-control"], "no-store");
    }
    // A permission with whitespace cannot be a scope token: invalid_scope, saying why...
    let (status, _, body) = world.token_request(Way::Header, id, key.expose(), "").await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str().unwrap()),
        (400, "invalid_scope")
    );
    let why = body["error_description"].as_str().unwrap();
    assert!(
        why.contains("run reports") && why.contains("whitespace"),
        "{why}"
    );
    // ...unless the request narrows it away.
    let (status, _, body) = world
        .token_request(Way::Header, id, key.expose(), "&scope=read")
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["scope"], "read");
}

#[tokio::test]
async fn a_scope_narrows_and_never_widens() {
    let world = world();
    let (record, key) = world.key(&["read", "reports:*"], |_| {}).await;
    let id = record.id.as_str();
    let (status, _, body) = world
        .token_request(Way::Basic, id, key.expose(), "&scope=reports%3Adaily")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "reports:daily");
    let token = body["access_token"].as_str().unwrap();
    let (status, _, who) = world.internal("/internal/whoami", token).await;
    assert_eq!(status, 200);
    assert_eq!(who["permissions"], json!(["reports:daily"]));
    for widening in ["write", "read%20write", "reports"] {
        let (status, _, body) = world
            .token_request(Way::Basic, id, key.expose(), &format!("&scope={widening}"))
            .await;
        assert_eq!(
            (status.as_u16(), body["error"].as_str().unwrap()),
            (400, "invalid_scope")
        );
    }
}

#[tokio::test]
async fn a_token_never_outlives_its_key_and_lives_an_hour_at_most() {
    let world = world_with(TokenAlgorithm::EdDsa, Duration::from_secs(7200));
    assert_eq!(world.issuer.token_lifetime(), Duration::from_secs(3600));
    let (long, long_key) = world.key(&["read"], |_| {}).await;
    let token = world.token(&long, &long_key, None).await;
    let claims = parts(&token).1;
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );

    let key_expiry = Timestamp::now() + jiff::SignedDuration::from_secs(100);
    let (short, short_key) = world
        .key(&["read"], |r| r.expires_at = Some(key_expiry))
        .await;
    let (status, _, body) = world
        .token_request(Way::Header, short.id.as_str(), short_key.expose(), "")
        .await;
    assert_eq!(status, 200);
    let claims = parts(body["access_token"].as_str().unwrap()).1;
    assert_eq!(claims["exp"].as_i64().unwrap(), key_expiry.as_second());
    assert_eq!(
        body["expires_in"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap()
    );
    assert!(body["expires_in"].as_i64().unwrap() <= 100);
}

async fn counts(store: &impl UsageStore, record: &KeyRecord) -> Counts {
    let mut total = Counts::default();
    let range = UsageRange::last(Granularity::Hour, Timestamp::now());
    for bucket in store.read_usage(&record.id, range).await.unwrap() {
        total.merge(&bucket.counts);
    }
    total
}

#[tokio::test]
async fn a_rate_limited_key_gets_429_with_the_layers_headers_and_requests_are_counted() {
    let world = world();
    let (record, key) = world
        .key(&["read", "write"], |r| {
            r.rate_limit = Some("2/1m".parse().unwrap())
        })
        .await;
    let id = record.id.as_str();
    for _ in 0..2 {
        let (status, headers, _) = world.token_request(Way::Basic, id, key.expose(), "").await;
        assert_eq!(status, 200);
        assert!(!headers.contains_key("ratelimit"));
    }
    let (status, headers, body) = world.token_request(Way::Basic, id, key.expose(), "").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(headers["ratelimit-policy"], "\"apikey\";q=2;w=60");
    assert!(headers["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"apikey\";r=0;t="));
    assert!(headers.contains_key("retry-after"));
    // A scope the key does not grant, with a fresh key (no rate limit): counted as refused.
    let (plain, plain_key) = world.key(&["read"], |_| {}).await;
    let (status, _, _) = world
        .token_request(
            Way::Form,
            plain.id.as_str(),
            plain_key.expose(),
            "&scope=admin",
        )
        .await;
    assert_eq!(status, 400);

    world.validator.flush_usage().await.unwrap();
    let limited = counts(&world.store, &record).await;
    assert_eq!(limited.get(Outcome::Valid), 2);
    assert_eq!(limited.get(Outcome::RateLimited), 1);
    let refused = counts(&world.store, &plain).await;
    assert_eq!(refused.get(Outcome::PermissionDenied), 1);
    assert_eq!(refused.get(Outcome::Valid), 0);
}

#[tokio::test]
async fn the_bearer_layer_hands_over_the_same_identity_and_permission_guards_work() {
    let world = world();
    let (record, key) = world.key(&["read", "write"], |_| {}).await;
    let token = world.token(&record, &key, None).await;
    let (status, _, who) = world.internal("/internal/whoami", &token).await;
    assert_eq!(status, 200);
    assert_eq!(who["principal"], "alice");
    assert_eq!(who["key_id"], record.id.as_str());
    assert_eq!(who["permissions"], json!(["read", "write"]));
    let (status, _, _) = world.internal("/internal/write", &token).await;
    assert_eq!(status, 200);
    // Narrowed to read: the guard refuses write.
    let read_only = world.token(&record, &key, Some("read")).await;
    let (status, _, body) = world.internal("/internal/write", &read_only).await;
    assert_eq!(status, 403, "{body}");
    // The repeated token is answered from the cache.
    let verifier = TokenVerifier::builder(
        Jwks::from_keys(world.issuer.keys().verifying().cloned()),
        ISSUER,
        "tower-apikey",
    )
    .build();
    assert!(verifier.verify_cached(token.as_bytes()).is_none());
    verifier.verify(token.as_bytes()).await.unwrap();
    let cached = verifier.verify_cached(token.as_bytes()).unwrap().unwrap();
    assert_eq!(cached.key_id(), &record.id);
    // The same header and claims with another signature is not the cached token.
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert!(verifier.verify_cached(forged.as_bytes()).is_none());
    assert!(verifier.verify(forged.as_bytes()).await.is_err());
}

#[tokio::test]
async fn every_forgery_gets_one_401_and_no_token_gets_a_bare_challenge() {
    let world = world();
    let (record, key) = world.key(&["read"], |_| {}).await;
    let good = world.token(&record, &key, None).await;
    let id = record.id.as_str();
    let now = Timestamp::now().as_second();
    let base = claims_now(id);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = base.clone();
        change(&mut claims);
        claims
    };
    let at_jwt = json!({"typ": "at+jwt", "kid": world.kid()});
    let jwk = world.issuer.jwks().keys[0].clone();
    let public = match &jwk.algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(p) => {
            URL_SAFE_NO_PAD.decode(&p.x).unwrap()
        }
        _ => unreachable!(),
    };
    let unsigned = |header: Value, claims: &Value| {
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    };
    let hs256 = |secret: &[u8]| {
        use hmac::{KeyInit, Mac};
        let header = json!({"typ": "at+jwt", "alg": "HS256", "kid": world.kid()});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(base.to_string())
        );
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    let tamper = |token: &str, segment: usize| {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut bytes = URL_SAFE_NO_PAD.decode(&parts[segment]).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        parts[segment] = URL_SAFE_NO_PAD.encode(bytes);
        parts.join(".")
    };
    let forgeries: Vec<(&str, String)> = vec![
        (
            "alg none",
            unsigned(
                json!({"typ": "at+jwt", "alg": "none", "kid": world.kid()}),
                &base,
            ),
        ),
        ("HS256 over the raw public key", hs256(&public)),
        (
            "HS256 over the JWK",
            hs256(serde_json::to_string(&jwk).unwrap().as_bytes()),
        ),
        (
            "typ JWT",
            world.forge(json!({"typ": "JWT", "kid": world.kid()}), &base),
        ),
        ("no typ", world.forge(json!({"kid": world.kid()}), &base)),
        (
            "wrong iss",
            world.forge(
                at_jwt.clone(),
                &with(&|c| c["iss"] = json!("http://evil.test")),
            ),
        ),
        (
            "wrong aud",
            world.forge(at_jwt.clone(), &with(&|c| c["aud"] = json!("other-api"))),
        ),
        (
            "expired",
            world.forge(
                at_jwt.clone(),
                &with(&|c| {
                    c["exp"] = json!(now - 30);
                    c["iat"] = json!(now - 90);
                }),
            ),
        ),
        (
            "nbf ahead",
            world.forge(at_jwt.clone(), &with(&|c| c["nbf"] = json!(now + 120))),
        ),
        (
            "iat ahead",
            world.forge(
                at_jwt.clone(),
                &with(&|c| {
                    c["iat"] = json!(now + 120);
                    c["exp"] = json!(now + 180);
                }),
            ),
        ),
        (
            "over an hour",
            world.forge(at_jwt.clone(), &with(&|c| c["exp"] = json!(now + 7200))),
        ),
        (
            "no client_id",
            world.forge(
                at_jwt.clone(),
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("client_id");
                }),
            ),
        ),
        (
            "unknown kid",
            world.forge(json!({"typ": "at+jwt", "kid": "nope"}), &base),
        ),
        ("no kid", world.forge(json!({"typ": "at+jwt"}), &base)),
        ("tampered header", tamper(&good, 0)),
        ("tampered payload", tamper(&good, 1)),
        ("tampered signature", tamper(&good, 2)),
        (
            "over 8 KiB",
            world.forge(
                at_jwt.clone(),
                &with(&|c| c["pad"] = json!("x".repeat(8 * 1024))),
            ),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    // A token forged with the right key and claims is accepted: the forgeries differ only
    // in what each one breaks.
    let (status, _, _) = world
        .internal("/internal/whoami", &world.forge(at_jwt.clone(), &base))
        .await;
    assert_eq!(status, 200);
    for (what, token) in &forgeries {
        let (status, headers, body) = world.internal("/internal/whoami", token).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(
            headers["www-authenticate"], "Bearer error=\"invalid_token\"",
            "{what}"
        );
        assert_eq!(body["error"], "invalid_token", "{what}");
    }
    let request = Request::get("/internal/whoami")
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = world.send(request).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer");
    let request = Request::get("/internal/whoami")
        .header("authorization", format!("Basic {}", STANDARD.encode("a:b")))
        .body(Body::empty())
        .unwrap();
    assert_eq!(world.send(request).await.1["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn the_leeway_is_configurable_up_to_a_minute() {
    let world = world();
    let jwks = Jwks::from_keys(world.issuer.keys().verifying().cloned());
    let now = Timestamp::now().as_second();
    let mut claims = claims_now("abcdefghijklmnop");
    claims["iat"] = json!(now - 120);
    claims["exp"] = json!(now - 40);
    let token = world.forge(json!({"typ": "at+jwt", "kid": world.kid()}), &claims);
    let strict = TokenVerifier::builder(jwks.clone(), ISSUER, "tower-apikey")
        .leeway(Duration::ZERO)
        .build();
    assert!(strict.verify(token.as_bytes()).await.is_err());
    // Asked for two minutes, given one: 40 s past exp passes, 70 s does not.
    let lenient = TokenVerifier::builder(jwks, ISSUER, "tower-apikey")
        .leeway(Duration::from_secs(120))
        .build();
    assert!(lenient.verify(token.as_bytes()).await.is_ok());
    claims["exp"] = json!(now - 70);
    let older = world.forge(json!({"typ": "at+jwt", "kid": world.kid()}), &claims);
    assert!(lenient.verify(older.as_bytes()).await.is_err());
}

#[tokio::test]
async fn a_changed_key_ends_its_earlier_tokens_and_an_edit_does_not() {
    let world = world();
    let manager = KeyManager::new(world.store.clone());
    let (record, key) = world.key(&["read", "write"], |_| {}).await;
    let id = record.id.clone();
    let token = world.token(&record, &key, None).await;
    assert_eq!(world.internal("/internal/whoami", &token).await.0, 200);

    // A rename keeps the token.
    manager
        .update(&id, KeyPatch::new().name(Some("renamed".into())))
        .await
        .unwrap();
    assert_eq!(world.internal("/internal/whoami", &token).await.0, 200);

    // Losing a permission of the token's scope ends it; a token for what is left works.
    manager
        .update(&id, KeyPatch::new().permissions(["read"]))
        .await
        .unwrap();
    assert_eq!(world.internal("/internal/whoami", &token).await.0, 401);
    let read = world.token(&record, &key, None).await;
    assert_eq!(world.internal("/internal/whoami", &read).await.0, 200);

    // Deactivated: refused; activated again: its earlier tokens are back, as the key is.
    manager.deactivate(&id).await.unwrap();
    assert_eq!(world.internal("/internal/whoami", &read).await.0, 401);
    manager.activate(&id).await.unwrap();
    assert_eq!(world.internal("/internal/whoami", &read).await.0, 200);

    // Regenerated: the earlier tokens end; the new key's token works.
    let (_, new_key) = manager.regenerate(&id).await.unwrap();
    assert_eq!(world.internal("/internal/whoami", &read).await.0, 401);
    let fresh = world.token(&record, &new_key, None).await;
    assert_eq!(world.internal("/internal/whoami", &fresh).await.0, 200);

    // Revoked: every token ends.
    manager.revoke(&id).await.unwrap();
    assert_eq!(world.internal("/internal/whoami", &fresh).await.0, 401);
}

#[test]
fn no_debug_output_holds_the_private_key() {
    let world = world();
    let pem = world.signing.to_pem().to_owned();
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    for debug in [
        format!("{:?}", world.signing),
        format!("{:?}", world.issuer),
        format!("{:?}", world.issuer.keys()),
    ] {
        assert!(!debug.contains(&body[..16]), "{debug}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    }
    let error = SigningKey::from_pem(&pem.replace("PRIVATE KEY", "PUBLIC KEY")).unwrap_err();
    assert!(!error.to_string().contains(&body[..16]));
}

/// A caller that leaves at any await point of the token endpoint (a cold key: store read and
/// derivation) or of the verifier (a changed key: a store read) leaves nothing held: the
/// validator settles, and the next request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_may_leave_at_every_await_point() {
    let world = world();
    let (record, key) = world.key(&["read"], |_| {}).await;
    let endpoint = TokenEndpoint::new(world.validator.clone(), world.issuer.clone());
    let mut points = 0;
    for waits in 0..64 {
        world.validator.clear_cache();
        let request = token_request(Way::Basic, record.id.as_str(), key.expose(), "");
        let finished = common::drop_after_waits(endpoint.exchange(request), waits).await;
        let settled = std::time::Instant::now();
        while !world.validator.stats().is_idle() {
            assert!(
                settled.elapsed() < Duration::from_secs(5),
                "the validator never settled"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (status, _, _) = world
            .token_request(Way::Basic, record.id.as_str(), key.expose(), "")
            .await;
        assert_eq!(status, 200, "after a caller left at await {waits}");
        if finished.is_some() {
            points = waits;
            break;
        }
    }
    assert!(points > 0, "the cold path never waited");

    let token = world.token(&record, &key, None).await;
    let verifier = TokenVerifier::builder(
        Jwks::from_keys(world.issuer.keys().verifying().cloned()),
        ISSUER,
        "tower-apikey",
    )
    .revocations(TokenRevocations::watch(world.store.clone()))
    .build();
    let manager = KeyManager::new(world.store.clone());
    for waits in 0..8 {
        // A change after the token was issued: the verifier reads the record.
        manager
            .update(&record.id, KeyPatch::new().name(Some(format!("n{waits}"))))
            .await
            .unwrap();
        let finished = common::drop_after_waits(verifier.verify(token.as_bytes()), waits).await;
        assert!(
            verifier.verify(token.as_bytes()).await.is_ok(),
            "after a caller left at await {waits}"
        );
        if finished.is_some() {
            break;
        }
    }
}

/// A gRPC service behind the bearer layer answers in gRPC's terms (`GrpcRejection`: HTTP 200
/// with `grpc-status` 16, so no HTTP challenge).
#[tokio::test]
async fn a_grpc_service_gets_grpc_statuses_from_the_bearer_layer() {
    let world = world();
    let (record, key) = world.key(&["read"], |_| {}).await;
    let token = world.token(&record, &key, None).await;
    let verifier = TokenVerifier::builder(
        Jwks::from_keys(world.issuer.keys().verifying().cloned()),
        ISSUER,
        "tower-apikey",
    )
    .build();
    let grpc = Router::new()
        .route(
            "/pkg.Service/Call",
            axum::routing::post(|who: Identity| async move { who.principal().to_owned() }),
        )
        .layer(
            BearerTokenLayer::new(verifier)
                .rejection(tower_apikey::rejection::GrpcRejection::new()),
        );
    let call = |authorization: Option<String>| {
        let mut request =
            Request::post("/pkg.Service/Call").header("content-type", "application/grpc");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        grpc.clone().oneshot(request.body(Body::empty()).unwrap())
    };
    let ok = call(Some(format!("Bearer {token}"))).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().get("grpc-status").is_none());
    for authorization in [None, Some(format!("Bearer {token}x"))] {
        let refused = call(authorization).await.unwrap();
        assert_eq!(refused.headers()["grpc-status"], "16", "UNAUTHENTICATED");
    }
}

/// A verifier that fetched a JWKS before the next signing key was published fetches it again
/// when a token names that key (at most every ten seconds), and serves the keys it had while
/// the URL fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetched_jwks_is_fetched_again_for_an_unknown_kid() {
    use std::sync::{Arc, Mutex};

    let first = world();
    let second = world();
    let (record, key) = first.key(&["read"], |_| {}).await;
    let old_token = first.token(&record, &key, None).await;
    let (record2, key2) = second.key(&["read"], |_| {}).await;
    let new_token = second.token(&record2, &key2, None).await;
    // A JWKS server whose document the test changes: the old key, then both; or down (503).
    let served: Arc<Mutex<Option<Value>>> = Arc::new(Mutex::new(Some(
        serde_json::to_value(first.issuer.jwks()).unwrap(),
    )));
    let document = Arc::clone(&served);
    let app = Router::new().route(
        "/jwks.json",
        get(move || {
            let document = document.lock().unwrap().clone();
            async move {
                match document {
                    Some(value) => Ok(axum::Json(value)),
                    None => Err(StatusCode::SERVICE_UNAVAILABLE),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let jwks = Jwks::fetch(&url, Duration::from_secs(3600)).await.unwrap();
    let verifier = TokenVerifier::builder(jwks, ISSUER, "tower-apikey").build();
    verifier.verify(old_token.as_bytes()).await.unwrap();
    // Not published yet: unknown.
    assert!(verifier.verify(new_token.as_bytes()).await.is_err());
    // Published; the last fetch was under ten seconds ago: still unknown, no fetch.
    let mut both = serde_json::to_value(first.issuer.jwks()).unwrap();
    let next = serde_json::to_value(&second.issuer.jwks().keys[0]).unwrap();
    both["keys"].as_array_mut().unwrap().push(next);
    *served.lock().unwrap() = Some(both);
    assert!(verifier.verify(new_token.as_bytes()).await.is_err());
    tokio::time::sleep(Duration::from_secs(10)).await;
    verifier.verify(new_token.as_bytes()).await.unwrap();
    // The URL failing keeps the keys it had.
    *served.lock().unwrap() = None;
    let forged_kid = first.forge(
        json!({"typ": "at+jwt", "kid": "another"}),
        &claims_now("abcdefghijklmnop"),
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(verifier.verify(forged_kid.as_bytes()).await.is_err());
    // Tokens not seen before, signed by either key: verified with the keys it kept.
    let fresh_old = first.token(&record, &key, None).await;
    let fresh_new = second.token(&record2, &key2, None).await;
    assert!(verifier.verify_cached(fresh_old.as_bytes()).is_none());
    verifier.verify(fresh_old.as_bytes()).await.unwrap();
    verifier.verify(fresh_new.as_bytes()).await.unwrap();
    // A JWKS with no usable key is an error at once.
    *served.lock().unwrap() = Some(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}));
    assert!(Jwks::fetch(&url, Duration::from_secs(60)).await.is_err());
}
