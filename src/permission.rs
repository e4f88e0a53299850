//! Requiring a permission of the authenticated key: a tower layer, and an axum extractor.
//!
//! Both read the [`Identity`] that [`ApiKeyLayer`](crate::ApiKeyLayer) put in the request, so
//! they go *inside* it. A key without the permission gets `403` with a JSON body; a request
//! with no identity at all (the guard was mounted without `ApiKeyLayer` in front of it) gets
//! `500` and an error log, never the inner service.
//!
//! # Example
//! ```
//! use axum::{routing::get, Router};
//! use tower::ServiceExt;
//! use tower_apikey::permission::require_permission;
//! use tower_apikey::{ApiKeyLayer, KeyRecord, KeyStore, MemoryStore, Validator};
//! use tower_apikey::key::KeyFormat;
//! use tower_apikey::hash::HashParams;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let (record, key) = KeyRecord::generate("bob", &KeyFormat::default(), &HashParams::default())?;
//! store.insert(record).await?; // no permissions
//!
//! let app = Router::new()
//!     .route("/reports", get(|| async { "reports" }))
//!     .layer(require_permission("reports:read")) // inside ...
//!     .layer(ApiKeyLayer::new(Validator::builder(store).build())); // ... the key check
//!
//! let request = http::Request::get("/reports").header("apikey", key.expose()).body(axum::body::Body::empty())?;
//! assert_eq!(app.oneshot(request).await?.status(), 403);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::Identity;

/// The permission the admin API requires, as IBM Maximo names it.
pub const API_KEY_ADMIN: &str = "apikeyAdmin";

/// A layer that lets a request through only if its key carries `permission`.
pub fn require_permission(permission: impl Into<Arc<str>>) -> RequirePermissionLayer {
    RequirePermissionLayer::new(permission)
}

/// Layer of [`RequirePermission`]; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct RequirePermissionLayer {
    permission: Arc<str>,
}

impl RequirePermissionLayer {
    /// Requires `permission` (compared exactly, case included).
    pub fn new(permission: impl Into<Arc<str>>) -> Self {
        Self {
            permission: permission.into(),
        }
    }

    /// The permission required.
    pub fn permission(&self) -> &str {
        &self.permission
    }
}

impl<S> Layer<S> for RequirePermissionLayer {
    type Service = RequirePermission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequirePermission {
            inner,
            permission: Arc::clone(&self.permission),
        }
    }
}

/// Middleware that answers `403` unless the request's [`Identity`] carries a permission.
#[derive(Debug, Clone)]
pub struct RequirePermission<S> {
    inner: S,
    permission: Arc<str>,
}

impl<S> RequirePermission<S> {
    /// Wraps `inner`, requiring `permission`.
    pub fn new(inner: S, permission: impl Into<Arc<str>>) -> Self {
        Self {
            inner,
            permission: permission.into(),
        }
    }

    /// A layer requiring `permission`.
    pub fn layer(permission: impl Into<Arc<str>>) -> RequirePermissionLayer {
        RequirePermissionLayer::new(permission)
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequirePermission<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let refusal = match req.extensions().get::<Identity>() {
            Some(who) if who.has_permission(&self.permission) => None,
            Some(who) => Some(PermissionDenied::Forbidden {
                key_id: who.key_id().as_str().into(),
                permission: Arc::clone(&self.permission),
            }),
            None => Some(PermissionDenied::NoIdentity),
        };
        match refusal {
            None => ResponseFuture {
                kind: Kind::Inner {
                    future: self.inner.call(req),
                },
            },
            Some(denied) => ResponseFuture {
                kind: Kind::Ready {
                    response: Some(denied.response()),
                },
            },
        }
    }
}

pin_project! {
    /// Response future of [`RequirePermission`].
    pub struct ResponseFuture<F: Future> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F: Future> {
        Inner { #[pin] future: F },
        Ready { response: Option<Response<Bytes>> },
    }
}

impl<F: Future> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Ready { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<Bytes>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Ready { response } => {
                let response = response
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(response.map(B::from)))
            }
        }
    }
}

/// Why a request was stopped by a permission check.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PermissionDenied {
    /// The key does not carry the permission: `403`.
    #[error("API key {key_id} lacks the permission {permission}")]
    Forbidden {
        /// The key's id (not secret).
        key_id: Arc<str>,
        /// The permission required.
        permission: Arc<str>,
    },
    /// No [`Identity`] in the request: the guard is mounted without `ApiKeyLayer` in front of
    /// it, a wiring mistake answered with `500`.
    #[error("no API key identity in the request: is `ApiKeyLayer` applied in front of the permission check?")]
    NoIdentity,
}

impl PermissionDenied {
    /// The status this refusal is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            PermissionDenied::Forbidden { .. } => StatusCode::FORBIDDEN,
            PermissionDenied::NoIdentity => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response: the status and a JSON body `{"error": code, "message": ...}`, the shape
    /// [`JsonRejection`](crate::layer::JsonRejection) uses.
    pub fn response(&self) -> Response<Bytes> {
        let (code, message) = match self {
            PermissionDenied::Forbidden { key_id, permission } => {
                tracing::debug!(
                    key_id = &**key_id,
                    permission = &**permission,
                    "API key lacks a permission"
                );
                (
                    "forbidden",
                    format!("The API key does not carry the {permission} permission."),
                )
            }
            PermissionDenied::NoIdentity => {
                tracing::error!("{self}");
                ("internal", "The server is misconfigured.".to_owned())
            }
        };
        let body = serde_json::json!({ "error": code, "message": message }).to_string();
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = self.status();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

#[cfg(feature = "axum")]
mod extract {
    use std::fmt;
    use std::marker::PhantomData;
    use std::ops::Deref;
    use std::sync::Arc;

    use axum_core::body::Body;
    use axum_core::extract::FromRequestParts;
    use axum_core::response::{IntoResponse, Response};
    use http::request::Parts;

    use super::{PermissionDenied, API_KEY_ADMIN};
    use crate::Identity;

    /// A permission, named at the type level for the [`Require`] extractor.
    ///
    /// ```
    /// use tower_apikey::permission::{Permission, Require};
    ///
    /// struct ReportsRead;
    /// impl Permission for ReportsRead {
    ///     const NAME: &'static str = "reports:read";
    /// }
    ///
    /// async fn reports(who: Require<ReportsRead>) -> String {
    ///     format!("reports for {}", who.principal())
    /// }
    /// // Behind `ApiKeyLayer`: a key without `reports:read` gets 403.
    /// let app: axum::Router = axum::Router::new().route("/reports", axum::routing::get(reports));
    /// ```
    pub trait Permission {
        /// The permission as keys carry it.
        const NAME: &'static str;
    }

    /// [`API_KEY_ADMIN`](super::API_KEY_ADMIN): what the admin API requires.
    #[derive(Debug, Clone, Copy)]
    pub struct ApiKeyAdmin;

    impl Permission for ApiKeyAdmin {
        const NAME: &'static str = API_KEY_ADMIN;
    }

    /// Extracts the caller's [`Identity`] if its key carries `P`; answers `403` otherwise.
    ///
    /// Dereferences to the identity.
    pub struct Require<P> {
        identity: Identity,
        permission: PhantomData<fn() -> P>,
    }

    impl<P> Require<P> {
        /// The caller.
        pub fn into_identity(self) -> Identity {
            self.identity
        }
    }

    impl<P> Deref for Require<P> {
        type Target = Identity;

        fn deref(&self) -> &Identity {
            &self.identity
        }
    }

    impl<P: Permission> fmt::Debug for Require<P> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Require")
                .field("permission", &P::NAME)
                .field("identity", &self.identity)
                .finish()
        }
    }

    impl IntoResponse for PermissionDenied {
        fn into_response(self) -> Response {
            self.response().map(Body::from)
        }
    }

    impl<P: Permission, S: Send + Sync> FromRequestParts<S> for Require<P> {
        type Rejection = PermissionDenied;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            let identity = parts
                .extensions
                .get::<Identity>()
                .ok_or(PermissionDenied::NoIdentity)?;
            if !identity.has_permission(P::NAME) {
                return Err(PermissionDenied::Forbidden {
                    key_id: identity.key_id().as_str().into(),
                    permission: Arc::from(P::NAME),
                });
            }
            Ok(Self {
                identity: identity.clone(),
                permission: PhantomData,
            })
        }
    }
}

#[cfg(feature = "axum")]
pub use extract::{ApiKeyAdmin, Permission, Require};

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::hash::HashParams;
    use crate::key::KeyFormat;
    use crate::KeyRecord;

    fn identity(permissions: &[&str]) -> Identity {
        let (mut record, _key) = KeyRecord::generate(
            "carol",
            &KeyFormat::default(),
            &HashParams::default().iterations(1).unwrap(),
        )
        .unwrap();
        record.permissions = permissions.iter().map(|p| (*p).to_owned()).collect();
        Identity::from_record(&record)
    }

    async fn call(identity: Option<Identity>) -> Response<Bytes> {
        let service = ServiceBuilder::new()
            .layer(require_permission(API_KEY_ADMIN))
            .service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new(Bytes::from_static(b"inner")))
            });
        let mut req = Request::new(());
        if let Some(identity) = identity {
            req.extensions_mut().insert(identity);
        }
        service.oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn lets_through_only_keys_with_the_permission() {
        let ok = call(Some(identity(&["read", API_KEY_ADMIN]))).await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.body(), "inner");

        // Case matters: Maximo's name is exact.
        let forbidden = call(Some(identity(&["read", "apikeyadmin"]))).await;
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        assert_eq!(forbidden.headers()[CONTENT_TYPE], "application/json");
        let body: serde_json::Value = serde_json::from_slice(forbidden.body()).unwrap();
        assert_eq!(body["error"], "forbidden");
        assert!(body["message"].as_str().unwrap().contains(API_KEY_ADMIN));
    }

    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn the_extractor_answers_403_without_the_permission() {
        use axum::routing::get;

        async fn admin_only(who: Require<ApiKeyAdmin>) -> String {
            who.principal().to_owned()
        }
        let app: axum::Router = axum::Router::new().route("/", get(admin_only));
        let call = |identity: Option<Identity>| {
            let app = app.clone();
            async move {
                let mut req = Request::new(axum::body::Body::empty());
                if let Some(identity) = identity {
                    req.extensions_mut().insert(identity);
                }
                app.oneshot(req).await.unwrap()
            }
        };
        let ok = call(Some(identity(&[API_KEY_ADMIN]))).await;
        assert_eq!(ok.status(), StatusCode::OK);
        let forbidden = call(Some(identity(&["read"]))).await;
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        assert_eq!(forbidden.headers()[CONTENT_TYPE], "application/json");
        let missing = call(None).await;
        assert_eq!(missing.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn without_the_key_layer_fails_closed() {
        let response = call(None).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_ne!(response.body(), "inner");
    }
}
