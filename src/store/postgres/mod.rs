//! The PostgreSQL key store, shared by a fleet of servers (feature `postgres`): the store,
//! its options and its write transactions here; the schema in `schema`, rows in `rows`, the
//! change follower in `follow`; one file per capability (`records`, `usage`, `outbox`), each
//! with its SQL as named constants.

mod connection;
mod error;
mod follow;
mod outbox;
mod records;
mod rows;
mod schema;
mod sessions;
mod tls;
mod usage;

pub use self::connection::ConnectionStringError;
pub use self::error::PgError;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Transaction};
use tokio_postgres_rustls::MakeRustlsConnect;

use self::connection::Connection;
use self::follow::follow;
use self::schema::{write_lock, LOG_CHANGES, NOTIFY_AND_PRUNE, TAKE_WRITE_LOCK};
use super::{ChangeFeed, SettingTooSmall, StoreChange, StoreError};
use crate::key::KeyId;

/// A store in PostgreSQL, with every capability, shared by every server pointed at the same
/// database.
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
    /// How long the audit trail keeps an event.
    audit_retention: Duration,
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
    audit_retention: Duration,
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
            .field("audit_retention", &self.audit_retention)
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

    /// How long the audit trail keeps an event (default 400 days), whatever its delivery:
    /// older ones are pruned, bounded, at most once a minute, by a webhook sender's idle claim
    /// or a validator's usage prune.
    pub fn audit_retention(mut self, retention: Duration) -> Self {
        self.audit_retention = retention;
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
            audit_retention: self.audit_retention,
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
            audit_retention: Duration::from_secs(400 * 86_400),
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
        schema::migrate(&mut client).await.map_err(unavailable)
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
        tx.execute(LOG_CHANGES, &[&names])
            .await
            .map_err(unavailable)?;
        tx.batch_execute(NOTIFY_AND_PRUNE)
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

/// Starts a write: a transaction holding the write lock, so changes commit in version order.
/// Dropped without [`PgKeyStore::commit`](PgKeyStore::commit), it rolls back.
async fn begin(client: &mut deadpool_postgres::Object) -> Result<Transaction<'_>, StoreError> {
    let tx = client.transaction().await.map_err(unavailable)?;
    tx.execute(TAKE_WRITE_LOCK, &[write_lock()])
        .await
        .map_err(unavailable)?;
    Ok(tx)
}

fn unavailable(error: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(Box::new(PgError::from(error)))
}
