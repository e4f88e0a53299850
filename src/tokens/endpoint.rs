//! The token endpoint (RFC 6749 §4.4) and the two documents beside it, as an axum router.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::header::{CACHE_CONTROL, PRAGMA};
use http::HeaderValue;

use super::error::TokenError;
use super::issuer::{IssueError, TokenIssuer, JWKS_PATH, METADATA_PATH, TOKEN_PATH};
use super::request::{TokenRequest, MAX_TOKEN_REQUEST_BODY};
use crate::layer::ClientAddress;
use crate::policy::PolicyRefusal;
use crate::usage::Outcome;
use crate::validator::{PolicyError, ValidationError, Validator};

/// The token endpoint: exchanges a valid API key for an access token.
///
/// [`into_router`](Self::into_router) serves, at the root of the issuer URL:
/// - `POST /oauth/token`: `grant_type=client_credentials`, the key by HTTP Basic
///   (`client_id` the key id, `client_secret` the key), the `apikey` header, or the
///   `client_id`/`client_secret` form fields; an optional `scope`;
/// - `GET /.well-known/jwks.json`: the public keys;
/// - `GET /.well-known/oauth-authorization-server`: the RFC 8414 metadata.
///
/// The key goes through the validator as at the layer: its cache, its bounded cold path, its
/// policies (a rate-limited key gets 429 with the RateLimit headers) and its usage counts.
#[derive(Clone)]
pub struct TokenEndpoint {
    validator: Validator,
    issuer: TokenIssuer,
    client_address: ClientAddress,
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("validator", &self.validator)
            .field("issuer", &self.issuer)
            .field("client_address", &self.client_address)
            .finish()
    }
}

impl TokenEndpoint {
    /// Checks keys with `validator` and signs with `issuer`. The client address a key's
    /// allow-list is checked against is the connection's peer (see
    /// [`client_address`](Self::client_address)).
    pub fn new(validator: Validator, issuer: TokenIssuer) -> Self {
        Self {
            validator,
            issuer,
            client_address: ClientAddress::peer(),
        }
    }

    /// Where a request's client address comes from, as at the layer.
    pub fn client_address(mut self, client_address: ClientAddress) -> Self {
        self.client_address = client_address;
        self
    }

    /// The router: the token endpoint, the JWKS and the metadata, at the paths above.
    /// Merge it at the root of the issuer URL.
    pub fn into_router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let issuer = self.issuer.clone();
        let jwks = Arc::new(issuer.jwks());
        let metadata = Arc::new(issuer.metadata());
        Router::new()
            .route(TOKEN_PATH, post(token))
            .with_state(Arc::new(self))
            .route(JWKS_PATH, get(move || std::future::ready(document(&*jwks))))
            .route(
                METADATA_PATH,
                get(move || std::future::ready(document(&*metadata))),
            )
    }

    /// Answers one token request: what `POST /oauth/token` does, without axum's routing.
    pub async fn exchange(&self, request: Request) -> Response {
        token(State(Arc::new(self.clone())), request).await
    }
}

/// A public document, cacheable for a few minutes (a verifier refreshes a JWKS at most that
/// stale; a rotation publishes the next key that long before it signs).
fn document<T: serde::Serialize>(value: &T) -> Response {
    let mut response = Json(value).into_response();
    response.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

async fn token(State(endpoint): State<Arc<TokenEndpoint>>, request: Request) -> Response {
    match issue(&endpoint, request).await {
        Ok(body) => {
            let mut response = Json(body).into_response();
            let headers = response.headers_mut();
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn issue(
    endpoint: &TokenEndpoint,
    request: Request,
) -> Result<serde_json::Value, TokenError> {
    let (parts, body) = request.into_parts();
    // One byte over the bound tells "too long" from "exactly the bound".
    let body = axum::body::to_bytes(body, MAX_TOKEN_REQUEST_BODY + 1)
        .await
        .map_err(|_| TokenError::InvalidRequest("the request body is over 8 KiB or unreadable"))?;
    let request = TokenRequest::parse(&parts.headers, &body)?;
    let validator = &endpoint.validator;
    // A client id that is not the key's own is refused before any work.
    if let (Some(client_id), Ok(parsed)) = (
        &request.client_id,
        validator.key_format().split(&request.key),
    ) {
        if client_id != parsed.id() {
            return Err(TokenError::InvalidClient);
        }
    }
    let identity = match validator.validate(&request.key).await {
        Ok(identity) => identity,
        Err(ValidationError::Rejected(reason)) => {
            tracing::debug!(%reason, way = ?request.authentication, "token request refused");
            return Err(TokenError::InvalidClient);
        }
        Err(error @ ValidationError::Internal(_)) => {
            tracing::error!(%error, "API key check failed");
            return Err(TokenError::Internal);
        }
        Err(error) => {
            tracing::debug!(%error, "API key could not be checked");
            return Err(TokenError::Unavailable);
        }
    };
    // A legacy key has no id in it: its client id is checked once it is known.
    if request
        .client_id
        .as_ref()
        .is_some_and(|client_id| client_id != identity.key_id().as_str())
    {
        identity.refuse_after_valid(Outcome::WrongSecret);
        return Err(TokenError::InvalidClient);
    }
    let client = endpoint
        .client_address
        .resolve(&parts.extensions, &parts.headers);
    match validator.enforce(&identity, client).await {
        Ok(_) => {}
        Err(PolicyError::Refused(PolicyRefusal::RateLimited(status))) => {
            return Err(TokenError::RateLimited(status));
        }
        Err(PolicyError::Refused(PolicyRefusal::UsageExceeded { retry_after })) => {
            return Err(TokenError::UsageExceeded { retry_after });
        }
        // An address outside the allow-list: the answer a bad key gets.
        Err(PolicyError::Refused(_)) => return Err(TokenError::InvalidClient),
        Err(PolicyError::Unavailable(error)) => {
            tracing::debug!(%error, "quota lease could not be taken");
            return Err(TokenError::Unavailable);
        }
        Err(error) => {
            tracing::error!(%error, "quota lease failed");
            return Err(TokenError::Internal);
        }
    }
    match endpoint.issuer.issue(&identity, request.scope.as_deref()) {
        Ok(token) => {
            tracing::debug!(key_id = %identity.key_id(), expires_in = token.expires_in(), "access token issued");
            Ok(token.response_body())
        }
        Err(IssueError::Scope(error)) => {
            identity.refuse_after_valid(Outcome::PermissionDenied);
            Err(TokenError::InvalidScope(error))
        }
        Err(IssueError::KeyExpiring) => {
            identity.refuse_after_valid(Outcome::Expired);
            Err(TokenError::InvalidClient)
        }
        Err(error) => {
            tracing::error!(%error, "access token not issued");
            Err(TokenError::Internal)
        }
    }
}
