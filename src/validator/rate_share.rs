//! Rate limits across a fleet: every interval, the requests each rate-limited key was
//! admitted here go to the store in one batch, and the fleet's totals come back; what other
//! servers admitted moves the key's GCRA state on here. A limit then holds fleet-wide to
//! within what the servers admit between two shares.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Inner;
use crate::key::KeyId;
use crate::policy::{monotonic_nanos, PolicyState};
use crate::streak::Streak;

pub(super) struct RateShare {
    /// How often to share; `None` never does.
    interval: Option<Duration>,
    started: AtomicBool,
    /// A share is under way: the next tick skips rather than pile up behind a slow store.
    sharing: Arc<AtomicBool>,
    /// Shares failing in a row, logged when the run starts and ends.
    failing: Streak,
}

impl RateShare {
    pub(super) fn new(interval: Option<Duration>) -> Self {
        Self {
            interval,
            started: AtomicBool::new(false),
            sharing: Arc::new(AtomicBool::new(false)),
            failing: Streak::default(),
        }
    }
}

impl Inner {
    /// Starts sharing once a rate-limited key is in use, if a runtime is there. A thread of
    /// its own ticks (the runtime may have no time driver); the share runs on the runtime.
    pub(super) fn start_rate_share(self: &Arc<Self>) {
        let share = &self.rate_share;
        let Some(interval) = share.interval else {
            return;
        };
        if share.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            share.started.store(false, Ordering::SeqCst);
            return;
        };
        let inner = Arc::downgrade(self);
        let started = std::thread::Builder::new()
            .name("tower-apikey-rate-share".into())
            .spawn(move || tick(inner, runtime, interval));
        if let Err(error) = started {
            tracing::warn!(%error, "no thread for sharing rate limits; each server limits alone");
        }
    }

    /// One share: this server's counts out, the fleet's totals in.
    async fn share_rate_usage(&self) {
        let now = monotonic_nanos();
        let mut batch: Vec<(KeyId, Arc<PolicyState>, u64)> = self
            .policies
            .rate_limited()
            .into_iter()
            .filter_map(|(id, usage)| {
                let rate = usage.rate.as_ref()?;
                let mine = rate.take_unshared();
                (mine > 0 || rate.recently_used(now)).then_some((id, usage, mine))
            })
            .collect();
        if batch.is_empty() {
            return;
        }
        batch.sort_by(|a, b| a.0.cmp(&b.0));
        let counts = batch.iter().map(|(id, _, n)| (id.clone(), *n)).collect();
        match self.store.share_rate_usage(counts).await {
            Ok(totals) => {
                if let Some(ended) = self.rate_share.failing.succeed() {
                    tracing::warn!(
                        failed = ended.failures,
                        lasted_ms = ended.lasted.as_millis() as u64,
                        "rate limits shared with the fleet again"
                    );
                }
                let now = monotonic_nanos();
                for (id, total) in totals {
                    let Ok(at) = batch.binary_search_by(|(b, _, _)| b.cmp(&id)) else {
                        continue;
                    };
                    let (_, usage, mine) = &batch[at];
                    if let Some(rate) = &usage.rate {
                        rate.learn_fleet_total(total, *mine, now);
                    }
                }
            }
            Err(error) => {
                // Counted again next time; meanwhile each server limits on its own.
                for (_, usage, mine) in &batch {
                    if let Some(rate) = &usage.rate {
                        rate.unshare(*mine);
                    }
                }
                if self.rate_share.failing.fail() {
                    tracing::warn!(%error, "rate limits not shared with the fleet; each server limits alone until the store answers");
                }
            }
        }
    }
}

fn tick(inner: Weak<Inner>, runtime: tokio::runtime::Handle, interval: Duration) {
    loop {
        std::thread::sleep(interval);
        let Some(inner) = inner.upgrade() else { return };
        let sharing = Arc::clone(&inner.rate_share.sharing);
        if sharing.swap(true, Ordering::SeqCst) {
            continue;
        }
        runtime.spawn(async move {
            // Cleared however the share ends: done, panicked (a store bug) or dropped with
            // the runtime. Left set, no share would ever run again.
            let _sharing = SharingGuard(sharing);
            inner.share_rate_usage().await;
        });
    }
}

struct SharingGuard(Arc<AtomicBool>);

impl Drop for SharingGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}
