//! The key lifecycle as IBM Maximo, MAS and BMC Helix run it, on any [`KeyStore`](crate::KeyStore).
//!
//! [`KeyManager`] is what the CLI and an admin API call: issue within a per-principal limit,
//! rotate with a grace period, regenerate a secret, deactivate, activate, revoke, delete
//! (protected keys only when forced), and export or import the whole store. Every change goes
//! through the store, so every validator subscribed to it drops the key at once.
//!
//! The rules:
//! - at most [`max_keys_per_principal`](KeyManager::max_keys_per_principal) live keys per
//!   principal (default 2, so a key can be rotated with no gap; 1 is Maximo's "Only one API
//!   key allowed per user"). Deactivated keys count; revoked and expired keys do not;
//! - a plaintext key is returned once, when issued or regenerated; only its record is kept;
//! - regenerating keeps the id and metadata and is refused while the key is not active;
//! - revoked is final: such a key cannot be activated, deactivated or regenerated.
//!
//! # Example
//! ```
//! use tower_apikey::lifecycle::{KeyManager, NewKey, LifecycleError};
//! use tower_apikey::MemoryStore;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let keys = KeyManager::new(MemoryStore::new());
//! let (first, _key) = keys.issue(NewKey::new("alice")).await?;
//! keys.issue(NewKey::new("alice")).await?;
//! // A third live key is over the default limit of two.
//! assert!(matches!(keys.issue(NewKey::new("alice")).await, Err(LifecycleError::LimitReached { .. })));
//!
//! keys.revoke(&first.id).await?;
//! let (_second, _new_key) = keys.issue(NewKey::new("alice")).await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod error;
mod expiry;
mod export;
mod input;
mod usage;

use std::num::NonZeroUsize;
use std::sync::Arc;

use jiff::{Span, Timestamp};

pub use error::{InvalidInput, LifecycleError};
#[cfg(feature = "cli")]
pub use export::MaximoExportError;
pub use export::{Export, MaximoKey, EXPORT_VERSION};
pub use input::{
    KeyPatch, NewKey, MAX_DESCRIPTION_CHARS, MAX_LOCATION_CHARS, MAX_NAME_CHARS, MAX_PERMISSIONS,
    MAX_PERMISSION_CHARS, MAX_PRINCIPAL_CHARS,
};

use crate::hash::{HashParams, Pbkdf2Hash};
use crate::key::{KeyFormat, KeyId, PlaintextKey, PresentedKey, RngError};
use crate::record::record_time;
use crate::record::{KeyRecord, KeyStatus, Revocation};
use crate::store::{full_handle, ErasedStore, KeyQuery, OutboxStore, StoreError, UsageStore};
pub use expiry::{Expiry, ExpiryError};

/// Runs the key lifecycle on a store. See the [module docs](self).
///
/// Cloning is cheap: the store is shared.
#[derive(Debug, Clone)]
pub struct KeyManager {
    store: Arc<dyn ErasedStore>,
    format: KeyFormat,
    params: HashParams,
    max_keys: usize,
    actor: Option<String>,
}

impl KeyManager {
    /// A manager over `store` with the default key format, Maximo's PBKDF2 parameters and a
    /// limit of two live keys per principal. The manager is an operator's whole view of the
    /// keys — their changes, their usage and their audit trail — so it takes a store with
    /// every capability.
    pub fn new(store: impl UsageStore + OutboxStore) -> Self {
        Self {
            store: full_handle(store),
            format: KeyFormat::default(),
            params: HashParams::default(),
            max_keys: 2,
            actor: None,
        }
    }

    /// The format new keys are made in.
    pub fn key_format(mut self, format: KeyFormat) -> Self {
        self.format = format;
        self
    }

    /// How new keys are hashed.
    pub fn hash_params(mut self, params: HashParams) -> Self {
        self.params = params;
        self
    }

    /// The most live keys one principal may hold (default 2).
    pub fn max_keys_per_principal(mut self, n: NonZeroUsize) -> Self {
        self.max_keys = n.get();
        self
    }

    /// Who is making the changes, recorded as `created_by` / `updated_by`.
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// This manager with another [`actor`](Self::actor), for one change made on someone's
    /// behalf (an admin API request, say).
    pub fn acting_as(&self, actor: impl Into<String>) -> Self {
        self.clone().actor(actor)
    }

    /// The most live keys one principal may hold.
    pub fn limit(&self) -> usize {
        self.max_keys
    }

    /// The record with this id.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`], or the store's failure.
    pub async fn get(&self, id: &KeyId) -> Result<KeyRecord, LifecycleError> {
        self.store
            .get(id)
            .await?
            .ok_or_else(|| LifecycleError::NotFound(id.clone()))
    }

    /// Every record, or those of one principal, ordered by id.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn list(&self, principal: Option<&str>) -> Result<Vec<KeyRecord>, LifecycleError> {
        Ok(self
            .store
            .query(&KeyQuery {
                principal: principal.map(str::to_owned),
                ..KeyQuery::new()
            })
            .await?)
    }

    /// One page of records, as [`KeyStore::query`](crate::KeyStore::query) reads it.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn query(&self, query: &KeyQuery) -> Result<Vec<KeyRecord>, LifecycleError> {
        Ok(self.store.query(query).await?)
    }

    /// Issues a new key: returns its record and the key, which is not kept anywhere.
    ///
    /// # Errors
    /// [`LifecycleError::LimitReached`]; [`LifecycleError::Invalid`] for an empty principal;
    /// the store's failure.
    pub async fn issue(&self, new: NewKey) -> Result<(KeyRecord, PlaintextKey), LifecycleError> {
        let now = record_time();
        let (format, params) = (self.format.clone(), self.params);
        let principal = new.checked()?;
        let (record, key) =
            blocking(move || KeyRecord::generate(principal, &format, &params)).await??;
        let record = self.fill(record, &new, now)?;
        self.store
            .insert_limited(record.clone(), self.max_keys)
            .await?;
        Ok((record, key))
    }

    /// Stores a key the caller already has (Maximo's `insertapikey`), within the limit.
    ///
    /// A key in this manager's format keeps the id it carries; any other key is stored as a
    /// legacy opaque key, under a new id, with its lookup digest already known.
    ///
    /// # Errors
    /// As [`issue`](Self::issue); [`LifecycleError::AlreadyExists`] if the key's id is taken.
    pub async fn issue_with_key(
        &self,
        new: NewKey,
        key: &PresentedKey,
    ) -> Result<KeyRecord, LifecycleError> {
        let now = record_time();
        let principal = new.checked()?;
        let (id, legacy) = match self.format.parse(key) {
            Ok(parsed) => (KeyId::new(parsed.id()).map_err(InvalidInput::KeyId)?, false),
            Err(_) => (KeyId::generate()?, true),
        };
        let params = self.params;
        let secret = key.clone();
        let hash = blocking(move || Pbkdf2Hash::create(secret.expose(), &params)).await??;
        let mut record = KeyRecord::new(id, principal, hash, self.params.prf());
        if legacy {
            record.legacy = true;
            record.lookup_digest = Some(crate::key::lookup_digest(key.expose()));
        }
        let record = self.fill(record, &new, now)?;
        self.store
            .insert_limited(record.clone(), self.max_keys)
            .await?;
        Ok(record)
    }

    /// Issues a second key for the key's principal, with the same name, description,
    /// permissions and protection, and a lifetime as long as the old key's had; the old key
    /// then expires after `grace` (or at its own expiry, if sooner).
    ///
    /// With a grace of zero the old key expires first, so a limit of one key still rotates.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`]; [`Inactive`](LifecycleError::Inactive) or
    /// [`Revoked`](LifecycleError::Revoked) for a key that is not active;
    /// [`LimitReached`](LifecycleError::LimitReached); the store's failure.
    pub async fn rotate(
        &self,
        id: &KeyId,
        grace: Span,
    ) -> Result<(KeyRecord, PlaintextKey), LifecycleError> {
        let old = self.get(id).await?;
        require_active(&old)?;
        if grace.is_negative() {
            return Err(InvalidInput::NegativeGrace.into());
        }
        let now = record_time();
        let grace_end = Expiry::After(grace)
            .resolve(now)
            .map_err(|_| InvalidInput::GraceOutOfRange)?
            .unwrap_or(now);
        let lifetime = old
            .expires_at
            .map(|at| old.created_at.duration_until(at))
            .filter(|d| d.is_positive());
        let mut new = NewKey::new(old.principal.clone()).protected(old.protected);
        new.name = old.name.clone();
        new.description = old.description.clone();
        new.permissions = old.permissions.clone();
        new.rate_limit = old.rate_limit;
        new.quota = old.quota;
        new.allowed_ips = old.allowed_ips.clone();
        new.replaces = Some(old.id.clone());
        if let Some(lifetime) = lifetime {
            new.expiry = Expiry::At(
                now.checked_add(lifetime)
                    .map_err(|_| ExpiryError::OutOfRange)?,
            );
        }
        let retire = |old: &mut KeyRecord| {
            old.expires_at = Some(old.expires_at.map_or(grace_end, |at| at.min(grace_end)));
            Ok(true)
        };
        if grace_end <= now {
            // No overlap wanted: retire the old key first, so it does not count.
            self.change(id, retire).await?;
            self.issue(new).await
        } else {
            let issued = self.issue(new).await?;
            self.change(id, retire).await?;
            Ok(issued)
        }
    }

    /// A new secret for the same id and metadata; the old secret is refused from now on.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`]; [`Inactive`](LifecycleError::Inactive) or
    /// [`Revoked`](LifecycleError::Revoked) for a key that is not active; the store's failure.
    pub async fn regenerate(
        &self,
        id: &KeyId,
    ) -> Result<(KeyRecord, PlaintextKey), LifecycleError> {
        require_active(&self.get(id).await?)?;
        let (format, params, key_id) = (self.format.clone(), self.params, id.clone());
        let (key, hash) = blocking(move || {
            let key = format.generate_for(&key_id)?;
            let hash = Pbkdf2Hash::create(key.expose().as_bytes(), &params)?;
            Ok::<_, RngError>((key, hash))
        })
        .await??;
        let record = self
            .change(id, |record| {
                // Checked again: the key may have been deactivated during the derivation.
                require_active(record)?;
                record.hash = hash.clone();
                record.prf = self.params.prf();
                record.legacy = false;
                record.lookup_digest = None;
                Ok(true)
            })
            .await?;
        Ok((record, key))
    }

    /// Switches a key off until [`activate`](Self::activate)d.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`]; [`Revoked`](LifecycleError::Revoked).
    pub async fn deactivate(&self, id: &KeyId) -> Result<KeyRecord, LifecycleError> {
        self.set_status(id, KeyStatus::Inactive).await
    }

    /// Switches a deactivated key back on.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`]; [`Revoked`](LifecycleError::Revoked).
    pub async fn activate(&self, id: &KeyId) -> Result<KeyRecord, LifecycleError> {
        self.set_status(id, KeyStatus::Active).await
    }

    /// Withdraws a key for good (it stays listed until deleted), giving no reason.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`]; the store's failure.
    pub async fn revoke(&self, id: &KeyId) -> Result<KeyRecord, LifecycleError> {
        self.revoke_with(id, Revocation::default()).await
    }

    /// Withdraws a key for good, keeping why and where on the record. A key already revoked
    /// keeps its first revocation: the record as stored is returned unchanged.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`]; [`Invalid`](LifecycleError::Invalid) for a location
    /// over [`MAX_LOCATION_CHARS`] or with control characters;
    /// the store's failure.
    pub async fn revoke_with(
        &self,
        id: &KeyId,
        revocation: Revocation,
    ) -> Result<KeyRecord, LifecycleError> {
        input::check_revocation(&revocation)?;
        self.change(id, |record| {
            if record.status == KeyStatus::Revoked {
                return Ok(false);
            }
            record.status = KeyStatus::Revoked;
            record.revocation = Some(revocation.clone());
            Ok(true)
        })
        .await
    }

    /// Changes a key's name, description, permissions, expiry or status in one store update.
    ///
    /// A revoked key can still be renamed or described, but not given back a status,
    /// permissions or a lifetime. Returns the record as stored.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`]; [`Revoked`](LifecycleError::Revoked) for a change of
    /// status, permissions or expiry on a revoked key; [`Expiry`](LifecycleError::Expiry);
    /// the store's failure.
    pub async fn update(&self, id: &KeyId, patch: KeyPatch) -> Result<KeyRecord, LifecycleError> {
        patch.check()?;
        if patch.is_empty() {
            return self.get(id).await;
        }
        let revives = patch.status.is_some_and(|s| s != KeyStatus::Revoked)
            || patch.permissions.is_some()
            || patch.expiry.is_some();
        let now = record_time();
        let expires_at = patch.expiry.map(|e| e.resolve(now)).transpose()?;
        self.change(id, |record| {
            if record.status == KeyStatus::Revoked && revives {
                return Err(LifecycleError::Revoked(record.id.clone()));
            }
            if let Some(name) = &patch.name {
                record.name.clone_from(name);
            }
            if let Some(description) = &patch.description {
                record.description.clone_from(description);
            }
            if let Some(permissions) = &patch.permissions {
                record.permissions.clone_from(permissions);
            }
            if let Some(expires_at) = expires_at {
                record.expires_at = expires_at;
            }
            if let Some(status) = patch.status {
                if status == KeyStatus::Revoked && record.status != status {
                    record.revocation = Some(Revocation::default());
                }
                record.status = status;
            }
            if let Some(limit) = patch.rate_limit {
                record.rate_limit = limit;
            }
            if let Some(quota) = patch.quota {
                record.set_quota(quota);
            }
            if let Some(allowed) = &patch.allowed_ips {
                record.allowed_ips.clone_from(allowed);
            }
            Ok(true)
        })
        .await
    }

    /// Deletes a key's record; a protected key only with `force`.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`]; [`Protected`](LifecycleError::Protected).
    pub async fn delete(&self, id: &KeyId, force: bool) -> Result<KeyRecord, LifecycleError> {
        let record = self.get(id).await?;
        if record.protected && !force {
            return Err(LifecycleError::Protected(id.clone()));
        }
        // Stamped first, so the deletion's event names who deleted it (a stamp alone is no
        // event). A change made meanwhile wins: the delete is then refused as a conflict.
        let mut stamped = record.clone();
        self.stamp(&mut stamped, record_time());
        if stamped != record {
            self.store.replace(&record, stamped).await?;
        }
        if !self.store.delete(id).await? {
            return Err(LifecycleError::NotFound(id.clone()));
        }
        Ok(record)
    }

    async fn set_status(&self, id: &KeyId, status: KeyStatus) -> Result<KeyRecord, LifecycleError> {
        self.change(id, |record| {
            if record.status == status {
                return Ok(false);
            }
            if record.status == KeyStatus::Revoked {
                return Err(LifecycleError::Revoked(record.id.clone()));
            }
            record.status = status;
            Ok(true)
        })
        .await
    }

    /// Reads a record, lets `edit` change it (`Ok(false)`: nothing to write), and writes it
    /// back only if no one changed it meanwhile; otherwise reads it again and re-applies
    /// `edit`, whose rules then see the newer record (a revocation made meanwhile stands).
    async fn change(
        &self,
        id: &KeyId,
        mut edit: impl FnMut(&mut KeyRecord) -> Result<bool, LifecycleError>,
    ) -> Result<KeyRecord, LifecycleError> {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            let current = self.get(id).await?;
            let mut record = current.clone();
            if !edit(&mut record)? {
                return Ok(current);
            }
            self.stamp(&mut record, record_time());
            match self.store.replace(&current, record.clone()).await {
                Ok(()) => return Ok(record),
                Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(LifecycleError::Conflict(id.clone()))
    }

    /// Copies a new key's metadata onto a fresh record.
    fn fill(
        &self,
        mut record: KeyRecord,
        new: &NewKey,
        now: Timestamp,
    ) -> Result<KeyRecord, LifecycleError> {
        record.name.clone_from(&new.name);
        record.description.clone_from(&new.description);
        record.permissions.clone_from(&new.permissions);
        record.protected = new.protected;
        record.expires_at = new.expiry.resolve(now)?;
        record.rate_limit = new.rate_limit;
        record.set_quota(new.quota);
        record.allowed_ips.clone_from(&new.allowed_ips);
        record.replaces.clone_from(&new.replaces);
        record.created_at = now;
        record.created_by.clone_from(&self.actor);
        Ok(record)
    }

    fn stamp(&self, record: &mut KeyRecord, now: Timestamp) {
        record.updated_at = Some(now);
        record.updated_by.clone_from(&self.actor);
    }
}

fn require_active(record: &KeyRecord) -> Result<(), LifecycleError> {
    match record.status {
        KeyStatus::Active => Ok(()),
        KeyStatus::Inactive => Err(LifecycleError::Inactive(record.id.clone())),
        KeyStatus::Revoked => Err(LifecycleError::Revoked(record.id.clone())),
    }
}

/// Runs PBKDF2 work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LifecycleError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(LifecycleError::Internal)
}
