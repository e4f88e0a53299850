//! The style sheet and the script, compiled into the crate and served by the router.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The style sheet's path under the console.
pub(crate) const CSS_PATH: &str = "/assets/console.css";
/// The script's path under the console.
pub(crate) const JS_PATH: &str = "/assets/console.js";

pub(crate) async fn serve(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return super::error::not_found().await.into_response(),
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, kind)], body).into_response()
}
