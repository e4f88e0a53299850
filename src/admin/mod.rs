//! The key-management REST API as an axum router, guarded by the `apikeyAdmin` permission.
//!
//! What IBM MAS (`POST /v1/apikeys`), Maximo (`mxapiapikey`) and BMC Helix (`/access_keys`)
//! give their administrators, for any axum application: mount [`AdminApi::into_router`]
//! under any path. Every change goes through [`KeyManager`], so it lands in the store, and
//! every validator subscribed to the store (on this server or, with a shared store, on the
//! whole fleet) drops a deactivated, revoked or regenerated key.
//!
//! | method | path | what |
//! |---|---|---|
//! | `GET` | `/openapi.json` | this API's OpenAPI 3 document |
//! | `GET` | `/keys` | list: `?principal=&status=&q=&limit=&after=` |
//! | `POST` | `/keys` | create: `201`, the key returned this once |
//! | `GET` | `/keys/{id}` | one key |
//! | `PATCH` | `/keys/{id}` | name, description, permissions, expiry, status |
//! | `DELETE` | `/keys/{id}` | `204`; a protected key needs `?force=true` |
//! | `POST` | `/keys/{id}/regenerate` | a new secret for the same id (`409` while inactive) |
//! | `GET` | `/principals/{principal}/keys` | one principal's keys |
//! | `POST` | `/principals/{principal}/keys` | create for that principal, within its limit |
//! | `GET` | `/keys/{id}/usage` | its requests by outcome: `?from=&to=&granularity=hour\|day` |
//! | `GET` | `/usage` | the busiest keys: `?principal=&from=&to=&granularity=&limit=` |
//! | `GET` | `/events` | the audit trail, newest first: `?key=&principal=&type=&actor=&since=&limit=&after=` |
//!
//! Every route needs a key carrying the permission (`403` otherwise). Errors are JSON,
//! `{"error": code, "message": text}`, with codes `bad_request`, `payload_too_large` (a body
//! over 64 KiB), `unsupported_media_type`, `invalid_body`, `forbidden`, `not_found`, `limit_reached`, `inactive`, `revoked`,
//! `protected`, `already_exists`, `conflict` (changed by someone else at the same moment;
//! retry), `unavailable` and `internal`; a message names ids and
//! principals, never a key. Changes are recorded as made by the calling key,
//! `admin:<principal>/<key id>` (`created_by`, `updated_by`, and the audit trail's `actor`).
//!
//! # Example
//! ```
//! use axum::Router;
//! use tower::ServiceExt;
//! use tower_apikey::admin::AdminApi;
//! use tower_apikey::permission::API_KEY_ADMIN;
//! use tower_apikey::{ApiKeyLayer, KeyManager, MemoryStore, NewKey, Validator};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let keys = KeyManager::new(store.clone());
//! let (_, admin_key) = keys.issue(NewKey::new("ops").permissions([API_KEY_ADMIN])).await?;
//!
//! let validator = Validator::builder(store).build();
//! let app: Router = Router::new()
//!     .nest("/admin", AdminApi::new(keys, ApiKeyLayer::new(validator)).into_router());
//!
//! let request = http::Request::post("/admin/principals/alice/keys")
//!     .header("apikey", admin_key.expose())
//!     .header("content-type", "application/json")
//!     .body(axum::body::Body::from(r#"{"name": "billing job", "expires": "90d"}"#))?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), 201); // the body holds the new key, shown this once
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod events;
mod model;
pub mod secret_scanning;
mod usage;

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection as BodyRejection, QueryRejection};
use axum::extract::DefaultBodyLimit;
use axum::extract::{FromRequest, OriginalUri, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;

use crate::key::KeyId;
use crate::layer::{ApiKeyLayer, DefaultRejection, RejectionResponse};
use crate::lifecycle::{KeyManager, LifecycleError, NewKey};
use crate::permission::{RequirePermissionLayer, API_KEY_ADMIN};
use crate::store::StoreError;
use crate::Identity;

pub use events::{EventPage, EventView, EventsQuery};
pub use model::{CreateKey, IssuedKey, KeyPage, KeyView, ListQuery, PatchKey};
pub use usage::{TopItem, TopUsage, UsageQuery, UsageView};

/// The OpenAPI 3 document of this API, as served at `/openapi.json` (where its `servers`
/// entry is set to the path the router is mounted under).
pub const OPENAPI: &str = include_str!("openapi.json");

/// Builds the admin router. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct AdminApi<R = DefaultRejection> {
    manager: KeyManager,
    auth: ApiKeyLayer<R>,
    permission: Arc<str>,
}

impl<R> AdminApi<R>
where
    R: RejectionResponse<axum::body::Body>,
{
    /// An admin API over `manager`, authenticating callers with `auth` (its validator should
    /// watch the same store, so a change made here reaches it at once).
    pub fn new(manager: KeyManager, auth: ApiKeyLayer<R>) -> Self {
        Self {
            manager,
            auth,
            permission: API_KEY_ADMIN.into(),
        }
    }

    /// The permission a caller's key must carry (default [`API_KEY_ADMIN`], `apikeyAdmin`).
    pub fn permission(mut self, permission: impl Into<Arc<str>>) -> Self {
        self.permission = permission.into();
        self
    }

    /// The router, with the key check and the permission check applied to every route,
    /// ready to [`nest`](Router::nest) under any path.
    pub fn into_router<T: Clone + Send + Sync + 'static>(self) -> Router<T> {
        let state = Arc::new(self.manager);
        Router::new()
            .route("/openapi.json", get(openapi))
            .route("/keys", get(list).post(create))
            .route("/keys/{id}", get(show).patch(patch).delete(delete))
            .route("/keys/{id}/regenerate", post(regenerate))
            .route("/keys/{id}/usage", get(usage::key_usage))
            .route("/usage", get(usage::top_usage))
            .route("/events", get(events::events))
            .route(
                "/principals/{principal}/keys",
                get(list_principal).post(create_principal),
            )
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(
                RequirePermissionLayer::new(self.permission)
                    .rejection(self.auth.rejection_response().clone()),
            )
            .layer(self.auth)
            .with_state(state)
    }
}

/// The largest request body read (64 KiB): the largest valid body (64 permissions of 128
/// characters, a 2,000-character description) is a tenth of it.
const BODY_LIMIT: usize = 64 * 1024;

type Manager = State<Arc<KeyManager>>;

/// Why an admin request failed; answered as `{"error": code, "message": text}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The key manager refused or failed.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The request itself is not usable: a bad query, body or field.
    #[error("{message}")]
    BadRequest {
        /// `400`, `413`, `415` or `422`.
        status: StatusCode,
        /// What is wrong, for the caller.
        message: String,
    },
    /// No one is signed in (the self-service API).
    #[error("sign in first")]
    Unauthorized,
    /// Signed in, but not allowed this (a permission one does not hold, another site's
    /// request).
    #[error("{0}")]
    Forbidden(String),
    /// No such route or key id.
    #[error("not found")]
    NotFound,
    /// The route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl AdminError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        AdminError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// The status and the error code sent.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use LifecycleError as L;
        match self {
            AdminError::Lifecycle(error) => match error {
                L::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
                L::LimitReached { .. } => (StatusCode::CONFLICT, "limit_reached"),
                L::Inactive(_) => (StatusCode::CONFLICT, "inactive"),
                L::Revoked(_) => (StatusCode::CONFLICT, "revoked"),
                L::Protected(_) => (StatusCode::CONFLICT, "protected"),
                L::AlreadyExists(_) => (StatusCode::CONFLICT, "already_exists"),
                L::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
                L::Invalid(_) | L::Expiry(_) => (StatusCode::BAD_REQUEST, "bad_request"),
                L::Store(StoreError::Unavailable(_)) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
                }
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
            AdminError::BadRequest { status, .. } => match *status {
                StatusCode::UNSUPPORTED_MEDIA_TYPE => (*status, "unsupported_media_type"),
                StatusCode::UNPROCESSABLE_ENTITY => (*status, "invalid_body"),
                StatusCode::PAYLOAD_TOO_LARGE => (*status, "payload_too_large"),
                _ => (StatusCode::BAD_REQUEST, "bad_request"),
            },
            AdminError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AdminError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AdminError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if status.is_server_error() {
            // The cause is logged; the caller learns only that it was not their fault.
            tracing::error!(error = %self, "admin API request failed");
            match status {
                StatusCode::SERVICE_UNAVAILABLE => "The key store is unavailable; try again.",
                _ => "The server failed to handle the request.",
            }
            .to_owned()
        } else {
            self.to_string()
        };
        let mut response: Response = crate::rejection::error_body(status, code, &message);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// `Json<T>` whose refusals are [`AdminError`]s, so every error has the same JSON shape.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned, St: Send + Sync> FromRequest<St> for JsonBody<T> {
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &St) -> Result<Self, AdminError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(body_error(&rejection)),
        }
    }
}

fn body_error(rejection: &BodyRejection) -> AdminError {
    let message = match rejection {
        BodyRejection::JsonDataError(error) => {
            // serde's words name the field and what it wanted.
            let detail = std::error::Error::source(error)
                .map(ToString::to_string)
                .unwrap_or_else(|| error.body_text());
            format!("the request body does not fit: {detail}")
        }
        BodyRejection::JsonSyntaxError(_) => "the request body is not valid JSON".to_owned(),
        BodyRejection::MissingJsonContentType(_) => {
            "the request body must be JSON (content-type: application/json)".to_owned()
        }
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the request body is larger than {BODY_LIMIT} bytes")
        }
        _ => "the request body could not be read".to_owned(),
    };
    AdminError::BadRequest {
        status: rejection.status(),
        message,
    }
}

/// `Query<T>` whose refusals are [`AdminError`]s.
fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, AdminError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| AdminError::bad_request(format!("bad query string: {}", e.body_text())))
}

/// An id from the path; one that cannot be an id is just not found.
fn key_id(id: &str) -> Result<KeyId, AdminError> {
    KeyId::new(id).map_err(|_| AdminError::NotFound)
}

/// Where the router is mounted: the request's original path less its path within the router.
pub(crate) fn mount_path(original: &Uri, local: &Uri) -> String {
    let (original, local) = (original.path(), local.path());
    original
        .strip_suffix(local)
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned()
}

/// Who a change through the API is recorded as made by: `admin:<principal>/<key id>` of the
/// calling key, in the record's stamps and in the audit trail.
pub(crate) fn actor(who: &Identity) -> String {
    format!("admin:{}/{}", who.principal(), who.key_id())
}

async fn openapi(OriginalUri(original): OriginalUri, uri: Uri) -> Response {
    static DOCUMENT: std::sync::OnceLock<Option<serde_json::Value>> = std::sync::OnceLock::new();
    // The document is a constant, checked by this module's tests: this branch is for a bad
    // edit that slipped past them.
    let Some(mut document) = DOCUMENT
        .get_or_init(|| {
            serde_json::from_str(OPENAPI)
                .inspect_err(
                    |error| tracing::error!(%error, "the bundled OpenAPI document is not JSON"),
                )
                .ok()
        })
        .clone()
    else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let base = mount_path(&original, &uri);
    document["servers"] =
        serde_json::json!([{ "url": if base.is_empty() { "/".to_owned() } else { base } }]);
    Json(document).into_response()
}

async fn not_found() -> AdminError {
    AdminError::NotFound
}

async fn method_not_allowed() -> AdminError {
    AdminError::MethodNotAllowed
}

async fn list(
    State(keys): Manager,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<KeyPage>, AdminError> {
    page(&keys, query(q)?).await
}

async fn list_principal(
    State(keys): Manager,
    Path(principal): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<KeyPage>, AdminError> {
    let mut q = query(q)?;
    q.principal = Some(principal);
    page(&keys, q).await
}

async fn page(keys: &KeyManager, q: ListQuery) -> Result<Json<KeyPage>, AdminError> {
    let limit = q.limit()?;
    // One more than the page, to know whether there is a next one.
    let records = keys.query(&q.to_query()?.limit(limit + 1)).await?;
    Ok(Json(KeyPage::of(records, limit, jiff::Timestamp::now())))
}

async fn show(State(keys): Manager, Path(id): Path<String>) -> Result<Json<KeyView>, AdminError> {
    let record = keys.get(&key_id(&id)?).await?;
    Ok(Json(KeyView::new(&record, jiff::Timestamp::now())))
}

async fn create(
    State(keys): Manager,
    who: Identity,
    uri: OriginalUri,
    local: Uri,
    JsonBody(body): JsonBody<CreateKey>,
) -> Result<Response, AdminError> {
    let principal = body
        .principal
        .clone()
        .ok_or_else(|| AdminError::bad_request("principal is required"))?;
    issue(&keys, &who, &uri, &local, principal, body).await
}

async fn create_principal(
    State(keys): Manager,
    who: Identity,
    uri: OriginalUri,
    local: Uri,
    Path(principal): Path<String>,
    JsonBody(body): JsonBody<CreateKey>,
) -> Result<Response, AdminError> {
    if body.principal.as_ref().is_some_and(|p| *p != principal) {
        return Err(AdminError::bad_request(
            "principal in the body differs from the one in the path",
        ));
    }
    issue(&keys, &who, &uri, &local, principal, body).await
}

async fn issue(
    keys: &KeyManager,
    who: &Identity,
    OriginalUri(original): &OriginalUri,
    local: &Uri,
    principal: String,
    body: CreateKey,
) -> Result<Response, AdminError> {
    let new: NewKey = body.into_new_key(principal)?;
    let (record, key) = keys.acting_as(actor(who)).issue(new).await?;
    tracing::info!(key_id = %record.id, principal = %record.principal, by = who.principal(), "API key created");
    let location = format!("{}/keys/{}", mount_path(original, local), record.id);
    let mut response = (
        StatusCode::CREATED,
        Json(IssuedKey::new(&record, key, jiff::Timestamp::now())),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn patch(
    State(keys): Manager,
    who: Identity,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PatchKey>,
) -> Result<Json<KeyView>, AdminError> {
    let id = key_id(&id)?;
    let patch = body.into_patch()?;
    let record = keys.acting_as(actor(&who)).update(&id, patch).await?;
    tracing::info!(key_id = %record.id, status = record.status.as_str(), by = who.principal(), "API key changed");
    Ok(Json(KeyView::new(&record, jiff::Timestamp::now())))
}

#[derive(serde::Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

async fn delete(
    State(keys): Manager,
    who: Identity,
    Path(id): Path<String>,
    q: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<StatusCode, AdminError> {
    let id = key_id(&id)?;
    let force = query(q)?.force;
    keys.acting_as(actor(&who)).delete(&id, force).await?;
    tracing::info!(key_id = %id, by = who.principal(), "API key deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn regenerate(
    State(keys): Manager,
    who: Identity,
    Path(id): Path<String>,
) -> Result<Json<IssuedKey>, AdminError> {
    let id = key_id(&id)?;
    let (record, key) = keys.acting_as(actor(&who)).regenerate(&id).await?;
    tracing::info!(key_id = %id, by = who.principal(), "API key regenerated");
    Ok(Json(IssuedKey::new(&record, key, jiff::Timestamp::now())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_document_is_openapi_3_and_lists_every_route() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3."));
        let paths = document["paths"].as_object().unwrap();
        for (path, methods) in [
            ("/openapi.json", &["get"][..]),
            ("/keys", &["get", "post"]),
            ("/keys/{id}", &["get", "patch", "delete"]),
            ("/keys/{id}/regenerate", &["post"]),
            ("/principals/{principal}/keys", &["get", "post"]),
            ("/keys/{id}/usage", &["get"]),
            ("/usage", &["get"]),
            ("/events", &["get"]),
        ] {
            let item = paths
                .get(path)
                .unwrap_or_else(|| panic!("{path} is not documented"));
            for method in methods {
                assert!(
                    item.get(method).is_some(),
                    "{method} {path} is not documented"
                );
            }
        }
        assert_eq!(
            paths.len(),
            8,
            "a documented path the router does not serve"
        );
    }

    #[test]
    fn mount_path_is_what_the_router_was_nested_under() {
        let local: Uri = "/keys/abc".parse().unwrap();
        assert_eq!(
            mount_path(&"/admin/keys/abc".parse().unwrap(), &local),
            "/admin"
        );
        assert_eq!(mount_path(&"/keys/abc".parse().unwrap(), &local), "");
        assert_eq!(
            mount_path(&"/a/b/keys/abc?x=1".parse().unwrap(), &local),
            "/a/b"
        );
    }
}
