//! Cross-site request forgery: every state change is a POST from the console's own origin
//! carrying its session's token ([`Change`]); the sign-in form, which has no session yet,
//! is held to the origin alone.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::auth::SignedIn;
use super::error::ConsoleError;
use super::form::FormFields;

/// The form field every console form carries its session's token in.
pub(crate) const FIELD: &str = "csrf";

/// Whether a POST comes from the console's own origin: its `Origin` names this host (not
/// `null`, not another site); where a browser sends no `Origin`, its `Sec-Fetch-Site` says
/// `same-origin`. A request with neither is no browser's: the token alone decides.
pub(crate) fn same_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()));
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        // `scheme://host[:port]`; `null` and anything else has no host to match.
        let authority = origin
            .split_once("://")
            .map(|(_, rest)| rest)
            .filter(|rest| !rest.contains('/'));
        return match (authority, host) {
            (Some(origin), Some(host)) => origin.eq_ignore_ascii_case(host),
            _ => false,
        };
    }
    match headers.get("sec-fetch-site") {
        Some(site) => site.as_bytes() == b"same-origin",
        None => true,
    }
}

/// Whether `form` carries `expected` as its token (compared in constant time).
pub(crate) fn token_matches(form: &FormFields, expected: &str) -> bool {
    let sent = form.get(FIELD).unwrap_or_default().as_bytes();
    bool::from(sent.ct_eq(expected.as_bytes()))
}

/// A state change: a signed-in person's POST from the console's origin, with their
/// session's token; its form. Anything else is refused with 403 before a handler runs (or
/// sent to sign in, when there is no session).
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) who: SignedIn,
    pub(crate) form: FormFields,
}

impl FromRequest<super::State> for Change {
    type Rejection = Response;

    async fn from_request(req: Request, state: &super::State) -> Result<Self, Response> {
        if !same_origin(req.headers(), req.uri()) {
            tracing::warn!("console: a cross-site POST was refused");
            return Err(ConsoleError::Forbidden.into_response());
        }
        let (mut parts, body) = req.into_parts();
        let who = SignedIn::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let form = FormFields::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if !token_matches(&form, &who.csrf_token) {
            tracing::warn!(
                by = who.name.as_str(),
                "console: a POST without its session's token was refused"
            );
            return Err(ConsoleError::Forbidden.into_response());
        }
        Ok(Change { who, form })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn only_the_consoles_own_origin_passes() {
        let uri: Uri = "/keys/revoke".parse().unwrap();
        let host = ("host", "127.0.0.1:3000");
        for (pairs, ok) in [
            (vec![host, ("origin", "http://127.0.0.1:3000")], true),
            (vec![host, ("origin", "HTTP://127.0.0.1:3000")], true),
            (vec![host, ("origin", "http://evil.example")], false),
            (vec![host, ("origin", "http://127.0.0.1:3001")], false),
            (vec![host, ("origin", "null")], false),
            (vec![host, ("origin", "http://127.0.0.1:3000/x")], false),
            (vec![("origin", "http://127.0.0.1:3000")], false),
            (vec![host, ("sec-fetch-site", "same-origin")], true),
            (vec![host, ("sec-fetch-site", "cross-site")], false),
            (vec![host, ("sec-fetch-site", "same-site")], false),
            (vec![host], true),
        ] {
            assert_eq!(same_origin(&headers(&pairs), &uri), ok, "{pairs:?}");
        }
    }
}
