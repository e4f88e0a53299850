//! GitHub's secret-scanning public keys: the set alerts are verified against, in GitHub's
//! own JSON shape, replaceable while the server runs.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;

/// The keys GitHub signs secret-scanning alerts with, by key identifier.
///
/// Read from the JSON GitHub publishes at
/// `https://api.github.com/meta/public_keys/secret_scanning`:
/// `{"public_keys": [{"key_identifier": "…", "key": "-----BEGIN PUBLIC KEY-----…", "is_current": true}]}`.
/// Every listed key is accepted, current or not (GitHub may still sign with the previous one
/// while it rotates). Cheap to clone: clones share the set, so a [`refresh`](Self::refresh)
/// reaches every receiver holding it.
#[derive(Clone, Default)]
pub struct GithubPublicKeys {
    keys: Arc<RwLock<HashMap<String, VerifyingKey>>>,
}

impl std::fmt::Debug for GithubPublicKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let mut ids: Vec<&String> = keys.keys().collect();
        ids.sort();
        f.debug_struct("GithubPublicKeys")
            .field("key_identifiers", &ids)
            .finish()
    }
}

/// Why a key set could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// Not JSON of GitHub's shape.
    #[error("not a GitHub public key set: {0}")]
    Json(#[source] serde_json::Error),
    /// A key is not a PEM P-256 public key.
    #[error("public key {key_identifier}: not a PEM P-256 public key")]
    Key {
        /// The key's identifier.
        key_identifier: String,
    },
    /// The set holds no key: every alert would be refused.
    #[error("the public key set holds no key")]
    Empty,
}

/// Why an alert's signature was not accepted. The receiver answers all of them with `401`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No such key identifier in the set.
    #[error("unknown public key identifier")]
    UnknownKey,
    /// The signature is not base64 of a DER ECDSA signature.
    #[error("malformed signature")]
    Malformed,
    /// The signature does not verify over the body under the named key.
    #[error("signature does not match the body")]
    Mismatch,
}

#[derive(Deserialize)]
struct KeySetJson {
    public_keys: Vec<PublicKeyJson>,
}

#[derive(Deserialize)]
struct PublicKeyJson {
    key_identifier: String,
    key: String,
}

/// A refresh that failed; the set in use stays as it was.
pub type RefreshError = Box<dyn std::error::Error + Send + Sync>;

impl GithubPublicKeys {
    /// A set read from GitHub's JSON.
    ///
    /// # Errors
    /// [`KeySetError`]: not that shape, a key that is not a P-256 public key, or no key.
    pub fn from_json(json: &[u8]) -> Result<Self, KeySetError> {
        let set = Self::default();
        set.replace_from_json(json)?;
        Ok(set)
    }

    /// Replaces the whole set with the one in `json`; on an error the set is unchanged.
    ///
    /// # Errors
    /// As [`from_json`](Self::from_json).
    pub fn replace_from_json(&self, json: &[u8]) -> Result<(), KeySetError> {
        let parsed: KeySetJson = serde_json::from_slice(json).map_err(KeySetError::Json)?;
        let mut keys = HashMap::with_capacity(parsed.public_keys.len());
        for key in parsed.public_keys {
            let verifying = VerifyingKey::from_public_key_pem(key.key.trim()).map_err(|_| {
                KeySetError::Key {
                    key_identifier: key.key_identifier.clone(),
                }
            })?;
            keys.insert(key.key_identifier, verifying);
        }
        if keys.is_empty() {
            return Err(KeySetError::Empty);
        }
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
        Ok(())
    }

    /// Whether the set holds a key with this identifier.
    pub fn knows(&self, key_identifier: &str) -> bool {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key_identifier)
    }

    /// Checks `signature` (base64 of a DER ECDSA P-256 / SHA-256 signature, as in
    /// `Github-Public-Key-Signature`) over `body` under the key named `key_identifier`.
    ///
    /// # Errors
    /// [`SignatureError`].
    pub fn verify(
        &self,
        key_identifier: &str,
        signature: &str,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        let key = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key_identifier)
            .copied()
            .ok_or(SignatureError::UnknownKey)?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| SignatureError::Malformed)?;
        let signature =
            DerSignature::try_from(der.as_slice()).map_err(|_| SignatureError::Malformed)?;
        key.verify(body, &signature)
            .map_err(|_| SignatureError::Mismatch)
    }

    /// Refreshes the set every `interval` from `fetch` (which returns GitHub's JSON: an
    /// application that can reach `api.github.com` fetches it with its own HTTP client), in
    /// a task that ends when every clone of this set is dropped. A failed fetch or an
    /// unusable answer is logged and the set in use is kept. Must be called within a Tokio
    /// runtime.
    pub fn refresh<F, Fut>(&self, interval: Duration, mut fetch: F) -> tokio::task::JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<u8>, RefreshError>> + Send,
    {
        let keys: Weak<RwLock<HashMap<String, VerifyingKey>>> = Arc::downgrade(&self.keys);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval.max(Duration::from_secs(1)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let fetched = fetch().await;
                let Some(keys) = keys.upgrade() else { return };
                let set = GithubPublicKeys { keys };
                match fetched.map(|json| set.replace_from_json(&json)) {
                    Ok(Ok(())) => tracing::debug!("GitHub secret-scanning public keys refreshed"),
                    Ok(Err(error)) => tracing::warn!(%error, "GitHub public keys not refreshed"),
                    Err(error) => tracing::warn!(%error, "GitHub public keys not fetched"),
                }
            }
        })
    }
}
