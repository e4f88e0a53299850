//! The in-process key store.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock, Weak};

use jiff::Timestamp;

use super::{
    insert_limited_into, insert_many_into, query_in, record_last_used_in, replace_in, ChangeFeed,
    ChangeListener, KeyQuery, KeyRecord, KeyStore, StoreChange, StoreError,
};
use crate::key::KeyId;

/// A [`KeyStore`] in memory: for tests, and for applications that load keys themselves.
///
/// Cloning gives another handle to the same records.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    records: RwLock<BTreeMap<KeyId, KeyRecord>>,
    feed: ChangeFeed,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `records` (a later duplicate id replaces an earlier one).
    pub fn with_records(records: impl IntoIterator<Item = KeyRecord>) -> Self {
        let store = Self::new();
        store
            .write()
            .extend(records.into_iter().map(|r| (r.id.clone(), r)));
        store
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<KeyId, KeyRecord>> {
        self.inner
            .records
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<KeyId, KeyRecord>> {
        self.inner
            .records
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self, id: KeyId) {
        self.inner.feed.publish(&StoreChange::Changed(id));
    }
}

impl KeyStore for MemoryStore {
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.read().get(id).cloned())
    }

    async fn list(&self, principal: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self
            .read()
            .values()
            .filter(|r| principal.is_none_or(|p| r.principal == p))
            .cloned()
            .collect())
    }

    async fn query(&self, query: &KeyQuery) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(query_in(&self.read(), query))
    }

    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        let id = record.id.clone();
        {
            let mut records = self.write();
            if records.contains_key(&id) {
                return Err(StoreError::AlreadyExists(id));
            }
            records.insert(id.clone(), record);
        }
        self.changed(id);
        Ok(())
    }

    async fn update(&self, record: KeyRecord) -> Result<(), StoreError> {
        let id = record.id.clone();
        {
            let mut records = self.write();
            match records.get_mut(&id) {
                Some(slot) => *slot = record,
                None => return Err(StoreError::NotFound(id)),
            }
        }
        self.changed(id);
        Ok(())
    }

    async fn replace(&self, current: &KeyRecord, new: KeyRecord) -> Result<(), StoreError> {
        replace_in(&mut self.write(), current, new)?;
        self.changed(current.id.clone());
        Ok(())
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        let existed = self.write().remove(id).is_some();
        if existed {
            self.changed(id.clone());
        }
        Ok(existed)
    }

    async fn insert_limited(&self, record: KeyRecord, limit: usize) -> Result<(), StoreError> {
        let id = record.id.clone();
        insert_limited_into(&mut self.write(), record, limit)?;
        self.changed(id);
        Ok(())
    }

    async fn list_legacy(&self) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self.read().values().filter(|r| r.legacy).cloned().collect())
    }

    async fn record_last_used(&self, used: Vec<(KeyId, Timestamp)>) -> Result<(), StoreError> {
        record_last_used_in(&mut self.write(), used);
        Ok(())
    }

    async fn insert_many(&self, records: Vec<KeyRecord>) -> Result<(), StoreError> {
        let ids = insert_many_into(&mut self.write(), records)?;
        for id in ids {
            self.changed(id);
        }
        Ok(())
    }

    fn subscribe(&self, listener: Weak<dyn ChangeListener>) {
        self.inner.feed.subscribe(listener);
    }
}
