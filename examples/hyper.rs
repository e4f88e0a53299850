//! A plain hyper 1.x server with the layer: no framework, just a tower service.
//!
//! ```text
//! cargo run --release --example hyper
//! curl -H "apikey: <key>" http://127.0.0.1:3000/
//! ```
//!
//! Keys live in the JSON file store at `$APIKEY_STORE` (default `./apikeys.json`); on an
//! empty store the server issues one demo key and prints it once. `$ADDR` sets the listening
//! address (default `127.0.0.1:3000`).

#[path = "support/shutdown.rs"]
mod shutdown;

use std::convert::Infallible;
use std::error::Error;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceBuilder;
use tower_apikey::store::KeyQuery;
use tower_apikey::{ApiKeyLayer, FileStore, Identity, KeyManager, KeyStore, NewKey, Validator};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    tracing_subscriber::fmt().with_target(false).init();
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let path = std::env::var("APIKEY_STORE").unwrap_or_else(|_| "./apikeys.json".to_owned());

    let store = FileStore::open(&path).await?;
    if store.query(&KeyQuery::new().limit(1)).await?.is_empty() {
        let (_, key) = KeyManager::new(store.clone())
            .issue(NewKey::new("demo").name("demo key").permissions(["read"]))
            .await?;
        println!("The store was empty, so a demo key was issued. It is shown this once:\n");
        println!("    {}\n", key.expose());
    }
    let validator = Validator::builder(store).build();

    // The layer wraps any tower service; hyper needs it adapted to its own Service trait.
    let service = ServiceBuilder::new()
        .layer(ApiKeyLayer::new(validator.clone()))
        .service_fn(hello);

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "listening on http://{} (keys in {path})",
        listener.local_addr()?
    );
    let (stop, deadline) = shutdown::signal_and_deadline();
    let mut stop = std::pin::pin!(stop);
    // Tracks connections, to drain them on the way out.
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = &mut stop => break,
        };
        // The peer address in each request's extensions, for keys' IP allow-lists.
        let service = ServiceBuilder::new()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(peer);
                request
            })
            .service(service.clone());
        let service = TowerToHyperService::new(service);
        let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended");
            }
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = deadline => shutdown::drain_ran_out(),
    }
    // Give unspent quota leases back and write the last batch of last uses.
    validator.shutdown().await?;
    Ok(())
}

/// The inner service: only reached with a valid key, whose identity the layer put in the
/// request's extensions.
async fn hello(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Always there: ApiKeyLayer is in front of this service.
    let who = request.extensions().get::<Identity>();
    let body = serde_json::to_vec(&who).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
