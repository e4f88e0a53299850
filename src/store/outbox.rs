//! The outbox capability: key events written with the changes that make them, claimed by
//! senders, kept for a while once delivered; and the audit trail, every event kept apart
//! from its delivery for much longer.

use std::future::Future;
use std::time::Duration;

use super::{KeyStore, StoreError};
use crate::events::{AuditEntry, AuditQuery, Delivery, KeyEvent, OutboxEntry};

/// A store that keeps key events in an outbox: every change writes its events
/// ([`KeyEvent::for_change`]) in the same atomic step as the change itself, and senders
/// claim them for delivery.
///
/// Which writes add events: `insert`, `insert_limited`, `replace` and `delete` (not
/// `insert_many`, an import; nor usage, but for a quota running out). Delivered events are
/// kept 7 days. Every event written also goes to the audit trail, in the same step, kept
/// [400 days](crate::events::AUDIT_RETENTION) whatever its delivery.
/// [`Outbox`](crate::events::Outbox) and [`AuditLog`](crate::events::AuditLog) are the rules
/// a store that keeps its events in memory applies.
///
/// Every method is required. A webhook sender and the expiry sweeper need this capability:
/// they do not compile for a store without it.
///
/// A backend checks itself against every rule with
/// `tower_apikey::test_util::check_outbox_store` (feature `test-util`).
pub trait OutboxStore: KeyStore {
    /// Claims up to `limit` due events (undelivered, past any retry time, not claimed by
    /// another sender), oldest first, for `lease`: no other caller gets them until the lease
    /// ends or [`finish_event`](Self::finish_event) is called. Each claim counts an attempt.
    ///
    /// Atomic: two senders, in one process or many, never hold the same event at once.
    fn claim_events<'a>(
        &'a self,
        limit: usize,
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, StoreError>> + Send + 'a;

    /// Records how the delivery of a claimed event ended: delivered, or to be retried at a
    /// time. An unknown or already delivered id is no error (its claim may have passed to
    /// another sender, which delivered it first).
    fn finish_event<'a>(
        &'a self,
        id: &'a str,
        outcome: Delivery,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a;

    /// Adds `events` unless an event with the same id is there already (delivered ones
    /// count, for the week they are kept); returns how many were added. What the expiry
    /// sweeper writes: its events have ids made from the key, its expiry and the warning, so
    /// every server sweeping at once adds each one once. Atomic.
    fn add_events<'a>(
        &'a self,
        events: Vec<KeyEvent>,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send + 'a;

    /// The audit trail's events `query` asks for, newest first: each with its place (`seq`,
    /// higher for newer events), whether delivered or not, for the trail's retention.
    fn read_events<'a>(
        &'a self,
        query: &'a AuditQuery,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send + 'a;
}

/// [`OutboxStore`]'s methods, the one list the type-erased store and the test forwarding
/// wrapper are generated from (see `records.rs`).
macro_rules! outbox_store_methods {
    ($then:ident { $($pass:tt)* }) => {
        $then! { $($pass)*
            OutboxStore {
                claim_events(limit: usize, lease: std::time::Duration) -> Vec<$crate::events::OutboxEntry>;
                finish_event(id: &'a str, outcome: $crate::events::Delivery) -> ();
                add_events(events: Vec<$crate::events::KeyEvent>) -> usize;
                read_events(query: &'a $crate::events::AuditQuery) -> Vec<$crate::events::AuditEntry>;
            }
        }
    };
}
pub(crate) use outbox_store_methods;
