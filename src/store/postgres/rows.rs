//! Rows and records: the columns, a record as SQL parameters, and a row read back as a
//! record or an outbox entry.

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::unavailable;
use crate::events::{KeyEvent, OutboxEntry};
use crate::hash::{Pbkdf2Hash, Prf};
use crate::key::KeyId;
use crate::policy::{Period, Quota};
use crate::record::{KeyRecord, KeyStatus, Revocation, UnknownRevocationReason};
use crate::store::StoreError;

/// The columns of a key's row, in the order [`Params::row`] gives them: a macro, so the SQL
/// constants that read them are whole strings (`concat!`).
macro_rules! columns {
    () => {
        "id, principal, hash, prf, name, description, permissions, status, \
        expires_at, created_at, created_by, updated_at, updated_by, protected, last_used_at, \
        legacy, lookup_digest, rate_limit, quota_uses, quota_refill_seconds, quota_remaining, \
        quota_period_start, allowed_ips, revocation_reason, revocation_location, replaces"
    };
}
pub(super) use columns;

pub(super) const COLUMNS: &str = columns!();

/// Parameters per row in [`COLUMNS`] order.
const PER_ROW: usize = 26;

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
            quota_remaining: r
                .usage
                .quota_remaining
                .map(|n| n.min(i64::MAX as u64) as i64),
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
            &r.usage.last_used_at,
            &r.legacy,
            &r.lookup_digest,
            &self.rate_limit,
            &self.quota_uses,
            &self.quota_refill_seconds,
            &self.quota_remaining,
            &r.usage.quota_period_start,
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
    record.usage.last_used_at = row.get("last_used_at");
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
    record.usage.quota_remaining = row
        .get::<_, Option<i64>>("quota_remaining")
        .map(|n| n.max(0) as u64);
    record.usage.quota_period_start = row.get("quota_period_start");
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
