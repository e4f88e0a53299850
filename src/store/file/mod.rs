//! The JSON-file key store, shared with the CLI and other processes: the store, its options,
//! and how it follows the file; the file format and locked writes in `disk`; the store
//! capabilities in `capabilities`.

mod capabilities;
mod disk;
mod sessions;
mod sidecar;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use self::disk::{
    current_fingerprint, read_snapshot, sibling, write_locked, Fingerprint, Snapshot,
};
use super::map::RecordMap;
use super::{ChangeFeed, SettingTooSmall, StoreChange, StoreError};
use crate::key::KeyId;

/// A store kept in one JSON file, with every capability.
///
/// - Every change is written to a temporary file, synced and renamed over the store, so a
///   reader sees the old file or the new one, never half of one.
/// - Writers, in this process or another, take an exclusive lock on `<path>.lock` and re-read
///   the file before changing it, so no change made by another process is lost.
/// - A background task checks the file every [poll interval](FileStoreBuilder::poll_interval)
///   (250 ms by default) and reloads it when another process changed it, telling subscribers
///   which records changed: keys issued or revoked with the CLI take effect within a second.
///   Whatever the file holds is the truth, whatever its `revision`: a restored backup, a file
///   deleted and written anew, or one written by another tool replaces what was loaded. Only
///   a read that this process's own write overtook is dropped (the next poll reads again).
/// - A writer killed mid-write leaves `<path>.tmp.<pid>` behind; the next write removes it.
/// - A file that does not parse is never overwritten: writes fail with
///   [`StoreError::Corrupt`] and the last good contents stay in use.
/// - Validators on the file share their rate-limit counts through `<path>.rates`, and write
///   their usage counts to `<path>.usage`, both under the same lock: servers sharing the file
///   share their keys' rate limits and usage too.
///
/// The file is created on the first write, readable by its owner only. Cloning gives another
/// handle to the same store.
///
/// # Example
/// ```
/// use tower_apikey::{FileStore, KeyRecord, KeyStore};
/// use tower_apikey::key::KeyFormat;
/// use tower_apikey::hash::HashParams;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let dir = tempfile::tempdir()?;
/// let store = FileStore::open(dir.path().join("apikeys.json")).await?;
/// let (record, _key) = KeyRecord::generate("alice", &KeyFormat::default(), &HashParams::default())?;
/// store.insert(record.clone()).await?;
///
/// // Another handle (another process, say) sees it.
/// let other = FileStore::open(dir.path().join("apikeys.json")).await?;
/// assert!(other.get(&record.id).await?.is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    lock_path: PathBuf,
    state: RwLock<State>,
    feed: ChangeFeed,
}

#[derive(Debug, Default)]
struct State {
    records: RecordMap,
    /// This process's own writes installed so far. A reload that began before one of them
    /// may have read an older file: it is dropped. Kept here, never read from the file,
    /// whose `revision` any other writer (or a restored backup) sets as it likes.
    own_writes: u64,
    fingerprint: Option<Fingerprint>,
    /// Whether `fingerprint` can be trusted to change with the file; see [`settled`].
    settled: bool,
    /// A file version that did not parse: not read again, nor warned about, until it changes.
    unreadable: Option<Option<Fingerprint>>,
}

/// Options for [`FileStore`].
#[derive(Debug, Clone)]
pub struct FileStoreBuilder {
    path: PathBuf,
    poll_interval: Option<Duration>,
}

impl FileStoreBuilder {
    /// How often to check the file for changes made by other processes (default 250 ms; at
    /// least 10 ms, or [`open`](Self::open) refuses it).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = Some(interval);
        self
    }

    /// Do not watch the file: for one-shot tools such as the CLI.
    pub fn no_polling(mut self) -> Self {
        self.poll_interval = None;
        self
    }

    /// Loads the file (a missing file is an empty store) and starts watching it.
    ///
    /// Must be called within a Tokio runtime.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the file cannot be read, [`StoreError::Corrupt`] when it does
    /// not parse, [`StoreError::Config`] for a poll interval under 10 ms.
    pub async fn open(self) -> Result<FileStore, StoreError> {
        if let Some(interval) = self.poll_interval {
            SettingTooSmall::check("poll interval", SettingTooSmall::MIN_POLL, interval)?;
        }
        let path = self.path;
        let lock_path = sibling(&path, ".lock");
        let snapshot = blocking({
            let path = path.clone();
            move || read_snapshot(&path)
        })
        .await?;
        let inner = Arc::new(Inner {
            path,
            lock_path,
            state: RwLock::new(State {
                records: snapshot.records,
                own_writes: 0,
                fingerprint: snapshot.fingerprint,
                settled: snapshot.settled,
                unreadable: None,
            }),
            feed: ChangeFeed::new(),
        });
        if let Some(interval) = self.poll_interval {
            tokio::spawn(watch(Arc::downgrade(&inner), interval));
        }
        Ok(FileStore { inner })
    }
}

impl FileStore {
    /// Opens the store at `path` with default options; see [`FileStoreBuilder::open`].
    ///
    /// # Errors
    /// As [`FileStoreBuilder::open`].
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Self::builder(path).open().await
    }

    /// Options for the store at `path`.
    pub fn builder(path: impl Into<PathBuf>) -> FileStoreBuilder {
        FileStoreBuilder {
            path: path.into(),
            poll_interval: Some(Duration::from_millis(250)),
        }
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Re-reads the file now if it changed on disk; returns whether it had.
    ///
    /// # Errors
    /// As [`FileStoreBuilder::open`]; the last good contents stay in use. A file that failed
    /// to load is not read again until it changes (then `Ok(false)`).
    pub async fn reload(&self) -> Result<bool, StoreError> {
        reload(&self.inner).await
    }

    /// Applies `change` to the freshest contents of the file under the write lock, writes
    /// the result, then publishes what changed.
    async fn modify<T, F>(&self, change: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut RecordMap) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let (value, changed) = blocking(move || {
            // Installed while the file lock is held, so this process's writes are installed
            // in the order they were written.
            write_locked(&inner.path, &inner.lock_path, change, |snapshot| {
                inner.install_own(snapshot)
            })
        })
        .await?;
        self.inner.publish(changed);
        Ok(value)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.state()
    }
}

impl Inner {
    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes what this process just wrote the current state; returns the ids that changed.
    fn install_own(&self, snapshot: Snapshot) -> Vec<KeyId> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.own_writes += 1;
        replace_state(&mut state, snapshot)
    }

    /// Makes what a reload read the current state, unless one of this process's writes was
    /// installed since the reload began (`own_writes` is what it saw then): that read may
    /// be older than the write. Returns the ids that changed.
    fn install_read(&self, snapshot: Snapshot, own_writes: u64) -> Vec<KeyId> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if state.own_writes != own_writes {
            return Vec::new();
        }
        replace_state(&mut state, snapshot)
    }

    fn publish(&self, changed: Vec<KeyId>) {
        for id in changed {
            self.feed.publish(&StoreChange::Changed(id));
        }
    }
}

fn replace_state(state: &mut State, snapshot: Snapshot) -> Vec<KeyId> {
    let changed = state.records.changed_ids(&snapshot.records);
    if state.unreadable.take().is_some() {
        tracing::info!("key store file readable again; loaded");
    }
    state.records = snapshot.records;
    state.fingerprint = snapshot.fingerprint;
    state.settled = snapshot.settled;
    changed
}

async fn watch(inner: Weak<Inner>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if let Err(error) = reload(&inner).await {
            tracing::warn!(path = %inner.path.display(), %error, "key store file not reloaded; keeping the last good contents");
        }
    }
}

async fn reload(inner: &Arc<Inner>) -> Result<bool, StoreError> {
    let path = inner.path.clone();
    let (known, settled, unreadable, own_writes) = {
        let state = inner.state.read().unwrap_or_else(PoisonError::into_inner);
        (
            state.fingerprint,
            state.settled,
            state.unreadable,
            state.own_writes,
        )
    };
    let read = blocking(move || {
        let now = current_fingerprint(&path)?;
        let unchanged = now == known && (settled || now.is_none());
        if unchanged || Some(now) == unreadable {
            return Ok(None);
        }
        Ok(Some((now, read_snapshot(&path))))
    })
    .await?;
    match read {
        None => Ok(false),
        Some((now, Err(error))) => {
            let mut state = inner.state.write().unwrap_or_else(PoisonError::into_inner);
            state.unreadable = Some(now);
            Err(error)
        }
        Some((_, Ok(snapshot))) => {
            let changed = inner.install_read(snapshot, own_writes);
            inner.publish(changed);
            Ok(true)
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Internal(Box::new(e)))?
}
