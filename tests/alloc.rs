//! The hot path allocates nothing beyond what inserting the identity into the request
//! extensions costs: counted on this thread by `allocation-counter`, not timed.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Service, ServiceBuilder};
use tower_apikey::key::{KeyFormat, PresentedKey};
use tower_apikey::layer::{DefaultRejection, Rejection, RejectionResponse};
use tower_apikey::{ApiKeyLayer, KeyStore, MemoryStore, Validator};

use common::issue;

type Body = Full<Bytes>;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

fn poll_once<F: Future>(fut: F) -> F::Output {
    match pin!(fut)
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a cached request completes at once"),
    }
}

fn ok(_: Request<Body>) -> std::future::Ready<Result<Response<Body>, Infallible>> {
    std::future::ready(Ok(Response::new(Body::default())))
}

#[test]
fn a_cached_key_costs_only_the_extensions_insert() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = MemoryStore::new();
    let (record, key) = issue("alice");
    runtime.block_on(store.insert(record)).unwrap();
    let validator = Validator::builder(store).build();
    let presented = PresentedKey::new(key.expose().as_bytes()).unwrap();
    let identity = runtime.block_on(validator.validate(&presented)).unwrap();
    let mut service = ServiceBuilder::new()
        .layer(ApiKeyLayer::new(validator))
        .service_fn(ok);
    let request = || {
        Request::get("/whoami")
            .header("apikey", key.expose())
            .body(Body::default())
            .unwrap()
    };

    // What the extensions insert and the inner service cost, measured the same way.
    let mut bare = request();
    let insert = allocations(|| {
        bare.extensions_mut().insert(identity.clone());
    });
    assert!(insert > 0, "the counter counts");
    let inner = allocations(|| {
        poll_once(ok(request())).unwrap();
    }) - allocations(|| drop(request()));

    // Warm up (moka may allocate on its first reads), then count.
    for _ in 0..3 {
        poll_once(service.call(request())).unwrap();
    }
    for _ in 0..10 {
        let req = request();
        let mut status = StatusCode::IM_A_TEAPOT;
        let count = allocations(|| status = poll_once(service.call(req)).unwrap().status());
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            count,
            insert + inner,
            "the hot path allocated beyond the extensions insert"
        );
    }

    // A wrong secret for a cached id allocates nothing but the rejection response.
    let wrong = KeyFormat::default()
        .generate_for(identity.key_id())
        .unwrap();
    let respond = || -> Response<Body> { DefaultRejection::new().respond(Rejection::Invalid) };
    // The first refusal builds the shared body; the cost measured is every later one's.
    drop(respond());
    let response_cost = allocations(|| drop(respond()));
    let req = Request::get("/")
        .header("apikey", wrong.expose())
        .body(Body::default())
        .unwrap();
    let mut status = StatusCode::OK;
    let count = allocations(|| status = poll_once(service.call(req)).unwrap().status());
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(count, response_cost);
}

#[test]
fn a_cached_key_with_every_policy_costs_the_same() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = MemoryStore::new();
    let (mut record, key) = issue("alice");
    record.rate_limit = Some("1000000/1s".parse().unwrap());
    record.quota = Some("1000000".parse().unwrap());
    record.allowed_ips = vec!["127.0.0.0/8".parse().unwrap()];
    runtime.block_on(store.insert(record)).unwrap();
    let validator = Validator::builder(store).build();
    let mut service = ServiceBuilder::new()
        .layer(ApiKeyLayer::new(validator))
        .service_fn(ok);
    let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let request = || {
        let mut request = Request::get("/whoami")
            .header("apikey", key.expose())
            .body(Body::default())
            .unwrap();
        request.extensions_mut().insert(peer);
        request
    };
    let baseline = {
        let (plain, plain_key) = issue("bob");
        let store = MemoryStore::new();
        runtime.block_on(store.insert(plain)).unwrap();
        let mut plain_service = ServiceBuilder::new()
            .layer(ApiKeyLayer::new(Validator::builder(store).build()))
            .service_fn(ok);
        let plain_request = || {
            let mut request = Request::get("/whoami")
                .header("apikey", plain_key.expose())
                .body(Body::default())
                .unwrap();
            request.extensions_mut().insert(peer);
            request
        };
        for _ in 0..3 {
            runtime
                .block_on(plain_service.call(plain_request()))
                .unwrap();
        }
        let req = plain_request();
        allocations(|| drop(poll_once(plain_service.call(req)).unwrap()))
    };
    // Warm up: the cold path, then quota leases of growing blocks (1, 2, 4, ... 64), so the
    // lease in hand outlasts the counted requests.
    for _ in 0..100 {
        let status = runtime.block_on(service.call(request())).unwrap().status();
        assert_eq!(status, StatusCode::OK);
    }
    for _ in 0..10 {
        let req = request();
        let mut status = StatusCode::IM_A_TEAPOT;
        let count = allocations(|| status = poll_once(service.call(req)).unwrap().status());
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            count, baseline,
            "a rate limit, a quota lease in hand and an allow-list allocated on the hot path"
        );
    }
}
