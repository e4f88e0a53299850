//! What a console request that failed gets: a page saying what went wrong, with the status
//! that says it too. Never a key, never a stack.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use maud::html;

use super::layout::{self, Base};
use crate::lifecycle::LifecycleError;
use crate::store::StoreError;
use crate::validator::ValidationError;

/// Why a console request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// The request itself is not usable: a bad form or query.
    #[error("{0}")]
    BadRequest(String),
    /// A state change without the session's token, or from another site.
    #[error("This request was refused: it did not come from a console page of this session.")]
    Forbidden,
    /// No one is signed in (a self-service page).
    #[error("Sign in first.")]
    Unauthorized,
    /// The host app's authentication says this person may not administer keys.
    #[error("You may not administer API keys here.")]
    NotAllowed,
    /// No such page or key.
    #[error("There is nothing here.")]
    NotFound,
    /// The key manager refused or failed.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The validator could not check a key (the store, or too much work at once).
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// No randomness for a session id or token.
    #[error(transparent)]
    Rng(#[from] crate::random::RngError),
}

impl From<StoreError> for ConsoleError {
    fn from(error: StoreError) -> Self {
        ConsoleError::Lifecycle(LifecycleError::Store(error))
    }
}

impl ConsoleError {
    /// The status sent.
    pub fn status(&self) -> StatusCode {
        use LifecycleError as L;
        match self {
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Unauthorized => StatusCode::UNAUTHORIZED,
            ConsoleError::Forbidden | ConsoleError::NotAllowed => StatusCode::FORBIDDEN,
            ConsoleError::NotFound | ConsoleError::Lifecycle(L::NotFound(_)) => {
                StatusCode::NOT_FOUND
            }
            ConsoleError::Lifecycle(e) if e.is_refusal() => StatusCode::CONFLICT,
            ConsoleError::Lifecycle(L::Invalid(_) | L::Expiry(_)) => StatusCode::BAD_REQUEST,
            ConsoleError::Lifecycle(L::Store(StoreError::Unavailable(_)))
            | ConsoleError::Validation(
                ValidationError::Unavailable(_) | ValidationError::Overloaded,
            ) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status.is_server_error() {
            // The cause is logged; the person learns whether trying again may help.
            tracing::error!(error = %self, "console request failed");
            match status {
                StatusCode::SERVICE_UNAVAILABLE => {
                    "The key store is unavailable or busy. Try again in a moment.".to_owned()
                }
                _ => "The server failed to handle the request.".to_owned(),
            }
        } else {
            self.to_string()
        };
        let mut response = status.into_response();
        // Drawn by `render` below, which knows where the console is mounted.
        response.extensions_mut().insert(ErrorPage(message));
        response
    }
}

/// The message of an error page not yet drawn.
#[derive(Debug, Clone)]
struct ErrorPage(String);

/// Middleware: notes where the console is mounted for the handlers ([`Base`]), and draws
/// the page of an error response in the console's layout.
pub(crate) async fn render(mut request: Request, next: Next) -> Response {
    let base = Base::of(&request);
    request.extensions_mut().insert(base.clone());
    let mut response = next.run(request).await;
    if let Some(ErrorPage(message)) = response.extensions_mut().remove::<ErrorPage>() {
        let status = response.status();
        let title = status.canonical_reason().unwrap_or("Error");
        let page = layout::bare(
            &base,
            title,
            html! {
                h1 { (title) }
                p role="alert" { (message) }
                p { a href={ (base) "/keys" } { "Back to the keys" } }
            },
        );
        return (status, Html(page.into_string())).into_response();
    }
    response
}

pub(crate) async fn not_found() -> ConsoleError {
    ConsoleError::NotFound
}
