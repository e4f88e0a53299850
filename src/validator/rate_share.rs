//! Rate limits across a fleet: every interval, the requests each rate-limited key was
//! admitted here go to the store in one batch, and the fleet's totals come back with how many
//! servers admit each key; what other servers admitted moves the key's GCRA state on here,
//! and each request here then stands for every server admitting the key (so `n` servers
//! flooded at once spend one burst between them). A key near its limit is shared four times
//! as often; a fleet with no rate-limited key in use sends nothing.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Inner;
use crate::key::KeyId;
use crate::policy::{monotonic_nanos, FleetHeard, PolicyState};
use crate::store::{RateShare as Share, StoreError};
use crate::streak::Streak;

/// How many times as often a key near its limit is shared.
const HOT_SPEEDUP: u32 = 4;

pub(super) struct RateShare {
    /// How often to share; `None` never does.
    interval: Option<Duration>,
    /// This validator, to the store: random, for its life.
    server: u64,
    /// Servers on the store as last heard (this one included): what a request here stands
    /// for on a key the fleet has not been heard on yet.
    fleet_servers: AtomicU32,
    /// The last share found a key near its limit: the next comes sooner.
    hot: AtomicBool,
    started: AtomicBool,
    /// A share is under way: the next tick skips rather than pile up behind a slow store.
    sharing: Arc<AtomicBool>,
    /// Shares failing in a row, logged when the run starts and ends.
    failing: Streak,
    /// This validator left the fleet ([`Inner::leave_rate_share`]): it shares no more, since
    /// a share would count it as there again.
    left: AtomicBool,
    /// Shares talking to the store now; leaving waits until none is.
    under_way: AtomicU32,
    /// Told when the last share under way ends.
    settled: tokio::sync::Notify,
}

impl RateShare {
    pub(super) fn new(interval: Option<Duration>) -> Self {
        let mut id = [0u8; 8];
        // A validator whose id could not be drawn shares as server 0: it may count as one
        // with another such validator, which only makes the two spend more of the burst.
        let _ = crate::random::fill_random(&mut id);
        Self {
            interval,
            server: u64::from_ne_bytes(id),
            fleet_servers: AtomicU32::new(1),
            hot: AtomicBool::new(false),
            started: AtomicBool::new(false),
            sharing: Arc::new(AtomicBool::new(false)),
            failing: Streak::default(),
            left: AtomicBool::new(false),
            under_way: AtomicU32::new(0),
            settled: tokio::sync::Notify::new(),
        }
    }

    /// Counts a share as under way until the guard drops; `None` once this validator left.
    fn begin(&self) -> Option<UnderWay<'_>> {
        self.under_way.fetch_add(1, Ordering::SeqCst);
        let share = UnderWay(self);
        (!self.left.load(Ordering::SeqCst)).then_some(share)
    }

    /// Servers on the store as last heard.
    pub(super) fn fleet_servers(&self) -> u32 {
        self.fleet_servers.load(Ordering::Relaxed)
    }

    /// How long after a server last shared requests of a key it still counts as admitting
    /// it: it shares a key in use every interval, but a loaded runtime or database may hold
    /// a share back for a second or more (at 2.5 intervals, a flood on two loaded cores had
    /// each server take the other for gone, and admit 35% over). Counting a gone server a
    /// while longer costs nothing in the end: what it did not admit is given back each share.
    fn active_within(interval: Duration) -> Duration {
        interval * 15
    }
}

/// One key in a share: its id, its state, and the requests admitted here since the last.
type Shared = (KeyId, Arc<PolicyState>, u64);

impl Inner {
    /// Says to the store that this validator is there (one statement, if a runtime is
    /// there), so the others count it before it admits anything.
    pub(super) fn announce_rate_share(self: &Arc<Self>) {
        if self.rate_share.interval.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::downgrade(self);
        runtime.spawn(async move {
            if let Some(inner) = inner.upgrade() {
                inner.share(Vec::new()).await;
            }
        });
    }

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

    /// Hears the fleet on a key this validator has just taken up, before any request of it
    /// is admitted here (every caller of the cold path waits for the one share): so a flood
    /// that reaches every server at once is held to one burst from its first request. Once
    /// per key state. The share runs in a task of its own: a caller that goes away does not
    /// cut it short, and a store that panics fails the share, not the request. When the
    /// store does not answer, the key is limited here alone.
    pub(super) async fn introduce_rate_limit(
        self: &Arc<Self>,
        id: &KeyId,
        usage: &Arc<PolicyState>,
    ) {
        let Some(rate) = &usage.rate else { return };
        if self.rate_share.interval.is_none() || rate.introduced.initialized() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (inner, id, usage) = (Arc::clone(self), id.clone(), Arc::clone(usage));
        let introduced = runtime.spawn(async move {
            let Some(rate) = &usage.rate else { return };
            rate.introduced
                .get_or_init(|| async {
                    let mine = rate.take_unshared();
                    inner.share(vec![(id, Arc::clone(&usage), mine)]).await;
                })
                .await;
        });
        if introduced.await.is_err() {
            rate.forget_fleet(1);
            if self.rate_share.failing.fail() {
                tracing::warn!("rate limits not shared with the fleet (the store's share panicked); each server limits alone until the store answers");
            }
        }
    }

    /// One tick: the counts of every rate-limited key in use here out, the fleet's in.
    async fn share_rate_usage(&self) {
        let now = monotonic_nanos();
        let prior = self.rate_share.fleet_servers();
        let mut batch: Vec<Shared> = self
            .policies
            .rate_limited()
            .into_iter()
            .filter_map(|(id, usage)| {
                let rate = usage.rate.as_ref()?;
                let mine = rate.take_unshared();
                if mine > 0 || rate.recently_used(now) {
                    Some((id, usage, mine))
                } else {
                    // Quiet here: when it wakes, its first total is a starting point again
                    // (not everything the fleet admitted meanwhile, owed at once).
                    rate.forget_fleet(prior);
                    None
                }
            })
            .collect();
        if batch.is_empty() {
            self.rate_share.hot.store(false, Ordering::Relaxed);
            return;
        }
        batch.sort_by(|a, b| a.0.cmp(&b.0));
        self.share(batch).await;
    }

    /// Says to the store that this validator stops, once a share under way is done: the
    /// servers on the store no longer count it (one started in its place would otherwise
    /// spread each key's first burst over it for [`Share::SERVER_MEMORY`]). It shares no
    /// more after.
    pub(super) async fn leave_rate_share(&self) -> Result<(), StoreError> {
        let share = &self.rate_share;
        if share.interval.is_none() || share.left.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        loop {
            let settled = share.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if share.under_way.load(Ordering::SeqCst) == 0 {
                break;
            }
            settled.await;
        }
        self.store.leave_rate_share(share.server).await
    }

    /// Shares `batch` (sorted by id; empty: only says this validator is there) and learns
    /// the answer.
    async fn share(&self, batch: Vec<Shared>) {
        let share = &self.rate_share;
        let Some(interval) = share.interval else {
            return;
        };
        let Some(_under_way) = share.begin() else {
            return;
        };
        let counts = batch.iter().map(|(id, _, n)| (id.clone(), *n)).collect();
        let request = Share::new(share.server, counts, RateShare::active_within(interval));
        match self.store.share_rate_usage(request).await {
            Ok(fleet) => {
                if let Some(ended) = share.failing.succeed() {
                    tracing::warn!(
                        failed = ended.failures,
                        lasted_ms = ended.lasted.as_millis() as u64,
                        "rate limits shared with the fleet again"
                    );
                }
                let fleet_servers = fleet.servers.max(1);
                share.fleet_servers.store(fleet_servers, Ordering::Relaxed);
                let now = monotonic_nanos();
                let mut hot = false;
                for key in fleet.keys {
                    let Ok(at) = batch.binary_search_by(|(b, _, _)| b.cmp(&key.id)) else {
                        continue;
                    };
                    let (_, usage, mine) = &batch[at];
                    if let Some(rate) = &usage.rate {
                        let heard = FleetHeard {
                            total: key.admitted,
                            key_servers: key.servers.max(1),
                            fleet_servers,
                        };
                        rate.learn_fleet(heard, *mine, now);
                        // Near its limit with requests here: one that only hears of the
                        // others' has nothing to be precise about.
                        hot |= *mine > 0 && rate.is_hot(now);
                    }
                }
                share.hot.store(hot, Ordering::Relaxed);
            }
            Err(error) => {
                // Each server limits alone until the store answers; then the fleet's totals
                // start afresh (what each admitted alone is not owed again).
                for (_, usage, _) in &batch {
                    if let Some(rate) = &usage.rate {
                        rate.forget_fleet(1);
                    }
                }
                share.hot.store(false, Ordering::Relaxed);
                if share.failing.fail() {
                    tracing::warn!(%error, "rate limits not shared with the fleet; each server limits alone until the store answers");
                }
            }
        }
    }
}

fn tick(inner: Weak<Inner>, runtime: tokio::runtime::Handle, interval: Duration) {
    loop {
        let hot = match inner.upgrade() {
            Some(inner) if !inner.rate_share.left.load(Ordering::Relaxed) => {
                inner.rate_share.hot.load(Ordering::Relaxed)
            }
            _ => return,
        };
        std::thread::sleep(if hot {
            interval / HOT_SPEEDUP
        } else {
            interval
        });
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

/// A share talking to the store; the last to end tells a validator leaving.
struct UnderWay<'a>(&'a RateShare);

impl Drop for UnderWay<'_> {
    fn drop(&mut self) {
        if self.0.under_way.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.settled.notify_waiters();
        }
    }
}

impl Drop for SharingGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}
