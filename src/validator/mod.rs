//! Checks presented keys against a store, with a cache in front: usable without tower.
//!
//! The [`Validator`] is what [`ApiKeyLayer`](crate::ApiKeyLayer) wraps; a gRPC interceptor or
//! a job runner can call it directly.
//!
//! - **Hot path** ([`validate_cached`](Validator::validate_cached)): the cache is keyed by record
//!   id; an entry holds a digest of the correct key's secret part, keyed with a per-process
//!   random block (never the key, nothing that verifies offline), the identity, and the
//!   expiry. A hit compares digests in constant time and checks expiry against the clock.
//!   No PBKDF2, no I/O, no lock held, no allocation.
//! - **Cold path** ([`validate`](Validator::validate) on a miss): one store read, then one
//!   PBKDF2 derivation on the validator's own threads at the lowest CPU priority, never on a
//!   runtime worker. Derivations are
//!   bounded ([`max_concurrent_derivations`](ValidatorBuilder::max_concurrent_derivations)),
//!   callers beyond a queue bound are refused as [`ValidationError::Overloaded`], and callers
//!   presenting the same key at once share one derivation. Unknown, inactive, revoked and
//!   expired ids are cached as refusals for a short TTL; valid keys for the cache TTL (a key
//!   that expires sooner is refused by the hit's own expiry check).
//! - **Invalidation**: the validator subscribes to the store's change feed; a change to a
//!   record drops its entry at once, and a cold-path fill that raced a change is not cached.
//!
//! # Example
//! ```
//! use tower_apikey::{KeyRecord, KeyStore, MemoryStore, Validator};
//! use tower_apikey::key::{KeyFormat, PresentedKey};
//! use tower_apikey::hash::HashParams;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let (record, key) = KeyRecord::generate("alice", &KeyFormat::default(), &HashParams::default())?;
//! store.insert(record).await?;
//!
//! let validator = Validator::builder(store).build();
//! let presented = PresentedKey::new(key.expose().as_bytes())?;
//! let identity = validator.validate(&presented).await?;   // cold: one PBKDF2
//! assert_eq!(identity.principal(), "alice");
//! assert!(validator.validate_cached(&presented).unwrap().is_ok()); // hot: cached
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use crate::identity::Identity;
use crate::key::{KeyFormat, KeyId, PresentedKey};
use crate::store::{
    usage_handle, ChangeListener, ErasedUsageStore, StoreChange, StoreError, UsageStore,
};
use crate::streak::Streak;
use crate::usage::Outcome;

mod admission;
mod builder;
mod cache;
mod cold;
mod counters;
mod counting;
mod error;
mod last_use;
mod leak;
mod legacy;
mod policies;
mod pool;
mod rate_share;
mod standing;
mod unavailable;

pub use builder::ValidatorBuilder;
#[cfg(feature = "metrics")]
pub use counters::describe_metrics;
pub use counters::ValidatorStats;
pub use error::{PolicyError, RejectReason, StoreCheckError, ValidationError};
pub(crate) use policies::Verdict;

use admission::Admission;
use cache::Cache;
use counters::Counters;
use last_use::LastUse;
use legacy::Legacy;

/// Validates presented keys: store + cache + PBKDF2 policy. See the [module docs](self).
///
/// Cheap to clone: clones share the cache.
#[derive(Clone)]
pub struct Validator {
    inner: Arc<Inner>,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (keys, refusals) = self.inner.cache.entry_counts();
        f.debug_struct("Validator")
            .field("format", &self.inner.format)
            .field("cached_keys", &keys)
            .field("cached_refusals", &refusals)
            .finish_non_exhaustive()
    }
}

/// A validator's state, one field per concern; each file of this module adds the methods of
/// its own concern.
struct Inner {
    store: Arc<dyn ErasedUsageStore>,
    format: KeyFormat,
    /// Valid keys and refused ids (`cache.rs`).
    cache: Cache,
    /// Derivations: as many running as configured, a bounded queue (`admission.rs`).
    derivation_work: Admission,
    /// Derivations shared by callers presenting the same key (`cold.rs`).
    inflight: cold::Inflight,
    /// Opaque keys of imported records (`legacy.rs`).
    legacy: Legacy,
    /// Uses noted in memory and written in batches (`last_use.rs`).
    last_use: LastUse,
    /// Each key's rate-limit state and quota lease (`policies.rs`).
    policies: policies::Policies,
    /// Requests counted per key, hour and outcome, written in batches (`counting.rs`).
    counting: counting::Counting,
    /// Rate-limit use shared with a fleet (`rate_share.rs`).
    rate_share: rate_share::RateShare,
    counters: Counters,
    /// Store reads failing in a row, logged when the run starts and ends.
    store_outage: Streak,
    /// Cold work refused in a row because every place was taken.
    shedding: Streak,
}

impl ChangeListener for Inner {
    fn on_change(&self, change: &StoreChange) {
        self.cache.on_change(change);
        self.legacy.on_change(change);
    }
}

impl Validator {
    /// Starts configuring a validator over `store`: any store with the
    /// [usage capability](crate::store::UsageStore), where a validator writes last uses,
    /// takes quota leases and shares rate-limit counts.
    pub fn builder<S: UsageStore>(store: S) -> ValidatorBuilder {
        ValidatorBuilder::new(usage_handle(store))
    }

    /// The key format keys are parsed with.
    pub fn key_format(&self) -> &KeyFormat {
        &self.inner.format
    }

    /// The hot path: answers from the cache alone, or `None` when the key's id is not cached.
    ///
    /// A malformed key is refused here too. Never blocks and never touches the store.
    pub fn validate_cached(&self, key: &PresentedKey) -> Option<Result<Identity, RejectReason>> {
        let inner = &self.inner;
        // No checksum here: on a hit the digest decides; a miss goes through `parse`.
        let answer = match inner.format.split(key) {
            Ok(parsed) => inner
                .cache
                .answer(parsed.id(), parsed.secret(), &inner.counters)?,
            Err(_) => inner.validate_cached_legacy(key)?,
        };
        Some(answer.inspect(|identity| {
            inner.counters.hit();
            inner.last_use.note(identity);
            identity.count(Outcome::Valid);
        }))
    }

    /// Validates a key: from the cache when it can, else from the store with one PBKDF2
    /// derivation on a low-priority thread of its own.
    ///
    /// Must be called within a Tokio runtime.
    ///
    /// # Errors
    /// [`ValidationError::Rejected`] for a key that is not valid (one reason among several,
    /// for logs); the others when the key could not be checked right now.
    pub async fn validate(&self, key: &PresentedKey) -> Result<Identity, ValidationError> {
        match self.validate_cached(key) {
            Some(result) => result.map_err(ValidationError::Rejected),
            None => self.validate_cold(key).await,
        }
    }

    /// The cold path alone, for a caller that has just seen [`validate_cached`] miss (the
    /// layer): the cache is not probed again.
    ///
    /// [`validate_cached`]: Validator::validate_cached
    pub(crate) async fn validate_cold(
        &self,
        key: &PresentedKey,
    ) -> Result<Identity, ValidationError> {
        let inner = &self.inner;
        inner.counters.miss();
        inner.start_clock();
        let span = tracing::debug_span!("apikey.cold_path", key_id = tracing::field::Empty);
        let identity = match inner.format.parse(key) {
            Ok(parsed) => inner.validate_parsed(key, parsed).instrument(span).await?,
            Err(_) if inner.is_legacy_candidate(key) => {
                inner.validate_legacy(key).instrument(span).await?
            }
            Err(_) => {
                let reason = inner.counters.rejected(None, RejectReason::Malformed);
                return Err(ValidationError::Rejected(reason));
            }
        };
        inner.last_use.note(&identity);
        identity.count(Outcome::Valid);
        if identity.usage().is_some_and(|usage| usage.rate.is_some()) {
            inner.start_rate_share();
        }
        Ok(identity)
    }

    /// Writes the uses noted since the last flush to the store, as one batch. Call it on
    /// shutdown; a failed batch is kept for the next flush.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn flush_last_used(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        inner.last_use.flush(&inner.cache, &*inner.store).await
    }

    /// Writes the requests counted since the last flush to the store, as one batch per key
    /// and hour ([`usage`](crate::usage)). Call it on shutdown ([`shutdown`](Self::shutdown)
    /// does); a batch that fails is kept, under its id, for the next flush.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn flush_usage(&self) -> Result<(), StoreError> {
        self.inner.counting.flush(&*self.inner.store).await
    }

    /// Whether the store answers now: one read of an id no key has, bounded by `timeout`.
    /// What a readiness probe asks (`GET /ready` in the axum example): while the store is
    /// down, cached keys are still served but cold ones are refused with 503, so a load
    /// balancer may prefer other servers.
    ///
    /// # Errors
    /// [`StoreCheckError::Timeout`] when the store did not answer within `timeout`;
    /// [`StoreCheckError::Store`] with its failure.
    pub async fn check_store(&self, timeout: Duration) -> Result<(), StoreCheckError> {
        let probe = KeyId::readiness_probe();
        match tokio::time::timeout(timeout, self.inner.store.get(&probe)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(StoreCheckError::Store(error)),
            Err(_) => Err(StoreCheckError::Timeout(timeout)),
        }
    }

    /// Drops every cached entry.
    pub fn clear_cache(&self) {
        self.inner.on_change(&StoreChange::Reset);
    }

    /// Counters of the work done so far, and of the work under way now.
    pub fn stats(&self) -> ValidatorStats {
        let inner = &self.inner;
        let derivations = inner.derivation_work.load();
        let scans = inner.legacy.scan_work.load();
        let shared = inner
            .inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        ValidatorStats {
            derivations_running: derivations.running as u64,
            derivations_queued: derivations.queued as u64,
            scans_running: scans.running as u64,
            scans_queued: scans.queued as u64,
            shared_derivations: shared as u64,
            ..inner.counters.stats()
        }
    }
}
