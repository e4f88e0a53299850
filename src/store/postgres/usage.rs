//! The usage capability of [`PgKeyStore`]: one statement per call, no change logged (usage
//! changes no key's validity).

use jiff::Timestamp;

use super::{unavailable, PgKeyStore};
use crate::key::KeyId;
use crate::policy::QuotaGrant;
use crate::store::{StoreError, UsageStore};

/// A later time replaces an earlier one, never the reverse.
const RECORD_LAST_USED: &str = "UPDATE tower_apikey_keys AS k \
     SET last_used_at = GREATEST(coalesce(k.last_used_at, u.at), u.at) \
     FROM unnest($1::TEXT[], $2::TIMESTAMPTZ[]) AS u(id, at) WHERE k.id = u.id";

/// [`KeyRecord::take_quota`](crate::KeyRecord::take_quota)'s rule in SQL (the refill, the
/// grant), and [`KeyEvent::quota_exhausted`](crate::events::KeyEvent::quota_exhausted) built
/// in the same statement when nothing is left: one statement a lease. The conformance rules
/// "take_quota refills as KeyRecord::take_quota does" and "the quota event is
/// KeyEvent::quota_exhausted" hold the SQL and the Rust together. The row lock taken by
/// `FOR UPDATE` orders servers taking leases of one key at once.
const TAKE_QUOTA: &str = "WITH cur AS ( \
       SELECT id, quota_uses, quota_refill_seconds, quota_remaining, \
         quota_period_start AS old_start, \
         CASE WHEN quota_period_start IS NULL THEN now() \
              WHEN quota_refill_seconds IS NULL THEN quota_period_start \
              ELSE quota_period_start + make_interval(secs => quota_refill_seconds \
                * floor(extract(epoch FROM now() - quota_period_start) \
                        / quota_refill_seconds)) END AS start \
       FROM tower_apikey_keys WHERE id = $1 AND quota_uses IS NOT NULL FOR UPDATE \
     ), fresh AS ( \
       SELECT id, start, quota_refill_seconds, \
         CASE WHEN old_start IS NOT NULL AND old_start <> start THEN quota_uses \
              ELSE coalesce(quota_remaining, quota_uses) END AS left_over \
       FROM cur \
     ), upd AS ( \
       UPDATE tower_apikey_keys AS k \
       SET quota_period_start = f.start, \
           quota_remaining = f.left_over - LEAST($2, f.left_over) \
       FROM fresh AS f WHERE k.id = f.id \
       RETURNING k.id, k.principal, k.name, k.expires_at, \
         LEAST($2, f.left_over) AS granted, k.quota_remaining AS remaining, \
         f.start AS period_start, \
         f.start + make_interval(secs => f.quota_refill_seconds) AS refills_at \
     ), exhausted AS ( \
       INSERT INTO tower_apikey_events (id, event) \
       SELECT e.id, json_strip_nulls(json_build_object('id', e.id, \
           'type', 'key.quota_exhausted', 'at', now(), 'key_id', u.id, \
           'principal', u.principal, 'name', u.name, \
           'expires_at', u.expires_at))::TEXT \
       FROM upd AS u, LATERAL (SELECT 'evt_quota_' || u.id || '_' \
           || floor(extract(epoch FROM u.period_start))::BIGINT AS id) AS e \
       WHERE u.remaining = 0 \
       ON CONFLICT (id) DO NOTHING \
     ) \
     SELECT granted, remaining, period_start, refills_at FROM upd";

/// Into the same period only, never above the quota.
const RETURN_QUOTA: &str = "UPDATE tower_apikey_keys \
     SET quota_remaining = LEAST(quota_uses, coalesce(quota_remaining, quota_uses) + $2) \
     WHERE id = $1 AND quota_uses IS NOT NULL AND quota_period_start = $3";

/// Rows are locked in id order (the caller sorts), so two servers' batches never deadlock.
const SHARE_RATE_USAGE: &str = "INSERT INTO tower_apikey_rate_usage AS u (id, admitted) \
     SELECT id, n FROM unnest($1::TEXT[], $2::BIGINT[]) AS t(id, n) ORDER BY id \
     ON CONFLICT (id) DO UPDATE SET admitted = u.admitted + excluded.admitted \
     RETURNING id, admitted";

impl UsageStore for PgKeyStore {
    async fn record_last_used(&self, used: Vec<(KeyId, Timestamp)>) -> Result<(), StoreError> {
        let (ids, times): (Vec<&str>, Vec<Timestamp>) =
            used.iter().map(|(id, at)| (id.as_str(), *at)).unzip();
        let client = self.client().await?;
        client
            .execute(RECORD_LAST_USED, &[&ids, &times])
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn take_quota(&self, id: &KeyId, want: u64) -> Result<QuotaGrant, StoreError> {
        let want = i64::try_from(want).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let row = client
            .query_opt(TAKE_QUOTA, &[&id.as_str(), &want])
            .await
            .map_err(unavailable)?;
        let Some(row) = row else {
            return Ok(QuotaGrant::NONE);
        };
        let count = |column: &str| u64::try_from(row.get::<_, i64>(column)).unwrap_or(0);
        Ok(QuotaGrant::new(
            count("granted"),
            count("remaining"),
            row.get("period_start"),
            row.get("refills_at"),
        ))
    }

    async fn return_quota(
        &self,
        id: &KeyId,
        uses: u64,
        period_start: Timestamp,
    ) -> Result<bool, StoreError> {
        let uses = i64::try_from(uses).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let n = client
            .execute(RETURN_QUOTA, &[&id.as_str(), &uses, &period_start])
            .await
            .map_err(unavailable)?;
        Ok(n > 0)
    }

    async fn share_rate_usage(
        &self,
        admitted: Vec<(KeyId, u64)>,
    ) -> Result<Vec<(KeyId, u64)>, StoreError> {
        if admitted.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, counts): (Vec<&str>, Vec<i64>) = admitted
            .iter()
            .map(|(id, n)| (id.as_str(), i64::try_from(*n).unwrap_or(i64::MAX)))
            .unzip();
        let client = self.client().await?;
        let rows = client
            .query(SHARE_RATE_USAGE, &[&ids, &counts])
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let id: &str = row.get(0);
                let total: i64 = row.get(1);
                let id = KeyId::new(id).map_err(|e| StoreError::InvalidRecord {
                    id: id.to_owned(),
                    source: e.into(),
                })?;
                Ok((id, u64::try_from(total).unwrap_or(0)))
            })
            .collect()
    }
}
