//! No presented or plaintext key shows in logs, `Debug` output or error messages.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{ServiceBuilder, ServiceExt};
use tower_apikey::key::{KeyFormat, PresentedKey};
use tower_apikey::layer::KeySource;
use tower_apikey::{ApiKeyLayer, KeyStatus, KeyStore, Validator};

use common::{issue, FlakyStore};

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Every log line of this thread, at TRACE, spans too (with their fields, when they open and
/// close), into the buffer returned; while the guard lives.
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// The parts of a key that must never be shown: the whole key and its secret part.
fn secret_parts(key: &str) -> Vec<String> {
    let secret = key.rsplit('_').next().unwrap().to_owned();
    vec![key.to_owned(), secret[..16].to_owned()]
}

#[test]
fn logs_debug_and_errors_never_show_a_key() {
    let (captured, _guard) = capture_logs();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut shown = Vec::new();
    let mut secrets = Vec::new();
    let mut good_id = String::new();
    runtime.block_on(async {
        let store = FlakyStore::default();
        let (good, good_key) = issue("alice");
        good_id = good.id.as_str().to_owned();
        let (mut revoked, revoked_key) = issue("bob");
        revoked.status = KeyStatus::Revoked;
        let (cold, cold_key) = issue("carol");
        store.insert(good.clone()).await.unwrap();
        store.insert(revoked.clone()).await.unwrap();
        store.insert(cold.clone()).await.unwrap();
        let wrong = KeyFormat::default().generate_for(&good.id).unwrap();
        let (_, unknown) = issue("nobody");
        let validator = Validator::builder(store.clone()).build();
        let layer = ApiKeyLayer::new(validator.clone()).sources([
            KeySource::header(),
            KeySource::query(),
            KeySource::Basic,
        ]);
        let svc = ServiceBuilder::new().layer(layer.clone()).service_fn(
            |_: Request<Full<Bytes>>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::default()))
            },
        );

        let malformed = "tak_this-is-not-a-key-but-secret-looking-AAAAAAAAAAAAAAAA".to_owned();
        let keys = [
            good_key.expose().to_owned(),
            good_key.expose().to_owned(),
            wrong.expose().to_owned(),
            revoked_key.expose().to_owned(),
            unknown.expose().to_owned(),
            malformed.clone(),
        ];
        for key in &keys {
            let req = Request::get(format!("/x?apikey={key}"))
                .body(Full::default())
                .unwrap();
            svc.clone().oneshot(req).await.unwrap();
        }
        // Conflicting keys, and a store outage on the cold path.
        let req = Request::get(format!("/x?apikey={}", good_key.expose()))
            .header("apikey", wrong.expose())
            .body(Full::default())
            .unwrap();
        svc.clone().oneshot(req).await.unwrap();
        store.set_down(true);
        let req = Request::get("/x")
            .header("apikey", cold_key.expose())
            .body(Full::default())
            .unwrap();
        svc.clone().oneshot(req).await.unwrap();

        // Debug and Display of everything a key passes through.
        let presented = PresentedKey::new(good_key.expose().as_bytes()).unwrap();
        let parsed = KeyFormat::default().parse(&presented).unwrap();
        let identity = validator.validate(&presented).await.unwrap();
        let err = validator
            .validate(&PresentedKey::new(wrong.expose().as_bytes()).unwrap())
            .await
            .unwrap_err();
        let down = validator
            .validate(&PresentedKey::new(cold_key.expose().as_bytes()).unwrap())
            .await
            .unwrap_err();
        shown.extend([
            format!("{good_key:?}"),
            format!("{presented:?}"),
            format!("{parsed:?}"),
            format!("{identity:?}"),
            format!("{good:?}"),
            format!("{err:?} {err}"),
            format!("{down:?} {down}"),
            format!("{validator:?}"),
            format!("{layer:?}"),
            format!("{svc:?}", svc = ApiKeyLayer::new(validator.clone())),
        ]);
        for key in keys.iter().chain([cold_key.expose().to_owned()].iter()) {
            secrets.extend(secret_parts(key));
        }
    });

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("API key rejected"),
        "the run logged its refusals:\n{logs}"
    );
    assert!(
        logs.contains("wrong_secret") && logs.contains("revoked") && logs.contains("unknown_key")
    );
    assert!(
        logs.contains("could not be checked"),
        "the outage was logged"
    );
    // The cold path's spans were recorded, with the key id (not secret) as a field.
    for span in ["apikey.cold_path", "apikey.store_get", "apikey.derive"] {
        assert!(logs.contains(span), "no {span} span in:\n{logs}");
    }
    assert!(logs.contains(&format!("key_id={good_id}")), "{logs}");
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a key shows in the logs:\n{logs}"
        );
        for text in &shown {
            assert!(!text.contains(secret.as_str()), "a key shows in {text}");
        }
    }
}

#[tokio::test]
async fn legacy_keys_and_maximo_rows_stay_out_of_debug_and_errors() {
    use tower_apikey::lifecycle::{KeyManager, MaximoKey, NewKey};
    let keys = KeyManager::new(tower_apikey::MemoryStore::new());
    let opaque = "MAXIMOLEGACYKEY4F7Q2Z9W1X";
    let record = keys
        .issue_with_key(
            NewKey::new("bob"),
            &PresentedKey::new(opaque.as_bytes()).unwrap(),
        )
        .await
        .unwrap();
    let digest = record.lookup_digest.clone().unwrap();
    let shown = format!("{record:?}");
    assert!(
        !shown.contains(opaque) && !shown.contains(&digest),
        "{shown}"
    );

    let hash = record.hash.to_string();
    let row = MaximoKey {
        userid: "MXINTADM".into(),
        apikey: hash.clone(),
        expiration: 0,
    };
    let shown = format!("{row:?}");
    assert!(!shown.contains(&hash), "{shown}");
    let err = keys.import_maximo(vec![row]).await.unwrap_err();
    let shown = format!("{err:?} {err}");
    assert!(!shown.contains(&hash), "{shown}");
}

/// The token endpoint and the bearer layer, at TRACE: no key, token or private key in the
/// logs, the answers, or `Debug` output; for good and bad keys sent each way, and for good
/// and forged tokens.
#[cfg(feature = "tokens")]
#[test]
fn tokens_never_show_a_key_a_token_or_the_signing_key() {
    use base64::Engine as _;
    use tower_apikey::tokens::{
        BearerTokenLayer, Jwks, SigningKey, TokenAlgorithm, TokenEndpoint, TokenIssuer, TokenKeys,
        TokenVerifier,
    };

    let (captured, _guard) = capture_logs();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = tower_apikey::MemoryStore::new();
    let (record, key) = issue("alice");
    runtime.block_on(store.insert(record.clone())).unwrap();
    let validator = Validator::builder(store).build();
    let signing = SigningKey::generate(TokenAlgorithm::EdDsa).unwrap();
    let issuer = TokenIssuer::new(TokenKeys::new(signing.clone()), "http://t.test");
    let verifier = TokenVerifier::builder(
        Jwks::from_keys(issuer.keys().verifying().cloned()),
        "http://t.test",
        "tower-apikey",
    )
    .build();
    let app = TokenEndpoint::new(validator, issuer.clone())
        .into_router()
        .merge(
            axum::Router::new()
                .route("/internal", axum::routing::get(|| async { "ok" }))
                .layer(BearerTokenLayer::new(verifier.clone())),
        );
    let wrong = format!("{}x", &key.expose()[..key.expose().len() - 1]);
    let mut answers = String::new();
    let mut token = String::new();
    for secret in [key.expose(), wrong.as_str()] {
        for way in 0..3 {
            let mut request = Request::post("/oauth/token")
                .header("content-type", "application/x-www-form-urlencoded");
            let mut body = "grant_type=client_credentials&scope=read%20nope".to_owned();
            match way {
                0 => {
                    let basic = base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{secret}", record.id));
                    request = request.header("authorization", format!("Basic {basic}"));
                }
                1 => request = request.header("apikey", secret),
                _ => body = format!("grant_type=client_credentials&client_secret={secret}"),
            }
            let response = runtime
                .block_on(
                    app.clone()
                        .oneshot(request.body(axum::body::Body::from(body)).unwrap()),
                )
                .unwrap();
            let bytes = runtime
                .block_on(axum::body::to_bytes(response.into_body(), 1 << 16))
                .unwrap();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if let Some(found) = text.split("\"access_token\":\"").nth(1) {
                token = found.split('"').next().unwrap().to_owned();
            } else {
                answers += &text;
            }
        }
    }
    assert!(
        !token.is_empty(),
        "the good key sent in the form got a token"
    );
    let forged = format!("{}AAAA", &token[..token.len() - 4]);
    for presented in [&token, &forged] {
        let request = Request::get("/internal")
            .header("authorization", format!("Bearer {presented}"))
            .body(axum::body::Body::empty())
            .unwrap();
        runtime.block_on(app.clone().oneshot(request)).unwrap();
    }
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let debug = format!("{signing:?} {issuer:?} {verifier:?} {:?}", issuer.keys());
    let private: String = signing
        .to_pem()
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let signature = token.rsplit('.').next().unwrap().to_owned();
    for (what, text) in [("logs", &logs), ("answers", &answers), ("Debug", &debug)] {
        for part in secret_parts(key.expose()) {
            assert!(!text.contains(&part), "{what} show the key");
        }
        assert!(!text.contains(&signature), "{what} show the token");
        assert!(
            !text.contains(&private[..24]),
            "{what} show the signing key"
        );
    }
}
