//! The JSON-file key store, shared with the CLI and other processes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use jiff::Timestamp;

use super::map::RecordMap;
use super::{
    ChangeFeed, ChangeListener, KeyQuery, KeyStore, SettingTooSmall, StoreChange, StoreError,
};
use crate::events::{Delivery, KeyEvent, Outbox, OutboxEntry};
use crate::key::KeyId;
use crate::policy::QuotaGrant;
use crate::record::KeyRecord;

/// The format version written to the file.
const FORMAT_VERSION: u32 = 1;

/// A [`KeyStore`] kept in one JSON file.
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

/// What tells a changed file from an unchanged one without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: u64,
    /// The inode's change time, which no tool can set back (`cp -p` and `touch -d` set the
    /// modification time): a backup restored in place with its old time is still seen.
    #[cfg(unix)]
    changed: (i64, i64),
}

impl Fingerprint {
    fn of(meta: &fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode: meta.ino(),
            #[cfg(unix)]
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Contents {
    version: u32,
    #[serde(default)]
    revision: u64,
    keys: Vec<KeyRecord>,
    /// The outbox: events written with the changes, until delivered (and a week after).
    #[serde(default, skip_serializing_if = "outbox_is_empty")]
    events: Outbox,
}

fn outbox_is_empty(outbox: &Outbox) -> bool {
    outbox.entries().is_empty()
}

/// A snapshot of the file as read or written.
struct Snapshot {
    records: RecordMap,
    /// The file's own counter: written one higher on each write, never used for ordering.
    revision: u64,
    fingerprint: Option<Fingerprint>,
    settled: bool,
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
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
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

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Whether a file's times are far enough in the past that a change now would show in them.
///
/// Timestamps are coarse (a clock tick; a second or two on some filesystems): a file
/// rewritten within the tick it was read in, to the same length and a recycled inode number,
/// looks unchanged. Such a "racily clean" file (git's term) is read again at the next poll.
fn settled(meta: &fs::Metadata) -> bool {
    const TICK: Duration = Duration::from_secs(1);
    let now = SystemTime::now();
    let old_enough = |at: SystemTime| now.duration_since(at).is_ok_and(|age| age > TICK);
    #[cfg(unix)]
    let changed = {
        use std::os::unix::fs::MetadataExt;
        let secs = u64::try_from(meta.ctime()).unwrap_or(0);
        let nanos = u32::try_from(meta.ctime_nsec()).unwrap_or(0);
        SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
    };
    #[cfg(not(unix))]
    let changed = meta.modified().unwrap_or(now);
    meta.modified().is_ok_and(old_enough) && old_enough(changed)
}

fn current_fingerprint(path: &Path) -> Result<Option<Fingerprint>, StoreError> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(Fingerprint::of(&meta))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

fn read_snapshot(path: &Path) -> Result<Snapshot, StoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Snapshot {
                records: RecordMap::default(),
                revision: 0,
                fingerprint: None,
                settled: true,
            });
        }
        Err(e) => return Err(io_error(path)(e)),
    };
    // The fingerprint of the very file read: a rename after this does not confuse it.
    let meta = file.metadata().map_err(io_error(path))?;
    let fingerprint = Fingerprint::of(&meta);
    let corrupt = |source| StoreError::Corrupt {
        path: path.to_owned(),
        source,
    };
    let contents: Contents = serde_json::from_reader(io::BufReader::new(file)).map_err(corrupt)?;
    if contents.version != FORMAT_VERSION {
        let msg = format!(
            "unsupported format version {} (expected {FORMAT_VERSION})",
            contents.version
        );
        return Err(corrupt(serde::de::Error::custom(msg)));
    }
    let mut records = RecordMap::default();
    records.load_outbox(contents.events);
    for record in contents.keys {
        let id = record.id.clone();
        if records.load(record).is_some() {
            return Err(corrupt(serde::de::Error::custom(format!(
                "duplicate key id {id}"
            ))));
        }
    }
    Ok(Snapshot {
        records,
        revision: contents.revision,
        fingerprint: Some(fingerprint),
        settled: settled(&meta),
    })
}

/// Under the file lock: re-reads the file, applies `change`, writes the result, and hands it
/// to `install` before the lock is released.
fn write_locked<T, I>(
    path: &Path,
    lock_path: &Path,
    change: impl FnOnce(&mut RecordMap) -> Result<T, StoreError>,
    install: impl FnOnce(Snapshot) -> I,
) -> Result<(T, I), StoreError> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(io_error(lock_path))?;
    lock.lock().map_err(io_error(lock_path))?;
    // Released when `lock` is dropped, on every path out of here.
    remove_stale_temp_files(path);
    let mut snapshot = read_snapshot(path)?;
    let value = change(&mut snapshot.records)?;
    snapshot.revision += 1;
    let contents = Contents {
        version: FORMAT_VERSION,
        revision: snapshot.revision,
        keys: snapshot.records.records().cloned().collect(),
        events: snapshot.records.outbox().clone(),
    };
    let tmp = sibling(path, &format!(".tmp.{}", std::process::id()));
    let written = write_file(&tmp, &contents).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(path)(e));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Makes the rename itself durable; not every filesystem allows syncing a directory.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    let meta = fs::metadata(path).map_err(io_error(path))?;
    snapshot.fingerprint = Some(Fingerprint::of(&meta));
    snapshot.settled = settled(&meta);
    let installed = install(snapshot);
    drop(lock);
    Ok((value, installed))
}

/// Removes `<path>.tmp.*` files. Called under the lock: every writer writes its temporary
/// file only while holding it, so any found now was left by a writer that was killed.
fn remove_stale_temp_files(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut prefix = name.to_os_string();
    prefix.push(".tmp.");
    let prefix = prefix.as_encoded_bytes();
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().as_encoded_bytes().starts_with(prefix) {
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed a temporary file left by a killed writer")
                }
                Err(error) => {
                    tracing::warn!(file = %entry.path().display(), %error, "stale temporary key store file not removed")
                }
            }
        }
    }
}

fn write_file(path: &Path, contents: &Contents) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = io::BufWriter::new(options.open(path)?);
    serde_json::to_writer_pretty(&mut file, contents)?;
    file.write_all(b"\n")?;
    let file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()
}

impl KeyStore for FileStore {
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.read().records.get(id).cloned())
    }

    async fn list(&self, principal: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self.read().records.list(principal))
    }

    async fn query(&self, query: &KeyQuery) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self.read().records.query(query))
    }

    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.modify(move |records| records.insert(record)).await
    }

    async fn replace(&self, current: &KeyRecord, new: KeyRecord) -> Result<(), StoreError> {
        let current = current.clone();
        self.modify(move |records| records.replace(&current, new))
            .await
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        let id = id.clone();
        self.modify(move |records| Ok(records.delete(&id))).await
    }

    async fn insert_limited(&self, record: KeyRecord, limit: usize) -> Result<(), StoreError> {
        self.modify(move |records| records.insert_limited(record, limit))
            .await
    }

    async fn list_legacy(&self) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self.read().records.list_legacy())
    }

    async fn record_last_used(&self, used: Vec<(KeyId, Timestamp)>) -> Result<(), StoreError> {
        // One write for the whole batch; the reload diff ignores last use, so no process
        // drops a cached key for it.
        self.modify(move |records| {
            records.record_last_used(used);
            Ok(())
        })
        .await
    }

    async fn take_quota(&self, id: &KeyId, want: u64) -> Result<QuotaGrant, StoreError> {
        // One write per lease, under the file lock like every write; the reload diff ignores
        // usage, so no process drops a cached key for it.
        let id = id.clone();
        self.modify(move |records| Ok(records.take_quota(&id, want).unwrap_or(QuotaGrant::NONE)))
            .await
    }

    async fn return_quota(
        &self,
        id: &KeyId,
        uses: u64,
        period_start: Timestamp,
    ) -> Result<bool, StoreError> {
        let id = id.clone();
        self.modify(move |records| Ok(records.return_quota(&id, uses, period_start)))
            .await
    }

    async fn insert_many(&self, records: Vec<KeyRecord>) -> Result<(), StoreError> {
        self.modify(move |map| map.insert_many(records).map(drop))
            .await
    }

    async fn claim_events(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        // Nothing due as last read: no write (a sender asks every second). Another process's
        // events are read with its change, within the poll interval.
        if !self.read().records.outbox().has_due(Timestamp::now()) {
            return Ok(Vec::new());
        }
        self.modify(move |records| Ok(records.outbox_mut().claim(limit, lease, Timestamp::now())))
            .await
    }

    async fn finish_event(&self, id: &str, outcome: Delivery) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.modify(move |records| {
            records.outbox_mut().finish(&id, outcome, Timestamp::now());
            Ok(())
        })
        .await
    }

    async fn list_expiring(&self, until: Timestamp) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self.read().records.list_expiring(until))
    }

    async fn add_events(&self, events: Vec<KeyEvent>) -> Result<usize, StoreError> {
        // Known already as last read: no write (every server sweeps every minute).
        let known = {
            let state = self.read();
            let outbox = state.records.outbox().entries();
            events
                .iter()
                .all(|e| outbox.iter().any(|o| o.event.id == e.id))
        };
        if known {
            return Ok(0);
        }
        self.modify(move |records| Ok(records.outbox_mut().push_new(events)))
            .await
    }

    fn subscribe(&self, listener: Weak<dyn ChangeListener>) {
        self.inner.feed.subscribe(listener);
    }
}
