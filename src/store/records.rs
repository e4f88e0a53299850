//! The records capability, which every store has: key records, read and written atomically,
//! and the change feed that tells validators what changed.

use std::future::Future;
use std::sync::Weak;

use super::{ChangeListener, KeyQuery, StoreError};
use crate::key::KeyId;
use crate::record::KeyRecord;

/// Where key records are kept: the capability every store has.
///
/// # The contract
/// Every method that changes records is atomic: it happens whole or not at all, and no other
/// writer (in this process or another) gets between its check and its write. Once a change is
/// committed, the store publishes a [`StoreChange`](super::StoreChange) to the listeners given
/// to [`subscribe`](Self::subscribe); a validator relies on it to drop revoked keys from its
/// cache. A store that also keeps an [outbox](super::OutboxStore) writes each change's events
/// in the same atomic step.
///
/// Every method is required but [`insert`](Self::insert), whose default (an
/// [`insert_limited`](Self::insert_limited) with no limit) is correct for every store.
///
/// A backend checks itself against every rule with
/// `tower_apikey::test_util::check_key_store` (feature `test-util`).
pub trait KeyStore: Send + Sync + 'static {
    /// The record with this id, if any.
    fn get<'a>(
        &'a self,
        id: &'a KeyId,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send + 'a;

    /// The records `query` matches ([`KeyQuery::matches`]), ordered by id, after its `after`,
    /// at most its `limit`: every listing (all records, one principal's, the legacy ones, those
    /// expiring soon, an admin page) reads through here.
    ///
    /// A store with nothing better to do filters with [`KeyQuery::matches`] as it walks its
    /// records in id order; the crate's backends read only the page (PostgreSQL in SQL, where
    /// "ignoring case" is the database's `lower()`).
    fn query<'a>(
        &'a self,
        query: &'a KeyQuery,
    ) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send + 'a;

    /// Adds a record; [`StoreError::AlreadyExists`] if its id is taken.
    fn insert<'a>(
        &'a self,
        record: KeyRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a {
        self.insert_limited(record, usize::MAX)
    }

    /// Adds a record unless its principal already holds `limit` live keys (see
    /// [`KeyRecord::is_live_at`]): [`StoreError::LimitReached`]; [`StoreError::AlreadyExists`]
    /// if its id is taken.
    ///
    /// Count and insert are one step: two writers at once never both get past the limit.
    fn insert_limited<'a>(
        &'a self,
        record: KeyRecord,
        limit: usize,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a;

    /// Adds many records, all or none: [`StoreError::AlreadyExists`] if any id is taken (or
    /// given twice), and then nothing is added. What an import writes; an import is no change
    /// to keys in use, so it writes no events.
    fn insert_many<'a>(
        &'a self,
        records: Vec<KeyRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a;

    /// Replaces `current` with `new` (same id) only if the stored record is still `current`,
    /// its usage aside: [`StoreError::Conflict`] if another writer changed it since it was
    /// read, [`StoreError::NotFound`] if it is gone. The usage kept is
    /// [`KeyRecord::keeping_usage`]'s: the later of the two last uses, and the stored quota
    /// usage unless `new` changes the quota.
    ///
    /// Compare and write are one step. This is how a read-modify-write (deactivate, patch,
    /// regenerate) never undoes a change made meanwhile, a revocation above all.
    fn replace<'a>(
        &'a self,
        current: &'a KeyRecord,
        new: KeyRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a;

    /// Removes a record; `false` if there was none.
    fn delete<'a>(
        &'a self,
        id: &'a KeyId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send + 'a;

    /// Registers a listener for changes (the change feed; [`ChangeFeed`](super::ChangeFeed)
    /// keeps the list for you).
    fn subscribe(&self, listener: Weak<dyn ChangeListener>);
}

/// [`KeyStore`]'s methods, the one list the type-erased store and the test forwarding wrapper
/// are generated from (`erased.rs`, `test_util::forward`): `$then!` is called with `$pass`
/// and the list. Each method returns a future of `Result<output, StoreError>`, but those
/// marked `@sync`.
macro_rules! key_store_methods {
    ($then:ident { $($pass:tt)* }) => {
        $then! { $($pass)*
            KeyStore {
                get(id: &'a $crate::key::KeyId) -> Option<$crate::record::KeyRecord>;
                query(query: &'a $crate::store::KeyQuery) -> Vec<$crate::record::KeyRecord>;
                insert(record: $crate::record::KeyRecord) -> ();
                insert_limited(record: $crate::record::KeyRecord, limit: usize) -> ();
                insert_many(records: Vec<$crate::record::KeyRecord>) -> ();
                replace(current: &'a $crate::record::KeyRecord, new: $crate::record::KeyRecord) -> ();
                delete(id: &'a $crate::key::KeyId) -> bool;
                @sync subscribe(listener: std::sync::Weak<dyn $crate::store::ChangeListener>);
            }
        }
    };
}
pub(crate) use key_store_methods;
