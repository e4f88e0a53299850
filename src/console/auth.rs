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
use crate::session::{Session, SessionDigest, SessionId};
use crate::store::SessionStore;
use crate::validator::ValidationError;

/// The cookie's name over plain HTTP, and (with the `__Host-` prefix) over HTTPS.
const COOKIE: &str = "tower-apikey-console";
const SECURE_COOKIE: &str = "__Host-tower-apikey-console";
/// The form token's cookie under the host app's authentication.
const TOKEN_COOKIE: &str = "tower-apikey-console-token";
const SECURE_TOKEN_COOKIE: &str = "__Host-tower-apikey-console-token";
/// Ended sessions pruned at each sign-in, at most: bounded work on a request.
const PRUNE_AT_SIGN_IN: usize = 100;

/// Someone signed in, whose admin key still stands (or whom the host app vouches for): who
/// they are, their token for forms, and where the console is mounted. Without one, a page
/// sends the browser to sign in (or, under the host app's authentication, refuses).
#[derive(Debug)]
pub(crate) struct SignedIn {
    /// The admin key's principal, or the host app's name for the person.
    pub(crate) name: String,
    /// What every form of theirs carries.
    pub(crate) csrf_token: String,
    pub(crate) base: Base,
    pub(crate) via: Via,
}

/// How they signed in.
#[derive(Debug)]
pub(crate) enum Via {
    /// With an admin key, in a console session.
    Key {
        digest: SessionDigest,
        identity: Identity,
    },
    /// Through the host app's own authentication.
    Host,
}

impl SignedIn {
    /// Who changes are recorded as made by: `console:<principal>/<key id>` with an admin
    /// key, `console:<name>` under the host app's authentication.
    pub(crate) fn actor(&self) -> String {
        match &self.via {
            Via::Key { identity, .. } => {
                format!("console:{}/{}", identity.principal(), identity.key_id())
            }
            Via::Host => format!("console:{}", self.name),
        }
    }
}

/// Who may administer keys, as the host app knows them: given a request, the person's name
/// when they may, `None` otherwise. See [`Console::authenticate_with`](super::Console::authenticate_with).
pub(crate) type HostAuth = std::sync::Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

impl FromRequestParts<super::State> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &super::State,
    ) -> Result<Self, Response> {
        let base = parts.extensions.get::<Base>().cloned().unwrap_or_default();
        if let Some(host) = &console.host_auth {
            let Some(name) = host(parts) else {
                return Err(ConsoleError::NotAllowed.into_response());
            };
            let Some(HostToken(token)) = parts.extensions.get::<HostToken>().cloned() else {
                return Err(ConsoleError::Forbidden.into_response());
            };
            return Ok(SignedIn {
                name,
                csrf_token: token,
                base,
                via: Via::Host,
            });
        }
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
            name: session.principal,
            csrf_token: session.csrf_token,
            base,
            via: Via::Key { digest, identity },
        })
    }
}

/// The form token of someone the host app signed in: random, in a cookie of its own
/// (`HttpOnly`, `SameSite=Strict`), sent back in every form. A site that cannot read the
/// cookie cannot send the token.
#[derive(Debug, Clone)]
pub(crate) struct HostToken(pub(crate) String);

/// Middleware, for pages behind the host app's authentication (the console's, self-service
/// pages): reads the token cookie, or makes one and sets it on the response. `secure`: over
/// HTTPS (`__Host-`, `Secure`).
pub(crate) async fn host_token(
    State(secure): State<bool>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let name = if secure {
        SECURE_TOKEN_COOKIE
    } else {
        TOKEN_COOKIE
    };
    let (token, fresh) = match cookie_value(request.headers(), name).and_then(SessionId::parse) {
        Some(token) => (token, false),
        None => match SessionId::generate() {
            Ok(token) => (token, true),
            Err(error) => return ConsoleError::from(error).into_response(),
        },
    };
    request
        .extensions_mut()
        .insert(HostToken(token.expose().to_owned()));
    let base = Base::of(&request);
    let mut response = next.run(request).await;
    if fresh {
        response.headers_mut().append(
            header::SET_COOKIE,
            cookie(name, secure, &base, Some(&token)),
        );
    }
    response
}

/// The session id the request's cookie holds, if it could be one.
fn session_id(headers: &HeaderMap, secure: bool) -> Option<SessionId> {
    let name = if secure { SECURE_COOKIE } else { COOKIE };
    cookie_value(headers, name).and_then(SessionId::parse)
}

/// The value of the cookie `name`.
fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value of cookie `name` carrying `value` (or, with `None`, removing it).
fn cookie(name: &str, secure: bool, base: &Base, value: Option<&SessionId>) -> HeaderValue {
    let (path, secure_flag) = if secure {
        ("/", "; Secure")
    } else {
        (base.cookie_path(), "")
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
        cookie(
            session_cookie(console.secure_cookies),
            console.secure_cookies,
            &base,
            Some(&id),
        ),
    );
    Ok(response)
}

fn session_cookie(secure: bool) -> &'static str {
    if secure {
        SECURE_COOKIE
    } else {
        COOKIE
    }
}

pub(crate) async fn sign_out(
    State(console): State<super::State>,
    Change { who, .. }: Change,
) -> Result<Response, ConsoleError> {
    let Via::Key { digest, identity } = &who.via else {
        // The host app signs its people out.
        return Err(ConsoleError::NotFound);
    };
    console.sessions.delete_session(digest).await?;
    tracing::info!(key_id = %identity.key_id(), "console: signed out");
    let mut response = Redirect::to(&who.base.at("/sign-in")).into_response();
    let name = session_cookie(console.secure_cookies);
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(name, console.secure_cookies, &who.base, None),
    );
    Ok(response)
}
