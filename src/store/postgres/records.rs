//! The records capability of [`PgKeyStore`]: reads from the keys table, writes in a
//! transaction that holds the write lock and logs the change (`PgKeyStore::commit`).

use std::sync::Weak;

use tokio_postgres::types::ToSql;

use super::outbox::push_events;
use super::rows::{
    columns, insert_in, insert_rows, record_of, records_of, update_in, ROWS_PER_INSERT,
};
use super::{begin, unavailable, PgKeyStore};
use crate::events::KeyEvent;
use crate::key::KeyId;
use crate::record::{KeyRecord, KeyStatus};
use crate::store::{ChangeListener, KeyQuery, KeyStore, StoreError};

const GET: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM tower_apikey_keys WHERE id = $1"
);

/// Every listing starts here; [`push_filter`] adds only the filters a query gives, so every
/// plan (a generic one too, as a pooler or a statement cache may use) can start at `after`
/// in the primary key: with `$3 IS NULL OR id > $3` a generic plan read the table from its
/// first row.
const QUERY: &str = concat!("SELECT ", columns!(), " FROM tower_apikey_keys WHERE TRUE");
const BY_PRINCIPAL: &str = " AND principal = $";
const BY_STATUS: &str = " AND status = $";
const AFTER: &str = " AND id > $";
/// `LIKE` on the expressions the trigram indexes hold (migration 4), with the search text's
/// wildcards escaped ([`like_pattern`]): at a million keys a search for a rare word reads
/// what matches (strpos read the whole table: 2.5 s, `benches/scale.rs`).
const SEARCH: &str = " AND (lower(id) LIKE $ OR lower(principal) LIKE $ \
     OR lower(coalesce(name, '')) LIKE $ OR lower(coalesce(description, '')) LIKE $)";
/// From the partial index on legacy records.
const LEGACY: &str = " AND legacy";
/// From the index on expiry.
const EXPIRING_BY: &str = " AND expires_at <= $ AND status <> 'revoked'";
const ORDER: &str = " ORDER BY id";
const LIMIT: &str = " LIMIT $";

/// The row stays locked until commit: no writer gets between the compare and the write.
const GET_FOR_UPDATE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM tower_apikey_keys WHERE id = $1 FOR UPDATE"
);
const DELETE: &str = concat!(
    "DELETE FROM tower_apikey_keys WHERE id = $1 RETURNING ",
    columns!()
);
const DELETE_RATE_USAGE: &str = "DELETE FROM tower_apikey_rate_usage WHERE id = $1";
const COUNT_LIVE: &str = "SELECT count(*) FROM tower_apikey_keys WHERE principal = $1 \
     AND status <> 'revoked' AND (expires_at IS NULL OR expires_at > now())";
const ANY_TAKEN: &str = "SELECT id FROM tower_apikey_keys WHERE id = ANY($1) LIMIT 1";

impl KeyStore for PgKeyStore {
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(GET, &[&id.as_str()])
            .await
            .map_err(unavailable)?;
        row.as_ref().map(record_of).transpose()
    }

    async fn query(&self, query: &KeyQuery) -> Result<Vec<KeyRecord>, StoreError> {
        let client = self.client().await?;
        let status = query.status.map(KeyStatus::as_str);
        let search = query.search.as_deref().map(like_pattern);
        let limit = query.limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let after = query.after.as_ref().map(KeyId::as_str);
        let mut sql = QUERY.to_owned();
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if let Some(principal) = &query.principal {
            push_filter(&mut sql, &mut params, BY_PRINCIPAL, principal);
        }
        if let Some(status) = &status {
            push_filter(&mut sql, &mut params, BY_STATUS, status);
        }
        if let Some(after) = &after {
            push_filter(&mut sql, &mut params, AFTER, after);
        }
        if let Some(search) = &search {
            push_filter(&mut sql, &mut params, SEARCH, search);
        }
        if query.legacy {
            sql.push_str(LEGACY);
        }
        if let Some(until) = &query.expiring_by {
            push_filter(&mut sql, &mut params, EXPIRING_BY, until);
        }
        sql.push_str(ORDER);
        if let Some(limit) = &limit {
            push_filter(&mut sql, &mut params, LIMIT, limit);
        }
        let rows = client.query(&sql, &params).await.map_err(unavailable)?;
        records_of(&rows)
    }

    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        if !insert_in(&tx, &record).await? {
            return Err(StoreError::AlreadyExists(record.id));
        }
        push_events(&tx, KeyEvent::for_change(None, Some(&record))).await?;
        self.commit(tx, vec![record.id]).await
    }

    async fn insert_limited(&self, record: KeyRecord, limit: usize) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        // The write lock makes count-then-insert one step for every writer.
        let tx = begin(&mut client).await?;
        let live: i64 = tx
            .query_one(COUNT_LIVE, &[&record.principal])
            .await
            .map_err(unavailable)?
            .get(0);
        if usize::try_from(live).unwrap_or(usize::MAX) >= limit {
            return Err(StoreError::LimitReached {
                principal: record.principal,
                limit,
            });
        }
        if !insert_in(&tx, &record).await? {
            return Err(StoreError::AlreadyExists(record.id));
        }
        push_events(&tx, KeyEvent::for_change(None, Some(&record))).await?;
        self.commit(tx, vec![record.id]).await
    }

    async fn insert_many(&self, records: Vec<KeyRecord>) -> Result<(), StoreError> {
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = records.iter().find(|r| !seen.insert(&r.id)) {
            return Err(StoreError::AlreadyExists(twice.id.clone()));
        }
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        if let Some(row) = tx
            .query_opt(ANY_TAKEN, &[&ids])
            .await
            .map_err(unavailable)?
        {
            let taken: String = row.get(0);
            let taken = KeyId::new(&taken).map_err(|e| StoreError::InvalidRecord {
                id: taken.clone(),
                source: e.into(),
            })?;
            return Err(StoreError::AlreadyExists(taken));
        }
        // Many rows per statement: an import of 100k records is a few hundred round trips.
        for chunk in records.chunks(ROWS_PER_INSERT) {
            insert_rows(&tx, chunk).await?;
        }
        let ids = records.into_iter().map(|r| r.id).collect();
        self.commit(tx, ids).await
    }

    async fn replace(&self, current: &KeyRecord, new: KeyRecord) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let row = tx
            .query_opt(GET_FOR_UPDATE, &[&current.id.as_str()])
            .await
            .map_err(unavailable)?;
        let Some(stored) = row.as_ref().map(record_of).transpose()? else {
            return Err(StoreError::NotFound(current.id.clone()));
        };
        if stored.differs_beyond_usage(current) {
            return Err(StoreError::Conflict(current.id.clone()));
        }
        let new = new.keeping_usage(&stored, current);
        update_in(&tx, &new).await?;
        push_events(&tx, KeyEvent::for_change(Some(&stored), Some(&new))).await?;
        self.commit(tx, vec![new.id]).await
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let row = tx
            .query_opt(DELETE, &[&id.as_str()])
            .await
            .map_err(unavailable)?;
        let Some(row) = row else {
            return Ok(false);
        };
        push_events(&tx, KeyEvent::for_change(Some(&record_of(&row)?), None)).await?;
        tx.execute(DELETE_RATE_USAGE, &[&id.as_str()])
            .await
            .map_err(unavailable)?;
        self.commit(tx, vec![id.clone()]).await?;
        Ok(true)
    }

    fn subscribe(&self, listener: Weak<dyn ChangeListener>) {
        self.inner.feed.subscribe(listener);
    }
}

/// Appends `clause` to `sql`, each `$` in it numbered as `param`'s place in `params`.
/// `%text%` for `LIKE`, lower-cased, its `\\`, `%` and `_` escaped: the text matches as
/// itself, anywhere.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn push_filter<'a>(
    sql: &mut String,
    params: &mut Vec<&'a (dyn ToSql + Sync)>,
    clause: &str,
    param: &'a (dyn ToSql + Sync),
) {
    params.push(param);
    sql.push_str(&clause.replace('$', &format!("${}", params.len())));
}
