//! Warnings before keys expire, and word when they have: `key.expiring` once per key per
//! warning horizon, `key.expired` once when its time passes — once across a whole fleet.
//!
//! Every server may run an [`ExpirySweeper`]; each sweep reads the keys expiring within the
//! longest horizon ([`KeyQuery::expiring_by`]) and adds their events with
//! [`OutboxStore::add_events`]. The events' ids are made from the key, its expiry and the
//! horizon, and the store adds an id only once, so the servers sweeping at the same moment
//! add each event once between them. A key whose expiry changes is a new key to warn about.
//!
//! A horizon is warned about during the day after it is reached (or until the key expires,
//! for a horizon shorter than a day), and `key.expired` during the day after the expiry: a
//! fleet stopped for longer than that misses them, rather than warning about keys long
//! gone when it starts. A key issued with less time left than a horizon gets that horizon's
//! warning only if it is issued within that day.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::events::{EventKind, KeyEvent};
use crate::record::KeyRecord;
use crate::store::{outbox_handle, ErasedOutboxStore, KeyQuery, OutboxStore, StoreError};

/// How long after a horizon (or the expiry) is reached its event may still be added.
const WINDOW: SignedDuration = SignedDuration::from_hours(24);

/// Adds expiry events to the outbox. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct ExpirySweeper {
    store: Arc<dyn ErasedOutboxStore>,
    /// Longest first.
    horizons: Vec<SignedDuration>,
    every: Duration,
}

impl ExpirySweeper {
    /// A sweeper of `store`: warnings 7 days and 1 day before expiry, a sweep a minute.
    pub fn new(store: impl OutboxStore) -> Self {
        Self {
            store: outbox_handle(store),
            horizons: vec![
                SignedDuration::from_hours(24 * 7),
                SignedDuration::from_hours(24),
            ],
            every: Duration::from_secs(60),
        }
    }

    /// How long before expiry to warn (each once); none warns of nothing but expiry.
    pub fn horizons(mut self, horizons: impl IntoIterator<Item = Duration>) -> Self {
        self.horizons = horizons
            .into_iter()
            .filter_map(|h| SignedDuration::try_from(h).ok())
            .filter(|h| h.is_positive())
            .collect();
        self.horizons.sort_unstable_by(|a, b| b.cmp(a));
        self.horizons.dedup();
        self
    }

    /// How often to sweep (default a minute; at least 100 ms).
    pub fn interval(mut self, every: Duration) -> Self {
        self.every = every.max(Duration::from_millis(100));
        self
    }

    /// One sweep at `now`: adds the events due and not yet added; how many were added.
    ///
    /// # Errors
    /// The store's failure (the next sweep tries again).
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let now = Timestamp::now();
        let longest = self
            .horizons
            .first()
            .copied()
            .unwrap_or(SignedDuration::ZERO);
        let until = now.checked_add(longest).unwrap_or(Timestamp::MAX);
        let records = self
            .store
            .query(&KeyQuery::new().expiring_by(until))
            .await?;
        let events: Vec<KeyEvent> = records
            .iter()
            .flat_map(|record| self.events_for(record, now))
            .collect();
        if events.is_empty() {
            return Ok(0);
        }
        self.store.add_events(events).await
    }

    /// Sweeps every [`interval`](Self::interval) until `shutdown` completes. Failures are
    /// logged and the next sweep tries again.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.sweep().await {
                Ok(0) => {}
                Ok(added) => tracing::debug!(added, "expiry events added"),
                Err(error) => tracing::warn!(%error, "expiry sweep failed; trying again"),
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.every) => {}
            }
        }
    }

    /// The events due for `record` at `now`: `key.expired` once it has expired, else a
    /// warning for each horizon whose window holds `now`.
    fn events_for(&self, record: &KeyRecord, now: Timestamp) -> Vec<KeyEvent> {
        let Some(expires) = record.expires_at else {
            return Vec::new();
        };
        let at = expires.as_second();
        if expires <= now {
            if expires.checked_add(WINDOW).is_ok_and(|end| now < end) {
                let id = format!("evt_expired_{}_{at}", record.id);
                return vec![event(EventKind::Expired, record, id)];
            }
            return Vec::new();
        }
        self.horizons
            .iter()
            .filter(|&&horizon| {
                let Ok(reached) = expires.checked_sub(horizon) else {
                    return false;
                };
                let end = reached.checked_add(horizon.min(WINDOW)).unwrap_or(expires);
                reached <= now && now < end
            })
            .map(|horizon| {
                let id = format!("evt_expiring_{}_{at}_{}", record.id, horizon.as_secs());
                event(EventKind::Expiring, record, id)
            })
            .collect()
    }
}

fn event(kind: EventKind, record: &KeyRecord, id: String) -> KeyEvent {
    let mut event = KeyEvent::new(kind, record);
    event.id = id;
    event.at = Timestamp::now();
    event.actor = None;
    event
}
