//! Configuration for a [`Validator`]: [`ValidatorBuilder`].

use std::collections::HashMap;
use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use jiff::SignedDuration;

use super::admission::Admission;
use super::cache::Cache;
use super::counters::Counters;
use super::counting::{Counting, Retention};
use super::last_use::LastUse;
use super::legacy::Legacy;
use super::{Inner, Validator};
use crate::key::KeyFormat;
use crate::store::{ChangeListener, ErasedUsageStore};
use crate::streak::Streak;

/// Configuration for a [`Validator`].
pub struct ValidatorBuilder {
    store: Arc<dyn ErasedUsageStore>,
    format: KeyFormat,
    cache_ttl: Duration,
    negative_ttl: Duration,
    max_cached_keys: u64,
    max_concurrent_derivations: NonZeroUsize,
    max_queued_derivations: usize,
    low_priority: bool,
    legacy_keys: bool,
    legacy_scan_rate: NonZeroU32,
    last_used_flush: Option<Duration>,
    rate_limit_sync: Option<Duration>,
    usage_flush: Option<Duration>,
    usage_retention: Retention,
}

impl fmt::Debug for ValidatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidatorBuilder")
            .field("format", &self.format)
            .field("cache_ttl", &self.cache_ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("max_cached_keys", &self.max_cached_keys)
            .field(
                "max_concurrent_derivations",
                &self.max_concurrent_derivations,
            )
            .field("max_queued_derivations", &self.max_queued_derivations)
            .field("low_priority", &self.low_priority)
            .field("legacy_keys", &self.legacy_keys)
            .field("legacy_scan_rate", &self.legacy_scan_rate)
            .field("last_used_flush", &self.last_used_flush)
            .field("rate_limit_sync", &self.rate_limit_sync)
            .field("usage_flush", &self.usage_flush)
            .field("usage_retention", &self.usage_retention)
            .finish_non_exhaustive()
    }
}

impl ValidatorBuilder {
    /// The key layout (prefix) keys are parsed with. Default: [`KeyFormat::default`].
    pub fn key_format(mut self, format: KeyFormat) -> Self {
        self.format = format;
        self
    }

    /// How long a validated key stays cached (default 60 s). Changes published by the store
    /// drop entries sooner; this bounds staleness if a notification is lost.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// How long a refusal (unknown id, inactive, revoked, expired) stays cached (default 5 s),
    /// so a flood of made-up ids reaches the store once per id.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// The most keys (and refusals) cached at once (default 100,000).
    pub fn max_cached_keys(mut self, n: u64) -> Self {
        self.max_cached_keys = n;
        self
    }

    /// The most PBKDF2 derivations running at once (default: half the CPUs, at least one, so
    /// a flood of cold keys leaves CPU time to requests with cached keys).
    pub fn max_concurrent_derivations(mut self, n: NonZeroUsize) -> Self {
        self.max_concurrent_derivations = n;
        self
    }

    /// The most cold-path callers waiting for a derivation slot (default 64); beyond it,
    /// callers get [`ValidationError::Overloaded`](super::ValidationError::Overloaded) at
    /// once instead of queueing without bound.
    pub fn max_queued_derivations(mut self, n: usize) -> Self {
        self.max_queued_derivations = n;
        self
    }

    /// Whether derivations run at the lowest CPU priority (default true; nice 19 on Linux), on
    /// the validator's own threads, so a flood of cold keys takes only the CPU that requests
    /// with cached keys leave (README, "Performance", has the measured effect).
    pub fn low_priority_derivations(mut self, low: bool) -> Self {
        self.low_priority = low;
        self
    }

    /// Whether keys not in this format are looked for among legacy opaque records (Maximo
    /// imports; default on). Off, such keys are refused as malformed without a store read.
    pub fn legacy_keys(mut self, enabled: bool) -> Self {
        self.legacy_keys = enabled;
        self
    }

    /// The most PBKDF2 derivations per second a scan of legacy records may run (default
    /// 2,000). Scans run one at a time; a legacy key is scanned for once, after which the
    /// store knows its lookup digest.
    pub fn legacy_scan_rate(mut self, per_second: NonZeroU32) -> Self {
        self.legacy_scan_rate = per_second;
        self
    }

    /// How often the keys' last use is written to the store (default every 60 s); `None`
    /// keeps no record of last use.
    ///
    /// Uses are noted in memory, once per key per second at most, and written as one batch
    /// ([`UsageStore::record_last_used`](crate::store::UsageStore::record_last_used)); call
    /// [`Validator::flush_last_used`] on shutdown so the last batch is not lost. Tracking starts with the first cold-path validation, which
    /// starts a small thread keeping a one-second clock (it ends with the validator).
    pub fn last_used_flush_interval(mut self, interval: Option<Duration>) -> Self {
        self.last_used_flush = interval;
        self
    }

    /// How often rate-limit use is shared with the other servers on the store (default
    /// 200 ms; a quarter of it for a key near its limit; `None`: never, each server limits
    /// alone). Every store takes part
    /// ([`UsageStore::share_rate_usage`](crate::store::UsageStore::share_rate_usage)): one
    /// statement per interval per server while a rate-limited key is in use, none while none
    /// is. Each request a server admits counts for every server admitting the key until a
    /// share says what they did, so a fleet admits within about 10% of what one server would,
    /// a flood included ([`guide::policies`](crate::guide::policies) has the bound, the cost
    /// and what happens when the store is unreachable).
    pub fn rate_limit_sync(mut self, interval: Option<Duration>) -> Self {
        self.rate_limit_sync = interval;
        self
    }

    /// How often the requests counted per key, hour and outcome are written to the store
    /// (default every 60 s; `None` counts nothing). See [`usage`](crate::usage).
    ///
    /// Each request with a real key adds one to its key's tally (one relaxed atomic add);
    /// the tallies go to the store as one batch per interval
    /// ([`UsageStore::add_usage`](crate::store::UsageStore::add_usage)), and
    /// [`Validator::shutdown`] writes the last one. A server killed without it loses what it
    /// counted since its last write; a write tried again is never counted twice.
    pub fn usage_flush_interval(mut self, interval: Option<Duration>) -> Self {
        self.usage_flush = interval;
        self
    }

    /// How long usage is kept: hourly buckets `hourly` (default 90 days), UTC days `daily`
    /// (default 2 years). Each validator prunes what is older, in bounded steps, at most once
    /// a minute ([`UsageStore::prune_usage`](crate::store::UsageStore::prune_usage)).
    pub fn usage_retention(mut self, hourly: Duration, daily: Duration) -> Self {
        let span = |d: Duration| SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
        self.usage_retention = Retention {
            hourly: span(hourly),
            daily: span(daily),
        };
        self
    }

    /// Builds the validator and subscribes it to the store's changes.
    pub fn build(self) -> Validator {
        let last_use = LastUse::new(self.last_used_flush);
        let cache = Cache::new(
            self.max_cached_keys,
            self.cache_ttl,
            self.negative_ttl,
            last_use.eviction_sink(),
        );
        let legacy = Legacy::new(
            self.legacy_keys,
            self.legacy_scan_rate.get(),
            // One scan at a time, a few callers waiting for it.
            Admission::new(1, self.max_queued_derivations, self.low_priority),
            self.negative_ttl,
            self.max_cached_keys,
        );
        let inner = Arc::new(Inner {
            store: self.store,
            format: self.format,
            cache,
            derivation_work: Admission::new(
                self.max_concurrent_derivations.get(),
                self.max_queued_derivations,
                self.low_priority,
            ),
            inflight: Mutex::new(HashMap::new()),
            legacy,
            last_use,
            policies: Default::default(),
            counting: Counting::new(self.usage_flush, self.usage_retention),
            rate_share: super::rate_share::RateShare::new(self.rate_limit_sync),
            counters: Counters::default(),
            store_outage: Streak::default(),
            shedding: Streak::default(),
        });
        let listener: Weak<dyn ChangeListener> = Arc::downgrade(&inner) as Weak<dyn ChangeListener>;
        inner.store.subscribe(listener);
        inner.announce_rate_share();
        Validator { inner }
    }

    /// The defaults, over `store`.
    pub(super) fn new(store: Arc<dyn ErasedUsageStore>) -> Self {
        Self {
            store,
            format: KeyFormat::default(),
            cache_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            max_cached_keys: 100_000,
            // Half the CPUs: a flood of cold keys must leave cores to the runtime, or cached
            // keys wait behind PBKDF2 for CPU time.
            max_concurrent_derivations: std::thread::available_parallelism()
                .ok()
                .and_then(|n| NonZeroUsize::new(n.get() / 2))
                .unwrap_or(NonZeroUsize::MIN),
            max_queued_derivations: 64,
            low_priority: true,
            legacy_keys: true,
            legacy_scan_rate: NonZeroU32::new(2_000).unwrap_or(NonZeroU32::MIN),
            last_used_flush: Some(Duration::from_secs(60)),
            rate_limit_sync: Some(Duration::from_millis(200)),
            usage_flush: Some(Duration::from_secs(60)),
            usage_retention: Retention::default(),
        }
    }
}
