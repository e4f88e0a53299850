//! The validator's counters, through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! With the `metrics` feature, every counter below goes to whatever recorder the application
//! installed (Prometheus, StatsD, ...); without it, each call compiles to nothing. Keys are
//! built from static names and labels, so a count allocates nothing.
//!
//! | counter | labels | counts |
//! |---|---|---|
//! | `tower_apikey_cache_hits_total` | | keys answered from the cache |
//! | `tower_apikey_cache_misses_total` | | keys that took the cold path |
//! | `tower_apikey_derivations_total` | | PBKDF2 derivations run |
//! | `tower_apikey_rejections_total` | `reason` | refused keys, by [`RejectReason::as_str`] |
//! | `tower_apikey_shed_total` | | requests turned away with 503 because cold work was full |

use super::RejectReason;

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
        "tower_apikey_shed_total",
        "API key checks turned away because cold-path work was full"
    );
}

#[inline]
pub(super) fn hit() {
    #[cfg(feature = "metrics")]
    metrics::counter!("tower_apikey_cache_hits_total").increment(1);
}

#[inline]
pub(super) fn miss() {
    #[cfg(feature = "metrics")]
    metrics::counter!("tower_apikey_cache_misses_total").increment(1);
}

#[inline]
pub(super) fn derivations(n: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!("tower_apikey_derivations_total").increment(n);
    #[cfg(not(feature = "metrics"))]
    let _ = n;
}

#[inline]
pub(super) fn shed() {
    #[cfg(feature = "metrics")]
    metrics::counter!("tower_apikey_shed_total").increment(1);
}

#[inline]
pub(super) fn rejection(reason: RejectReason) {
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
