//! Legacy opaque keys (Maximo imports): keys that carry no id, found by their lookup digest or,
//! the first time, by a bounded scan of the legacy records.
//!
//! A scan costs one PBKDF2 derivation per legacy record not yet seen, so it is held on a short
//! leash: one scan running at a time (a few more callers may wait; beyond that they are told
//! to come back later), a scan stops as soon as its caller is gone, derivations are capped
//! per second, and a key that matched nothing is remembered for the negative TTL. On a match the record's lookup digest (SHA-256 of the key) goes into the
//! store, so each legacy key pays for a scan once, on every server sharing the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tracing::Instrument;

use super::admission::Admission;
use super::cache::{check_expiry, digests_equal, refusal_of, Fill, ValidEntry};
use super::{Inner, RejectReason, ValidationError};
use crate::identity::Identity;
use crate::key::{KeyId, PresentedKey};
use crate::record::KeyRecord;
use crate::store::{KeyQuery, StoreChange, StoreError};
use crate::usage::Outcome;

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

    /// A store change: any record may be a legacy one (an import, a digest learned), so the
    /// records are read afresh and opaque keys refused before are looked for again.
    pub(super) fn on_change(&self, change: &StoreChange) {
        *self.index.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.refused.invalidate_all();
        if !matches!(change, StoreChange::Changed(_)) {
            self.alias.invalidate_all();
        }
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

impl Inner {
    /// Whether `key` may be a legacy opaque key: legacy keys are on, and it does not claim
    /// this format by its prefix.
    pub(super) fn is_legacy_candidate(&self, key: &PresentedKey) -> bool {
        self.legacy.enabled && !self.format.claims(key.expose())
    }

    /// The hot path for a key not in this format: a legacy key seen before, or a refusal.
    pub(super) fn validate_cached_legacy(
        &self,
        key: &PresentedKey,
    ) -> Option<Result<Identity, RejectReason>> {
        let rejected = |id: Option<&str>, reason| Some(Err(self.counters.rejected(id, reason)));
        if !self.is_legacy_candidate(key) {
            return rejected(None, RejectReason::Malformed);
        }
        let digest = self.cache.digest(key.expose());
        let hit = self
            .legacy
            .alias
            .get(&digest)
            .and_then(|id| self.cache.valid_entry(id.as_str()).map(|entry| (id, entry)));
        match hit {
            Some((_, entry)) if digests_equal(&digest, &entry.digest) => {
                Some(check_expiry(entry, &self.counters))
            }
            Some((id, entry)) => {
                entry.identity.count(Outcome::WrongSecret);
                rejected(Some(id.as_str()), RejectReason::WrongSecret)
            }
            None if self.legacy.refused.contains_key(&digest) => {
                rejected(None, RejectReason::UnknownKey)
            }
            None => None,
        }
    }

    /// The cold path for a key not in this format: a legacy record found by the key's lookup
    /// digest (one derivation) or, the first time, by a scan.
    pub(super) async fn validate_legacy(
        self: &Arc<Self>,
        key: &PresentedKey,
    ) -> Result<Identity, ValidationError> {
        let digest = self.cache.digest(key.expose());
        let unknown = || {
            self.legacy.refused.insert(digest, ());
            Err(ValidationError::Rejected(
                self.counters.rejected(None, RejectReason::UnknownKey),
            ))
        };
        let epoch = self.cache.epoch();
        let index = self.legacy_index().await?;
        let lookup = crate::key::lookup_digest(key.expose());
        if let Some(record) = index.by_digest.get(&lookup) {
            let record = record.clone();
            if let Some(reason) = refusal_of(&record, Timestamp::now()) {
                self.legacy.refused.insert(digest, ());
                self.counted_refusal(&record.id, reason);
                return Err(ValidationError::Rejected(
                    self.counters.rejected(Some(record.id.as_str()), reason),
                ));
            }
            let matched = self
                .derive(record.hash.clone(), record.prf, key.clone())
                .await?;
            if !matched {
                return unknown();
            }
            return Ok(self.fill_legacy(&record, digest, epoch));
        }
        if index.unseen.is_empty() {
            return unknown();
        }
        // One scan running at a time: the slot is held by the scan job itself, so a caller
        // that leaves frees it only once the job has seen it leave and stopped.
        let admitted = match self.legacy.scan_work.admit().await {
            Ok(admitted) => admitted,
            Err(_) => return Err(self.shed()),
        };
        self.note_admitted();
        // A scan that ran while this one waited may have found this very key.
        if let Some(result) = self.validate_cached_legacy(key) {
            return result.map_err(ValidationError::Rejected);
        }
        let index = self.legacy_index().await?;
        self.counters.legacy_scan();
        let span = tracing::debug_span!("apikey.legacy_scan", candidates = index.unseen.len());
        let pacer = self.legacy.pacer();
        let secret = key.clone();
        let this = Arc::clone(self);
        let candidates = Arc::clone(&index);
        let found = admitted
            .run(move |caller| {
                for (i, record) in candidates.unseen.iter().enumerate() {
                    // Nobody waits for the answer: stop, and free the slot for the next scan.
                    if caller.is_gone() {
                        return None;
                    }
                    pacer.wait();
                    this.counters.derivation();
                    if record.hash.verify(record.prf, secret.expose()) {
                        return Some(i);
                    }
                }
                None
            })
            .instrument(span)
            .await
            .map_err(|e| ValidationError::Internal(Box::new(e)))?;
        let Some(found) = found else {
            return unknown();
        };
        let scanned = &index.unseen[found];
        let mut record = scanned.clone();
        // Remember the lookup digest, so this key is never scanned for again, here or on
        // another server sharing the store. Only over the record as scanned: a change made
        // meanwhile (a revocation) must not be written over.
        record.lookup_digest = Some(lookup);
        let record = match self.store.replace(scanned, record.clone()).await {
            Ok(()) => record,
            Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {
                // Judge the key by the record as it is now; a new secret no longer matches.
                match self.read_store(self.store.get(&record.id)).await? {
                    Some(fresh) if fresh.hash == record.hash => fresh,
                    _ => return unknown(),
                }
            }
            Err(error) => return Err(self.store_failed(error)),
        };
        if let Some(reason) = refusal_of(&record, Timestamp::now()) {
            self.counted_refusal(&record.id, reason);
            return Err(ValidationError::Rejected(
                self.counters.rejected(Some(record.id.as_str()), reason),
            ));
        }
        // Our own update moved the epoch; fence against changes after it.
        let epoch = self.cache.epoch();
        Ok(self.fill_legacy(&record, digest, epoch))
    }

    /// The legacy records, read from the store if no read is current.
    async fn legacy_index(&self) -> Result<Arc<LegacyIndex>, ValidationError> {
        if let Some(index) = self.legacy.index() {
            return Ok(index);
        }
        let epoch = self.cache.epoch();
        self.counters.store_read();
        let records = self
            .read_store(self.store.query(&KeyQuery::new().legacy()))
            .await?;
        let index = Arc::new(LegacyIndex::new(records));
        // Kept only if no change landed meanwhile; used for this call either way.
        if self.cache.epoch() == epoch {
            self.legacy.set_index(Arc::clone(&index));
        }
        Ok(index)
    }

    /// Caches a legacy key that matched `record`, by id and by the key's cache digest.
    fn fill_legacy(&self, record: &KeyRecord, digest: [u8; 32], epoch: u64) -> Identity {
        let identity = self.identity_of(record);
        let entry = ValidEntry {
            digest,
            identity: identity.clone(),
        };
        self.cache
            .fill(identity.key_id().clone(), Fill::Valid(entry), epoch);
        self.legacy.alias.insert(digest, record.id.clone());
        identity
    }
}
