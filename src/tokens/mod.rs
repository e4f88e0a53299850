//! Access tokens: exchange an API key for a short-lived signed token at the edge, and verify
//! it offline in the services behind it (feature `tokens`).
//!
//! An API key is checked against the store, its cache and PBKDF2: right at the edge. Behind
//! it a request fans out to internal services, and each would need all that again. Instead
//! the client exchanges its key for an access token, in standards every language's OAuth and
//! JWT libraries speak:
//!
//! - [`TokenEndpoint`]: OAuth 2.0 client credentials (RFC 6749 §4.4) at `POST /oauth/token`;
//!   the key by HTTP Basic (`client_id` = key id, `client_secret` = the key), the `apikey`
//!   header or form fields; checked by the [`Validator`](crate::Validator) as at the layer
//!   (cache, bounded cold path, policies, usage counts). Beside it the JWKS (RFC 7517) at
//!   `/.well-known/jwks.json` and the metadata (RFC 8414) at
//!   `/.well-known/oauth-authorization-server`.
//! - The token ([`TokenIssuer`]): a JWT as RFC 9068 says — header `typ: at+jwt`, `alg`
//!   `EdDSA` (Ed25519, the default) or `ES256` (a P-256 key), `kid`; claims `iss`, `sub`
//!   (the principal), `aud`, `exp`, `iat`, `jti`, `client_id` (the key id), `scope` (the
//!   permissions joined by spaces) and `key_version` (names the key's secret, so a
//!   regeneration ends its tokens). Lifetime 5 minutes unless configured, an hour at most,
//!   never past the key's expiry.
//! - [`BearerTokenLayer`]: verifies tokens offline against a JWKS given in code or fetched
//!   from a URL ([`Jwks`]), and hands the handler the same [`Identity`](crate::Identity).
//!
//! A request's `scope` narrows the permissions and never widens them; a key with a
//! permission that contains whitespace gets `invalid_scope` (a scope token cannot hold it).
//! **A token lives at most its lifetime**; services that share the store refuse a revoked,
//! deactivated or regenerated key's tokens within a second ([`TokenRevocations`]). The
//! answers, the claims, revocation and a step-by-step signing-key rotation are in the guide:
//! [`guide::tokens`](crate::guide::tokens).
//!
//! # Example
//! ```
//! use axum::body::Body;
//! use tower::ServiceExt;
//! use tower_apikey::tokens::{SigningKey, TokenAlgorithm, TokenEndpoint, TokenIssuer, TokenKeys};
//! use tower_apikey::{KeyRecord, KeyStore, MemoryStore, Validator};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let params = tower_apikey::hash::HashParams::default();
//! let (mut record, key) = KeyRecord::generate("alice", &Default::default(), &params)?;
//! record.permissions = vec!["read".into(), "write".into()];
//! store.insert(record).await?;
//!
//! let keys = TokenKeys::new(SigningKey::generate(TokenAlgorithm::EdDsa)?);
//! let issuer = TokenIssuer::new(keys, "http://127.0.0.1:3000");
//! let app: axum::Router = TokenEndpoint::new(Validator::builder(store).build(), issuer).into_router();
//!
//! let request = http::Request::post("/oauth/token")
//!     .header("content-type", "application/x-www-form-urlencoded")
//!     .header("apikey", key.expose())
//!     .body(Body::from("grant_type=client_credentials&scope=read"))?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.headers()["cache-control"], "no-store");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod bearer;
mod claims;
mod endpoint;
mod error;
mod issuer;
mod keys;
mod request;
mod revocation;

pub use bearer::{
    BearerError, BearerRejection, BearerToken, BearerTokenLayer, InvalidToken, Jwks, JwksError,
    TokenVerifier, TokenVerifierBuilder, DEFAULT_JWKS_REFRESH, DEFAULT_LEEWAY, MAX_TOKEN_BYTES,
};
pub use claims::ScopeError;
pub use endpoint::TokenEndpoint;
pub use error::TokenError;
pub use issuer::{
    AccessToken, IssueError, TokenIssuer, DEFAULT_AUDIENCE, DEFAULT_TOKEN_LIFETIME, MAX_LEEWAY,
    MAX_TOKEN_LIFETIME,
};
pub use keys::{SigningKey, TokenAlgorithm, TokenKeyError, TokenKeys, VerifyingKey};
pub use request::{ClientAuthentication, TokenRequest, MAX_TOKEN_REQUEST_BODY};
pub use revocation::TokenRevocations;
