//! A tonic gRPC server behind the layer: the key travels in the `apikey` metadata entry, a
//! call without a valid key gets `UNAUTHENTICATED`, and one whose key lacks the `read`
//! permission gets `PERMISSION_DENIED`.
//!
//! ```text
//! cargo run --release --example tonic                       # serve on 127.0.0.1:50051
//! cargo run --release --example tonic -- call <key>         # a gRPC client calling WhoAmI
//! grpcurl -plaintext -H "apikey: <key>" -import-path examples/tonic -proto demo.proto \
//!     127.0.0.1:50051 demo.Identity/WhoAmI                  # or any other gRPC client
//! ```
//!
//! Keys live in the JSON file store at `$APIKEY_STORE` (default `./apikeys.json`); on an
//! empty store the server issues one demo key and prints it once. `$ADDR` sets the address
//! (default `127.0.0.1:50051`). The service is `demo.proto`, written out in `proto.rs`.

mod proto;

#[path = "../support/shutdown.rs"]
mod shutdown;

use std::error::Error;

use tonic::transport::server::{TcpConnectInfo, TcpIncoming};
use tonic::transport::{Endpoint, Server};
use tower_apikey::layer::{ClientAddress, GrpcRejection};
use tower_apikey::permission::require_permission;
use tower_apikey::store::KeyQuery;
use tower_apikey::{ApiKeyLayer, FileStore, KeyManager, KeyStore, NewKey, Validator};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    tracing_subscriber::fmt().with_target(false).init();
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:50051".to_owned());
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => serve(&addr).await,
        (Some("call"), key) => {
            let channel = Endpoint::from_shared(format!("http://{addr}"))?
                .connect()
                .await?;
            match proto::who_am_i(channel, key.as_deref()).await {
                Ok(reply) => println!("{reply:?}"),
                Err(status) => println!("{:?}: {}", status.code(), status.message()),
            }
            Ok(())
        }
        _ => Err("usage: tonic [call [KEY]]".into()),
    }
}

async fn serve(addr: &str) -> Result<(), Box<dyn Error + Send + Sync>> {
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

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "listening on http://{} (gRPC; keys in {path})",
        listener.local_addr()?
    );
    let (stop, deadline) = shutdown::signal_and_deadline();
    let serving = Server::builder()
        // gRPC metadata is HTTP/2 headers: the default `apikey` header source reads it.
        .layer(
            ApiKeyLayer::new(validator.clone())
                .rejection(GrpcRejection::new())
                // tonic keeps the peer address in its own type: for keys' IP allow-lists.
                .client_address(ClientAddress::peer().peer_from(|extensions| {
                    let info = extensions.get::<TcpConnectInfo>()?;
                    info.remote_addr().map(|addr| addr.ip())
                })),
        )
        // Inside the key check, answering in the same gRPC words.
        .layer(require_permission("read").rejection(GrpcRejection::new()))
        .add_service(proto::IdentityServer)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), stop);
    tokio::select! {
        served = serving => served?,
        () = deadline => shutdown::drain_ran_out(),
    }
    // Give unspent quota leases back and write the last batch of last uses.
    validator.shutdown().await?;
    Ok(())
}
