//! The store's files on disk: the JSON format, reading and writing it under the lock, and the
//! fingerprint that tells a changed file from an unchanged one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::super::map::RecordMap;
use super::super::StoreError;
use crate::events::{AuditLog, Outbox};

use crate::record::KeyRecord;

/// The format version written to the file.
pub(super) const FORMAT_VERSION: u32 = 1;

/// What tells a changed file from an unchanged one without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint {
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
    pub(super) fn of(meta: &fs::Metadata) -> Self {
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
pub(super) struct Contents {
    version: u32,
    #[serde(default)]
    revision: u64,
    keys: Vec<KeyRecord>,
    /// The outbox: events written with the changes, until delivered (and a week after).
    #[serde(default, skip_serializing_if = "outbox_is_empty")]
    events: Outbox,
    /// The audit trail: every event, for 400 days.
    #[serde(default, skip_serializing_if = "AuditLog::is_empty")]
    audit: AuditLog,
}

pub(super) fn outbox_is_empty(outbox: &Outbox) -> bool {
    outbox.entries().is_empty()
}

/// A snapshot of the file as read or written.
pub(super) struct Snapshot {
    pub(super) records: RecordMap,
    /// The file's own counter: written one higher on each write, never used for ordering.
    pub(super) revision: u64,
    pub(super) fingerprint: Option<Fingerprint>,
    pub(super) settled: bool,
}

pub(super) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

pub(super) fn sibling(path: &Path, suffix: &str) -> PathBuf {
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
pub(super) fn settled(meta: &fs::Metadata) -> bool {
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

pub(super) fn current_fingerprint(path: &Path) -> Result<Option<Fingerprint>, StoreError> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(Fingerprint::of(&meta))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

pub(super) fn read_snapshot(path: &Path) -> Result<Snapshot, StoreError> {
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
    records.load_audit(contents.audit);
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

/// Takes the exclusive lock on `lock_path` (creating the file), held until the file is
/// dropped: every writer, in this process or another, takes it.
pub(super) fn lock(lock_path: &Path) -> Result<File, StoreError> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(io_error(lock_path))?;
    lock.lock().map_err(io_error(lock_path))?;
    Ok(lock)
}

/// Under the file lock: re-reads the file, applies `change`, writes the result, and hands it
/// to `install` before the lock is released.
pub(super) fn write_locked<T, I>(
    path: &Path,
    lock_path: &Path,
    change: impl FnOnce(&mut RecordMap) -> Result<T, StoreError>,
    install: impl FnOnce(Snapshot) -> I,
) -> Result<(T, I), StoreError> {
    let lock = lock(lock_path)?;
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
        audit: snapshot.records.audit().clone(),
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
pub(super) fn remove_stale_temp_files(path: &Path) {
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

pub(super) fn write_file(path: &Path, contents: &Contents) -> io::Result<()> {
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
