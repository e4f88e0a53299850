//! Usage through the admin API: a key's requests by bucket (`GET /keys/{id}/usage`), and the
//! busiest keys (`GET /usage`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{key_id, query, AdminError, Manager};
use crate::key::KeyId;
use crate::usage::{Bucket, Counts, Granularity, UsageRange};

/// The most keys `GET /usage` lists, and the default.
const MAX_TOP: usize = 1_000;
const DEFAULT_TOP: usize = 10;

/// `?from=&to=&granularity=`, as given.
#[derive(Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct UsageQuery {
    /// RFC 3339; inclusive, aligned down to its bucket.
    pub from: Option<String>,
    /// RFC 3339; exclusive, aligned down to its bucket.
    pub to: Option<String>,
    /// `hour` (default) or `day`.
    pub granularity: Option<String>,
    /// The busiest keys of this principal only (`GET /usage`).
    pub principal: Option<String>,
    /// At most this many keys (`GET /usage`; default 10, at most 1,000).
    pub limit: Option<usize>,
}

impl UsageQuery {
    /// The range asked for: the last 24 hours by the hour, or the last 30 days by the day,
    /// unless `from` or `to` say otherwise.
    ///
    /// # Errors
    /// [`AdminError::BadRequest`] saying what is wrong: an unknown granularity, a time that is
    /// not RFC 3339, `from` after `to`, a range over 400 days.
    pub fn range(&self, default: Granularity, now: Timestamp) -> Result<UsageRange, AdminError> {
        let granularity = match &self.granularity {
            Some(text) => text
                .parse()
                .map_err(|e| AdminError::bad_request(format!("granularity: {e}")))?,
            None => default,
        };
        let time = |name: &str, text: &Option<String>| -> Result<Option<Timestamp>, AdminError> {
            text.as_deref()
                .map(|t| {
                    t.parse::<Timestamp>().map_err(|_| {
                        AdminError::bad_request(format!(
                            "{name} is not an RFC 3339 time (like 2026-03-01T00:00:00Z)"
                        ))
                    })
                })
                .transpose()
        };
        let last = UsageRange::last(granularity, now);
        let span = last.to().duration_since(last.from());
        let (from, to) = match (time("from", &self.from)?, time("to", &self.to)?) {
            (None, None) => return Ok(last),
            (Some(from), None) => (from, last.to().max(from)),
            (None, Some(to)) => (to - span, to),
            (Some(from), Some(to)) => (from, to),
        };
        UsageRange::new(from, to, granularity).map_err(|e| AdminError::bad_request(e.to_string()))
    }

    fn limit(&self) -> Result<usize, AdminError> {
        match self.limit {
            None => Ok(DEFAULT_TOP),
            Some(n) if (1..=MAX_TOP).contains(&n) => Ok(n),
            Some(_) => Err(AdminError::bad_request(format!(
                "limit must be 1 to {MAX_TOP}"
            ))),
        }
    }
}

/// A key's usage: `{"buckets": [{"start", "counts"}]}`, every bucket of the range.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UsageView {
    /// Oldest first, buckets without traffic as zeros.
    pub buckets: Vec<Bucket>,
}

/// One of the busiest keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TopItem {
    /// The key.
    pub id: KeyId,
    /// Whose it is.
    pub principal: String,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// Its requests over the range, by outcome.
    pub counts: Counts,
    /// All its requests over the range.
    pub total: u64,
}

/// The busiest keys: `{"items": [...]}`, the most requests first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TopUsage {
    /// The keys.
    pub items: Vec<TopItem>,
}

pub(super) async fn key_usage(
    State(keys): Manager,
    Path(id): Path<String>,
    q: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<UsageView>, AdminError> {
    let id = key_id(&id)?;
    let range = query(q)?.range(Granularity::Hour, Timestamp::now())?;
    let buckets = keys.usage(&id, range).await?;
    Ok(Json(UsageView { buckets }))
}

pub(super) async fn top_usage(
    State(keys): Manager,
    q: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<TopUsage>, AdminError> {
    let q = query(q)?;
    let range = q.range(Granularity::Day, Timestamp::now())?;
    let top = keys
        .top_usage(q.principal.as_deref(), range, q.limit()?)
        .await?;
    let items = top
        .into_iter()
        .map(|(record, counts)| TopItem {
            id: record.id,
            principal: record.principal,
            name: record.name,
            total: counts.total(),
            counts,
        })
        .collect();
    Ok(Json(TopUsage { items }))
}
