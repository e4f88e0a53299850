//! GitHub's secret-scanning alerts: GitHub's own signed sample verifies; alerts signed with a
//! key pair made here revoke exactly the reported keys of ours; a bad signature changes
//! nothing; a batch of 1,000 tokens does not starve requests; three servers on one
//! PostgreSQL refuse a reported key within a second.
#![cfg(feature = "admin")]

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use base64::Engine;
use http_body_util::BodyExt;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use tower_apikey::admin::secret_scanning::{
    GithubPublicKeys, SecretScanningReceiver, SignatureError,
};
use tower_apikey::hash::HashParams;
use tower_apikey::key::{KeyFormat, PresentedKey};
use tower_apikey::store::KeyQuery;
use tower_apikey::{
    KeyManager, KeyStatus, KeyStore, MemoryStore, NewKey, RevocationReason, ValidationError,
    Validator,
};

#[test]
fn githubs_own_signed_sample_verifies_and_a_changed_byte_does_not() {
    let sample = common::vectors("github_secret_scanning.json");
    let set = serde_json::to_vec(&sample["public_keys"]).unwrap();
    let keys = GithubPublicKeys::from_json(&set).unwrap();
    let id = sample["public_keys"]["public_keys"][0]["key_identifier"]
        .as_str()
        .unwrap();
    let body = sample["body"].as_str().unwrap().as_bytes();
    let signature = sample["signature"].as_str().unwrap();
    assert_eq!(keys.verify(id, signature, body), Ok(()));

    let mut changed = body.to_vec();
    changed[12] ^= 1;
    assert_eq!(
        keys.verify(id, signature, &changed),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        keys.verify("another-id", signature, body),
        Err(SignatureError::UnknownKey)
    );
    assert_eq!(
        keys.verify(id, "not base64!", body),
        Err(SignatureError::Malformed)
    );
    // The debug view names key identifiers only.
    assert!(format!("{keys:?}").contains(id));
    assert!(GithubPublicKeys::from_json(br#"{"public_keys": []}"#).is_err());
    assert!(GithubPublicKeys::from_json(
        br#"{"public_keys": [{"key_identifier": "x", "key": "not pem", "is_current": true}]}"#
    )
    .is_err());
}

/// A key pair made here, standing in for GitHub's: its public half in GitHub's JSON shape.
struct Github {
    signing: SigningKey,
    id: String,
}

impl Github {
    fn new(seed: &str) -> Self {
        let signing = SigningKey::from_slice(&Sha256::digest(seed.as_bytes())).unwrap();
        Self {
            signing,
            id: sha256_hex(&format!("id {seed}")),
        }
    }

    fn published(&self) -> Vec<u8> {
        let pem = self
            .signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        serde_json::to_vec(&serde_json::json!({
            "public_keys": [{"key_identifier": self.id, "key": pem, "is_current": true}]
        }))
        .unwrap()
    }

    fn sign(&self, body: &[u8]) -> String {
        let signature: Signature = self.signing.sign(body);
        base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
    }
}

fn alert(tokens: &[&str]) -> Vec<u8> {
    let alerts: Vec<serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            serde_json::json!({
                "token": token,
                "type": "tower_apikey",
                "url": format!("https://github.com/octocat/leaky/blob/abc/config{i}.env"),
                "source": "content",
            })
        })
        .collect();
    serde_json::to_vec(&alerts).unwrap()
}

fn request(key_id: &str, signature: &str, body: Vec<u8>) -> http::Request<Body> {
    http::Request::post("/github/secret-scanning")
        .header("content-type", "application/json")
        .header("Github-Public-Key-Identifier", key_id)
        .header("Github-Public-Key-Signature", signature)
        .body(Body::from(body))
        .unwrap()
}

async fn send(app: &Router, request: http::Request<Body>) -> (u16, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn fast_keys(store: &MemoryStore) -> KeyManager {
    KeyManager::new(store.clone()).hash_params(HashParams::default().with_iterations(1).unwrap())
}

#[tokio::test]
async fn an_alert_revokes_exactly_the_reported_keys_of_ours_and_a_bad_one_changes_nothing() {
    let store = MemoryStore::new();
    let keys = fast_keys(&store);
    let (live, live_key) = keys.issue(NewKey::new("alice")).await.unwrap();
    let (paused, paused_key) = keys.issue(NewKey::new("bob")).await.unwrap();
    keys.deactivate(&paused.id).await.unwrap();
    let (bystander, bystander_key) = keys.issue(NewKey::new("carol")).await.unwrap();
    let (_, stranger) = KeyFormat::default().generate().unwrap();
    let github = Github::new("github");
    let validator = Validator::builder(store.clone()).build();
    let receiver = SecretScanningReceiver::new(
        validator.clone(),
        keys.clone(),
        GithubPublicKeys::from_json(&github.published()).unwrap(),
    );
    let app: Router = Router::new().nest("/github/secret-scanning", receiver.into_router());
    let presented = |k: &str| PresentedKey::new(k.as_bytes()).unwrap();
    assert!(validator
        .validate(&presented(live_key.expose()))
        .await
        .is_ok());

    // Tampered with, signed by another key, unsigned: 401, and nothing changes.
    let body = alert(&[bystander_key.expose()]);
    let mut tampered = body.clone();
    let last = tampered.len() - 3;
    tampered[last] ^= 0x20;
    let signature = github.sign(&body);
    let impostor = Github::new("impostor");
    for (what, request) in [
        (
            "one byte changed",
            request(&github.id, &signature, tampered),
        ),
        (
            "signed by another key",
            request(&github.id, &impostor.sign(&body), body.clone()),
        ),
        (
            "an unknown key id",
            request(&impostor.id, &impostor.sign(&body), body.clone()),
        ),
        (
            "no signature",
            http::Request::post("/github/secret-scanning")
                .header("Github-Public-Key-Identifier", &github.id)
                .body(Body::from(body.clone()))
                .unwrap(),
        ),
    ] {
        let (status, answer) = send(&app, request).await;
        assert_eq!(status, 401, "{what}: {answer}");
        assert!(answer.contains("\"unauthorized\""), "{what}: {answer}");
    }
    assert_eq!(
        store.get(&bystander.id).await.unwrap().unwrap().status,
        KeyStatus::Active
    );

    // The real alert: a live key, an inactive key, a stranger, text, the live key again.
    let tokens = [
        live_key.expose(),
        paused_key.expose(),
        stranger.expose(),
        "hello world, not a key",
        live_key.expose(),
    ];
    let body = alert(&tokens);
    let (status, answer) = send(&app, request(&github.id, &github.sign(&body), body)).await;
    assert_eq!(status, 200, "{answer}");
    let feedback: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let labels: Vec<(&str, &str, &str)> = feedback
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["token_hash"].as_str().unwrap(),
                f["token_type"].as_str().unwrap(),
                f["label"].as_str().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, &str, &str)> = tokens
        .iter()
        .zip([
            "true_positive",
            "true_positive",
            "false_positive",
            "false_positive",
            "true_positive",
        ])
        .map(|(t, label)| (sha256_hex(t), "tower_apikey", label))
        .collect();
    let expected: Vec<(&str, &str, &str)> = expected
        .iter()
        .map(|(h, t, l)| (h.as_str(), *t, *l))
        .collect();
    assert_eq!(labels, expected);
    for token in &tokens[..4] {
        assert!(!answer.contains(token), "a token in the answer");
    }

    for (record, url) in [(&live, "config0.env"), (&paused, "config1.env")] {
        let stored = store.get(&record.id).await.unwrap().unwrap();
        assert_eq!(stored.status, KeyStatus::Revoked);
        let revocation = stored.revocation.expect("a revocation");
        assert_eq!(revocation.reason, RevocationReason::Leaked);
        assert_eq!(
            revocation.location.as_deref(),
            Some(format!("https://github.com/octocat/leaky/blob/abc/{url}").as_str())
        );
        assert_eq!(stored.updated_by.as_deref(), Some("github-secret-scanning"));
    }
    assert_eq!(
        store.get(&bystander.id).await.unwrap().unwrap().status,
        KeyStatus::Active
    );
    assert!(matches!(
        validator.validate(&presented(live_key.expose())).await,
        Err(ValidationError::Rejected(_))
    ));

    // GitHub's documented feedback hash, from Python's hashlib.
    let sample = common::vectors("github_secret_scanning.json");
    assert_eq!(
        sha256_hex("some_token"),
        sample["token_hash_some_token_sha256"].as_str().unwrap()
    );

    // Too many tokens, or not an alert array: refused without reading the store.
    let receiver = SecretScanningReceiver::new(
        validator.clone(),
        keys.clone(),
        GithubPublicKeys::from_json(&github.published()).unwrap(),
    )
    .max_tokens(2);
    let small: Router = Router::new().nest("/github/secret-scanning", receiver.into_router());
    let body = alert(&["a", "b", "c"]);
    let (status, _) = send(&small, request(&github.id, &github.sign(&body), body)).await;
    assert_eq!(status, 413);
    let body = format!("{{\"token\": \"{}\"}}", bystander_key.expose()).into_bytes();
    let (status, answer) = send(&app, request(&github.id, &github.sign(&body), body)).await;
    assert_eq!(status, 400);
    assert!(!answer.contains(bystander_key.expose()), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_a_thousand_tokens_is_answered_and_requests_still_get_through() {
    let store = MemoryStore::new();
    // Keys at the default cost, as a real store holds them.
    let keys = KeyManager::new(store.clone());
    let mut issued = Vec::new();
    for i in 0..20 {
        let (_, key) = keys.issue(NewKey::new(format!("user{i}"))).await.unwrap();
        issued.push(key.expose().to_owned());
    }
    // 1,000 well-formed tokens with stored ids and wrong secrets: a derivation each.
    let format = KeyFormat::default();
    let mut tokens = Vec::new();
    for record in store.query(&KeyQuery::new()).await.unwrap() {
        for _ in 0..50 {
            tokens.push(format.generate_for(&record.id).unwrap().expose().to_owned());
        }
    }
    assert_eq!(tokens.len(), 1_000);
    let github = Github::new("github");
    let validator = Validator::builder(store.clone())
        .max_concurrent_derivations(2.try_into().unwrap())
        .max_queued_derivations(4)
        .build();
    let receiver = SecretScanningReceiver::new(
        validator.clone(),
        keys,
        GithubPublicKeys::from_json(&github.published()).unwrap(),
    );
    let app: Router = Router::new().nest("/github/secret-scanning", receiver.into_router());
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let body = alert(&refs);
    let request = request(&github.id, &github.sign(&body), body);

    let started = Instant::now();
    let batch = tokio::spawn({
        let app = app.clone();
        async move { send(&app, request).await }
    });
    // Meanwhile, every key's first request (a cold derivation each), three at a time.
    let mut requests = Duration::ZERO;
    for group in issued.chunks(3) {
        let t = Instant::now();
        let mut checks = tokio::task::JoinSet::new();
        for key in group {
            let validator = validator.clone();
            let key = PresentedKey::new(key.as_bytes()).unwrap();
            checks.spawn(async move { validator.validate(&key).await.map(|_| ()) });
        }
        while let Some(result) = checks.join_next().await {
            let result = result.unwrap();
            assert!(result.is_ok(), "a request was refused: {result:?}");
        }
        requests = requests.max(t.elapsed());
    }
    let (status, answer) = batch.await.unwrap();
    let took = started.elapsed();
    assert_eq!(status, 200, "{answer}");
    let feedback: Vec<serde_json::Value> = serde_json::from_str(&answer).unwrap();
    assert_eq!(feedback.len(), 1_000);
    assert!(feedback.iter().all(|f| f["label"] == "false_positive"));
    eprintln!(
        "1,000 tokens answered in {took:.2?}; the slowest group of 3 cold requests meanwhile took {requests:.2?}"
    );
    assert!(took < Duration::from_secs(120), "{took:?}");
}

#[cfg(all(feature = "postgres", feature = "axum"))]
#[test]
fn three_servers_on_one_postgres_refuse_a_reported_key_within_a_second() {
    use std::process::Command;

    use tower_apikey::store::PgKeyStore;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = runtime.block_on(common::pg::database()) else {
        return;
    };
    let (leaked, bystander) = runtime.block_on(async {
        let store = PgKeyStore::connect(db.url.as_str()).await.unwrap();
        store.migrate().await.unwrap();
        let keys =
            KeyManager::new(store).hash_params(HashParams::default().with_iterations(1).unwrap());
        let (_, leaked) = keys.issue(NewKey::new("alice")).await.unwrap();
        let (_, bystander) = keys.issue(NewKey::new("bob")).await.unwrap();
        (leaked.expose().to_owned(), bystander.expose().to_owned())
    });
    let github = Github::new("github");
    let dir = tempfile::tempdir().unwrap();
    let published = dir.path().join("github-keys.json");
    std::fs::write(&published, github.published()).unwrap();

    let mut admin = Command::new(common::example_binary("admin"));
    admin
        .env("DATABASE_URL", &db.url)
        .env("GITHUB_SECRET_SCANNING_KEYS", &published)
        .env("APIKEY_STORE", dir.path().join("unused.json"));
    let mut servers = vec![common::start_example(admin)];
    for _ in 0..2 {
        let mut axum = Command::new(common::example_binary("axum"));
        axum.env("DATABASE_URL", &db.url);
        servers.push(common::start_example(axum));
    }
    let addrs: Vec<String> = servers.iter().map(|(_, addr, _)| addr.clone()).collect();
    for addr in &addrs {
        assert_eq!(common::http_get(addr, "/whoami", Some(&leaked)).0, 200);
        assert_eq!(common::http_get(addr, "/whoami", Some(&bystander)).0, 200);
    }
    let receiver = &addrs[0];
    let target = "/github/secret-scanning";

    // The alert with one byte changed, then signed by another key: 401, nothing revoked.
    let body = alert(&[leaked.as_str(), "random text"]);
    let signature = github.sign(&body);
    let mut changed = body.clone();
    changed[3] ^= 1;
    let impostor = Github::new("impostor");
    for (what, signature, body) in [
        ("one byte changed", signature.clone(), changed),
        ("another key", impostor.sign(&body), body.clone()),
    ] {
        let headers = [
            ("Github-Public-Key-Identifier", github.id.as_str()),
            ("Github-Public-Key-Signature", signature.as_str()),
        ];
        let (status, answer) = common::http_post(receiver, target, &headers, &body);
        assert_eq!(status, 401, "{what}: {answer}");
    }
    std::thread::sleep(Duration::from_millis(300));
    for addr in &addrs {
        assert_eq!(common::http_get(addr, "/whoami", Some(&leaked)).0, 200);
    }

    let headers = [
        ("Github-Public-Key-Identifier", github.id.as_str()),
        ("Github-Public-Key-Signature", signature.as_str()),
    ];
    let (status, answer) = common::http_post(receiver, target, &headers, &body);
    let answered = Instant::now();
    assert_eq!(status, 200, "{answer}");
    let feedback: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(feedback[0]["label"], "true_positive");
    assert_eq!(feedback[1]["label"], "false_positive");
    assert_eq!(feedback[0]["token_hash"], sha256_hex(&leaked).as_str());
    let mut slowest = Duration::ZERO;
    for addr in &addrs {
        while common::http_get(addr, "/whoami", Some(&leaked)).0 != 401 {
            assert!(
                answered.elapsed() < Duration::from_secs(1),
                "{addr} still accepts the leaked key a second after the alert"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        slowest = slowest.max(answered.elapsed());
        assert_eq!(common::http_get(addr, "/whoami", Some(&bystander)).0, 200);
    }
    eprintln!("a reported key was refused by all three servers {slowest:.2?} after the answer");

    let record = runtime.block_on(async {
        let store = PgKeyStore::connect(db.url.as_str()).await.unwrap();
        let id = tower_apikey::key::KeyId::new(leaked.split('_').nth(1).unwrap()).unwrap();
        store.get(&id).await.unwrap().unwrap()
    });
    // The audit trail says who revoked it, why and where.
    let admin_key = servers[0].2.as_deref().expect("an admin key was printed");
    let (status, body) = common::http_get(
        receiver,
        &format!("/admin/events?key={}", record.id),
        Some(admin_key),
    );
    assert_eq!(status, 200, "{body}");
    let trail: serde_json::Value = serde_json::from_str(&body).unwrap();
    let said: Vec<(&str, &str, &str)> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let text = |name: &str| e[name].as_str().unwrap_or("-");
            (text("type"), text("actor"), text("location"))
        })
        .collect();
    let at = "https://github.com/octocat/leaky/blob/abc/config0.env";
    let by = "github-secret-scanning";
    assert_eq!(
        said,
        [
            ("key.leaked", by, at),
            ("key.revoked", by, at),
            ("key.issued", "-", "-")
        ]
    );
    let revocation = record.revocation.expect("a revocation");
    assert_eq!(revocation.reason, RevocationReason::Leaked);
    assert_eq!(
        revocation.location.as_deref(),
        Some("https://github.com/octocat/leaky/blob/abc/config0.env")
    );
    let secret = &leaked[leaked.len() - 20..];
    let log = servers[0].0.output().join("\n");
    assert!(log.contains("leaked key revoked"), "{log}");
    assert!(!log.contains(secret), "a secret in the log");
}

#[tokio::test(start_paused = true)]
async fn a_refresher_replaces_the_set_keeps_it_on_failure_and_ends_with_it() {
    let old = Github::new("old");
    let new = Github::new("new");
    let keys = GithubPublicKeys::from_json(&old.published()).unwrap();
    let answers = std::sync::Arc::new(std::sync::Mutex::new(vec![
        Ok(new.published()),
        Ok(b"{\"not\": \"a key set\"}".to_vec()),
        Err("network down".into()),
    ]));
    let task = keys.refresh(Duration::from_secs(60), {
        let answers = answers.clone();
        move || {
            let next = answers.lock().unwrap().pop();
            async move { next.unwrap_or_else(|| Err("no more answers".into())) }
        }
    });
    let body = b"[]";
    let check = |github: &Github| keys.verify(&github.id, &github.sign(body), body);
    assert_eq!(check(&old), Ok(()));
    // A failed fetch, then an unusable answer: the old set stays.
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(check(&old), Ok(()));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(check(&old), Ok(()));
    // GitHub's new set replaces it.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(check(&new), Ok(()));
    assert_eq!(check(&old), Err(SignatureError::UnknownKey));
    drop(keys);
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(task.is_finished(), "the refresher outlived its key set");
}

#[tokio::test]
async fn alerts_read_at_once_are_bounded_and_a_caller_that_leaves_frees_its_place() {
    use tower_apikey::admin::secret_scanning::{MAX_ALERTS_AT_ONCE, MAX_BODY};

    let store = MemoryStore::new();
    let github = Github::new("github");
    let receiver = SecretScanningReceiver::new(
        Validator::builder(store.clone()).build(),
        fast_keys(&store),
        GithubPublicKeys::from_json(&github.published()).unwrap(),
    );
    let app: Router = Router::new().nest("/github/secret-scanning", receiver.into_router());
    // Bodies that never finish arriving: each holds a place while it is read.
    let stalled = |signature: &str| {
        http::Request::post("/github/secret-scanning")
            .header("Github-Public-Key-Identifier", &github.id)
            .header("Github-Public-Key-Signature", signature)
            .body(Body::new(Stalled))
            .unwrap()
    };
    let mut held = Vec::new();
    for _ in 0..MAX_ALERTS_AT_ONCE {
        let app = app.clone();
        let request = stalled("c2ln");
        held.push(tokio::spawn(async move { send(&app, request).await }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let body = alert(&["x"]);
    let (status, _) = send(&app, request(&github.id, &github.sign(&body), body.clone())).await;
    assert_eq!(status, 503, "a third alert while two are being read");
    // An unknown key id is refused before any place is taken or any body read.
    let (status, _) = send(&app, request("unknown", "c2ln", body.clone())).await;
    assert_eq!(status, 401);
    for task in held {
        task.abort();
        let _ = task.await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, answer) = send(&app, request(&github.id, &github.sign(&body), body)).await;
    assert_eq!(
        status, 200,
        "the places came back when the callers left: {answer}"
    );
    let big = vec![b' '; MAX_BODY + 1];
    let (status, _) = send(&app, request(&github.id, "c2ln", big)).await;
    assert_eq!(status, 413);
}

/// A request body that never arrives.
struct Stalled;

impl http_body::Body for Stalled {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Pending
    }
}
