//! "Verify a key": paste a key, see whether it is valid and whose it is, and (for an
//! admin) why a refused key is refused. The key goes in a POST and is never shown back.

use axum::extract::State;
use axum::response::Html;
use jiff::Timestamp;
use maud::{html, Markup};

use super::auth::SignedIn;
use super::csrf::{Change, FIELD};
use super::error::ConsoleError;
use super::keys::{status_badge, time_or};
use super::layout;
use crate::key::PresentedKey;
use crate::record::{KeyRecord, KeyStatus};
use crate::validator::ValidationError;

pub(crate) async fn form(who: SignedIn) -> Html<String> {
    Html(page(&who, None).into_string())
}

fn page(who: &SignedIn, result: Option<Markup>) -> Markup {
    let body = html! {
        h1 { "Verify a key" }
        p { "Whether a key is valid, whose it is, and why it is refused if it is." }
        form method="post" action=(who.base.at("/verify")) {
            input type="hidden" name=(FIELD) value=(who.csrf_token);
            div.field {
                label for="key" { "Key to verify" }
                input type="password" id="key" name="key" autocomplete="off" required;
            }
            button type="submit" { "Verify" }
        }
        @if let Some(result) = result {
            section aria-labelledby="result-heading" {
                h2 id="result-heading" { "Result" }
                (result)
            }
        }
    };
    layout::page(who, "Verify a key", body)
}

/// Why a key with this record is refused now, or `None` when it is valid.
fn refusal(record: &KeyRecord, now: Timestamp) -> Option<&'static str> {
    match record.status {
        KeyStatus::Revoked => Some("revoked"),
        _ if record.is_expired_at(now) => Some("expired"),
        KeyStatus::Inactive => Some("deactivated"),
        _ => None,
    }
}

pub(crate) async fn verify(
    State(console): State<super::State>,
    Change { who, form }: Change,
) -> Result<Html<String>, ConsoleError> {
    let key = form
        .get("key")
        .map(str::trim)
        .and_then(|k| PresentedKey::new(k.as_bytes()).ok());
    // Whose it is, whatever its state: the same bounded path a leak report takes.
    let record = match key {
        None => None,
        Some(key) => match console.validator.record_of(&key).await {
            Ok(record) => record,
            Err(ValidationError::Rejected(_)) => None,
            Err(other) => return Err(other.into()),
        },
    };
    let now = Timestamp::now();
    let result = match &record {
        None => html! {
            p.error role="status" { "Not valid: no key of this store has that id and secret." }
        },
        Some(record) => html! {
            @match refusal(record, now) {
                None => p role="status" { strong { "Valid." } " It belongs to " strong { (record.principal) } "." },
                Some(why) => p.error role="status" { "Refused: the key of " (record.principal) " is " (why) "." },
            }
            dl.fields {
                dt { "Key" } dd { a href=(who.base.at(&format!("/keys/{}", record.id))) { code { (record.id) } } " " (status_badge(record, now)) }
                dt { "Principal" } dd { (record.principal) }
                dt { "Permissions" } dd { (record.permissions.join(", ")) }
                dt { "Expires" } dd { (time_or(record.expires_at, "never")) }
            }
        },
    };
    tracing::info!(
        key_id = record.as_ref().map(|r| r.id.as_str()),
        by = who.name.as_str(),
        "console: a key was verified"
    );
    Ok(Html(page(&who, Some(result)).into_string()))
}
