//! The usage capability of [`PgKeyStore`]: one statement per call, no change logged (usage
//! changes no key's validity); requests per key in `tower_apikey_usage_hourly` and `_daily`.

use jiff::Timestamp;
use tokio_postgres::types::ToSql;

use super::{unavailable, PgKeyStore};
use crate::key::KeyId;
use crate::policy::{FleetRates, KeyFleetRate, QuotaGrant, RateShare};
use crate::store::{StoreError, UsageStore};
use crate::usage::{Bucket, Counts, Granularity, KeyTotal, Outcome, UsageBatch, UsageRange};

/// A later time replaces an earlier one, never the reverse.
const RECORD_LAST_USED: &str = "UPDATE tower_apikey_keys AS k \
     SET last_used_at = GREATEST(coalesce(k.last_used_at, u.at), u.at) \
     FROM unnest($1::TEXT[], $2::TIMESTAMPTZ[]) AS u(id, at) WHERE k.id = u.id";

/// [`KeyRecord::take_quota`](crate::KeyRecord::take_quota)'s rule in SQL (the refill, the
/// grant), and [`KeyEvent::quota_exhausted`](crate::events::KeyEvent::quota_exhausted) built
/// in the same statement when nothing is left: one statement a lease. The conformance rules
/// "take_quota refills as KeyRecord::take_quota does" and "the quota event is
/// KeyEvent::quota_exhausted" hold the SQL and the Rust together. The row lock taken by
/// `FOR UPDATE` orders servers taking leases of one key at once. A period that starts after
/// `now()` (the statement's start: a statement that waited for the lock while another began
/// the first period) is the current one, as in the Rust rule: without `greatest(0, …)` it
/// counted as a period ended, refilled the quota, and oversold it (109 of 100 to 16 racers, seen
/// in CI under load).
const TAKE_QUOTA: &str = "WITH cur AS ( \
       SELECT id, quota_uses, quota_refill_seconds, quota_remaining, \
         quota_period_start AS old_start, \
         CASE WHEN quota_period_start IS NULL THEN now() \
              WHEN quota_refill_seconds IS NULL THEN quota_period_start \
              ELSE quota_period_start + make_interval(secs => quota_refill_seconds \
                * greatest(0, floor(extract(epoch FROM now() - quota_period_start) \
                        / quota_refill_seconds))) END AS start \
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
       ON CONFLICT (id) DO NOTHING RETURNING id, event \
     ), audited AS ( \
       INSERT INTO tower_apikey_audit (id, at, type, key_id, principal, actor, event) \
       SELECT id, now(), 'key.quota_exhausted', event::json->>'key_id', \
         event::json->>'principal', NULL, event FROM exhausted \
       ON CONFLICT (id) DO NOTHING \
     ) \
     SELECT granted, remaining, period_start, refills_at FROM upd";

/// Into the same period only, never above the quota.
const RETURN_QUOTA: &str = "UPDATE tower_apikey_keys \
     SET quota_remaining = LEAST(quota_uses, coalesce(quota_remaining, quota_uses) + $2) \
     WHERE id = $1 AND quota_uses IS NOT NULL AND quota_period_start = $3";

/// One share: the server noted as there, each key it admitted as admitted by it, the counts
/// added;
/// then the servers there within `$5` seconds, and per key its total and the servers that
/// admitted it within `$4` seconds (the caller counted as one: a statement does not see its own
/// writes). Rows are locked in id order (the caller sorts), so two servers' batches never
/// deadlock. An empty share answers one row with no key.
const SHARE_RATE_USAGE: &str = "WITH server AS ( \
       INSERT INTO tower_apikey_rate_servers (server, seen_at) VALUES ($3, now()) \
       ON CONFLICT (server) DO UPDATE SET seen_at = excluded.seen_at \
     ), listed AS ( \
       INSERT INTO tower_apikey_rate_listed (id, server, seen_at) \
       SELECT id, $3, now() FROM unnest($1::TEXT[], $2::BIGINT[]) AS t(id, n) WHERE n > 0 \
       ORDER BY id \
       ON CONFLICT (id, server) DO UPDATE SET seen_at = excluded.seen_at \
     ), totals AS ( \
       INSERT INTO tower_apikey_rate_usage AS u (id, admitted) \
       SELECT id, n FROM unnest($1::TEXT[], $2::BIGINT[]) AS t(id, n) ORDER BY id \
       ON CONFLICT (id) DO UPDATE SET admitted = u.admitted + excluded.admitted \
       RETURNING id, admitted \
     ) \
     SELECT 1 + (SELECT count(*) FROM tower_apikey_rate_servers \
         WHERE server <> $3 AND seen_at > now() - make_interval(secs => $5))::BIGINT, \
       t.id, t.admitted, \
       1 + (SELECT count(*) FROM tower_apikey_rate_listed AS l WHERE l.id = t.id \
         AND l.server <> $3 AND l.seen_at > now() - make_interval(secs => $4))::BIGINT \
     FROM (SELECT) AS one LEFT JOIN totals AS t ON true ORDER BY t.id";

/// A validator leaves: its rows go. Once per server's life, so `listed` is scanned rather
/// than indexed by server (it holds a row per key and server of the last hour).
const LEAVE_RATE_SHARE: &str = "WITH listed AS ( \
       DELETE FROM tower_apikey_rate_listed WHERE server = $1 \
     ) \
     DELETE FROM tower_apikey_rate_servers WHERE server = $1";

/// The outcome columns, in [`Outcome::ALL`](crate::usage::Outcome::ALL)'s order.
macro_rules! outcomes {
    () => {
        "valid, wrong_secret, expired, inactive, revoked, rate_limited, usage_exceeded, ip_not_allowed, permission_denied"
    };
}

/// A batch, once: its id is recorded in the same statement, and a batch already recorded adds
/// nothing. Each line adds to its hour and to its UTC day; rows are written in key order, so
/// two servers' batches never deadlock.
const ADD_USAGE: &str = concat!(
    "WITH batch AS (INSERT INTO tower_apikey_usage_batches (id) VALUES ($1) \
       ON CONFLICT (id) DO NOTHING RETURNING id), \
     line AS (SELECT * FROM unnest($2::TEXT[], $3::TIMESTAMPTZ[], $4::BIGINT[], $5::BIGINT[], \
       $6::BIGINT[], $7::BIGINT[], $8::BIGINT[], $9::BIGINT[], $10::BIGINT[], $11::BIGINT[], \
       $12::BIGINT[]) AS l(key_id, hour, ",
    outcomes!(),
    ") WHERE EXISTS (SELECT 1 FROM batch)), \
     hourly AS (INSERT INTO tower_apikey_usage_hourly AS u (key_id, bucket, ",
    outcomes!(),
    ") SELECT key_id, date_trunc('hour', hour), ",
    outcomes!(),
    " FROM line ORDER BY key_id, hour \
       ON CONFLICT (key_id, bucket) DO UPDATE SET valid = u.valid + excluded.valid, wrong_secret = u.wrong_secret + excluded.wrong_secret, expired = u.expired + excluded.expired, inactive = u.inactive + excluded.inactive, revoked = u.revoked + excluded.revoked, rate_limited = u.rate_limited + excluded.rate_limited, usage_exceeded = u.usage_exceeded + excluded.usage_exceeded, ip_not_allowed = u.ip_not_allowed + excluded.ip_not_allowed, permission_denied = u.permission_denied + excluded.permission_denied) \
     INSERT INTO tower_apikey_usage_daily AS u (key_id, bucket, ",
    outcomes!(),
    ") SELECT key_id, date_trunc('day', hour, 'UTC'), sum(valid)::BIGINT, sum(wrong_secret)::BIGINT, sum(expired)::BIGINT, sum(inactive)::BIGINT, sum(revoked)::BIGINT, sum(rate_limited)::BIGINT, sum(usage_exceeded)::BIGINT, sum(ip_not_allowed)::BIGINT, sum(permission_denied)::BIGINT \
       FROM line GROUP BY 1, 2 ORDER BY 1, 2 \
       ON CONFLICT (key_id, bucket) DO UPDATE SET valid = u.valid + excluded.valid, wrong_secret = u.wrong_secret + excluded.wrong_secret, expired = u.expired + excluded.expired, inactive = u.inactive + excluded.inactive, revoked = u.revoked + excluded.revoked, rate_limited = u.rate_limited + excluded.rate_limited, usage_exceeded = u.usage_exceeded + excluded.usage_exceeded, ip_not_allowed = u.ip_not_allowed + excluded.ip_not_allowed, permission_denied = u.permission_denied + excluded.permission_denied"
);

const READ_HOURLY: &str = concat!(
    "SELECT bucket, ",
    outcomes!(),
    " FROM tower_apikey_usage_hourly WHERE key_id = $1 AND bucket >= $2 AND bucket < $3 \
     ORDER BY bucket"
);
const READ_DAILY: &str = concat!(
    "SELECT bucket, ",
    outcomes!(),
    " FROM tower_apikey_usage_daily WHERE key_id = $1 AND bucket >= $2 AND bucket < $3 \
     ORDER BY bucket"
);

/// The busiest keys of a range: `{table}` and `{principal}` are filled in (the principal
/// filter only when given, so a generic plan never reads every principal's rows).
const TOP_USAGE: &str = "SELECT u.key_id, sum(valid)::BIGINT, sum(wrong_secret)::BIGINT, sum(expired)::BIGINT, sum(inactive)::BIGINT, sum(revoked)::BIGINT, sum(rate_limited)::BIGINT, sum(usage_exceeded)::BIGINT, sum(ip_not_allowed)::BIGINT, sum(permission_denied)::BIGINT \
     FROM {table} AS u JOIN tower_apikey_keys AS k ON k.id = u.key_id \
     WHERE u.bucket >= $1 AND u.bucket < $2{principal} \
     GROUP BY u.key_id ORDER BY sum(valid + wrong_secret + expired + inactive + revoked + rate_limited + usage_exceeded + ip_not_allowed + permission_denied) DESC, u.key_id LIMIT $3";
const BY_PRINCIPAL: &str = " AND k.principal = $4";

/// At most `$3` buckets of each granularity, batch ids past their day, and who shared rate
/// limits more than an hour ago ([`RateShare::SERVER_MEMORY`]), a call.
const PRUNE_USAGE: &str =
    "WITH h AS (DELETE FROM tower_apikey_usage_hourly WHERE ctid = ANY(ARRAY( \
       SELECT ctid FROM tower_apikey_usage_hourly WHERE bucket < $1 LIMIT $3)) RETURNING 1), \
     d AS (DELETE FROM tower_apikey_usage_daily WHERE ctid = ANY(ARRAY( \
       SELECT ctid FROM tower_apikey_usage_daily WHERE bucket < $2 LIMIT $3)) RETURNING 1), \
     b AS (DELETE FROM tower_apikey_usage_batches WHERE added_at < now() - interval '1 day'), \
     l AS (DELETE FROM tower_apikey_rate_listed WHERE ctid = ANY(ARRAY( \
       SELECT ctid FROM tower_apikey_rate_listed WHERE seen_at < now() - interval '1 hour' \
       LIMIT $3))), \
     s AS (DELETE FROM tower_apikey_rate_servers WHERE seen_at < now() - interval '1 hour') \
     SELECT (SELECT count(*) FROM h) + (SELECT count(*) FROM d)";

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

    async fn share_rate_usage(&self, share: RateShare) -> Result<FleetRates, StoreError> {
        let (ids, counts): (Vec<&str>, Vec<i64>) = share
            .admitted
            .iter()
            .map(|(id, n)| (id.as_str(), i64::try_from(*n).unwrap_or(i64::MAX)))
            .unzip();
        // The id's bits as a BIGINT.
        let server = i64::from_ne_bytes(share.server.to_ne_bytes());
        let active = share.active_within.as_secs_f64();
        let memory = RateShare::SERVER_MEMORY.as_secs_f64();
        let client = self.client().await?;
        let rows = client
            .query(
                SHARE_RATE_USAGE,
                &[&ids, &counts, &server, &active, &memory],
            )
            .await
            .map_err(unavailable)?;
        let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
        let servers = rows.first().map_or(1, |row| count(row.get(0)));
        let keys = rows
            .iter()
            .filter_map(|row| {
                let id: Option<&str> = row.get(1);
                id.map(|id| (id, row))
            })
            .map(|(id, row)| {
                let id = KeyId::new(id).map_err(|e| StoreError::InvalidRecord {
                    id: id.to_owned(),
                    source: e.into(),
                })?;
                let total = u64::try_from(row.get::<_, i64>(2)).unwrap_or(0);
                Ok(KeyFleetRate::new(id, total, count(row.get(3))))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(FleetRates::new(servers, keys))
    }

    async fn leave_rate_share(&self, server: u64) -> Result<(), StoreError> {
        let server = i64::from_ne_bytes(server.to_ne_bytes());
        let client = self.client().await?;
        client
            .execute(LEAVE_RATE_SHARE, &[&server])
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn add_usage(&self, batch: UsageBatch) -> Result<(), StoreError> {
        if batch.lines.is_empty() {
            return Ok(());
        }
        let keys: Vec<&str> = batch.lines.iter().map(|l| l.key.as_str()).collect();
        let hours: Vec<Timestamp> = batch.lines.iter().map(|l| l.hour).collect();
        let columns: Vec<Vec<i64>> = Outcome::ALL
            .iter()
            .map(|o| {
                batch
                    .lines
                    .iter()
                    .map(|l| clamp(l.counts.get(*o)))
                    .collect()
            })
            .collect();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&batch.id, &keys, &hours];
        params.extend(columns.iter().map(|c| c as &(dyn ToSql + Sync)));
        let client = self.client().await?;
        client
            .execute(ADD_USAGE, &params)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn read_usage(&self, id: &KeyId, range: UsageRange) -> Result<Vec<Bucket>, StoreError> {
        let sql = match range.granularity() {
            Granularity::Hour => READ_HOURLY,
            Granularity::Day => READ_DAILY,
        };
        let client = self.client().await?;
        let rows = client
            .query(sql, &[&id.as_str(), &range.from(), &range.to()])
            .await
            .map_err(unavailable)?;
        let stored = rows
            .iter()
            .map(|row| Bucket::new(row.get(0), counts_of(row, 1)));
        Ok(range.zero_filled(stored))
    }

    async fn top_usage(
        &self,
        principal: Option<&str>,
        range: UsageRange,
        limit: usize,
    ) -> Result<Vec<KeyTotal>, StoreError> {
        let table = match range.granularity() {
            Granularity::Hour => "tower_apikey_usage_hourly",
            Granularity::Day => "tower_apikey_usage_daily",
        };
        let sql = TOP_USAGE.replace("{table}", table).replace(
            "{principal}",
            if principal.is_some() {
                BY_PRINCIPAL
            } else {
                ""
            },
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (from, to) = (range.from(), range.to());
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&from, &to, &limit];
        if let Some(principal) = &principal {
            params.push(principal);
        }
        let client = self.client().await?;
        let rows = client.query(&sql, &params).await.map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let id: &str = row.get(0);
                let id = KeyId::new(id).map_err(|e| StoreError::InvalidRecord {
                    id: id.to_owned(),
                    source: e.into(),
                })?;
                Ok(KeyTotal::new(id, counts_of(row, 1)))
            })
            .collect()
    }

    async fn prune_usage(
        &self,
        hourly_before: Timestamp,
        daily_before: Timestamp,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let pruned: i64 = client
            .query_one(PRUNE_USAGE, &[&hourly_before, &daily_before, &limit])
            .await
            .map_err(unavailable)?
            .get(0);
        self.prune_events(&client).await?;
        Ok(usize::try_from(pruned).unwrap_or(0))
    }
}

/// The outcome columns of `row`, from column `first` on.
fn counts_of(row: &tokio_postgres::Row, first: usize) -> Counts {
    let mut counts = [0u64; 9];
    for (i, slot) in counts.iter_mut().enumerate() {
        *slot = u64::try_from(row.get::<_, i64>(first + i)).unwrap_or(0);
    }
    Counts::from_array(counts)
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
