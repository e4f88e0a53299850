//! An axum server whose `/whoami` route needs an API key.
//!
//! ```text
//! cargo run --release --example axum
//! curl -H "apikey: <key>" http://127.0.0.1:3000/whoami
//! curl "http://127.0.0.1:3000/whoami?apikey=<key>"
//! ```
//!
//! Keys live in the JSON file store at `$APIKEY_STORE` (default `./apikeys.json`); on an
//! empty store the server issues one demo key and prints it once. Keys issued or revoked with
//! the CLI on the same file take effect within a second:
//!
//! ```text
//! cargo run --features cli -- issue --store apikeys.json --principal bob --permission read
//! cargo run --features cli -- revoke --store apikeys.json <id>
//! ```
//!
//! Keys may carry a rate limit, a quota and an IP allow-list (`issue ... --rate-limit 100/1m
//! --quota 10000/1d --allow-ip 10.0.0.0/8`); the server checks the allow-list against the
//! connection's peer, or, with `$TRUSTED_PROXIES` (comma-separated CIDRs of your load
//! balancers), against the address they forward in `X-Forwarded-For`.
//!
//! Each key's requests are counted by outcome and written to the store once a minute
//! (`$USAGE_FLUSH_MS` sets how often) and on SIGTERM; `tower-apikey usage ID` shows them.
//!
//! `$ADDR` sets the listening address (default `127.0.0.1:3000`). Beside `/whoami` it serves,
//! without a key: `/health` (liveness), `/ready` (503 while the key store does not answer) and
//! `/metrics` (Prometheus text; the crate's counters appear with the `metrics` feature:
//! `cargo run --release --features metrics --example axum`). Expose `/metrics` and `/ready`
//! to your monitoring network only.
//!
//! With the `tokens` feature (`cargo run --release --features tokens --example axum`) a key
//! is also exchanged for a short-lived access token at `POST /oauth/token` (OAuth 2.0 client
//! credentials; JWKS at `/.well-known/jwks.json`, metadata at
//! `/.well-known/oauth-authorization-server`), and `GET /internal/whoami` takes that token
//! (`Authorization: Bearer ...`) instead of the key: the internal service, in one process.
//! `$TOKEN_SIGNING_KEY`, `$TOKEN_VERIFY_KEYS`, `$TOKEN_ISSUER`, `$TOKEN_AUDIENCE` and
//! `$TOKEN_TTL` configure it (`examples/support/tokens.rs`):
//!
//! ```text
//! curl -u "<key id>:<key>" -d grant_type=client_credentials http://127.0.0.1:3000/oauth/token
//! curl -H "Authorization: Bearer <access_token>" http://127.0.0.1:3000/internal/whoami
//! ```
//!
//! With the `postgres` feature and `$DATABASE_URL` set, keys live in PostgreSQL instead (the
//! schema is brought up to date at start), and several copies of this server on different
//! ports form a fleet that sees every change within a second:
//!
//! ```text
//! DATABASE_URL=postgresql://apikeys@localhost/apikeys ADDR=127.0.0.1:3001 \
//!     cargo run --release --features postgres --example axum
//! ```

#[path = "support/shutdown.rs"]
mod shutdown;
#[cfg(feature = "tokens")]
#[path = "support/tokens.rs"]
mod tokens;

use std::error::Error;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value};
use tower_apikey::hash::HashParams;
use tower_apikey::key::KeyFormat;
use tower_apikey::layer::ClientAddress;
use tower_apikey::policy::IpNet;
use tower_apikey::store::KeyQuery;
use tower_apikey::{ApiKeyLayer, FileStore, Identity, KeyRecord, KeyStore, UsageStore, Validator};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    tracing_subscriber::fmt().with_target(false).init();
    // The `metrics` facade's recorder: counters kept here, rendered at `/metrics`.
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    #[cfg(feature = "metrics")]
    tower_apikey::validator::describe_metrics(); // HELP lines for the counters
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let path = std::env::var("APIKEY_STORE").unwrap_or_else(|_| "./apikeys.json".to_owned());

    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let store = tower_apikey::store::PgKeyStore::connect(url).await?;
        store.migrate().await?;
        return serve(store, &addr, "PostgreSQL", prometheus).await;
    }
    let store = FileStore::open(&path).await?;
    serve(store, &addr, &path, prometheus).await
}

/// 200 while the store answers within a second; 503 while it does not (cached keys are
/// still served then, cold ones refused).
async fn ready(validator: Validator) -> (StatusCode, &'static str) {
    match validator.check_store(Duration::from_secs(1)).await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "key store unavailable")
        }
    }
}

/// Serves `/whoami` behind the layer, with keys in `store`, until Ctrl-C.
async fn serve<S: UsageStore + Clone>(
    store: S,
    addr: &str,
    keys_in: &str,
    prometheus: PrometheusHandle,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    if store.query(&KeyQuery::new().limit(1)).await?.is_empty() {
        issue_demo_key(&store, addr).await?;
    }

    // Requests are counted per key and written once a minute (`$USAGE_FLUSH_MS` sets how
    // often); the last batch on SIGTERM.
    let validator = Validator::builder(store.clone())
        .usage_flush_interval(Some(usage_flush_interval()?))
        .build();
    let probe = validator.clone();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(ApiKeyLayer::new(validator.clone()).client_address(client_address()?))
        // Added after the layer, so not behind it: liveness, readiness (does the store
        // answer within a second?) and the counters.
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(move || ready(probe.clone())))
        .route(
            "/metrics",
            get(move || std::future::ready(prometheus.render())),
        );
    #[cfg(feature = "tokens")]
    let app = tokens::with_tokens(
        app,
        Router::new().route("/internal/whoami", get(whoami)),
        &validator,
        store,
        client_address()?,
        local,
    )?;
    #[cfg(not(feature = "tokens"))]
    drop((store, local));

    println!("listening on http://{local} (keys in {keys_in})");
    let (stop, deadline) = shutdown::signal_and_deadline();
    tokio::select! {
        // With the peer address in each request (ConnectInfo), for keys' IP allow-lists.
        served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(stop)
            .into_future() => served?,
        () = deadline => shutdown::drain_ran_out(),
    }
    // Give unspent quota leases back and write the last batch of last uses.
    validator.shutdown().await?;
    Ok(())
}

/// How often usage counts are written: `$USAGE_FLUSH_MS`, or a minute.
fn usage_flush_interval() -> Result<Duration, Box<dyn Error + Send + Sync>> {
    match std::env::var("USAGE_FLUSH_MS") {
        Ok(ms) => Ok(Duration::from_millis(ms.parse()?)),
        Err(_) => Ok(Duration::from_secs(60)),
    }
}

/// The peer address, or the forwarded one from `$TRUSTED_PROXIES`.
fn client_address() -> Result<ClientAddress, Box<dyn Error + Send + Sync>> {
    let Ok(proxies) = std::env::var("TRUSTED_PROXIES") else {
        return Ok(ClientAddress::peer());
    };
    let proxies = proxies
        .split(',')
        .map(|net| net.trim().parse::<IpNet>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ClientAddress::peer().trusted_proxies(proxies))
}

async fn whoami(who: Identity) -> Json<Value> {
    Json(json!({
        "principal": who.principal(),
        "key_id": who.key_id(),
        "name": who.name(),
        "permissions": who.permissions(),
        "expires_at": who.expires_at(),
        "rate_limit_remaining": who.rate_limit().map(|status| status.remaining),
        "quota_remaining": who.quota_remaining(),
    }))
}

async fn issue_demo_key(
    store: &impl KeyStore,
    addr: &str,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    // Hashing runs PBKDF2: off the async workers.
    let (mut record, key) = tokio::task::spawn_blocking(|| {
        KeyRecord::generate("demo", &KeyFormat::default(), &HashParams::default())
    })
    .await??;
    record.name = Some("demo key".to_owned());
    record.permissions = vec!["read".to_owned()];
    store.insert(record).await?;
    println!("The store was empty, so a demo key was issued. It is shown this once:\n");
    println!("    {}\n", key.expose());
    println!(
        "Try:  curl -H \"apikey: {}\" http://{addr}/whoami\n",
        key.expose()
    );
    Ok(())
}
