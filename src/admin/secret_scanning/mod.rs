//! GitHub's secret-scanning partner alerts, received and acted on: every reported token that
//! is a key of ours is revoked as leaked, across the fleet, and GitHub is told which were.
//!
//! GitHub scans public repositories, gists and packages for tokens matching the pattern a
//! provider registered (ours: [`scan::pattern`](crate::scan::pattern)) and `POST`s what it
//! finds to the provider's endpoint: a JSON array of `{token, type, url, source}`, signed
//! with ECDSA P-256 / SHA-256 over the raw body (`Github-Public-Key-Signature`, base64 DER)
//! under the key named by `Github-Public-Key-Identifier`.
//!
//! [`SecretScanningReceiver::into_router`] answers that `POST`:
//! - a missing signature or an unknown key identifier → `401` before the body is read; a bad
//!   signature → `401` and the store is not touched; at most [`MAX_ALERTS_AT_ONCE`] alerts
//!   are read at a time (more → `503`), each body at most [`MAX_BODY`], verified before it is
//!   parsed: what a caller without GitHub's key can make the server do is bounded;
//! - each distinct token is checked with [`Validator::record_of`]: one store read and one
//!   derivation through the validator's bounded cold path, one token at a time, so a batch
//!   holds at most one place and normal traffic keeps the rest; when every place stays taken
//!   for [`max_wait`](SecretScanningReceiver::max_wait) the batch is answered `503` (GitHub
//!   sends it again; what was revoked stays revoked);
//! - a token that is ours and not yet revoked is revoked through [`KeyManager`] with the
//!   reason `leaked` and the alert's `url` as its location; every validator watching the
//!   store drops it (within the propagation bound on a fleet);
//! - the answer is GitHub's feedback array: `token_hash` (SHA-256 hex of the token),
//!   `token_type`, and `label` `true_positive` (ours, whatever its state) or
//!   `false_positive`.
//!
//! It is not behind the admin key: GitHub authenticates with its signature. Tokens never
//! appear in logs or answers; the log says which key id was revoked and where it leaked.
//!
//! # Example
//! ```
//! use axum::Router;
//! use tower_apikey::admin::secret_scanning::{GithubPublicKeys, SecretScanningReceiver};
//! use tower_apikey::{KeyManager, MemoryStore, Validator};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // GitHub's published set (https://api.github.com/meta/public_keys/secret_scanning).
//! let published = br#"{"public_keys": [{"key_identifier": "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a",
//!     "key": "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9MJJHnMfn2+H4xL4YaPDA4RpJqUq\nkCmRCBnYERxZanmcpzQSXs1X/AljlKkbJ8qpVIW4clayyef9gWhFbNHWAA==\n-----END PUBLIC KEY-----\n",
//!     "is_current": true}]}"#;
//! let keys = GithubPublicKeys::from_json(published)?;
//! let store = MemoryStore::new();
//! let receiver = SecretScanningReceiver::new(
//!     Validator::builder(store.clone()).build(),
//!     KeyManager::new(store),
//!     keys,
//! );
//! let app: Router = Router::new().nest("/github/secret-scanning", receiver.into_router());
//! # Ok(())
//! # }
//! ```

mod public_keys;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

pub use public_keys::{GithubPublicKeys, KeySetError, RefreshError, SignatureError};

use crate::hash::Hex;
use crate::key::PresentedKey;
use crate::lifecycle::{KeyManager, LifecycleError, MAX_LOCATION_CHARS};
use crate::record::{KeyRecord, KeyStatus, Revocation};
use crate::store::StoreError;
use crate::validator::{ValidationError, Validator};

/// The largest alert body read: 1,000 alerts with long URLs fit in a quarter of it.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Alerts read and checked at once; more are answered `503` (GitHub sends them again), so
/// bodies in memory are bounded by this times [`MAX_BODY`].
pub const MAX_ALERTS_AT_ONCE: usize = 2;
/// The header naming the key that signed the alert.
pub const KEY_IDENTIFIER_HEADER: &str = "github-public-key-identifier";
/// The header carrying the signature (base64 DER).
pub const SIGNATURE_HEADER: &str = "github-public-key-signature";

/// Receives GitHub's secret-scanning alerts. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct SecretScanningReceiver {
    validator: Validator,
    manager: KeyManager,
    keys: GithubPublicKeys,
    max_tokens: usize,
    max_wait: Duration,
    reading: Arc<Semaphore>,
}

/// One reported token, as GitHub sends it.
#[derive(Deserialize)]
struct Alert {
    token: String,
    #[serde(rename = "type", default)]
    token_type: String,
    #[serde(default)]
    url: Option<String>,
}

/// What GitHub is told about one token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Feedback {
    /// SHA-256 of the token, lower-case hex.
    pub token_hash: String,
    /// The alert's `type`, echoed.
    pub token_type: String,
    /// Whether the token is a key of ours.
    pub label: Label,
}

/// GitHub's feedback label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// A key of ours (revoked now if it was not already).
    TruePositive,
    /// Not a key of ours.
    FalsePositive,
}

/// Why an alert was not acted on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiverError {
    /// The signature headers are missing, or the signature does not verify: `401`.
    #[error("alert not authenticated: {0}")]
    Unauthenticated(#[source] SignatureError),
    /// The signature headers are missing.
    #[error("alert not authenticated: missing {0} header")]
    MissingHeader(&'static str),
    /// The body is over [`MAX_BODY`] (or could not be read): `413`.
    #[error("alert body over {MAX_BODY} bytes, or unreadable")]
    TooLarge,
    /// The body is not GitHub's alert array: `400`. Only the place is kept: the parser's
    /// message can quote the body, which holds tokens.
    #[error("not a secret-scanning alert array (line {line}, column {column})")]
    BadBody {
        /// Where the parser stopped.
        line: usize,
        /// Where the parser stopped.
        column: usize,
    },
    /// More tokens than [`max_tokens`](SecretScanningReceiver::max_tokens): `413`.
    #[error("more than {max} tokens in one alert")]
    TooManyTokens {
        /// The limit.
        max: usize,
    },
    /// The cold path stayed full for [`max_wait`](SecretScanningReceiver::max_wait), or
    /// [`MAX_ALERTS_AT_ONCE`] alerts are being read already: `503`.
    #[error("too busy to check an alert now")]
    Busy,
    /// The store failed: `503` when unavailable, `500` otherwise.
    #[error("key store failed: {0}")]
    Store(#[source] StoreError),
    /// A check or a revocation failed in a way no retry fixes: `500`.
    #[error("checking the alert failed: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl SecretScanningReceiver {
    /// A receiver checking tokens with `validator`, revoking through `manager` (both over the
    /// store the servers validate against), trusting signatures under `keys`.
    pub fn new(validator: Validator, manager: KeyManager, keys: GithubPublicKeys) -> Self {
        Self {
            validator,
            manager: manager.actor("github-secret-scanning"),
            keys,
            max_tokens: 1_000,
            max_wait: Duration::from_secs(10),
            reading: Arc::new(Semaphore::new(MAX_ALERTS_AT_ONCE)),
        }
    }

    /// The most tokens one alert may carry (default 1,000); more is refused with `413`.
    pub fn max_tokens(mut self, n: usize) -> Self {
        self.max_tokens = n;
        self
    }

    /// How long a batch waits, in all, for a place on the cold path while the server is busy
    /// (default 10 s) before it is answered `503`.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// The router: `POST /`, to [`nest`](Router::nest) under the path registered with
    /// GitHub (the admin example uses `/github/secret-scanning`).
    pub fn into_router<T: Clone + Send + Sync + 'static>(self) -> Router<T> {
        Router::new()
            .route("/", post(receive))
            .layer(DefaultBodyLimit::disable())
            .with_state(self)
    }

    /// Handles one alert: verifies `signature` (base64 DER) under `key_identifier` over
    /// `body`, then checks and revokes each token. What the router calls; usable from any
    /// framework.
    ///
    /// # Errors
    /// [`ReceiverError`]; nothing is read from or written to the store unless the signature
    /// verifies.
    pub async fn receive(
        &self,
        key_identifier: &str,
        signature: &str,
        body: &[u8],
    ) -> Result<Vec<Feedback>, ReceiverError> {
        self.keys
            .verify(key_identifier, signature, body)
            .map_err(ReceiverError::Unauthenticated)?;
        let alerts: Vec<Alert> =
            serde_json::from_slice(body).map_err(|e| ReceiverError::BadBody {
                line: e.line(),
                column: e.column(),
            })?;
        if alerts.len() > self.max_tokens {
            return Err(ReceiverError::TooManyTokens {
                max: self.max_tokens,
            });
        }
        let deadline = tokio::time::Instant::now() + self.max_wait;
        let mut labels: HashMap<&str, Label> = HashMap::new();
        let mut feedback = Vec::with_capacity(alerts.len());
        for alert in &alerts {
            let label = match labels.get(alert.token.as_str()) {
                Some(label) => *label,
                None => {
                    let label = self.act_on(alert, deadline).await?;
                    labels.insert(&alert.token, label);
                    label
                }
            };
            feedback.push(Feedback {
                token_hash: Hex(&Sha256::digest(alert.token.as_bytes())).to_string(),
                token_type: alert.token_type.clone(),
                label,
            });
        }
        Ok(feedback)
    }

    /// Checks one token; revokes it if it is ours and live.
    async fn act_on(
        &self,
        alert: &Alert,
        deadline: tokio::time::Instant,
    ) -> Result<Label, ReceiverError> {
        let Ok(key) = PresentedKey::new(alert.token.as_bytes()) else {
            return Ok(Label::FalsePositive);
        };
        let Some(record) = self.record_of(&key, deadline).await? else {
            return Ok(Label::FalsePositive);
        };
        if record.status != KeyStatus::Revoked {
            self.revoke(&record, alert.url.as_deref()).await?;
        }
        Ok(Label::TruePositive)
    }

    /// [`Validator::record_of`], waiting (until `deadline`) while the cold path is full.
    async fn record_of(
        &self,
        key: &PresentedKey,
        deadline: tokio::time::Instant,
    ) -> Result<Option<KeyRecord>, ReceiverError> {
        const PAUSE: Duration = Duration::from_millis(20);
        loop {
            match self.validator.record_of(key).await {
                Ok(record) => return Ok(record),
                Err(ValidationError::Overloaded)
                    if tokio::time::Instant::now() + PAUSE < deadline =>
                {
                    tokio::time::sleep(PAUSE).await;
                }
                Err(ValidationError::Overloaded) => return Err(ReceiverError::Busy),
                Err(ValidationError::Unavailable(error)) => {
                    return Err(ReceiverError::Store(error))
                }
                Err(error) => return Err(ReceiverError::Internal(Box::new(error))),
            }
        }
    }

    async fn revoke(&self, record: &KeyRecord, url: Option<&str>) -> Result<(), ReceiverError> {
        // The location is kept only if the manager would accept it; the revocation matters more.
        let location = url
            .filter(|u| u.chars().count() <= MAX_LOCATION_CHARS && !u.chars().any(char::is_control))
            .map(str::to_owned);
        let revocation = Revocation {
            reason: crate::RevocationReason::Leaked,
            location,
        };
        match self.manager.revoke_with(&record.id, revocation).await {
            // Deleted meanwhile: nothing left to revoke.
            Ok(_) | Err(LifecycleError::NotFound(_)) => {}
            Err(LifecycleError::Store(error)) => return Err(ReceiverError::Store(error)),
            Err(error) => return Err(ReceiverError::Internal(Box::new(error))),
        }
        tracing::warn!(
            key_id = %record.id,
            principal = %record.principal,
            url = url.unwrap_or(""),
            "leaked key revoked (GitHub secret scanning)"
        );
        Ok(())
    }
}

async fn receive(State(receiver): State<SecretScanningReceiver>, request: Request) -> Response {
    match receiver.receive_request(request).await {
        Ok(feedback) => Json(feedback).into_response(),
        Err(error) => error.into_response(),
    }
}

impl SecretScanningReceiver {
    /// Headers first: a request without them, or naming a key not in the set, is refused
    /// before its body is read.
    async fn receive_request(&self, request: Request) -> Result<Vec<Feedback>, ReceiverError> {
        let (parts, body) = request.into_parts();
        let header = |name: &'static str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(ReceiverError::MissingHeader(name))
        };
        let key_identifier = header(KEY_IDENTIFIER_HEADER)?;
        let signature = header(SIGNATURE_HEADER)?;
        if !self.keys.knows(key_identifier) {
            return Err(ReceiverError::Unauthenticated(SignatureError::UnknownKey));
        }
        let _reading = Arc::clone(&self.reading)
            .try_acquire_owned()
            .map_err(|_| ReceiverError::Busy)?;
        let body = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|_| ReceiverError::TooLarge)?;
        self.receive(key_identifier, signature, &body).await
    }
}

impl ReceiverError {
    /// The status and the error code sent.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ReceiverError::Unauthenticated(_) | ReceiverError::MissingHeader(_) => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            ReceiverError::TooLarge | ReceiverError::TooManyTokens { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ReceiverError::BadBody { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            ReceiverError::Busy | ReceiverError::Store(StoreError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            ReceiverError::Store(_) | ReceiverError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

impl IntoResponse for ReceiverError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "secret-scanning alert not handled");
        } else {
            tracing::info!(error = %self, "secret-scanning alert refused");
        }
        let message = match status {
            // One answer for every authentication failure: which check failed is logged.
            StatusCode::UNAUTHORIZED => "The alert's signature did not verify.".to_owned(),
            StatusCode::SERVICE_UNAVAILABLE => "Try again later.".to_owned(),
            StatusCode::INTERNAL_SERVER_ERROR => {
                "The server failed to handle the alert.".to_owned()
            }
            _ => self.to_string(),
        };
        let mut response: Response = crate::rejection::error_body(status, code, &message);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
