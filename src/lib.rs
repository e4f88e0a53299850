//! Tower middleware that authenticates machine-to-machine API keys against PBKDF2 records.
//!
//! Clients send a key in the `apikey` header or query parameter (IBM Maximo's convention).
//! Keys are stored only as PBKDF2 records `iterations:salt_hex:hash_hex`; each belongs to a
//! principal, carries permissions, may expire, and may be deactivated or revoked. A bad key
//! gets one answer — invalid, expired or revoked — never which.
//!
//! - [`ApiKeyLayer`]: a tower layer for axum, hyper or tonic stacks; hands the handler an
//!   [`Identity`].
//! - [`Validator`]: the checking itself, usable without tower. Validated keys are cached by
//!   record id (a cached key costs a digest compare, no PBKDF2); a cold key costs one store
//!   read and one PBKDF2 derivation on a low-priority thread, off the runtime.
//! - [`KeyRecord`] ([`record`]): who a key belongs to, what it may do, whether it may be used;
//!   [`lifecycle::Expiry`]: when it stops, in the forms operators write.
//! - [`store`]: where records live — [`MemoryStore`], [`FileStore`], and `PgKeyStore`
//!   (feature `postgres`) for a fleet; [`BoxKeyStore`] holds any of them. The contract is
//!   three capabilities: [`KeyStore`] (records), [`UsageStore`] (what a validator writes),
//!   [`OutboxStore`] (key events); your own store checks itself with the suites in
//!   `test_util` (feature `test-util`).
//! - [`KeyManager`]: the key lifecycle — limits, rotation, regeneration, export and import;
//!   `admin::AdminApi` (feature `admin`) serves it as a REST API.
//! - [`permission`]: require a permission of the key, as a layer or an axum extractor.
//! - [`hash`]: PBKDF2 hashes (`iterations:salt_hex:hash_hex`); [`key`]: the key format and
//!   generator.
//! - [`rejection`]: what a refused request is told; [`events`], [`sweeper`] and `webhook`
//!   (feature `webhooks`): key events and their delivery; [`scan`]: leaked keys in text.
//! - `tokens` (feature `tokens`): exchange a key for a short-lived signed access token at
//!   `/oauth/token`, and verify it offline behind the edge with `tokens::BearerTokenLayer`.
//! - The `tower-apikey` command-line tool (feature `cli`) hashes, verifies, issues, lists and
//!   revokes keys.
//! - [`guide`]: running, operating and extending it, in long form.
//!
//! # Example
//! ```
//! use axum::{routing::get, Router};
//! use tower::ServiceExt;
//! use tower_apikey::{ApiKeyLayer, Identity, KeyRecord, KeyStore, MemoryStore, Validator};
//! use tower_apikey::key::KeyFormat;
//! use tower_apikey::hash::HashParams;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // Issue a key: the record goes to the store, the plaintext to its owner, once.
//! let store = MemoryStore::new();
//! let (mut record, key) = KeyRecord::generate("alice", &KeyFormat::default(), &HashParams::default())?;
//! record.permissions = vec!["read".into()];
//! store.insert(record).await?;
//!
//! let app = Router::new()
//!     .route("/whoami", get(|who: Identity| async move { who.principal().to_owned() }))
//!     .layer(ApiKeyLayer::new(Validator::builder(store).build()));
//!
//! let request = http::Request::get("/whoami").header("apikey", key.expose()).body(axum::body::Body::empty())?;
//! let response = app.clone().oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//!
//! let request = http::Request::get("/whoami?apikey=tak_nope").body(axum::body::Body::empty())?;
//! assert_eq!(app.oneshot(request).await?.status(), 401);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `axum` | yes | [`Identity`] and [`permission::Require`] as axum extractors (through `axum-core`) |
//! | `admin` | no | `admin::AdminApi`: the admin REST API as an axum router, with its OpenAPI document; `admin::secret_scanning` |
//! | `console` | no | `console::Console`: the admin console in the browser (server-rendered HTML with maud), with `admin` |
//! | `selfservice` | no | `selfservice::SelfService`: users create and manage their own keys, within a policy (with `console`) |
//! | `tokens` | no | `tokens`: exchange a key for a short-lived signed access token (OAuth 2.0 client credentials, RFC 9068 JWTs), and `tokens::BearerTokenLayer` to verify them offline |
//! | `metrics` | no | the validator's counters through the `metrics` facade |
//! | `cli` | no | the `tower-apikey` binary (through `clap`) |
//! | `postgres` | no | `store::PgKeyStore`, keys in PostgreSQL for a fleet |
//! | `webhooks` | no | `webhook::WebhookSender`: key events delivered as Standard Webhooks |
//! | `test-util` | no | `test_util`: the store conformance suites, the test-double wrapper, and `TempCluster` (with `postgres`) |

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "admin")]
pub mod admin;
#[cfg(feature = "console")]
pub mod console;
pub mod events;
pub mod guide;
pub mod hash;
pub mod identity;
pub mod key;
pub mod layer;
pub mod lifecycle;
pub mod permission;
pub mod policy;
mod random;
pub mod record;
pub mod rejection;
pub mod scan;
#[cfg(feature = "selfservice")]
pub mod selfservice;
pub mod session;
pub mod store;
mod streak;
pub mod sweeper;
#[cfg(feature = "test-util")]
pub mod test_util;
#[cfg(feature = "tokens")]
pub mod tokens;
pub mod usage;
pub mod validator;
#[cfg(feature = "webhooks")]
pub mod webhook;

pub use identity::Identity;
pub use layer::{ApiKey, ApiKeyLayer};
pub use lifecycle::{KeyManager, KeyPatch, LifecycleError, NewKey};
pub use record::{KeyRecord, KeyStatus, Revocation, RevocationReason};
pub use store::{
    BoxKeyStore, FileStore, KeyStore, MemoryStore, OutboxStore, StoreError, UsageStore,
};
pub use validator::{ValidationError, Validator};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
