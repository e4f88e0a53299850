//! Access tokens outside in: the axum example as its own process on 127.0.0.1, a token from
//! its `/oauth/token`, its internal service `/internal/whoami` behind `BearerTokenLayer`;
//! the key revoked with the real CLI; a service given only the JWKS; a signing-key rotation
//! across restarts.
#![cfg(all(feature = "tokens", feature = "cli"))]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;
use tower_apikey::tokens::{
    BearerError, InvalidToken, Jwks, SigningKey, TokenAlgorithm, TokenVerifier,
};

struct Example {
    server: common::Server,
    addr: String,
}

fn start(store: &Path, env: &[(&str, &str)]) -> (Example, Option<String>) {
    let mut command = Command::new(common::example_binary("axum"));
    command.env("APIKEY_STORE", store);
    for (name, value) in env {
        command.env(name, value);
    }
    let (server, addr, key) = common::start_example(command);
    (Example { server, addr }, key)
}

fn key_id(key: &str) -> &str {
    key.strip_prefix("tak_").unwrap().split('_').next().unwrap()
}

impl Example {
    fn token(&self, key: &str) -> Value {
        let basic = STANDARD.encode(format!("{}:{key}", key_id(key)));
        let (status, headers, body) = common::http_exchange(
            "POST",
            &self.addr,
            "/oauth/token",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Authorization", &format!("Basic {basic}")),
            ],
            b"grant_type=client_credentials",
        );
        assert_eq!(status, 200, "{body}");
        assert!(headers.contains(&("cache-control".into(), "no-store".into())));
        serde_json::from_str(&body).unwrap()
    }

    fn internal(&self, token: &str) -> (u16, String) {
        let (status, _, body) = common::http_exchange(
            "GET",
            &self.addr,
            "/internal/whoami",
            &[("Authorization", &format!("Bearer {token}"))],
            b"",
        );
        (status, body)
    }

    fn get_json(&self, path: &str) -> Value {
        let (status, body) = common::http_get(&self.addr, path, None);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

fn access_token(answer: &Value) -> String {
    answer["access_token"].as_str().unwrap().to_owned()
}

#[test]
fn a_token_reaches_the_internal_service_and_a_cli_revocation_ends_it_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("apikeys.json");
    let (example, key) = start(&store, &[]);
    let key = key.expect("the example prints its demo key");
    let answer = example.token(&key);
    let token = access_token(&answer);
    let (status, body) = example.internal(&token);
    assert_eq!(status, 200, "{body}");
    let who: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(who["principal"], "demo");
    assert_eq!(who["key_id"], key_id(&key));
    assert_eq!(who["permissions"], serde_json::json!(["read"]));
    // The key itself is not a token, and no token is not a key.
    assert_eq!(example.internal(&key).0, 401);
    assert_eq!(
        common::http_get(&example.addr, "/internal/whoami", Some(&key)).0,
        401
    );

    let revoked = common::run_cli(
        &["revoke", "--store", store.to_str().unwrap(), key_id(&key)],
        b"",
    );
    assert!(revoked.status.success(), "{revoked:?}");
    let at = Instant::now();
    loop {
        let (status, _) = example.internal(&token);
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            at.elapsed() < Duration::from_secs(1),
            "still accepted a second after the revocation"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "token refused {:?} after the CLI revoked its key",
        at.elapsed()
    );
    // Nor does the key get another token.
    let basic = STANDARD.encode(format!("{}:{key}", key_id(&key)));
    let (status, _, body) = common::http_exchange(
        "POST",
        &example.addr,
        "/oauth/token",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Authorization", &format!("Basic {basic}")),
        ],
        b"grant_type=client_credentials",
    );
    assert_eq!((status, body.contains("invalid_client")), (401, true));
    // Neither the key nor the token appears in what the server printed.
    let printed = example.server.output().join("\n");
    assert!(!printed.contains(&token[token.len() - 40..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_given_only_the_jwks_refuses_a_token_after_its_exp() {
    let dir = tempfile::tempdir().unwrap();
    let (example, key) = start(&dir.path().join("apikeys.json"), &[("TOKEN_TTL", "2s")]);
    let key = key.unwrap();
    let metadata = example.get_json("/.well-known/oauth-authorization-server");
    let issuer = metadata["issuer"].as_str().unwrap().to_owned();
    assert_eq!(issuer, format!("http://{}", example.addr));
    let jwks_uri = metadata["jwks_uri"].as_str().unwrap().to_owned();
    let jwks = Jwks::fetch(&jwks_uri, Duration::from_secs(300))
        .await
        .unwrap();
    let verifier = TokenVerifier::builder(jwks, &issuer, "tower-apikey")
        .leeway(Duration::ZERO)
        .build();
    let answer = example.token(&key);
    assert_eq!(answer["expires_in"], 2);
    let token = access_token(&answer);
    let identity = verifier.verify(token.as_bytes()).await.unwrap();
    assert_eq!(identity.principal(), "demo");
    let exp = identity.expires_at().unwrap();
    // Past exp (whole seconds): refused, from the cache as from a cold verifier.
    while jiff::Timestamp::now() <= exp + jiff::SignedDuration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(matches!(
        verifier.verify(token.as_bytes()).await,
        Err(BearerError::Invalid(InvalidToken::Expired))
    ));
    // The example's own service allows the default leeway past exp, then refuses too.
    let leeway = jiff::SignedDuration::try_from(tower_apikey::tokens::DEFAULT_LEEWAY).unwrap();
    while jiff::Timestamp::now() <= exp + leeway + jiff::SignedDuration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = example.internal(&token);
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_signed_before_and_after_a_rotation_both_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("apikeys.json");
    let old = SigningKey::generate(TokenAlgorithm::EdDsa).unwrap();
    let old_pem = dir.path().join("old.pem");
    std::fs::write(&old_pem, old.to_pem()).unwrap();
    let issuer = "http://issuer.test";

    // Before: the old key signs.
    let (before, key) = start(
        &store,
        &[
            ("TOKEN_SIGNING_KEY", old_pem.to_str().unwrap()),
            ("TOKEN_ISSUER", issuer),
        ],
    );
    let key = key.unwrap();
    let first = access_token(&before.token(&key));
    let kids = |example: &Example| -> Vec<String> {
        example.get_json("/.well-known/jwks.json")["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(kids(&before), [old.verifying_key().kid()]);
    drop(before);

    // After: the next key signs (given as PEM text this time); the old one's public half
    // stays published.
    let next = SigningKey::generate(TokenAlgorithm::Es256).unwrap();
    let verify_keys = dir.path().join("verify.pem");
    std::fs::write(&verify_keys, old.public_key_pem()).unwrap();
    let (after, _) = start(
        &store,
        &[
            ("TOKEN_SIGNING_KEY", next.to_pem()),
            ("TOKEN_VERIFY_KEYS", verify_keys.to_str().unwrap()),
            ("TOKEN_ISSUER", issuer),
        ],
    );
    let second = access_token(&after.token(&key));
    assert_eq!(
        kids(&after),
        [next.verifying_key().kid(), old.verifying_key().kid()]
    );
    for token in [&first, &second] {
        let (status, body) = after.internal(token);
        assert_eq!(status, 200, "{body}");
    }
    // And a verifier that fetched the JWKS once accepts both too.
    let jwks = Jwks::fetch(
        &format!("http://{}/.well-known/jwks.json", after.addr),
        Duration::from_secs(300),
    )
    .await
    .unwrap();
    let verifier = TokenVerifier::builder(jwks, issuer, "tower-apikey").build();
    for token in [&first, &second] {
        verifier.verify(token.as_bytes()).await.unwrap();
    }
    // The private keys were never printed.
    let printed = after.server.output().join("\n");
    for pem in [old.to_pem(), next.to_pem()] {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!printed.contains(&body[..20]));
    }
}

/// Two axum examples on one PostgreSQL database, sharing the signing key: a token from one is
/// taken by the other's internal service, and the key revoked with the CLI (on the database)
/// ends the token on both within a second.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_on_postgresql_refuses_a_revoked_keys_token_within_a_second() {
    let Some(db) = common::pg::database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let signing = SigningKey::generate(TokenAlgorithm::EdDsa).unwrap();
    let pem = dir.path().join("signing.pem");
    std::fs::write(&pem, signing.to_pem()).unwrap();
    let start_server = || {
        let mut command = Command::new(common::example_binary("axum"));
        command
            .env("DATABASE_URL", &db.url)
            .env("TOKEN_SIGNING_KEY", &pem)
            .env("TOKEN_ISSUER", "http://fleet.test");
        let (server, addr, key) = common::start_example(command);
        (Example { server, addr }, key)
    };
    let (a, key) = start_server();
    let key = key.expect("the first server issues the demo key");
    let (b, none) = start_server();
    assert!(none.is_none(), "the second finds the store not empty");
    let token = access_token(&a.token(&key));
    for server in [&a, &b] {
        assert_eq!(server.internal(&token).0, 200);
    }
    let revoked = common::run_cli(&["revoke", "--database-url", &db.url, key_id(&key)], b"");
    assert!(revoked.status.success(), "{revoked:?}");
    let at = Instant::now();
    for server in [&a, &b] {
        while server.internal(&token).0 == 200 {
            assert!(
                at.elapsed() < Duration::from_secs(1),
                "still accepted a second after the revocation"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(server.internal(&token).0, 401);
    }
    eprintln!(
        "both servers refused the token {:?} after the CLI revoked its key",
        at.elapsed()
    );
}
