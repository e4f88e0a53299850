//! The session capability: console sign-ins kept in the store, so every server sharing it
//! honours a sign-out and an expiry.

use std::future::Future;

use jiff::Timestamp;

use super::StoreError;
use crate::session::{Session, SessionDigest};

/// A store that keeps console [`Session`]s, keyed by the digest of their id (never the id).
///
/// Apart from the other capabilities: a session is no key change (no feed, no event) and
/// needs no record. The console's expiry rules ([`SessionLifetime`](crate::session::SessionLifetime))
/// are applied by the console to what the store returns; the store keeps and prunes. Every
/// method is required. [`SessionTable`](crate::session::SessionTable) is the rule a store that
/// keeps sessions in memory applies.
///
/// A backend checks itself with `tower_apikey::test_util::check_session_store` (feature
/// `test-util`).
pub trait SessionStore: Send + Sync + 'static {
    /// Adds `session` (a session with the same digest is replaced: digests of fresh random
    /// ids do not collide).
    fn insert_session<'a>(
        &'a self,
        session: Session,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a;

    /// The session with `digest`, as last written, ended or not (the caller judges).
    fn session<'a>(
        &'a self,
        digest: &'a SessionDigest,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send + 'a;

    /// Moves its `seen_at` forward to `at` (never back); whether the session is there.
    fn touch_session<'a>(
        &'a self,
        digest: &'a SessionDigest,
        at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send + 'a;

    /// Removes it (a sign-out); whether it was there. Every handle of the store, on every
    /// server, finds it gone at once.
    fn delete_session<'a>(
        &'a self,
        digest: &'a SessionDigest,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send + 'a;

    /// Removes up to `limit` sessions last seen before `seen_before` or signed in before
    /// `created_before`; returns how many went. Bounded work, run now and then.
    fn prune_sessions<'a>(
        &'a self,
        seen_before: Timestamp,
        created_before: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send + 'a;
}

/// [`SessionStore`]'s methods, the one list the type-erased store is generated from (see
/// `records.rs`).
macro_rules! session_store_methods {
    ($then:ident { $($pass:tt)* }) => {
        $then! { $($pass)*
            SessionStore {
                insert_session(session: $crate::session::Session) -> ();
                session(digest: &'a $crate::session::SessionDigest) -> Option<$crate::session::Session>;
                touch_session(digest: &'a $crate::session::SessionDigest, at: jiff::Timestamp) -> bool;
                delete_session(digest: &'a $crate::session::SessionDigest) -> bool;
                prune_sessions(seen_before: jiff::Timestamp, created_before: jiff::Timestamp, limit: usize) -> usize;
            }
        }
    };
}
pub(crate) use session_store_methods;
