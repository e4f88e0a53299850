//! GitHub secret-scanning alerts from outside: key sets and signatures of any shape never
//! panic; an authenticated alert of any shape (signed here, as GitHub would) is answered with
//! one label per token or refused as a bad body or too many tokens, never a server failure.
//! `KEY` in an input is replaced by a live key of the fixture (no key is shipped in seeds).
#![no_main]

use std::sync::Mutex;

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use tower_apikey::admin::secret_scanning::{
    GithubPublicKeys, ReceiverError, SecretScanningReceiver,
};
use tower_apikey::hash::HashParams;
use tower_apikey::{KeyManager, MemoryStore, NewKey, Validator};

const KEY_ID: &str = "fuzz";

struct Fixture {
    receiver: SecretScanningReceiver,
    key: String,
    uses: u32,
}

fn signing_key() -> SigningKey {
    SigningKey::from_slice(&[7u8; 32]).unwrap()
}

/// A fresh store every few hundred inputs: reported keys are revoked.
fn fixture(runtime: &tokio::runtime::Runtime) -> Fixture {
    runtime.block_on(async {
        let store = MemoryStore::new();
        let keys = KeyManager::new(store.clone())
            .hash_params(HashParams::default().with_iterations(1).unwrap());
        let (_, key) = keys.issue(NewKey::new("alice")).await.unwrap();
        let pem = signing_key()
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let set = serde_json::json!({
            "public_keys": [{"key_identifier": KEY_ID, "key": pem, "is_current": true}]
        });
        let validator = Validator::builder(store)
            .last_used_flush_interval(None)
            .build();
        let receiver = SecretScanningReceiver::new(
            validator,
            keys,
            GithubPublicKeys::from_json(set.to_string().as_bytes()).unwrap(),
        )
        .max_tokens(64);
        Fixture {
            receiver,
            key: key.expose().to_owned(),
            uses: 0,
        }
    })
}

static STATE: Mutex<Option<(tokio::runtime::Runtime, Option<Fixture>)>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    // Key sets and signatures of any shape.
    let _ = GithubPublicKeys::from_json(data);
    let text = String::from_utf8_lossy(data);

    let mut state = STATE.lock().unwrap();
    let (runtime, fixture_slot) = state.get_or_insert_with(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        (runtime, None)
    });
    let fixture = fixture_slot.get_or_insert_with(|| fixture(runtime));
    fixture.uses += 1;
    let body = text.replace("KEY", &fixture.key).into_bytes();
    let signature: Signature = signing_key().sign(&body);
    let signature = base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes());
    let receiver = fixture.receiver.clone();
    let outcome = runtime.block_on(async {
        let _ = receiver.receive(KEY_ID, &text, &body).await;
        receiver.receive(KEY_ID, &signature, &body).await
    });
    match outcome {
        Ok(feedback) => {
            let alerts: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            assert_eq!(feedback.len(), alerts.len(), "one label per token");
        }
        Err(ReceiverError::BadBody { .. } | ReceiverError::TooManyTokens { .. }) => {}
        Err(other) => panic!("an authenticated alert failed: {other}"),
    }
    if fixture.uses >= 300 {
        *fixture_slot = None;
    }
});
