//! Requiring a permission of the authenticated key: a tower layer, and an axum extractor.
//!
//! Both read the [`Identity`] that [`ApiKeyLayer`](crate::ApiKeyLayer) put in the request, so
//! they go *inside* it. A key without the permission is [`Rejection::Forbidden`] (`403` with
//! the crate's JSON error body by default, `PERMISSION_DENIED` with
//! [`GrpcRejection`](crate::rejection::GrpcRejection)); a request with no identity at all (the
//! guard was mounted without `ApiKeyLayer` in front of it) is [`Rejection::Internal`]
//! (`500` and an error log), never the inner service.
//!
//! Permissions are compared exactly by default. With
//! [`wildcards`](RequirePermissionLayer::wildcards) (or [`Permission::WILDCARDS`]), a key
//! holding `reports:*` also satisfies `reports:read` (any permission starting `reports:`),
//! and one holding `*` satisfies every permission; see [`Identity::grants`].
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

#[cfg(feature = "axum")]
mod extract;
mod layer;
mod service;

use std::sync::Arc;

use http::{Response, StatusCode};

#[cfg(feature = "axum")]
pub use self::extract::{ApiKeyAdmin, Permission, Require};
pub use self::layer::RequirePermissionLayer;
pub use self::service::RequirePermission;
use crate::identity::{Anonymous, MissingIdentity};
use crate::rejection::{Rejection, RejectionResponse};
use crate::usage::Outcome;
use crate::Identity;

/// The permission the admin API requires, as IBM Maximo names it.
pub const API_KEY_ADMIN: &str = "apikeyAdmin";

/// A layer that lets a request through only if its key carries `permission`.
pub fn require_permission(permission: impl Into<Arc<str>>) -> RequirePermissionLayer {
    RequirePermissionLayer::new(permission)
}

/// Why a request was stopped by a permission check.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PermissionDenied {
    /// The key does not carry the permission: [`Rejection::Forbidden`], `403`.
    #[error("API key {key_id} lacks the permission {permission}")]
    Forbidden {
        /// The key's id (not secret).
        key_id: Arc<str>,
        /// The permission required.
        permission: Arc<str>,
    },
    /// No [`Identity`] in the request: [`Rejection::Internal`], `500`.
    #[error(transparent)]
    NoIdentity(#[from] MissingIdentity),
    /// No key at all, let through by [`ApiKeyLayer::optional`](crate::ApiKeyLayer::optional):
    /// [`Rejection::Missing`], `401`.
    #[error("the request carries no API key, and this route needs the permission {permission}")]
    NoKey {
        /// The permission required.
        permission: Arc<str>,
    },
}

impl PermissionDenied {
    /// The request's identity if it carries `permission` (or, with `wildcards`, a wildcard
    /// granting it); why not otherwise.
    fn check<'a>(
        extensions: &'a http::Extensions,
        permission: &str,
        wildcards: bool,
    ) -> Result<&'a Identity, Self> {
        match extensions.get::<Identity>() {
            Some(who) if who.has_permission(permission) => Ok(who),
            Some(who) if wildcards && who.grants(permission) => Ok(who),
            Some(who) => {
                // The key's request, counted valid when it validated, is this refusal.
                who.refuse_after_valid(Outcome::PermissionDenied);
                Err(PermissionDenied::Forbidden {
                    key_id: who.key_id().as_str().into(),
                    permission: permission.into(),
                })
            }
            None if extensions.get::<Anonymous>().is_some() => Err(PermissionDenied::NoKey {
                permission: permission.into(),
            }),
            None => Err(MissingIdentity.into()),
        }
    }

    /// The refusal, as a [`RejectionResponse`] words it.
    pub fn rejection(&self) -> Rejection {
        match self {
            PermissionDenied::Forbidden { .. } => Rejection::Forbidden,
            PermissionDenied::NoIdentity(_) => Rejection::Internal,
            PermissionDenied::NoKey { .. } => Rejection::Missing,
        }
    }

    /// The status [`DefaultRejection`](crate::rejection::DefaultRejection) answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            PermissionDenied::Forbidden { .. } => StatusCode::FORBIDDEN,
            PermissionDenied::NoIdentity(_) => StatusCode::INTERNAL_SERVER_ERROR,
            PermissionDenied::NoKey { .. } => StatusCode::UNAUTHORIZED,
        }
    }

    /// Logs the refusal (a missing identity as an error: it is a wiring mistake) and answers
    /// it with `rejection`.
    pub fn respond<B, R: RejectionResponse<B>>(&self, rejection: &R) -> Response<B> {
        match self {
            PermissionDenied::Forbidden { key_id, permission } => {
                tracing::debug!(
                    key_id = &**key_id,
                    permission = &**permission,
                    "API key lacks a permission"
                );
                rejection.respond(Rejection::Forbidden)
            }
            PermissionDenied::NoIdentity(missing) => missing.respond(rejection),
            PermissionDenied::NoKey { permission } => {
                tracing::debug!(permission = &**permission, "no API key for a permission");
                rejection.respond(Rejection::Missing)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::header::CONTENT_TYPE;
    use http::Request;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::hash::HashParams;
    use crate::key::KeyFormat;
    use crate::KeyRecord;

    fn identity(permissions: &[&str]) -> Identity {
        let (mut record, _key) = KeyRecord::generate(
            "carol",
            &KeyFormat::default(),
            &HashParams::default().with_iterations(1).unwrap(),
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
    }

    /// Status for a key holding `held`, through a guard for `required`.
    async fn status(required: &str, wildcards: bool, held: &[&str]) -> StatusCode {
        let service = ServiceBuilder::new()
            .layer(require_permission(required.to_owned()).wildcards(wildcards))
            .service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new(Bytes::from_static(b"inner")))
            });
        let mut req = Request::new(());
        req.extensions_mut().insert(identity(held));
        service.oneshot(req).await.unwrap().status()
    }

    #[tokio::test]
    async fn wildcards_count_only_when_asked_and_only_at_a_segment_end() {
        const OK: StatusCode = StatusCode::OK;
        const NO: StatusCode = StatusCode::FORBIDDEN;
        for (held, required, with, without) in [
            (&["reports:*"][..], "reports:read", OK, NO),
            (&["reports:*"], "reports:read:all", OK, NO),
            (&["*"], "reports:read", OK, NO),
            (&["*"], API_KEY_ADMIN, OK, NO),
            // Exact matches pass either way.
            (&["reports:read"], "reports:read", OK, OK),
            (&["reports:*"], "reports:*", OK, OK),
            // A wildcard covers what follows its colon, nothing else.
            (&["reports:*"], "reports", NO, NO),
            (&["reports:*"], "reports:", NO, NO),
            (&["reports:*"], "reportsx:read", NO, NO),
            (&["reports*"], "reports:read", NO, NO),
            (&["rep*:read"], "reports:read", NO, NO),
            (&["Reports:*"], "reports:read", NO, NO),
            (&["billing:*", "read"], "reports:read", NO, NO),
        ] {
            assert_eq!(
                status(required, true, held).await,
                with,
                "{held:?} for {required}, wildcards on"
            );
            assert_eq!(
                status(required, false, held).await,
                without,
                "{held:?} for {required}, exact"
            );
        }
    }

    #[tokio::test]
    async fn answers_with_the_rejection_it_is_given() {
        let service = ServiceBuilder::new()
            .layer(
                require_permission(API_KEY_ADMIN).rejection(crate::rejection::GrpcRejection::new()),
            )
            .service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new(Bytes::from_static(b"inner")))
            });
        let mut req = Request::new(());
        req.extensions_mut().insert(identity(&["read"]));
        let denied = service.clone().oneshot(req).await.unwrap();
        assert_eq!(denied.headers()["grpc-status"], "7", "PERMISSION_DENIED");
        let missing = service.oneshot(Request::new(())).await.unwrap();
        assert_eq!(missing.headers()["grpc-status"], "13", "INTERNAL");
        assert_ne!(missing.body(), "inner");
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
        // The admin permission is exact: a `*` key is not an admin.
        assert_eq!(
            call(Some(identity(&["*"]))).await.status(),
            StatusCode::FORBIDDEN
        );

        struct AnyReport;
        impl Permission for AnyReport {
            const NAME: &'static str = "reports:read";
            const WILDCARDS: bool = true;
        }
        async fn reports(who: Require<AnyReport>) -> String {
            who.principal().to_owned()
        }
        let app: axum::Router = axum::Router::new().route("/", get(reports));
        for (held, expected) in [
            ("reports:*", StatusCode::OK),
            ("*", StatusCode::OK),
            ("billing:*", StatusCode::FORBIDDEN),
        ] {
            let mut req = Request::new(axum::body::Body::empty());
            req.extensions_mut().insert(identity(&[held]));
            assert_eq!(
                app.clone().oneshot(req).await.unwrap().status(),
                expected,
                "{held}"
            );
        }
    }

    #[tokio::test]
    async fn without_the_key_layer_fails_closed() {
        let response = call(None).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_ne!(response.body(), "inner");
    }
}
