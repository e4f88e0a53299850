//! The outbox rules every map-backed store applies (the memory and file stores; a store of
//! your own can hold an [`Outbox`] too): events in order, claimed by one sender at a time
//! for a lease, retried when delivery fails, kept a while once delivered.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::KeyEvent;

/// How long a delivered event is kept (so an operator can see what was sent).
const KEPT_AFTER_DELIVERY: SignedDuration = SignedDuration::from_hours(24 * 7);

/// An event in a store's outbox, with its delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OutboxEntry {
    /// The event.
    pub event: KeyEvent,
    /// Delivery attempts so far (claims).
    #[serde(default)]
    pub attempts: u32,
    /// Not to be tried before this time (a retry's backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    /// Claimed by a sender until this time: no other sender takes it meanwhile. A sender that
    /// dies mid-delivery loses its claim when this passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_until: Option<Timestamp>,
    /// When it was delivered; kept a week after that, then dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Timestamp>,
}

impl OutboxEntry {
    /// A new, undelivered entry for `event`.
    pub fn new(event: KeyEvent) -> Self {
        Self {
            event,
            attempts: 0,
            not_before: None,
            claimed_until: None,
            delivered_at: None,
        }
    }

    fn is_due(&self, now: Timestamp) -> bool {
        self.delivered_at.is_none()
            && self.not_before.is_none_or(|t| t <= now)
            && self.claimed_until.is_none_or(|t| t <= now)
    }
}

/// How a claimed delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted by the endpoint: done.
    Delivered,
    /// Not accepted: try again at this time.
    RetryAt(Timestamp),
}

/// Events in the order they were written, with their delivery state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Outbox(Vec<OutboxEntry>);

impl Outbox {
    /// Adds `events` at the end.
    pub fn push(&mut self, events: Vec<KeyEvent>) {
        self.0.extend(events.into_iter().map(OutboxEntry::new));
    }

    /// Adds the events whose ids are not in the outbox yet (delivered ones count); how many.
    pub fn push_new(&mut self, events: Vec<KeyEvent>) -> usize {
        let mut added = 0;
        for event in events {
            if self.0.iter().all(|e| e.event.id != event.id) {
                self.0.push(OutboxEntry::new(event));
                added += 1;
            }
        }
        added
    }

    /// Whether an event with this id is in the outbox (delivered ones count).
    pub fn contains(&self, id: &str) -> bool {
        self.0.iter().any(|e| e.event.id == id)
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> &[OutboxEntry] {
        &self.0
    }

    /// Whether any entry could be claimed at `now`.
    pub fn has_due(&self, now: Timestamp) -> bool {
        self.0.iter().any(|e| e.is_due(now))
    }

    /// Claims up to `limit` due entries, oldest first, until `now + lease`; each counts an
    /// attempt. Drops entries delivered more than a week ago.
    pub fn claim(&mut self, limit: usize, lease: Duration, now: Timestamp) -> Vec<OutboxEntry> {
        let kept_since = now - KEPT_AFTER_DELIVERY;
        self.0
            .retain(|e| e.delivered_at.is_none_or(|at| at > kept_since));
        let until = now + SignedDuration::try_from(lease).unwrap_or(SignedDuration::MAX / 2);
        self.0
            .iter_mut()
            .filter(|e| e.is_due(now))
            .take(limit)
            .map(|e| {
                e.claimed_until = Some(until);
                e.attempts = e.attempts.saturating_add(1);
                e.clone()
            })
            .collect()
    }

    /// Records how the delivery of event `id` ended; `false` if no such undelivered entry.
    pub fn finish(&mut self, id: &str, outcome: Delivery, now: Timestamp) -> bool {
        let Some(entry) = self
            .0
            .iter_mut()
            .find(|e| e.event.id == id && e.delivered_at.is_none())
        else {
            return false;
        };
        entry.claimed_until = None;
        match outcome {
            Delivery::Delivered => entry.delivered_at = Some(now),
            Delivery::RetryAt(at) => entry.not_before = Some(at),
        }
        true
    }
}
