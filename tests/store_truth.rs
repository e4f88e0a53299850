//! The file on disk is the truth: a property test over file store operations from several
//! handles and by hand. After every step and one poll, the validator's answer for every key
//! ever issued equals what the file on disk says of it.
//!
//! Steps: issue, revoke, deactivate, activate, regenerate and delete, each the CLI's way (a
//! fresh handle per command, as a separate process) or the admin API's way (the server's own
//! handle); and by hand: back up the file, restore an older copy (in place or by rename),
//! delete it, strip its `revision`, set its `revision` back to 0, corrupt it, and make it
//! valid again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use tower_apikey::hash::HashParams;
use tower_apikey::key::{KeyId, PresentedKey};
use tower_apikey::{FileStore, KeyManager, KeyRecord, KeyStatus, NewKey, Validator};

#[derive(Debug, Clone)]
enum Op {
    Issue { cli: bool, principal: u8 },
    Revoke { cli: bool, key: usize },
    Deactivate { cli: bool, key: usize },
    Activate { cli: bool, key: usize },
    Regenerate { cli: bool, key: usize },
    Delete { cli: bool, key: usize },
    Backup,
    Restore { in_place: bool },
    DeleteFile,
    StripRevision,
    ZeroRevision,
    Corrupt,
    Repair,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0usize..8;
    prop_oneof![
        4 => (any::<bool>(), 0u8..3).prop_map(|(cli, principal)| Op::Issue { cli, principal }),
        2 => (any::<bool>(), key.clone()).prop_map(|(cli, key)| Op::Revoke { cli, key }),
        2 => (any::<bool>(), key.clone()).prop_map(|(cli, key)| Op::Deactivate { cli, key }),
        2 => (any::<bool>(), key.clone()).prop_map(|(cli, key)| Op::Activate { cli, key }),
        2 => (any::<bool>(), key.clone()).prop_map(|(cli, key)| Op::Regenerate { cli, key }),
        1 => (any::<bool>(), key).prop_map(|(cli, key)| Op::Delete { cli, key }),
        2 => Just(Op::Backup),
        2 => any::<bool>().prop_map(|in_place| Op::Restore { in_place }),
        1 => Just(Op::DeleteFile),
        1 => Just(Op::StripRevision),
        1 => Just(Op::ZeroRevision),
        1 => Just(Op::Corrupt),
        1 => Just(Op::Repair),
    ]
}

struct World {
    path: PathBuf,
    server: FileStore,
    validator: Validator,
    /// Every key issued or regenerated, with the id it names.
    keys: Vec<(KeyId, String)>,
    backup: Option<Vec<u8>>,
    /// The last file contents that parsed, for `Repair` and as the truth while corrupt.
    last_good: Option<Vec<u8>>,
}

fn params() -> HashParams {
    HashParams::default().with_iterations(10).unwrap()
}

fn manager(store: FileStore) -> KeyManager {
    KeyManager::new(store)
        .hash_params(params())
        .max_keys_per_principal(std::num::NonZeroUsize::new(100).unwrap())
}

/// Writes `bytes` over the file as an editor or `cp` does (same inode), or as a restore
/// tool does (a new file renamed over it).
fn write_file(path: &Path, bytes: &[u8], in_place: bool) {
    if in_place {
        std::fs::write(path, bytes).unwrap();
    } else {
        let tmp = path.with_extension("restore");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
}

/// The records the file holds, or `None` when it does not parse (then the last good
/// contents stay the truth).
fn on_disk(path: &Path) -> Option<Vec<KeyRecord>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(Vec::new()),
        Err(e) => panic!("{e}"),
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    serde_json::from_value(value.get("keys")?.clone()).ok()
}

impl World {
    async fn new(dir: &Path) -> Self {
        let path = dir.join("apikeys.json");
        let server = FileStore::builder(&path).no_polling().open().await.unwrap();
        let validator = Validator::builder(server.clone())
            .negative_ttl(Duration::from_secs(600))
            .cache_ttl(Duration::from_secs(600))
            .last_used_flush_interval(None)
            .build();
        Self {
            path,
            server,
            validator,
            keys: Vec::new(),
            backup: None,
            last_good: None,
        }
    }

    /// The handle a step writes through: the server's own, or a fresh one as the CLI opens.
    async fn handle(&self, cli: bool) -> KeyManager {
        if cli {
            let store = FileStore::builder(&self.path).no_polling().open().await;
            // A corrupt file cannot be opened: the CLI reports it and changes nothing.
            return manager(store.unwrap_or_else(|_| self.server.clone()));
        }
        manager(self.server.clone())
    }

    fn id(&self, key: usize) -> Option<KeyId> {
        self.keys.get(key).map(|(id, _)| id.clone())
    }

    async fn apply(&mut self, op: &Op) {
        match *op {
            Op::Issue { cli, principal } => {
                let new = NewKey::new(format!("user{principal}"));
                if let Ok((record, key)) = self.handle(cli).await.issue(new).await {
                    self.keys.push((record.id, key.expose().to_owned()));
                }
            }
            Op::Revoke { cli, key } => {
                if let Some(id) = self.id(key) {
                    let _ = self.handle(cli).await.revoke(&id).await;
                }
            }
            Op::Deactivate { cli, key } => {
                if let Some(id) = self.id(key) {
                    let _ = self.handle(cli).await.deactivate(&id).await;
                }
            }
            Op::Activate { cli, key } => {
                if let Some(id) = self.id(key) {
                    let _ = self.handle(cli).await.activate(&id).await;
                }
            }
            Op::Regenerate { cli, key } => {
                if let Some(id) = self.id(key) {
                    if let Ok((record, key)) = self.handle(cli).await.regenerate(&id).await {
                        self.keys.push((record.id, key.expose().to_owned()));
                    }
                }
            }
            Op::Delete { cli, key } => {
                if let Some(id) = self.id(key) {
                    let _ = self.handle(cli).await.delete(&id, true).await;
                }
            }
            Op::Backup => self.backup = std::fs::read(&self.path).ok(),
            Op::Restore { in_place } => {
                if let Some(backup) = &self.backup {
                    write_file(&self.path, backup, in_place);
                }
            }
            Op::DeleteFile => {
                let _ = std::fs::remove_file(&self.path);
            }
            Op::StripRevision | Op::ZeroRevision => {
                let Ok(bytes) = std::fs::read(&self.path) else {
                    return;
                };
                let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                    return;
                };
                let object = value.as_object_mut().unwrap();
                if matches!(op, Op::StripRevision) {
                    object.remove("revision");
                } else {
                    object.insert("revision".into(), 0.into());
                }
                write_file(
                    &self.path,
                    &serde_json::to_vec_pretty(&value).unwrap(),
                    true,
                );
            }
            Op::Corrupt => {
                if self.path.exists() {
                    write_file(&self.path, b"{\"version\": 1, \"keys\": [", true);
                }
            }
            Op::Repair => {
                if on_disk(&self.path).is_none() {
                    let good = self
                        .last_good
                        .clone()
                        .unwrap_or_else(|| b"{\"version\":1,\"keys\":[]}".to_vec());
                    write_file(&self.path, &good, false);
                }
            }
        }
    }

    /// One poll, then the validator against the file, key by key.
    async fn check(&mut self, step: usize, op: &Op) {
        let _ = self.server.reload().await;
        let truth = match on_disk(&self.path) {
            Some(records) => {
                self.last_good = std::fs::read(&self.path).ok();
                records
            }
            None => {
                let good = self.last_good.as_deref().unwrap_or(b"{\"keys\":[]}");
                let value: serde_json::Value = serde_json::from_slice(good).unwrap();
                serde_json::from_value(value["keys"].clone()).unwrap()
            }
        };
        let now = jiff::Timestamp::now();
        for (id, key) in &self.keys {
            let expected = truth.iter().any(|r| {
                r.id == *id
                    && r.status == KeyStatus::Active
                    && !r.is_expired_at(now)
                    && r.hash.verify(r.prf, key.as_bytes())
            });
            let presented = PresentedKey::new(key.as_bytes()).unwrap();
            let answer = self.validator.validate(&presented).await;
            assert_eq!(
                answer.is_ok(),
                expected,
                "step {step} ({op:?}): key {id} is {} on disk but the validator says {answer:?}",
                if expected { "valid" } else { "not valid" },
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_validator_converges_to_the_file_after_every_step(ops in proptest::collection::vec(op(), 1..24)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut world = World::new(dir.path()).await;
            for (step, op) in ops.iter().enumerate() {
                world.apply(op).await;
                world.check(step, op).await;
            }
        });
    }
}

/// The findings behind the property, as plain steps: a lower revision on disk (a restored
/// backup, a file deleted and issued into anew, a file without `revision`) is the truth.
#[tokio::test]
async fn a_lower_revision_on_disk_is_still_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = World::new(dir.path()).await;
    let steps = [
        Op::Issue {
            cli: false,
            principal: 0,
        },
        Op::Backup,
        Op::Issue {
            cli: false,
            principal: 1,
        },
        Op::Revoke { cli: false, key: 1 },
        Op::Issue {
            cli: true,
            principal: 2,
        },
        // The backup knows only key 0: keys 1 and 2 go.
        Op::Restore { in_place: true },
        // A revocation after the restore lands.
        Op::Revoke { cli: true, key: 0 },
        Op::DeleteFile,
        Op::Issue {
            cli: true,
            principal: 0,
        },
        Op::StripRevision,
        Op::Revoke { cli: true, key: 3 },
        Op::Issue {
            cli: true,
            principal: 1,
        },
        Op::ZeroRevision,
        Op::Deactivate { cli: true, key: 4 },
        Op::Corrupt,
        Op::Repair,
        Op::Activate { cli: false, key: 4 },
    ];
    for (step, op) in steps.iter().enumerate() {
        world.apply(op).await;
        world.check(step, op).await;
    }
    let key = |i: usize| PresentedKey::new(world.keys[i].1.as_bytes()).unwrap();
    assert!(world.validator.validate(&key(4)).await.is_ok());
    assert!(world.validator.validate(&key(0)).await.is_err());
}

/// Its own writes are never undone by an older read of its own: the server writes while
/// its poll reads, many times over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_are_never_undone_by_a_slower_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apikeys.json");
    let server = FileStore::builder(&path)
        .poll_interval(Duration::from_millis(10))
        .open()
        .await
        .unwrap();
    let keys = manager(server.clone());
    let mut issued = Vec::new();
    for i in 0..40 {
        let (record, _) = keys.issue(NewKey::new(format!("p{i}"))).await.unwrap();
        issued.push(record.id.clone());
        // Revoking one already revoked is refused; the write races the poll either way.
        let _ = keys.revoke(&issued[i / 2]).await;
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let on_file = on_disk(&path).unwrap();
    for record in on_file {
        let held = tower_apikey::KeyStore::get(&server, &record.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(held.status, record.status, "{}", record.id);
    }
}
