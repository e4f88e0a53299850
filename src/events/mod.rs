//! Key events: what happened to a key (issued, rotated, revoked as leaked, …), written to an
//! outbox in the store in the same write as the change itself, for delivery to webhooks.
//!
//! Stores derive events from the change they are asked to make ([`KeyEvent::for_change`]),
//! so every writer — the CLI, the admin API, the secret-scanning receiver, your code through
//! [`KeyManager`](crate::KeyManager) — is captured, even while no server runs. A store keeps
//! them in its [outbox](crate::store::OutboxStore) until a sender (`webhook::WebhookSender`,
//! feature `webhooks`) claims them, delivers them, and marks them done.
//! [`ExpirySweeper`](crate::sweeper::ExpirySweeper) adds `key.expiring` and `key.expired`,
//! once per key across a fleet. This module is the vocabulary they share: the events, and
//! the [`Outbox`] rules a store that keeps its events in memory applies.
//!
//! Events carry ids, principals, names, reasons and times: never a key, a hash or a lookup
//! digest. Usage (last use, quota spent) is not a change and makes no event, but for a quota
//! running out (`key.quota_exhausted`, once a period); neither does an import (a migration of
//! many records, not a change to keys in use).

mod audit;
mod outbox;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use audit::{AuditEntry, AuditLog, AuditQuery, AUDIT_RETENTION};
pub use outbox::{Delivery, Outbox, OutboxEntry};

use crate::key::KeyId;
use crate::record::{KeyRecord, KeyStatus, RevocationReason};

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EventKind {
    /// A key was issued (or stored from a key the caller had).
    #[serde(rename = "key.issued")]
    Issued,
    /// A key was issued to replace another ([`KeyEvent::replaces`]), which expires after its
    /// grace period.
    #[serde(rename = "key.rotated")]
    Rotated,
    /// The key got a new secret; the old one is refused.
    #[serde(rename = "key.regenerated")]
    Regenerated,
    /// Its name, description, permissions, expiry or policies changed.
    #[serde(rename = "key.updated")]
    Updated,
    /// Switched off.
    #[serde(rename = "key.deactivated")]
    Deactivated,
    /// Switched back on.
    #[serde(rename = "key.activated")]
    Activated,
    /// Revoked for good ([`KeyEvent::reason`] says why).
    #[serde(rename = "key.revoked")]
    Revoked,
    /// Found where others can read it, and revoked ([`KeyEvent::location`] says where). Sent
    /// beside `key.revoked`, for whoever tells owners about leaks.
    #[serde(rename = "key.leaked")]
    Leaked,
    /// Its record was deleted.
    #[serde(rename = "key.deleted")]
    Deleted,
    /// Its quota has been handed out for the current period: the store has no uses left to
    /// lease (servers may still hold a last block). Once per period.
    #[serde(rename = "key.quota_exhausted")]
    QuotaExhausted,
    /// It expires within a warning horizon ([`ExpirySweeper`](crate::sweeper::ExpirySweeper)).
    #[serde(rename = "key.expiring")]
    Expiring,
    /// Its expiry has passed ([`ExpirySweeper`](crate::sweeper::ExpirySweeper)).
    #[serde(rename = "key.expired")]
    Expired,
}

impl EventKind {
    /// Every kind, in the order listed here.
    pub const ALL: [EventKind; 12] = [
        EventKind::Issued,
        EventKind::Rotated,
        EventKind::Regenerated,
        EventKind::Updated,
        EventKind::Deactivated,
        EventKind::Activated,
        EventKind::Revoked,
        EventKind::Leaked,
        EventKind::Deleted,
        EventKind::QuotaExhausted,
        EventKind::Expiring,
        EventKind::Expired,
    ];

    /// The Standard Webhooks `type`: `key.issued`, `key.revoked`, ….
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Issued => "key.issued",
            EventKind::Rotated => "key.rotated",
            EventKind::Regenerated => "key.regenerated",
            EventKind::Updated => "key.updated",
            EventKind::Deactivated => "key.deactivated",
            EventKind::Activated => "key.activated",
            EventKind::Revoked => "key.revoked",
            EventKind::Leaked => "key.leaked",
            EventKind::Deleted => "key.deleted",
            EventKind::QuotaExhausted => "key.quota_exhausted",
            EventKind::Expiring => "key.expiring",
            EventKind::Expired => "key.expired",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `type` that is not one of [`EventKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type (one of key.issued, key.rotated, key.regenerated, key.updated, key.deactivated, key.activated, key.revoked, key.leaked, key.deleted, key.quota_exhausted, key.expiring, key.expired)")]
#[non_exhaustive]
pub struct UnknownEventKind;

impl std::str::FromStr for EventKind {
    type Err = UnknownEventKind;

    /// `key.revoked` and the like, or the part after `key.` (`revoked`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let name = |kind: &EventKind| kind.as_str();
        EventKind::ALL
            .into_iter()
            .find(|kind| name(kind) == text || name(kind).strip_prefix("key.") == Some(text))
            .ok_or(UnknownEventKind)
    }
}

/// One thing that happened to one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyEvent {
    /// Unique, and the same on every delivery attempt (the `webhook-id`): `evt_` and 24
    /// random base62 characters.
    pub id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// When the change was made.
    pub at: Timestamp,
    /// The key's id.
    pub key_id: KeyId,
    /// Whose key it is.
    pub principal: String,
    /// The key's name, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Who made the change, if known (`cli:alice`, an admin's principal,
    /// `github-secret-scanning`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Why it was revoked (`key.revoked`, `key.leaked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RevocationReason>,
    /// Where it leaked (`key.revoked`, `key.leaked`), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// When the key expires, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The key this one replaces (`key.rotated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<KeyId>,
}

impl KeyEvent {
    /// An event of `kind` about `record`, now, with a fresh id.
    pub fn new(kind: EventKind, record: &KeyRecord) -> Self {
        let revocation = matches!(kind, EventKind::Revoked | EventKind::Leaked)
            .then_some(record.revocation.as_ref())
            .flatten();
        Self {
            id: new_event_id(),
            kind,
            at: record.updated_at.unwrap_or(record.created_at),
            key_id: record.id.clone(),
            principal: record.principal.clone(),
            name: record.name.clone(),
            actor: record
                .updated_by
                .clone()
                .or_else(|| record.created_by.clone()),
            reason: revocation
                .map(|r| r.reason)
                .or((kind == EventKind::Revoked).then_some(RevocationReason::Unspecified)),
            location: revocation.and_then(|r| r.location.clone()),
            expires_at: record.expires_at,
            replaces: (kind == EventKind::Rotated)
                .then(|| record.replaces.clone())
                .flatten(),
        }
    }

    /// The `key.quota_exhausted` event for `record`'s quota period starting at
    /// `period_start`: its id is made from both, so a store adds it once per period
    /// ([`Outbox::push_new`]) however many leases find the quota empty.
    pub fn quota_exhausted(record: &KeyRecord, period_start: Timestamp) -> Self {
        let mut event = KeyEvent::new(EventKind::QuotaExhausted, record);
        event.id = format!("evt_quota_{}_{}", record.id, period_start.as_second());
        event.at = Timestamp::now();
        event.actor = None;
        event
    }

    /// The events a store writes with a change from `before` to `after` (`None`: no record).
    /// Usage alone (last use, quota spent) is no event.
    pub fn for_change(before: Option<&KeyRecord>, after: Option<&KeyRecord>) -> Vec<KeyEvent> {
        match (before, after) {
            (None, Some(new)) if new.replaces.is_some() => {
                vec![KeyEvent::new(EventKind::Rotated, new)]
            }
            (None, Some(new)) => vec![KeyEvent::new(EventKind::Issued, new)],
            (Some(old), None) => {
                // Who deleted it is who stamped it last: the key manager stamps a record
                // before deleting it.
                let mut event = KeyEvent::new(EventKind::Deleted, old);
                event.at = crate::record::record_time();
                event.actor.clone_from(&old.updated_by);
                vec![event]
            }
            (Some(old), Some(new)) => {
                let mut events = Vec::new();
                if old.status != new.status {
                    match new.status {
                        KeyStatus::Inactive => events.push(EventKind::Deactivated),
                        KeyStatus::Active => events.push(EventKind::Activated),
                        KeyStatus::Revoked => {
                            events.push(EventKind::Revoked);
                            let leaked = new
                                .revocation
                                .as_ref()
                                .is_some_and(|r| r.reason == RevocationReason::Leaked);
                            if leaked {
                                events.push(EventKind::Leaked);
                            }
                        }
                    }
                }
                if old.hash != new.hash {
                    events.push(EventKind::Regenerated);
                }
                if events.is_empty() && differs_in_what_owners_see(old, new) {
                    events.push(EventKind::Updated);
                }
                events
                    .into_iter()
                    .map(|kind| KeyEvent::new(kind, new))
                    .collect()
            }
            (None, None) => Vec::new(),
        }
    }
}

/// A change beyond usage and the change stamps.
fn differs_in_what_owners_see(old: &KeyRecord, new: &KeyRecord) -> bool {
    let mut old = old.clone();
    old.updated_at = new.updated_at;
    old.updated_by.clone_from(&new.updated_by);
    old.differs_beyond_usage(new)
}

/// `evt_` and 24 base62 characters from the OS RNG (143 bits): unique without coordination.
fn new_event_id() -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = [0u8; 24];
    // An RNG failure here is as fatal as for key generation; fall back to the clock rather
    // than lose the change's event.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = Timestamp::now().as_nanosecond().to_le_bytes();
        for (b, n) in bytes.iter_mut().zip(nanos.iter().cycle()) {
            *b = *n;
        }
    }
    let mut id = String::with_capacity(28);
    id.push_str("evt_");
    for b in bytes {
        // 256 is not a multiple of 62: the first 8 symbols come slightly more often, which
        // matters for an identifier as little as it would for a secret (this is not one).
        id.push(char::from(ALPHABET[usize::from(b) % 62]));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_from_its_type_and_the_error_names_them_all() {
        let message = UnknownEventKind.to_string();
        for kind in EventKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""), "as_str agrees with serde");
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
            let short = kind.as_str().strip_prefix("key.").unwrap();
            assert_eq!(short.parse::<EventKind>(), Ok(kind));
            assert!(message.contains(kind.as_str()), "{message} lacks {kind}");
        }
        assert_eq!("key.stolen".parse::<EventKind>(), Err(UnknownEventKind));
        assert_eq!("".parse::<EventKind>(), Err(UnknownEventKind));
    }
}
