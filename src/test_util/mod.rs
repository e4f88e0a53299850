//! Test support for stores and code built on this crate (feature `test-util`): one
//! conformance suite per store capability, a forwarding wrapper for test doubles, and a
//! throwaway PostgreSQL cluster.
//!
//! | suite | checks |
//! |---|---|
//! | [`check_key_store`] | the records and the change feed ([`KeyStore`](crate::KeyStore)) |
//! | [`check_usage_store`] | last use, quota leases, rate sharing ([`UsageStore`](crate::UsageStore)) |
//! | [`check_outbox_store`] | the events outbox ([`OutboxStore`](crate::OutboxStore)) |
//! | [`check_usage_with_outbox`] | where usage meets the outbox (the quota event) |
//! | [`check_session_store`] | console sessions ([`SessionStore`](crate::store::SessionStore)) |
//! | [`check_store_contract`] | the first four, for a store with records, usage and an outbox |

mod conformance;
mod forward;
#[cfg(feature = "postgres")]
mod temp_cluster;

pub use conformance::{
    check_key_store, check_outbox_store, check_session_store, check_store_contract,
    check_usage_store, check_usage_with_outbox,
};
pub use forward::{Forward, StoreDouble};
#[cfg(feature = "postgres")]
pub use temp_cluster::TempCluster;
