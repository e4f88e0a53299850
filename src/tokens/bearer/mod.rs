//! [`BearerTokenLayer`]: authenticates requests by an access token, verified offline against
//! a JWKS, for the services behind the edge.
//!
//! The handler gets the same [`Identity`](crate::Identity) the API key layer gives (principal,
//! key id, permissions: the token's scope), so
//! [`RequirePermissionLayer`](crate::permission::RequirePermissionLayer) and the
//! [`Require`](crate::permission::Require) extractor work unchanged behind it.
//!
//! Refused with one 401 (`WWW-Authenticate: Bearer error="invalid_token"`), whatever the
//! reason ([`InvalidToken`], logged at debug): `alg: none`, an algorithm other than the
//! key's own (HMAC over the public key), a `typ` other than `at+jwt`, another issuer or
//! audience, expired, not yet valid (`nbf`, `iat`; leeway at most 60 s), an unknown `kid`, a
//! tampered header, payload or signature, over 8 KiB, a lifetime over an hour. A request
//! with no token gets 401 `WWW-Authenticate: Bearer` and no error code (RFC 6750 §3.1).
//!
//! A verified token is cached by its header and claims (which are public), with a keyed
//! digest of its signature, until it expires: a repeated token costs one hash of its
//! signature and a lookup, about what a cached API key costs.

mod jwks;
mod rejection;
mod service;
mod verifier;

use tower_layer::Layer;

pub use jwks::{Jwks, JwksError, DEFAULT_JWKS_REFRESH};
pub use rejection::BearerRejection;
pub use service::BearerToken;
pub use verifier::{
    BearerError, InvalidToken, TokenVerifier, TokenVerifierBuilder, DEFAULT_LEEWAY, MAX_TOKEN_BYTES,
};

use super::TokenRevocations;

/// A tower layer that authenticates requests by `Authorization: Bearer <access token>`.
///
/// ```
/// use tower_apikey::tokens::{BearerTokenLayer, Jwks, SigningKey, TokenAlgorithm, TokenKeys, TokenVerifier};
/// let keys = TokenKeys::new(SigningKey::generate(TokenAlgorithm::EdDsa)?);
/// // An internal service trusts the issuer's public keys (or `Jwks::fetch` its JWKS URL).
/// let jwks = Jwks::from_keys(keys.verifying().cloned());
/// let layer = BearerTokenLayer::new(
///     TokenVerifier::builder(jwks, "https://auth.example.com", "tower-apikey").build(),
/// );
/// let app: axum::Router = axum::Router::new()
///     .route("/internal/whoami", axum::routing::get(|who: tower_apikey::Identity| async move {
///         who.principal().to_owned()
///     }))
///     .layer(layer);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct BearerTokenLayer<R = BearerRejection> {
    verifier: TokenVerifier,
    rejection: R,
}

impl BearerTokenLayer {
    /// Verifies tokens with `verifier`, answering with [`BearerRejection`].
    pub fn new(verifier: TokenVerifier) -> Self {
        Self {
            verifier,
            rejection: BearerRejection::new(),
        }
    }

    /// A verifier of `jwks` for `issuer` and `audience` that refuses the tokens of keys
    /// changed in the store since they were issued: the common case, in one call.
    pub fn with_revocations(
        jwks: Jwks,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        revocations: TokenRevocations,
    ) -> Self {
        Self::new(
            TokenVerifier::builder(jwks, issuer, audience)
                .revocations(revocations)
                .build(),
        )
    }
}

impl<R> BearerTokenLayer<R> {
    /// Answers refused requests with `rejection` (a gRPC service:
    /// [`GrpcRejection`](crate::rejection::GrpcRejection)); 401s still get the RFC 6750
    /// challenge.
    pub fn rejection<R2>(self, rejection: R2) -> BearerTokenLayer<R2> {
        BearerTokenLayer {
            verifier: self.verifier,
            rejection,
        }
    }

    /// The verifier.
    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }
}

impl<S, R: Clone> Layer<S> for BearerTokenLayer<R> {
    type Service = BearerToken<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerToken::new(inner, self.verifier.clone(), self.rejection.clone())
    }
}
