//! The public keys a verifier trusts: a JWKS given in code, or fetched from a URL, kept fresh,
//! and fetched again (at most every ten seconds) when a token names a key it does not know.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

use crate::tokens::keys::VerifyingKey;

/// The largest JWKS document read.
const MAX_JWKS_BYTES: usize = 64 * 1024;
/// How often a fetched JWKS is fetched again unless configured.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);
/// An unknown `kid` fetches the JWKS again, at most this often.
const MIN_REFETCH: Duration = Duration::from_secs(10);

/// Why a JWKS could not be fetched or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The request failed, or the answer was not a 200.
    #[error("fetching the JWKS failed: {0}")]
    Fetch(#[source] reqwest::Error),
    /// The document is over 64 KiB.
    #[error("the JWKS document is over 64 KiB")]
    TooLarge,
    /// The document is not a JWKS.
    #[error("not a JWKS: {0}")]
    Json(#[source] serde_json::Error),
    /// The JWKS holds no Ed25519 or P-256 signing key with a `kid`.
    #[error("the JWKS holds no Ed25519 or P-256 signing key with a kid")]
    NoUsableKey,
}

/// The keys tokens are verified with. Cheap to clone.
#[derive(Clone)]
pub struct Jwks {
    inner: Arc<Inner>,
}

struct Inner {
    keys: RwLock<Arc<HashMap<String, VerifyingKey>>>,
    remote: Option<Remote>,
}

struct Remote {
    url: String,
    client: reqwest::Client,
    /// When it was last fetched; held across a fetch so one runs at a time.
    fetched_at: tokio::sync::Mutex<Instant>,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.current();
        let mut kids: Vec<&String> = keys.keys().collect();
        kids.sort();
        f.debug_struct("Jwks")
            .field("kids", &kids)
            .field("url", &self.inner.remote.as_ref().map(|remote| &remote.url))
            .finish()
    }
}

impl Jwks {
    /// These keys, for good.
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        Self::with(index(keys), None)
    }

    /// The keys of `set` that can verify tokens (Ed25519 or P-256, with a `kid`, not meant
    /// for encryption); others are left out.
    ///
    /// # Errors
    /// [`JwksError::NoUsableKey`] when none is left.
    pub fn from_set(set: &JwkSet) -> Result<Self, JwksError> {
        Ok(Self::with(usable(set)?, None))
    }

    /// Fetches the JWKS at `url` now, then again every `refresh` (at least ten seconds; a
    /// failed fetch keeps the keys it had), and when a token names an unknown `kid` (at most
    /// every ten seconds).
    ///
    /// # Errors
    /// [`JwksError`] when the first fetch fails.
    pub async fn fetch(url: &str, refresh: Duration) -> Result<Self, JwksError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(JwksError::Fetch)?;
        let keys = fetch(&client, url).await?;
        let jwks = Self::with(
            keys,
            Some(Remote {
                url: url.to_owned(),
                client,
                fetched_at: tokio::sync::Mutex::new(Instant::now()),
            }),
        );
        tokio::spawn(refresh_every(
            Arc::downgrade(&jwks.inner),
            refresh.max(MIN_REFETCH),
        ));
        Ok(jwks)
    }

    fn with(keys: HashMap<String, VerifyingKey>, remote: Option<Remote>) -> Self {
        Self {
            inner: Arc::new(Inner {
                keys: RwLock::new(Arc::new(keys)),
                remote,
            }),
        }
    }

    fn current(&self) -> Arc<HashMap<String, VerifyingKey>> {
        Arc::clone(
            &self
                .inner
                .keys
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The key named `kid`, if known now.
    pub(crate) fn find(&self, kid: &str) -> Option<VerifyingKey> {
        self.current().get(kid).cloned()
    }

    /// The key named `kid`, fetching the JWKS again first if it is unknown and the last fetch
    /// is over ten seconds old.
    pub(crate) async fn find_or_refetch(&self, kid: &str) -> Option<VerifyingKey> {
        if let Some(key) = self.find(kid) {
            return Some(key);
        }
        let remote = self.inner.remote.as_ref()?;
        let mut fetched_at = remote.fetched_at.lock().await;
        // Another caller may have fetched while this one waited.
        if let Some(key) = self.find(kid) {
            return Some(key);
        }
        if fetched_at.elapsed() < MIN_REFETCH {
            return None;
        }
        *fetched_at = Instant::now();
        self.inner.refetch(remote).await;
        drop(fetched_at);
        self.find(kid)
    }
}

impl Inner {
    async fn refetch(&self, remote: &Remote) {
        match fetch(&remote.client, &remote.url).await {
            Ok(keys) => {
                *self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
            }
            Err(error) => {
                tracing::warn!(url = %remote.url, %error, "JWKS not refreshed; keeping the keys it had");
            }
        }
    }
}

async fn refresh_every(inner: Weak<Inner>, every: Duration) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let Some(remote) = &inner.remote else { return };
        let mut fetched_at = remote.fetched_at.lock().await;
        *fetched_at = Instant::now();
        inner.refetch(remote).await;
    }
}

async fn fetch(
    client: &reqwest::Client,
    url: &str,
) -> Result<HashMap<String, VerifyingKey>, JwksError> {
    let mut response = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(JwksError::Fetch)?;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(JwksError::Fetch)? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    let set: JwkSet = serde_json::from_slice(&body).map_err(JwksError::Json)?;
    usable(&set)
}

fn usable(set: &JwkSet) -> Result<HashMap<String, VerifyingKey>, JwksError> {
    let keys = index(set.keys.iter().filter_map(VerifyingKey::from_jwk));
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(keys)
}

fn index(keys: impl IntoIterator<Item = VerifyingKey>) -> HashMap<String, VerifyingKey> {
    keys.into_iter()
        .map(|key| (key.kid().to_owned(), key))
        .collect()
}
