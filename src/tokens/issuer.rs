//! What signs access tokens: the keys, the issuer and audience, the lifetime; and the
//! documents that describe it (JWKS, RFC 8414 metadata).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::Header;
use serde_json::{json, Value};

use super::claims::{granted_scope, AccessTokenClaims, Audience, ScopeError};
use super::keys::{ensure_crypto_provider, TokenKeys};
use crate::identity::Identity;

/// The longest lifetime a token may have.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// The most clock skew a verifier may allow for `exp`, `nbf` and `iat`: with
/// [`MAX_TOKEN_LIFETIME`], how long a token can be accepted after it was issued.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);
/// The lifetime tokens get unless configured.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// The audience tokens name unless configured.
pub const DEFAULT_AUDIENCE: &str = "tower-apikey";

/// Where the token endpoint, the JWKS and the metadata are served, below the issuer.
pub(crate) const TOKEN_PATH: &str = "/oauth/token";
pub(crate) const JWKS_PATH: &str = "/.well-known/jwks.json";
pub(crate) const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// Signs access tokens for valid keys. Cheap to clone.
///
/// ```
/// use tower_apikey::tokens::{SigningKey, TokenAlgorithm, TokenIssuer, TokenKeys};
/// let keys = TokenKeys::new(SigningKey::generate(TokenAlgorithm::EdDsa)?);
/// let issuer = TokenIssuer::new(keys, "https://auth.example.com")
///     .audience("orders-api")
///     .lifetime(std::time::Duration::from_secs(600));
/// assert_eq!(issuer.metadata()["token_endpoint"], "https://auth.example.com/oauth/token");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TokenIssuer {
    inner: Arc<Settings>,
}

#[derive(Clone)]
struct Settings {
    keys: TokenKeys,
    header: Header,
    issuer: String,
    audience: String,
    lifetime: Duration,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &*self.inner;
        f.debug_struct("TokenIssuer")
            .field("keys", &settings.keys)
            .field("issuer", &settings.issuer)
            .field("audience", &settings.audience)
            .field("lifetime", &settings.lifetime)
            .finish()
    }
}

/// A token as issued: the RFC 6749 §5.1 answer's fields. `Debug` hides the token.
#[derive(Clone)]
pub struct AccessToken {
    token: zeroize::Zeroizing<String>,
    expires_in: u64,
    scope: Vec<String>,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

impl AccessToken {
    /// The signed JWT. A bearer credential: keep it out of logs.
    pub fn expose(&self) -> &str {
        &self.token
    }

    /// Seconds until it expires (`exp − iat`).
    pub fn expires_in(&self) -> u64 {
        self.expires_in
    }

    /// The permissions it carries.
    pub fn scope(&self) -> &[String] {
        &self.scope
    }

    /// The RFC 6749 §5.1 response body.
    pub fn response_body(&self) -> Value {
        let mut body = json!({
            "access_token": self.expose(),
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        });
        if !self.scope.is_empty() {
            body["scope"] = Value::String(self.scope.join(" "));
        }
        body
    }
}

/// Why no token was issued for a valid key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The scope cannot be granted (`invalid_scope`).
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// The key expires within the second: no token could outlive it (`invalid_client`).
    #[error("the key expires now")]
    KeyExpiring,
    /// The random `jti` could not be made.
    #[error(transparent)]
    Rng(#[from] crate::random::RngError),
    /// Signing failed (a bug, or a key jsonwebtoken refuses).
    #[error("signing the token failed: {0}")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

impl TokenIssuer {
    /// Signs with `keys`' current key; names `issuer` (`iss`, and the metadata's `issuer`:
    /// the URL the endpoints are served under, without a trailing slash). Audience
    /// [`DEFAULT_AUDIENCE`], lifetime [`DEFAULT_TOKEN_LIFETIME`].
    pub fn new(keys: TokenKeys, issuer: impl Into<String>) -> Self {
        ensure_crypto_provider();
        let signing = keys.signing().verifying_key();
        let mut header = Header::new(signing.algorithm().jwt());
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(signing.kid().to_owned());
        let issuer = issuer.into().trim_end_matches('/').to_owned();
        Self {
            inner: Arc::new(Settings {
                keys,
                header,
                issuer,
                audience: DEFAULT_AUDIENCE.to_owned(),
                lifetime: DEFAULT_TOKEN_LIFETIME,
            }),
        }
    }

    /// The audience tokens name (`aud`): what the services that accept them check.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.inner).audience = audience.into();
        self
    }

    /// How long a token lives, between 1 second and [`MAX_TOKEN_LIFETIME`] (a longer one is
    /// cut to an hour, a shorter one raised to a second). Never past the key's own expiry.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        let clamped = lifetime.clamp(Duration::from_secs(1), MAX_TOKEN_LIFETIME);
        if clamped != lifetime {
            tracing::warn!(
                ?lifetime,
                ?clamped,
                "access token lifetime out of range; clamped"
            );
        }
        Arc::make_mut(&mut self.inner).lifetime = Duration::from_secs(clamped.as_secs());
        self
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The audience tokens name.
    pub fn audience_name(&self) -> &str {
        &self.inner.audience
    }

    /// The lifetime tokens get (before the key's expiry cuts it).
    pub fn token_lifetime(&self) -> Duration {
        self.inner.lifetime
    }

    /// The signing key and the earlier public keys.
    pub fn keys(&self) -> &TokenKeys {
        &self.inner.keys
    }

    /// Signs a token for `identity` (a key the validator found valid): `sub` its principal,
    /// `client_id` its id, `scope` its permissions or the part of them `scope` asks for.
    ///
    /// # Errors
    /// [`IssueError::Scope`] when the scope cannot be granted; [`IssueError::KeyExpiring`]
    /// when the key expires within the second.
    pub fn issue(
        &self,
        identity: &Identity,
        scope: Option<&str>,
    ) -> Result<AccessToken, IssueError> {
        let settings = &*self.inner;
        let scope = granted_scope(identity, scope)?;
        let iat = Timestamp::now().as_second();
        let mut exp = iat.saturating_add(settings.lifetime.as_secs() as i64);
        if let Some(key_expiry) = identity.expires_at() {
            exp = exp.min(key_expiry.as_second());
        }
        if exp <= iat {
            return Err(IssueError::KeyExpiring);
        }
        let mut jti = [0u8; 16];
        crate::random::fill_random(&mut jti)?;
        let claims = AccessTokenClaims {
            iss: settings.issuer.clone(),
            sub: identity.principal().to_owned(),
            aud: Audience::One(settings.audience.clone()),
            exp,
            iat,
            nbf: None,
            jti: base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, jti),
            client_id: identity.key_id().as_str().to_owned(),
            scope: (!scope.is_empty()).then(|| scope.join(" ")),
            key_version: Some(identity.key_version().encode()),
        };
        let token = jsonwebtoken::encode(
            &settings.header,
            &claims,
            settings.keys.signing().encoding(),
        )
        .map_err(IssueError::Signing)?;
        Ok(AccessToken {
            token: zeroize::Zeroizing::new(token),
            expires_in: (exp - iat) as u64,
            scope,
        })
    }

    /// The JWKS of every public key (RFC 7517): what `/.well-known/jwks.json` serves.
    pub fn jwks(&self) -> JwkSet {
        self.inner.keys.jwks()
    }

    /// The authorization server metadata (RFC 8414): what
    /// `/.well-known/oauth-authorization-server` serves. Its `issuer` is the tokens' `iss`.
    pub fn metadata(&self) -> Value {
        let issuer = &self.inner.issuer;
        json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}{TOKEN_PATH}"),
            "jwks_uri": format!("{issuer}{JWKS_PATH}"),
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        })
    }
}
