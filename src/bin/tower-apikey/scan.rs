//! `scan`: finds keys in files or stdin and prints where, never the secret; with a store,
//! what each is to it, and with `--revoke` revokes ours as leaked.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use tower_apikey::key::KeyFormat;
use tower_apikey::scan::{find_keys, FoundKey};
use tower_apikey::{
    KeyManager, KeyStatus, LifecycleError, Revocation, StoreError, ValidationError, Validator,
};

use crate::args::StoreArgs;
use crate::store::{cli_actor, with_store};
use crate::terminal::{write_stdout, Failure};

/// Files larger than this are skipped with a warning: a scanner must not read a disk image
/// into memory.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Exit 1 when a key is found, 0 when none, 2 when a path could not be read.
pub(crate) fn run(
    paths: &[PathBuf],
    prefix: &str,
    store: &StoreArgs,
    revoke: bool,
) -> Result<(), Failure> {
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
    let standings = if store.store.is_some() || store.database_url.is_some() {
        Some(standings(&found, store, revoke)?)
    } else if revoke {
        return Err(Failure::usage(
            "--revoke needs the store: give --store PATH or --database-url URL",
        ));
    } else {
        None
    };
    let mut out = String::new();
    for (i, (path, key)) in found.iter().enumerate() {
        out += &format!("{path}:{}: key {}", key.line, key.id);
        if let Some(standings) = &standings {
            let (standing, revoked_now) = standings[i];
            out.push(' ');
            out += standing.as_str();
            if revoked_now {
                out += ", revoked now";
            }
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

/// What a found key is to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Ours, and it would be accepted now.
    Live,
    /// Ours, deactivated or expired: refused now, but it could be brought back.
    Inactive,
    /// Ours, and revoked.
    Revoked,
    /// No record has its id, or the secret is not the record's.
    NotOurs,
}

impl Standing {
    fn as_str(self) -> &'static str {
        match self {
            Standing::Live => "live",
            Standing::Inactive => "inactive",
            Standing::Revoked => "revoked",
            Standing::NotOurs => "not ours",
        }
    }
}

/// Each found key's standing, and whether this run revoked it: with `revoke`, every key of
/// ours not yet revoked (a deactivated or expired key too: it could be brought back) is
/// revoked with the reason `leaked` at the first place it was found. Each distinct key is
/// checked once, through a validator's bounded cold path.
fn standings(
    found: &[(String, FoundKey)],
    store: &StoreArgs,
    revoke: bool,
) -> Result<Vec<(Standing, bool)>, Failure> {
    let found: Vec<(String, &FoundKey)> = found
        .iter()
        .map(|(path, key)| (format!("{path}:{}", key.line), key))
        .collect();
    with_store(store, |opened| async move {
        let store = opened.boxed();
        let validator = Validator::builder(store.clone())
            .last_used_flush_interval(None)
            .build();
        let keys = KeyManager::new(store).actor(cli_actor());
        let now = Timestamp::now();
        // The first place each distinct key was found, and what it is.
        let mut seen: HashMap<&[u8], (Standing, bool)> = HashMap::new();
        let mut out = Vec::with_capacity(found.len());
        for (place, key) in &found {
            if let Some(known) = seen.get(key.key.expose()) {
                out.push((known.0, false));
                continue;
            }
            let record = validator.record_of(&key.key).await.map_err(|e| match e {
                ValidationError::Unavailable(store) => store,
                other => StoreError::Internal(Box::new(other)),
            })?;
            let standing = match &record {
                None => Standing::NotOurs,
                Some(r) if r.status == KeyStatus::Revoked => Standing::Revoked,
                Some(r) if r.status == KeyStatus::Active && !r.is_expired_at(now) => Standing::Live,
                Some(_) => Standing::Inactive,
            };
            let revoked_now = revoke && matches!(standing, Standing::Live | Standing::Inactive);
            if revoked_now {
                keys.revoke_with(&key.id, Revocation::leaked_at(place.as_str()))
                    .await
                    .map_err(|e| match e {
                        LifecycleError::Store(store) => store,
                        other => StoreError::Internal(Box::new(other)),
                    })?;
            }
            seen.insert(key.key.expose(), (standing, revoked_now));
            out.push((standing, revoked_now));
        }
        Ok(out)
    })
}
