//! The store conformance suites, one per capability: every rule of the contract, checked on
//! fresh stores. Each suite's documented rule list is generated from the list it runs.

mod counts;
mod listing;
mod outbox;
mod records;
mod sessions;
mod usage;

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::hash::{Pbkdf2Hash, Prf};
use crate::key::KeyId;
use crate::record::KeyRecord;
use crate::store::{ChangeListener, OutboxStore, StoreChange, StoreError, UsageStore};

pub use outbox::check_outbox_store;
pub use records::check_key_store;
pub use sessions::check_session_store;
pub use usage::{check_usage_store, check_usage_with_outbox};

/// How long a change may take to reach the feed (a store may publish from a follower task);
/// the validator's promise is a second.
const FEED_BOUND: Duration = Duration::from_secs(1);

/// Writers racing in the concurrency rules.
const RACERS: usize = 16;

/// A suite: an `async fn` over a factory of fresh stores (each opened twice, as two servers
/// would), whose docs list exactly the rules it runs, in order.
macro_rules! suite {
    (
        $(#[$meta:meta])*
        pub async fn $name:ident<S: [$($bound:tt)+]> {
            $( $rule:path: $doc:literal, )+
        }
    ) => {
        $(#[$meta])*
        ///
        /// `fresh` returns a new, empty store each time (a new temporary file, a new database),
        /// opened twice: two handles on it, as two servers would hold (for a store in memory,
        /// two clones). Each rule runs on its own store. Run it in a multi-threaded Tokio
        /// runtime, which races the concurrency rules on several threads.
        ///
        /// The rules, in the order they run:
        $( #[doc = concat!("- ", $doc)] )+
        ///
        /// # Panics
        /// When the store breaks a rule (the message names it), or fails an operation that
        /// should succeed.
        pub async fn $name<S, F, Fut>(mut fresh: F)
        where
            S: $($bound)+,
            F: FnMut() -> Fut,
            Fut: std::future::Future<Output = (S, S)>,
        {
            $( $rule(fresh().await).await; )+
        }
    };
}
pub(crate) use suite;

/// Checks a store with every capability: [`check_key_store`], [`check_usage_store`],
/// [`check_outbox_store`], then [`check_usage_with_outbox`].
///
/// ```
/// # #[tokio::main(flavor = "multi_thread")]
/// # async fn main() {
/// use tower_apikey::MemoryStore;
/// tower_apikey::test_util::check_store_contract(|| async {
///     let store = MemoryStore::new();
///     (store.clone(), store)
/// })
/// .await;
/// # }
/// ```
///
/// # Panics
/// As each suite.
pub async fn check_store_contract<S, F, Fut>(mut fresh: F)
where
    S: UsageStore + OutboxStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = (S, S)>,
{
    check_key_store(&mut fresh).await;
    check_usage_store(&mut fresh).await;
    check_outbox_store(&mut fresh).await;
    check_usage_with_outbox(&mut fresh).await;
}

#[track_caller]
fn broken(rule: &str, detail: impl std::fmt::Display) -> ! {
    panic!("store contract broken: {rule}: {detail}")
}

#[track_caller]
fn ensure(ok: bool, rule: &str, detail: impl std::fmt::Display) {
    if !ok {
        broken(rule, detail);
    }
}

#[track_caller]
fn expect<T>(result: Result<T, StoreError>, rule: &str, what: &str) -> T {
    result.unwrap_or_else(|e| broken(rule, format!("{what} failed: {e}")))
}

fn id(text: &str) -> KeyId {
    KeyId::new(text).unwrap_or_else(|e| broken("test setup", e))
}

/// A record with a fixed hash: the suites check storage, not hashing.
fn record(key_id: &str, principal: &str) -> KeyRecord {
    let hash = Pbkdf2Hash::from_parts(1000, &[7; 24], &[9; 24])
        .unwrap_or_else(|e| broken("test setup", e));
    KeyRecord::new(id(key_id), principal, hash, Prf::Sha1)
}

fn ids(records: &[KeyRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

fn parse<T: std::str::FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    match text.parse() {
        Ok(value) => value,
        Err(error) => broken(
            "the suite's own policies parse",
            format!("{text}: {error:?}"),
        ),
    }
}

/// What a subscriber has been told.
#[derive(Default)]
struct Heard(Mutex<Vec<StoreChange>>);

impl ChangeListener for Heard {
    fn on_change(&self, change: &StoreChange) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(change.clone());
    }
}

impl Heard {
    fn take(&self) -> Vec<StoreChange> {
        std::mem::take(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn covers(changes: &[StoreChange], key_id: &KeyId) -> bool {
        changes.iter().any(|c| match c {
            StoreChange::Changed(x) => x == key_id,
            StoreChange::Reset => true,
        })
    }

    /// Waits up to [`FEED_BOUND`] for word of `key_id`.
    async fn expect_word_of(&self, key_id: &KeyId, rule: &str, after: &str) {
        let deadline = tokio::time::Instant::now() + FEED_BOUND;
        let mut heard = Vec::new();
        loop {
            heard.extend(self.take());
            if Self::covers(&heard, key_id) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                broken(
                    rule,
                    format!("after {after}, subscribers heard {heard:?}, nothing of {key_id}"),
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether `ids` were named since the last take, after a moment for a follower to speak.
    async fn named_any(&self, ids: &[&KeyId]) -> Vec<StoreChange> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let heard = self.take();
        heard
            .into_iter()
            .filter(|c| matches!(c, StoreChange::Changed(x) if ids.contains(&x)))
            .collect()
    }
}
