//! `scan`: finds keys in files or stdin and prints where, never the secret; with a store,
//! whether each is live.

use std::io::Read;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use tower_apikey::key::KeyFormat;
use tower_apikey::scan::{find_keys, FoundKey};
use tower_apikey::{KeyStatus, KeyStore};

use crate::args::StoreArgs;
use crate::store::with_store;
use crate::terminal::{write_stdout, Failure};

/// Files larger than this are skipped with a warning: a scanner must not read a disk image
/// into memory.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Exit 1 when a key is found, 0 when none, 2 when a path could not be read.
pub(crate) fn run(paths: &[PathBuf], prefix: &str, store: &StoreArgs) -> Result<(), Failure> {
    let format = KeyFormat::with_prefix(prefix).map_err(Failure::usage)?;
    let mut found: Vec<(String, FoundKey)> = Vec::new();
    let mut unreadable = 0;
    if paths.is_empty() {
        let mut text = Vec::new();
        std::io::stdin()
            .read_to_end(&mut text)
            .map_err(|e| Failure::usage(format!("reading stdin: {e}")))?;
        found.extend(
            find_keys(&format, &text)
                .into_iter()
                .map(|f| ("-".to_owned(), f)),
        );
    }
    for path in paths {
        walk(
            path,
            &mut |file, text| {
                let name = file.display().to_string();
                found.extend(
                    find_keys(&format, text)
                        .into_iter()
                        .map(|f| (name.clone(), f)),
                );
            },
            &mut unreadable,
        );
    }
    let live = if store.store.is_some() || store.database_url.is_some() {
        Some(liveness(&found, store)?)
    } else {
        None
    };
    let mut out = String::new();
    for (i, (path, key)) in found.iter().enumerate() {
        out += &format!("{path}:{}: key {}", key.line, key.id);
        if let Some(live) = &live {
            out += if live[i] { " live" } else { " not live" };
        }
        out.push('\n');
    }
    write_stdout(out.as_bytes())?;
    if unreadable > 0 {
        return Err(Failure {
            code: 2,
            message: format!("{unreadable} path(s) could not be read"),
        });
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(Failure::refused(format!("{} key(s) found", found.len())))
    }
}

/// Calls `each` with every regular file under `path` (symbolic links are not followed, so
/// a link loop ends nothing); counts what could not be read.
fn walk(path: &Path, each: &mut dyn FnMut(&Path, &[u8]), unreadable: &mut usize) {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(error) => {
            eprintln!("tower-apikey: {}: {error}", path.display());
            *unreadable += 1;
            return;
        }
    };
    if meta.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(error) => {
                eprintln!("tower-apikey: {}: {error}", path.display());
                *unreadable += 1;
                return;
            }
        };
        let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        children.sort();
        for child in children {
            walk(&child, each, unreadable);
        }
    } else if meta.is_file() {
        if meta.len() > MAX_FILE_BYTES {
            eprintln!(
                "tower-apikey: {}: skipped, larger than 256 MiB",
                path.display()
            );
            return;
        }
        match std::fs::read(path) {
            Ok(text) => each(path, &text),
            Err(error) => {
                eprintln!("tower-apikey: {}: {error}", path.display());
                *unreadable += 1;
            }
        }
    }
}

/// Whether each found key is live: its record exists, is active and unexpired, and its
/// PBKDF2 record matches the whole key (a well-formed key with another secret is not ours).
fn liveness(found: &[(String, FoundKey)], store: &StoreArgs) -> Result<Vec<bool>, Failure> {
    let keys: Vec<&FoundKey> = found.iter().map(|(_, key)| key).collect();
    with_store(store, |opened| async move {
        let store = opened.boxed();
        let now = Timestamp::now();
        let mut live = Vec::with_capacity(keys.len());
        for key in keys {
            let record = store.get(&key.id).await?;
            live.push(record.is_some_and(|r| {
                r.status == KeyStatus::Active
                    && !r.is_expired_at(now)
                    && r.hash.verify(r.prf, key.key.expose())
            }));
        }
        Ok(live)
    })
}
