//! Legacy opaque keys (Maximo imports): keys that carry no id, found by their lookup digest or,
//! the first time, by a bounded scan of the legacy records.
//!
//! A scan costs one PBKDF2 derivation per legacy record not yet seen, so it is held on a short
//! leash: one scan running at a time (a few more callers may wait; beyond that they are told
//! to come back later), a scan stops as soon as its caller is gone, derivations are capped
//! per second, and a key that matched nothing is remembered for the negative TTL. On a match the record's lookup digest (SHA-256 of the key) goes into the
//! store, so each legacy key pays for a scan once, on every server sharing the store.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::admission::Admission;
use crate::key::KeyId;
use crate::store::KeyRecord;

/// The legacy side of a validator's state.
pub(super) struct Legacy {
    pub(super) enabled: bool,
    /// Cache digest of a legacy key -> the id of the record it matched, for the hot path.
    pub(super) alias: moka::sync::Cache<[u8; 32], KeyId>,
    /// Cache digests of opaque keys that matched nothing, for the negative TTL. Callers choose
    /// these, so the hasher stays SipHash.
    pub(super) refused: moka::sync::Cache<[u8; 32], ()>,
    /// The legacy records as last read; dropped on every store change.
    index: Mutex<Option<Arc<LegacyIndex>>>,
    /// One scan running at a time, on a thread of its own.
    pub(super) scan_work: Admission,
    bucket: Arc<Mutex<TokenBucket>>,
    pub(super) scans: AtomicU64,
}

/// The legacy records, split by whether their lookup digest is known.
pub(super) struct LegacyIndex {
    /// By lookup digest (hex SHA-256 of the key).
    pub(super) by_digest: HashMap<String, KeyRecord>,
    /// Not yet seen: only a scan can find their key.
    pub(super) unseen: Vec<KeyRecord>,
}

impl LegacyIndex {
    pub(super) fn new(records: Vec<KeyRecord>) -> Self {
        let mut by_digest = HashMap::new();
        let mut unseen = Vec::new();
        for record in records.into_iter().filter(|r| r.legacy) {
            match record.lookup_digest.clone() {
                Some(digest) => {
                    by_digest.insert(digest, record);
                }
                None => unseen.push(record),
            }
        }
        Self { by_digest, unseen }
    }
}

/// A token bucket for scan derivations.
///
/// Hand-written: one consumer (the scan task, on a blocking thread, which may sleep), no
/// per-key state; the rate-limiting crates bring a clock and a dozen dependencies for this.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// How long to wait before a token is free; takes it when that is now.
    fn take(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

impl Legacy {
    pub(super) fn new(
        enabled: bool,
        rate: u32,
        scan_work: Admission,
        negative_ttl: Duration,
        capacity: u64,
    ) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            enabled,
            alias: moka::sync::Cache::builder().max_capacity(capacity).build(),
            refused: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(negative_ttl)
                .build(),
            index: Mutex::new(None),
            scan_work,
            // A tenth of a second's worth may go at once; the rest is paced.
            bucket: Arc::new(Mutex::new(TokenBucket {
                rate,
                burst: (rate / 10.0).max(1.0),
                tokens: (rate / 10.0).max(1.0),
                last: Instant::now(),
            })),
            scans: AtomicU64::new(0),
        }
    }

    pub(super) fn index(&self) -> Option<Arc<LegacyIndex>> {
        self.index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn set_index(&self, index: Arc<LegacyIndex>) {
        *self.index.lock().unwrap_or_else(PoisonError::into_inner) = Some(index);
    }

    /// Forgets the records read, so the next scan reads them again.
    pub(super) fn forget_index(&self) {
        *self.index.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The rate cap, for a scan's blocking task to carry.
    pub(super) fn pacer(&self) -> Pacer {
        Pacer(Arc::clone(&self.bucket))
    }
}

/// Hands out derivation slots at the capped rate; moved into the scan's blocking task.
pub(super) struct Pacer(Arc<Mutex<TokenBucket>>);

impl Pacer {
    /// Blocks the calling (blocking-pool) thread until one more derivation may run.
    pub(super) fn wait(&self) {
        loop {
            let wait = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
            match wait {
                None => return,
                Some(wait) => std::thread::sleep(wait),
            }
        }
    }
}
