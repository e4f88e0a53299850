//! Listings: which records a listing asks for, from where, how many.

use jiff::Timestamp;

use crate::key::KeyId;
use crate::record::{KeyRecord, KeyStatus};

/// Which records a listing asks for, from where, how many: what
/// [`KeyStore::query`](super::KeyStore::query) reads. `KeyQuery::new()` is every record.
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
    /// Only legacy opaque records ([`KeyRecord::legacy`]): what a validator scans for a key
    /// that carries no id.
    pub legacy: bool,
    /// Only records that expire at or before this time and are not revoked: what the expiry
    /// sweeper reads.
    pub expiring_by: Option<Timestamp>,
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

    /// Only legacy opaque records.
    pub fn legacy(mut self) -> Self {
        self.legacy = true;
        self
    }

    /// Only records, not revoked, that expire at or before `until`.
    pub fn expiring_by(mut self, until: Timestamp) -> Self {
        self.expiring_by = Some(until);
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
            && (!self.legacy || record.legacy)
            && self.expiring_by.is_none_or(|until| {
                record.status != KeyStatus::Revoked
                    && record.expires_at.is_some_and(|at| at <= until)
            })
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
