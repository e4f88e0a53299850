//! A key's page: every field, its usage chart, its recent events with their actors; and the
//! actions beside them (edit, deactivate, activate, rotate, regenerate, revoke, delete).

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::{Html, IntoResponse, Redirect, Response};
use jiff::Timestamp;
use maud::{html, Markup};

use super::auth::SignedIn;
use super::chart::{self, Period};
use super::csrf::{Change, FIELD};
use super::error::ConsoleError;
use super::form::FormFields;
use super::keys::key_id;
use super::keys::{reason_select, segment, status_badge, time, time_or};
use super::layout;
use super::new_key::reveal;
use crate::events::AuditQuery;
use crate::record::{KeyRecord, KeyStatus, Revocation};

/// Events shown on a key's page, newest first.
const RECENT_EVENTS: usize = 20;

pub(crate) async fn show(
    State(console): State<super::State>,
    who: SignedIn,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Html<String>, ConsoleError> {
    let id = key_id(&id)?;
    let query = FormFields::parse(uri.query().unwrap_or_default().as_bytes())
        .map_err(|e| ConsoleError::BadRequest(e.to_string()))?;
    let period = Period::parse(query.get("range"));
    let record = console.manager.get(&id).await?;
    let now = Timestamp::now();
    let usage = console.manager.usage(&id, period.range(now)).await?;
    let events = console
        .manager
        .events(&AuditQuery::new().key_id(id.clone()).limit(RECENT_EVENTS))
        .await?;
    let title = record.name.clone().unwrap_or_else(|| id.to_string());
    let here = who.base.at(&format!("/keys/{id}"));
    let body = html! {
        div.heading {
            h1 { (title) " " (status_badge(&record, now)) }
        }
        (fields(&who, &record))
        section aria-labelledby="usage-heading" {
            h2 id="usage-heading" { "Usage" }
            nav.switch aria-label="Period" {
                @for p in Period::ALL {
                    a href={ (here) "?range=" (p.as_str()) }
                        aria-current=[(p == period).then_some("page")] { (p.label()) }
                }
            }
            (chart::chart(period, &usage))
        }
        section aria-labelledby="events-heading" {
            h2 id="events-heading" { "Recent events" }
            (super::events::table(&who, &events))
        }
        @if record.status != KeyStatus::Revoked {
            (actions(&who, &record))
        }
        (delete_form(&who, &record))
    };
    Ok(Html(layout::page(&who, &title, body).into_string()))
}

fn fields(who: &SignedIn, record: &KeyRecord) -> Markup {
    let or_none = |v: Option<&str>| v.unwrap_or("—").to_owned();
    html! {
        dl.fields {
            dt { "ID" } dd { code { (record.id) } }
            dt { "Principal" } dd { a href=(who.base.at(&format!("/principals/{}", segment(&record.principal)))) { (record.principal) } }
            dt { "Name" } dd { (or_none(record.name.as_deref())) }
            dt { "Description" } dd { (or_none(record.description.as_deref())) }
            dt { "Status" } dd { (record.status.as_str()) }
            dt { "Permissions" } dd {
                @if record.permissions.is_empty() { "none" }
                @for p in &record.permissions { code.tag { (p) } " " }
            }
            dt { "Expires" } dd { (time_or(record.expires_at, "never")) }
            dt { "Last used" } dd { (time_or(record.usage.last_used_at, "never")) }
            dt { "Created" } dd { (time(record.created_at)) @if let Some(by) = &record.created_by { " by " (by) } }
            @if let Some(at) = record.updated_at {
                dt { "Updated" } dd { (time(at)) @if let Some(by) = &record.updated_by { " by " (by) } }
            }
            dt { "Protected" } dd { @if record.protected { "yes" } @else { "no" } }
            dt { "Rate limit" } dd { (or_none(record.rate_limit.map(|r| r.to_string()).as_deref())) }
            dt { "Quota" } dd {
                @match record.quota {
                    None => "—",
                    Some(q) => { (q) " (" (record.usage.quota_remaining.unwrap_or(q.uses())) " left)" }
                }
            }
            dt { "Allowed IPs" } dd {
                @if record.allowed_ips.is_empty() { "anywhere" }
                @for ip in &record.allowed_ips { code.tag { (ip) } " " }
            }
            @if let Some(revocation) = &record.revocation {
                dt { "Revocation reason" } dd { (revocation.reason.as_str()) }
                dt { "Revocation location" } dd { (or_none(revocation.location.as_deref())) }
            }
        }
    }
}

fn actions(who: &SignedIn, record: &KeyRecord) -> Markup {
    let action = |name: &str| who.base.at(&format!("/keys/{}/{name}", record.id));
    let token = html! { input type="hidden" name=(FIELD) value=(who.csrf_token); };
    let active = record.status == KeyStatus::Active;
    html! {
        section.actions aria-labelledby="actions-heading" {
            h2 id="actions-heading" { "Actions" }
            p { a.button href=(action("edit")) { "Edit" } }
            form method="post" action=(action(if active { "deactivate" } else { "activate" })) {
                (token)
                @if active {
                    p { "A deactivated key is refused until it is activated again." }
                    button type="submit" { "Deactivate" }
                } @else {
                    p { "This key is deactivated: it is refused until it is activated again." }
                    button type="submit" { "Activate" }
                }
            }
            @if active {
                form method="post" action=(action("rotate")) {
                    h3 { "Rotate" }
                    p { "A new key with the same settings; this one keeps working for the grace period, then expires." }
                    (token)
                    div.field {
                        label for="grace" { "Grace period" }
                        input type="text" id="grace" name="grace" value="1d" aria-describedby="grace-hint";
                        small.hint id="grace-hint" { "How long both keys work: 0, 1h, 1d, 7d." }
                    }
                    button type="submit" { "Rotate" }
                }
                form method="post" action=(action("regenerate")) {
                    h3 { "Regenerate" }
                    p { "A new secret for the same id: the current key stops working at once." }
                    (token)
                    button type="submit" { "Regenerate" }
                }
            }
            form.danger-zone method="post" action=(action("revoke")) {
                h3 { "Revoke" }
                p { "Revoking is for good: the key is refused everywhere within a second, and cannot be activated again." }
                (token)
                div.field {
                    label for="revoke-reason" { "Reason" }
                    (reason_select("revoke-reason"))
                }
                div.field {
                    label for="revoke-location" { "Location" }
                    input type="text" id="revoke-location" name="location" placeholder="where it was found: a URL, a file, a ticket";
                }
                button.danger type="submit" { "Revoke key" }
            }
        }
    }
}

/// Deleting: open to revoked keys too. A protected key asks for its id to be typed.
fn delete_form(who: &SignedIn, record: &KeyRecord) -> Markup {
    html! {
        form.danger-zone method="post" action=(who.base.at(&format!("/keys/{}/delete", record.id))) {
            h3 { "Delete" }
            p { "Deleting removes the key's record for good: it is refused, and no longer listed. Its events stay in the audit log." }
            input type="hidden" name=(FIELD) value=(who.csrf_token);
            @if record.protected {
                div.field {
                    label for="confirm" { "Type the key's id to delete it" }
                    input type="text" id="confirm" name="confirm" autocomplete="off" aria-describedby="confirm-hint";
                    small.hint id="confirm-hint" { "This key is protected: type " code { (record.id) } "." }
                }
            }
            button.danger type="submit" { "Delete" }
        }
    }
}

/// A key's action, done as the person signed in: back to its page, or (rotate, regenerate)
/// the reveal of the new key.
pub(crate) async fn act(
    State(console): State<super::State>,
    Path((id, action)): Path<(String, String)>,
    Change { who, form }: Change,
) -> Result<Response, ConsoleError> {
    let id = key_id(&id)?;
    let keys = console.manager.acting_as(who.actor());
    let to_page = || Redirect::to(&who.base.at(&format!("/keys/{id}"))).into_response();
    let response = match action.as_str() {
        "deactivate" => {
            keys.deactivate(&id).await?;
            to_page()
        }
        "activate" => {
            keys.activate(&id).await?;
            to_page()
        }
        "revoke" => {
            let reason = match form.text("revoke-reason") {
                None => Default::default(),
                Some(text) => {
                    text.parse()
                        .map_err(|e: crate::record::UnknownRevocationReason| {
                            ConsoleError::BadRequest(e.to_string())
                        })?
                }
            };
            let mut revocation = Revocation::new(reason);
            revocation.location = form.text("location").map(str::to_owned);
            keys.revoke_with(&id, revocation).await?;
            to_page()
        }
        "rotate" => {
            let grace = form.text("grace").unwrap_or("0");
            let grace: jiff::Span = grace.parse().map_err(|_| {
                ConsoleError::BadRequest(format!(
                    "Grace period: {grace:?} is not a duration (0, 1h, 1d, 7d)."
                ))
            })?;
            let (record, key) = keys.rotate(&id, grace).await?;
            Html(reveal(&who, &record, &key, "Rotated: the new key").into_string()).into_response()
        }
        "regenerate" => {
            let (record, key) = keys.regenerate(&id).await?;
            Html(reveal(&who, &record, &key, "Regenerated: the key's new secret").into_string())
                .into_response()
        }
        "delete" => {
            let record = keys.get(&id).await?;
            let confirmed = form.text("confirm") == Some(id.as_str());
            if record.protected && !confirmed {
                return Err(ConsoleError::BadRequest(format!(
                    "Key {id} is protected: type its id to delete it."
                )));
            }
            keys.delete(&id, record.protected).await?;
            Redirect::to(&who.base.at("/keys")).into_response()
        }
        _ => return Err(ConsoleError::NotFound),
    };
    tracing::info!(key_id = %id, action, by = who.name.as_str(), "console: key changed");
    Ok(response)
}
