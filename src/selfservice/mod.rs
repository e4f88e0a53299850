//! Self-service keys: an application's own users create and manage their own keys, behind
//! the application's own sign-in, within rules they cannot get around.
//!
//! What GitHub's personal access tokens, Stripe's and OpenAI's key pages, and Maximo's
//! `apikeyforloggedinuser` give their users, for any axum app: [`SelfService`] builds a JSON
//! API (and, with the console's look, an HTML page) that acts only on the signed-in user's
//! keys. The app says who is signed in ([`SelfService::new`]'s resolver, from each request:
//! a principal, the permissions they hold, and their plan's limits); the crate never sees a
//! password or the app's session. The rules ([`SelfServicePolicy`]):
//!
//! - a user acts only on keys whose principal is theirs: another user's key id answers 404,
//!   exactly as an id that does not exist;
//! - a new key's permissions are covered by what the user holds (wildcards as
//!   [`Identity::grants`](crate::Identity::grants)); asking for more is 403, naming it;
//! - the number of live keys per user is the key manager's limit (409 past it);
//! - a name and an expiry are required, the expiry at most 366 days away by default;
//! - a rate limit or quota at most the user's plan allows (and the plan's, where none is
//!   asked for);
//! - keys an administrator made for the user are listed too; protected ones cannot be
//!   deleted by the user;
//! - every change is an event whose actor is the user's principal.
//!
//! # The JSON API
//! | method | path | what |
//! |---|---|---|
//! | `GET` | `/` | one's own keys, `{"items": [...], "next": null}` |
//! | `POST` | `/` | create: `{"name", "permissions", "expires", "rate_limit"?, "quota"?}`; `201`, the key shown this once |
//! | `POST` | `/{id}/rotate` | a new key like it; the old one works for `{"grace": "1d"}` more (default none) |
//! | `POST` | `/{id}/regenerate` | a new secret for the same id |
//! | `POST` | `/{id}/revoke` | revoked for good: `{"reason"?, "location"?}` |
//! | `DELETE` | `/{id}` | `204`; a protected key is `409` |
//! | `GET` | `/openapi.json` | this API's OpenAPI 3 document ([`openapi_document`]) |
//!
//! Errors are the admin API's: `{"error": code, "message": text}`. No one signed in is 401.
//! A POST takes only `Content-Type: application/json` (415 otherwise), and a request whose
//! `Origin` is another site's, or whose `Sec-Fetch-Site` is `cross-site` or `same-site`, is
//! 403: no plain form can reach it from another site.
//!
//! # Example
//! ```
//! use axum::Router;
//! use tower::ServiceExt;
//! use tower_apikey::selfservice::{AccountUser, SelfService};
//! use tower_apikey::{KeyManager, MemoryStore};
//!
//! /// What the app's own login middleware leaves in each request.
//! #[derive(Clone)]
//! struct User { name: String, roles: Vec<String> }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let keys = KeyManager::new(MemoryStore::new());
//! let account = SelfService::new(keys, |parts: &http::request::Parts| {
//!     let user = parts.extensions.get::<User>()?;
//!     Some(AccountUser::new(&user.name, user.roles.clone()))
//! });
//! let app: Router = Router::new().nest("/api/account/keys", account.into_api_router());
//!
//! let mut request = http::Request::post("/api/account/keys")
//!     .header("content-type", "application/json")
//!     .body(axum::body::Body::from(r#"{"name": "ci", "permissions": ["read"], "expires": "30d"}"#))?;
//! request.extensions_mut().insert(User { name: "alice".into(), roles: vec!["read".into()] });
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), 201); // the body holds the new key, shown this once
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod api;
mod pages;
mod policy;

use std::fmt;
use std::sync::Arc;

use axum::Router;

use crate::lifecycle::{KeyManager, LifecycleError};

pub use policy::{KeyRequest, PlanLimits, PolicyRefusal, SelfServicePolicy};

/// The self-service API's OpenAPI 3 document, as served at `openapi.json` under its mount.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The OpenAPI document of the JSON API as mounted at `mount` (`/api/account/keys`): its paths
/// under the mount's last segment (`/keys`, `/keys/{id}/revoke`), the rest as its server
/// (`/api/account`), since the mount itself with a slash added is not routed. Served by the
/// API at `openapi.json`; an app may serve it elsewhere too (the portal example, at
/// `/api/account/openapi.json`). `None` only if the bundled document were not JSON (its
/// tests say it is).
pub fn openapi_document(mount: &str) -> Option<serde_json::Value> {
    let mut document: serde_json::Value = serde_json::from_str(OPENAPI)
        .inspect_err(|error| tracing::error!(%error, "the bundled self-service OpenAPI document is not JSON"))
        .ok()?;
    let mount = mount.trim_end_matches('/');
    let (server, prefix) = mount.rsplit_once('/').unwrap_or(("", ""));
    if !mount.is_empty() {
        if let Some(paths) = document["paths"].as_object() {
            let prefixed: serde_json::Map<String, serde_json::Value> = paths
                .iter()
                .map(|(path, item)| {
                    let path = match path.as_str() {
                        "/" => format!("/{prefix}"),
                        other => format!("/{prefix}{other}"),
                    };
                    (path, item.clone())
                })
                .collect();
            document["paths"] = serde_json::Value::Object(prefixed);
        }
    }
    let server = if server.is_empty() { "/" } else { server };
    document["servers"] = serde_json::json!([{ "url": server }]);
    Some(document)
}

/// The signed-in user, as the host app knows them: whose keys they are, what they hold, and
/// their plan's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccountUser {
    /// The principal their keys carry.
    pub principal: String,
    /// The permissions they hold: the most a key of theirs may carry.
    pub permissions: Vec<String>,
    /// Their plan's limits, each replacing the policy's.
    pub limits: Option<PlanLimits>,
}

impl AccountUser {
    /// `principal`, holding `permissions`.
    pub fn new(
        principal: impl Into<String>,
        permissions: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            principal: principal.into(),
            permissions: permissions.into_iter().map(Into::into).collect(),
            limits: None,
        }
    }

    /// With their plan's `limits`.
    pub fn limits(mut self, limits: PlanLimits) -> Self {
        self.limits = Some(limits);
        self
    }
}

/// Who is signed in, from a request's parts (where the app's middleware left its user).
type Resolver = Arc<dyn Fn(&http::request::Parts) -> Option<AccountUser> + Send + Sync>;

/// Builds the self-service routers. See the [module docs](self).
#[derive(Clone)]
pub struct SelfService {
    state: Arc<Settings>,
}

#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) manager: KeyManager,
    pub(crate) resolve: Resolver,
    pub(crate) policy: SelfServicePolicy,
}

impl Settings {
    /// `user`'s key `id`, the one ownership rule both routers apply: another user's key is
    /// [`LifecycleError::NotFound`], word for word as a missing one. `Ok(None)` for an id
    /// that cannot be one.
    pub(crate) async fn own(
        &self,
        user: &AccountUser,
        id: &str,
    ) -> Result<Option<crate::record::KeyRecord>, LifecycleError> {
        let Ok(id) = crate::key::KeyId::new(id) else {
            return Ok(None);
        };
        let record = self.manager.get(&id).await?;
        if record.principal != user.principal {
            return Err(LifecycleError::NotFound(id));
        }
        Ok(Some(record))
    }
}

impl fmt::Debug for SelfService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfService")
            .field("policy", &self.state.policy)
            .finish_non_exhaustive()
    }
}

impl SelfService {
    /// Self-service over `manager` (whose per-principal limit caps each user's keys), for
    /// the user `resolve` finds in each request (`None`: no one is signed in, 401).
    pub fn new(
        manager: KeyManager,
        resolve: impl Fn(&http::request::Parts) -> Option<AccountUser> + Send + Sync + 'static,
    ) -> Self {
        Self {
            state: Arc::new(Settings {
                manager,
                resolve: Arc::new(resolve),
                policy: SelfServicePolicy::default(),
            }),
        }
    }

    /// The rules users' keys obey (default [`SelfServicePolicy::default`]).
    pub fn policy(mut self, policy: SelfServicePolicy) -> Self {
        Arc::make_mut(&mut self.state).policy = policy;
        self
    }

    /// The page "Your API keys" (with the console's look, headers, form tokens and one-time
    /// reveal), ready to [`nest`](Router::nest) under any path an app links from its account
    /// settings. `secure_cookies`: served over HTTPS (its token cookie is then `Secure` and
    /// `__Host-` named).
    pub fn into_pages_router<T: Clone + Send + Sync + 'static>(
        self,
        secure_cookies: bool,
    ) -> Router<T> {
        pages::router(self.state, secure_cookies)
    }

    /// The JSON API, ready to [`nest`](Router::nest) under any path.
    pub fn into_api_router<T: Clone + Send + Sync + 'static>(self) -> Router<T> {
        api::router(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_and_follows_its_mount() {
        let at_root = openapi_document("").unwrap();
        assert!(at_root["openapi"].as_str().unwrap().starts_with("3."));
        let paths: Vec<&String> = at_root["paths"].as_object().unwrap().keys().collect();
        assert_eq!(
            paths,
            [
                "/",
                "/openapi.json",
                "/{id}",
                "/{id}/regenerate",
                "/{id}/revoke",
                "/{id}/rotate"
            ]
        );
        let mounted = openapi_document("/api/account/keys").unwrap();
        assert_eq!(mounted["servers"][0]["url"], "/api/account");
        let paths: Vec<&String> = mounted["paths"].as_object().unwrap().keys().collect();
        assert_eq!(
            paths,
            [
                "/keys",
                "/keys/openapi.json",
                "/keys/{id}",
                "/keys/{id}/regenerate",
                "/keys/{id}/revoke",
                "/keys/{id}/rotate"
            ]
        );
    }
}
