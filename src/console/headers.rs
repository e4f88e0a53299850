//! The headers every console response carries, whatever made it (a page, an error, an
//! asset): the browser may load only the console's own style sheet and script, send no
//! page elsewhere, frame it nowhere, and keep nothing of it.

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::Response;

/// `default-src 'none'` and only what the pages use: their style sheet and script from the
/// console itself, images inline (the usage chart is inline SVG, no image is fetched).
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
     script-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

const HEADERS: [(HeaderName, &str); 4] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    // `same-origin`, not `no-referrer`: with that, Chromium sends `Origin: null` on the
    // console's own form posts, which the CSRF check must refuse.
    (header::REFERRER_POLICY, "same-origin"),
    (header::CACHE_CONTROL, "no-store"),
];

/// Sets them on `response`, replacing any a handler set.
pub(crate) async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
