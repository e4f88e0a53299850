//! What the token endpoint answers when it issues no token: RFC 6749 §5.2 errors, and the
//! layer's answers for a key over its limits or a store that is away.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};

use super::claims::ScopeError;
use crate::policy::RateLimitStatus;
use crate::rejection::Rejection;

/// Why the token endpoint issued no token. Each is an RFC 6749 §5.2 error code (or, for a
/// key over its limits and an unavailable store, the layer's 429 and 503).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// `invalid_request` (400): a body that is not a form, a parameter missing or repeated,
    /// the key sent more than one way.
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// `invalid_client` (401, `WWW-Authenticate: Basic`): no key, or a key that is not
    /// valid — invalid, expired, revoked or inactive, one answer whichever way it came.
    #[error("invalid_client")]
    InvalidClient,
    /// `invalid_scope` (400): the scope asked for, or a permission of the key, cannot be
    /// granted; the description says why.
    #[error("invalid_scope: {0}")]
    InvalidScope(#[from] ScopeError),
    /// `unsupported_grant_type` (400): only `client_credentials` is.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// 429 with `Retry-After` and the RateLimit headers: the key is over its rate limit.
    #[error("rate_limited")]
    RateLimited(RateLimitStatus),
    /// 429 with `Retry-After` when the quota refills: the key's quota is used up.
    #[error("usage_exceeded")]
    UsageExceeded {
        /// Until the quota refills, if it does.
        retry_after: Option<Duration>,
    },
    /// 503 with `Retry-After: 1`: the key could not be checked now (store away, too much
    /// cold work).
    #[error("temporarily_unavailable")]
    Unavailable,
    /// 500: the server failed (logged).
    #[error("server_error")]
    Internal,
}

impl TokenError {
    /// The `error` code of the response body.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidClient => "invalid_client",
            TokenError::InvalidScope(_) => "invalid_scope",
            TokenError::UnsupportedGrantType => "unsupported_grant_type",
            TokenError::RateLimited(_) => "rate_limited",
            TokenError::UsageExceeded { .. } => "usage_exceeded",
            TokenError::Unavailable => "temporarily_unavailable",
            TokenError::Internal => "server_error",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            TokenError::InvalidClient => StatusCode::UNAUTHORIZED,
            TokenError::RateLimited(_) | TokenError::UsageExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            TokenError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            TokenError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn description(&self) -> String {
        match self {
            TokenError::InvalidRequest(why) => (*why).to_owned(),
            TokenError::InvalidClient => "the client could not be authenticated".to_owned(),
            TokenError::InvalidScope(why) => why.to_string(),
            TokenError::UnsupportedGrantType => {
                "only grant_type=client_credentials is supported".to_owned()
            }
            TokenError::RateLimited(_) => "the API key is over its rate limit".to_owned(),
            TokenError::UsageExceeded { .. } => "the API key's quota is used up".to_owned(),
            TokenError::Unavailable => "the API key could not be checked now; retry".to_owned(),
            TokenError::Internal => "the server failed".to_owned(),
        }
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.code(),
            "error_description": self.description(),
        });
        let mut response = Response::new(axum::body::Body::from(Bytes::from(body.to_string())));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        if matches!(self, TokenError::InvalidClient) {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tower-apikey\", charset=\"UTF-8\""),
            );
        }
        // The layer's Retry-After and RateLimit headers, from the same rejection.
        let rejection = match self {
            TokenError::RateLimited(status) => Some(Rejection::RateLimited(status)),
            TokenError::UsageExceeded { retry_after } => {
                Some(Rejection::UsageExceeded { retry_after })
            }
            TokenError::Unavailable => Some(Rejection::Unavailable),
            _ => None,
        };
        match rejection {
            Some(rejection) => crate::rejection::limit_headers(response, rejection),
            None => response,
        }
    }
}
