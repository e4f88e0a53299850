//! A cached key through the whole layer, against a layer that only compares one fixed header
//! in constant time: the price of the API-key layer over the least a key check can cost.
//!
//! Each iteration builds the request curl sends (as a server parses one), calls the service and
//! polls the response future once (it completes at once), with no runtime in the way; the two
//! services differ only in the layer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use subtle::ConstantTimeEq;
use tower::{Service, ServiceBuilder};
use tower_apikey::key::{KeyFormat, PresentedKey};
use tower_apikey::record::HashParams;
use tower_apikey::{ApiKeyLayer, KeyRecord, KeyStore, MemoryStore, Validator};

type Body = Full<Bytes>;

/// The baseline: one fixed key in one header, compared in constant time.
#[derive(Clone)]
struct FixedHeader<S> {
    inner: S,
    key: Bytes,
}

impl<S> Service<Request<Body>> for FixedHeader<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Unpin,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = futures_util_either::Either<
        S::Future,
        std::future::Ready<Result<Response<Body>, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let ok = req
            .headers()
            .get("apikey")
            .is_some_and(|v| bool::from(v.as_bytes().ct_eq(&self.key)));
        if ok {
            futures_util_either::Either::Left(self.inner.call(req))
        } else {
            let mut res = Response::new(Body::default());
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            futures_util_either::Either::Right(std::future::ready(Ok(res)))
        }
    }
}

/// A two-way future, so the baseline boxes nothing either.
mod futures_util_either {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub(crate) enum Either<A, B> {
        Left(A),
        Right(B),
    }

    impl<A: Future + Unpin, B: Future<Output = A::Output> + Unpin> Future for Either<A, B> {
        type Output = A::Output;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<A::Output> {
            match self.get_mut() {
                Either::Left(a) => Pin::new(a).poll(cx),
                Either::Right(b) => Pin::new(b).poll(cx),
            }
        }
    }
}

fn poll_once<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a cached request must complete at once"),
    }
}

/// The handler: answers at once (an `Unpin` future, so the baseline can hold it unboxed).
fn ok(_: Request<Body>) -> std::future::Ready<Result<Response<Body>, Infallible>> {
    std::future::ready(Ok(Response::new(Body::default())))
}

fn hot_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let format = KeyFormat::default();
    let params = HashParams::default().iterations(1).unwrap();

    // 1,000 cached keys; the request uses one of them.
    let store = MemoryStore::new();
    let validator = Validator::builder(store.clone()).build();
    let mut keys = Vec::new();
    runtime.block_on(async {
        for i in 0..1000 {
            let (record, key) = KeyRecord::generate(format!("p{i}"), &format, &params).unwrap();
            store.insert(record).await.unwrap();
            validator
                .validate(&PresentedKey::new(key.expose().as_bytes()).unwrap())
                .await
                .unwrap();
            keys.push(key);
        }
    });
    let key = keys[500].expose().to_owned();

    let mut group = c.benchmark_group("hot_path");
    // The request `curl -H "apikey: ..." http://127.0.0.1:3000/whoami` sends.
    let request = || {
        Request::get("/whoami")
            .header("host", "127.0.0.1:3000")
            .header("user-agent", "curl/7.88.1")
            .header("accept", "*/*")
            .header("apikey", &key)
            .body(Body::default())
            .unwrap()
    };

    let mut baseline = FixedHeader {
        inner: tower::service_fn(ok),
        key: Bytes::from(key.clone()),
    };
    group.bench_function("fixed_header", |b| {
        b.iter(|| {
            let res = poll_once(baseline.call(request())).unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res
        })
    });

    let mut layered = ServiceBuilder::new()
        .layer(ApiKeyLayer::new(validator.clone()))
        .service(tower::service_fn(ok));
    group.bench_function("apikey_layer_cached_1k", |b| {
        b.iter(|| {
            let res = poll_once(layered.call(request())).unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res
        })
    });
    group.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
