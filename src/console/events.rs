//! The audit log: every key event with who caused it, newest first, filtered by key,
//! principal, type and actor, 50 to a page.

use axum::extract::State;
use axum::http::Uri;
use axum::response::Html;
use maud::{html, Markup};

use super::auth::SignedIn;
use super::error::ConsoleError;
use super::form::FormFields;
use super::keys::{segment, time};
use super::layout;
use crate::events::{AuditEntry, AuditQuery, EventKind};
use crate::key::KeyId;

const PAGE: usize = 50;

/// The filters from the query string, as typed (to keep them in the form and the links).
#[derive(Debug, Default)]
struct Filters {
    key: Option<String>,
    principal: Option<String>,
    kind: Option<EventKind>,
    actor: Option<String>,
    before: Option<u64>,
}

impl Filters {
    fn of(uri: &Uri) -> Result<Self, ConsoleError> {
        let form = FormFields::parse(uri.query().unwrap_or_default().as_bytes())
            .map_err(|e| ConsoleError::BadRequest(e.to_string()))?;
        let bad = |what: &str| ConsoleError::BadRequest(what.to_owned());
        Ok(Self {
            key: form.text("key").map(str::to_owned),
            principal: form.text("principal").map(str::to_owned),
            kind: form
                .text("type")
                .map(str::parse)
                .transpose()
                .map_err(|_| bad("Type must be one of the listed event types."))?,
            actor: form.text("actor").map(str::to_owned),
            before: form
                .text("before")
                .map(str::parse)
                .transpose()
                .map_err(|_| bad("The page to start before is not an event number."))?,
        })
    }

    fn query(&self) -> Result<AuditQuery, ConsoleError> {
        let mut query = AuditQuery::new().limit(PAGE + 1);
        if let Some(key) = &self.key {
            let id = KeyId::new(key)
                .map_err(|_| ConsoleError::BadRequest(format!("Key: {key:?} is not a key id.")))?;
            query = query.key_id(id);
        }
        if let Some(principal) = &self.principal {
            query = query.principal(principal.clone());
        }
        if let Some(kind) = self.kind {
            query = query.kind(kind);
        }
        if let Some(actor) = &self.actor {
            query = query.actor(actor.clone());
        }
        if let Some(before) = self.before {
            query = query.before(before);
        }
        Ok(query)
    }

    fn next(&self, before: u64) -> String {
        super::form::query_string(&[
            ("key", self.key.as_deref()),
            ("principal", self.principal.as_deref()),
            ("type", self.kind.map(EventKind::as_str)),
            ("actor", self.actor.as_deref()),
            ("before", Some(&before.to_string())),
        ])
    }
}

pub(crate) async fn list(
    State(console): State<super::State>,
    who: SignedIn,
    uri: Uri,
) -> Result<Html<String>, ConsoleError> {
    let filters = Filters::of(&uri)?;
    let mut entries = console.manager.events(&filters.query()?).await?;
    let more = entries.len() > PAGE;
    entries.truncate(PAGE);
    let next = more
        .then(|| entries.last().map(|e| filters.next(e.seq)))
        .flatten();
    let body = html! {
        h1 { "Audit log" }
        (filter_form(&who, &filters))
        (table(&who, &entries))
        @if let Some(next) = next {
            nav.paging aria-label="Pages" {
                a href={ (who.base.at("/events")) "?" (next) } { "Older events" }
            }
        }
    };
    Ok(Html(layout::page(&who, "Audit log", body).into_string()))
}

fn filter_form(who: &SignedIn, filters: &Filters) -> Markup {
    html! {
        form.filters method="get" action=(who.base.at("/events")) role="search" {
            div.field {
                label for="key" { "Key" }
                input type="text" id="key" name="key" value=[filters.key.as_deref()];
            }
            div.field {
                label for="principal" { "Principal" }
                input type="text" id="principal" name="principal" value=[filters.principal.as_deref()];
            }
            div.field {
                label for="type" { "Type" }
                select id="type" name="type" {
                    option value="" selected[filters.kind.is_none()] { "Any" }
                    @for kind in EventKind::ALL {
                        option value=(kind.as_str()) selected[filters.kind == Some(kind)] { (kind.as_str()) }
                    }
                }
            }
            div.field {
                label for="actor" { "Actor" }
                input type="text" id="actor" name="actor" value=[filters.actor.as_deref()];
            }
            button type="submit" { "Filter" }
        }
    }
}

/// Events in a table, each key linked to its page.
pub(crate) fn table(who: &SignedIn, entries: &[AuditEntry]) -> Markup {
    html! {
        @if entries.is_empty() {
            p.empty { "No events." }
        } @else {
            div.scroll {
                table {
                    thead { tr {
                        th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Key" }
                        th scope="col" { "Principal" } th scope="col" { "By" } th scope="col" { "Reason" }
                    } }
                    tbody {
                        @for entry in entries {
                            @let e = &entry.event;
                            tr {
                                td { (time(e.at)) }
                                td { (e.kind.as_str()) }
                                td { a href=(who.base.at(&format!("/keys/{}", e.key_id))) { code { (e.key_id) } } }
                                td { a href=(who.base.at(&format!("/principals/{}", segment(&e.principal)))) { (e.principal) } }
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
