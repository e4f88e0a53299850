//! The outbox capability of [`PgKeyStore`]: events in `tower_apikey_events`, each written in
//! its change's transaction, claimed with `FOR UPDATE SKIP LOCKED`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use deadpool_postgres::Transaction;
use jiff::Timestamp;

use super::rows::outbox_entry_of;
use super::{unavailable, PgKeyStore};
use crate::events::{Delivery, KeyEvent, OutboxEntry};
use crate::store::{OutboxStore, StoreError};

/// Ids already in the outbox are skipped.
const PUSH_EVENTS: &str = "INSERT INTO tower_apikey_events (id, event) \
     SELECT * FROM unnest($1::TEXT[], $2::TEXT[]) ON CONFLICT (id) DO NOTHING";

/// `SKIP LOCKED`: senders on other servers claiming at the same moment take other rows.
const CLAIM_EVENTS: &str = "UPDATE tower_apikey_events \
     SET claimed_until = now() + make_interval(secs => $2::FLOAT8), \
         attempts = attempts + 1 \
     WHERE seq IN (SELECT seq FROM tower_apikey_events \
         WHERE delivered_at IS NULL \
           AND (not_before IS NULL OR not_before <= now()) \
           AND (claimed_until IS NULL OR claimed_until <= now()) \
         ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED) \
     RETURNING seq, id, event, attempts, not_before, claimed_until, delivered_at";

const PRUNE_DELIVERED: &str =
    "DELETE FROM tower_apikey_events WHERE delivered_at < now() - interval '7 days'";

const FINISH_EVENT: &str = "UPDATE tower_apikey_events SET claimed_until = NULL, \
         delivered_at = CASE WHEN $2 THEN now() END, \
         not_before = coalesce($3, not_before) \
     WHERE id = $1 AND delivered_at IS NULL";

/// How often, at most, a store prunes delivered events (on an idle claim).
const PRUNE_EVERY_SECS: i64 = 60;

/// Adds `events` to the outbox in `tx`: in the same transaction as the change they describe.
/// Ids already in the outbox are skipped; returns how many were added.
pub(super) async fn push_events(
    tx: &Transaction<'_>,
    events: Vec<KeyEvent>,
) -> Result<usize, StoreError> {
    if events.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let bodies = events
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<String>, _>>()
        .map_err(|e| StoreError::Internal(e.into()))?;
    let added = tx
        .execute(PUSH_EVENTS, &[&ids, &bodies])
        .await
        .map_err(unavailable)?;
    Ok(usize::try_from(added).unwrap_or(usize::MAX))
}

impl OutboxStore for PgKeyStore {
    async fn claim_events(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(CLAIM_EVENTS, &[&limit, &lease.as_secs_f64()])
            .await
            .map_err(unavailable)?;
        let now = Timestamp::now().as_second();
        let pruned_at = &self.inner.pruned_at;
        let prune = rows.is_empty()
            && now - pruned_at.load(Ordering::Relaxed) >= PRUNE_EVERY_SECS
            && pruned_at.swap(now, Ordering::Relaxed) != now;
        if prune {
            client
                .execute(PRUNE_DELIVERED, &[])
                .await
                .map_err(unavailable)?;
        }
        let mut rows: Vec<_> = rows
            .iter()
            .map(|row| (row.get::<_, i64>("seq"), row))
            .collect();
        rows.sort_by_key(|(seq, _)| *seq);
        rows.into_iter()
            .map(|(_, row)| outbox_entry_of(row))
            .collect()
    }

    async fn finish_event(&self, id: &str, outcome: Delivery) -> Result<(), StoreError> {
        let client = self.client().await?;
        let (delivered, not_before) = match outcome {
            Delivery::Delivered => (true, None),
            Delivery::RetryAt(at) => (false, Some(at)),
        };
        client
            .execute(FINISH_EVENT, &[&id, &delivered, &not_before])
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn add_events(&self, events: Vec<KeyEvent>) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let added = push_events(&tx, events).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(added)
    }
}
