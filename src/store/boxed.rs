//! A type-erased, cheaply cloned [`KeyStore`]: what the validator, the key manager, the
//! admin API and the CLI hold, so none of them carries a store type parameter.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use jiff::Timestamp;

use super::{ChangeListener, KeyQuery, KeyStore, StoreError};
use crate::events::{Delivery, KeyEvent, OutboxEntry};
use crate::key::KeyId;
use crate::policy::QuotaGrant;
use crate::record::KeyRecord;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Any [`KeyStore`] behind an [`Arc`]: clone it freely, pass it where a store is wanted.
///
/// Each call costs one allocation for its future, which is nothing beside a store read.
/// Boxing a `BoxKeyStore` again gives it back as it is.
///
/// ```
/// use tower_apikey::store::{BoxKeyStore, FileStore, MemoryStore};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// # let dir = tempfile::tempdir()?;
/// let store = if std::env::var_os("KEYS_IN_MEMORY").is_some() {
///     BoxKeyStore::new(MemoryStore::new())
/// } else {
///     BoxKeyStore::new(FileStore::open(dir.path().join("keys.json")).await?)
/// };
/// let manager = tower_apikey::KeyManager::new(store.clone());
/// # drop(manager);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct BoxKeyStore {
    inner: Arc<dyn ErasedStore>,
}

impl fmt::Debug for BoxKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxKeyStore").finish_non_exhaustive()
    }
}

impl BoxKeyStore {
    /// Boxes `store`.
    pub fn new<S: KeyStore>(store: S) -> Self {
        // A store that is already boxed is not boxed twice (each call would go through two
        // vtables and two future allocations).
        if let Some(boxed) = (&store as &dyn Any).downcast_ref::<BoxKeyStore>() {
            return boxed.clone();
        }
        Self {
            inner: Arc::new(store),
        }
    }
}

/// [`KeyStore`] with boxed futures, so it can be a trait object.
pub(crate) trait ErasedStore: Send + Sync {
    fn get<'a>(&'a self, id: &'a KeyId) -> BoxFuture<'a, Result<Option<KeyRecord>, StoreError>>;
    fn list<'a>(
        &'a self,
        principal: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<KeyRecord>, StoreError>>;
    fn query<'a>(
        &'a self,
        query: &'a KeyQuery,
    ) -> BoxFuture<'a, Result<Vec<KeyRecord>, StoreError>>;
    fn insert(&self, record: KeyRecord) -> BoxFuture<'_, Result<(), StoreError>>;
    fn insert_limited(
        &self,
        record: KeyRecord,
        limit: usize,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    fn insert_many(&self, records: Vec<KeyRecord>) -> BoxFuture<'_, Result<(), StoreError>>;
    fn replace<'a>(
        &'a self,
        current: &'a KeyRecord,
        new: KeyRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn delete<'a>(&'a self, id: &'a KeyId) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn record_last_used(
        &self,
        used: Vec<(KeyId, Timestamp)>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    fn list_legacy(&self) -> BoxFuture<'_, Result<Vec<KeyRecord>, StoreError>>;
    fn take_quota<'a>(
        &'a self,
        id: &'a KeyId,
        want: u64,
    ) -> BoxFuture<'a, Result<QuotaGrant, StoreError>>;
    fn return_quota<'a>(
        &'a self,
        id: &'a KeyId,
        uses: u64,
        period_start: Timestamp,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn share_rate_usage(
        &self,
        admitted: Vec<(KeyId, u64)>,
    ) -> BoxFuture<'_, Result<Vec<(KeyId, u64)>, StoreError>>;
    fn claim_events(
        &self,
        limit: usize,
        lease: Duration,
    ) -> BoxFuture<'_, Result<Vec<OutboxEntry>, StoreError>>;
    fn finish_event<'a>(
        &'a self,
        id: &'a str,
        outcome: Delivery,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn add_events(&self, events: Vec<KeyEvent>) -> BoxFuture<'_, Result<usize, StoreError>>;
    fn list_expiring(&self, until: Timestamp) -> BoxFuture<'_, Result<Vec<KeyRecord>, StoreError>>;
    fn subscribe(&self, listener: Weak<dyn ChangeListener>);
}

impl<S: KeyStore> ErasedStore for S {
    fn get<'a>(&'a self, id: &'a KeyId) -> BoxFuture<'a, Result<Option<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::get(self, id))
    }

    fn list<'a>(
        &'a self,
        principal: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::list(self, principal))
    }

    fn query<'a>(
        &'a self,
        query: &'a KeyQuery,
    ) -> BoxFuture<'a, Result<Vec<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::query(self, query))
    }

    fn insert(&self, record: KeyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(KeyStore::insert(self, record))
    }

    fn insert_limited(
        &self,
        record: KeyRecord,
        limit: usize,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(KeyStore::insert_limited(self, record, limit))
    }

    fn insert_many(&self, records: Vec<KeyRecord>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(KeyStore::insert_many(self, records))
    }

    fn replace<'a>(
        &'a self,
        current: &'a KeyRecord,
        new: KeyRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(KeyStore::replace(self, current, new))
    }

    fn delete<'a>(&'a self, id: &'a KeyId) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(KeyStore::delete(self, id))
    }

    fn record_last_used(
        &self,
        used: Vec<(KeyId, Timestamp)>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(KeyStore::record_last_used(self, used))
    }

    fn list_legacy(&self) -> BoxFuture<'_, Result<Vec<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::list_legacy(self))
    }

    fn take_quota<'a>(
        &'a self,
        id: &'a KeyId,
        want: u64,
    ) -> BoxFuture<'a, Result<QuotaGrant, StoreError>> {
        Box::pin(KeyStore::take_quota(self, id, want))
    }

    fn return_quota<'a>(
        &'a self,
        id: &'a KeyId,
        uses: u64,
        period_start: Timestamp,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(KeyStore::return_quota(self, id, uses, period_start))
    }

    fn share_rate_usage(
        &self,
        admitted: Vec<(KeyId, u64)>,
    ) -> BoxFuture<'_, Result<Vec<(KeyId, u64)>, StoreError>> {
        Box::pin(KeyStore::share_rate_usage(self, admitted))
    }

    fn claim_events(
        &self,
        limit: usize,
        lease: Duration,
    ) -> BoxFuture<'_, Result<Vec<OutboxEntry>, StoreError>> {
        Box::pin(KeyStore::claim_events(self, limit, lease))
    }

    fn finish_event<'a>(
        &'a self,
        id: &'a str,
        outcome: Delivery,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(KeyStore::finish_event(self, id, outcome))
    }

    fn add_events(&self, events: Vec<KeyEvent>) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(KeyStore::add_events(self, events))
    }

    fn list_expiring(&self, until: Timestamp) -> BoxFuture<'_, Result<Vec<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::list_expiring(self, until))
    }

    fn subscribe(&self, listener: Weak<dyn ChangeListener>) {
        KeyStore::subscribe(self, listener);
    }
}

// `async fn` where a borrowed argument is held across the call; the others hand the boxed
// future straight back.
impl KeyStore for BoxKeyStore {
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.get(id).await
    }

    async fn list(&self, principal: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list(principal).await
    }

    async fn query(&self, query: &KeyQuery) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.query(query).await
    }

    fn insert(&self, record: KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.insert(record)
    }

    fn insert_limited(
        &self,
        record: KeyRecord,
        limit: usize,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.insert_limited(record, limit)
    }

    fn insert_many(
        &self,
        records: Vec<KeyRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.insert_many(records)
    }

    async fn replace(&self, current: &KeyRecord, new: KeyRecord) -> Result<(), StoreError> {
        self.inner.replace(current, new).await
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }

    fn record_last_used(
        &self,
        used: Vec<(KeyId, Timestamp)>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.record_last_used(used)
    }

    fn list_legacy(&self) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send {
        self.inner.list_legacy()
    }

    async fn take_quota(&self, id: &KeyId, want: u64) -> Result<QuotaGrant, StoreError> {
        self.inner.take_quota(id, want).await
    }

    async fn return_quota(
        &self,
        id: &KeyId,
        uses: u64,
        period_start: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.return_quota(id, uses, period_start).await
    }

    fn share_rate_usage(
        &self,
        admitted: Vec<(KeyId, u64)>,
    ) -> impl Future<Output = Result<Vec<(KeyId, u64)>, StoreError>> + Send {
        self.inner.share_rate_usage(admitted)
    }

    async fn claim_events(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.inner.claim_events(limit, lease).await
    }

    async fn finish_event(&self, id: &str, outcome: Delivery) -> Result<(), StoreError> {
        self.inner.finish_event(id, outcome).await
    }

    async fn add_events(&self, events: Vec<KeyEvent>) -> Result<usize, StoreError> {
        self.inner.add_events(events).await
    }

    async fn list_expiring(&self, until: Timestamp) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list_expiring(until).await
    }

    fn subscribe(&self, listener: Weak<dyn ChangeListener>) {
        self.inner.subscribe(listener);
    }
}
