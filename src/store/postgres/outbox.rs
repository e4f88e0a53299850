//! The outbox capability of [`PgKeyStore`]: events in `tower_apikey_events`, each written in
//! its change's transaction, claimed with `FOR UPDATE SKIP LOCKED`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use deadpool_postgres::Transaction;
use jiff::Timestamp;

use super::rows::outbox_entry_of;
use super::{unavailable, PgKeyStore};
use tokio_postgres::types::ToSql;

use crate::events::{AuditEntry, AuditQuery, Delivery, EventKind, KeyEvent, OutboxEntry};
use crate::key::KeyId;
use crate::store::{OutboxStore, StoreError};

/// Ids already in the outbox are skipped; each event added goes to the audit trail too, in
/// the same statement. Answers how many were added.
const PUSH_EVENTS: &str = "WITH ev AS (SELECT * FROM unnest($1::TEXT[], $2::TEXT[], \
       $3::TIMESTAMPTZ[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[]) \
       AS e(id, event, at, type, key_id, principal, actor)), \
     added AS (INSERT INTO tower_apikey_events (id, event) SELECT id, event FROM ev \
       ON CONFLICT (id) DO NOTHING RETURNING id), \
     audited AS (INSERT INTO tower_apikey_audit (id, at, type, key_id, principal, actor, event) \
       SELECT ev.id, at, type, key_id, principal, actor, event FROM ev JOIN added USING (id) \
       ON CONFLICT (id) DO NOTHING) \
     SELECT count(*) FROM added";

/// A page of the audit trail: the filters given are added to it, each with its parameter.
const READ_EVENTS: &str = "SELECT seq, id, event FROM tower_apikey_audit WHERE TRUE";
const BY_KEY: &str = " AND key_id = $";
const BY_PRINCIPAL: &str = " AND principal = $";
const BY_TYPE: &str = " AND type = $";
const BY_ACTOR: &str = " AND actor = $";
const BEFORE: &str = " AND seq < $";
const SINCE: &str = " AND at >= $";
const NEWEST_FIRST: &str = " ORDER BY seq DESC";
const LIMIT: &str = " LIMIT $";

/// At most 10,000 audit rows past the retention (`$1` seconds) a call.
const PRUNE_AUDIT: &str = "DELETE FROM tower_apikey_audit WHERE seq = ANY(ARRAY( \
     SELECT seq FROM tower_apikey_audit WHERE at < now() - make_interval(secs => $1) \
     ORDER BY seq LIMIT 10000))";

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
    let at: Vec<Timestamp> = events.iter().map(|e| e.at).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let keys: Vec<&str> = events.iter().map(|e| e.key_id.as_str()).collect();
    let principals: Vec<&str> = events.iter().map(|e| e.principal.as_str()).collect();
    let actors: Vec<Option<&str>> = events.iter().map(|e| e.actor.as_deref()).collect();
    let added: i64 = tx
        .query_one(
            PUSH_EVENTS,
            &[&ids, &bodies, &at, &kinds, &keys, &principals, &actors],
        )
        .await
        .map_err(unavailable)?
        .get(0);
    Ok(usize::try_from(added).unwrap_or(0))
}

impl PgKeyStore {
    /// Drops delivered events past their week and audit rows past their retention, bounded,
    /// at most once a minute per store: on a sender's idle claim, and with the usage prune a
    /// validator runs (so a deployment without a sender still keeps its trail's retention).
    pub(super) async fn prune_events(
        &self,
        client: &deadpool_postgres::Object,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now().as_second();
        let pruned_at = &self.inner.pruned_at;
        let due = now - pruned_at.load(Ordering::Relaxed) >= PRUNE_EVERY_SECS
            && pruned_at.swap(now, Ordering::Relaxed) != now;
        if !due {
            return Ok(());
        }
        client
            .execute(PRUNE_DELIVERED, &[])
            .await
            .map_err(unavailable)?;
        let retention = self.inner.audit_retention.as_secs_f64();
        client
            .execute(PRUNE_AUDIT, &[&retention])
            .await
            .map_err(unavailable)?;
        Ok(())
    }
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
        if rows.is_empty() {
            self.prune_events(&client).await?;
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

    async fn read_events(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let key = query.key_id.as_ref().map(KeyId::as_str);
        let kind = query.kind.map(EventKind::as_str);
        let before = query
            .before
            .map(|seq| i64::try_from(seq).unwrap_or(i64::MAX));
        let limit = query.limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut sql = READ_EVENTS.to_owned();
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        let filters: [(&str, Option<&(dyn ToSql + Sync)>); 6] = [
            (BY_KEY, key.as_ref().map(|v| v as _)),
            (BY_PRINCIPAL, query.principal.as_ref().map(|v| v as _)),
            (BY_TYPE, kind.as_ref().map(|v| v as _)),
            (BY_ACTOR, query.actor.as_ref().map(|v| v as _)),
            (BEFORE, before.as_ref().map(|v| v as _)),
            (SINCE, query.since.as_ref().map(|v| v as _)),
        ];
        for (clause, param) in filters {
            if let Some(param) = param {
                params.push(param);
                sql.push_str(&clause.replace('$', &format!("${}", params.len())));
            }
        }
        sql.push_str(NEWEST_FIRST);
        if let Some(limit) = &limit {
            params.push(limit);
            sql.push_str(&LIMIT.replace('$', &format!("${}", params.len())));
        }
        let client = self.client().await?;
        let rows = client.query(&sql, &params).await.map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let seq = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
                let id: String = row.get(1);
                let event: KeyEvent =
                    serde_json::from_str(row.get(2)).map_err(|e| StoreError::InvalidRecord {
                        id,
                        source: e.into(),
                    })?;
                Ok(AuditEntry::new(seq, event))
            })
            .collect()
    }
}
