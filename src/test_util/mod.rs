//! Test support for code built on this crate (feature `test-util`): the [`KeyStore`]
//! conformance suite, and a throwaway PostgreSQL cluster.
//!
//! [`KeyStore`]: crate::KeyStore

mod conformance;
#[cfg(feature = "postgres")]
mod temp_cluster;

pub use conformance::check_store_contract;
#[cfg(feature = "postgres")]
pub use temp_cluster::TempCluster;
