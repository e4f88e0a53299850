//! The [`ApiKey`] service and its response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{Config, ExtractError};
use crate::identity::{Anonymous, Identity};
use crate::rejection::{Rejection, RejectionResponse};
use crate::validator::{ValidationError, Validator, Verdict};

/// Middleware that authenticates requests by API key; see the [module docs](super).
#[derive(Clone)]
pub struct ApiKey<S, R> {
    inner: S,
    validator: Validator,
    config: Arc<Config>,
    rejection: R,
}

impl<S: fmt::Debug, R: fmt::Debug> fmt::Debug for ApiKey<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("inner", &self.inner)
            .field("validator", &self.validator)
            .field("config", &self.config)
            .field("rejection", &self.rejection)
            .finish()
    }
}

impl<S> ApiKey<S, super::DefaultRejection> {
    /// Wraps `inner`, with the defaults of [`ApiKeyLayer::new`](super::ApiKeyLayer::new).
    pub fn new(inner: S, validator: Validator) -> Self {
        tower_layer::Layer::layer(&super::ApiKeyLayer::new(validator), inner)
    }

    /// A layer for this service: [`ApiKeyLayer::new`](super::ApiKeyLayer::new).
    pub fn layer(validator: Validator) -> super::ApiKeyLayer {
        super::ApiKeyLayer::new(validator)
    }
}

impl<S, R> ApiKey<S, R> {
    pub(super) fn from_parts(
        inner: S,
        validator: Validator,
        config: Arc<Config>,
        rejection: R,
    ) -> Self {
        Self {
            inner,
            validator,
            config,
            rejection,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for ApiKey<S, R>
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
        let key = match self.config.extractor.extract(req.uri(), req.headers()) {
            Ok(key) => key,
            Err(ExtractError::Missing) if self.config.optional => {
                req.extensions_mut().insert(Anonymous);
                return ResponseFuture::inner(self.inner.call(req));
            }
            Err(error) => {
                tracing::debug!(%error, "API key request refused");
                let rejection = match error {
                    ExtractError::Missing => Rejection::Missing,
                    ExtractError::Conflicting => Rejection::Conflicting,
                    _ => Rejection::Invalid,
                };
                return ResponseFuture::ready(Ok(self.rejection.respond(rejection)));
            }
        };
        match self.validator.validate_cached(&key) {
            Some(Ok(identity)) => {
                let config = &self.config;
                let verdict = self.validator.enforce_now(&identity, || {
                    config
                        .client_address
                        .resolve(req.extensions(), req.headers())
                });
                match verdict {
                    Verdict::Pass(_) => {
                        config.admit(&mut req, identity);
                        ResponseFuture::inner(self.inner.call(req))
                    }
                    Verdict::Refused(refusal) => ResponseFuture::ready(Ok(self
                        .rejection
                        .respond(config.policy_rejection(refusal)))),
                    verdict @ Verdict::Lease(_) => {
                        let inner = self.take_inner();
                        let validator = self.validator.clone();
                        let config = Arc::clone(&self.config);
                        let rejection = self.rejection.clone();
                        ResponseFuture::cold(Box::pin(async move {
                            let parts = (&validator, &*config, &rejection);
                            admit_or_refuse(parts, inner, req, identity, verdict).await
                        }))
                    }
                }
            }
            Some(Err(_)) => ResponseFuture::ready(Ok(self.rejection.respond(Rejection::Invalid))),
            None => {
                let inner = self.take_inner();
                let validator = self.validator.clone();
                let config = Arc::clone(&self.config);
                let rejection = self.rejection.clone();
                ResponseFuture::cold(Box::pin(async move {
                    let identity = match validator.validate_cold(&key).await {
                        Ok(identity) => identity,
                        Err(ValidationError::Rejected(_)) => {
                            return Ok(rejection.respond(Rejection::Invalid));
                        }
                        Err(error @ ValidationError::Internal(_)) => {
                            tracing::error!(%error, "API key check failed");
                            return Ok(rejection.respond(Rejection::Internal));
                        }
                        Err(error) => {
                            // Not once per request: the validator logs when the store goes
                            // away and comes back, and when verifications reach their bound.
                            tracing::debug!(%error, "API key could not be checked");
                            return Ok(rejection.respond(Rejection::Unavailable));
                        }
                    };
                    let verdict = validator.enforce_now(&identity, || {
                        config
                            .client_address
                            .resolve(req.extensions(), req.headers())
                    });
                    let parts = (&validator, &*config, &rejection);
                    admit_or_refuse(parts, inner, req, identity, verdict).await
                }))
            }
        }
    }
}

/// The end of a request whose key is valid, off the hot path: its verdict carried out (a
/// quota lease taken if needed), then the inner service called or the refusal answered.
async fn admit_or_refuse<S, R, ReqBody, ResBody>(
    (validator, config, rejection): (&Validator, &Config, &R),
    mut inner: S,
    mut req: Request<ReqBody>,
    identity: Identity,
    verdict: Verdict,
) -> Result<Response<ResBody>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: RejectionResponse<ResBody>,
{
    let admitted = match verdict {
        Verdict::Pass(_) => Ok(()),
        Verdict::Refused(refusal) => Err(config.policy_rejection(refusal)),
        Verdict::Lease(_) => validator
            .spend_leased(&identity)
            .await
            .map_err(|error| config.lease_failed(error)),
    };
    match admitted {
        Ok(()) => {
            config.admit(&mut req, identity);
            inner.call(req).await
        }
        Err(refused) => Ok(rejection.respond(refused)),
    }
}

impl<S: Clone, R> ApiKey<S, R> {
    fn take_inner(&mut self) -> S {
        take_ready(&mut self.inner)
    }
}

/// The ready inner service, for a future that calls it later; a clone stays for the next
/// call (tower's "be careful when cloning inner services").
pub(crate) fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

pin_project! {
    /// Response future of [`ApiKey`] and of
    /// [`RequirePermission`](crate::permission::RequirePermission).
    ///
    /// # Panics
    /// When polled again after it completed, as futures may.
    pub struct ResponseFuture<F>
    where
        F: Future,
    {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F>
    where
        F: Future,
    {
        // A cached key: the inner service's own future, nothing boxed.
        Inner { #[pin] future: F },
        // Refused without I/O.
        Ready { output: Option<F::Output> },
        // A cache miss: store read and derivation, then the inner service.
        Cold { future: Pin<Box<dyn Future<Output = F::Output> + Send>> },
    }
}

impl<F: Future> ResponseFuture<F> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn ready(output: F::Output) -> Self {
        Self {
            kind: Kind::Ready {
                output: Some(output),
            },
        }
    }

    pub(crate) fn cold(future: Pin<Box<dyn Future<Output = F::Output> + Send>>) -> Self {
        Self {
            kind: Kind::Cold { future },
        }
    }
}

impl<F: Future> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Ready { .. } => "ready",
            Kind::Cold { .. } => "cold",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F: Future> Future for ResponseFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Ready { output } => match output.take() {
                Some(output) => Poll::Ready(output),
                None => panic!("ResponseFuture polled after completion"),
            },
            KindProj::Cold { future } => future.as_mut().poll(cx),
        }
    }
}
