//! The PostgreSQL key store, shared by a fleet of servers (feature `postgres`): the store
//! and its options here, the schema and row mapping in `schema`, the change follower in
//! `follow`.

mod error;
mod follow;
mod schema;
mod tls;

pub use self::error::PgError;
pub use self::tls::ConnectionStringError;

use std::num::NonZeroUsize;
use std::sync::{Arc, Weak};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Transaction};
use jiff::Timestamp;
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

use self::follow::follow;
use self::schema::{
    begin, insert_in, insert_rows, outbox_entry_of, push_events, record_of, records_of,
    unavailable, update_in, CHANGES_KEPT, CHANNEL, COLUMNS, MIGRATE_LOCK, MIGRATIONS,
    ROWS_PER_INSERT,
};
use self::tls::Connection;
use super::{
    ChangeFeed, ChangeListener, KeyQuery, KeyStore, SettingTooSmall, StoreChange, StoreError,
};
use crate::events::{Delivery, KeyEvent, OutboxEntry};
use crate::key::KeyId;
use crate::policy::QuotaGrant;
use crate::record::{KeyRecord, KeyStatus};

/// A [`KeyStore`] in PostgreSQL, shared by every server pointed at the same database.
///
/// - Every insert, update and delete commits a row in a change log and sends `NOTIFY` in the
///   same transaction. Each store LISTENs on a connection of its own and, on a notification,
///   on a timer ([`poll_interval`](PgKeyStoreBuilder::poll_interval), 1 s by default), and
///   after reconnecting, reads the log from the last change it saw and tells its subscribers:
///   a revocation reaches every server within a second, and within the poll interval even
///   if notifications are lost.
/// - Reads and writes go through a connection pool that reconnects by itself; while the
///   database is down they fail with [`StoreError::Unavailable`] (a validator answers 503
///   for cold keys and keeps serving cached ones until their TTL).
/// - The schema ships in the crate: [`migrate`](Self::migrate) applies it (the CLI's
///   `tower-apikey migrate --database-url URL` calls it).
///
/// TLS is read from the connection string as libpq reads it (rustls; no system OpenSSL):
/// `sslmode=disable|prefer|require|verify-ca|verify-full` (default `prefer`: TLS when the
/// server offers it, unverified) and `sslrootcert=PATH` (a PEM bundle) or `sslrootcert=system`
/// (the operating system's roots, which implies `verify-full`). Use `verify-full` with a
/// managed database: `require` encrypts but, as in libpq, trusts any certificate. Over a Unix
/// socket TLS does not apply. Environment variables (`PGSSLMODE`, …) are not read.
///
/// # Example
/// ```no_run
/// use tower_apikey::store::PgKeyStore;
/// use tower_apikey::Validator;
///
/// # async fn run() -> Result<(), tower_apikey::StoreError> {
/// let store = PgKeyStore::connect(
///     "postgresql://apikeys@db.internal/apikeys?sslmode=verify-full&sslrootcert=system",
/// )
/// .await?;
/// store.migrate().await?;
/// let validator = Validator::builder(store).build();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgKeyStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    feed: ChangeFeed,
    /// When delivered events were last pruned (Unix seconds): at most once a minute, not
    /// on every idle claim.
    pruned_at: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config may hold a password: show where, not how.
        f.debug_struct("PgKeyStore")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

/// Options for [`PgKeyStore`].
#[derive(Clone)]
pub struct PgKeyStoreBuilder {
    url: String,
    pool_size: NonZeroUsize,
    poll_interval: Duration,
    listen: bool,
    follow: bool,
    connect_timeout: Duration,
}

impl std::fmt::Debug for PgKeyStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: not shown.
        f.debug_struct("PgKeyStoreBuilder")
            .field("pool_size", &self.pool_size)
            .field("poll_interval", &self.poll_interval)
            .field("listen", &self.listen)
            .field("follow", &self.follow)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl PgKeyStoreBuilder {
    /// The most connections in the pool (default 8).
    pub fn pool_size(mut self, size: NonZeroUsize) -> Self {
        self.pool_size = size;
        self
    }

    /// How often the change log is read when no notification came (default 1 s; at least
    /// 10 ms, or [`connect`](Self::connect) refuses it): the bound on how stale a cache can be
    /// if notifications are lost.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Whether to LISTEN for notifications (default true). Off, changes are seen by polling
    /// alone, within the poll interval.
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// Whether to follow changes at all (default true). Off, subscribers hear only of this
    /// handle's own writes: for short-lived tools such as the CLI.
    pub fn follow_changes(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }

    /// How long to wait for a connection before a call fails as unavailable (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects (lazily: the database may be down now) and starts following changes.
    ///
    /// Must be called within a Tokio runtime.
    ///
    /// # Errors
    /// [`StoreError::Config`] for a URL that does not parse (holding a
    /// [`ConnectionStringError`]: an unknown `sslmode`, an unreadable `sslrootcert`, …), or a
    /// poll interval under 10 ms.
    pub async fn connect(self) -> Result<PgKeyStore, StoreError> {
        SettingTooSmall::check(
            "poll interval",
            SettingTooSmall::MIN_POLL,
            self.poll_interval,
        )?;
        let Connection { mut config, tls } =
            Connection::parse(&self.url).map_err(|e| StoreError::Config(Box::new(e)))?;
        config.connect_timeout(self.connect_timeout);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.pool_size.get())
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.connect_timeout))
            .create_timeout(Some(self.connect_timeout))
            .recycle_timeout(Some(self.connect_timeout))
            .build()
            .map_err(|e| StoreError::Config(Box::new(e)))?;
        let inner = Arc::new(Inner {
            pool,
            config,
            tls,
            feed: ChangeFeed::default(),
            pruned_at: std::sync::atomic::AtomicI64::new(0),
        });
        if self.follow {
            tokio::spawn(follow(
                Arc::downgrade(&inner),
                self.listen,
                self.poll_interval,
            ));
        }
        Ok(PgKeyStore { inner })
    }
}

impl PgKeyStore {
    /// Options for a store at `url` (`postgresql://user@host/db` or `host=/run/postgresql
    /// dbname=apikeys`).
    pub fn builder(url: impl Into<String>) -> PgKeyStoreBuilder {
        PgKeyStoreBuilder {
            url: url.into(),
            pool_size: NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN),
            poll_interval: Duration::from_secs(1),
            listen: true,
            follow: true,
            connect_timeout: Duration::from_secs(2),
        }
    }

    /// A store at `url` with the default options.
    ///
    /// # Errors
    /// As [`PgKeyStoreBuilder::connect`].
    pub async fn connect(url: impl Into<String>) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }

    /// Brings the schema up to date: applies, in one transaction each, the migrations not
    /// yet applied (several servers may call this at once). Returns how many were applied.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database fails.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])
            .await
            .map_err(unavailable)?;
        let result = async {
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS tower_apikey_schema (version INT NOT NULL)",
                )
                .await?;
            let applied: i32 = client
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM tower_apikey_schema",
                    &[],
                )
                .await?
                .get(0);
            let applied = usize::try_from(applied).unwrap_or(0);
            let mut count = 0;
            for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
                let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
                let tx = client.transaction().await?;
                tx.batch_execute(migration).await?;
                tx.execute(
                    "INSERT INTO tower_apikey_schema (version) VALUES ($1)",
                    &[&version],
                )
                .await?;
                tx.commit().await?;
                count += 1;
            }
            Ok::<_, tokio_postgres::Error>(count)
        }
        .await;
        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK])
            .await;
        let count = result.map_err(unavailable)?;
        unlocked.map_err(unavailable)?;
        Ok(count)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(PgError::from(e))))
    }

    /// Commits a write: logs a change for each id (stamping each record with its version),
    /// sends one NOTIFY, prunes old changes, commits, then tells this process's subscribers.
    async fn commit(&self, tx: Transaction<'_>, ids: Vec<KeyId>) -> Result<(), StoreError> {
        let names: Vec<&str> = ids.iter().map(KeyId::as_str).collect();
        tx.execute(
            "WITH logged AS (INSERT INTO tower_apikey_changes (id) SELECT unnest($1::TEXT[]) \
             RETURNING version, id) \
             UPDATE tower_apikey_keys AS k SET version = logged.version \
             FROM logged WHERE k.id = logged.id",
            &[&names],
        )
        .await
        .map_err(unavailable)?;
        // Followers read the log, so one notification covers the whole transaction.
        tx.batch_execute(&format!(
            "NOTIFY {CHANNEL}; \
             DELETE FROM tower_apikey_changes WHERE changed_at < now() - interval '{CHANGES_KEPT}'"
        ))
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        // Commit first, then invalidate.
        for id in ids {
            self.inner.feed.publish(&StoreChange::Changed(id));
        }
        Ok(())
    }
}

impl KeyStore for PgKeyStore {
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM tower_apikey_keys WHERE id = $1"),
                &[&id.as_str()],
            )
            .await
            .map_err(unavailable)?;
        row.as_ref().map(record_of).transpose()
    }

    async fn list(&self, principal: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM tower_apikey_keys \
                     WHERE $1::TEXT IS NULL OR principal = $1 ORDER BY id"
                ),
                &[&principal],
            )
            .await
            .map_err(unavailable)?;
        records_of(&rows)
    }

    async fn query(&self, query: &KeyQuery) -> Result<Vec<KeyRecord>, StoreError> {
        let client = self.client().await?;
        let status = query.status.map(KeyStatus::as_str);
        let search = query.search.as_deref().map(str::to_lowercase);
        let limit = query.limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        // Only the filters given, so every plan (a generic one too, as a pooler or a
        // statement cache may use) can start at `after` in the primary key: with
        // `$3 IS NULL OR id > $3` a generic plan read the table from its first row.
        let mut sql = format!("SELECT {COLUMNS} FROM tower_apikey_keys WHERE TRUE");
        let after = query.after.as_ref().map(KeyId::as_str);
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if let Some(principal) = &query.principal {
            push_filter(&mut sql, &mut params, " AND principal = $", principal);
        }
        if let Some(status) = &status {
            push_filter(&mut sql, &mut params, " AND status = $", status);
        }
        if let Some(after) = &after {
            push_filter(&mut sql, &mut params, " AND id > $", after);
        }
        // strpos, not LIKE: the search text is data, with no wildcards to escape.
        if let Some(search) = &search {
            push_filter(
                &mut sql,
                &mut params,
                " AND (strpos(lower(id), $) > 0 OR strpos(lower(principal), $) > 0 \
                 OR strpos(lower(coalesce(name, '')), $) > 0 \
                 OR strpos(lower(coalesce(description, '')), $) > 0)",
                search,
            );
        }
        sql.push_str(" ORDER BY id");
        if let Some(limit) = &limit {
            push_filter(&mut sql, &mut params, " LIMIT $", limit);
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

    async fn replace(&self, current: &KeyRecord, new: KeyRecord) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        // The row stays locked until commit: no writer gets between the compare and the write.
        let row = tx
            .query_opt(
                &format!("SELECT {COLUMNS} FROM tower_apikey_keys WHERE id = $1 FOR UPDATE"),
                &[&current.id.as_str()],
            )
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
            .query_opt(
                &format!("DELETE FROM tower_apikey_keys WHERE id = $1 RETURNING {COLUMNS}"),
                &[&id.as_str()],
            )
            .await
            .map_err(unavailable)?;
        let Some(row) = row else {
            return Ok(false);
        };
        push_events(&tx, KeyEvent::for_change(Some(&record_of(&row)?), None)).await?;
        tx.execute(
            "DELETE FROM tower_apikey_rate_usage WHERE id = $1",
            &[&id.as_str()],
        )
        .await
        .map_err(unavailable)?;
        self.commit(tx, vec![id.clone()]).await?;
        Ok(true)
    }

    async fn insert_limited(&self, record: KeyRecord, limit: usize) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        // The write lock makes count-then-insert one step for every writer.
        let tx = begin(&mut client).await?;
        let live: i64 = tx
            .query_one(
                "SELECT count(*) FROM tower_apikey_keys WHERE principal = $1 \
                 AND status <> 'revoked' AND (expires_at IS NULL OR expires_at > now())",
                &[&record.principal],
            )
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
            .query_opt(
                "SELECT id FROM tower_apikey_keys WHERE id = ANY($1) LIMIT 1",
                &[&ids],
            )
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

    async fn list_legacy(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {COLUMNS} FROM tower_apikey_keys WHERE legacy ORDER BY id"),
                &[],
            )
            .await
            .map_err(unavailable)?;
        records_of(&rows)
    }

    async fn record_last_used(&self, used: Vec<(KeyId, Timestamp)>) -> Result<(), StoreError> {
        // One statement, no change logged: last use changes no key's validity.
        let (ids, times): (Vec<&str>, Vec<Timestamp>) =
            used.iter().map(|(id, at)| (id.as_str(), *at)).unzip();
        let client = self.client().await?;
        client
            .execute(
                "UPDATE tower_apikey_keys AS k \
                 SET last_used_at = GREATEST(coalesce(k.last_used_at, u.at), u.at) \
                 FROM unnest($1::TEXT[], $2::TIMESTAMPTZ[]) AS u(id, at) WHERE k.id = u.id",
                &[&ids, &times],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn take_quota(&self, id: &KeyId, want: u64) -> Result<QuotaGrant, StoreError> {
        // One statement, no change logged: usage changes no key's validity; the quota
        // running out is an event, added in the same statement once per period. The row lock
        // taken by FOR UPDATE orders servers taking leases of one key at once; the refill
        // rule is QuotaGrant::take's.
        let want = i64::try_from(want).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let row = client
            .query_opt(
                "WITH cur AS ( \
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
                 ) \
                 , upd AS ( \
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
                 SELECT granted, remaining, period_start, refills_at FROM upd",
                &[&id.as_str(), &want],
            )
            .await
            .map_err(unavailable)?;
        let Some(row) = row else {
            return Ok(QuotaGrant::NONE);
        };
        let count = |column: &str| u64::try_from(row.get::<_, i64>(column)).unwrap_or(0);
        Ok(QuotaGrant {
            granted: count("granted"),
            remaining: count("remaining"),
            period_start: row.get("period_start"),
            refills_at: row.get("refills_at"),
        })
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
            .execute(
                "UPDATE tower_apikey_keys \
                 SET quota_remaining = LEAST(quota_uses, coalesce(quota_remaining, quota_uses) + $2) \
                 WHERE id = $1 AND quota_uses IS NOT NULL AND quota_period_start = $3",
                &[&id.as_str(), &uses, &period_start],
            )
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
        // One statement per batch, whatever the traffic. Rows are locked in id order (the
        // caller sorts), so two servers' batches never deadlock.
        let (ids, counts): (Vec<&str>, Vec<i64>) = admitted
            .iter()
            .map(|(id, n)| (id.as_str(), i64::try_from(*n).unwrap_or(i64::MAX)))
            .unzip();
        let client = self.client().await?;
        let rows = client
            .query(
                "INSERT INTO tower_apikey_rate_usage AS u (id, admitted) \
                 SELECT id, n FROM unnest($1::TEXT[], $2::BIGINT[]) AS t(id, n) ORDER BY id \
                 ON CONFLICT (id) DO UPDATE SET admitted = u.admitted + excluded.admitted \
                 RETURNING id, admitted",
                &[&ids, &counts],
            )
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

    async fn claim_events(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let client = self.client().await?;
        // SKIP LOCKED: senders on other servers claiming at the same moment take other rows.
        let rows = client
            .query(
                "UPDATE tower_apikey_events \
                 SET claimed_until = now() + make_interval(secs => $2::FLOAT8), \
                     attempts = attempts + 1 \
                 WHERE seq IN (SELECT seq FROM tower_apikey_events \
                     WHERE delivered_at IS NULL \
                       AND (not_before IS NULL OR not_before <= now()) \
                       AND (claimed_until IS NULL OR claimed_until <= now()) \
                     ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED) \
                 RETURNING seq, id, event, attempts, not_before, claimed_until, delivered_at",
                &[
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                    &lease.as_secs_f64(),
                ],
            )
            .await
            .map_err(unavailable)?;
        let now = Timestamp::now().as_second();
        let pruned_at = &self.inner.pruned_at;
        let prune = rows.is_empty()
            && now - pruned_at.load(std::sync::atomic::Ordering::Relaxed) >= 60
            && pruned_at.swap(now, std::sync::atomic::Ordering::Relaxed) != now;
        if prune {
            client
                .execute(
                    "DELETE FROM tower_apikey_events WHERE delivered_at < now() - interval '7 days'",
                    &[],
                )
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
            .execute(
                "UPDATE tower_apikey_events SET claimed_until = NULL, \
                     delivered_at = CASE WHEN $2 THEN now() END, \
                     not_before = coalesce($3, not_before) \
                 WHERE id = $1 AND delivered_at IS NULL",
                &[&id, &delivered, &not_before],
            )
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

    async fn list_expiring(&self, until: Timestamp) -> Result<Vec<KeyRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM tower_apikey_keys \
                     WHERE expires_at <= $1 AND status <> 'revoked' ORDER BY id"
                ),
                &[&until],
            )
            .await
            .map_err(unavailable)?;
        records_of(&rows)
    }

    fn subscribe(&self, listener: Weak<dyn ChangeListener>) {
        self.inner.feed.subscribe(listener);
    }
}

/// Appends `clause` to `sql`, each `$` in it numbered as `param`'s place in `params`.
fn push_filter<'a>(
    sql: &mut String,
    params: &mut Vec<&'a (dyn ToSql + Sync)>,
    clause: &str,
    param: &'a (dyn ToSql + Sync),
) {
    params.push(param);
    sql.push_str(&clause.replace('$', &format!("${}", params.len())));
}
