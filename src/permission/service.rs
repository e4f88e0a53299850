//! [`RequirePermission`]: the service that lets a request through only with the permission.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use tower_layer::Layer;

use super::{PermissionDenied, RequirePermissionLayer};
use crate::layer::ResponseFuture;
use crate::rejection::{DefaultRejection, RejectionResponse};

/// Middleware that refuses a request unless its [`Identity`](crate::Identity) carries a permission.
#[derive(Debug, Clone)]
pub struct RequirePermission<S, R = DefaultRejection> {
    pub(super) inner: S,
    pub(super) permission: Arc<str>,
    pub(super) wildcards: bool,
    pub(super) rejection: R,
}

impl<S> RequirePermission<S> {
    /// Wraps `inner`, requiring `permission`.
    pub fn new(inner: S, permission: impl Into<Arc<str>>) -> Self {
        RequirePermissionLayer::new(permission).layer(inner)
    }

    /// A layer requiring `permission`.
    pub fn layer(permission: impl Into<Arc<str>>) -> RequirePermissionLayer {
        RequirePermissionLayer::new(permission)
    }
}

impl<S, R> RequirePermission<S, R> {
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

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for RequirePermission<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: RejectionResponse<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match PermissionDenied::check(req.extensions(), &self.permission, self.wildcards) {
            Ok(_) => ResponseFuture::inner(self.inner.call(req)),
            Err(denied) => ResponseFuture::ready(Ok(denied.respond(&self.rejection))),
        }
    }
}
