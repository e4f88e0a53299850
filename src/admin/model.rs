//! The JSON the admin API reads and writes; `openapi.json` describes the same shapes.

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};

use super::AdminError;
use crate::key::{KeyId, PlaintextKey};
use crate::lifecycle::Expiry;
use crate::lifecycle::{KeyPatch, NewKey};
use crate::policy::{IpNet, Quota, RateLimit};
use crate::record::{KeyRecord, KeyStatus, Revocation};
use crate::store::KeyQuery;

/// Most keys on one page, and the default.
const MAX_PAGE: usize = 500;
const DEFAULT_PAGE: usize = 50;

/// A key as the admin API shows it: everything but its PBKDF2 record.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct KeyView {
    /// The record id.
    pub id: KeyId,
    /// Whose key it is.
    pub principal: String,
    /// A short label.
    pub name: Option<String>,
    /// A longer note.
    pub description: Option<String>,
    /// What the key may do.
    pub permissions: Vec<String>,
    /// `active`, `inactive` or `revoked`.
    pub status: KeyStatus,
    /// When it stops working; `null` is never.
    pub expires_at: Option<Timestamp>,
    /// Whether it has expired (it is kept until deleted).
    pub expired: bool,
    /// Deleted only with `?force=true`.
    pub protected: bool,
    /// An imported Maximo key, found by a scan until first used.
    pub legacy: bool,
    /// When it was made.
    pub created_at: Timestamp,
    /// Who made it.
    pub created_by: Option<String>,
    /// When it last changed.
    pub updated_at: Option<Timestamp>,
    /// Who last changed it.
    pub updated_by: Option<String>,
    /// When it was last accepted, to within the validators' flush interval.
    pub last_used_at: Option<Timestamp>,
    /// At most this many requests per period.
    pub rate_limit: Option<RateLimit>,
    /// Uses allowed, optionally refilled every period.
    pub quota: Option<Quota>,
    /// Uses left in the quota's period as the store counts them (uses leased by running
    /// servers count as used).
    pub quota_remaining: Option<u64>,
    /// Where the key may be used from; empty is anywhere.
    pub allowed_ips: Vec<IpNet>,
    /// Why and where it was revoked; `null` unless revoked (or revoked before reasons were
    /// kept).
    pub revocation: Option<Revocation>,
}

impl KeyView {
    /// The view of `record`, with `expired` as of `now`.
    pub fn new(record: &KeyRecord, now: Timestamp) -> Self {
        Self {
            id: record.id.clone(),
            principal: record.principal.clone(),
            name: record.name.clone(),
            description: record.description.clone(),
            permissions: record.permissions.clone(),
            status: record.status,
            expires_at: record.expires_at,
            expired: record.is_expired_at(now),
            protected: record.protected,
            legacy: record.legacy,
            created_at: record.created_at,
            created_by: record.created_by.clone(),
            updated_at: record.updated_at,
            updated_by: record.updated_by.clone(),
            last_used_at: record.usage.last_used_at,
            rate_limit: record.rate_limit,
            quota: record.quota,
            quota_remaining: record
                .quota
                .map(|q| record.usage.quota_remaining.unwrap_or(q.uses())),
            allowed_ips: record.allowed_ips.clone(),
            revocation: record.revocation.clone(),
        }
    }
}

/// A key just made or regenerated: the key itself, shown this once, and its record.
///
/// The key is zeroized when this is dropped; `Debug` does not show it.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct IssuedKey {
    /// The API key. Not kept anywhere: store it now.
    #[serde(serialize_with = "expose")]
    pub key: PlaintextKey,
    /// The key's record.
    pub record: KeyView,
}

impl IssuedKey {
    /// The answer for a key just issued.
    pub fn new(record: &KeyRecord, key: PlaintextKey, now: Timestamp) -> Self {
        Self {
            key,
            record: KeyView::new(record, now),
        }
    }
}

/// The one place a plaintext key is written out: the answer to its owner.
fn expose<S: serde::Serializer>(key: &PlaintextKey, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(key.expose())
}

/// One page of a listing, ordered by id.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct KeyPage {
    /// The keys on this page.
    pub items: Vec<KeyView>,
    /// Pass as `after` for the next page; `null` on the last.
    pub next: Option<KeyId>,
}

impl KeyPage {
    /// The page of the first `limit` of `records` (ordered by id; one more means there is a
    /// next page).
    pub(crate) fn of(mut records: Vec<KeyRecord>, limit: usize, now: Timestamp) -> Self {
        let more = records.len() > limit;
        records.truncate(limit);
        let items: Vec<KeyView> = records.iter().map(|r| KeyView::new(r, now)).collect();
        let next = match (more, items.last()) {
            (true, Some(last)) => Some(last.id.clone()),
            _ => None,
        };
        Self { items, next }
    }
}

/// The query string of a listing.
#[derive(Debug, Clone, Default, Deserialize)]
#[non_exhaustive]
pub struct ListQuery {
    /// Only this principal's keys (on `/keys`).
    pub principal: Option<String>,
    /// Only keys in this state.
    pub status: Option<KeyStatus>,
    /// Text searched for, case-insensitively, in id, principal, name and description.
    pub q: Option<String>,
    /// Keys per page: 1 to 500, default 50.
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    pub after: Option<String>,
}

impl ListQuery {
    /// The store query this asks for (without a limit: the caller sets it).
    pub(super) fn to_query(&self) -> Result<KeyQuery, AdminError> {
        let mut query = KeyQuery::new();
        query.principal.clone_from(&self.principal);
        query.status = self.status;
        query.search = self.q.clone().filter(|q| !q.is_empty());
        query.after = match self.after.as_deref() {
            None | Some("") => None,
            Some(after) => Some(KeyId::new(after).map_err(|_| {
                AdminError::bad_request("after must be the `next` of an earlier page")
            })?),
        };
        Ok(query)
    }

    pub(super) fn limit(&self) -> Result<usize, AdminError> {
        match self.limit {
            None => Ok(DEFAULT_PAGE),
            Some(n @ 1..=MAX_PAGE) => Ok(n),
            Some(_) => Err(AdminError::bad_request(format!(
                "limit must be 1 to {MAX_PAGE}"
            ))),
        }
    }
}

/// The body of a create request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CreateKey {
    /// Whose key (required on `/keys`; on `/principals/{principal}/keys` the path says).
    pub principal: Option<String>,
    /// A short label.
    pub name: Option<String>,
    /// A longer note.
    pub description: Option<String>,
    /// What the key may do.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// `never` (the default), a duration (`90d`, `P1W`), Maximo minutes, or an RFC 3339 time.
    pub expires: Option<String>,
    /// Deleted only with `?force=true`.
    #[serde(default)]
    pub protected: bool,
    /// A rate limit, `100/1m`.
    pub rate_limit: Option<String>,
    /// A quota, `10000` or `10000/1d`.
    pub quota: Option<String>,
    /// Addresses or CIDRs the key may be used from; empty or left out is anywhere.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
}

impl CreateKey {
    /// The key to issue; its limits are [`KeyManager`](crate::KeyManager)'s to check.
    pub(super) fn into_new_key(self, principal: String) -> Result<NewKey, AdminError> {
        let mut new = NewKey::new(principal)
            .permissions(self.permissions)
            .protected(self.protected);
        if let Some(name) = self.name {
            new = new.name(name);
        }
        if let Some(description) = self.description {
            new = new.description(description);
        }
        if let Some(expires) = self.expires {
            new = new.expires(expiry(&expires)?);
        }
        Ok(new
            .rate_limit(self.rate_limit.as_deref().map(rate_limit).transpose()?)
            .quota(self.quota.as_deref().map(quota).transpose()?)
            .allowed_ips(allowed_ips(&self.allowed_ips)?))
    }
}

/// The body of a patch: fields left out stay as they are; `null` clears a name or a
/// description.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PatchKey {
    /// A new label, or `null` to clear it.
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Option<String>>,
    /// A new note, or `null` to clear it.
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
    /// The new permissions, replacing the old.
    pub permissions: Option<Vec<String>>,
    /// A new expiry, counted from now; `never` clears it.
    pub expires: Option<String>,
    /// `active`, `inactive` (deactivate) or `revoked` (for good).
    pub status: Option<KeyStatus>,
    /// A new rate limit, or `null` to clear it.
    #[serde(default, deserialize_with = "present")]
    pub rate_limit: Option<Option<String>>,
    /// A new quota (starting afresh), or `null` to clear it.
    #[serde(default, deserialize_with = "present")]
    pub quota: Option<Option<String>>,
    /// A new IP allow-list, replacing the old; empty is anywhere.
    pub allowed_ips: Option<Vec<String>>,
}

/// A field that is present, even as `null`, is `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

impl PatchKey {
    pub(super) fn into_patch(self) -> Result<KeyPatch, AdminError> {
        let mut patch = KeyPatch::new();
        if let Some(name) = self.name {
            patch = patch.name(name);
        }
        if let Some(description) = self.description {
            patch = patch.description(description);
        }
        if let Some(permissions) = self.permissions {
            patch = patch.permissions(permissions);
        }
        if let Some(expires) = self.expires {
            patch = patch.expires(expiry(&expires)?);
        }
        if let Some(status) = self.status {
            patch = patch.status(status);
        }
        if let Some(limit) = self.rate_limit {
            patch = patch.rate_limit(limit.as_deref().map(rate_limit).transpose()?);
        }
        if let Some(q) = self.quota {
            patch = patch.quota(q.as_deref().map(quota).transpose()?);
        }
        if let Some(allowed) = self.allowed_ips {
            patch = patch.allowed_ips(allowed_ips(&allowed)?);
        }
        Ok(patch)
    }
}

fn rate_limit(text: &str) -> Result<RateLimit, AdminError> {
    text.parse()
        .map_err(|e| AdminError::bad_request(format!("rate_limit: {e}")))
}

fn quota(text: &str) -> Result<Quota, AdminError> {
    text.parse()
        .map_err(|e| AdminError::bad_request(format!("quota: {e}")))
}

/// Addresses or CIDRs; a single address is a host CIDR (`/32`, `/128`).
fn allowed_ips(texts: &[String]) -> Result<Vec<IpNet>, AdminError> {
    texts
        .iter()
        .map(|text| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    AdminError::bad_request("allowed_ips: each is an IPv4 or IPv6 address or CIDR")
                })
        })
        .collect()
}

fn expiry(text: &str) -> Result<Expiry, AdminError> {
    text.parse()
        .map_err(|e| AdminError::bad_request(format!("expires: {e}")))
}
