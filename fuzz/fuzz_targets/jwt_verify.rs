//! JWT parsing and verification: `TokenVerifier` never panics on any bytes; and any claims
//! JSON, signed with the trusted key under a proper header, is accepted only when it carries
//! what RFC 9068 requires, naming its `client_id` as the identity's key id; an accepted token
//! is then answered the same from the cache.
//!
//! The first byte picks: 0 — the rest is a token as presented; else — the rest is the claims,
//! signed here, with `NOW` in it replaced by the current unix time (so seeds stay current).
#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use tower_apikey::tokens::{Jwks, SigningKey, TokenAlgorithm, TokenKeys, TokenVerifier};

struct Fixture {
    verifier: TokenVerifier,
    encoding: jsonwebtoken::EncodingKey,
    header: jsonwebtoken::Header,
}

static STATE: Mutex<Option<(tokio::runtime::Runtime, Fixture)>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let [selector, rest @ ..] = data else { return };
    let mut state = STATE.lock().unwrap();
    let (runtime, fixture) = state.get_or_insert_with(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let signing = SigningKey::generate(TokenAlgorithm::EdDsa).unwrap();
        let keys = TokenKeys::new(signing.clone());
        let verifier = TokenVerifier::builder(
            Jwks::from_keys(keys.verifying().cloned()),
            "http://fuzz.test",
            "tower-apikey",
        )
        .max_cached_tokens(1024)
        .build();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some(signing.verifying_key().kid().to_owned());
        let encoding = jsonwebtoken::EncodingKey::from_ed_pem(signing.to_pem().as_bytes()).unwrap();
        (
            runtime,
            Fixture {
                verifier,
                encoding,
                header,
            },
        )
    });
    if *selector == 0 {
        let _ = fixture.verifier.verify_cached(rest);
        let _ = runtime.block_on(fixture.verifier.verify(rest));
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let text = String::from_utf8_lossy(rest).replace("NOW", &now);
    let Ok(claims) = serde_json::from_str::<serde_json::Value>(&text) else {
        return;
    };
    let Ok(token) = jsonwebtoken::encode(&fixture.header, &claims, &fixture.encoding) else {
        return;
    };
    let Ok(identity) = runtime.block_on(fixture.verifier.verify(token.as_bytes())) else {
        return;
    };
    for claim in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"] {
        assert!(claims.get(claim).is_some(), "accepted without {claim}");
    }
    assert_eq!(claims["iss"], "http://fuzz.test");
    assert_eq!(
        claims["client_id"].as_str(),
        Some(identity.key_id().as_str())
    );
    assert_eq!(claims["sub"].as_str(), Some(identity.principal()));
    let cached = fixture.verifier.verify_cached(token.as_bytes());
    assert!(matches!(cached, Some(Ok(ref again)) if again.key_id() == identity.key_id()));
});
