//! "Edit": a key's name, description, permissions, expiry and policies, in one update.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup};

use super::auth::SignedIn;
use super::csrf::{Change, FIELD};
use super::error::ConsoleError;
use super::fields::{self, Errors};
use super::form::FormFields;
use super::keys::key_id;
use super::layout;
use crate::lifecycle::KeyPatch;
use crate::record::KeyRecord;

const FIELDS: [fields::Field; 7] = [
    fields::NAME,
    fields::DESCRIPTION,
    fields::PERMISSIONS,
    (
        "expires",
        "Expires",
        "Empty: as it is. never, 30d (from now), or a time: 2027-01-31T00:00:00Z.",
    ),
    fields::RATE_LIMIT,
    fields::QUOTA,
    fields::ALLOWED_IPS,
];

/// The form's values as the record holds them.
fn current(record: &KeyRecord, name: &str) -> String {
    let joined = |items: Vec<String>| items.join(", ");
    match name {
        "name" => record.name.clone().unwrap_or_default(),
        "description" => record.description.clone().unwrap_or_default(),
        "permissions" => record.permissions.join(", "),
        "rate_limit" => record.rate_limit.map(|r| r.to_string()).unwrap_or_default(),
        "quota" => record.quota.map(|q| q.to_string()).unwrap_or_default(),
        "allowed_ips" => joined(record.allowed_ips.iter().map(ToString::to_string).collect()),
        _ => String::new(),
    }
}

fn page(
    who: &SignedIn,
    record: &KeyRecord,
    form: Option<&FormFields>,
    errors: &Errors,
    general: Option<&str>,
) -> Markup {
    let value = |name: &str| match form {
        Some(form) => form.get(name).unwrap_or_default().to_owned(),
        None => current(record, name),
    };
    let title = format!("Edit {}", record.id);
    let body = html! {
        h1 { "Edit " code { (record.id) } }
        p { "Key of " strong { (record.principal) } "." }
        @if let Some(message) = general {
            p.error role="alert" { (message) }
        }
        form.stacked method="post" action=(who.base.at(&format!("/keys/{}/edit", record.id))) novalidate {
            input type="hidden" name=(FIELD) value=(who.csrf_token);
            (fields::render(&FIELDS, value, errors))
            button type="submit" { "Save" }
            " "
            a href=(who.base.at(&format!("/keys/{}", record.id))) { "Cancel" }
        }
    };
    layout::page(who, &title, body)
}

pub(crate) async fn form(
    State(console): State<super::State>,
    who: SignedIn,
    Path(id): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    let record = console.manager.get(&key_id(&id)?).await?;
    Ok(Html(
        page(&who, &record, None, &Errors::new(), None).into_string(),
    ))
}

/// The change the form asks for against `record`, or what is wrong with each field. A
/// field left as it was is no change: a quota saved unchanged keeps what is left of it, and
/// a revoked key can still be renamed.
fn read(form: &FormFields, record: &KeyRecord) -> Result<KeyPatch, Errors> {
    let mut errors = Errors::new();
    let name = form.text("name").map(str::to_owned);
    let description = form.text("description").map(str::to_owned);
    let permissions: Vec<String> = fields::list(form.get("permissions").unwrap_or_default())
        .into_iter()
        .map(str::to_owned)
        .collect();
    let rate_limit = fields::rate_limit(form, &mut errors);
    let quota = fields::quota(form, &mut errors);
    let allowed_ips = fields::allowed_ips(form, &mut errors);
    let expiry = fields::expiry(form, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut patch = KeyPatch::new();
    if name != record.name {
        patch = patch.name(name);
    }
    if description != record.description {
        patch = patch.description(description);
    }
    if permissions != record.permissions {
        patch = patch.permissions(permissions);
    }
    if rate_limit != record.rate_limit {
        patch = patch.rate_limit(rate_limit);
    }
    if quota != record.quota {
        patch = patch.quota(quota);
    }
    if allowed_ips != record.allowed_ips {
        patch = patch.allowed_ips(allowed_ips);
    }
    if let Some(expiry) = expiry {
        patch = patch.expires(expiry);
    }
    Ok(patch)
}

pub(crate) async fn save(
    State(console): State<super::State>,
    Path(id): Path<String>,
    Change { who, form }: Change,
) -> Result<Response, ConsoleError> {
    let id = key_id(&id)?;
    let record = console.manager.get(&id).await?;
    let refused = |errors: &Errors, general: Option<&str>| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Html(page(&who, &record, Some(&form), errors, general).into_string()),
        )
            .into_response()
    };
    let patch = match read(&form, &record) {
        Ok(patch) => patch,
        Err(errors) => return Ok(refused(&errors, None)),
    };
    if patch.is_empty() {
        return Ok(Redirect::to(&who.base.at(&format!("/keys/{id}"))).into_response());
    }
    match console
        .manager
        .acting_as(who.actor())
        .update(&id, patch)
        .await
    {
        Ok(_) => {}
        Err(error) => {
            let (errors, general) = fields::shown(error)?;
            return Ok(refused(&errors, general.as_deref()));
        }
    }
    tracing::info!(key_id = %id, by = who.name.as_str(), "console: key edited");
    Ok(Redirect::to(&who.base.at(&format!("/keys/{id}"))).into_response())
}
