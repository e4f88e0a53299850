//! The usage capability: what traffic writes to a store, never per request. Last use, quota
//! leases, rate-limit counts shared by every validator on the store, and requests counted per
//! key, hour and outcome.

use std::future::Future;

use jiff::Timestamp;

use super::{FleetRates, KeyStore, QuotaGrant, RateShare, StoreError};
use crate::key::KeyId;
use crate::usage::{Bucket, KeyTotal, UsageBatch, UsageRange};

/// What a [`Validator`](crate::Validator) writes as keys are used: last use, quota leases,
/// rate-limit counts shared across every validator on the store, and requests counted per
/// key, hour and outcome ([`usage`](crate::usage)); and what reads those counts back.
///
/// None of it is a change: usage publishes nothing to the change feed and writes no event
/// but one (a quota running out, [`take_quota`](Self::take_quota)), and
/// [`KeyStore::replace`] neither conflicts over usage nor undoes it.
///
/// Every method is required: each has one correct behaviour for a store, and a default would
/// be wrong for some store (a no-op rate share is right only for a store no two validators
/// share). A validator needs this capability: [`Validator::builder`](crate::Validator::builder)
/// does not compile for a store without it.
///
/// A backend checks itself against every rule with
/// `tower_apikey::test_util::check_usage_store` (feature `test-util`).
pub trait UsageStore: KeyStore {
    /// Records when keys were last accepted: ids with no record are skipped, and a time
    /// earlier than the one stored does not replace it.
    fn record_last_used<'a>(
        &'a self,
        used: Vec<(KeyId, Timestamp)>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a;

    /// Takes up to `want` uses of a key's [quota](crate::policy::Quota), refilling it first if
    /// its period has passed ([`KeyRecord::take_quota`](crate::KeyRecord::take_quota) is the rule). What a validator's lease
    /// asks for: once per block of uses, never per request. A record with no quota, or no
    /// record, grants nothing ([`QuotaGrant::NONE`]).
    ///
    /// Atomic: two servers taking uses at once never get more than the quota holds between
    /// them. When no use is left in the period, a store with an
    /// [outbox](super::OutboxStore) adds [`KeyEvent::quota_exhausted`] to it in the same step
    /// (once: its id is made from the key and the period).
    ///
    /// [`KeyEvent::quota_exhausted`]: crate::events::KeyEvent::quota_exhausted
    fn take_quota<'a>(
        &'a self,
        id: &'a KeyId,
        want: u64,
    ) -> impl Future<Output = Result<QuotaGrant, StoreError>> + Send + 'a;

    /// Gives back `uses` taken in the period that started at `period_start`, when a server
    /// stops with them unspent ([`KeyRecord::give_back_quota`](crate::KeyRecord::give_back_quota) is the rule): nothing happens if the
    /// period has changed since (refilled, or the quota was changed). Returns whether they
    /// were taken back.
    fn return_quota<'a>(
        &'a self,
        id: &'a KeyId,
        uses: u64,
        period_start: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send + 'a;

    /// Adds the requests one validator admitted for rate-limited keys since it last called
    /// ([`RateShare::admitted`]), notes that it admitted each key with a count above 0 and
    /// that it is there (an empty share only does the latter), and answers: for each listed
    /// key, the total admitted through every handle of this store since the total began (it
    /// may begin again at 0, say when the key is deleted) and how many validators admitted
    /// it within [`RateShare::active_within`]; and how many validators shared within
    /// [`RateShare::SERVER_MEMORY`]. Both counts include the caller. Validators call it every
    /// [`rate_limit_sync`](crate::validator::ValidatorBuilder::rate_limit_sync) interval (a
    /// quarter of it while a key is near its limit), so a key's rate limit holds across
    /// every validator sharing the store.
    ///
    /// Atomic: each call's counts are added once, and the total it returns includes them.
    /// Every handle counts: two validators on two handles of one store (two servers on one
    /// database or one file, or two in one process) see each other's counts.
    fn share_rate_usage<'a>(
        &'a self,
        share: RateShare,
    ) -> impl Future<Output = Result<FleetRates, StoreError>> + Send + 'a;

    /// Forgets validator `server`, which stops: it no longer counts among the validators
    /// sharing ([`FleetRates::servers`]) or as admitting any key
    /// ([`KeyFleetRate::servers`](super::KeyFleetRate::servers)); what it admitted stays in
    /// the totals. A validator calls it from
    /// [`Validator::shutdown`](crate::Validator::shutdown), so the one that replaces it does
    /// not spread a key's burst over it until [`RateShare::SERVER_MEMORY`] runs out. A server
    /// unknown to the store (or forgotten already) is no error.
    fn leave_rate_share<'a>(
        &'a self,
        server: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a;

    /// Adds one validator's counts to the hourly buckets and to the UTC days' (the rule is
    /// [`UsageTable::add`](crate::usage::UsageTable::add)), once per batch id: a batch tried
    /// again (a write whose answer was lost) is not counted twice. Atomic: a batch is added
    /// whole or not at all.
    fn add_usage<'a>(
        &'a self,
        batch: UsageBatch,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a;

    /// `id`'s requests over `range`: every bucket of it in order, those without traffic as
    /// zeros ([`UsageRange::zero_filled`]). An id with no usage (or no record) reads as zeros.
    fn read_usage<'a>(
        &'a self,
        id: &'a KeyId,
        range: UsageRange,
    ) -> impl Future<Output = Result<Vec<Bucket>, StoreError>> + Send + 'a;

    /// The keys with records (of `principal`, if given) and their requests over `range`,
    /// those with the most requests first (ties by id), at most `limit`; keys without
    /// traffic in the range left out.
    fn top_usage<'a>(
        &'a self,
        principal: Option<&'a str>,
        range: UsageRange,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<KeyTotal>, StoreError>> + Send + 'a;

    /// Removes hourly buckets that start before `hourly_before` and daily ones before
    /// `daily_before`, at most `limit` of each in one call, and batch ids older than a day;
    /// returns how many buckets went. Bounded work: what a validator runs at most once a
    /// minute for its retention.
    fn prune_usage<'a>(
        &'a self,
        hourly_before: Timestamp,
        daily_before: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send + 'a;
}

/// [`UsageStore`]'s methods, the one list the type-erased store and the test forwarding
/// wrapper are generated from (see `records.rs`).
macro_rules! usage_store_methods {
    ($then:ident { $($pass:tt)* }) => {
        $then! { $($pass)*
            UsageStore {
                record_last_used(used: Vec<($crate::key::KeyId, jiff::Timestamp)>) -> ();
                take_quota(id: &'a $crate::key::KeyId, want: u64) -> $crate::store::QuotaGrant;
                return_quota(id: &'a $crate::key::KeyId, uses: u64, period_start: jiff::Timestamp) -> bool;
                share_rate_usage(share: $crate::store::RateShare) -> $crate::store::FleetRates;
                leave_rate_share(server: u64) -> ();
                add_usage(batch: $crate::usage::UsageBatch) -> ();
                read_usage(id: &'a $crate::key::KeyId, range: $crate::usage::UsageRange) -> Vec<$crate::usage::Bucket>;
                top_usage(principal: Option<&'a str>, range: $crate::usage::UsageRange, limit: usize) -> Vec<$crate::usage::KeyTotal>;
                prune_usage(hourly_before: jiff::Timestamp, daily_before: jiff::Timestamp, limit: usize) -> usize;
            }
        }
    };
}
pub(crate) use usage_store_methods;
