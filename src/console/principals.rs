//! A principal's page: their keys, and how many of their limit of live keys are in use.

use axum::extract::{Path, State};
use axum::response::Html;
use jiff::Timestamp;
use maud::html;

use super::auth::SignedIn;
use super::error::ConsoleError;
use super::keys::{encode, key_table};
use super::layout;
use crate::store::KeyQuery;

/// Keys shown for one principal: their limit is small (2 by default); a principal holding
/// more (an import) shows the first of them, with a link to the full listing.
const SHOWN: usize = 200;

pub(crate) async fn show(
    State(console): State<super::State>,
    who: SignedIn,
    Path(principal): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    let records = console
        .manager
        .query(&KeyQuery::new().principal(principal.clone()).limit(SHOWN))
        .await?;
    let now = Timestamp::now();
    let live = records.iter().filter(|r| r.is_live_at(now)).count();
    let limit = console.manager.limit();
    let title = format!("Principal {principal}");
    let body = html! {
        div.heading {
            h1 { "Principal " (principal) }
            a.button href={ (who.base.at("/keys/new")) "?principal=" (encode(&principal)) } { "New key" }
        }
        p role="status" {
            strong { (live) " of " (limit) } " live keys in use"
            @if live >= limit { " — at the limit: revoke or delete one before issuing another." } @else { "." }
            " Deactivated keys count; revoked and expired ones do not."
        }
        @if records.is_empty() {
            p.empty { "No keys." }
        } @else {
            (key_table(&who, &records, now))
        }
        @if records.len() == SHOWN {
            p { a href={ (who.base.at("/keys")) "?principal=" (encode(&principal)) } { "All of their keys" } }
        }
    };
    Ok(Html(layout::page(&who, &title, body).into_string()))
}
