//! The audit trail: every event a store writes, kept for its retention (400 days by default)
//! apart from the outbox, whose delivered events go after a week. What answers "who changed
//! this key, when, and why" long after the webhook was sent.

use std::collections::VecDeque;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{EventKind, KeyEvent};
use crate::key::KeyId;

/// How long the audit trail keeps an event by default.
pub const AUDIT_RETENTION: SignedDuration = SignedDuration::from_hours(24 * 400);

/// An event in the audit trail, with its place in it: newer events have higher `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditEntry {
    /// Its place in the trail; what a page's `next` cursor names.
    pub seq: u64,
    /// The event.
    pub event: KeyEvent,
}

impl AuditEntry {
    /// `event` at `seq`.
    pub fn new(seq: u64, event: KeyEvent) -> Self {
        Self { seq, event }
    }
}

/// Which events a reading of the audit trail asks for, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditQuery {
    /// Only events about this key.
    pub key_id: Option<KeyId>,
    /// Only events about this principal's keys.
    pub principal: Option<String>,
    /// Only events of this kind.
    pub kind: Option<EventKind>,
    /// Only events this actor caused (`cli:alice`, `admin:ops/KEY_ID`, …).
    pub actor: Option<String>,
    /// Only events older than the one at this place: the previous page's last `seq`.
    pub before: Option<u64>,
    /// Only events at or after this time.
    pub since: Option<Timestamp>,
    /// At most this many (`None`: all).
    pub limit: Option<usize>,
}

impl AuditQuery {
    /// Every event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only events about `key_id`.
    pub fn key_id(mut self, key_id: KeyId) -> Self {
        self.key_id = Some(key_id);
        self
    }

    /// Only events about `principal`'s keys.
    pub fn principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }

    /// Only events of `kind`.
    pub fn kind(mut self, kind: EventKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Only events `actor` caused.
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Only events older than the one at `seq`.
    pub fn before(mut self, seq: u64) -> Self {
        self.before = Some(seq);
        self
    }

    /// Only events at or after `at`.
    pub fn since(mut self, at: Timestamp) -> Self {
        self.since = Some(at);
        self
    }

    /// At most `n` events.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Whether `entry` is one this query asks for (`limit` aside).
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        let event = &entry.event;
        self.key_id.as_ref().is_none_or(|k| event.key_id == *k)
            && self
                .principal
                .as_ref()
                .is_none_or(|p| event.principal == *p)
            && self.kind.is_none_or(|k| event.kind == k)
            && self
                .actor
                .as_ref()
                .is_none_or(|a| event.actor.as_deref() == Some(a.as_str()))
            && self.before.is_none_or(|seq| entry.seq < seq)
            && self.since.is_none_or(|at| event.at >= at)
    }
}

/// The audit trail as a store that keeps its events in memory holds it (the memory and
/// file stores; a store of your own can too): events in the order written, each with its
/// place, older than the retention dropped as new ones come.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    entries: VecDeque<AuditEntry>,
    #[serde(default)]
    next_seq: u64,
}

impl AuditLog {
    /// An empty trail.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `events` at the end, and drops events written before `now - retention`.
    pub fn record(&mut self, events: &[KeyEvent], now: Timestamp, retention: SignedDuration) {
        for event in events {
            self.next_seq += 1;
            self.entries
                .push_back(AuditEntry::new(self.next_seq, event.clone()));
        }
        let kept_since = now - retention;
        while self
            .entries
            .front()
            .is_some_and(|e| e.event.at < kept_since)
        {
            self.entries.pop_front();
        }
    }

    /// The events `query` asks for, newest first.
    pub fn read(&self, query: &AuditQuery) -> Vec<AuditEntry> {
        self.entries
            .iter()
            .rev()
            .filter(|e| query.matches(e))
            .take(query.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// Whether it holds an event with this id.
    pub fn contains(&self, id: &str) -> bool {
        self.entries.iter().any(|e| e.event.id == id)
    }

    /// Whether it holds no event.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{Pbkdf2Hash, Prf};
    use crate::record::KeyRecord;

    fn event(kind: EventKind, key: &str, actor: &str, at: Timestamp) -> KeyEvent {
        let hash = Pbkdf2Hash::from_parts(1, &[1; 16], &[2; 16]).unwrap();
        let record = KeyRecord::new(KeyId::new(key).unwrap(), "alice", hash, Prf::Sha1);
        let mut event = KeyEvent::new(kind, &record);
        event.actor = Some(actor.to_owned());
        event.at = at;
        event
    }

    #[test]
    fn the_trail_reads_newest_first_by_page_and_forgets_past_its_retention() {
        let now = Timestamp::now();
        let old = now - SignedDuration::from_hours(24 * 500);
        let mut log = AuditLog::new();
        log.record(
            &[event(EventKind::Issued, "a", "cli:root", old)],
            old,
            AUDIT_RETENTION,
        );
        log.record(
            &[
                event(EventKind::Issued, "b", "cli:root", now),
                event(EventKind::Revoked, "b", "admin:ops/k1", now),
                event(EventKind::Issued, "c", "cli:root", now),
            ],
            now,
            AUDIT_RETENTION,
        );
        let all = log.read(&AuditQuery::new());
        let seen: Vec<(u64, &str)> = all
            .iter()
            .map(|e| (e.seq, e.event.key_id.as_str()))
            .collect();
        assert_eq!(
            seen,
            [(4, "c"), (3, "b"), (2, "b")],
            "newest first, the old one gone"
        );
        let page = log.read(&AuditQuery::new().before(4).limit(1));
        assert_eq!(page[0].seq, 3);
        let by = log.read(&AuditQuery::new().actor("admin:ops/k1"));
        assert_eq!(by.len(), 1);
        assert_eq!(by[0].event.kind, EventKind::Revoked);
        let json = serde_json::to_string(&log).unwrap();
        assert_eq!(serde_json::from_str::<AuditLog>(&json).unwrap(), log);
    }
}
