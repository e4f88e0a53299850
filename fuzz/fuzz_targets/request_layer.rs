//! A whole request through `ApiKeyLayer` over a memory store holding a valid, a revoked, an
//! inactive and an expired key: never panics; the answer is a pass, 400, 401 or 503; a pass
//! only for the valid key, and the handler sees its identity.
#![no_main]

use std::convert::Infallible;
use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_apikey::hash::HashParams;
use tower_apikey::key::KeyFormat;
use tower_apikey::layer::{KeyExtractor, KeySource};
use tower_apikey::{ApiKeyLayer, Identity, KeyRecord, KeyStatus, KeyStore, MemoryStore, Validator};

struct Fixture {
    runtime: tokio::runtime::Runtime,
    layer: ApiKeyLayer,
    /// Valid, revoked, inactive, expired.
    keys: [String; 4],
}

fn sources() -> [KeySource; 3] {
    [KeySource::header(), KeySource::query(), KeySource::Basic]
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = MemoryStore::new();
        let params = HashParams::default().with_iterations(1).unwrap();
        let keys = runtime.block_on(async {
            let mut keys = Vec::new();
            for (i, status) in ["valid", "revoked", "inactive", "expired"]
                .iter()
                .enumerate()
            {
                let (mut record, key) =
                    KeyRecord::generate(*status, &KeyFormat::default(), &params).unwrap();
                match i {
                    1 => record.status = KeyStatus::Revoked,
                    2 => record.status = KeyStatus::Inactive,
                    3 => record.expires_at = Some("2020-01-01T00:00:00Z".parse().unwrap()),
                    _ => {}
                }
                store.insert(record).await.unwrap();
                keys.push(key.expose().to_owned());
            }
            keys
        });
        let validator = Validator::builder(store)
            .last_used_flush_interval(None)
            .build();
        Fixture {
            runtime,
            layer: ApiKeyLayer::new(validator).sources(sources()),
            keys: keys.try_into().unwrap(),
        }
    })
}

async fn handler(req: Request<String>) -> Result<Response<Bytes>, Infallible> {
    let who = req
        .extensions()
        .get::<Identity>()
        .map(|id| id.principal().to_owned())
        .unwrap_or_default();
    Ok(Response::new(Bytes::from(who)))
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    // Layout: which known key to put in (byte 0), where (byte 1), then the URI and
    // NUL-separated `name:value` header lines.
    let [which, place, rest @ ..] = data else {
        return;
    };
    let mut parts = rest.split(|&b| b == 0);
    let Some(uri) = parts.next() else { return };
    let Ok(uri) = http::Uri::try_from(uri) else {
        return;
    };
    let mut request = Request::builder().uri(uri).body(String::new()).unwrap();
    for line in parts {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) {
            request.headers_mut().append(name, value);
        }
    }
    if let Some(key) = fixture.keys.get(usize::from(*which % 6)) {
        match place % 2 {
            0 => {
                request
                    .headers_mut()
                    .append("apikey", HeaderValue::from_str(key).unwrap());
            }
            _ => {
                let uri = request.uri();
                let joined = match uri.query() {
                    Some(q) => format!("{}?{q}&apikey={key}", uri.path()),
                    None => format!("{}?apikey={key}", uri.path()),
                };
                match joined.parse() {
                    Ok(uri) => *request.uri_mut() = uri,
                    Err(_) => return,
                }
            }
        }
    }
    let presented = KeyExtractor::new(sources(), &KeyFormat::default())
        .extract(request.uri(), request.headers())
        .ok();
    let mut service = ServiceBuilder::new()
        .layer(fixture.layer.clone())
        .service_fn(handler);
    let response = fixture.runtime.block_on(async {
        service.ready().await.unwrap();
        service.call(request).await.unwrap()
    });
    match response.status() {
        StatusCode::OK => {
            let presented = presented.expect("a pass with no key");
            assert_eq!(
                presented.expose(),
                fixture.keys[0].as_bytes(),
                "a pass for a key that is not the valid one"
            );
            assert_eq!(response.body(), "valid", "the handler sees the identity");
        }
        StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::SERVICE_UNAVAILABLE => {}
        other => panic!("unexpected status {other}"),
    }
});
