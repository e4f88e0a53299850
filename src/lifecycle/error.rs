//! Why a lifecycle operation was refused or failed.

use super::ExpiryError;
use super::EXPORT_VERSION;
use crate::key::{KeyError, KeyId, RngError};
use crate::store::StoreError;

/// Why a lifecycle operation was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// No key has this id.
    #[error("no key with id {0}")]
    NotFound(KeyId),
    /// The principal already holds the most live keys allowed.
    #[error("{principal} already has {limit} live key(s), the most allowed")]
    LimitReached {
        /// Whose keys.
        principal: String,
        /// The limit.
        limit: usize,
    },
    /// The key is deactivated; activate it first.
    #[error("key {0} is inactive")]
    Inactive(KeyId),
    /// The key is revoked, for good.
    #[error("key {0} is revoked")]
    Revoked(KeyId),
    /// The key is protected; deleting it needs force.
    #[error("key {0} is protected; delete it with force")]
    Protected(KeyId),
    /// A key with this id exists already.
    #[error("key {0} already exists")]
    AlreadyExists(KeyId),
    /// The key kept changing under this change (other writers at the same moment); nothing
    /// was written. Try again.
    #[error("key {0} was being changed by someone else; try again")]
    Conflict(KeyId),
    /// Input that cannot be used: an empty principal, a name over its limit, a bad row.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The expiry could not be computed.
    #[error(transparent)]
    Expiry(#[from] ExpiryError),
    /// The OS random number generator failed.
    #[error(transparent)]
    Rng(#[from] RngError),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// Work run off the async workers (a PBKDF2 derivation) failed: it panicked or was
    /// cancelled. A bug, not an outage.
    #[error("key manager task failed")]
    Internal(#[source] tokio::task::JoinError),
}

/// Input a [`KeyManager`](super::KeyManager) refuses, whoever sent it (the CLI, the admin
/// API, your code). Messages name the field and the rule, never a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// The principal is empty (or only spaces).
    #[error("principal must not be empty")]
    EmptyPrincipal,
    /// A text field is over its limit.
    #[error("{field} must be at most {max} characters")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its limit, in characters.
        max: usize,
    },
    /// A field that goes into logs and audit fields holds a control character.
    #[error("{field} must not hold control characters")]
    ControlCharacters {
        /// Which field.
        field: &'static str,
    },
    /// More CIDRs in an IP allow-list than a key may carry.
    #[error("at most {max} addresses in an IP allow-list")]
    TooManyAllowedIps {
        /// The limit.
        max: usize,
    },
    /// More permissions than a key may carry.
    #[error("at most {max} permissions")]
    TooManyPermissions {
        /// The limit.
        max: usize,
    },
    /// A permission is the empty string.
    #[error("a permission must not be empty")]
    EmptyPermission,
    /// A rotation's grace period is negative.
    #[error("grace period must not be negative")]
    NegativeGrace,
    /// A rotation's grace period reaches past the representable times.
    #[error("grace period out of range")]
    GraceOutOfRange,
    /// An export of another format version.
    #[error("export version {found} is not {EXPORT_VERSION}")]
    ExportVersion {
        /// The version found.
        found: u32,
    },
    /// A key in this manager's format whose id is not a valid id.
    #[error("the key's id: {0}")]
    KeyId(#[source] KeyError),
    /// One row of a Maximo import (counted from 1) is not usable.
    #[error("row {row}: {source}")]
    MaximoRow {
        /// The row, counted from 1.
        row: usize,
        /// What is wrong with it (never its record).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl LifecycleError {
    /// Whether a rule refused the operation (limit, state, protection, unknown id), as
    /// opposed to bad input or a failure: the CLI exits 1 for these, 2 for the rest.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            LifecycleError::NotFound(_)
                | LifecycleError::LimitReached { .. }
                | LifecycleError::Inactive(_)
                | LifecycleError::Revoked(_)
                | LifecycleError::Protected(_)
                | LifecycleError::AlreadyExists(_)
                | LifecycleError::Conflict(_)
        )
    }
}

impl From<StoreError> for LifecycleError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(id) => LifecycleError::NotFound(id),
            StoreError::AlreadyExists(id) => LifecycleError::AlreadyExists(id),
            StoreError::Conflict(id) => LifecycleError::Conflict(id),
            StoreError::LimitReached { principal, limit } => {
                LifecycleError::LimitReached { principal, limit }
            }
            other => LifecycleError::Store(other),
        }
    }
}
