//! "Your API keys": the self-service page an app links from its account settings, with the
//! console's look, headers, form tokens and one-time reveal, under the same rules as the
//! JSON API.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use jiff::Timestamp;
use maud::{html, Markup};

use super::{AccountUser, KeyRequest, PolicyRefusal, Settings};
use crate::console::{
    account_page, host_token, render_errors, reveal_body, same_origin, secure_headers,
    serve_assets, status_badge, time_or, token_matches, Base, ConsoleError, FormFields, HostToken,
    FORM_BODY_LIMIT,
};
use crate::key::KeyId;
use crate::record::{KeyRecord, KeyStatus, Revocation};
use crate::store::KeyQuery;

type St = State<Arc<Settings>>;

const MAX_LISTED: usize = 500;
const DAY: u64 = 24 * 60 * 60;

pub(super) fn router<T: Clone + Send + Sync + 'static>(
    state: Arc<Settings>,
    secure_cookies: bool,
) -> Router<T> {
    Router::new()
        .route("/", get(index).post(create))
        .route("/{id}/{action}", post(act))
        .route("/assets/{file}", get(serve_assets))
        .fallback(|| async { ConsoleError::NotFound })
        .layer(DefaultBodyLimit::max(FORM_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            secure_cookies,
            host_token,
        ))
        .layer(axum::middleware::from_fn(render_errors))
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(state)
}

/// The signed-in user, their form token, and where the page is mounted; 401 without a user.
struct Account {
    user: AccountUser,
    token: String,
    base: Base,
}

impl FromRequestParts<Arc<Settings>> for Account {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<Settings>,
    ) -> Result<Self, ConsoleError> {
        let user = (state.resolve)(parts).ok_or(ConsoleError::Unauthorized)?;
        let HostToken(token) = parts
            .extensions
            .get::<HostToken>()
            .cloned()
            .ok_or(ConsoleError::Forbidden)?;
        let base = parts.extensions.get::<Base>().cloned().unwrap_or_default();
        Ok(Account { user, token, base })
    }
}

/// A change: the user's POST from this site, with their form token; its form.
struct Change {
    account: Account,
    form: FormFields,
}

impl FromRequest<Arc<Settings>> for Change {
    type Rejection = ConsoleError;

    async fn from_request(req: Request, state: &Arc<Settings>) -> Result<Self, ConsoleError> {
        if !same_origin(req.headers(), req.uri()) {
            return Err(ConsoleError::Forbidden);
        }
        let (mut parts, body) = req.into_parts();
        let account = Account::from_request_parts(&mut parts, state).await?;
        let form = FormFields::from_request(Request::from_parts(parts, body), state).await?;
        if !token_matches(&form, &account.token) {
            return Err(ConsoleError::Forbidden);
        }
        Ok(Change { account, form })
    }
}

async fn own(settings: &Settings, user: &AccountUser, id: &str) -> Result<KeyRecord, ConsoleError> {
    settings.own(user, id).await?.ok_or(ConsoleError::NotFound)
}

async fn index(State(settings): St, account: Account) -> Result<Html<String>, ConsoleError> {
    page(&settings, &account, None, None).await.map(Html)
}

/// The page: the user's keys, then the form (with what was typed and what is wrong).
async fn page(
    settings: &Settings,
    account: &Account,
    form: Option<&FormFields>,
    refusal: Option<&str>,
) -> Result<String, ConsoleError> {
    let records = settings
        .manager
        .query(
            &KeyQuery::new()
                .principal(account.user.principal.clone())
                .limit(MAX_LISTED),
        )
        .await?;
    let now = Timestamp::now();
    let body = html! {
        h1 { "Your API keys" }
        @if records.is_empty() {
            p.empty { "You have no API keys yet." }
        } @else {
            (table(account, &records, now))
        }
        section aria-labelledby="new-heading" {
            h2 id="new-heading" { "New key" }
            (new_key_form(settings, account, form, refusal))
        }
    };
    Ok(account_page(
        &account.base,
        &account.user.principal,
        "Your API keys",
        body,
    )
    .into_string())
}

fn table(account: &Account, records: &[KeyRecord], now: Timestamp) -> Markup {
    let action = |id: &KeyId, what: &str| account.base.at(&format!("/{id}/{what}"));
    html! {
        div.scroll {
            table {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "ID" } th scope="col" { "Permissions" }
                    th scope="col" { "Expires" } th scope="col" { "Last used" } th scope="col" { "Status" }
                    th scope="col" { "Actions" }
                } }
                tbody {
                    @for record in records {
                        @let name = record.name.as_deref().unwrap_or("(no name)");
                        tr {
                            td { (name) }
                            td { code { (record.id) } }
                            td { (record.permissions.join(", ")) }
                            td { (time_or(record.expires_at, "never")) }
                            td { (time_or(record.usage.last_used_at, "never")) }
                            td { (status_badge(record, now)) }
                            td {
                                @if record.status != KeyStatus::Revoked {
                                    form.inline method="post" action=(action(&record.id, "revoke")) {
                                        input type="hidden" name="csrf" value=(account.token);
                                        button type="submit" aria-label={ "Revoke " (name) } { "Revoke" }
                                    }
                                }
                                @if !record.protected {
                                    form.inline method="post" action=(action(&record.id, "delete")) {
                                        input type="hidden" name="csrf" value=(account.token);
                                        button.danger type="submit" aria-label={ "Delete " (name) } { "Delete" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn new_key_form(
    settings: &Settings,
    account: &Account,
    form: Option<&FormFields>,
    refusal: Option<&str>,
) -> Markup {
    let held = &account.user.permissions;
    let chosen = |p: &str| form.is_some_and(|f| f.all("permissions").any(|c| c == p));
    let lifetimes = settings.policy.lifetimes_of(&account.user);
    let typed_expiry = form.and_then(|f| f.get("expires"));
    html! {
        @if let Some(refusal) = refusal {
            p.error role="alert" { (refusal) }
        }
        form.stacked method="post" action=(account.base.root()) {
            input type="hidden" name="csrf" value=(account.token);
            div.field {
                label for="name" { "Name" }
                input type="text" id="name" name="name" required
                    value=(form.and_then(|f| f.get("name")).unwrap_or_default());
            }
            fieldset.field {
                legend { "Permissions" }
                @if held.is_empty() { p.hint { "You hold no permissions: the key can only say who you are." } }
                @for (i, permission) in held.iter().enumerate() {
                    div.checkbox {
                        input type="checkbox" id={ "permission-" (i) } name="permissions" value=(permission)
                            checked[chosen(permission)];
                        label for={ "permission-" (i) } { (permission) }
                    }
                }
            }
            div.field {
                label for="expires" { "Expires" }
                select id="expires" name="expires" {
                    @for lifetime in &lifetimes {
                        @let days = lifetime.as_secs() / DAY;
                        @let value = format!("{days}d");
                        option value=(value) selected[typed_expiry == Some(value.as_str()) || (typed_expiry.is_none() && days == 90)] {
                            "in " (days) " days"
                        }
                    }
                }
            }
            button type="submit" { "Create key" }
        }
    }
}

async fn create(
    State(settings): St,
    Change { account, form }: Change,
) -> Result<Response, ConsoleError> {
    let request = KeyRequest {
        name: form.text("name").map(str::to_owned),
        permissions: form.all("permissions").map(str::to_owned).collect(),
        expires: form.text("expires").map(str::to_owned),
        ..KeyRequest::default()
    };
    let new = match settings
        .policy
        .check(&account.user, &request, Timestamp::now())
    {
        Ok(new) => new,
        Err(refusal) => {
            let status = match refusal {
                PolicyRefusal::Invalid { .. } => StatusCode::BAD_REQUEST,
                _ => StatusCode::FORBIDDEN,
            };
            let message = format!("The key was not created: {refusal}.");
            let html = page(&settings, &account, Some(&form), Some(&message)).await?;
            return Ok((status, Html(html)).into_response());
        }
    };
    let keys = settings.manager.acting_as(account.user.principal.clone());
    match keys.issue(new).await {
        Ok((record, key)) => {
            tracing::info!(key_id = %record.id, principal = %record.principal, "self-service: key created");
            let body = reveal_body(&record, &key, "Your new key", account.base.root());
            Ok(Html(
                account_page(&account.base, &account.user.principal, "Your new key", body)
                    .into_string(),
            )
            .into_response())
        }
        Err(error) if error.is_refusal() => {
            let message = format!("The key was not created: {error}.");
            let html = page(&settings, &account, Some(&form), Some(&message)).await?;
            Ok((StatusCode::CONFLICT, Html(html)).into_response())
        }
        Err(error) => Err(error.into()),
    }
}

async fn act(
    State(settings): St,
    Path((id, action)): Path<(String, String)>,
    Change { account, .. }: Change,
) -> Result<Response, ConsoleError> {
    let record = own(&settings, &account.user, &id).await?;
    let keys = settings.manager.acting_as(account.user.principal.clone());
    match action.as_str() {
        "revoke" => {
            keys.revoke_with(&record.id, Revocation::default()).await?;
        }
        "delete" => {
            keys.delete(&record.id, false).await?;
        }
        _ => return Err(ConsoleError::NotFound),
    }
    tracing::info!(key_id = %record.id, action, "self-service: key changed");
    Ok(Redirect::to(account.base.root()).into_response())
}
