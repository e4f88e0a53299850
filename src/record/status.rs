//! Whether a key may be used, and why and where it was revoked.

use serde::{Deserialize, Serialize};

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
