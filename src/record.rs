//! The key record: who a key belongs to, what it may do, whether it may be used, and the
//! PBKDF2 hash of its secret. What every store keeps and every part of the crate reads.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::hash::{HashParams, Pbkdf2Hash, Prf};
use crate::key::{KeyFormat, KeyId, PlaintextKey, RngError};
use crate::policy::{IpNet, Quota, RateLimit};

/// Whether a key may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// The key is accepted (until it expires).
    #[default]
    Active,
    /// Switched off for now; can be activated again.
    Inactive,
    /// Withdrawn for good.
    Revoked,
}

impl KeyStatus {
    /// The lower-case name used in JSON and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Inactive => "inactive",
            KeyStatus::Revoked => "revoked",
        }
    }
}

impl std::str::FromStr for KeyStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Self, UnknownStatus> {
        [KeyStatus::Active, KeyStatus::Inactive, KeyStatus::Revoked]
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or(UnknownStatus)
    }
}

/// A status name that is not `active`, `inactive` or `revoked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown key status: expected active, inactive or revoked")]
pub struct UnknownStatus;

/// Why a key was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RevocationReason {
    /// No reason given.
    #[default]
    Unspecified,
    /// Found where others can read it: a repository, a log, a ticket. What `scan --revoke`
    /// and the secret-scanning receiver record.
    Leaked,
    /// Known or suspected to be in the wrong hands, without a place it was found.
    Compromised,
    /// Replaced by another key before its rotation's grace period ended.
    Superseded,
    /// No longer needed: the integration or its owner is gone.
    Retired,
}

impl RevocationReason {
    const ALL: [RevocationReason; 5] = [
        RevocationReason::Unspecified,
        RevocationReason::Leaked,
        RevocationReason::Compromised,
        RevocationReason::Superseded,
        RevocationReason::Retired,
    ];

    /// The lower-case name used in JSON, the CLI and events.
    pub const fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::Leaked => "leaked",
            RevocationReason::Compromised => "compromised",
            RevocationReason::Superseded => "superseded",
            RevocationReason::Retired => "retired",
        }
    }
}

impl std::fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RevocationReason {
    type Err = UnknownRevocationReason;

    fn from_str(text: &str) -> Result<Self, UnknownRevocationReason> {
        Self::ALL
            .into_iter()
            .find(|reason| reason.as_str() == text)
            .ok_or(UnknownRevocationReason)
    }
}

/// A reason name that is not one of [`RevocationReason`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown revocation reason: expected unspecified, leaked, compromised, superseded or retired"
)]
pub struct UnknownRevocationReason;

/// Why and where a key was revoked: kept on the record for the audit.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Revocation {
    /// Why.
    pub reason: RevocationReason,
    /// Where it came to light: a secret-scanning alert's URL, `PATH:LINE` of a scan, a
    /// ticket. Never the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl Revocation {
    /// A revocation for `reason`, with no location.
    pub fn new(reason: RevocationReason) -> Self {
        Self {
            reason,
            location: None,
        }
    }

    /// A key found at `location` (a URL, `PATH:LINE`).
    pub fn leaked_at(location: impl Into<String>) -> Self {
        Self {
            reason: RevocationReason::Leaked,
            location: Some(location.into()),
        }
    }

    /// Where it came to light.
    pub fn location(mut self, location: impl Into<String>) -> Self {
        self.location = Some(location.into());
        self
    }
}

/// A stored API key: who it belongs to, what it may do, and the PBKDF2 record of its secret.
///
/// `Debug` shows the record's parameters, never its salt or hash bytes, nor a legacy key's
/// lookup digest (a fast hash of the key).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// When the key was last accepted, to within the validator's flush interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Timestamp>,
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
    /// Uses left in the quota's current period, as the store counts them (validators hold
    /// leases of some); `None` is the whole quota. Usage, like the last use: kept by
    /// [`KeyStore::replace`](crate::KeyStore::replace) unless the caller changes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_remaining: Option<u64>,
    /// When the quota's current period began; `None` until the key is first used. Usage,
    /// like `quota_remaining`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_period_start: Option<Timestamp>,
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
            .field("last_used_at", &self.last_used_at)
            .field("legacy", &self.legacy)
            .field(
                "lookup_digest",
                &self.lookup_digest.as_ref().map(|_| "<redacted>"),
            )
            .field("rate_limit", &self.rate_limit)
            .field("quota", &self.quota)
            .field("quota_remaining", &self.quota_remaining)
            .field("quota_period_start", &self.quota_period_start)
            .field("allowed_ips", &self.allowed_ips)
            .field("revocation", &self.revocation)
            .field("replaces", &self.replaces)
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
        Ok((Self::new(id, principal, hash, params.prf_kind()), key))
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
            last_used_at: None,
            legacy: false,
            lookup_digest: None,
            rate_limit: None,
            quota: None,
            quota_remaining: None,
            quota_period_start: None,
            allowed_ips: Vec::new(),
            revocation: None,
            replaces: None,
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
        self.quota_remaining = None;
        self.quota_period_start = None;
    }

    /// Whether two versions of a record differ in anything but their usage (last use, quota
    /// uses left and period): the compare-and-swap rule of
    /// [`KeyStore::replace`](crate::KeyStore::replace). Usage changes with traffic, not with
    /// an operator's edit, so it neither conflicts with an edit nor is a change caches hear
    /// of.
    pub fn differs_beyond_usage(&self, other: &KeyRecord) -> bool {
        let same_usage = self.last_used_at == other.last_used_at
            && self.quota_remaining == other.quota_remaining
            && self.quota_period_start == other.quota_period_start;
        if same_usage {
            return self != other;
        }
        let mut a = self.clone();
        a.last_used_at = other.last_used_at;
        a.quota_remaining = other.quota_remaining;
        a.quota_period_start = other.quota_period_start;
        a != *other
    }

    /// What [`KeyStore::replace`](crate::KeyStore::replace) writes for this new version of a
    /// record read as `current` and stored now as `stored`: the later of the two last uses,
    /// and `stored`'s quota usage unless this version changed the quota or its usage from
    /// `current`'s (a new quota starts afresh; uses spent meanwhile are not undone).
    pub fn keeping_usage(mut self, stored: &KeyRecord, current: &KeyRecord) -> KeyRecord {
        self.last_used_at = self.last_used_at.max(stored.last_used_at);
        if self.quota == current.quota
            && self.quota_remaining == current.quota_remaining
            && self.quota_period_start == current.quota_period_start
        {
            self.quota_remaining = stored.quota_remaining;
            self.quota_period_start = stored.quota_period_start;
        }
        self
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
