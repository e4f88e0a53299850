//! "New key": the form, its checks field by field, and the one-time reveal, which is the
//! POST's own response (the key is in no URL, cookie, session, log or later page).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup};

use super::auth::SignedIn;
use super::csrf::{Change, FIELD};
use super::error::ConsoleError;
use super::fields::{self, Errors};
use super::form::FormFields;
use super::layout;
use crate::key::PlaintextKey;
use crate::lifecycle::NewKey;
use crate::record::KeyRecord;

const FIELDS: [fields::Field; 8] = [
    fields::PRINCIPAL,
    fields::NAME,
    fields::DESCRIPTION,
    fields::PERMISSIONS,
    fields::EXPIRES,
    fields::RATE_LIMIT,
    fields::QUOTA,
    fields::ALLOWED_IPS,
];

/// The empty form; `?principal=` fills that field (from a principal's page).
pub(crate) async fn form(who: SignedIn, uri: axum::http::Uri) -> Html<String> {
    let query = FormFields::parse(uri.query().unwrap_or_default().as_bytes()).unwrap_or_default();
    let prefill = FormFields::of([("principal", query.get("principal").unwrap_or_default())]);
    Html(page(&who, Some(&prefill), &Errors::new(), None).into_string())
}

fn page(
    who: &SignedIn,
    form: Option<&FormFields>,
    errors: &Errors,
    general: Option<&str>,
) -> Markup {
    let value = |name: &str| {
        form.and_then(|f| f.get(name))
            .unwrap_or_default()
            .to_owned()
    };
    let body = html! {
        h1 { "New key" }
        @if let Some(message) = general {
            p.error role="alert" { (message) }
        }
        form.stacked method="post" action=(who.base.at("/keys/new")) novalidate {
            input type="hidden" name=(FIELD) value=(who.csrf_token);
            (fields::render(&FIELDS, value, errors))
            div.field.checkbox {
                input type="checkbox" id="protected" name="protected" value="on"
                    aria-describedby="protected-hint"
                    checked[form.is_some_and(|f| f.get("protected").is_some())];
                label for="protected" { "Protected" }
                small.hint id="protected-hint" { "A protected key is deleted only after its id is typed again." }
            }
            button type="submit" { "Create key" }
        }
    };
    layout::page(who, "New key", body)
}

/// The key the form asks for, or what is wrong with each field.
fn read(form: &FormFields) -> Result<NewKey, Errors> {
    let mut errors = Errors::new();
    let principal = form.text("principal").unwrap_or_default();
    if principal.is_empty() {
        errors.insert("principal", "Give the key's principal.".to_owned());
    }
    let mut new = NewKey::new(principal)
        .permissions(fields::list(form.get("permissions").unwrap_or_default()))
        .protected(form.get("protected").is_some())
        .rate_limit(fields::rate_limit(form, &mut errors))
        .quota(fields::quota(form, &mut errors))
        .allowed_ips(fields::allowed_ips(form, &mut errors));
    if let Some(name) = form.text("name") {
        new = new.name(name);
    }
    if let Some(description) = form.text("description") {
        new = new.description(description);
    }
    if let Some(expiry) = fields::expiry(form, &mut errors) {
        new = new.expires(expiry);
    }
    if errors.is_empty() {
        Ok(new)
    } else {
        Err(errors)
    }
}

pub(crate) async fn create(
    State(console): State<super::State>,
    Change { who, form }: Change,
) -> Result<Response, ConsoleError> {
    let refused = |errors: &Errors, general: Option<&str>| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Html(page(&who, Some(&form), errors, general).into_string()),
        )
            .into_response()
    };
    let new = match read(&form) {
        Ok(new) => new,
        Err(errors) => return Ok(refused(&errors, None)),
    };
    let (record, key) = match console.manager.acting_as(who.actor()).issue(new).await {
        Ok(issued) => issued,
        Err(error) => {
            let (errors, general) = fields::shown(error)?;
            return Ok(refused(&errors, general.as_deref()));
        }
    };
    tracing::info!(key_id = %record.id, principal = %record.principal, by = who.name.as_str(), "console: key created");
    Ok(Html(reveal(&who, &record, &key, "Your new key").into_string()).into_response())
}

/// The one page a key is ever shown on.
pub(crate) fn reveal(
    who: &SignedIn,
    record: &KeyRecord,
    key: &PlaintextKey,
    title: &str,
) -> Markup {
    let next = who.base.at(&format!("/keys/{}", record.id));
    layout::page(who, title, reveal_body(record, key, title, &next))
}

/// The reveal itself: the key in `#new-key` with "Copy", the warning, and "I have copied the
/// key" leading to `next`. Also the self-service page's.
pub(crate) fn reveal_body(
    record: &KeyRecord,
    key: &PlaintextKey,
    title: &str,
    next: &str,
) -> Markup {
    html! {
        h1 { (title) }
        p.warning role="alert" {
            strong { "Copy this key now. It will not be shown again." }
            " Only its hash is kept: if it is lost, regenerate it."
        }
        div.reveal {
            code id="new-key" { (key.expose()) }
            button type="button" class="copy" data-copy="new-key" { "Copy" }
        }
        p {
            "For " strong { (record.principal) } ", id " code { (record.id) } "."
        }
        p { a.button href=(next) { "I have copied the key" } }
    }
}
