//! Delivers the store's outbox to HTTP endpoints as [Standard Webhooks]: signed, retried
//! with backoff under the same `webhook-id`, each event sent by one server at a time.
//!
//! A [`WebhookSender`] runs in each server (or one of them; it makes no difference): it
//! claims due events from the store ([`OutboxStore::claim_events`], a lease no other server
//! shares), `POST`s each as
//!
//! ```text
//! webhook-id: evt_…                    (the event's id, on every attempt)
//! webhook-timestamp: 1733050000        (this attempt, Unix seconds)
//! webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body" under the secret>
//! content-type: application/json
//!
//! {"type": "key.revoked", "timestamp": "2026-12-01T17:00:00Z", "data": {…the event…}}
//! ```
//!
//! to each endpoint, and marks it delivered once every endpoint has answered 2xx, or due
//! again after a backoff (doubling from
//! [`retry_backoff`](WebhookSender::retry_backoff)'s first delay up to its most) on anything
//! else. Delivery is at least once: a server that dies mid-delivery loses its claim when
//! the lease ends and the event is sent again, with the same id (receivers deduplicate on
//! it). Payloads carry ids, principals, names, reasons and times, never a key or a hash.
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com/

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use sha2::Sha256;

use crate::events::{Delivery, KeyEvent, OutboxEntry};
use crate::store::{outbox_handle, ErasedOutboxStore, OutboxStore, StoreError};

/// A webhook signing secret: `whsec_` and the base64 of its bytes, as Standard Webhooks
/// libraries print and read it. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// A secret that is not `whsec_` and base64 of at least 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret is `whsec_` and the base64 of 24 to 64 random bytes")]
pub struct InvalidWebhookSecret;

impl std::str::FromStr for WebhookSecret {
    type Err = InvalidWebhookSecret;

    fn from_str(text: &str) -> Result<Self, InvalidWebhookSecret> {
        let encoded = text.trim().strip_prefix("whsec_").unwrap_or(text.trim());
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| InvalidWebhookSecret)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(InvalidWebhookSecret);
        }
        Ok(Self(bytes))
    }
}

impl WebhookSecret {
    /// The `webhook-signature` value for message `id` sent at `timestamp` (Unix seconds)
    /// with `body`: `v1,` and the base64 of HMAC-SHA256 over `id.timestamp.body`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let tag = mac.finalize().into_bytes();
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(tag)
        )
    }
}

/// Why a sender could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The endpoint is not an `http` or `https` URL.
    #[error("webhook URL must be http or https")]
    Url,
    /// The HTTP client could not be built (its TLS roots, for one).
    #[error("webhook client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Delivers the outbox to one or more endpoints. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct WebhookSender {
    store: Arc<dyn ErasedOutboxStore>,
    endpoints: Vec<Endpoint>,
    /// For events some endpoints have accepted and others not yet: which did, so a retry
    /// from this process goes only to the rest (another process sends to all: at least once).
    accepted: Arc<Mutex<HashMap<String, Vec<bool>>>>,
    client: reqwest::Client,
    poll: Duration,
    batch: usize,
    timeout: Duration,
    first_retry: Duration,
    longest_retry: Duration,
}

/// Where events go, and the secret they are signed with there.
#[derive(Clone)]
struct Endpoint {
    url: reqwest::Url,
    secret: WebhookSecret,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A webhook URL can be a secret itself (a token in its path or query): the host only.
        f.debug_struct("Endpoint")
            .field("host", &self.url.host_str())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    fn new(url: &str, secret: WebhookSecret) -> Result<Self, WebhookError> {
        let url = reqwest::Url::parse(url).map_err(|_| WebhookError::Url)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WebhookError::Url);
        }
        Ok(Self { url, secret })
    }
}

/// Partly delivered events remembered at most: past it the memory is dropped, and a retry
/// goes to every endpoint again (allowed: delivery is at least once).
const MAX_PARTLY_DELIVERED: usize = 10_000;

/// The body sent: Standard Webhooks' `type`, `timestamp`, `data`.
#[derive(Serialize)]
struct Payload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: Timestamp,
    data: &'a KeyEvent,
}

impl WebhookSender {
    /// A sender of `store`'s outbox to `url`, signing with `secret` (more endpoints with
    /// [`endpoint`](Self::endpoint)). Defaults: looks for due events every second, 10 at a
    /// time, 10 s per request, retries after 5 s doubling up to an hour.
    ///
    /// # Errors
    /// [`WebhookError`]: not an http(s) URL, or no HTTP client.
    pub fn new(
        store: impl OutboxStore,
        url: &str,
        secret: WebhookSecret,
    ) -> Result<Self, WebhookError> {
        let timeout = Duration::from_secs(10);
        Ok(Self {
            store: outbox_handle(store),
            endpoints: vec![Endpoint::new(url, secret)?],
            accepted: Arc::default(),
            client: client(timeout)?,
            poll: Duration::from_secs(1),
            batch: 10,
            timeout,
            first_retry: Duration::from_secs(5),
            longest_retry: Duration::from_secs(3600),
        })
    }

    /// Another endpoint, with its own secret. An event is delivered once every endpoint has
    /// accepted it; until then it is retried, to the endpoints that have not (from this
    /// process; another server that takes it over sends it to all of them).
    ///
    /// # Errors
    /// [`WebhookError::Url`]: not an http(s) URL.
    pub fn endpoint(mut self, url: &str, secret: WebhookSecret) -> Result<Self, WebhookError> {
        self.endpoints.push(Endpoint::new(url, secret)?);
        Ok(self)
    }

    /// How often to look for due events when there were none (default 1 s).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(10));
        self
    }

    /// The longest one request may take (default 10 s). A claim lasts for a whole batch of
    /// them to every endpoint, plus 5 s.
    ///
    /// # Errors
    /// [`WebhookError::Client`] if the client cannot be rebuilt.
    pub fn request_timeout(mut self, timeout: Duration) -> Result<Self, WebhookError> {
        self.timeout = timeout;
        self.client = client(timeout)?;
        Ok(self)
    }

    /// Events claimed at once (default 10, at least 1).
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// After a failed attempt, wait `first`, doubling with each failure up to `longest`
    /// (defaults 5 s and 1 h). Events are never given up on.
    pub fn retry_backoff(mut self, first: Duration, longest: Duration) -> Self {
        self.first_retry = first;
        self.longest_retry = longest.max(first);
        self
    }

    /// How long a claim lasts: every request of a batch timing out, and a margin.
    fn lease(&self) -> Duration {
        let requests = self.batch.saturating_mul(self.endpoints.len());
        self.timeout
            .saturating_mul(u32::try_from(requests).unwrap_or(u32::MAX))
            .saturating_add(Duration::from_secs(5))
    }

    /// Delivers until `shutdown` completes: then stops, handing back (as due now) what it
    /// had claimed and not yet sent, so another server sends it at once. Store failures are
    /// logged and retried at the next poll.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut held: Vec<OutboxEntry> = Vec::new();
        loop {
            let round = self.deliver_claimed(&mut held);
            tokio::select! {
                () = &mut shutdown => break,
                outcome = round => match outcome {
                    Ok(0) => {}
                    Ok(_) => continue,
                    Err(error) => tracing::warn!(%error, "webhook outbox not read; trying again"),
                },
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.poll) => {}
            }
        }
        for entry in held {
            let _ = self
                .store
                .finish_event(&entry.event.id, Delivery::RetryAt(Timestamp::now()))
                .await;
        }
    }

    /// One round: claims due events and delivers each. Returns how many were claimed.
    ///
    /// # Errors
    /// The store's failure to claim or to record an outcome (the claim then lapses and the
    /// event is sent again: at least once).
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        self.deliver_claimed(&mut Vec::new()).await
    }

    /// Claims into `held` and delivers from it, so a caller that stops midway knows what it
    /// still holds.
    async fn deliver_claimed(&self, held: &mut Vec<OutboxEntry>) -> Result<usize, StoreError> {
        if held.is_empty() {
            *held = self.store.claim_events(self.batch, self.lease()).await?;
            held.reverse();
        }
        let claimed = held.len();
        while let Some(entry) = held.last() {
            let outcome = self.attempt(entry).await;
            self.store.finish_event(&entry.event.id, outcome).await?;
            held.pop();
        }
        Ok(claimed)
    }

    /// Sends one event once to every endpoint that has not accepted it; what to record.
    async fn attempt(&self, entry: &OutboxEntry) -> Delivery {
        let event = &entry.event;
        let body = match serde_json::to_vec(&Payload {
            kind: event.kind.as_str(),
            timestamp: event.at,
            data: event,
        }) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, event = %event.id, "webhook payload not serialised");
                return self.retry(entry);
            }
        };
        let mut accepted = self
            .accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&event.id)
            .unwrap_or_else(|| vec![false; self.endpoints.len()]);
        for (endpoint, done) in self.endpoints.iter().zip(accepted.iter_mut()) {
            if !*done {
                *done = self.send(endpoint, entry, &body).await;
            }
        }
        if accepted.iter().all(|done| *done) {
            tracing::debug!(event = %event.id, kind = event.kind.as_str(), "webhook delivered");
            return Delivery::Delivered;
        }
        if accepted.iter().any(|done| *done) {
            let mut partly = self.accepted.lock().unwrap_or_else(PoisonError::into_inner);
            if partly.len() >= MAX_PARTLY_DELIVERED {
                partly.clear();
            }
            partly.insert(event.id.clone(), accepted);
        }
        self.retry(entry)
    }

    /// One request to one endpoint; whether it was accepted (a 2xx answer).
    async fn send(&self, endpoint: &Endpoint, entry: &OutboxEntry, body: &[u8]) -> bool {
        let event = &entry.event;
        let now = Timestamp::now().as_second();
        let signature = endpoint.secret.sign(&event.id, now, body);
        let sent = self
            .client
            .post(endpoint.url.clone())
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", signature)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => true,
            Ok(response) => {
                tracing::warn!(
                    event = %event.id,
                    kind = event.kind.as_str(),
                    status = response.status().as_u16(),
                    attempts = entry.attempts,
                    "webhook refused; will retry"
                );
                false
            }
            Err(error) => {
                // reqwest's error names the URL; an endpoint URL may carry a token in its
                // query, so only the kind of failure is logged.
                let cause = if error.is_timeout() {
                    "timed out"
                } else if error.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                tracing::warn!(
                    event = %event.id,
                    kind = event.kind.as_str(),
                    cause,
                    attempts = entry.attempts,
                    "webhook not delivered; will retry"
                );
                false
            }
        }
    }

    /// Due again after the backoff for its attempts so far.
    fn retry(&self, entry: &OutboxEntry) -> Delivery {
        let doublings = entry.attempts.saturating_sub(1).min(30);
        let wait = self
            .first_retry
            .saturating_mul(1 << doublings)
            .min(self.longest_retry);
        let wait = SignedDuration::try_from(wait).unwrap_or(SignedDuration::from_hours(1));
        Delivery::RetryAt(Timestamp::now() + wait)
    }
}

fn client(timeout: Duration) -> Result<reqwest::Client, WebhookError> {
    reqwest::Client::builder()
        .timeout(timeout)
        // A redirect would carry the signed event elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(WebhookError::Client)
}
