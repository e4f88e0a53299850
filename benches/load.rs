//! Load runs against real servers on 127.0.0.1, bounded in time: end-to-end overhead of the
//! layer, and a flood of cold wrong keys beside cached traffic.
//!
//! - **End to end**: the example's `/whoami` behind `ApiKeyLayer` with a cached key, against
//!   the same handler with no auth layer sent the same requests, keys included (issue 27's
//!   fair baseline); three rounds alternate A, B so drift hits both, and each round's ratio is
//!   printed beside the mean.
//! - **Flood**: one client sends cached-key requests while another floods the same server
//!   with well-formed keys for real ids whose secrets are wrong (each forcing a PBKDF2); the
//!   cached client's p99 is compared with its p99 alone, and the flood's own outcome (derived,
//!   shed) is printed.
//!
//! `cargo bench --bench load` for the full run (about 50 s); `-- --test` (as `bench/run.sh
//! smoke` passes) for a short one.

use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tower_apikey::hash::HashParams;
use tower_apikey::key::{KeyFormat, PresentedKey};
use tower_apikey::{ApiKeyLayer, Identity, KeyRecord, KeyStore, MemoryStore, Validator};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

/// What one client saw.
#[derive(Default)]
struct Outcome {
    latencies: Vec<Duration>,
    statuses: Vec<StatusCode>,
    elapsed: Duration,
}

impl Outcome {
    fn rps(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(i).copied().unwrap_or_default()
    }

    fn count(&self, status: StatusCode) -> usize {
        self.statuses.iter().filter(|s| **s == status).count()
    }
}

/// `connections` clients sending `keys` (in turn) to `url` until `duration` has passed or
/// `max_requests` were sent.
async fn load(
    client: &HttpClient,
    url: &str,
    keys: &[String],
    connections: usize,
    duration: Duration,
) -> Outcome {
    const MAX_REQUESTS: usize = 2_000_000;
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (client, url, keys) = (client.clone(), url.to_owned(), keys.to_vec());
            tokio::spawn(async move {
                let mut out = Outcome::default();
                let mut i = c;
                while Instant::now() < deadline && out.latencies.len() < MAX_REQUESTS / connections
                {
                    let mut req = Request::get(&url);
                    if !keys.is_empty() {
                        req = req.header("apikey", &keys[i % keys.len()]);
                        i += connections;
                    }
                    let sent = Instant::now();
                    let res = client
                        .request(req.body(Empty::new()).unwrap())
                        .await
                        .expect("server on 127.0.0.1");
                    let status = res.status();
                    res.into_body().collect().await.unwrap();
                    out.latencies.push(sent.elapsed());
                    out.statuses.push(status);
                }
                out
            })
        })
        .collect();
    let mut all = Outcome::default();
    for task in tasks {
        let out = task.await.unwrap();
        all.latencies.extend(out.latencies);
        all.statuses.extend(out.statuses);
    }
    all.elapsed = started.elapsed();
    all
}

async fn whoami(who: Option<axum::Extension<Identity>>) -> Json<Value> {
    // Without the layer, answer the same shape so both servers do the same work.
    let (principal, key_id, permissions) = match &who {
        Some(axum::Extension(who)) => (
            who.principal(),
            who.key_id().as_str(),
            who.permissions().to_vec(),
        ),
        None => ("anonymous", "-", vec!["read".to_owned()]),
    };
    Json(json!({ "principal": principal, "key_id": key_id, "permissions": permissions }))
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/whoami")
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    let run = if smoke {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(4)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let format = KeyFormat::default();
        let store = MemoryStore::new();
        // The Maximo form: the flood's derivations cost what production ones do.
        let params = HashParams::default();
        let mut cached = Vec::new();
        let mut cold_ids = Vec::new();
        for i in 0..200 {
            let (record, key) = KeyRecord::generate(format!("p{i}"), &format, &params).unwrap();
            if i % 2 == 0 {
                cached.push(key.expose().to_owned());
            } else {
                // Never presented correctly, so never cached: every wrong key for it is cold.
                cold_ids.push(record.id.clone());
            }
            store.insert(record).await.unwrap();
        }
        let validator = Validator::builder(store).build();
        for key in &cached {
            validator.validate(&PresentedKey::new(key.as_bytes()).unwrap()).await.unwrap();
        }
        // The flood's keys: real ids, wrong secrets, valid checksums; a derivation each.
        let flood: Vec<String> = cold_ids
            .iter()
            .cycle()
            .take(1000)
            .map(|id| format.generate_for(id).unwrap().expose().to_owned())
            .collect();

        let protected = serve(Router::new().route("/whoami", get(whoami)).layer(ApiKeyLayer::new(validator.clone()))).await;
        let open = serve(Router::new().route("/whoami", get(whoami))).await;
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();

        // End to end, alternating.
        let (mut with_layer, mut without) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let a = load(&client, &protected, &cached, 16, run).await;
            assert_eq!(a.count(StatusCode::OK), a.latencies.len(), "every cached request succeeds");
            with_layer.push(a.rps());
            // The same requests, keys included (the open server ignores them): the
            // difference is the layer alone, not one header less to send and parse.
            without.push(load(&client, &open, &cached, 16, run).await.rps());
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let rounds: Vec<String> = with_layer.iter().zip(&without).map(|(a, b)| format!("{:.3}x", a / b)).collect();
        println!(
            "end to end: {:.0} req/s with the layer, {:.0} without: {:.3}x (rounds in turn: {})",
            mean(&with_layer),
            mean(&without),
            mean(&with_layer) / mean(&without),
            rounds.join(", "),
        );

        // Flood.
        let mut alone = load(&client, &protected, &cached, 8, run).await;
        let before = validator.stats();
        let (mut beside, mut flooding) = tokio::join!(
            load(&client, &protected, &cached, 8, run),
            load(&client, &protected, &flood, 64, run),
        );
        let after = validator.stats();
        let refused = beside.latencies.len() - beside.count(StatusCode::OK);
        println!(
            "flood: cached p99 {:?} alone, {:?} beside the flood: {:.2}x; cached requests refused: {refused}",
            alone.percentile(0.99),
            beside.percentile(0.99),
            beside.percentile(0.99).as_secs_f64() / alone.percentile(0.99).as_secs_f64(),
        );
        println!(
            "flood itself: {} requests, {} derivations run, {} shed (503 {}), 401 {}, p50 {:?}",
            flooding.latencies.len(),
            after.derivations - before.derivations,
            after.shed - before.shed,
            flooding.count(StatusCode::SERVICE_UNAVAILABLE),
            flooding.count(StatusCode::UNAUTHORIZED),
            flooding.percentile(0.5),
        );
        assert_eq!(refused, 0, "cached keys are never refused during a flood");
    });
}
