//! An app with users of its own, who make and manage their own API keys.
//!
//! ```text
//! printf 'alice-password' | cargo run -q --features cli -- hash     # a password record
//! echo "alice:read,write:<record>" >  users.txt
//! echo "bob:read:<record>"         >> users.txt
//! PORTAL_USERS=users.txt cargo run --release --features selfservice --example portal
//! # open http://127.0.0.1:3000/sign-in, sign in as alice, make a key, then:
//! curl -H "apikey: <alice's key>" http://127.0.0.1:3000/whoami
//! ```
//!
//! `$PORTAL_USERS` names the users file: one user a line, `name:perm1,perm2:record`, the record
//! a PBKDF2 record made by `tower-apikey hash` (HMAC-SHA1 by default). Users sign in with a form
//! ("User name", "Password", "Sign in") and a session cookie of the app's own; the crate
//! never sees either. Their keys: the page "Your API keys" at `/account/api-keys`, the JSON API
//! at `/api/account/keys` (its OpenAPI document at `/api/account/openapi.json`). A key a
//! user makes works at once at `/whoami` (behind `ApiKeyLayer`, the identity as JSON).
//!
//! `$MAX_KEYS_PER_PRINCIPAL` sets how many live keys a user may hold (default 2).
//! `$ADDR` (default `127.0.0.1:3000`), `$APIKEY_STORE` (default `./apikeys.json`) and, with
//! the `postgres` feature, `$DATABASE_URL` as the other examples. `/health` answers without a
//! key; Ctrl-C or SIGTERM drains for at most 5 s and writes the keys' last use.

#[path = "support/shutdown.rs"]
mod shutdown;

use std::collections::HashMap;
use std::error::Error;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use maud::html;
use tower_apikey::hash::{HashParams, Pbkdf2Hash};
use tower_apikey::selfservice::{AccountUser, SelfService};
use tower_apikey::session::SessionId;
use tower_apikey::{ApiKeyLayer, BoxKeyStore, FileStore, Identity, KeyManager, Validator};

/// The session cookie of the app's own.
const COOKIE: &str = "portal-session";

/// A user of the app: what they hold, and their password's record.
struct User {
    permissions: Vec<String>,
    password: Pbkdf2Hash,
}

#[derive(Clone)]
struct Portal {
    users: Arc<HashMap<String, User>>,
    /// Session id → user name. The app's own sessions, in memory.
    sessions: Arc<Mutex<HashMap<String, String>>>,
}

/// The signed-in user, where `signed_in` found one.
#[derive(Clone)]
struct SignedIn(String);

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    tracing_subscriber::fmt().with_target(false).init();
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let path = std::env::var("APIKEY_STORE").unwrap_or_else(|_| "./apikeys.json".to_owned());
    let users_file = std::env::var("PORTAL_USERS")
        .map_err(|_| "set PORTAL_USERS to the users file (name:perm1,perm2:record per line)")?;
    let portal = Portal {
        users: Arc::new(read_users(&std::fs::read_to_string(&users_file)?)?),
        sessions: Arc::default(),
    };

    let store = open_store(&path).await?;
    let mut keys = KeyManager::new(store.clone());
    if let Ok(limit) = std::env::var("MAX_KEYS_PER_PRINCIPAL") {
        keys = keys.max_keys_per_principal(limit.parse()?);
    }
    let validator = Validator::builder(store).build();
    let users = Arc::clone(&portal.users);
    let account = SelfService::new(keys, move |parts: &axum::http::request::Parts| {
        let SignedIn(name) = parts.extensions.get::<SignedIn>()?;
        let user = users.get(name)?;
        Some(AccountUser::new(name, user.permissions.clone()))
    });
    let mine = Router::new()
        .nest(
            "/account/api-keys",
            account.clone().into_pages_router(false),
        )
        .nest("/api/account/keys", account.into_api_router())
        .route("/api/account/openapi.json", get(openapi))
        .layer(axum::middleware::from_fn_with_state(
            portal.clone(),
            signed_in,
        ));
    let app = Router::new()
        .route("/whoami", get(|who: Identity| async move { Json(who) }))
        .layer(ApiKeyLayer::new(validator.clone()))
        .merge(mine)
        .route("/", get(|| async { Redirect::to("/account/api-keys") }))
        .route("/sign-in", get(sign_in_form).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/health", get(|| async { "ok" }))
        .with_state(portal);

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "listening on http://{} (keys in {path}; your API keys at /account/api-keys)",
        listener.local_addr()?
    );
    let (stop, deadline) = shutdown::signal_and_deadline();
    tokio::select! {
        served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(stop)
            .into_future() => served?,
        () = deadline => shutdown::drain_ran_out(),
    }
    validator.shutdown().await?;
    Ok(())
}

/// `name:perm1,perm2:record` a line; blank lines and `#` comments skipped.
fn read_users(text: &str) -> Result<HashMap<String, User>, Box<dyn Error + Send + Sync>> {
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, ':');
        let (Some(name), Some(permissions), Some(record)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "users file, line {}: expected name:perm1,perm2:record",
                n + 1
            )
            .into());
        };
        let password: Pbkdf2Hash = record
            .parse()
            .map_err(|e| format!("users file, line {}: {e}", n + 1))?;
        let permissions = permissions
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        users.insert(
            name.to_owned(),
            User {
                permissions,
                password,
            },
        );
    }
    Ok(users)
}

/// Middleware: the user the session cookie names, for the self-service routers.
async fn signed_in(State(portal): State<Portal>, mut request: Request, next: Next) -> Response {
    if let Some(name) =
        cookie(request.headers()).and_then(|id| portal.sessions.lock().unwrap().get(&id).cloned())
    {
        request.extensions_mut().insert(SignedIn(name));
    }
    next.run(request).await
}

/// The JSON API's OpenAPI document, beside it, for a signed-in user.
async fn openapi(user: Option<axum::Extension<SignedIn>>) -> Response {
    if user.is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match tower_apikey::selfservice::openapi_document("/api/account/keys") {
        Some(document) => Json(document).into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

fn sign_in_page(message: Option<&str>) -> Html<String> {
    Html(
        html! {
            (maud::DOCTYPE)
            html lang="en" {
                head { meta charset="utf-8"; title { "Sign in" } }
                body {
                    main {
                        h1 { "Sign in" }
                        @if let Some(message) = message { p role="alert" { (message) } }
                        form method="post" action="/sign-in" {
                            p { label for="user" { "User name" } " " input type="text" id="user" name="user" autocomplete="username" required; }
                            p { label for="password" { "Password" } " " input type="password" id="password" name="password" autocomplete="current-password" required; }
                            button type="submit" { "Sign in" }
                        }
                    }
                }
            }
        }
        .into_string(),
    )
}

async fn sign_in_form() -> Html<String> {
    sign_in_page(None)
}

#[derive(serde::Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

async fn sign_in(State(portal): State<Portal>, Form(form): Form<Credentials>) -> Response {
    let users = Arc::clone(&portal.users);
    let name = form.user.clone();
    // PBKDF2 off the runtime's workers.
    let matched = tokio::task::spawn_blocking(move || {
        users.get(&form.user).is_some_and(|u| {
            u.password
                .verify(HashParams::default().prf(), form.password.as_bytes())
        })
    })
    .await
    .unwrap_or(false);
    if !matched {
        return (
            StatusCode::UNAUTHORIZED,
            sign_in_page(Some("Wrong user name or password.")),
        )
            .into_response();
    }
    let Ok(id) = SessionId::generate() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    portal
        .sessions
        .lock()
        .unwrap()
        .insert(id.expose().to_owned(), name);
    (
        [(
            header::SET_COOKIE,
            format!(
                "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
                id.expose()
            ),
        )],
        Redirect::to("/account/api-keys"),
    )
        .into_response()
}

async fn sign_out(State(portal): State<Portal>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers) {
        portal.sessions.lock().unwrap().remove(&id);
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
        )],
        Redirect::to("/sign-in"),
    )
        .into_response()
}

/// PostgreSQL when `$DATABASE_URL` is set (and the `postgres` feature is on), else the file.
async fn open_store(path: &str) -> Result<BoxKeyStore, Box<dyn Error + Send + Sync>> {
    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let store = tower_apikey::store::PgKeyStore::connect(url).await?;
        store.migrate().await?;
        return Ok(BoxKeyStore::new(store));
    }
    Ok(BoxKeyStore::new(FileStore::open(path).await?))
}
