//! The keys list: search, filters, keyset paging (the admin API's query, 50 a page), and
//! "Revoke selected".

use axum::extract::State;
use axum::http::Uri;
use axum::response::Html;
use jiff::Timestamp;
use maud::{html, Markup};

use super::auth::SignedIn;
use super::csrf::{Change, FIELD};
use super::error::ConsoleError;
use super::form::FormFields;
use super::layout;
use crate::key::KeyId;
use crate::record::{KeyRecord, KeyStatus, Revocation, RevocationReason};
use crate::store::KeyQuery;

/// Keys on a page.
pub(crate) const PAGE: usize = 50;

/// What the list shows: the filters from the query string.
#[derive(Debug, Default)]
struct Filters {
    q: Option<String>,
    status: Option<KeyStatus>,
    principal: Option<String>,
    after: Option<KeyId>,
}

impl Filters {
    fn of(uri: &Uri) -> Result<Self, ConsoleError> {
        let form = FormFields::parse(uri.query().unwrap_or_default().as_bytes())
            .map_err(|e| ConsoleError::BadRequest(e.to_string()))?;
        let status = match form.text("status") {
            None => None,
            Some(text) => Some(text.parse::<KeyStatus>().map_err(|_| {
                ConsoleError::BadRequest("Status must be active, inactive or revoked.".into())
            })?),
        };
        let after = match form.text("after") {
            None => None,
            Some(text) => Some(KeyId::new(text).map_err(|_| {
                ConsoleError::BadRequest("The page to start after is not a key id.".into())
            })?),
        };
        Ok(Self {
            q: form.text("q").map(str::to_owned),
            status,
            principal: form.text("principal").map(str::to_owned),
            after,
        })
    }

    fn query(&self) -> KeyQuery {
        let mut query = KeyQuery::new().limit(PAGE + 1);
        query.search.clone_from(&self.q);
        query.status = self.status;
        query.principal.clone_from(&self.principal);
        query.after.clone_from(&self.after);
        query
    }

    /// The query string of the page after `last`.
    fn next(&self, last: &KeyId) -> String {
        super::form::query_string(&[
            ("q", self.q.as_deref()),
            ("status", self.status.map(KeyStatus::as_str)),
            ("principal", self.principal.as_deref()),
            ("after", Some(last.as_str())),
        ])
    }
}

pub(crate) async fn list(
    State(console): State<super::State>,
    who: SignedIn,
    uri: Uri,
) -> Result<Html<String>, ConsoleError> {
    let filters = Filters::of(&uri)?;
    let mut records = console.manager.query(&filters.query()).await?;
    let more = records.len() > PAGE;
    records.truncate(PAGE);
    let next = more
        .then(|| records.last().map(|r| filters.next(&r.id)))
        .flatten();
    let body = html! {
        div.heading {
            h1 { "Keys" }
            a.button href=(who.base.at("/keys/new")) { "New key" }
        }
        (filter_form(&who, &filters))
        @if records.is_empty() {
            p.empty { "No key matches." }
        } @else {
            (key_table(&who, &records, Timestamp::now()))
        }
        @if let Some(next) = next {
            nav.paging aria-label="Pages" {
                a href={ (who.base.at("/keys")) "?" (next) } { "Next page" }
            }
        }
    };
    Ok(Html(layout::page(&who, "Keys", body).into_string()))
}

fn filter_form(who: &SignedIn, filters: &Filters) -> Markup {
    html! {
        form.filters method="get" action=(who.base.at("/keys")) role="search" {
            div.field {
                label for="q" { "Search" }
                input type="search" id="q" name="q" value=[filters.q.as_deref()]
                    placeholder="id, principal, name, description";
            }
            div.field {
                label for="status" { "Status" }
                select id="status" name="status" {
                    option value="" selected[filters.status.is_none()] { "Any" }
                    @for status in [KeyStatus::Active, KeyStatus::Inactive, KeyStatus::Revoked] {
                        option value=(status.as_str()) selected[filters.status == Some(status)] {
                            (status.as_str())
                        }
                    }
                }
            }
            div.field {
                label for="principal" { "Principal" }
                input type="text" id="principal" name="principal"
                    value=[filters.principal.as_deref()];
            }
            button type="submit" { "Filter" }
        }
    }
}

pub(crate) fn key_table(who: &SignedIn, records: &[KeyRecord], now: Timestamp) -> Markup {
    html! {
        form method="post" action=(who.base.at("/keys/revoke")) {
            input type="hidden" name=(FIELD) value=(who.csrf_token);
            div.scroll {
                table {
                    thead {
                        tr {
                            th scope="col" { span.visually-hidden { "Select" } }
                            th scope="col" { "ID" }
                            th scope="col" { "Principal" }
                            th scope="col" { "Name" }
                            th scope="col" { "Status" }
                            th scope="col" { "Expires" }
                            th scope="col" { "Last used" }
                            th scope="col" { "Created" }
                        }
                    }
                    tbody {
                        @for record in records {
                            tr {
                                td {
                                    input type="checkbox" name="id" value=(record.id)
                                        id={ "select-" (record.id) }
                                        disabled[record.status == KeyStatus::Revoked];
                                    label.visually-hidden for={ "select-" (record.id) } {
                                        "Select " (record.id)
                                    }
                                }
                                td { a href=(who.base.at(&format!("/keys/{}", record.id))) { code { (record.id) } } }
                                td { a href=(who.base.at(&format!("/principals/{}", segment(&record.principal)))) { (record.principal) } }
                                td { (record.name.as_deref().unwrap_or("")) }
                                td { (status_badge(record, now)) }
                                td { (time_or(record.expires_at, "never")) }
                                td { (time_or(record.usage.last_used_at, "never")) }
                                td { (time(record.created_at)) }
                            }
                        }
                    }
                }
            }
            div.bulk {
                div.field {
                    label for="reason" { "Reason" }
                    (reason_select("reason"))
                }
                button.danger type="submit" { "Revoke selected" }
            }
        }
    }
}

/// A key id from the path; one that cannot be an id is just not found.
pub(crate) fn key_id(id: &str) -> Result<KeyId, ConsoleError> {
    KeyId::new(id).map_err(|_| ConsoleError::NotFound)
}

/// A key's status as a badge: `expired` where it has (whatever its status says).
pub(crate) fn status_badge(record: &KeyRecord, now: Timestamp) -> Markup {
    let (class, text) = match record.status {
        KeyStatus::Revoked => ("badge revoked", "revoked"),
        _ if record.is_expired_at(now) => ("badge expired", "expired"),
        KeyStatus::Inactive => ("badge inactive", "inactive"),
        _ => ("badge active", "active"),
    };
    html! { span class=(class) { (text) } }
}

/// A select of revocation reasons, named `name`.
pub(crate) fn reason_select(name: &str) -> Markup {
    html! {
        select id=(name) name=(name) {
            @for reason in [
                RevocationReason::Unspecified,
                RevocationReason::Compromised,
                RevocationReason::Leaked,
                RevocationReason::Superseded,
                RevocationReason::Retired,
            ] {
                option value=(reason.as_str()) { (reason.as_str()) }
            }
        }
    }
}

/// A time as people read it, to the minute, UTC.
pub(crate) fn time(at: Timestamp) -> Markup {
    html! { time datetime=(at) { (at.strftime("%Y-%m-%d %H:%M UTC")) } }
}

pub(crate) fn time_or(at: Option<Timestamp>, none: &str) -> Markup {
    match at {
        Some(at) => time(at),
        None => html! { (none) },
    }
}

/// `text` for a query string's value.
pub(crate) fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// `text` as one path segment: every byte but the unreserved ones escaped.
pub(crate) fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// "Revoke selected": each checked key revoked with the reason, recorded as the person
/// signed in; the answer lists what was done.
pub(crate) async fn revoke_selected(
    State(console): State<super::State>,
    Change { who, form }: Change,
) -> Result<Html<String>, ConsoleError> {
    let reason = match form.text("reason") {
        None => RevocationReason::Unspecified,
        Some(text) => text
            .parse()
            .map_err(|e: crate::record::UnknownRevocationReason| {
                ConsoleError::BadRequest(e.to_string())
            })?,
    };
    let ids = form
        .all("id")
        .map(|id| {
            KeyId::new(id).map_err(|_| ConsoleError::BadRequest(format!("{id:?} is not a key id")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(ConsoleError::BadRequest(
            "Select the keys to revoke first.".into(),
        ));
    }
    let keys = console.manager.acting_as(who.actor());
    let mut revoked = Vec::new();
    let mut failed = Vec::new();
    for id in ids {
        match keys.revoke_with(&id, Revocation::new(reason)).await {
            Ok(_) => revoked.push(id),
            Err(error) if error.is_refusal() => failed.push((id, error.to_string())),
            Err(error) => return Err(error.into()),
        }
    }
    tracing::info!(
        revoked = revoked.len(),
        by = who.name.as_str(),
        "console: keys revoked"
    );
    let body = html! {
        h1 { "Keys revoked" }
        p role="status" { "Revoked " (revoked.len()) " of " (revoked.len() + failed.len()) " selected keys (" (reason.as_str()) ")." }
        ul {
            @for id in &revoked {
                li { a href=(who.base.at(&format!("/keys/{id}"))) { code { (id) } } " revoked" }
            }
            @for (id, why) in &failed {
                li.error { code { (id) } ": " (why) }
            }
        }
        p { a href=(who.base.at("/keys")) { "Back to the keys" } }
    };
    Ok(Html(layout::page(&who, "Keys revoked", body).into_string()))
}
