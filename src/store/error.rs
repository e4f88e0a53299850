//! Why a store operation failed.

use std::path::PathBuf;
use std::time::Duration;

use crate::key::KeyId;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `insert` of an id that is already there.
    #[error("key {0} already exists")]
    AlreadyExists(KeyId),
    /// [`KeyStore::replace`](super::KeyStore::replace) of an id that is not there.
    #[error("key {0} does not exist")]
    NotFound(KeyId),
    /// [`KeyStore::replace`](super::KeyStore::replace) of a record that changed since it was read.
    #[error("key {0} changed since it was read")]
    Conflict(KeyId),
    /// [`KeyStore::insert_limited`](super::KeyStore::insert_limited) for a principal that already holds `limit` live keys.
    #[error("{principal} already has {limit} live key(s), the most allowed")]
    LimitReached {
        /// Whose keys.
        principal: String,
        /// The limit.
        limit: usize,
    },
    /// Reading or writing the store's file failed.
    #[error("key store file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The store's file is not a valid key store; it was left as it is.
    #[error("key store file {path} is not valid: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
    /// The store's configuration is not usable (a database URL that does not parse, say).
    #[error("key store configuration: {0}")]
    Config(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A record in the store does not make a valid key record; it is reported, not skipped.
    #[error("key store holds an invalid record {id}: {source}")]
    InvalidRecord {
        /// The record's id as stored.
        id: String,
        /// What is wrong with it.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store's own work failed (a blocking task panicked): a bug, not an outage, so it
    /// is never answered as "unavailable".
    #[error("key store task failed: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend could not be reached or failed; the request may succeed later.
    #[error("key store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A store setting too small to work: a poll interval of zero would spin.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{setting} must be at least {min:?}, not {got:?}")]
pub(crate) struct SettingTooSmall {
    pub(crate) setting: &'static str,
    pub(crate) min: Duration,
    pub(crate) got: Duration,
}

impl SettingTooSmall {
    /// The shortest poll interval a store accepts.
    pub(crate) const MIN_POLL: Duration = Duration::from_millis(10);

    /// `Ok` if `got` is at least `min`, else [`StoreError::Config`].
    pub(crate) fn check(
        setting: &'static str,
        min: Duration,
        got: Duration,
    ) -> Result<(), StoreError> {
        if got < min {
            return Err(StoreError::Config(Box::new(Self { setting, min, got })));
        }
        Ok(())
    }
}
