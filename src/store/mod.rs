//! Where key records are kept: the store contract in four capabilities, and its backends.
//!
//! A store holds [`KeyRecord`](crate::KeyRecord)s — never a plaintext key — and tells subscribers when a record
//! changes, so a [`Validator`](crate::Validator)'s cache drops a revoked key at once.
//! Backends: [`MemoryStore`] (in process), [`FileStore`] (one JSON file, written atomically,
//! reloaded when another process such as the CLI changes it), and `PgKeyStore` (feature
//! `postgres`: PostgreSQL, shared by a fleet that hears of every change through
//! LISTEN/NOTIFY and a change log). Each has every capability; [`BoxKeyStore`] holds any of
//! them.
//!
//! # Capabilities
//! The contract is split where its parts are used apart, as tower-sessions splits
//! `SessionStore` from `ExpiredDeletion`:
//!
//! | trait | what | who needs it |
//! |---|---|---|
//! | [`KeyStore`] | records, read and written atomically; the change feed | everything |
//! | [`UsageStore`] | last use, quota leases, rate-limit counts shared by every validator, requests per key and hour | a [`Validator`](crate::Validator); a [`KeyManager`](crate::KeyManager), which reads usage |
//! | [`OutboxStore`] | key events written with their change; claims for delivery | a webhook sender, the expiry sweeper; a [`KeyManager`](crate::KeyManager), which reads the audit trail |
//! | [`SessionStore`] | people signed in to the console, by the digest of their session id | the console (feature `console`) |
//!
//! Why these seams: records are what an operator changes, and every change is a
//! compare-and-swap, a feed notification and (with an outbox) an event. Usage is what traffic
//! writes, batched and never a change: it has its own write paths (one statement per batch on
//! PostgreSQL), and a store that only holds keys (a read-only one, a cache in front of
//! another system) has none. The outbox is delivery state a sender claims. A trait keeps at
//! most eight methods, each either required or correct by default for every store.
//!
//! A part that needs a capability takes it as a bound, so a store without it does not
//! compile there: `Validator::builder` takes a [`UsageStore`], `WebhookSender::new` an
//! [`OutboxStore`]. Nothing is silently skipped: a store cannot, for one, opt out of rate
//! sharing and leave a fleet limiting each server alone without saying so — sharing is a
//! required method of [`UsageStore`], which a fleet's validators need.
//!
//! The type-erased store ([`BoxKeyStore`]) and the test forwarding wrapper
//! (`test_util::Forward`) are generated from the one list of methods each capability keeps
//! beside its trait. Adding a method to a capability touches its trait (and list) and the
//! backends that implement it, nothing else. Adding a capability adds its trait file and its
//! conformance suite, and registers it where every capability is named: the erasure
//! (`erased.rs`: its line, and the bound of a store with every capability) and the
//! forwarding wrapper (`test_util/forward.rs`: its link in the chain, and the same bound).
//!
//! Each capability has its conformance suite in `test_util` (feature `test-util`), run
//! against every backend here and public for stores of your own:
//! `check_key_store`, `check_usage_store`, `check_outbox_store`.
//!
//! # Example
//! ```
//! use tower_apikey::{KeyRecord, KeyStore, MemoryStore};
//! use tower_apikey::key::KeyFormat;
//! use tower_apikey::hash::HashParams;
//! use tower_apikey::store::KeyQuery;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let (record, key) = KeyRecord::generate("alice", &KeyFormat::default(), &HashParams::default())?;
//! store.insert(record.clone()).await?;
//! assert_eq!(store.get(&record.id).await?.unwrap().principal, "alice");
//! assert_eq!(store.query(&KeyQuery::new().principal("alice")).await?.len(), 1);
//! # drop(key);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod erased;
mod error;
mod feed;
mod file;
mod map;
mod memory;
mod outbox;
#[cfg(feature = "postgres")]
mod postgres;
mod query;
pub(crate) mod rate_totals;
mod records;
mod sessions;
mod usage;

#[cfg(feature = "tokens")]
pub(crate) use erased::ErasedKeyStore;
pub(crate) use erased::{
    full as full_handle, outbox as outbox_handle, usage as usage_handle, ErasedOutboxStore,
    ErasedStore, ErasedUsageStore,
};
pub use erased::{BoxKeyStore, BoxSessionStore};
pub(crate) use error::SettingTooSmall;
pub use error::StoreError;
pub use feed::{ChangeFeed, ChangeListener, StoreChange};
pub use file::{FileStore, FileStoreBuilder};
pub use memory::MemoryStore;
pub use outbox::OutboxStore;
#[cfg(feature = "postgres")]
pub use postgres::{ConnectionStringError, PgError, PgKeyStore, PgKeyStoreBuilder};
pub use query::KeyQuery;
pub use records::KeyStore;
pub use sessions::SessionStore;
pub use usage::UsageStore;

pub use crate::policy::{FleetRates, KeyFleetRate, QuotaGrant, RateShare};

#[cfg(feature = "test-util")]
pub(crate) use outbox::outbox_store_methods;
#[cfg(feature = "test-util")]
pub(crate) use records::key_store_methods;
#[cfg(feature = "test-util")]
pub(crate) use usage::usage_store_methods;
