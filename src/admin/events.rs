//! The audit trail through the admin API: `GET /events`, newest first, a page at a time.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{query, AdminError, Manager};
use crate::events::{AuditQuery, EventKind, KeyEvent};
use crate::key::KeyId;

/// The most events a page holds, and the default.
const MAX_PAGE: usize = 500;
const DEFAULT_PAGE: usize = 50;

/// `?key=&principal=&type=&actor=&since=&limit=&after=`, as given.
#[derive(Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct EventsQuery {
    /// Only events about this key.
    pub key: Option<String>,
    /// Only events about this principal's keys.
    pub principal: Option<String>,
    /// Only events of this type (`key.revoked`, or `revoked`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Only events this actor caused (`cli:alice`, `admin:ops/KEY_ID`, …).
    pub actor: Option<String>,
    /// Only events at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Events per page: 1 to 500, default 50.
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    pub after: Option<String>,
}

impl EventsQuery {
    /// The store query this asks for, one more than the page (to know whether there is a
    /// next one), and the page's size.
    ///
    /// # Errors
    /// [`AdminError::BadRequest`] saying which parameter is wrong.
    pub fn to_query(&self) -> Result<(AuditQuery, usize), AdminError> {
        let limit = match self.limit {
            None => DEFAULT_PAGE,
            Some(n @ 1..=MAX_PAGE) => n,
            Some(_) => {
                return Err(AdminError::bad_request(format!(
                    "limit must be 1 to {MAX_PAGE}"
                )))
            }
        };
        let mut q = AuditQuery::new().limit(limit + 1);
        if let Some(key) = nonempty(&self.key) {
            // A filter, not a resource: a key deleted long ago still has events, and a
            // malformed id is a bad parameter.
            let id = KeyId::new(key).map_err(|e| AdminError::bad_request(format!("key: {e}")))?;
            q = q.key_id(id);
        }
        if let Some(principal) = nonempty(&self.principal) {
            q = q.principal(principal);
        }
        if let Some(kind) = nonempty(&self.kind) {
            let kind: EventKind = kind
                .parse()
                .map_err(|e| AdminError::bad_request(format!("type: {e}")))?;
            q = q.kind(kind);
        }
        if let Some(actor) = nonempty(&self.actor) {
            q = q.actor(actor);
        }
        if let Some(since) = nonempty(&self.since) {
            let since: Timestamp = since.parse().map_err(|_| {
                AdminError::bad_request("since is not an RFC 3339 time (like 2026-03-01T00:00:00Z)")
            })?;
            q = q.since(since);
        }
        if let Some(after) = nonempty(&self.after) {
            let seq = after.parse::<u64>().map_err(|_| {
                AdminError::bad_request("after must be the `next` of an earlier page")
            })?;
            q = q.before(seq);
        }
        Ok((q, limit))
    }
}

fn nonempty(text: &Option<String>) -> Option<&str> {
    text.as_deref().filter(|t| !t.is_empty())
}

/// One event of the trail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EventView {
    /// Its place in the trail (newer events have higher ones).
    pub seq: u64,
    /// The event, as a webhook carries it.
    #[serde(flatten)]
    pub event: KeyEvent,
}

/// A page of the trail: `{"items": [...], "next": "…"}`, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EventPage {
    /// The events on this page.
    pub items: Vec<EventView>,
    /// Pass as `after` for the next (older) page; `null` on the last.
    pub next: Option<String>,
}

pub(super) async fn events(
    State(keys): Manager,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<EventPage>, AdminError> {
    let (q, limit) = query(q)?.to_query()?;
    let mut entries = keys.events(&q).await?;
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next = more
        .then(|| entries.last().map(|e| e.seq.to_string()))
        .flatten();
    let items = entries
        .into_iter()
        .map(|e| EventView {
            seq: e.seq,
            event: e.event,
        })
        .collect();
    Ok(Json(EventPage { items, next }))
}
