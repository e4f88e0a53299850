//! Key records and where they are kept: the [`KeyStore`] trait and its backends.
//!
//! A store holds [`KeyRecord`]s — never a plaintext key — and tells subscribers when a record
//! changes, so a [`Validator`](crate::Validator)'s cache drops a revoked key at once. Backends:
//!
//! - [`MemoryStore`]: in process, for tests and embedded use;
//! - [`FileStore`]: one JSON file, written atomically, reloaded when another process (the
//!   `tower-apikey` CLI) changes it;
//! - `PgKeyStore` (feature `postgres`): PostgreSQL, shared by a fleet of servers, which hear
//!   of every change through LISTEN/NOTIFY and a change log.
//!
//! # Example
//! ```
//! use tower_apikey::{KeyRecord, KeyStore, MemoryStore};
//! use tower_apikey::key::KeyFormat;
//! use tower_apikey::record::HashParams;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let (record, key) = KeyRecord::generate("alice", &KeyFormat::default(), &HashParams::default())?;
//! store.insert(record.clone()).await?;
//! assert_eq!(store.get(&record.id).await?.unwrap().principal, "alice");
//! assert_eq!(store.list(Some("alice")).await?.len(), 1);
//! # drop(key);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod expiry;
mod file;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError, Weak};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use expiry::{Expiry, ExpiryError};
pub use file::{FileStore, FileStoreBuilder};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PgKeyStore, PgKeyStoreBuilder, TempCluster};

use crate::key::{KeyFormat, KeyId, PlaintextKey, RngError};
use crate::record::{HashParams, Pbkdf2Hash, Prf};

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
        }
    }

    /// Whether the key has expired at `now`.
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
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

/// [`KeyStore::insert_limited`] on an id-ordered map, for backends that hold one.
pub(crate) fn insert_limited_into(
    records: &mut BTreeMap<KeyId, KeyRecord>,
    record: KeyRecord,
    limit: usize,
) -> Result<(), StoreError> {
    if records.contains_key(&record.id) {
        return Err(StoreError::AlreadyExists(record.id));
    }
    let now = Timestamp::now();
    let live = records
        .values()
        .filter(|r| r.principal == record.principal && r.is_live_at(now))
        .count();
    if live >= limit {
        return Err(StoreError::LimitReached {
            principal: record.principal,
            limit,
        });
    }
    records.insert(record.id.clone(), record);
    Ok(())
}

/// [`KeyStore::record_last_used`] on an id-ordered map.
pub(crate) fn record_last_used_in(
    records: &mut BTreeMap<KeyId, KeyRecord>,
    used: Vec<(KeyId, Timestamp)>,
) {
    for (id, at) in used {
        if let Some(record) = records.get_mut(&id) {
            record.last_used_at = Some(record.last_used_at.map_or(at, |seen| seen.max(at)));
        }
    }
}

/// Whether two versions of a record differ in anything but their last use.
pub(crate) fn differs_beyond_last_use(a: &KeyRecord, b: &KeyRecord) -> bool {
    if a.last_used_at == b.last_used_at {
        return a != b;
    }
    let mut a = a.clone();
    a.last_used_at = b.last_used_at;
    a != *b
}

/// [`KeyStore::replace`] on an id-ordered map.
pub(crate) fn replace_in(
    records: &mut BTreeMap<KeyId, KeyRecord>,
    current: &KeyRecord,
    new: KeyRecord,
) -> Result<(), StoreError> {
    let Some(stored) = records.get_mut(&current.id) else {
        return Err(StoreError::NotFound(current.id.clone()));
    };
    if differs_beyond_last_use(stored, current) {
        return Err(StoreError::Conflict(current.id.clone()));
    }
    *stored = keep_last_use(stored, new);
    Ok(())
}

/// `new`, with the later of its last use and `stored`'s: a use noted meanwhile is not lost.
pub(crate) fn keep_last_use(stored: &KeyRecord, mut new: KeyRecord) -> KeyRecord {
    new.last_used_at = new.last_used_at.max(stored.last_used_at);
    new
}

/// [`KeyStore::insert_many`] on an id-ordered map: all or nothing. Returns the ids added.
pub(crate) fn insert_many_into(
    records: &mut BTreeMap<KeyId, KeyRecord>,
    new: Vec<KeyRecord>,
) -> Result<Vec<KeyId>, StoreError> {
    let mut seen = std::collections::BTreeSet::new();
    for record in &new {
        if records.contains_key(&record.id) || !seen.insert(&record.id) {
            return Err(StoreError::AlreadyExists(record.id.clone()));
        }
    }
    let ids = new.iter().map(|r| r.id.clone()).collect();
    records.extend(new.into_iter().map(|r| (r.id.clone(), r)));
    Ok(ids)
}

/// One page of a listing: which records, from where, how many. See [`KeyStore::query`].
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

/// [`KeyStore::query`] on an id-ordered map: walks from `after`, clones only what it returns.
pub(crate) fn query_in(records: &BTreeMap<KeyId, KeyRecord>, query: &KeyQuery) -> Vec<KeyRecord> {
    use std::ops::Bound;
    let from = match &query.after {
        Some(after) => Bound::Excluded(after),
        None => Bound::Unbounded,
    };
    records
        .range::<KeyId, _>((from, Bound::Unbounded))
        .map(|(_, r)| r)
        .filter(|r| query.matches(r))
        .take(query.limit.unwrap_or(usize::MAX))
        .cloned()
        .collect()
}

/// A change to a store, as told to its subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreChange {
    /// The record with this id was inserted, updated or deleted.
    Changed(KeyId),
    /// Any record may have changed (a reload or a lost notification): forget everything.
    Reset,
}

/// Something told of every [`StoreChange`]: a validator's cache, say.
///
/// Called synchronously by the store, right after the change is committed. Keep it short and
/// non-blocking: drop a cache entry, bump a counter.
pub trait ChangeListener: Send + Sync {
    /// Called once per change.
    fn on_change(&self, change: &StoreChange);
}

/// The list of [`ChangeListener`]s a backend publishes to; a helper for implementing
/// [`KeyStore::subscribe`].
///
/// Holds listeners weakly: a dropped validator unsubscribes itself.
#[derive(Default)]
pub struct ChangeFeed {
    listeners: Mutex<Vec<Weak<dyn ChangeListener>>>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("ChangeFeed").field("listeners", &n).finish()
    }
}

impl ChangeFeed {
    /// An empty feed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a listener.
    pub fn subscribe(&self, listener: Weak<dyn ChangeListener>) {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(listener);
    }

    /// Tells every live listener of `change`, and forgets the dropped ones.
    pub fn publish(&self, change: &StoreChange) {
        // Listeners run outside the lock, so one may subscribe another.
        let live: Vec<_> = {
            let mut listeners = self
                .listeners
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            listeners.retain(|l| l.strong_count() > 0);
            listeners.iter().filter_map(Weak::upgrade).collect()
        };
        for listener in live {
            listener.on_change(change);
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `insert` of an id that is already there.
    #[error("key {0} already exists")]
    AlreadyExists(KeyId),
    /// `update` of an id that is not there.
    #[error("key {0} does not exist")]
    NotFound(KeyId),
    /// [`KeyStore::replace`] of a record that changed since it was read.
    #[error("key {0} changed since it was read")]
    Conflict(KeyId),
    /// [`KeyStore::insert_limited`] for a principal that already holds `limit` live keys.
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

/// Where key records are kept.
///
/// Every method that changes a record must, once the change is committed, publish a
/// [`StoreChange`] to the listeners given to [`subscribe`](Self::subscribe); a validator
/// relies on it to drop revoked keys from its cache.
pub trait KeyStore: Send + Sync + 'static {
    /// The record with this id, if any.
    fn get(&self, id: &KeyId)
        -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// Every record, or those of one principal, ordered by id.
    fn list(
        &self,
        principal: Option<&str>,
    ) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;

    /// One page of records, ordered by id: those `query` matches, after its `after`, at most
    /// its `limit`. What an admin listing reads.
    ///
    /// The default filters [`list`](Self::list); the crate's backends read only the page
    /// (PostgreSQL in SQL, where "ignoring case" is the database's `lower()`).
    fn query(
        &self,
        query: &KeyQuery,
    ) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send {
        let query = query.clone();
        async move {
            let records = self.list(query.principal.as_deref()).await?;
            Ok(records
                .into_iter()
                .filter(|r| query.after.as_ref().is_none_or(|after| r.id > *after))
                .filter(|r| query.matches(r))
                .take(query.limit.unwrap_or(usize::MAX))
                .collect())
        }
    }

    /// Adds a record; [`StoreError::AlreadyExists`] if its id is taken.
    fn insert(&self, record: KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replaces the record with the same id; [`StoreError::NotFound`] if there is none.
    fn update(&self, record: KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replaces `current` with `new` (same id) only if the stored record is still `current`,
    /// its last use aside: [`StoreError::Conflict`] if another writer changed it since it was
    /// read, [`StoreError::NotFound`] if it is gone. The later of the two last uses is kept.
    ///
    /// This is how a read-modify-write (deactivate, patch, regenerate) never undoes a change
    /// made meanwhile, a revocation above all. The default reads, compares, then updates, so
    /// a writer in between can still slip through; the crate's backends compare and write in
    /// one step (under their lock, or in one transaction with the row locked).
    fn replace(
        &self,
        current: &KeyRecord,
        new: KeyRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let id = current.id.clone();
        let current = current.clone();
        async move {
            let Some(stored) = self.get(&id).await? else {
                return Err(StoreError::NotFound(id));
            };
            if differs_beyond_last_use(&stored, &current) {
                return Err(StoreError::Conflict(id));
            }
            self.update(keep_last_use(&stored, new)).await
        }
    }

    /// Removes a record; `false` if there was none.
    fn delete(&self, id: &KeyId) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records when keys were last accepted (ids with no record are skipped; a later time
    /// than the one given is kept). Publishes no change: a key's last use does not change
    /// whether it is valid, and caches must not drop it for that.
    ///
    /// The default does nothing, for stores that do not keep last use.
    fn record_last_used(
        &self,
        used: Vec<(KeyId, Timestamp)>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        drop(used);
        std::future::ready(Ok(()))
    }

    /// Every legacy opaque record ([`KeyRecord::legacy`]), ordered by id: what a validator
    /// scans for a key that carries no id.
    ///
    /// The default filters [`list`](Self::list); a database answers from an index.
    fn list_legacy(&self) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send {
        async move {
            let mut records = self.list(None).await?;
            records.retain(|r| r.legacy);
            Ok(records)
        }
    }

    /// Adds a record unless its principal already holds `limit` live keys (see
    /// [`KeyRecord::is_live_at`]): [`StoreError::LimitReached`].
    ///
    /// The default reads then inserts, so two writers at once may both get in; the crate's
    /// backends check and insert in one step (under their lock or in one transaction).
    fn insert_limited(
        &self,
        record: KeyRecord,
        limit: usize,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            let now = Timestamp::now();
            let live = self
                .list(Some(&record.principal))
                .await?
                .iter()
                .filter(|r| r.is_live_at(now))
                .count();
            if live >= limit {
                return Err(StoreError::LimitReached {
                    principal: record.principal,
                    limit,
                });
            }
            self.insert(record).await
        }
    }

    /// Adds many records, all or none: [`StoreError::AlreadyExists`] if any id is taken (or
    /// given twice), and then nothing is added.
    ///
    /// The default checks then inserts one by one; the crate's backends write once.
    fn insert_many(
        &self,
        records: Vec<KeyRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            let mut seen = std::collections::BTreeSet::new();
            for record in &records {
                if !seen.insert(record.id.clone()) || self.get(&record.id).await?.is_some() {
                    return Err(StoreError::AlreadyExists(record.id.clone()));
                }
            }
            for record in records {
                self.insert(record).await?;
            }
            Ok(())
        }
    }

    /// Registers a listener for changes (the change feed).
    fn subscribe(&self, listener: Weak<dyn ChangeListener>);
}

/// The object-safe part of [`KeyStore`] a validator needs, so `Validator` is not generic.
pub(crate) trait ErasedStore: Send + Sync {
    fn get<'a>(
        &'a self,
        id: &'a KeyId,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Option<KeyRecord>, StoreError>> + Send + 'a>>;
    fn list_legacy(&self) -> BoxFuture<'_, Result<Vec<KeyRecord>, StoreError>>;
    fn replace<'a>(
        &'a self,
        current: &'a KeyRecord,
        new: KeyRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn record_last_used(
        &self,
        used: Vec<(KeyId, Timestamp)>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    fn subscribe(&self, listener: Weak<dyn ChangeListener>);
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl<S: KeyStore> ErasedStore for S {
    fn list_legacy(&self) -> BoxFuture<'_, Result<Vec<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::list_legacy(self))
    }

    fn replace<'a>(
        &'a self,
        current: &'a KeyRecord,
        new: KeyRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(KeyStore::replace(self, current, new))
    }

    fn record_last_used(
        &self,
        used: Vec<(KeyId, Timestamp)>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(KeyStore::record_last_used(self, used))
    }

    fn get<'a>(
        &'a self,
        id: &'a KeyId,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Option<KeyRecord>, StoreError>> + Send + 'a>>
    {
        Box::pin(KeyStore::get(self, id))
    }

    fn subscribe(&self, listener: Weak<dyn ChangeListener>) {
        KeyStore::subscribe(self, listener);
    }
}
