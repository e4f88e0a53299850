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
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use subtle::ConstantTimeEq;
use tower::{Service, ServiceBuilder};
use tower_apikey::hash::HashParams;
use tower_apikey::key::{KeyFormat, KeyId, PresentedKey};
use tower_apikey::policy::RateLimit;
use tower_apikey::{ApiKeyLayer, KeyRecord, KeyStore, MemoryStore, Validator};

type Body = Full<Bytes>;

/// The baseline: one fixed key in one header, compared in constant time. With `admit_all`,
/// the fair baseline of issue 27: the compare still runs (its result kept from the optimiser)
/// but every request passes, so it can be fed the same keys in the same order as a measured
/// case, and both sides pay the same for building requests from a 1k or 100k key array.
#[derive(Clone)]
struct FixedHeader<S> {
    inner: S,
    key: Bytes,
    admit_all: bool,
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
        let matched = req
            .headers()
            .get("apikey")
            .is_some_and(|v| bool::from(v.as_bytes().ct_eq(&self.key)));
        if std::hint::black_box(matched) || self.admit_all {
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

/// A validator with `n` keys issued and validated (so cached), and the keys as header values.
fn cached_keys(runtime: &tokio::runtime::Runtime, n: usize) -> (Validator, Vec<HeaderValue>) {
    cached_keys_with(runtime, n, None, true)
}

/// As [`cached_keys`], each key with `rate_limit` (one high enough never to refuse here),
/// and requests counted per key (usage) or not.
fn cached_keys_with(
    runtime: &tokio::runtime::Runtime,
    n: usize,
    rate_limit: Option<RateLimit>,
    counted: bool,
) -> (Validator, Vec<HeaderValue>) {
    let format = KeyFormat::default();
    // One iteration: filling the cache is setup, not what is measured.
    let params = HashParams::default().with_iterations(1).unwrap();
    let store = MemoryStore::new();
    let validator = Validator::builder(store.clone())
        .max_cached_keys(n as u64 * 2)
        // Longer than any bench run: a key expiring mid-run would take the cold path.
        .cache_ttl(std::time::Duration::from_secs(3600))
        .usage_flush_interval(counted.then_some(std::time::Duration::from_secs(60)))
        .build();
    let mut keys = Vec::with_capacity(n);
    runtime.block_on(async {
        for i in 0..n {
            let (mut record, key) = KeyRecord::generate(format!("p{i}"), &format, &params).unwrap();
            record.rate_limit = rate_limit;
            store.insert(record).await.unwrap();
            let presented = PresentedKey::new(key.expose().as_bytes()).unwrap();
            validator.validate(&presented).await.unwrap();
            keys.push(HeaderValue::from_str(key.expose()).unwrap());
        }
    });
    (validator, keys)
}

/// A key's id: between the prefix and the secret (`tak_<id>_<secret>`).
fn key_id(key: &HeaderValue) -> KeyId {
    let text = key.to_str().unwrap();
    KeyId::new(text.split('_').nth(1).unwrap()).unwrap()
}

/// The request `curl -H "apikey: ..." http://127.0.0.1:3000/whoami` sends.
fn request(key: &HeaderValue) -> Request<Body> {
    Request::get("/whoami")
        .header("host", "127.0.0.1:3000")
        .header("user-agent", "curl/7.88.1")
        .header("accept", "*/*")
        .header("apikey", key.clone())
        .body(Body::default())
        .unwrap()
}

fn hot_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let (validator_1k, keys_1k) = cached_keys(&runtime, 1_000);
    // Without usage counting: what counting costs a cached key. A rate limit no bench run
    // reaches: every request is counted and admitted. Both made next to the plain 1k set,
    // before the 100k one, so the sets lie alike in memory.
    let (validator_uncounted, keys_uncounted) = cached_keys_with(&runtime, 1_000, None, false);
    let limit = "1000000000/1s".parse().unwrap();
    let (validator_limited, keys_limited) = cached_keys_with(&runtime, 1_000, Some(limit), true);
    let (validator_100k, keys_100k) = cached_keys(&runtime, 100_000);

    let mut group = c.benchmark_group("hot_path");
    let fixed = keys_1k[0].clone();
    let mut baseline = FixedHeader {
        inner: tower::service_fn(ok),
        key: Bytes::copy_from_slice(fixed.as_bytes()),
        admit_all: false,
    };
    group.bench_function("fixed_header", |b| {
        b.iter(|| {
            let res = poll_once(baseline.call(request(&fixed))).unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res
        })
    });

    // The fair baselines: the same keys, in the same order, as the measured cases below.
    for (name, keys) in [
        ("fair_baseline_1k", &keys_1k),
        ("fair_baseline_100k", &keys_100k),
    ] {
        let mut fair = FixedHeader {
            inner: tower::service_fn(ok),
            key: Bytes::copy_from_slice(fixed.as_bytes()),
            admit_all: true,
        };
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = i.wrapping_add(7919);
                let res = poll_once(fair.call(request(&keys[i % keys.len()]))).unwrap();
                assert_eq!(res.status(), StatusCode::OK);
                res
            })
        });
    }
    // The cache alone: moka's `get` (as the validator's valid-key cache is built: foldhash,
    // the entry a digest and an identity-sized value) and a std `HashMap::get`, over the same
    // ids in the same order, so the layer's cost can be read beside its cache's.
    for (label, keys) in [("1k", &keys_1k), ("100k", &keys_100k)] {
        let ids: Vec<KeyId> = keys.iter().map(key_id).collect();
        let moka: moka::sync::Cache<KeyId, ([u8; 32], u64), foldhash::fast::RandomState> =
            moka::sync::Cache::builder()
                .max_capacity(ids.len() as u64 * 2)
                .time_to_live(std::time::Duration::from_secs(300))
                .build_with_hasher(foldhash::fast::RandomState::default());
        let mut map =
            std::collections::HashMap::with_hasher(foldhash::fast::RandomState::default());
        for (n, id) in ids.iter().enumerate() {
            moka.insert(id.clone(), ([n as u8; 32], n as u64));
            map.insert(id.clone(), ([n as u8; 32], n as u64));
        }
        moka.run_pending_tasks();
        // moka with no capacity and no expiry: its own floor, whatever the options.
        let plain: moka::sync::Cache<KeyId, ([u8; 32], u64), foldhash::fast::RandomState> =
            moka::sync::Cache::builder().build_with_hasher(foldhash::fast::RandomState::default());
        for (n, id) in ids.iter().enumerate() {
            plain.insert(id.clone(), ([n as u8; 32], n as u64));
        }
        plain.run_pending_tasks();
        let mut i = 0usize;
        group.bench_function(format!("moka_get_{label}"), |b| {
            b.iter(|| {
                i = i.wrapping_add(7919);
                moka.get(&ids[i % ids.len()]).unwrap()
            })
        });
        group.bench_function(format!("moka_plain_get_{label}"), |b| {
            b.iter(|| {
                i = i.wrapping_add(7919);
                plain.get(&ids[i % ids.len()]).unwrap()
            })
        });
        group.bench_function(format!("hashmap_get_{label}"), |b| {
            b.iter(|| {
                i = i.wrapping_add(7919);
                *map.get(&ids[i % ids.len()]).unwrap()
            })
        });
    }

    // Each request presents the next key of a fixed permutation of all cached keys, so at
    // 100k the lookups pay for memory, not a hot cache line.
    // A key that is not in the format: refused on the hot path with the JSON error body, what
    // a flood of made-up keys costs per request.
    let mut refusing = ServiceBuilder::new()
        .layer(ApiKeyLayer::new(validator_1k.clone()))
        .service(tower::service_fn(ok));
    let malformed = HeaderValue::from_static("tak_nope");
    group.bench_function("apikey_layer_refused", |b| {
        b.iter(|| {
            let res = poll_once(refusing.call(request(&malformed))).unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            res
        })
    });

    for (name, validator, keys) in [
        ("apikey_layer_cached_1k", validator_1k, keys_1k),
        (
            "apikey_layer_cached_1k_uncounted",
            validator_uncounted,
            keys_uncounted,
        ),
        (
            "apikey_layer_cached_1k_rate_limited",
            validator_limited,
            keys_limited,
        ),
        ("apikey_layer_cached_100k", validator_100k, keys_100k),
    ] {
        let mut layered = ServiceBuilder::new()
            .layer(ApiKeyLayer::new(validator))
            .service(tower::service_fn(ok));
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = i.wrapping_add(7919);
                let res = poll_once(layered.call(request(&keys[i % keys.len()]))).unwrap();
                assert_eq!(res.status(), StatusCode::OK);
                res
            })
        });
    }
    group.finish();
}

/// With the `metrics` feature: the 1k hot path with no recorder installed (the facade's
/// no-op) and with a registry recorder of the kind exporters keep (atomic counters behind a
/// sharded map, as `metrics-exporter-prometheus` has), side by side.
#[cfg(feature = "metrics")]
fn hot_path_metrics(c: &mut Criterion) {
    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };
    use metrics_util::registry::{AtomicStorage, Registry};

    struct RegistryRecorder(Registry<Key, AtomicStorage>);

    impl Recorder for RegistryRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            self.0
                .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            self.0
                .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            self.0
                .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (validator, keys) = cached_keys(&runtime, 1_000);
    let mut layered = ServiceBuilder::new()
        .layer(ApiKeyLayer::new(validator))
        .service(tower::service_fn(ok));
    let recorder = RegistryRecorder(Registry::atomic());
    let mut group = c.benchmark_group("hot_path_metrics");
    for recorded in [false, true] {
        let name = if recorded {
            "cached_1k_recorded"
        } else {
            "cached_1k_no_recorder"
        };
        let mut i = 0usize;
        let mut run = |b: &mut criterion::Bencher<'_>| {
            b.iter(|| {
                i = i.wrapping_add(7919);
                let res = poll_once(layered.call(request(&keys[i % keys.len()]))).unwrap();
                assert_eq!(res.status(), StatusCode::OK);
                res
            })
        };
        group.bench_function(name, |b| {
            if recorded {
                metrics::with_local_recorder(&recorder, || run(b));
            } else {
                run(b);
            }
        });
    }
    group.finish();
}

#[cfg(not(feature = "metrics"))]
fn hot_path_metrics(_: &mut Criterion) {}

/// With the `tokens` feature: a cached access token through `BearerTokenLayer` (1k tokens, one
/// per key, following a store's changes as the examples do) beside a cached API key through
/// `ApiKeyLayer` (1k keys), in one run; and the token endpoint's cost per request with a
/// cached key (signing included), as requests per second on one core.
#[cfg(feature = "tokens")]
fn tokens(c: &mut Criterion) {
    use tower_apikey::tokens::{
        BearerTokenLayer, Jwks, SigningKey, TokenAlgorithm, TokenEndpoint, TokenIssuer, TokenKeys,
        TokenRevocations, TokenVerifier,
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let format = KeyFormat::default();
    let params = HashParams::default().with_iterations(1).unwrap();
    let store = MemoryStore::new();
    let validator = Validator::builder(store.clone())
        .max_cached_keys(4_000)
        .cache_ttl(std::time::Duration::from_secs(3600))
        .usage_flush_interval(Some(std::time::Duration::from_secs(60)))
        .build();
    let issuer = TokenIssuer::new(
        TokenKeys::new(SigningKey::generate(TokenAlgorithm::EdDsa).unwrap()),
        "http://127.0.0.1:3000",
    )
    .lifetime(std::time::Duration::from_secs(3600));
    let verifier = TokenVerifier::builder(
        Jwks::from_keys(issuer.keys().verifying().cloned()),
        issuer.issuer(),
        issuer.audience_name(),
    )
    .revocations(TokenRevocations::watch(store.clone()))
    .build();
    let mut keys = Vec::new();
    let mut tokens = Vec::new();
    runtime.block_on(async {
        for i in 0..1_000 {
            let (mut record, key) = KeyRecord::generate(format!("p{i}"), &format, &params).unwrap();
            record.permissions = vec!["read".into(), "write".into()];
            store.insert(record).await.unwrap();
            let presented = PresentedKey::new(key.expose().as_bytes()).unwrap();
            let identity = validator.validate(&presented).await.unwrap();
            let token = issuer.issue(&identity, None).unwrap();
            verifier.verify(token.expose().as_bytes()).await.unwrap();
            keys.push(HeaderValue::from_str(key.expose()).unwrap());
            tokens.push(HeaderValue::from_str(&format!("Bearer {}", token.expose())).unwrap());
        }
    });

    let mut group = c.benchmark_group("tokens");
    let mut by_key = ServiceBuilder::new()
        .layer(ApiKeyLayer::new(validator.clone()))
        .service(tower::service_fn(ok));
    let mut by_token = ServiceBuilder::new()
        .layer(BearerTokenLayer::new(verifier))
        .service(tower::service_fn(ok));
    let mut i = 0usize;
    group.bench_function("apikey_layer_cached_1k", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            let res = poll_once(by_key.call(request(&keys[i % keys.len()]))).unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res
        })
    });
    group.bench_function("bearer_layer_cached_1k", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            let mut req = request(&keys[0]);
            req.headers_mut().remove("apikey");
            req.headers_mut()
                .insert("authorization", tokens[i % tokens.len()].clone());
            let res = poll_once(by_token.call(req)).unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res
        })
    });
    let endpoint = TokenEndpoint::new(validator, issuer);
    group.bench_function("token_endpoint_cached_key", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            let req = http::Request::post("/oauth/token")
                .header("host", "127.0.0.1:3000")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("apikey", keys[i % keys.len()].clone())
                .body(axum::body::Body::from("grant_type=client_credentials"))
                .unwrap();
            let res = runtime.block_on(endpoint.exchange(req));
            assert_eq!(res.status(), StatusCode::OK);
            res
        })
    });
    group.finish();
}

#[cfg(not(feature = "tokens"))]
fn tokens(_: &mut Criterion) {}

criterion_group!(benches, hot_path, hot_path_metrics, tokens);
criterion_main!(benches);
