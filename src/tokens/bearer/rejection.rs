//! What a request refused by [`BearerTokenLayer`](super::BearerTokenLayer) is told, in the
//! crate's JSON error shape, and the RFC 6750 challenge it carries.

use bytes::Bytes;
use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, Response, StatusCode};

use crate::rejection::{error_body, DefaultRejection, Rejection, RejectionResponse};

/// The default answers of [`BearerTokenLayer`](super::BearerTokenLayer):
///
/// | rejection | status | body `error` |
/// |---|---|---|
/// | no token | 401, `WWW-Authenticate: Bearer` | `missing_token` |
/// | invalid token | 401, `WWW-Authenticate: Bearer error="invalid_token"` | `invalid_token` |
/// | two tokens | 400 | `invalid_request` |
/// | others | as [`DefaultRejection`] | |
///
/// The layer sets the challenge on every 401 whichever rejection answers, so a gRPC
/// service may use [`GrpcRejection`](crate::rejection::GrpcRejection) instead.
#[derive(Debug, Clone, Default)]
pub struct BearerRejection {
    others: DefaultRejection,
}

impl BearerRejection {
    /// The default responses.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<B: From<Bytes>> RejectionResponse<B> for BearerRejection {
    fn respond(&self, rejection: Rejection) -> Response<B> {
        match rejection {
            Rejection::Missing => error_body(
                StatusCode::UNAUTHORIZED,
                "missing_token",
                "An access token is required: send it as Authorization: Bearer <token>.",
            ),
            Rejection::Invalid => error_body(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "The access token is invalid or expired.",
            ),
            Rejection::Conflicting => error_body(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request carries more than one Authorization header.",
            ),
            other => self.others.respond(other),
        }
    }
}

/// The RFC 6750 §3 challenge of a 401: none of the error codes for a request without a
/// token (§3.1), `invalid_token` for a bad one.
pub(super) fn challenge<B>(mut response: Response<B>, rejection: Rejection) -> Response<B> {
    if response.status() == StatusCode::UNAUTHORIZED {
        let value = match rejection {
            Rejection::Missing => HeaderValue::from_static("Bearer"),
            _ => HeaderValue::from_static("Bearer error=\"invalid_token\""),
        };
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}
