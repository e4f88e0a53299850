//! Fixtures shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use jiff::Timestamp;
use std::sync::{Arc, Weak};

use tower_apikey::key::{KeyFormat, KeyId, PlaintextKey};
use tower_apikey::record::HashParams;
use tower_apikey::store::ChangeListener;
use tower_apikey::{KeyRecord, KeyStore, MemoryStore, StoreError};

/// A fresh key for `principal`; the record carries the `read` permission.
pub fn issue(principal: &str) -> (KeyRecord, PlaintextKey) {
    let (mut record, key) =
        KeyRecord::generate(principal, &KeyFormat::default(), &HashParams::default()).unwrap();
    record.permissions = vec!["read".into()];
    (record, key)
}

/// A memory store that can be switched off, as a database that went away.
#[derive(Clone, Default)]
pub struct FlakyStore {
    pub inner: MemoryStore,
    down: Arc<AtomicBool>,
    /// How many `record_last_used` batches reached the store.
    pub last_used_writes: Arc<AtomicUsize>,
}

impl FlakyStore {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("connection refused".into()))
        } else {
            Ok(())
        }
    }
}

impl KeyStore for FlakyStore {
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.check()?;
        self.inner.get(id).await
    }

    async fn list(&self, principal: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        self.check()?;
        self.inner.list(principal).await
    }

    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert(record).await
    }

    async fn update(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.check()?;
        self.inner.update(record).await
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete(id).await
    }

    async fn record_last_used(&self, used: Vec<(KeyId, Timestamp)>) -> Result<(), StoreError> {
        self.check()?;
        self.last_used_writes.fetch_add(1, Ordering::SeqCst);
        self.inner.record_last_used(used).await
    }

    fn subscribe(&self, listener: Weak<dyn ChangeListener>) {
        self.inner.subscribe(listener);
    }
}

/// Runs the `tower-apikey` binary with `stdin` and waits for it.
#[cfg(feature = "cli")]
pub fn run_cli(args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_tower-apikey"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before reading stdin closes it: not an error here.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}
