//! Paged listings: which records a listing asks for.

use crate::key::KeyId;
use crate::record::{KeyRecord, KeyStatus};

/// One page of a listing: which records, from where, how many. See [`KeyStore::query`](super::KeyStore::query).
///
/// ```
/// use tower_apikey::store::KeyQuery;
/// use tower_apikey::KeyStatus;
///
/// let page = KeyQuery::new().principal("alice").status(KeyStatus::Active).search("deploy").limit(50);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyQuery {
    /// Only this principal's records.
    pub principal: Option<String>,
    /// Only records in this state.
    pub status: Option<KeyStatus>,
    /// Only records whose id, principal, name or description holds this text, ignoring case.
    pub search: Option<String>,
    /// Only records whose id sorts after this one: the last id of the previous page.
    pub after: Option<KeyId>,
    /// At most this many records (`None`: all).
    pub limit: Option<usize>,
}

impl KeyQuery {
    /// Every record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only `principal`'s records.
    pub fn principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }

    /// Only records in `status`.
    pub fn status(mut self, status: KeyStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only records whose id, principal, name or description holds `text`, ignoring case.
    pub fn search(mut self, text: impl Into<String>) -> Self {
        self.search = Some(text.into());
        self
    }

    /// Only records after `id`.
    pub fn after(mut self, id: KeyId) -> Self {
        self.after = Some(id);
        self
    }

    /// At most `n` records.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Whether `record` is one this query asks for (`after` and `limit` aside).
    pub fn matches(&self, record: &KeyRecord) -> bool {
        self.principal
            .as_ref()
            .is_none_or(|p| record.principal == *p)
            && self.status.is_none_or(|s| record.status == s)
            && self.search.as_ref().is_none_or(|text| {
                let text = text.to_lowercase();
                [
                    Some(record.id.as_str()),
                    Some(record.principal.as_str()),
                    record.name.as_deref(),
                    record.description.as_deref(),
                ]
                .into_iter()
                .flatten()
                .any(|field| field.to_lowercase().contains(&text))
            })
    }
}
