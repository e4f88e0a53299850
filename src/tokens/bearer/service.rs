//! The [`BearerToken`] service.

use std::fmt;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use tower_service::Service;

use super::rejection::challenge;
use super::verifier::{BearerError, TokenVerifier};
use crate::layer::{take_ready, ResponseFuture};
use crate::rejection::{Rejection, RejectionResponse};

/// Middleware that authenticates requests by access token; see
/// [`BearerTokenLayer`](super::BearerTokenLayer).
#[derive(Clone)]
pub struct BearerToken<S, R> {
    inner: S,
    verifier: TokenVerifier,
    rejection: R,
}

impl<S: fmt::Debug, R: fmt::Debug> fmt::Debug for BearerToken<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerToken")
            .field("inner", &self.inner)
            .field("verifier", &self.verifier)
            .field("rejection", &self.rejection)
            .finish()
    }
}

impl<S, R> BearerToken<S, R> {
    pub(super) fn new(inner: S, verifier: TokenVerifier, rejection: R) -> Self {
        Self {
            inner,
            verifier,
            rejection,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The token of `Authorization: Bearer <token>`: `Err(Missing)` without one (or with another
/// scheme), `Err(Conflicting)` with two headers.
fn bearer_token(headers: &http::HeaderMap) -> Result<&[u8], Rejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(Rejection::Missing)?;
    if values.next().is_some() {
        return Err(Rejection::Conflicting);
    }
    let value = value.as_bytes();
    match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => {
            let token = value[7..].trim_ascii();
            if token.is_empty() {
                Err(Rejection::Invalid)
            } else {
                Ok(token)
            }
        }
        _ => Err(Rejection::Missing),
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for BearerToken<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
    R: RejectionResponse<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let refuse = |rejection: &R, refused: Rejection| {
            ResponseFuture::ready(Ok(challenge(rejection.respond(refused), refused)))
        };
        let token = match bearer_token(req.headers()) {
            Ok(token) => token,
            Err(refused) => return refuse(&self.rejection, refused),
        };
        match self.verifier.verify_cached(token) {
            Some(Ok(identity)) => {
                req.extensions_mut().insert(identity);
                ResponseFuture::inner(self.inner.call(req))
            }
            Some(Err(reason)) => {
                tracing::debug!(%reason, "access token refused");
                refuse(&self.rejection, Rejection::Invalid)
            }
            None => {
                let token = token.to_vec();
                let mut inner = take_ready(&mut self.inner);
                let verifier = self.verifier.clone();
                let rejection = self.rejection.clone();
                ResponseFuture::cold(Box::pin(async move {
                    let refused = match verifier.verify(&token).await {
                        Ok(identity) => {
                            req.extensions_mut().insert(identity);
                            return inner.call(req).await;
                        }
                        Err(BearerError::Invalid(reason)) => {
                            tracing::debug!(%reason, "access token refused");
                            Rejection::Invalid
                        }
                        Err(BearerError::Unavailable(error)) => {
                            tracing::debug!(%error, "access token could not be checked");
                            Rejection::Unavailable
                        }
                    };
                    Ok(challenge(rejection.respond(refused), refused))
                }))
            }
        }
    }
}
