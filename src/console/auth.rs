//! Signing in and out, and who is signed in: the session cookie, and the check every page
//! makes that its admin key still stands ([`SignedIn`]).

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use jiff::Timestamp;
use maud::html;

use super::csrf::{same_origin, Change};
use super::error::ConsoleError;
use super::form::FormFields;
use super::layout::{self, Base};
use crate::identity::Identity;
use crate::key::PresentedKey;
use crate::session::{Session, SessionId};
use crate::store::SessionStore;
use crate::validator::ValidationError;

/// The cookie's name over plain HTTP, and (with the `__Host-` prefix) over HTTPS.
const COOKIE: &str = "tower-apikey-console";
const SECURE_COOKIE: &str = "__Host-tower-apikey-console";
/// Ended sessions pruned at each sign-in, at most: bounded work on a request.
const PRUNE_AT_SIGN_IN: usize = 100;

/// Someone signed in, whose admin key still stands: the session, the key's identity now,
/// and where the console is mounted. Without one, a page sends the browser to sign in.
#[derive(Debug)]
pub(crate) struct SignedIn {
    pub(crate) session: Session,
    pub(crate) identity: Identity,
    pub(crate) base: Base,
}

impl SignedIn {
    /// Who changes are recorded as made by: `console:<principal>/<key id>`.
    pub(crate) fn actor(&self) -> String {
        format!(
            "console:{}/{}",
            self.identity.principal(),
            self.identity.key_id()
        )
    }
}

impl FromRequestParts<super::State> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &super::State,
    ) -> Result<Self, Response> {
        let base = parts.extensions.get::<Base>().cloned().unwrap_or_default();
        let to_sign_in = || Redirect::to(&base.at("/sign-in")).into_response();
        let Some(id) = session_id(&parts.headers, console.secure_cookies) else {
            return Err(to_sign_in());
        };
        let digest = id.digest();
        let sessions = &console.sessions;
        let Some(session) = sessions
            .session(&digest)
            .await
            .map_err(|e| ConsoleError::from(e).into_response())?
        else {
            return Err(to_sign_in());
        };
        let now = Timestamp::now();
        let identity = if console.lifetime.is_live(&session, now) {
            console
                .validator
                .identity_by_id(&session.key_id)
                .await
                .map_err(|e| ConsoleError::from(e).into_response())?
                .filter(|identity| identity.grants(&console.permission))
        } else {
            None
        };
        let Some(identity) = identity else {
            // Ended, or its key no longer stands: gone on every server.
            if let Err(error) = sessions.delete_session(&digest).await {
                tracing::warn!(%error, "console: an ended session could not be deleted");
            }
            return Err(to_sign_in());
        };
        if console.lifetime.needs_touch(&session, now) {
            if let Err(error) = sessions.touch_session(&digest, now).await {
                tracing::warn!(%error, "console: a session's last use could not be written");
            }
        }
        Ok(SignedIn {
            session,
            identity,
            base,
        })
    }
}

/// The session id the request's cookie holds, if it could be one.
fn session_id(headers: &HeaderMap, secure: bool) -> Option<SessionId> {
    let name = if secure { SECURE_COOKIE } else { COOKIE };
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .and_then(|(_, value)| SessionId::parse(value))
}

/// The `Set-Cookie` value carrying `value` (or, with `None`, removing the cookie).
fn cookie(secure: bool, base: &Base, value: Option<&SessionId>) -> HeaderValue {
    let (name, path, secure_flag) = if secure {
        (SECURE_COOKIE, "/", "; Secure")
    } else {
        (COOKIE, base.cookie_path(), "")
    };
    let (value, max_age) = match value {
        Some(id) => (id.expose(), ""),
        None => ("", "; Max-Age=0"),
    };
    let text =
        format!("{name}={value}; HttpOnly; SameSite=Strict; Path={path}{secure_flag}{max_age}");
    // Every part is ASCII: a base64url id and a path the router matched.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `/`: the keys, or the sign-in form.
pub(crate) async fn home(base: Base) -> Redirect {
    Redirect::to(&base.at("/keys"))
}

pub(crate) async fn sign_in_form(base: Base) -> Html<String> {
    Html(sign_in_page(&base, None).into_string())
}

fn sign_in_page(base: &Base, refused: Option<&str>) -> maud::Markup {
    layout::bare(
        base,
        "Sign in",
        html! {
            section.narrow {
                h1 { "Sign in" }
                p { "Sign in with an API key that may administer keys." }
                @if let Some(message) = refused {
                    p.error role="alert" { (message) }
                }
                form method="post" action=(base.at("/sign-in")) {
                    div.field {
                        label for="key" { "Admin API key" }
                        input type="password" id="key" name="key" autocomplete="off" required;
                    }
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// One answer for every key that cannot sign in: wrong, expired, revoked, inactive or
/// without the permission.
const REFUSED: &str = "That key cannot sign in here.";

pub(crate) async fn sign_in(
    State(console): State<super::State>,
    base: Base,
    headers: HeaderMap,
    uri: axum::http::Uri,
    form: FormFields,
) -> Result<Response, ConsoleError> {
    if !same_origin(&headers, &uri) {
        return Err(ConsoleError::Forbidden);
    }
    let refused = || {
        (
            StatusCode::UNAUTHORIZED,
            Html(sign_in_page(&base, Some(REFUSED)).into_string()),
        )
            .into_response()
    };
    let Some(key) = form
        .get("key")
        .map(str::trim)
        .and_then(|k| PresentedKey::new(k.as_bytes()).ok())
    else {
        return Ok(refused());
    };
    let identity = match console.validator.validate(&key).await {
        Ok(identity) if identity.grants(&console.permission) => identity,
        Ok(_) | Err(ValidationError::Rejected(_)) => return Ok(refused()),
        Err(other) => return Err(other.into()),
    };
    // A new id at every sign-in: a session id planted before it is worth nothing after.
    if let Some(old) = session_id(&headers, console.secure_cookies) {
        console.sessions.delete_session(&old.digest()).await?;
    }
    let now = Timestamp::now();
    let (seen_before, created_before) = console.lifetime.ended_before(now);
    if let Err(error) = console
        .sessions
        .prune_sessions(seen_before, created_before, PRUNE_AT_SIGN_IN)
        .await
    {
        tracing::warn!(%error, "console: ended sessions could not be pruned");
    }
    let id = SessionId::generate()?;
    let session = Session::new(&id, identity.key_id().clone(), identity.principal(), now)?;
    console.sessions.insert_session(session).await?;
    tracing::info!(key_id = %identity.key_id(), principal = identity.principal(), "console: signed in");
    let mut response = Redirect::to(&base.at("/keys")).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(console.secure_cookies, &base, Some(&id)),
    );
    Ok(response)
}

pub(crate) async fn sign_out(
    State(console): State<super::State>,
    Change { who, .. }: Change,
) -> Result<Response, ConsoleError> {
    console.sessions.delete_session(&who.session.digest).await?;
    tracing::info!(key_id = %who.session.key_id, "console: signed out");
    let mut response = Redirect::to(&who.base.at("/sign-in")).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(console.secure_cookies, &who.base, None),
    );
    Ok(response)
}
