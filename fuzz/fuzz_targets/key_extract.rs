//! Key extraction from an arbitrary URI and header map: never panics, and stripping leaves
//! nothing to extract.
#![no_main]

use http::header::{HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_apikey::key::KeyFormat;
use tower_apikey::layer::{ExtractError, KeyExtractor, KeySource};

fuzz_target!(|data: &[u8]| {
    // Layout: URI, then NUL-separated `name:value` header lines.
    let mut parts = data.split(|&b| b == 0);
    let Some(uri) = parts.next() else { return };
    let Ok(uri) = http::Uri::try_from(uri) else {
        return;
    };
    let mut request = http::Request::builder().uri(uri).body(()).unwrap();
    for line in parts {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        request.headers_mut().append(name, value);
    }
    let extractor = KeyExtractor::new(
        [KeySource::header(), KeySource::query(), KeySource::Basic],
        &KeyFormat::default(),
    );
    let _ = extractor.extract(request.uri(), request.headers());
    extractor.strip(&mut request);
    assert_eq!(
        extractor.extract(request.uri(), request.headers()).err(),
        Some(ExtractError::Missing)
    );
});
