//! The token endpoint and the internal service behind it, as the examples configure them
//! from the environment (feature `tokens`):
//!
//! - `TOKEN_SIGNING_KEY`: the current private key, as PEM or a path to a PEM file. Without
//!   it a key is made at start (and said so): tokens then die with the process.
//! - `TOKEN_VERIFY_KEYS`: a PEM file of earlier public keys, still published after a rotation.
//! - `TOKEN_ISSUER`: default `http://<ADDR>` (the address the server listens on).
//! - `TOKEN_AUDIENCE`: default `tower-apikey`.
//! - `TOKEN_TTL`: default `5m` (`30s`, `10m`, `1h`: an hour at most).

use std::error::Error;
use std::net::SocketAddr;

use axum::Router;
use tower_apikey::layer::ClientAddress;
use tower_apikey::policy::Period;
use tower_apikey::tokens::{
    BearerTokenLayer, Jwks, SigningKey, TokenAlgorithm, TokenEndpoint, TokenIssuer, TokenKeys,
    TokenRevocations, TokenVerifier,
};
use tower_apikey::{KeyStore, Validator};

/// The issuer the environment describes, for a server listening on `local`.
pub(crate) fn issuer_from_env(
    local: SocketAddr,
) -> Result<TokenIssuer, Box<dyn Error + Send + Sync>> {
    let signing = match std::env::var("TOKEN_SIGNING_KEY") {
        Ok(value) => SigningKey::from_pem_or_path(&value)?,
        Err(_) => {
            let key = SigningKey::generate(TokenAlgorithm::EdDsa)?;
            println!(
                "No TOKEN_SIGNING_KEY: access tokens are signed with a key made at start (kid {}); they end with this process.",
                key.verifying_key().kid()
            );
            key
        }
    };
    let mut keys = TokenKeys::new(signing);
    if let Ok(path) = std::env::var("TOKEN_VERIFY_KEYS") {
        keys = keys.verify_also(TokenKeys::read_verify_keys(path.as_ref())?);
    }
    let issuer = std::env::var("TOKEN_ISSUER").unwrap_or_else(|_| format!("http://{local}"));
    let mut issuer = TokenIssuer::new(keys, issuer);
    if let Ok(audience) = std::env::var("TOKEN_AUDIENCE") {
        issuer = issuer.audience(audience);
    }
    if let Ok(ttl) = std::env::var("TOKEN_TTL") {
        issuer = issuer.lifetime(ttl.parse::<Period>()?.as_duration());
    }
    Ok(issuer)
}

/// `app` with the token endpoint, its JWKS and metadata, and `internal` behind
/// `BearerTokenLayer` fed by this server's own JWKS and following `store`'s changes: the
/// internal service, shown in one process.
pub(crate) fn with_tokens(
    app: Router,
    internal: Router,
    validator: &Validator,
    store: impl KeyStore,
    client_address: ClientAddress,
    local: SocketAddr,
) -> Result<Router, Box<dyn Error + Send + Sync>> {
    let issuer = issuer_from_env(local)?;
    let verifier = TokenVerifier::builder(
        Jwks::from_keys(issuer.keys().verifying().cloned()),
        issuer.issuer(),
        issuer.audience_name(),
    )
    .revocations(TokenRevocations::watch(store))
    .build();
    println!(
        "access tokens at {}/oauth/token (JWKS at /.well-known/jwks.json); /internal/whoami takes them",
        issuer.issuer()
    );
    let endpoint = TokenEndpoint::new(validator.clone(), issuer).client_address(client_address);
    Ok(app
        .merge(endpoint.into_router())
        .merge(internal.layer(BearerTokenLayer::new(verifier))))
}
