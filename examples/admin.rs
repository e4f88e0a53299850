//! The admin REST API beside a protected API, in one axum server; with the `console`
//! feature, the admin console in the browser at `/console` too.
//!
//! ```text
//! cargo run --release --features admin --example admin
//! cargo run --release --features console --example admin   # http://127.0.0.1:3000/console
//! curl -H "apikey: <admin key>" http://127.0.0.1:3000/admin/keys
//! curl -H "apikey: <admin key>" -H 'content-type: application/json' \
//!      -d '{"principal": "bob", "permissions": ["read"], "expires": "90d"}' \
//!      http://127.0.0.1:3000/admin/keys
//! curl -H "apikey: <bob's key>" http://127.0.0.1:3000/whoami
//! ```
//!
//! When no key in the store carries `apikeyAdmin`, the server issues one (protected, for the
//! principal `admin`) and prints it once. The API's OpenAPI document is at
//! `/admin/openapi.json` (it needs the admin key too).
//!
//! `$USAGE_FLUSH_MS` sets how often each key's request counts are written (a minute).
//!
//! The console signs in with an admin key; `$CONSOLE_SECURE_COOKIES` (set when it is served
//! over HTTPS, say behind a proxy) makes its cookie `Secure` with the `__Host-` prefix.
//!
//! `$ADDR` sets the listening address (default `127.0.0.1:3000`), `$APIKEY_STORE` the key file
//! (default `./apikeys.json`), `$MAX_KEYS_PER_PRINCIPAL` the live keys one principal may hold
//! (default 2). With the `postgres` feature and `$DATABASE_URL` set, keys live in PostgreSQL
//! (the schema is brought up to date at start), shared with a fleet.
//!
//! With the `tokens` feature, keys are exchanged for access tokens at `POST /oauth/token`
//! and `GET /internal/whoami` takes them, as in the axum example (`$TOKEN_SIGNING_KEY`,
//! `$TOKEN_VERIFY_KEYS`, `$TOKEN_ISSUER`, `$TOKEN_AUDIENCE`, `$TOKEN_TTL`).
//!
//! `$GITHUB_SECRET_SCANNING_KEYS` names a file holding GitHub's secret-scanning public keys
//! (the JSON of `https://api.github.com/meta/public_keys/secret_scanning`); with it, GitHub's
//! leak alerts are received at `POST /github/secret-scanning` (authenticated by GitHub's
//! signature, not an API key) and every reported key of ours is revoked as leaked.
//!
//! With the `webhooks` feature, `$WEBHOOK_URL` and `$WEBHOOK_SECRET` (`whsec_…`) deliver
//! every key event (issued, revoked, leaked, …) from the store's outbox to that endpoint as
//! Standard Webhooks (`$WEBHOOK_RETRY_MS` shortens the retry backoff, for tests). An expiry
//! sweeper adds `key.expiring` 7 days and 1 day before a key expires and `key.expired` when
//! it does, once across every server sharing the store; `$EXPIRY_WARNINGS` sets the
//! horizons (`7d,1d`; `s`, `m`, `h`, `d`) and `$EXPIRY_SWEEP_MS` how often it looks (60000).

#[path = "support/shutdown.rs"]
mod shutdown;
#[cfg(feature = "tokens")]
#[path = "support/tokens.rs"]
mod tokens;

use std::error::Error;
use std::future::IntoFuture;
use std::net::SocketAddr;

use axum::routing::get;
use axum::{Json, Router};
use tower_apikey::admin::secret_scanning::{GithubPublicKeys, SecretScanningReceiver};
use tower_apikey::admin::AdminApi;
use tower_apikey::permission::API_KEY_ADMIN;
use tower_apikey::store::{BoxSessionStore, KeyQuery};
use tower_apikey::sweeper::ExpirySweeper;
use tower_apikey::{
    ApiKeyLayer, BoxKeyStore, FileStore, Identity, KeyManager, KeyStore, NewKey, Validator,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    tracing_subscriber::fmt().with_target(false).init();
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let path = std::env::var("APIKEY_STORE").unwrap_or_else(|_| "./apikeys.json".to_owned());

    let (store, sessions, place) = open_store(&path).await?;
    let mut keys = KeyManager::new(store.clone());
    if let Ok(limit) = std::env::var("MAX_KEYS_PER_PRINCIPAL") {
        keys = keys.max_keys_per_principal(limit.parse()?);
    }
    let has_admin = store.query(&KeyQuery::new()).await?.iter().any(|r| {
        r.permissions.iter().any(|p| p == API_KEY_ADMIN) && r.is_live_at(jiff::Timestamp::now())
    });
    if !has_admin {
        let (_, key) = keys
            .acting_as("bootstrap")
            .issue(
                NewKey::new("admin")
                    .name("bootstrap admin key")
                    .permissions([API_KEY_ADMIN])
                    .protected(true),
            )
            .await?;
        println!("No key in the store could administer keys, so one was issued. It is shown this once:\n");
        println!("    {}\n", key.expose());
    }

    #[cfg(feature = "webhooks")]
    let webhooks = webhook_sender(&store)?;
    #[cfg(not(feature = "webhooks"))]
    if std::env::var_os("WEBHOOK_URL").is_some() {
        return Err(
            "WEBHOOK_URL is set, but this build cannot deliver webhooks: \
                    cargo run --release --features admin,webhooks --example admin"
                .into(),
        );
    }
    let (stop_sweeping, sweeping) = tokio::sync::oneshot::channel::<()>();
    let sweeper = tokio::spawn(expiry_sweeper(&store)?.run_until(async move {
        let _ = sweeping.await;
    }));
    // One validator for both: a change made through the admin API reaches it at once.
    let mut validator = Validator::builder(store.clone());
    // `$USAGE_FLUSH_MS`: how often request counts are written (a minute by default).
    if let Ok(ms) = std::env::var("USAGE_FLUSH_MS") {
        validator =
            validator.usage_flush_interval(Some(std::time::Duration::from_millis(ms.parse()?)));
    }
    let validator = validator.build();
    let auth = ApiKeyLayer::new(validator.clone());
    let mut app = Router::new()
        .route("/whoami", get(whoami))
        .layer(auth.clone())
        .nest("/admin", AdminApi::new(keys.clone(), auth).into_router())
        .route("/health", get(|| async { "ok" }));
    #[cfg(feature = "console")]
    {
        let secure = std::env::var_os("CONSOLE_SECURE_COOKIES").is_some();
        let console =
            tower_apikey::console::Console::new(keys.clone(), validator.clone(), sessions)
                .secure_cookies(secure);
        app = app.nest("/console", console.into_router());
    }
    #[cfg(not(feature = "console"))]
    drop(sessions);
    if let Ok(file) = std::env::var("GITHUB_SECRET_SCANNING_KEYS") {
        let github = GithubPublicKeys::from_json(&std::fs::read(&file)?)?;
        let receiver = SecretScanningReceiver::new(validator.clone(), keys, github);
        app = app.nest("/github/secret-scanning", receiver.into_router());
        println!(
            "receiving GitHub secret-scanning alerts at /github/secret-scanning (keys from {file})"
        );
    }

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    // With `tokens`: keys exchanged for access tokens at /oauth/token, and /internal/whoami
    // behind BearerTokenLayer (`examples/support/tokens.rs` for the environment it reads).
    #[cfg(feature = "tokens")]
    let app = tokens::with_tokens(
        app,
        Router::new().route("/internal/whoami", get(whoami)),
        &validator,
        store.clone(),
        tower_apikey::layer::ClientAddress::peer(),
        listener.local_addr()?,
    )?;
    let console = if cfg!(feature = "console") {
        "; console at /console"
    } else {
        ""
    };
    println!(
        "listening on http://{} (keys in {place}; admin API under /admin{console})",
        listener.local_addr()?
    );
    let (stop, deadline) = shutdown::signal_and_deadline();
    tokio::select! {
        // With the peer address in each request, for keys' IP allow-lists.
        served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(stop)
            .into_future() => served?,
        () = deadline => shutdown::drain_ran_out(),
    }
    // Give unspent quota leases back and write the last batch of last uses.
    validator.shutdown().await?;
    let _ = stop_sweeping.send(());
    let _ = sweeper.await;
    #[cfg(feature = "webhooks")]
    if let Some((stop, sender)) = webhooks {
        // Claimed events not yet sent are handed back for another server (or the next start).
        let _ = stop.send(());
        let _ = tokio::time::timeout(shutdown::DRAIN, sender).await;
    }
    Ok(())
}

/// With `$WEBHOOK_URL` and `$WEBHOOK_SECRET`: a task delivering the outbox, and its stop.
#[cfg(feature = "webhooks")]
#[allow(clippy::type_complexity)]
fn webhook_sender(
    store: &BoxKeyStore,
) -> Result<
    Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
    Box<dyn Error + Send + Sync>,
> {
    use tower_apikey::webhook::{WebhookSecret, WebhookSender};

    let Ok(url) = std::env::var("WEBHOOK_URL") else {
        return Ok(None);
    };
    let secret: WebhookSecret = std::env::var("WEBHOOK_SECRET")
        .map_err(|_| "WEBHOOK_URL is set: set WEBHOOK_SECRET (whsec_…) too")?
        .parse()?;
    let mut sender = WebhookSender::new(store.clone(), &url, secret)?;
    if let Ok(ms) = std::env::var("WEBHOOK_RETRY_MS") {
        let first = std::time::Duration::from_millis(ms.parse()?);
        sender = sender
            .retry_backoff(first, first * 8)
            .poll_interval(first.min(std::time::Duration::from_secs(1)))
            .request_timeout(std::time::Duration::from_secs(2))?
            .batch(2);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(sender.run_until(async move {
        let _ = stopped.await;
    }));
    println!("delivering key events to the webhook endpoint");
    Ok(Some((stop, task)))
}

/// The expiry sweeper, with `$EXPIRY_WARNINGS` and `$EXPIRY_SWEEP_MS` if set.
fn expiry_sweeper(store: &BoxKeyStore) -> Result<ExpirySweeper, Box<dyn Error + Send + Sync>> {
    let mut sweeper = ExpirySweeper::new(store.clone());
    if let Ok(list) = std::env::var("EXPIRY_WARNINGS") {
        let horizons = list
            .split(',')
            .map(|h| {
                Ok(h.trim()
                    .parse::<tower_apikey::policy::Period>()?
                    .as_duration())
            })
            .collect::<Result<Vec<_>, Box<dyn Error + Send + Sync>>>()?;
        sweeper = sweeper.horizons(horizons);
    }
    if let Ok(ms) = std::env::var("EXPIRY_SWEEP_MS") {
        sweeper = sweeper.interval(std::time::Duration::from_millis(ms.parse()?));
    }
    Ok(sweeper)
}

/// PostgreSQL when `$DATABASE_URL` is set (and the `postgres` feature is on), else the file.
/// The store holds the console's sessions too, so a fleet shares them.
async fn open_store(
    path: &str,
) -> Result<(BoxKeyStore, BoxSessionStore, String), Box<dyn Error + Send + Sync>> {
    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let store = tower_apikey::store::PgKeyStore::connect(url).await?;
        store.migrate().await?;
        return Ok((
            BoxKeyStore::new(store.clone()),
            BoxSessionStore::new(store),
            "PostgreSQL".to_owned(),
        ));
    }
    let store = FileStore::open(path).await?;
    Ok((
        BoxKeyStore::new(store.clone()),
        BoxSessionStore::new(store),
        path.to_owned(),
    ))
}

async fn whoami(who: Identity) -> Json<Identity> {
    Json(who)
}
