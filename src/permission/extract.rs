//! The permission guard as axum extractors: [`Require`], [`ApiKeyAdmin`].

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use axum_core::body::Body;
use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use super::{PermissionDenied, API_KEY_ADMIN};
use crate::rejection::DefaultRejection;
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
    /// Whether a key's wildcard permissions (`reports:*`, `*`) count
    /// ([`Identity::grants`]); compared exactly by default.
    const WILDCARDS: bool = false;
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
        self.respond::<Body, _>(&DefaultRejection::new())
    }
}

impl<P: Permission, S: Send + Sync> FromRequestParts<S> for Require<P> {
    type Rejection = PermissionDenied;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let identity = PermissionDenied::check(&parts.extensions, P::NAME, P::WILDCARDS)?;
        Ok(Self {
            identity: identity.clone(),
            permission: PhantomData,
        })
    }
}
