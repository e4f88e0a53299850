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
//! # Scopes
//! A request's `scope` narrows the key's permissions and never widens them (a wildcard
//! permission `reports:*` grants the scope `reports:read`). A scope token is printable ASCII
//! without spaces, `"` or `\` (RFC 6749 §3.3): a key with a permission that contains
//! whitespace (or those characters) gets `invalid_scope`, with the reason, unless it asks
//! for a scope that leaves that permission out.
//!
//! # Revocation
//! **A token lives at most its lifetime.** A service given only the JWKS accepts a token of
//! a key revoked after it was issued until the token expires. Services that share the key
//! store do better: with [`TokenRevocations`] they follow the store's change feed, and
//! refuse within a second the earlier tokens of a key that is revoked, deactivated, expired,
//! regenerated or deleted, or that lost a permission of the token's scope; the key id is held
//! until the last of those tokens has expired (an hour and the leeway). A key deactivated
//! and then activated again gets its earlier tokens back, as it gets its key back.
//!
//! # Signing keys and rotation
//! The signing key comes from PEM ([`SigningKey::from_pem`]: PKCS#8 Ed25519 or P-256, or
//! SEC1 P-256), the public keys of earlier ones from a PEM file
//! ([`TokenKeys::read_verify_keys`]); every server of a fleet is given the same. A key's
//! `kid` is its RFC 7638 thumbprint. To rotate without refusing any valid token:
//!
//! 1. Make the next key: `openssl genpkey -algorithm ed25519 -out next.pem`, and its public
//!    half: `openssl pkey -in next.pem -pubout -out next.pub.pem`.
//! 2. Publish it first: add `next.pub.pem` to every server's `TOKEN_VERIFY_KEYS` file and
//!    restart them (the JWKS now lists it). Wait for the verifiers' JWKS refresh (5 minutes
//!    by default; a verifier also fetches again when it meets an unknown `kid`).
//! 3. Sign with it: set `TOKEN_SIGNING_KEY` to `next.pem`, and move the old key's public half
//!    (`openssl pkey -in old.pem -pubout`) into `TOKEN_VERIFY_KEYS`; restart.
//! 4. After the longest token lifetime (5 minutes by default, an hour at most), remove the
//!    old public key from `TOKEN_VERIFY_KEYS`.
//!
//! The private key never appears in a log, an error or `Debug` output.
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
    TokenVerifier, TokenVerifierBuilder, DEFAULT_JWKS_REFRESH, DEFAULT_LEEWAY, MAX_LEEWAY,
    MAX_TOKEN_BYTES,
};
pub(crate) use claims::KeyVersion;
pub use claims::ScopeError;
pub use endpoint::TokenEndpoint;
pub use error::TokenError;
pub use issuer::{
    AccessToken, IssueError, TokenIssuer, DEFAULT_AUDIENCE, DEFAULT_TOKEN_LIFETIME,
    MAX_TOKEN_LIFETIME,
};
pub use keys::{SigningKey, TokenAlgorithm, TokenKeyError, TokenKeys, VerifyingKey};
pub use request::{ClientAuthentication, TokenRequest, MAX_TOKEN_REQUEST_BODY};
pub use revocation::TokenRevocations;
