//! Last use of keys: noted in memory on each accepted request (one relaxed store, at most
//! once a second per key), collected from the cache and from evicted entries, and written to
//! the store in one batch per flush interval — never a store write per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use jiff::Timestamp;

use super::cache::Cache;
use super::Inner;
use crate::identity::Identity;
use crate::key::KeyId;
use crate::store::{ErasedUsageStore, StoreError};

pub(super) struct LastUse {
    /// Unix seconds, kept by the clock thread; 0 until it runs (and then no use is noted).
    clock: AtomicI64,
    clock_started: AtomicBool,
    /// How often to write; `None` keeps no record of last use.
    flush: Option<Duration>,
    /// Uses at or after this second (unix) are not yet in the store.
    flushed_through: AtomicI64,
    /// Uses noted on entries evicted since the last flush.
    evicted: Arc<Mutex<Vec<(KeyId, i64)>>>,
}

impl LastUse {
    pub(super) fn new(flush: Option<Duration>) -> Self {
        Self {
            clock: AtomicI64::new(0),
            clock_started: AtomicBool::new(false),
            flush,
            flushed_through: AtomicI64::new(0),
            evicted: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// What the cache calls when a valid entry leaves it: keeps the use noted on it, if any,
    /// for the next flush.
    pub(super) fn eviction_sink(&self) -> impl Fn(KeyId, i64) + Send + Sync + 'static {
        let evicted = Arc::clone(&self.evicted);
        move |id, at| {
            if at != 0 {
                evicted
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((id, at));
            }
        }
    }

    /// Notes that `identity` was accepted now: one relaxed store into the cached identity,
    /// at most once a second per key; the flush collects it from the cache.
    #[inline]
    pub(super) fn note(&self, identity: &Identity) {
        let now = self.clock.load(Ordering::Relaxed);
        if now != 0 {
            identity.note_use(now);
        }
    }

    /// Writes the uses noted since the last flush to `store`, as one batch. A failed batch
    /// is kept: what was evicted is put back, what is cached is collected again.
    pub(super) async fn flush(
        &self,
        cache: &Cache,
        store: &dyn ErasedUsageStore,
    ) -> Result<(), StoreError> {
        // Uses after the last flush's second. One in that very second, after its collection,
        // stays a second early in the store: within the flush interval's staleness.
        let now = self.clock.load(Ordering::Relaxed);
        let since = self.flushed_through.load(Ordering::SeqCst);
        let cached = cache.last_uses();
        let evicted =
            std::mem::take(&mut *self.evicted.lock().unwrap_or_else(PoisonError::into_inner));
        let mut batch: HashMap<KeyId, i64> = evicted
            .iter()
            .filter(|(_, at)| *at > since)
            .cloned()
            .collect();
        for (id, at) in cached {
            if at > since {
                let seen = batch.entry(KeyId::clone(&id)).or_insert(at);
                *seen = (*seen).max(at);
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let used: Vec<(KeyId, Timestamp)> = batch
            .into_iter()
            .filter_map(|(id, at)| Timestamp::from_second(at).ok().map(|at| (id, at)))
            .collect();
        if let Err(error) = store.record_last_used(used).await {
            self.evicted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(evicted);
            return Err(error);
        }
        if now != 0 {
            self.flushed_through.store(now, Ordering::SeqCst);
        }
        Ok(())
    }
}

impl Inner {
    /// Starts the clock thread (and with it last-use tracking and usage counting) once, if
    /// a runtime is there.
    pub(super) fn start_clock(self: &Arc<Self>) {
        let last_use = &self.last_use;
        if last_use.flush.is_none() && self.counting.flush.is_none() {
            return;
        }
        if last_use.clock.load(Ordering::Relaxed) != 0
            || last_use.clock_started.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            last_use.clock_started.store(false, Ordering::SeqCst);
            return;
        };
        if last_use.flush.is_some() {
            // Only a clock that runs notes uses: without last use, none are noted.
            last_use
                .clock
                .store(Timestamp::now().as_second(), Ordering::Relaxed);
        }
        let inner = Arc::downgrade(self);
        let started = std::thread::Builder::new()
            .name("tower-apikey-clock".into())
            .spawn(move || keep_time(inner, runtime));
        if let Err(error) = started {
            tracing::warn!(%error, "no thread for the clock; last use and usage are not written");
            last_use.clock.store(0, Ordering::Relaxed);
        }
    }
}

/// Keeps the coarse clock that stamps uses, cuts the usage counts at each hour's turn, and
/// has the runtime write last uses and usage every interval, for as long as the validator
/// lives.
///
/// A thread of its own, not a Tokio timer: the runtime it serves may have no time driver.
fn keep_time(inner: Weak<Inner>, runtime: tokio::runtime::Handle) {
    let started = std::time::Instant::now();
    let (mut uses_written, mut usage_written) = (started, started);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let Some(inner) = inner.upgrade() else { return };
        let now = Timestamp::now();
        inner
            .last_use
            .clock
            .store(now.as_second(), Ordering::Relaxed);
        inner.counting.tick(now);
        if inner
            .last_use
            .flush
            .is_some_and(|every| uses_written.elapsed() >= every)
        {
            uses_written = std::time::Instant::now();
            let inner = Arc::clone(&inner);
            runtime.spawn(async move {
                if let Err(error) = inner.last_use.flush(&inner.cache, &*inner.store).await {
                    tracing::warn!(%error, "last use of API keys not written; kept for the next flush");
                }
            });
        }
        if inner
            .counting
            .flush
            .is_some_and(|every| usage_written.elapsed() >= every)
        {
            usage_written = std::time::Instant::now();
            runtime.spawn(async move {
                if let Err(error) = inner.counting.flush(&*inner.store).await {
                    tracing::warn!(%error, "API key usage not written; kept for the next flush");
                }
            });
        }
    }
}
