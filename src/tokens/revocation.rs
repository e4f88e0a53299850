//! Refusing the tokens of a key that changed: servers that share the key store hear of every
//! change on its feed, and a token issued before the change is checked against the record
//! once — refused if the key is gone, revoked, inactive or expired, regenerated since (its
//! `key_version`), or no longer holds a permission of the token's scope.
//!
//! A changed key's id is held (with the time of the change) until every token issued before
//! it has expired: [`MAX_TOKEN_LIFETIME`] and the largest leeway. Unchanged keys cost one
//! atomic load per request.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;

use super::issuer::{MAX_LEEWAY, MAX_TOKEN_LIFETIME};
use crate::hash::KeyVersion;
use crate::key::KeyId;
use crate::record::{KeyRecord, KeyStatus};
use crate::store::{ChangeListener, ErasedKeyStore, KeyStore, StoreChange, StoreError};

/// How long a change is held: until the last token issued before it has expired.
const HELD_FOR: i64 = (MAX_TOKEN_LIFETIME.as_secs() + MAX_LEEWAY.as_secs()) as i64 + ISSUED_UNAWARE;
/// How long after a change a token may still be issued by a server that has not heard of it
/// (the change feed's bound is a second): such tokens are checked against the record too.
const ISSUED_UNAWARE: i64 = 2;
/// More changed ids than this within a token lifetime: forget them all and check every
/// earlier token once instead (a bulk import, a restored backup).
const MAX_HELD: usize = 100_000;
/// How long a record read may take before the token is answered 503.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The change feed of a key store, as the tokens of its keys see it. Cheap to clone.
///
/// Give it to [`TokenVerifierBuilder::revocations`](super::TokenVerifierBuilder::revocations) on a
/// service that shares the store with the token endpoint.
#[derive(Clone)]
pub struct TokenRevocations {
    inner: Arc<Inner>,
}

impl fmt::Debug for TokenRevocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRevocations")
            .field("changed_keys", &self.inner.held().changed.len())
            .field("generation", &self.inner.generation.load(Ordering::Relaxed))
            .finish()
    }
}

struct Inner {
    store: Arc<dyn ErasedKeyStore>,
    /// Bumped by every change: a token checked at this generation needs no look again.
    generation: AtomicU64,
    held: Mutex<Held>,
}

/// A change: when (unix seconds) and at which generation.
#[derive(Clone, Copy)]
struct Change {
    at: i64,
    generation: u64,
}

#[derive(Default)]
struct Held {
    changed: HashMap<KeyId, Change>,
    /// Any key may have changed (a lost notification, too many changes).
    reset: Option<Change>,
    /// Records read since their last change: the generation read at, and what they said.
    standings: HashMap<KeyId, (u64, Standing)>,
}

#[derive(Clone)]
enum Standing {
    /// Deleted, revoked, inactive or expired.
    Gone,
    Usable {
        version: KeyVersion,
        permissions: Arc<[String]>,
    },
}

/// What a token presented needs.
pub(crate) enum Check {
    /// Nothing changed about its key since it was issued, or the key was read since.
    Pass,
    Refuse,
    /// Its key changed since: read the record first.
    Read,
}

/// What a token is checked with: its key, when it was issued, the version and scope it carries.
pub(crate) struct TokenFacts<'a> {
    pub(crate) key_id: &'a KeyId,
    pub(crate) iat: i64,
    pub(crate) version: Option<KeyVersion>,
    pub(crate) permissions: &'a [String],
}

impl TokenRevocations {
    /// Follows `store`'s change feed from now on.
    pub fn watch<S: KeyStore>(store: S) -> Self {
        let inner = Arc::new(Inner {
            store: Arc::new(store),
            generation: AtomicU64::new(0),
            held: Mutex::new(Held::default()),
        });
        let listener: Arc<dyn ChangeListener> = inner.clone();
        inner.store.subscribe(Arc::downgrade(&listener));
        Self { inner }
    }

    /// The generation now: a token checked at it needs no look again until it moves.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Decides from what is held, without I/O.
    pub(crate) fn check_now(&self, token: &TokenFacts<'_>) -> Check {
        let held = self.inner.held();
        let change = [held.changed.get(token.key_id).copied(), held.reset]
            .into_iter()
            .flatten()
            // A token issued shortly after a change may come from a server that had not yet
            // heard of it (its cache, its feed): those are checked too.
            .filter(|change| change.at + ISSUED_UNAWARE >= token.iat)
            .max_by_key(|change| change.generation);
        let Some(change) = change else {
            return Check::Pass;
        };
        match held.standings.get(token.key_id) {
            Some((read_at, standing)) if *read_at >= change.generation => {
                if standing.admits(token) {
                    Check::Pass
                } else {
                    Check::Refuse
                }
            }
            _ => Check::Read,
        }
    }

    /// Decides, reading the key's record when it changed after the token was issued.
    ///
    /// # Errors
    /// The store's failure, or a timeout, when the record had to be read.
    pub(crate) async fn check(&self, token: &TokenFacts<'_>) -> Result<bool, StoreError> {
        match self.check_now(token) {
            Check::Pass => return Ok(true),
            Check::Refuse => return Ok(false),
            Check::Read => {}
        }
        // The generation before the read: a change during it is newer and asks again.
        let generation = self.generation();
        let record = tokio::time::timeout(READ_TIMEOUT, self.inner.store.get(token.key_id))
            .await
            .map_err(|_| {
                StoreError::Unavailable("the key store did not answer in time".into())
            })??;
        let standing = Standing::of(record.as_ref(), Timestamp::now());
        let admits = standing.admits(token);
        let mut held = self.inner.held();
        let newer = held
            .standings
            .get(token.key_id)
            .is_some_and(|(read_at, _)| *read_at > generation);
        if !newer {
            held.standings
                .insert(token.key_id.clone(), (generation, standing));
        }
        Ok(admits)
    }
}

impl Standing {
    fn of(record: Option<&KeyRecord>, now: Timestamp) -> Self {
        match record {
            Some(record) if record.status == KeyStatus::Active && !record.is_expired_at(now) => {
                Standing::Usable {
                    version: KeyVersion::of(&record.hash),
                    permissions: record.permissions.clone().into(),
                }
            }
            _ => Standing::Gone,
        }
    }

    fn admits(&self, token: &TokenFacts<'_>) -> bool {
        match self {
            Standing::Gone => false,
            Standing::Usable {
                version,
                permissions,
            } => {
                token.version.is_none_or(|carried| carried == *version)
                    && token
                        .permissions
                        .iter()
                        .all(|scope| crate::identity::permission_covers(permissions, scope))
            }
        }
    }
}

impl Inner {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ChangeListener for Inner {
    fn on_change(&self, change: &StoreChange) {
        let mut held = self.held();
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let now = Timestamp::now().as_second();
        let noted = Change {
            at: now,
            generation,
        };
        match change {
            StoreChange::Changed(id) => {
                held.standings.remove(id);
                held.changed.insert(id.clone(), noted);
                if held.changed.len() > MAX_HELD {
                    held.changed.retain(|_, change| change.at + HELD_FOR >= now);
                    let Held {
                        changed, standings, ..
                    } = &mut *held;
                    standings.retain(|id, _| changed.contains_key(id));
                }
                if held.changed.len() > MAX_HELD {
                    held.changed.clear();
                    held.standings.clear();
                    held.reset = Some(noted);
                }
            }
            StoreChange::Reset => {
                held.changed.clear();
                held.standings.clear();
                held.reset = Some(noted);
            }
        }
        if held.reset.is_some_and(|reset| reset.at + HELD_FOR < now) {
            held.reset = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{HashParams, Pbkdf2Hash};
    use crate::key::KeyFormat;
    use crate::MemoryStore;

    #[tokio::test]
    async fn a_token_issued_just_after_a_change_by_a_server_unaware_of_it_is_checked() {
        let store = MemoryStore::new();
        let params = HashParams::default().with_iterations(1).unwrap();
        let (record, _) = KeyRecord::generate("alice", &KeyFormat::default(), &params).unwrap();
        KeyStore::insert(&store, record.clone()).await.unwrap();
        let revocations = TokenRevocations::watch(store.clone());
        let old = KeyVersion::of(&record.hash);
        // Regenerated: a new secret under the same id.
        let mut regenerated = record.clone();
        regenerated.hash = Pbkdf2Hash::create(b"another secret", &params).unwrap();
        KeyStore::replace(&store, &record, regenerated.clone())
            .await
            .unwrap();
        let now = Timestamp::now().as_second();
        let permissions: Vec<String> = Vec::new();
        let facts = |iat: i64, version: KeyVersion| TokenFacts {
            key_id: &record.id,
            iat,
            version: Some(version),
            permissions: &permissions,
        };
        // Issued a second after the change with the old secret's version: refused.
        assert!(!revocations.check(&facts(now + 1, old)).await.unwrap());
        // With the new one: admitted.
        let new = KeyVersion::of(&regenerated.hash);
        assert!(revocations.check(&facts(now + 1, new)).await.unwrap());
        // Issued well after the change: nothing to check.
        assert!(matches!(
            revocations.check_now(&facts(now + ISSUED_UNAWARE + 1, old)),
            Check::Pass
        ));
    }
}
