//! The change feed: how a store tells its subscribers (a validator's cache) that records
//! changed.

use std::sync::{Mutex, PoisonError, Weak};

use crate::key::KeyId;

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
/// [`KeyStore::subscribe`](super::KeyStore::subscribe).
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
