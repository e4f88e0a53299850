//! "New key": the form, its checks field by field, and the one-time reveal, which is the
//! POST's own response (the key is in no URL, cookie, session, log or later page).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup};

use super::auth::SignedIn;
use super::csrf::{Change, FIELD};
use super::error::ConsoleError;
use super::form::FormFields;
use super::layout;
use crate::key::PlaintextKey;
use crate::lifecycle::{Expiry, InvalidInput, LifecycleError, NewKey};
use crate::policy::{IpNet, Quota, RateLimit};
use crate::record::KeyRecord;

/// The form's fields: name, label, and a hint.
const FIELDS: [(&str, &str, &str); 8] = [
    (
        "principal",
        "Principal",
        "Whose key: a user or an integration.",
    ),
    ("name", "Name", "A short label."),
    ("description", "Description", "What it is for."),
    (
        "permissions",
        "Permissions",
        "Separated by commas: read, write.",
    ),
    (
        "expires",
        "Expires",
        "never, 30d, 90d, P1W, or a time: 2027-01-31T00:00:00Z.",
    ),
    (
        "rate_limit",
        "Rate limit",
        "Requests per period: 100/1m. Empty: none.",
    ),
    (
        "quota",
        "Quota",
        "Uses, refilled each period: 10000/1d. Empty: none.",
    ),
    (
        "allowed_ips",
        "Allowed IPs",
        "Addresses or CIDRs, separated by commas. Empty: anywhere.",
    ),
];

/// What was typed, and what is wrong with it, by field.
#[derive(Debug, Default)]
struct Filled<'a> {
    form: Option<&'a FormFields>,
    errors: BTreeMap<&'static str, String>,
    /// A problem of the whole form (the store, a conflict).
    general: Option<String>,
}

pub(crate) async fn form(who: SignedIn) -> Html<String> {
    Html(page(&who, &Filled::default()).into_string())
}

fn page(who: &SignedIn, filled: &Filled<'_>) -> Markup {
    let value = |name: &str| filled.form.and_then(|f| f.get(name)).unwrap_or_default();
    let body = html! {
        h1 { "New key" }
        @if let Some(message) = &filled.general {
            p.error role="alert" { (message) }
        }
        @if !filled.errors.is_empty() {
            p.error role="alert" { "The key was not created: see the fields marked below." }
        }
        form.stacked method="post" action=(who.base.at("/keys/new")) novalidate {
            input type="hidden" name=(FIELD) value=(who.session.csrf_token);
            @for (name, label, hint) in FIELDS {
                @let error = filled.errors.get(name);
                div.field.invalid[error.is_some()] {
                    label for=(name) { (label) }
                    @if name == "description" {
                        textarea id=(name) name=(name) rows="3"
                            aria-describedby={ (name) "-hint" @if error.is_some() { " " (name) "-error" } }
                            aria-invalid=[error.map(|_| "true")] { (value(name)) }
                    } @else {
                        input type="text" id=(name) name=(name) value=(value(name))
                            required[name == "principal"]
                            aria-describedby={ (name) "-hint" @if error.is_some() { " " (name) "-error" } }
                            aria-invalid=[error.map(|_| "true")];
                    }
                    small.hint id={ (name) "-hint" } { (hint) }
                    @if let Some(error) = error {
                        p.field-error id={ (name) "-error" } { (error) }
                    }
                }
            }
            div.field.checkbox {
                input type="checkbox" id="protected" name="protected" value="on"
                    checked[filled.form.is_some_and(|f| f.get("protected").is_some())];
                label for="protected" { "Protected" }
                small.hint { "A protected key is deleted only after its id is typed again." }
            }
            button type="submit" { "Create key" }
        }
    };
    layout::page(who, "New key", body)
}

/// Items separated by commas (or new lines), trimmed, blanks left out.
fn list(text: &str) -> Vec<&str> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The key the form asks for, or what is wrong with each field.
fn read(form: &FormFields) -> Result<NewKey, BTreeMap<&'static str, String>> {
    let mut errors = BTreeMap::new();
    let principal = form.text("principal").unwrap_or_default();
    if principal.is_empty() {
        errors.insert("principal", "Give the key's principal.".to_owned());
    }
    let mut new = NewKey::new(principal)
        .permissions(list(form.get("permissions").unwrap_or_default()))
        .protected(form.get("protected").is_some());
    if let Some(name) = form.text("name") {
        new = new.name(name);
    }
    if let Some(description) = form.text("description") {
        new = new.description(description);
    }
    if let Some(text) = form.text("expires") {
        match text.parse::<Expiry>() {
            Ok(expiry) => new = new.expires(expiry),
            Err(e) => {
                errors.insert("expires", format!("Not an expiry: {e}."));
            }
        }
    }
    match form
        .text("rate_limit")
        .map(str::parse::<RateLimit>)
        .transpose()
    {
        Ok(limit) => new = new.rate_limit(limit),
        Err(e) => {
            errors.insert("rate_limit", format!("Not a rate limit: {e}."));
        }
    }
    match form.text("quota").map(str::parse::<Quota>).transpose() {
        Ok(quota) => new = new.quota(quota),
        Err(e) => {
            errors.insert("quota", format!("Not a quota: {e}."));
        }
    }
    let ips: Result<Vec<IpNet>, _> = list(form.get("allowed_ips").unwrap_or_default())
        .into_iter()
        .map(|text| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{text:?} is not an IPv4 or IPv6 address or CIDR."))
        })
        .collect();
    match ips {
        Ok(ips) => new = new.allowed_ips(ips),
        Err(e) => {
            errors.insert("allowed_ips", e);
        }
    }
    if errors.is_empty() {
        Ok(new)
    } else {
        Err(errors)
    }
}

/// The field a refusal of the key manager is about, if one.
fn field_of(error: &LifecycleError) -> Option<&'static str> {
    match error {
        LifecycleError::LimitReached { .. } => Some("principal"),
        LifecycleError::Expiry(_) => Some("expires"),
        LifecycleError::Invalid(input) => match input {
            InvalidInput::EmptyPrincipal => Some("principal"),
            InvalidInput::TooLong { field, .. } | InvalidInput::ControlCharacters { field } => {
                FIELDS
                    .iter()
                    .map(|(name, ..)| *name)
                    .find(|name| name == field)
                    .or(Some("permissions"))
            }
            InvalidInput::TooManyAllowedIps { .. } => Some("allowed_ips"),
            InvalidInput::TooManyPermissions { .. } | InvalidInput::EmptyPermission => {
                Some("permissions")
            }
            _ => None,
        },
        _ => None,
    }
}

pub(crate) async fn create(
    State(console): State<super::State>,
    Change { who, form }: Change,
) -> Result<Response, ConsoleError> {
    let refused = |filled: Filled<'_>| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Html(page(&who, &filled).into_string()),
        )
            .into_response()
    };
    let new = match read(&form) {
        Ok(new) => new,
        Err(errors) => {
            return Ok(refused(Filled {
                form: Some(&form),
                errors,
                general: None,
            }))
        }
    };
    let (record, key) = match console.manager.acting_as(who.actor()).issue(new).await {
        Ok(issued) => issued,
        Err(error) if error.is_refusal() || field_of(&error).is_some() => {
            let mut filled = Filled {
                form: Some(&form),
                ..Filled::default()
            };
            match field_of(&error) {
                Some(field) => {
                    filled.errors.insert(field, format!("{error}."));
                }
                None => filled.general = Some(format!("{error}.")),
            }
            return Ok(refused(filled));
        }
        Err(error) => return Err(error.into()),
    };
    tracing::info!(key_id = %record.id, principal = %record.principal, by = who.identity.principal(), "console: key created");
    Ok(Html(reveal(&who, &record, &key, "Your new key").into_string()).into_response())
}

/// The one page a key is ever shown on.
pub(crate) fn reveal(
    who: &SignedIn,
    record: &KeyRecord,
    key: &PlaintextKey,
    title: &str,
) -> Markup {
    let body = html! {
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
        p { a.button href=(who.base.at(&format!("/keys/{}", record.id))) { "I have copied the key" } }
    };
    layout::page(who, title, body)
}
