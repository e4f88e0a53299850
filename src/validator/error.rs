//! Why a key was not accepted: the reasons kept for logs and metrics, and the error callers see.

use std::fmt;
use std::time::Duration;

use crate::store::StoreError;

/// Why a key was refused. For logs and metrics only: callers get one answer for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// Not a key in this crate's format (bad layout, prefix or checksum).
    Malformed,
    /// No record has the key's id.
    UnknownKey,
    /// The record exists, the secret does not match it.
    WrongSecret,
    /// The key is deactivated.
    Inactive,
    /// The key is revoked.
    Revoked,
    /// The key has expired.
    Expired,
}

impl RejectReason {
    /// A short lower-case label (`wrong_secret`), for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::UnknownKey => "unknown_key",
            RejectReason::WrongSecret => "wrong_secret",
            RejectReason::Inactive => "inactive",
            RejectReason::Revoked => "revoked",
            RejectReason::Expired => "expired",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why validation did not produce an identity.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The key is not valid (the reason is for logs, not for the caller).
    #[error("API key rejected: {0}")]
    Rejected(RejectReason),
    /// The store could not be read: not the key's fault; try again later.
    #[error("key store unavailable")]
    Unavailable(#[source] StoreError),
    /// Too many derivations are running or queued; try again later.
    #[error("too many API key verifications in progress")]
    Overloaded,
    /// A derivation failed to run (it panicked, or its thread could not start), or the
    /// store failed in a way no retry fixes ([`StoreError::Internal`]): a bug, logged.
    #[error("API key verification failed: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why [`Validator::enforce`](super::Validator::enforce) did not admit a request with a valid
/// key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A policy of the key refused the request.
    #[error("refused by the key's policy: {0}")]
    Refused(crate::policy::PolicyRefusal),
    /// A quota lease could not be taken from the store: try again later.
    #[error("key store unavailable for a quota lease")]
    Unavailable(#[source] StoreError),
    /// Taking a lease failed in a way no retry fixes (its task panicked): a bug, logged.
    #[error("quota lease failed: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why [`Validator::check_store`](super::Validator::check_store) found the store not ready.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreCheckError {
    /// The store did not answer in time.
    #[error("key store did not answer within {0:?}")]
    Timeout(Duration),
    /// The store answered with a failure.
    #[error("key store failed: {0}")]
    Store(#[source] StoreError),
}
