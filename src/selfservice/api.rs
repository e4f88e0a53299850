//! The self-service JSON API: the signed-in user's own keys, in the admin API's shapes and
//! error vocabulary.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, OriginalUri, Path, Request, State,
};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use jiff::{SignedDuration, Timestamp};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{AccountUser, KeyRequest, PolicyRefusal, Settings};
use crate::admin::{mount_path, AdminError, IssuedKey, KeyPage, KeyView};
use crate::lifecycle::{Expiry, KeyPatch};
use crate::record::{KeyRecord, Revocation, RevocationReason};
use crate::store::KeyQuery;

type St = State<Arc<Settings>>;

/// The largest body read (64 KiB), as the admin API.
const BODY_LIMIT: usize = 64 * 1024;
/// The most keys a listing shows: far above any per-user limit.
const MAX_LISTED: usize = 500;

pub(super) fn router<T: Clone + Send + Sync + 'static>(state: Arc<Settings>) -> Router<T> {
    Router::new()
        .route("/", get(list).post(create))
        .route("/openapi.json", get(openapi))
        .route("/{id}", delete(remove))
        .route("/{id}/rotate", post(rotate))
        .route("/{id}/regenerate", post(regenerate))
        .route("/{id}/revoke", post(revoke))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .fallback(|| async { AdminError::NotFound })
        .method_not_allowed_fallback(|| async { AdminError::MethodNotAllowed })
        .layer(axum::middleware::from_fn(same_site_json))
        .with_state(state)
}

/// Refuses what a page of another site could send: a cross-site `Origin` or
/// `Sec-Fetch-Site`, and a POST that is not JSON (a plain form).
async fn same_site_json(request: Request, next: Next) -> Response {
    if !crate::console::same_origin(request.headers(), request.uri()) {
        return AdminError::Forbidden("a request from another site is refused".into())
            .into_response();
    }
    if request.method() == Method::POST {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return AdminError::BadRequest {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: "the request body must be JSON (content-type: application/json)".into(),
            }
            .into_response();
        }
    }
    next.run(request).await
}

/// The signed-in user, from the app's resolver; 401 without one.
struct User(AccountUser);

impl FromRequestParts<Arc<Settings>> for User {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<Settings>,
    ) -> Result<Self, AdminError> {
        (state.resolve)(parts)
            .map(User)
            .ok_or(AdminError::Unauthorized)
    }
}

/// A JSON body that may be left out (empty): then `T::default()`.
struct OptionalJson<T>(T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AdminError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| AdminError::BadRequest {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!("the request body is larger than {BODY_LIMIT} bytes"),
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(OptionalJson)
            .map_err(|e| AdminError::bad_request(format!("the request body does not fit: {e}")))
    }
}

/// `user`'s key `id`; another user's is "not found", word for word as a missing one.
async fn own(settings: &Settings, user: &AccountUser, id: &str) -> Result<KeyRecord, AdminError> {
    settings.own(user, id).await?.ok_or(AdminError::NotFound)
}

fn refused(refusal: PolicyRefusal) -> AdminError {
    match refusal {
        PolicyRefusal::Invalid { .. } => AdminError::bad_request(refusal.to_string()),
        _ => AdminError::Forbidden(refusal.to_string()),
    }
}

async fn openapi(OriginalUri(original): OriginalUri, uri: Uri, _: User) -> Response {
    match super::openapi_document(&mount_path(&original, &uri)) {
        Some(document) => Json(document).into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn list(State(settings): St, User(user): User) -> Result<Json<KeyPage>, AdminError> {
    let records = settings
        .manager
        .query(
            &KeyQuery::new()
                .principal(user.principal.clone())
                .limit(MAX_LISTED),
        )
        .await?;
    Ok(Json(KeyPage::of(records, MAX_LISTED, Timestamp::now())))
}

/// The body of a create request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    name: Option<String>,
    #[serde(default)]
    permissions: Vec<String>,
    expires: Option<String>,
    rate_limit: Option<String>,
    quota: Option<String>,
}

async fn create(
    State(settings): St,
    User(user): User,
    OriginalUri(original): OriginalUri,
    local: Uri,
    body: Result<Json<Create>, JsonRejection>,
) -> Result<Response, AdminError> {
    let Json(body) = body.map_err(|e| {
        AdminError::bad_request(format!("the request body does not fit: {}", e.body_text()))
    })?;
    let request = KeyRequest {
        name: body.name,
        permissions: body.permissions,
        expires: body.expires,
        rate_limit: body.rate_limit,
        quota: body.quota,
    };
    let new = settings
        .policy
        .check(&user, &request, Timestamp::now())
        .map_err(refused)?;
    let (record, key) = settings
        .manager
        .acting_as(user.principal.clone())
        .issue(new)
        .await?;
    tracing::info!(key_id = %record.id, principal = %record.principal, "self-service: key created");
    let location = format!("{}/{}", mount_path(&original, &local), record.id);
    let mut response = (
        StatusCode::CREATED,
        Json(IssuedKey::new(&record, key, Timestamp::now())),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    /// How long the old key keeps working (`1d`); none by default.
    grace: Option<String>,
}

async fn rotate(
    State(settings): St,
    User(user): User,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<Rotate>,
) -> Result<Json<IssuedKey>, AdminError> {
    let record = own(&settings, &user, &id).await?;
    let grace: jiff::Span = body
        .grace
        .as_deref()
        .unwrap_or("0s")
        .parse()
        .map_err(|_| AdminError::bad_request("grace: a duration, such as 1h or 1d"))?;
    let keys = settings.manager.acting_as(user.principal.clone());
    let (mut new, key) = keys.rotate(&record.id, grace).await?;
    // A key made without an expiry (by an administrator) comes back within the user's.
    let now = Timestamp::now();
    let latest = SignedDuration::try_from(settings.policy.max_lifetime_of(&user))
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX);
    if new.expires_at.is_none_or(|at| at > latest) {
        new = keys
            .update(&new.id, KeyPatch::new().expires(Expiry::At(latest)))
            .await?;
    }
    tracing::info!(key_id = %new.id, replaces = %record.id, "self-service: key rotated");
    Ok(Json(IssuedKey::new(&new, key, now)))
}

async fn regenerate(
    State(settings): St,
    User(user): User,
    Path(id): Path<String>,
) -> Result<Json<IssuedKey>, AdminError> {
    let record = own(&settings, &user, &id).await?;
    let (record, key) = settings
        .manager
        .acting_as(user.principal.clone())
        .regenerate(&record.id)
        .await?;
    tracing::info!(key_id = %record.id, "self-service: key regenerated");
    Ok(Json(IssuedKey::new(&record, key, Timestamp::now())))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Revoke {
    reason: Option<RevocationReason>,
    location: Option<String>,
}

async fn revoke(
    State(settings): St,
    User(user): User,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<Revoke>,
) -> Result<Json<KeyView>, AdminError> {
    let record = own(&settings, &user, &id).await?;
    let mut revocation = Revocation::new(body.reason.unwrap_or_default());
    revocation.location = body.location;
    let record = settings
        .manager
        .acting_as(user.principal.clone())
        .revoke_with(&record.id, revocation)
        .await?;
    tracing::info!(key_id = %record.id, "self-service: key revoked");
    Ok(Json(KeyView::new(&record, Timestamp::now())))
}

async fn remove(
    State(settings): St,
    User(user): User,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    let record = own(&settings, &user, &id).await?;
    // Never forced: a protected key is the administrator's to delete.
    settings
        .manager
        .acting_as(user.principal.clone())
        .delete(&record.id, false)
        .await?;
    tracing::info!(key_id = %record.id, "self-service: key deleted");
    Ok(StatusCode::NO_CONTENT)
}
