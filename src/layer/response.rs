//! The responses a refused request gets, and the trait to supply your own.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

/// What went wrong, as far as the caller may know.
///
/// Invalid, unknown, wrong-secret, expired, inactive and revoked keys are all
/// [`Rejection::Invalid`]: a [`RejectionResponse`] cannot tell them apart, so neither can
/// the caller. The reason is logged (with the key id, never the secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// The request carries no key.
    Missing,
    /// The key is not valid: invalid, expired or revoked.
    Invalid,
    /// The request carries two different keys.
    Conflicting,
    /// The key could not be checked now (store unreachable, too much cold work): retry.
    Unavailable,
}

/// Builds the response for a refused request.
///
/// Implemented by [`JsonRejection`] (the default), [`MaximoRejection`], [`GrpcRejection`], and any
/// `Fn(Rejection) -> Response<B>` closure that is `Clone + Send + Sync`.
pub trait RejectionResponse<B>: Clone + Send + Sync + 'static {
    /// The response for `rejection`.
    fn respond(&self, rejection: Rejection) -> Response<B>;
}

impl<B, F> RejectionResponse<B> for F
where
    F: Fn(Rejection) -> Response<B> + Clone + Send + Sync + 'static,
{
    fn respond(&self, rejection: Rejection) -> Response<B> {
        self(rejection)
    }
}

/// The default rejection: 401 with a short JSON body and `WWW-Authenticate`.
///
/// | rejection | status | body `error` |
/// |---|---|---|
/// | missing | 401 | `missing_api_key` |
/// | invalid | 401 | `invalid_api_key` |
/// | conflicting | 400 | `conflicting_api_keys` |
/// | unavailable | 503, `Retry-After: 1` | `unavailable` |
#[derive(Debug, Clone)]
pub struct JsonRejection {
    challenge: HeaderValue,
}

impl Default for JsonRejection {
    fn default() -> Self {
        Self {
            challenge: HeaderValue::from_static("ApiKey realm=\"api\""),
        }
    }
}

impl JsonRejection {
    /// The default responses.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `WWW-Authenticate` challenge sent with 401 (default `ApiKey realm="api"`).
    pub fn challenge(mut self, challenge: HeaderValue) -> Self {
        self.challenge = challenge;
        self
    }
}

impl<B: From<Bytes>> RejectionResponse<B> for JsonRejection {
    fn respond(&self, rejection: Rejection) -> Response<B> {
        let (status, body): (_, &'static str) = match rejection {
            Rejection::Missing => (
                StatusCode::UNAUTHORIZED,
                r#"{"error":"missing_api_key","message":"An API key is required: send it in the apikey header."}"#,
            ),
            Rejection::Invalid => (
                StatusCode::UNAUTHORIZED,
                r#"{"error":"invalid_api_key","message":"The API key is invalid, expired or revoked."}"#,
            ),
            Rejection::Conflicting => (
                StatusCode::BAD_REQUEST,
                r#"{"error":"conflicting_api_keys","message":"The request carries two different API keys."}"#,
            ),
            Rejection::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"unavailable","message":"The API key cannot be checked right now; try again."}"#,
            ),
        };
        json(status, body, rejection, &self.challenge)
    }
}

/// IBM Maximo's answers: an invalid key gets 400 with reason code `BMXAA9549E`.
///
/// The other rejections keep their status (401, 400, 503) in Maximo's `{"Error": ...}` shape.
#[derive(Debug, Clone)]
pub struct MaximoRejection {
    challenge: HeaderValue,
}

impl Default for MaximoRejection {
    fn default() -> Self {
        Self {
            challenge: HeaderValue::from_static("ApiKey realm=\"maximo\""),
        }
    }
}

impl MaximoRejection {
    /// The Maximo-compatible responses.
    pub fn new() -> Self {
        Self::default()
    }

    /// The exact body Maximo sends for an invalid, expired or revoked key.
    pub const INVALID_BODY: &'static str = r#"{"Error":{"message":"BMXAA9549E - The API key token is invalid. Either the token may have expired or the token has been revoked by the administrator.","reasonCode":"BMXAA9549E","statusCode":"400"}}"#;
}

impl<B: From<Bytes>> RejectionResponse<B> for MaximoRejection {
    fn respond(&self, rejection: Rejection) -> Response<B> {
        let (status, body): (_, &'static str) = match rejection {
            Rejection::Invalid => (StatusCode::BAD_REQUEST, Self::INVALID_BODY),
            Rejection::Missing => (
                StatusCode::UNAUTHORIZED,
                r#"{"Error":{"message":"An API key is required.","reasonCode":"missing_api_key","statusCode":"401"}}"#,
            ),
            Rejection::Conflicting => (
                StatusCode::BAD_REQUEST,
                r#"{"Error":{"message":"The request carries two different API keys.","reasonCode":"conflicting_api_keys","statusCode":"400"}}"#,
            ),
            Rejection::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"Error":{"message":"The API key cannot be checked right now; try again.","reasonCode":"unavailable","statusCode":"503"}}"#,
            ),
        };
        json(status, body, rejection, &self.challenge)
    }
}

/// gRPC's answers, for tonic and other gRPC stacks: a trailers-only response (HTTP 200,
/// `content-type: application/grpc`) whose `grpc-status` is `UNAUTHENTICATED` (16) for a
/// missing or invalid key, `INVALID_ARGUMENT` (3) for two different keys, and `UNAVAILABLE`
/// (14) when the key cannot be checked now.
///
/// Read the key from the `apikey` metadata entry: gRPC metadata travels as HTTP/2 headers,
/// so the layer's default header source already does.
#[derive(Debug, Clone, Default)]
pub struct GrpcRejection {
    _private: (),
}

impl GrpcRejection {
    /// The gRPC responses.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<B: Default> RejectionResponse<B> for GrpcRejection {
    fn respond(&self, rejection: Rejection) -> Response<B> {
        let (code, message) = match rejection {
            Rejection::Missing => ("16", "an API key is required in the apikey metadata entry"),
            Rejection::Invalid => ("16", "the API key is invalid, expired or revoked"),
            Rejection::Conflicting => ("3", "the call carries two different API keys"),
            Rejection::Unavailable => ("14", "the API key cannot be checked right now; try again"),
        };
        let mut response = Response::new(B::default());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static(code));
        // Percent-encoding is needed only for bytes these messages do not hold.
        headers.insert("grpc-message", HeaderValue::from_static(message));
        response
    }
}

fn json<B: From<Bytes>>(
    status: StatusCode,
    body: &'static str,
    rejection: Rejection,
    challenge: &HeaderValue,
) -> Response<B> {
    let mut response = Response::new(B::from(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(WWW_AUTHENTICATE, challenge.clone());
    }
    if rejection == Rejection::Unavailable {
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_rejections_are_trailers_only_responses_with_a_grpc_status() {
        for (rejection, code) in [
            (Rejection::Missing, "16"),
            (Rejection::Invalid, "16"),
            (Rejection::Conflicting, "3"),
            (Rejection::Unavailable, "14"),
        ] {
            let response: Response<String> = GrpcRejection::new().respond(rejection);
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "gRPC answers in trailers"
            );
            assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
            assert_eq!(response.headers()["grpc-status"], code, "{rejection:?}");
            assert!(!response.headers()["grpc-message"].is_empty());
            assert!(response.body().is_empty());
        }
    }
}
