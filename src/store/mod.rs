//! Where key records are kept: the [`KeyStore`] contract, its change feed, and its backends.
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
//! use tower_apikey::hash::HashParams;
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

mod boxed;
mod error;
mod feed;
mod file;
mod map;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod query;

use std::future::Future;
use std::sync::Weak;
use std::time::Duration;

use jiff::Timestamp;

pub use boxed::BoxKeyStore;
pub(crate) use error::SettingTooSmall;
pub use error::StoreError;
pub use feed::{ChangeFeed, ChangeListener, StoreChange};
pub use file::{FileStore, FileStoreBuilder};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{ConnectionStringError, PgError, PgKeyStore, PgKeyStoreBuilder};
pub use query::KeyQuery;

use crate::events::{Delivery, KeyEvent, OutboxEntry};
use crate::key::KeyId;
use crate::policy::QuotaGrant;
use crate::record::KeyRecord;

/// Where key records are kept.
///
/// # The contract
/// Every method that changes records is atomic: it happens whole or not at all, and no other
/// writer (in this process or another) gets between its check and its write. Once a change is
/// committed, the store publishes a [`StoreChange`] to the listeners given to
/// [`subscribe`](Self::subscribe); a validator relies on it to drop revoked keys from its
/// cache. The methods whose atomicity matters — [`insert_limited`](Self::insert_limited),
/// [`replace`](Self::replace), [`insert_many`](Self::insert_many) — are required; the ones
/// with a default ([`insert`](Self::insert), [`query`](Self::query),
/// [`list_legacy`](Self::list_legacy), [`share_rate_usage`](Self::share_rate_usage)) are
/// correct as they are, and a backend overrides them
/// only to be faster.
///
/// A backend can check itself against every rule with the conformance suite,
/// `tower_apikey::test_util::check_store_contract` (feature `test-util`).
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
    ///
    /// The default is [`insert_limited`](Self::insert_limited) with no limit.
    fn insert(&self, record: KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.insert_limited(record, usize::MAX)
    }

    /// Adds a record unless its principal already holds `limit` live keys (see
    /// [`KeyRecord::is_live_at`]): [`StoreError::LimitReached`]; [`StoreError::AlreadyExists`]
    /// if its id is taken.
    ///
    /// Count and insert are one step: two writers at once never both get past the limit.
    fn insert_limited(
        &self,
        record: KeyRecord,
        limit: usize,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds many records, all or none: [`StoreError::AlreadyExists`] if any id is taken (or
    /// given twice), and then nothing is added. What an import writes.
    fn insert_many(
        &self,
        records: Vec<KeyRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replaces `current` with `new` (same id) only if the stored record is still `current`,
    /// its last use aside: [`StoreError::Conflict`] if another writer changed it since it was
    /// read, [`StoreError::NotFound`] if it is gone. The later of the two last uses is kept.
    ///
    /// Compare and write are one step. This is how a read-modify-write (deactivate, patch,
    /// regenerate) never undoes a change made meanwhile, a revocation above all.
    fn replace(
        &self,
        current: &KeyRecord,
        new: KeyRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes a record; `false` if there was none.
    fn delete(&self, id: &KeyId) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records when keys were last accepted: ids with no record are skipped, and a time
    /// earlier than the one stored does not replace it. Publishes no change: a key's last use
    /// does not change whether it is valid, and caches must not drop it for that.
    fn record_last_used(
        &self,
        used: Vec<(KeyId, Timestamp)>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes up to `want` uses of a key's [quota](crate::policy::Quota), refilling it first if
    /// its period has passed ([`QuotaGrant::take`] is the rule). What a validator's lease
    /// asks for: once per block of uses, never per request. A record with no quota, or no
    /// record, grants nothing ([`QuotaGrant::NONE`]).
    ///
    /// Atomic, and publishes no change: usage does not change whether a key is valid. Two
    /// servers taking uses at once never get more than the quota holds between them. When no
    /// use is left in the period, it adds [`KeyEvent::quota_exhausted`] to the outbox in the
    /// same step (the store adds that id once).
    fn take_quota(
        &self,
        id: &KeyId,
        want: u64,
    ) -> impl Future<Output = Result<QuotaGrant, StoreError>> + Send;

    /// Gives back `uses` taken in the period that started at `period_start`, when a server
    /// stops with them unspent ([`QuotaGrant::give_back`] is the rule): nothing happens if the
    /// period has changed since (refilled, or the quota was changed). Returns whether they
    /// were taken back. Publishes no change.
    fn return_quota(
        &self,
        id: &KeyId,
        uses: u64,
        period_start: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Adds the requests one validator admitted for rate-limited keys since it last called
    /// (`admitted`, each id once, ordered by id), and returns each listed key's total of
    /// admitted requests across every validator sharing the store. Validators call it every
    /// [`rate_limit_sync`](crate::validator::ValidatorBuilder::rate_limit_sync) interval, so
    /// a key's rate limit holds across a fleet.
    ///
    /// The default shares nothing and returns no totals: right for a store one process uses,
    /// where each validator's own count is the whole count. A store a fleet shares
    /// (`PgKeyStore`) adds and reads in one atomic step.
    fn share_rate_usage(
        &self,
        admitted: Vec<(KeyId, u64)>,
    ) -> impl Future<Output = Result<Vec<(KeyId, u64)>, StoreError>> + Send {
        drop(admitted);
        async { Ok(Vec::new()) }
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

    /// Claims up to `limit` due events of the outbox (undelivered, past any retry time, not
    /// claimed by another sender), oldest first, for `lease`: no other caller gets them
    /// until the lease ends or [`finish_event`](Self::finish_event) is called. Each claim
    /// counts an attempt. What a webhook sender calls.
    ///
    /// Every write that changes a record (`insert`, `insert_limited`, `replace`, `delete`;
    /// not `insert_many`, `record_last_used` or `return_quota`) adds its events
    /// ([`KeyEvent::for_change`](crate::events::KeyEvent::for_change)) to the outbox in the
    /// same atomic step. Claiming is atomic too: two senders, in one process or many, never
    /// hold the same event at once. [`Outbox`](crate::events::Outbox) is the rule every
    /// map-backed store applies.
    fn claim_events(
        &self,
        limit: usize,
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, StoreError>> + Send;

    /// Records how the delivery of a claimed event ended: delivered, or to be retried at a
    /// time. An unknown or already delivered id is no error (its claim may have passed to
    /// another sender, which delivered it first).
    fn finish_event(
        &self,
        id: &str,
        outcome: Delivery,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds `events` to the outbox unless an event with the same id is there already
    /// (delivered ones count, for the week they are kept); returns how many were added.
    /// What the expiry sweeper writes: its events have ids made from the key, its expiry
    /// and the warning, so every server sweeping at once adds each one once. Atomic.
    fn add_events(
        &self,
        events: Vec<KeyEvent>,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Every record that expires at or before `until` and is not revoked, ordered by id:
    /// what the expiry sweeper reads.
    ///
    /// The default filters [`list`](Self::list); a database answers from an index.
    fn list_expiring(
        &self,
        until: Timestamp,
    ) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send {
        async move {
            let mut records = self.list(None).await?;
            records.retain(|r| {
                r.status != crate::record::KeyStatus::Revoked
                    && r.expires_at.is_some_and(|at| at <= until)
            });
            Ok(records)
        }
    }

    /// Registers a listener for changes (the change feed).
    fn subscribe(&self, listener: Weak<dyn ChangeListener>);
}
