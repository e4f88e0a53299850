//! The schema (migrations, columns, locks) and the mapping between rows and records.

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use crate::events::{KeyEvent, OutboxEntry};
use crate::hash::{Pbkdf2Hash, Prf};
use crate::key::KeyId;
use crate::policy::{Period, Quota};
use crate::record::{KeyRecord, KeyStatus, Revocation, UnknownRevocationReason};
use crate::store::StoreError;

/// The schema, one migration per entry, applied in order by [`PgKeyStore::migrate`].
pub(super) const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE tower_apikey_keys (
    id            TEXT PRIMARY KEY,
    principal     TEXT NOT NULL,
    hash          TEXT NOT NULL,
    prf           TEXT NOT NULL,
    name          TEXT,
    description   TEXT,
    permissions   TEXT[] NOT NULL DEFAULT '{}',
    status        TEXT NOT NULL,
    expires_at    TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL,
    created_by    TEXT,
    updated_at    TIMESTAMPTZ,
    updated_by    TEXT,
    protected     BOOLEAN NOT NULL DEFAULT FALSE,
    last_used_at  TIMESTAMPTZ,
    legacy        BOOLEAN NOT NULL DEFAULT FALSE,
    lookup_digest TEXT,
    version       BIGINT NOT NULL
);
CREATE INDEX tower_apikey_keys_principal ON tower_apikey_keys (principal);
CREATE INDEX tower_apikey_keys_legacy ON tower_apikey_keys (id) WHERE legacy;
-- One row per committed change, in commit order (writers serialise on an advisory lock):
-- what a server that missed notifications reads to catch up.
CREATE TABLE tower_apikey_changes (
    version    BIGSERIAL PRIMARY KEY,
    id         TEXT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tower_apikey_changes_at ON tower_apikey_changes (changed_at);
",
    r"
-- Per-key policies (issue 15). The quota is kept as numbers, so a lease is one statement.
ALTER TABLE tower_apikey_keys
    ADD COLUMN rate_limit           TEXT,
    ADD COLUMN quota_uses           BIGINT,
    ADD COLUMN quota_refill_seconds BIGINT,
    ADD COLUMN quota_remaining      BIGINT,
    ADD COLUMN quota_period_start   TIMESTAMPTZ,
    ADD COLUMN allowed_ips          TEXT[] NOT NULL DEFAULT '{}';
-- Requests each rate-limited key was admitted, fleet-wide: validators add theirs in batches.
CREATE TABLE tower_apikey_rate_usage (
    id       TEXT PRIMARY KEY,
    admitted BIGINT NOT NULL
);
",
    r"
-- Why and where a key was revoked, and the key a rotation replaced (issue 16).
ALTER TABLE tower_apikey_keys
    ADD COLUMN revocation_reason   TEXT,
    ADD COLUMN revocation_location TEXT,
    ADD COLUMN replaces            TEXT;
-- The outbox: each change's events, written in the change's own transaction, until a
-- sender has delivered them (and a week after).
CREATE TABLE tower_apikey_events (
    seq           BIGSERIAL PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    event         TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    not_before    TIMESTAMPTZ,
    claimed_until TIMESTAMPTZ,
    delivered_at  TIMESTAMPTZ
);
CREATE INDEX tower_apikey_events_pending ON tower_apikey_events (seq) WHERE delivered_at IS NULL;
-- What the expiry sweeper reads.
CREATE INDEX tower_apikey_keys_expires ON tower_apikey_keys (expires_at) WHERE expires_at IS NOT NULL;
",
];

/// The NOTIFY channel; the payload is the change's version.
pub(super) const CHANNEL: &str = "tower_apikey_changes";
/// Serialises writers, so change versions commit in order.
pub(super) const WRITE_LOCK: i64 = 0x7461_6b5f_7772_6974;
/// Serialises migrations.
pub(super) const MIGRATE_LOCK: i64 = 0x7461_6b5f_6d69_6772;
/// How long changes are kept for servers catching up; one offline longer forgets its cache.
pub(super) const CHANGES_KEPT: &str = "1 day";

pub(super) const COLUMNS: &str =
    "id, principal, hash, prf, name, description, permissions, status, \
    expires_at, created_at, created_by, updated_at, updated_by, protected, last_used_at, \
    legacy, lookup_digest, rate_limit, quota_uses, quota_refill_seconds, quota_remaining, \
    quota_period_start, allowed_ips, revocation_reason, revocation_location, replaces";

/// Parameters per row in [`COLUMNS`] order.
const PER_ROW: usize = 26;

/// Starts a write: a transaction holding the write lock, so changes commit in version order.
/// Dropped without [`PgKeyStore::commit`], it rolls back.
pub(super) async fn begin(
    client: &mut deadpool_postgres::Object,
) -> Result<Transaction<'_>, StoreError> {
    let tx = client.transaction().await.map_err(unavailable)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .await
        .map_err(unavailable)?;
    Ok(tx)
}

pub(super) fn unavailable(error: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(Box::new(super::PgError::from(error)))
}

/// Rows per multi-row INSERT: 26 parameters each, well under PostgreSQL's 65,535.
pub(super) const ROWS_PER_INSERT: usize = 1_000;

/// The columns of [`COLUMNS`] for one record, as SQL parameters.
struct Params {
    id: String,
    hash: String,
    prf: String,
    status: &'static str,
    rate_limit: Option<String>,
    quota_uses: Option<i64>,
    quota_refill_seconds: Option<i64>,
    quota_remaining: Option<i64>,
    allowed_ips: Vec<String>,
    revocation_reason: Option<&'static str>,
    revocation_location: Option<String>,
    replaces: Option<String>,
}

impl Params {
    fn of(r: &KeyRecord) -> Self {
        Self {
            id: r.id.as_str().to_owned(),
            hash: r.hash.to_string(),
            prf: r.prf.to_string(),
            status: r.status.as_str(),
            rate_limit: r.rate_limit.map(|l| l.to_string()),
            // Quotas are at most 10^15 uses, refills at most 366 days: both fit.
            quota_uses: r.quota.map(|q| q.uses() as i64),
            quota_refill_seconds: r.quota.and_then(|q| q.refill()).map(|p| p.as_secs() as i64),
            quota_remaining: r.quota_remaining.map(|n| n.min(i64::MAX as u64) as i64),
            allowed_ips: r.allowed_ips.iter().map(ToString::to_string).collect(),
            revocation_reason: r.revocation.as_ref().map(|v| v.reason.as_str()),
            revocation_location: r.revocation.as_ref().and_then(|v| v.location.clone()),
            replaces: r.replaces.as_ref().map(|id| id.as_str().to_owned()),
        }
    }

    /// Every column of [`COLUMNS`], in order.
    fn row<'a>(
        &'a self,
        r: &'a KeyRecord,
    ) -> [&'a (dyn tokio_postgres::types::ToSql + Sync); PER_ROW] {
        [
            &self.id,
            &r.principal,
            &self.hash,
            &self.prf,
            &r.name,
            &r.description,
            &r.permissions,
            &self.status,
            &r.expires_at,
            &r.created_at,
            &r.created_by,
            &r.updated_at,
            &r.updated_by,
            &r.protected,
            &r.last_used_at,
            &r.legacy,
            &r.lookup_digest,
            &self.rate_limit,
            &self.quota_uses,
            &self.quota_refill_seconds,
            &self.quota_remaining,
            &r.quota_period_start,
            &self.allowed_ips,
            &self.revocation_reason,
            &self.revocation_location,
            &self.replaces,
        ]
    }
}

/// Inserts `records` (ids known to be free) in one statement.
pub(super) async fn insert_rows(
    tx: &Transaction<'_>,
    records: &[KeyRecord],
) -> Result<u64, StoreError> {
    let owned: Vec<Params> = records.iter().map(Params::of).collect();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        Vec::with_capacity(records.len() * PER_ROW);
    let mut values = String::new();
    for (i, (r, p)) in records.iter().zip(&owned).enumerate() {
        let base = i * PER_ROW;
        values += if i == 0 { "(" } else { ", (" };
        values += &(1..=PER_ROW)
            .map(|n| format!("${}", base + n))
            .collect::<Vec<_>>()
            .join(", ");
        values += ", 0)";
        params.extend_from_slice(&p.row(r));
    }
    tx.execute(
        &format!(
            "INSERT INTO tower_apikey_keys ({COLUMNS}, version) VALUES {values} \
             ON CONFLICT (id) DO NOTHING"
        ),
        &params,
    )
    .await
    .map_err(unavailable)
}

/// Writes every column of `record` over its row; `false` if there is no such row.
pub(super) async fn update_in(
    tx: &Transaction<'_>,
    record: &KeyRecord,
) -> Result<bool, StoreError> {
    let params = Params::of(record);
    let sets = COLUMNS
        .split(", ")
        .enumerate()
        .skip(1)
        .map(|(i, column)| format!("{} = ${}", column.trim(), i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let n = tx
        .execute(
            &format!("UPDATE tower_apikey_keys SET {sets} WHERE id = $1"),
            &params.row(record),
        )
        .await
        .map_err(unavailable)?;
    Ok(n > 0)
}

/// Inserts `record` in `tx`; `false` if its id is taken.
pub(super) async fn insert_in(
    tx: &Transaction<'_>,
    record: &KeyRecord,
) -> Result<bool, StoreError> {
    Ok(insert_rows(tx, std::slice::from_ref(record)).await? == 1)
}

/// The record a row holds; a row that does not make one is reported, not skipped.
pub(super) fn record_of(row: &Row) -> Result<KeyRecord, StoreError> {
    let id: String = row.get("id");
    let invalid = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::InvalidRecord {
        id: id.clone(),
        source,
    };
    let key_id = KeyId::new(&id).map_err(|e| invalid(e.into()))?;
    let hash: Pbkdf2Hash = row
        .get::<_, String>("hash")
        .parse()
        .map_err(|e: crate::hash::HashError| invalid(e.into()))?;
    let prf: Prf = row
        .get::<_, String>("prf")
        .parse()
        .map_err(|e: crate::hash::HashError| invalid(e.into()))?;
    let status: KeyStatus = row
        .get::<_, String>("status")
        .parse()
        .map_err(|e: crate::record::UnknownStatus| invalid(e.into()))?;
    let mut record = KeyRecord::new(key_id, row.get::<_, String>("principal"), hash, prf);
    record.name = row.get("name");
    record.description = row.get("description");
    record.permissions = row.get("permissions");
    record.status = status;
    record.expires_at = row.get("expires_at");
    record.created_at = row.get("created_at");
    record.created_by = row.get("created_by");
    record.updated_at = row.get("updated_at");
    record.updated_by = row.get("updated_by");
    record.protected = row.get("protected");
    record.last_used_at = row.get("last_used_at");
    record.legacy = row.get("legacy");
    record.lookup_digest = row.get("lookup_digest");
    record.rate_limit = row
        .get::<_, Option<String>>("rate_limit")
        .map(|text| text.parse())
        .transpose()
        .map_err(|e: crate::policy::RateLimitError| invalid(e.into()))?;
    let uses: Option<i64> = row.get("quota_uses");
    let refill: Option<i64> = row.get("quota_refill_seconds");
    record.quota = uses
        .map(|uses| quota_of(uses, refill))
        .transpose()
        .map_err(invalid)?;
    record.quota_remaining = row
        .get::<_, Option<i64>>("quota_remaining")
        .map(|n| n.max(0) as u64);
    record.quota_period_start = row.get("quota_period_start");
    record.allowed_ips = row
        .get::<_, Vec<String>>("allowed_ips")
        .iter()
        .map(|net| net.parse())
        .collect::<Result<_, _>>()
        .map_err(|e: ipnet::AddrParseError| invalid(e.into()))?;
    record.revocation = row
        .get::<_, Option<String>>("revocation_reason")
        .map(|reason| -> Result<Revocation, UnknownRevocationReason> {
            Ok(Revocation {
                reason: reason.parse()?,
                location: row.get("revocation_location"),
            })
        })
        .transpose()
        .map_err(|e| invalid(e.into()))?;
    record.replaces = row
        .get::<_, Option<String>>("replaces")
        .map(|id| KeyId::new(&id))
        .transpose()
        .map_err(|e| invalid(e.into()))?;
    Ok(record)
}

fn quota_of(
    uses: i64,
    refill: Option<i64>,
) -> Result<Quota, Box<dyn std::error::Error + Send + Sync>> {
    let refill = refill
        .map(|secs| Period::from_secs(u64::try_from(secs).unwrap_or(0)))
        .transpose()?;
    Ok(Quota::new(u64::try_from(uses)?, refill)?)
}

pub(super) fn records_of(rows: &[Row]) -> Result<Vec<KeyRecord>, StoreError> {
    rows.iter().map(record_of).collect()
}

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
        .execute(
            "INSERT INTO tower_apikey_events (id, event) \
             SELECT * FROM unnest($1::TEXT[], $2::TEXT[]) ON CONFLICT (id) DO NOTHING",
            &[&ids, &bodies],
        )
        .await
        .map_err(unavailable)?;
    Ok(usize::try_from(added).unwrap_or(usize::MAX))
}

/// The outbox entry a row of `tower_apikey_events` holds.
pub(super) fn outbox_entry_of(row: &Row) -> Result<OutboxEntry, StoreError> {
    let id: String = row.get("id");
    let event: KeyEvent =
        serde_json::from_str(row.get("event")).map_err(|e| StoreError::InvalidRecord {
            id: id.clone(),
            source: e.into(),
        })?;
    let mut entry = OutboxEntry::new(event);
    entry.attempts = u32::try_from(row.get::<_, i32>("attempts")).unwrap_or(0);
    entry.not_before = row.get("not_before");
    entry.claimed_until = row.get("claimed_until");
    entry.delivered_at = row.get("delivered_at");
    Ok(entry)
}
