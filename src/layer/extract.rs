//! Taking the key from a request: header, query parameter, HTTP Basic.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine;
use http::header::{HeaderName, AUTHORIZATION};
use http::{HeaderMap, Uri};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::key::{KeyFormat, PresentedKey, MAX_KEY_LEN};

/// Where a request may carry its key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// A request header (default `apikey`).
    Header(HeaderName),
    /// A query-string parameter (default `apikey`), form-urlencoded as a Java servlet's
    /// `getParameter` reads it: `+` is a space, `%2B` a plus.
    Query(Arc<str>),
    /// HTTP Basic credentials `id:secret`: the user name is the key's id and the password
    /// the part after it, so `<prefix>_<id>_<secret>` is rebuilt. A password that is itself a
    /// whole key (it starts with `<prefix>_`) is taken as it is, whatever the user name.
    Basic,
}

impl KeySource {
    /// The `apikey` header.
    pub fn header() -> Self {
        KeySource::Header(HeaderName::from_static("apikey"))
    }

    /// The `apikey` query parameter.
    pub fn query() -> Self {
        KeySource::Query("apikey".into())
    }
}

/// Why no single key could be taken from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// No source carried a key.
    #[error("no API key in the request")]
    Missing,
    /// Two sources (or one source twice) carried different keys.
    #[error("the request carries two different API keys")]
    Conflicting,
    /// A source carried something that cannot be a key (too long, or bad Basic encoding).
    #[error("the request carries an unreadable API key")]
    Unreadable,
}

/// Takes the key from a request's URI and headers, from the configured sources in order.
///
/// The same key in several places is fine; two different keys are [`ExtractError::Conflicting`].
/// Does no I/O and allocates only to decode a percent-encoded or Basic value.
#[derive(Debug, Clone)]
pub struct KeyExtractor {
    sources: Arc<[KeySource]>,
    format: KeyFormat,
}

impl Default for KeyExtractor {
    fn default() -> Self {
        Self::new(
            [KeySource::header(), KeySource::query()],
            &KeyFormat::default(),
        )
    }
}

impl KeyExtractor {
    /// An extractor reading `sources` in order; `format` gives the prefix HTTP Basic
    /// credentials are rebuilt with.
    pub fn new(sources: impl IntoIterator<Item = KeySource>, format: &KeyFormat) -> Self {
        Self {
            sources: sources.into_iter().collect(),
            format: format.clone(),
        }
    }

    /// The sources, in the order they are read.
    pub fn sources(&self) -> &[KeySource] {
        &self.sources
    }

    /// The key the request carries.
    ///
    /// # Errors
    /// [`ExtractError`] when there is none, two different ones, or an unreadable one.
    pub fn extract<'r>(
        &self,
        uri: &'r Uri,
        headers: &'r HeaderMap,
    ) -> Result<PresentedKey, ExtractError> {
        // Candidates are compared where they lie and copied into a `PresentedKey` once: its
        // fixed buffer is 264 bytes, and each move of it was a copy on the hot path.
        let mut found: Option<Found<'r>> = None;
        let mut offer = |candidate: Found<'r>| -> Result<(), ExtractError> {
            let bytes = candidate.bytes();
            if bytes.len() > MAX_KEY_LEN {
                return Err(ExtractError::Unreadable);
            }
            match &found {
                None => found = Some(candidate),
                Some(key) if bool::from(key.bytes().ct_eq(bytes)) => {}
                Some(_) => return Err(ExtractError::Conflicting),
            }
            Ok(())
        };
        for source in self.sources.iter() {
            match source {
                KeySource::Header(name) => {
                    for value in headers.get_all(name) {
                        // RFC 9110 5.5: whitespace around a field value is not part of it.
                        // HTTP/1.1 parsers strip it, HTTP/2 carries it: trim here so both
                        // mean the same.
                        let value = trim_ows(value.as_bytes());
                        if !value.is_empty() {
                            offer(Found::Borrowed(value))?;
                        }
                    }
                }
                KeySource::Query(param) => {
                    let Some(query) = uri.query() else { continue };
                    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
                        if name != **param || value.is_empty() {
                            continue;
                        }
                        offer(match value {
                            Cow::Borrowed(value) => Found::Borrowed(value.as_bytes()),
                            Cow::Owned(value) => Found::Decoded(Zeroizing::new(value.into_bytes())),
                        })?;
                    }
                }
                KeySource::Basic => {
                    for value in headers.get_all(AUTHORIZATION) {
                        if let Some(key) = self.basic(value.as_bytes()) {
                            offer(key?)?;
                        }
                    }
                }
            }
        }
        let found = found.ok_or(ExtractError::Missing)?;
        PresentedKey::new(found.bytes()).map_err(|_| ExtractError::Unreadable)
    }

    /// The key in a Basic `Authorization` value; `None` for another scheme.
    fn basic(&self, value: &[u8]) -> Option<Result<Found<'static>, ExtractError>> {
        let value = trim_ows(value);
        if !is_basic(value) {
            return None;
        }
        let encoded = &value[6..];
        let mut decoded =
            match base64::engine::general_purpose::STANDARD.decode(encoded.trim_ascii()) {
                Ok(decoded) => Zeroizing::new(decoded),
                Err(_) => return Some(Err(ExtractError::Unreadable)),
            };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return Some(Err(ExtractError::Unreadable));
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        Some(if self.format.claims(password) {
            // The password alone, moved to the front in place (no second copy to wipe; a
            // zeroized `Vec` wipes its whole capacity on drop).
            decoded.copy_within(colon + 1.., 0);
            let len = decoded.len() - colon - 1;
            decoded.truncate(len);
            Ok(Found::Decoded(decoded))
        } else if user.is_empty() || password.is_empty() {
            Err(ExtractError::Unreadable)
        } else {
            let prefix = self.format.prefix().as_bytes();
            let len = prefix.len() + 1 + user.len() + 1 + password.len();
            // Refused before it is copied, as `offer` would refuse it after.
            if len > MAX_KEY_LEN {
                return Some(Err(ExtractError::Unreadable));
            }
            let mut key = Zeroizing::new(Vec::with_capacity(len));
            for part in [prefix, b"_", user, b"_", password] {
                key.extend_from_slice(part);
            }
            Ok(Found::Decoded(key))
        })
    }

    /// Removes every configured source from the request, so the inner service never sees a
    /// key (Kong's `hide_credentials`).
    pub fn strip<B>(&self, req: &mut http::Request<B>) {
        for source in self.sources.iter() {
            if let KeySource::Query(param) = source {
                strip_query(req.uri_mut(), param);
            }
        }
        let headers = req.headers_mut();
        for source in self.sources.iter() {
            match source {
                KeySource::Header(name) => {
                    headers.remove(name);
                }
                KeySource::Query(_) => {}
                KeySource::Basic => {
                    if headers
                        .get_all(AUTHORIZATION)
                        .iter()
                        .any(|v| is_basic(v.as_bytes()))
                    {
                        // Keep any other scheme's credentials: they are not ours to hide.
                        let others: Vec<_> = headers
                            .get_all(AUTHORIZATION)
                            .iter()
                            .filter(|v| !is_basic(v.as_bytes()))
                            .cloned()
                            .collect();
                        headers.remove(AUTHORIZATION);
                        for value in others {
                            headers.append(AUTHORIZATION, value);
                        }
                    }
                }
            }
        }
    }
}

/// A key found in a request, not yet copied into a [`PresentedKey`]: borrowed from the
/// request, or decoded (percent-encoding, HTTP Basic) and wiped on drop.
enum Found<'a> {
    Borrowed(&'a [u8]),
    Decoded(Zeroizing<Vec<u8>>),
}

impl Found<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Found::Borrowed(bytes) => bytes,
            Found::Decoded(bytes) => bytes,
        }
    }
}

/// A field value without the optional whitespace (spaces and tabs) around it.
fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

fn is_basic(value: &[u8]) -> bool {
    trim_ows(value)
        .get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"basic "))
}

/// Drops the `param` pairs from the query, leaving the others byte for byte.
fn strip_query(uri: &mut Uri, param: &str) {
    let Some(query) = uri.query() else { return };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            form_urlencoded::parse(name.as_bytes())
                .next()
                .is_none_or(|(n, _)| n != param)
        })
        .collect();
    if kept.len() == query.split('&').count() {
        return;
    }
    let mut path_and_query = uri.path().to_owned();
    if !kept.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&kept.join("&"));
    }
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    // Cannot fail: the parts come from a valid URI, less some query pairs.
    if let Ok(stripped) = Uri::from_parts(parts) {
        *uri = stripped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn extractor(sources: impl IntoIterator<Item = KeySource>) -> KeyExtractor {
        KeyExtractor::new(sources, &KeyFormat::default())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn expose(r: Result<PresentedKey, ExtractError>) -> Result<Vec<u8>, ExtractError> {
        r.map(|k| k.expose().to_vec())
    }

    #[test]
    fn query_is_form_urlencoded() {
        let ex = KeyExtractor::default();
        let uri: Uri = "/x?a=1&apikey=a%2Bb+c&z".parse().unwrap();
        assert_eq!(
            expose(ex.extract(&uri, &HeaderMap::new())),
            Ok(b"a+b c".to_vec())
        );
    }

    #[test]
    fn same_key_twice_is_fine_two_keys_are_not() {
        let ex = KeyExtractor::default();
        let uri: Uri = "/x?apikey=k1".parse().unwrap();
        assert_eq!(
            expose(ex.extract(&uri, &headers(&[("apikey", "k1")]))),
            Ok(b"k1".to_vec())
        );
        assert_eq!(
            expose(ex.extract(&uri, &headers(&[("apikey", "k2")]))),
            Err(ExtractError::Conflicting)
        );
        let twice: Uri = "/x?apikey=k1&apikey=k2".parse().unwrap();
        assert_eq!(
            expose(ex.extract(&twice, &HeaderMap::new())),
            Err(ExtractError::Conflicting)
        );
        assert_eq!(
            expose(ex.extract(
                &"/".parse().unwrap(),
                &headers(&[("apikey", "k1"), ("apikey", "k3")])
            )),
            Err(ExtractError::Conflicting)
        );
    }

    #[test]
    fn whitespace_around_a_header_value_is_not_part_of_the_key() {
        let key = "tak_abc_def";
        let ex = extractor([KeySource::header(), KeySource::Basic]);
        for value in [" tak_abc_def", "tak_abc_def  ", "\t tak_abc_def \t"] {
            let h = headers(&[("apikey", value)]);
            assert_eq!(
                expose(ex.extract(&Uri::from_static("/"), &h)),
                Ok(key.as_bytes().to_vec()),
                "{value:?}"
            );
        }
        // Only around it: inside, a space is part of the value (and no key has one).
        let h = headers(&[("apikey", "tak_abc _def")]);
        assert_eq!(
            expose(ex.extract(&Uri::from_static("/"), &h)),
            Ok(b"tak_abc _def".to_vec())
        );
        // Whitespace alone is no key.
        let h = headers(&[("apikey", "  \t ")]);
        assert_eq!(
            ex.extract(&Uri::from_static("/"), &h).err(),
            Some(ExtractError::Missing)
        );
        let basic = format!(
            "  Basic {} ",
            base64::engine::general_purpose::STANDARD.encode("abc:def")
        );
        let h = headers(&[("authorization", &basic)]);
        assert_eq!(
            expose(ex.extract(&Uri::from_static("/"), &h)),
            Ok(key.as_bytes().to_vec())
        );
    }

    #[test]
    fn missing_and_empty() {
        let ex = KeyExtractor::default();
        assert_eq!(
            expose(ex.extract(&"/?apikey=".parse().unwrap(), &headers(&[("apikey", "")]))),
            Err(ExtractError::Missing)
        );
        let long = "a".repeat(crate::key::MAX_KEY_LEN + 1);
        assert_eq!(
            expose(ex.extract(&"/".parse().unwrap(), &headers(&[("apikey", &long)]))),
            Err(ExtractError::Unreadable)
        );
    }

    #[test]
    fn every_source_takes_a_key_of_the_longest_length_and_refuses_one_byte_more() {
        use crate::key::MAX_KEY_LEN;
        let ex = extractor([KeySource::header(), KeySource::query(), KeySource::Basic]);
        let b64 = |s: &str| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(s);
            format!("Basic {encoded}")
        };
        // `tak_` + id + `_` + secret, `len` bytes in all.
        let key = |len: usize| format!("tak_ID1_{}", "s".repeat(len - 8));
        for (len, expected) in [
            (MAX_KEY_LEN, Ok(key(MAX_KEY_LEN).into_bytes())),
            (MAX_KEY_LEN + 1, Err(ExtractError::Unreadable)),
        ] {
            let k = key(len);
            let in_header = headers(&[("apikey", &k)]);
            let root: Uri = "/".parse().unwrap();
            assert_eq!(
                expose(ex.extract(&root, &in_header)),
                expected,
                "header, {len}"
            );
            // Percent-encoded, so the query's value is decoded (owned), not borrowed.
            let query: Uri = format!("/?apikey={}", k.replace('_', "%5F"))
                .parse()
                .unwrap();
            let none = HeaderMap::new();
            assert_eq!(expose(ex.extract(&query, &none)), expected, "query, {len}");
            let whole = headers(&[("authorization", &b64(&format!("anyone:{k}")))]);
            assert_eq!(
                expose(ex.extract(&root, &whole)),
                expected,
                "basic key, {len}"
            );
            let parts = headers(&[("authorization", &b64(&format!("ID1:{}", &k[8..])))]);
            assert_eq!(
                expose(ex.extract(&root, &parts)),
                expected,
                "basic parts, {len}"
            );
            // The same key in all three places is one key.
            let all = headers(&[("apikey", &k), ("authorization", &b64(&format!("x:{k}")))]);
            assert_eq!(
                expose(ex.extract(&query, &all)),
                expected,
                "all three, {len}"
            );
        }
    }

    #[test]
    fn configured_names_only() {
        let ex = extractor([
            KeySource::Header(HeaderName::from_static("x-api-key")),
            KeySource::Query("key".into()),
        ]);
        let uri: Uri = "/?apikey=nope".parse().unwrap();
        assert_eq!(
            expose(ex.extract(&uri, &headers(&[("apikey", "nope")]))),
            Err(ExtractError::Missing)
        );
        assert_eq!(
            expose(ex.extract(&"/?key=k".parse().unwrap(), &HeaderMap::new())),
            Ok(b"k".to_vec())
        );
        assert_eq!(
            expose(ex.extract(&"/".parse().unwrap(), &headers(&[("x-api-key", "h")]))),
            Ok(b"h".to_vec())
        );
    }

    #[test]
    fn basic_rebuilds_the_key() {
        let ex = extractor([KeySource::Basic]);
        let b64 = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        let h = headers(&[("authorization", &b64("ID1:SECRET"))]);
        assert_eq!(
            expose(ex.extract(&"/".parse().unwrap(), &h)),
            Ok(b"tak_ID1_SECRET".to_vec())
        );
        let h = headers(&[("authorization", &b64("anyone:tak_ID1_SECRET"))]);
        assert_eq!(
            expose(ex.extract(&"/".parse().unwrap(), &h)),
            Ok(b"tak_ID1_SECRET".to_vec())
        );
        let h = headers(&[("authorization", "Basic !!!")]);
        assert_eq!(
            expose(ex.extract(&"/".parse().unwrap(), &h)),
            Err(ExtractError::Unreadable)
        );
        let h = headers(&[("authorization", "Bearer abc")]);
        assert_eq!(
            expose(ex.extract(&"/".parse().unwrap(), &h)),
            Err(ExtractError::Missing)
        );
    }

    #[test]
    fn strip_removes_only_the_key() {
        let ex = extractor([KeySource::header(), KeySource::query(), KeySource::Basic]);
        let mut req = http::Request::get("/p/a%20th?a=1&apikey=x&b=%2B&apikey=y")
            .header("apikey", "x")
            .header("authorization", "Basic eDp5")
            .header("other", "1")
            .body(())
            .unwrap();
        ex.strip(&mut req);
        assert_eq!(req.uri(), "/p/a%20th?a=1&b=%2B");
        assert!(
            req.headers().get("apikey").is_none() && req.headers().get("authorization").is_none()
        );
        assert_eq!(req.headers().get("other").unwrap(), "1");
        let mut only = http::Request::get("http://h/p?apikey=x")
            .header("authorization", "Bearer t")
            .body(())
            .unwrap();
        ex.strip(&mut only);
        assert_eq!(only.uri(), "http://h/p");
        assert!(
            only.headers().get("authorization").is_some(),
            "a bearer token is not ours to strip"
        );
        let mut both = http::Request::get("/")
            .header("authorization", "Bearer t")
            .header("authorization", "Basic eDp5")
            .body(())
            .unwrap();
        ex.strip(&mut both);
        let left: Vec<_> = both.headers().get_all("authorization").iter().collect();
        assert_eq!(left, ["Bearer t"]);
    }
}
