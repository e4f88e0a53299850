//! A key's page: every field, its usage chart, its recent events with their actors; and the
//! actions beside them (deactivate, activate, revoke).

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
use super::keys::{encode, reason_select, status_badge, time, time_or};
use super::layout;
use crate::events::{AuditEntry, AuditQuery};
use crate::key::KeyId;
use crate::record::{KeyRecord, KeyStatus, Revocation};

/// Events shown on a key's page, newest first.
const RECENT_EVENTS: usize = 20;

/// An id from the path; one that cannot be an id is just not found.
fn key_id(id: &str) -> Result<KeyId, ConsoleError> {
    KeyId::new(id).map_err(|_| ConsoleError::NotFound)
}

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
            (event_table(&events))
        }
        @if record.status != KeyStatus::Revoked {
            (actions(&who, &record))
        }
    };
    Ok(Html(layout::page(&who, &title, body).into_string()))
}

fn fields(who: &SignedIn, record: &KeyRecord) -> Markup {
    let or_none = |v: Option<&str>| v.unwrap_or("—").to_owned();
    html! {
        dl.fields {
            dt { "ID" } dd { code { (record.id) } }
            dt { "Principal" } dd { a href={ (who.base.at("/keys")) "?principal=" (encode(&record.principal)) } { (record.principal) } }
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

fn event_table(events: &[AuditEntry]) -> Markup {
    html! {
        @if events.is_empty() {
            p.empty { "No events." }
        } @else {
            div.scroll {
                table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "By" } th scope="col" { "Reason" } } }
                    tbody {
                        @for entry in events {
                            @let e = &entry.event;
                            tr {
                                td { (time(e.at)) }
                                td { (e.kind.as_str()) }
                                td { (e.actor.as_deref().unwrap_or("—")) }
                                td {
                                    (e.reason.map(|r| r.as_str()).unwrap_or(""))
                                    @if let Some(location) = &e.location { " at " (location) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn actions(who: &SignedIn, record: &KeyRecord) -> Markup {
    let action = |name: &str| who.base.at(&format!("/keys/{}/{name}", record.id));
    html! {
        section.actions aria-labelledby="actions-heading" {
            h2 id="actions-heading" { "Actions" }
            form method="post" action=(action(if record.status == KeyStatus::Active { "deactivate" } else { "activate" })) {
                input type="hidden" name=(FIELD) value=(who.session.csrf_token);
                @if record.status == KeyStatus::Active {
                    p { "A deactivated key is refused until activated again." }
                    button type="submit" { "Deactivate" }
                } @else {
                    button type="submit" { "Activate" }
                }
            }
            form.danger-zone method="post" action=(action("revoke")) {
                h3 { "Revoke" }
                p { "Revoking is for good: the key is refused everywhere within a second, and cannot be activated again." }
                input type="hidden" name=(FIELD) value=(who.session.csrf_token);
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

/// A key's action: done as the person signed in, then back to its page.
pub(crate) async fn act(
    State(console): State<super::State>,
    Path((id, action)): Path<(String, String)>,
    Change { who, form }: Change,
) -> Result<Response, ConsoleError> {
    let id = key_id(&id)?;
    let keys = console.manager.acting_as(who.actor());
    match action.as_str() {
        "deactivate" => {
            keys.deactivate(&id).await?;
        }
        "activate" => {
            keys.activate(&id).await?;
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
        }
        _ => return Err(ConsoleError::NotFound),
    }
    tracing::info!(key_id = %id, action, by = who.identity.principal(), "console: key changed");
    Ok(Redirect::to(&who.base.at(&format!("/keys/{id}"))).into_response())
}
