//! Why a store operation failed.

use std::path::PathBuf;

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
    Config(String),
    /// A record in the store does not make a valid key record; it is reported, not skipped.
    #[error("key store holds an invalid record {id}: {reason}")]
    InvalidRecord {
        /// The record's id as stored.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend could not be reached or failed; the request may succeed later.
    #[error("key store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}
