//! The key record: who a key belongs to, what it may do, whether it may be used, and the
//! PBKDF2 hash of its secret. What every store keeps and every part of the crate reads.
//!
//! A record holds settings, which operators change (and which are changes: events, cache
//! invalidation, compare-and-swap), and [`Usage`], which traffic writes (none of that).

mod status;
mod usage;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use status::{KeyStatus, Revocation, RevocationReason, UnknownRevocationReason, UnknownStatus};
pub use usage::Usage;

use crate::hash::{HashParams, Pbkdf2Hash, Prf};
use crate::key::{KeyFormat, KeyId, PlaintextKey, RngError};
use crate::policy::{IpNet, Quota, RateLimit};

/// A stored API key: who it belongs to, what it may do, and the PBKDF2 record of its secret.
///
/// `Debug` shows the record's parameters, never its salt or hash bytes, nor a legacy key's
/// lookup digest (a fast hash of the key).
///
/// Made with [`generate`](Self::generate) or [`new`](Self::new), then changed field by field;
/// `#[non_exhaustive]`, so a new field is not a breaking change.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyRecord {
    /// The record id, carried in clear in the key.
    pub id: KeyId,
    /// The user (or service account) the key belongs to.
    pub principal: String,
    /// PBKDF2 record of the whole key, `iterations:salt_hex:hash_hex`.
    pub hash: Pbkdf2Hash,
    /// The HMAC hash the record was made with (the record itself does not say).
    #[serde(default)]
    pub prf: Prf,
    /// A short label chosen by the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A longer note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What the key may do; checked by the application, handed over in the identity.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Active, inactive or revoked.
    #[serde(default)]
    pub status: KeyStatus,
    /// When the key stops working; `None` is never.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// When the record was made.
    pub created_at: Timestamp,
    /// Who made it (an operator, a service), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// When it last changed, if it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    /// Who last changed it, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    /// Deleted only when forced (BMC Helix's `non_deletable`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    /// A legacy opaque key (a Maximo import): the key carries no id, so it is found by its
    /// lookup digest, or by a scan until the digest is known.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub legacy: bool,
    /// For a legacy key: SHA-256 of the key, hex, once the key has been seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup_digest: Option<String>,
    /// At most this many requests per period (GCRA: smooth, with a burst of the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Uses allowed, optionally refilled every period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// The addresses (CIDRs) the key may be used from; empty is anywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips: Vec<IpNet>,
    /// Why and where the key was revoked, once it is; `None` for a key revoked before
    /// reasons were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<Revocation>,
    /// The key this one was issued to replace, by a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<KeyId>,
    /// What traffic writes: last use and quota spent. Kept in the same JSON object as the
    /// settings (the file format has them side by side).
    #[serde(flatten)]
    pub usage: Usage,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("id", &self.id)
            .field("principal", &self.principal)
            .field("hash", &self.hash)
            .field("prf", &self.prf)
            .field("name", &self.name)
            .field("description", &self.description)
            .field("permissions", &self.permissions)
            .field("status", &self.status)
            .field("expires_at", &self.expires_at)
            .field("created_at", &self.created_at)
            .field("created_by", &self.created_by)
            .field("updated_at", &self.updated_at)
            .field("updated_by", &self.updated_by)
            .field("protected", &self.protected)
            .field("legacy", &self.legacy)
            .field(
                "lookup_digest",
                &self.lookup_digest.as_ref().map(|_| "<redacted>"),
            )
            .field("rate_limit", &self.rate_limit)
            .field("quota", &self.quota)
            .field("allowed_ips", &self.allowed_ips)
            .field("revocation", &self.revocation)
            .field("replaces", &self.replaces)
            .field("usage", &self.usage)
            .finish()
    }
}

impl KeyRecord {
    /// A new active record for `principal`, with a fresh id and secret.
    ///
    /// Returns the record to store and the plaintext key to hand over once. Runs one PBKDF2
    /// derivation: in a server, call it from `spawn_blocking`.
    ///
    /// # Errors
    /// [`RngError`] when the OS RNG fails.
    pub fn generate(
        principal: impl Into<String>,
        format: &KeyFormat,
        params: &HashParams,
    ) -> Result<(Self, PlaintextKey), RngError> {
        let (id, key) = format.generate()?;
        let hash = Pbkdf2Hash::create(key.expose().as_bytes(), params)?;
        Ok((Self::new(id, principal, hash, params.prf()), key))
    }

    /// A new active record from parts, created now, with no name, permissions or expiry.
    pub fn new(id: KeyId, principal: impl Into<String>, hash: Pbkdf2Hash, prf: Prf) -> Self {
        Self {
            id,
            principal: principal.into(),
            hash,
            prf,
            name: None,
            description: None,
            permissions: Vec::new(),
            status: KeyStatus::Active,
            expires_at: None,
            created_at: record_time(),
            created_by: None,
            updated_at: None,
            updated_by: None,
            protected: false,
            legacy: false,
            lookup_digest: None,
            rate_limit: None,
            quota: None,
            allowed_ips: Vec::new(),
            revocation: None,
            replaces: None,
            usage: Usage::default(),
        }
    }

    /// Whether the key has expired at `now`.
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Sets the quota and starts it afresh: all its uses left, its period starting at the
    /// next use. What issuing a key and changing its quota do.
    pub fn set_quota(&mut self, quota: Option<Quota>) {
        self.quota = quota;
        self.usage.quota_remaining = None;
        self.usage.quota_period_start = None;
    }

    /// Whether two versions of a record differ in anything but their [`Usage`]: the
    /// compare-and-swap rule of [`KeyStore::replace`](crate::KeyStore::replace). Usage changes
    /// with traffic, not with an operator's edit, so it neither conflicts with an edit nor is
    /// a change caches hear of.
    pub fn differs_beyond_usage(&self, other: &KeyRecord) -> bool {
        if self.usage == other.usage {
            return self != other;
        }
        let mut settings = self.clone();
        settings.usage = other.usage.clone();
        settings != *other
    }

    /// What [`KeyStore::replace`](crate::KeyStore::replace) writes for this new version of a
    /// record read as `current` and stored now as `stored`: its settings, with the usage
    /// [`Usage::kept`] gives.
    pub fn keeping_usage(mut self, stored: &KeyRecord, current: &KeyRecord) -> KeyRecord {
        let quota_changed = self.quota != current.quota;
        self.usage = self
            .usage
            .kept(&stored.usage, &current.usage, quota_changed);
        self
    }

    /// The policies a validator enforces for this key.
    pub(crate) fn policies(&self) -> crate::policy::Policies<'_> {
        crate::policy::Policies(self.rate_limit, self.quota, &self.allowed_ips)
    }

    /// Whether the key counts toward its principal's limit at `now`: not revoked and not
    /// expired (deactivated keys count, as in Maximo).
    pub fn is_live_at(&self, now: Timestamp) -> bool {
        self.status != KeyStatus::Revoked && !self.is_expired_at(now)
    }
}

/// Now, to the microsecond: the precision records are kept at, so a record reads back from
/// every backend (PostgreSQL keeps microseconds) exactly as it was written.
pub(crate) fn record_time() -> Timestamp {
    let now = Timestamp::now();
    let nanos = now.subsec_nanosecond() % 1_000;
    now - jiff::SignedDuration::from_nanos(i64::from(nanos))
}
