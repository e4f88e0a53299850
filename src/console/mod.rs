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
//! | a key: fields, usage chart, events; deactivate, activate, revoke | `GET /keys/{id}`, `POST /keys/{id}/{action}` |
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
mod error;
mod form;
mod headers;
mod key_page;
mod keys;
mod layout;
mod new_key;

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

/// Builds the console router. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Console {
    state: State,
}

/// What every handler reads; cloned per request (one `Arc`).
pub(crate) type State = Arc<Settings>;

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) manager: KeyManager,
    pub(crate) validator: Validator,
    pub(crate) sessions: BoxSessionStore,
    pub(crate) permission: Arc<str>,
    pub(crate) secure_cookies: bool,
    pub(crate) lifetime: SessionLifetime,
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

    /// The router, ready to [`nest`](Router::nest) under any path.
    pub fn into_router<T: Clone + Send + Sync + 'static>(self) -> Router<T> {
        Router::new()
            .route("/", get(auth::home))
            .route("/sign-in", get(auth::sign_in_form).post(auth::sign_in))
            .route("/sign-out", post(auth::sign_out))
            .route("/keys", get(keys::list))
            .route("/keys/revoke", post(keys::revoke_selected))
            .route("/keys/new", get(new_key::form).post(new_key::create))
            .route("/keys/{id}", get(key_page::show))
            .route("/keys/{id}/{action}", post(key_page::act))
            .route("/assets/{file}", get(assets::serve))
            .fallback(error::not_found)
            .layer(DefaultBodyLimit::max(form::BODY_LIMIT))
            .layer(axum::middleware::from_fn(error::render))
            .layer(axum::middleware::map_response(headers::secure))
            .with_state(self.state)
    }
}
