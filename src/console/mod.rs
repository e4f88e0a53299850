//! The admin console: key management in the browser, as an axum router any app mounts.
//!
//! What Django admin is to DRF API Key, and Unkey's dashboard to Unkey: a list of keys with
//! search, filters and paging; a page per key with its usage chart, its events and the
//! actions beside what they change; a form for a new key, whose one-time reveal is the
//! form's own response. Every change goes through [`KeyManager`], recorded as made by
//! `console:<principal>/<key id>` of the admin key signed in.
//!
//! HTML is rendered on the server with [maud]: typed HTML in Rust, checked when the crate
//! compiles, every value escaped unless marked otherwise, no template files to ship or
//! find at run time, and one dependency with no run-time parts. (askama's templates are
//! HTML files, easier for a designer; here the pages are few and the handlers that fill
//! them are the same Rust.) Everything works with JavaScript off; one small script, served
//! by the router, adds a copy button. Assets are compiled into the crate: no CDN, no font,
//! no build step.
//!
//! # Signing in
//! At `sign-in`, with an admin key: it is checked like any key, through the validator's
//! bounded cold path, and must carry the console's permission (`apikeyAdmin` by default).
//! A wrong, expired, revoked or unprivileged key gets one answer. The session is an opaque
//! random id in a cookie (`HttpOnly`, `SameSite=Strict`; with [`Console::secure_cookies`],
//! `Secure` and the `__Host-` prefix), kept in a [`SessionStore`]
//! by its digest, new at every sign-in, ended after 30 minutes idle or 12 hours, and by
//! "Sign out" on every server sharing the store. It holds the admin key's id, never the
//! key: every request checks that the key is still active and still carries the permission
//! ([`Validator::identity_by_id`]), so revoking or deactivating it ends its sessions as the
//! change reaches each server.
//!
//! # Requests
//! A GET changes nothing. Every change is a POST carrying the session's CSRF token, from the
//! console's own origin (`Origin`, or `Sec-Fetch-Site` where no `Origin` is sent); anything
//! else gets 403 and changes nothing. Every response carries a strict
//! `Content-Security-Policy`, `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: same-origin` and `Cache-Control: no-store`.
//!
//! | page | path |
//! |---|---|
//! | sign in | `GET`/`POST /sign-in`, `POST /sign-out` |
//! | keys: search, status and principal filters, 50 a page; revoke selected | `GET /keys`, `POST /keys/revoke` |
//! | new key, and its one-time reveal | `GET`/`POST /keys/new` |
//! | a key: fields, usage chart, events; deactivate, activate, rotate, regenerate, revoke, delete | `GET /keys/{id}`, `POST /keys/{id}/{action}` |
//! | edit a key | `GET`/`POST /keys/{id}/edit` |
//! | a principal's keys and their limit | `GET /principals/{principal}` |
//! | the audit log: by key, principal, type, actor | `GET /events` |
//! | verify a key: valid, whose, why refused | `GET`/`POST /verify` |
//!
//! # Example
//! ```
//! use axum::Router;
//! use tower::ServiceExt;
//! use tower_apikey::console::Console;
//! use tower_apikey::{KeyManager, MemoryStore, Validator};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let console = Console::new(
//!     KeyManager::new(store.clone()),
//!     Validator::builder(store.clone()).build(),
//!     store, // where sessions are kept
//! );
//! let app: Router = Router::new().nest("/console", console.into_router());
//!
//! let response = app
//!     .oneshot(http::Request::get("/console/keys").body(axum::body::Body::empty())?)
//!     .await?;
//! assert_eq!(response.status(), 303); // to the sign-in form
//! assert_eq!(response.headers()["location"], "/console/sign-in");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod assets;
mod auth;
mod chart;
mod csrf;
mod edit;
mod error;
mod events;
mod fields;
mod form;
mod headers;
mod key_page;
mod keys;
mod layout;
mod new_key;
mod principals;
mod verify;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::lifecycle::KeyManager;
use crate::permission::API_KEY_ADMIN;
use crate::session::SessionLifetime;
use crate::store::{BoxSessionStore, SessionStore};
use crate::validator::Validator;

pub use error::ConsoleError;
pub use form::{FormError, FormFields};

/// What the self-service page shares with the console: its look, headers, form tokens and
/// one-time reveal.
#[cfg(feature = "selfservice")]
pub(crate) use self::{
    assets::serve as serve_assets,
    auth::{host_token, HostToken},
    csrf::{same_origin, token_matches},
    error::render as render_errors,
    form::BODY_LIMIT as FORM_BODY_LIMIT,
    headers::secure as secure_headers,
    keys::{status_badge, time_or},
    layout::{account as account_page, Base},
    new_key::reveal_body,
};

/// Builds the console router. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Console {
    state: State,
}

/// What every handler reads; cloned per request (one `Arc`).
pub(crate) type State = Arc<Settings>;

#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) manager: KeyManager,
    pub(crate) validator: Validator,
    pub(crate) sessions: BoxSessionStore,
    pub(crate) permission: Arc<str>,
    pub(crate) secure_cookies: bool,
    pub(crate) lifetime: SessionLifetime,
    /// The host app's authentication, when it signs people in instead of the console.
    pub(crate) host_auth: Option<auth::HostAuth>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("permission", &self.permission)
            .field("secure_cookies", &self.secure_cookies)
            .field("lifetime", &self.lifetime)
            .field("host_auth", &self.host_auth.as_ref().map(|_| "<closure>"))
            .finish_non_exhaustive()
    }
}

impl Console {
    /// A console changing keys through `manager`, signing people in through `validator`
    /// (which should watch the same store, so a change made here reaches it at once), and
    /// keeping their sessions in `sessions` (the key store itself, for a fleet sharing one
    /// database; any [`SessionStore`] otherwise).
    pub fn new(manager: KeyManager, validator: Validator, sessions: impl SessionStore) -> Self {
        Self {
            state: Arc::new(Settings {
                manager,
                validator,
                sessions: BoxSessionStore::new(sessions),
                permission: API_KEY_ADMIN.into(),
                secure_cookies: false,
                lifetime: SessionLifetime::default(),
                host_auth: None,
            }),
        }
    }

    fn settings(&mut self) -> &mut Settings {
        // A clone of the builder made earlier keeps its own settings.
        Arc::make_mut(&mut self.state)
    }

    /// The permission an admin key needs to sign in (default [`API_KEY_ADMIN`], `apikeyAdmin`).
    pub fn permission(mut self, permission: impl Into<Arc<str>>) -> Self {
        self.settings().permission = permission.into();
        self
    }

    /// Whether the console is served over HTTPS: its cookie then is `Secure`, named with the
    /// `__Host-` prefix, and on `Path=/` as that prefix requires (default `false`: the cookie
    /// is on the console's own path, for plain HTTP on a laptop).
    pub fn secure_cookies(mut self, secure: bool) -> Self {
        self.settings().secure_cookies = secure;
        self
    }

    /// How long a session lasts (default 30 minutes idle, 12 hours at most).
    pub fn session_lifetime(mut self, lifetime: SessionLifetime) -> Self {
        self.settings().lifetime = lifetime;
        self
    }

    /// Signs people in with the host app's own authentication instead of the console's
    /// sign-in form: `authenticate` gets each request's parts (where the app's own middleware
    /// left its user, in the extensions) and returns the person's name when they may
    /// administer keys, `None` when not (403). Changes are recorded as made by
    /// `console:<name>`. Sign-in, sign-out and sessions are then the app's; forms still carry
    /// a token (in a cookie of the console's) and are checked for their origin.
    ///
    /// ```
    /// use tower_apikey::console::Console;
    /// use tower_apikey::{KeyManager, MemoryStore, Validator};
    ///
    /// /// What the app's login middleware puts in each request.
    /// #[derive(Clone)]
    /// struct User { name: String, is_admin: bool }
    ///
    /// let store = MemoryStore::new();
    /// let console = Console::new(
    ///     KeyManager::new(store.clone()),
    ///     Validator::builder(store.clone()).build(),
    ///     store,
    /// )
    /// .authenticate_with(|parts| {
    ///     let user = parts.extensions.get::<User>()?;
    ///     user.is_admin.then(|| user.name.clone())
    /// });
    /// # drop(console);
    /// ```
    pub fn authenticate_with(
        mut self,
        authenticate: impl Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.settings().host_auth = Some(Arc::new(authenticate));
        self
    }

    /// The router, ready to [`nest`](Router::nest) under any path.
    pub fn into_router<T: Clone + Send + Sync + 'static>(self) -> Router<T> {
        let host_auth = self.state.host_auth.is_some();
        let mut router = Router::new().route("/", get(auth::home));
        if !host_auth {
            router = router
                .route("/sign-in", get(auth::sign_in_form).post(auth::sign_in))
                .route("/sign-out", post(auth::sign_out));
        }
        router = router
            .route("/keys", get(keys::list))
            .route("/keys/revoke", post(keys::revoke_selected))
            .route("/keys/new", get(new_key::form).post(new_key::create))
            .route("/keys/{id}", get(key_page::show))
            .route("/keys/{id}/edit", get(edit::form).post(edit::save))
            .route("/keys/{id}/{action}", post(key_page::act))
            .route("/principals/{principal}", get(principals::show))
            .route("/events", get(events::list))
            .route("/verify", get(verify::form).post(verify::verify))
            .route("/assets/{file}", get(assets::serve))
            .fallback(error::not_found)
            .layer(DefaultBodyLimit::max(form::BODY_LIMIT));
        if host_auth {
            router = router.layer(axum::middleware::from_fn_with_state(
                self.state.secure_cookies,
                auth::host_token,
            ));
        }
        router
            .layer(axum::middleware::from_fn(error::render))
            .layer(axum::middleware::map_response(headers::secure))
            .with_state(self.state)
    }
}
