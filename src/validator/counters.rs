//! The validator's counters: its own statistics ([`ValidatorStats`]) and, with the `metrics`
//! feature, the same events through the [`metrics`](https://docs.rs/metrics) facade, bumped
//! side by side by one type so neither can be forgotten at a site.
//!
//! | counter | labels | counts |
//! |---|---|---|
//! | `tower_apikey_cache_hits_total` | | keys answered from the cache |
//! | `tower_apikey_cache_misses_total` | | keys that took the cold path |
//! | `tower_apikey_derivations_total` | | PBKDF2 derivations run |
//! | `tower_apikey_rejections_total` | `reason` | refused keys, by [`RejectReason::as_str`] |
//! | `tower_apikey_shed_total` | | requests turned away with 503 because cold work was full |
//! | `tower_apikey_policy_refusals_total` | `reason` | requests with valid keys refused by a policy, by [`PolicyRefusal::as_str`] |
//! | `tower_apikey_quota_leases_total` | | quota leases taken from the store |
//!
//! Without the feature each metric compiles to nothing. Keys are built from static names and
//! labels, so a count allocates nothing.

use std::sync::atomic::{AtomicU64, Ordering};

use super::RejectReason;
use crate::key::KeyId;
use crate::policy::PolicyRefusal;

/// Counters of a validator's work since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidatorStats {
    /// PBKDF2 derivations run.
    pub derivations: u64,
    /// Derivations refused because the queue was full.
    pub shed: u64,
    /// Store reads on the cold path.
    pub store_reads: u64,
    /// Scans of legacy records for an opaque key (each up to one derivation per record).
    pub legacy_scans: u64,
    /// Derivations running now (or handed to a thread to run).
    pub derivations_running: u64,
    /// Callers waiting now for a derivation slot.
    pub derivations_queued: u64,
    /// Legacy scans running now: at most one.
    pub scans_running: u64,
    /// Callers waiting now for the legacy scan slot.
    pub scans_queued: u64,
    /// Derivations shared by callers presenting the same key, in flight now.
    pub shared_derivations: u64,
    /// Requests with a valid key refused by the key's IP allow-list (or for want of a client
    /// address).
    pub ip_refusals: u64,
    /// Requests refused by the key's rate limit.
    pub rate_limited: u64,
    /// Requests refused because the key's quota was used up.
    pub usage_exceeded: u64,
    /// Quota leases taken from the store.
    pub quota_leases: u64,
}

impl ValidatorStats {
    /// Whether no cold work is running or waiting: what every caller's exit, however it
    /// left, must come back to.
    pub fn is_idle(&self) -> bool {
        self.derivations_running == 0
            && self.derivations_queued == 0
            && self.scans_running == 0
            && self.scans_queued == 0
            && self.shared_derivations == 0
    }
}

/// What the validator counts; each method bumps the statistic and the metric together.
#[derive(Debug, Default)]
pub(super) struct Counters {
    derivations: AtomicU64,
    shed: AtomicU64,
    store_reads: AtomicU64,
    legacy_scans: AtomicU64,
    ip_refusals: AtomicU64,
    rate_limited: AtomicU64,
    usage_exceeded: AtomicU64,
    quota_leases: AtomicU64,
}

impl Counters {
    /// A key answered from the cache.
    #[inline]
    pub(super) fn hit(&self) {
        #[cfg(feature = "metrics")]
        metrics::counter!("tower_apikey_cache_hits_total").increment(1);
    }

    /// A key that took the cold path.
    pub(super) fn miss(&self) {
        #[cfg(feature = "metrics")]
        metrics::counter!("tower_apikey_cache_misses_total").increment(1);
    }

    /// One PBKDF2 derivation started.
    pub(super) fn derivation(&self) {
        self.derivations.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("tower_apikey_derivations_total").increment(1);
    }

    /// A caller turned away because every place for cold work was taken.
    pub(super) fn shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("tower_apikey_shed_total").increment(1);
    }

    /// One read of the store on the cold path.
    pub(super) fn store_read(&self) {
        self.store_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// One scan of the legacy records.
    pub(super) fn legacy_scan(&self) {
        self.legacy_scans.fetch_add(1, Ordering::Relaxed);
    }

    /// A refused key: counted, and logged with its id (ids are not secret), never the key.
    #[inline]
    pub(super) fn rejected(&self, id: Option<&str>, reason: RejectReason) -> RejectReason {
        rejection(reason);
        tracing::debug!(
            key_id = id.unwrap_or("-"),
            reason = reason.as_str(),
            "API key rejected"
        );
        reason
    }

    /// A valid key's request refused by its policy: counted, and logged with the key's id.
    pub(super) fn policy_refused(&self, id: &KeyId, refusal: PolicyRefusal) {
        let counter = match refusal {
            PolicyRefusal::RateLimited(_) => &self.rate_limited,
            PolicyRefusal::UsageExceeded { .. } => &self.usage_exceeded,
            _ => &self.ip_refusals,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("tower_apikey_policy_refusals_total", "reason" => refusal.as_str())
            .increment(1);
        if let PolicyRefusal::NoClientAddress = refusal {
            // A wiring mistake that refuses every request of the key: say how to mend it,
            // at most once a minute.
            static LAST_WARNED: AtomicU64 = AtomicU64::new(0);
            let now = crate::policy::monotonic_nanos() / 1_000_000_000;
            let last = LAST_WARNED.load(Ordering::Relaxed);
            if last != 0 && now < last + 60 {
                return;
            }
            LAST_WARNED.store(now, Ordering::Relaxed);
            tracing::warn!(
                key_id = %id,
                "API key has an IP allow-list but the request has no client address: give the \
                 layer the peer address (axum: into_make_service_with_connect_info; hyper: \
                 insert the SocketAddr into the request extensions; or ClientAddress::from_extensions)"
            );
        } else {
            tracing::debug!(key_id = %id, reason = refusal.as_str(), "request refused by key policy");
        }
    }

    /// One quota lease taken from the store.
    pub(super) fn quota_lease(&self) {
        self.quota_leases.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("tower_apikey_quota_leases_total").increment(1);
    }

    /// The statistics so far; the validator fills in the work under way.
    pub(super) fn stats(&self) -> ValidatorStats {
        ValidatorStats {
            derivations: self.derivations.load(Ordering::Relaxed),
            shed: self.shed.load(Ordering::Relaxed),
            store_reads: self.store_reads.load(Ordering::Relaxed),
            legacy_scans: self.legacy_scans.load(Ordering::Relaxed),
            ip_refusals: self.ip_refusals.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            usage_exceeded: self.usage_exceeded.load(Ordering::Relaxed),
            quota_leases: self.quota_leases.load(Ordering::Relaxed),
            ..ValidatorStats::default()
        }
    }
}

/// Registers a description of each counter with the installed recorder, for exporters that
/// show them (Prometheus `# HELP`). Optional.
#[cfg(feature = "metrics")]
pub fn describe_metrics() {
    use metrics::describe_counter;
    describe_counter!(
        "tower_apikey_cache_hits_total",
        "API keys answered from the validator's cache"
    );
    describe_counter!(
        "tower_apikey_cache_misses_total",
        "API keys that took the cold path (store read, PBKDF2)"
    );
    describe_counter!(
        "tower_apikey_derivations_total",
        "PBKDF2 derivations run to check API keys"
    );
    describe_counter!(
        "tower_apikey_rejections_total",
        "API keys refused, by reason"
    );
    describe_counter!(
        "tower_apikey_policy_refusals_total",
        "Requests with a valid API key refused by the key's policy, by reason"
    );
    describe_counter!(
        "tower_apikey_quota_leases_total",
        "Quota leases taken from the key store"
    );
    describe_counter!(
        "tower_apikey_shed_total",
        "API key checks turned away because cold-path work was full"
    );
}

#[inline]
fn rejection(reason: RejectReason) {
    // One literal label per arm: a static key, no allocation.
    #[cfg(feature = "metrics")]
    match reason {
        RejectReason::Malformed => {
            metrics::counter!("tower_apikey_rejections_total", "reason" => "malformed")
        }
        RejectReason::UnknownKey => {
            metrics::counter!("tower_apikey_rejections_total", "reason" => "unknown_key")
        }
        RejectReason::WrongSecret => {
            metrics::counter!("tower_apikey_rejections_total", "reason" => "wrong_secret")
        }
        RejectReason::Inactive => {
            metrics::counter!("tower_apikey_rejections_total", "reason" => "inactive")
        }
        RejectReason::Revoked => {
            metrics::counter!("tower_apikey_rejections_total", "reason" => "revoked")
        }
        RejectReason::Expired => {
            metrics::counter!("tower_apikey_rejections_total", "reason" => "expired")
        }
    }
    .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = reason;
}
