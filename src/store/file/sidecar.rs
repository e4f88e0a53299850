//! Files beside the store, for what the records file does not hold: rate-limit totals
//! (`<path>.rates`), usage counts (`<path>.usage`) and console sessions (`<path>.sessions`). Each is read, changed and written under
//! the store's lock, so every process on the file shares it, and a write to it never rewrites
//! the records.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::disk::{io_error, lock, sibling};
use crate::store::StoreError;

/// A file beside the store.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sidecar {
    suffix: &'static str,
    /// Whether it holds what must survive a crash: synced, and never written over when it
    /// does not parse. Otherwise (rate totals: every validator reads totals that start again
    /// as a reset) a broken file is started afresh and writes are not synced.
    durable: bool,
}

/// Rate-limit totals: a crash loses at most one share of them.
pub(super) const RATES: Sidecar = Sidecar {
    suffix: ".rates",
    durable: false,
};

/// Usage counts: kept for their retention, so synced, and a file that does not parse is
/// left for an operator (writes fail as [`StoreError::Corrupt`]).
pub(super) const USAGE: Sidecar = Sidecar {
    suffix: ".usage",
    durable: true,
};

/// Console sessions: a broken file is started afresh (everyone signs in again). Not synced: a
/// process's crash loses nothing (each write is a rename), a machine's may lose its last
/// writes; every session still ends within its 12 hours.
pub(super) const SESSIONS: Sidecar = Sidecar {
    suffix: ".sessions",
    durable: false,
};

impl Sidecar {
    /// Reads it (a missing file is the default), changes it, writes it, under the store's
    /// lock; returns what `change` returned.
    pub(super) fn update<T, R>(
        self,
        path: &Path,
        lock_path: &Path,
        change: impl FnOnce(&mut T) -> R,
    ) -> Result<R, StoreError>
    where
        T: Serialize + DeserializeOwned + Default,
    {
        let lock = lock(lock_path)?;
        let file = sibling(path, self.suffix);
        let mut value = match self.read(&file) {
            Ok(value) => value,
            Err(_) if !self.durable => T::default(),
            Err(error) => return Err(error),
        };
        let result = change(&mut value);
        let tmp = sibling(path, &format!(".tmp{}.{}", self.suffix, std::process::id()));
        if let Err(e) = self
            .write(&tmp, &value)
            .and_then(|()| fs::rename(&tmp, &file))
        {
            let _ = fs::remove_file(&tmp);
            return Err(io_error(&file)(e));
        }
        if self.durable {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = fs::File::open(dir).and_then(|d| d.sync_all());
            }
        }
        drop(lock);
        Ok(result)
    }

    /// Reads it without the lock (writes replace it whole): a missing file is the default.
    pub(super) fn load<T: DeserializeOwned + Default>(self, path: &Path) -> Result<T, StoreError> {
        self.read(&sibling(path, self.suffix))
    }

    fn read<T: DeserializeOwned + Default>(self, file: &Path) -> Result<T, StoreError> {
        match fs::read(file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                path: file.to_owned(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
            Err(e) => Err(io_error(file)(e)),
        }
    }

    fn write<T: Serialize>(self, tmp: &Path, value: &T) -> io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = io::BufWriter::new(options.open(tmp)?);
        serde_json::to_writer(&mut out, value)?;
        out.write_all(b"\n")?;
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        if self.durable {
            file.sync_all()?;
        }
        Ok(())
    }
}
