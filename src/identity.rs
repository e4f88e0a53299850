//! The authenticated caller, as the handler sees it.
//!
//! [`ApiKeyLayer`](crate::ApiKeyLayer) puts an [`Identity`] into the request extensions of
//! every request it lets through. With the `axum` feature, `Identity` is also an extractor.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use jiff::Timestamp;
use serde::ser::SerializeStruct;

use crate::key::KeyId;
use crate::policy::{IpNet, PolicyState, RateLimitStatus};
use crate::record::KeyRecord;
use crate::usage::{KeyTally, Outcome};

/// Who called: the principal a key belongs to, the key's id, its permissions and expiry.
///
/// Cheap to clone (one reference count). Holds nothing secret.
#[derive(Clone)]
pub struct Identity(Arc<Inner>);

struct Inner {
    key_id: KeyId,
    // Boxed strs, not Strings: a cached key costs 16 bytes less (scale bench).
    principal: Box<str>,
    name: Option<Box<str>>,
    permissions: Box<[String]>,
    expires_at: Option<Timestamp>,
    /// Unix seconds of the last use noted by the validator that made this identity.
    last_used: AtomicI64,
    /// The key's policies and their state; `None` for a key with none (which pays nothing).
    usage: Option<Arc<PolicyState>>,
    /// Where the validator that made this identity counts the key's requests; `None` when
    /// it counts none.
    tally: Option<Arc<KeyTally>>,
    /// Names the key's secret as it stands (a digest of its PBKDF2 record): what an access
    /// token carries so that a regeneration ends it (`tokens`).
    #[cfg(feature = "tokens")]
    key_version: crate::hash::KeyVersion,
}

impl Identity {
    /// The identity a record grants (with its policies' state starting afresh).
    pub fn from_record(record: &KeyRecord) -> Self {
        Self::with_state(
            record,
            PolicyState::of(record.policies()).map(Arc::new),
            None,
        )
    }

    /// The identity a record grants, sharing `usage` (a validator's state for the key) and
    /// `tally` (where it counts the key's requests).
    pub(crate) fn with_state(
        record: &KeyRecord,
        usage: Option<Arc<PolicyState>>,
        tally: Option<Arc<KeyTally>>,
    ) -> Self {
        Self(Arc::new(Inner {
            key_id: record.id.clone(),
            principal: record.principal.as_str().into(),
            name: record.name.as_deref().map(Into::into),
            permissions: record.permissions.clone().into_boxed_slice(),
            expires_at: record.expires_at,
            last_used: AtomicI64::new(0),
            usage,
            tally,
            #[cfg(feature = "tokens")]
            key_version: crate::hash::KeyVersion::of(&record.hash),
        }))
    }

    /// The identity an access token grants: its key's id, principal and permissions (the
    /// token's scope); `expires_at` is the token's expiry. No policies: those were applied
    /// when the token was issued.
    #[cfg(feature = "tokens")]
    pub(crate) fn from_token(
        key_id: KeyId,
        principal: &str,
        permissions: Vec<String>,
        expires_at: Option<Timestamp>,
        key_version: crate::hash::KeyVersion,
    ) -> Self {
        Self(Arc::new(Inner {
            key_id,
            principal: principal.into(),
            name: None,
            permissions: permissions.into_boxed_slice(),
            expires_at,
            last_used: AtomicI64::new(0),
            usage: None,
            tally: None,
            key_version,
        }))
    }

    /// The version of the key's secret this identity was made from.
    #[cfg(feature = "tokens")]
    pub(crate) fn key_version(&self) -> crate::hash::KeyVersion {
        self.0.key_version
    }

    /// Counts one request with this key as `outcome`, where the validator counts.
    #[inline]
    pub(crate) fn count(&self, outcome: Outcome) {
        if let Some(tally) = &self.0.tally {
            tally.count(outcome);
        }
    }

    /// Moves one request with this key, counted valid, to `refusal` (a policy's, a
    /// permission guard's).
    pub(crate) fn refuse_after_valid(&self, refusal: Outcome) {
        if let Some(tally) = &self.0.tally {
            tally.refuse_after_valid(refusal);
        }
    }

    /// The key's policies and their state, if it has any.
    #[inline]
    pub(crate) fn usage(&self) -> Option<&Arc<PolicyState>> {
        self.0.usage.as_ref()
    }

    /// The key's rate limit as it stands now (this server's view), if it has one: what a
    /// handler can show the caller.
    pub fn rate_limit(&self) -> Option<RateLimitStatus> {
        let rate = self.0.usage.as_ref()?.rate.as_ref()?;
        Some(rate.peek(crate::policy::monotonic_nanos()))
    }

    /// Uses left in the key's quota (this server's lease plus what the store had left when
    /// it was last asked), if it has one.
    pub fn quota_remaining(&self) -> Option<u64> {
        Some(self.0.usage.as_ref()?.quota.as_ref()?.remaining())
    }

    /// The addresses the key may be used from; empty is anywhere.
    pub fn allowed_ips(&self) -> &[IpNet] {
        self.0
            .usage
            .as_ref()
            .map_or(&[], |usage| &usage.allowed_ips)
    }

    /// Notes a use at `now` (unix seconds).
    pub(crate) fn note_use(&self, now: i64) {
        // Load before store: a hot key's cache line stays shared between cores, written once
        // a second at most.
        if self.0.last_used.load(Ordering::Relaxed) != now {
            self.0.last_used.store(now, Ordering::Relaxed);
        }
    }

    /// The last use noted (unix seconds), 0 for none.
    pub(crate) fn last_used(&self) -> i64 {
        self.0.last_used.load(Ordering::Relaxed)
    }

    /// The user or service account the key belongs to.
    pub fn principal(&self) -> &str {
        &self.0.principal
    }

    /// The id of the key used.
    pub fn key_id(&self) -> &KeyId {
        &self.0.key_id
    }

    /// The key's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    /// The key's permissions.
    pub fn permissions(&self) -> &[String] {
        &self.0.permissions
    }

    /// Whether the key carries `permission`, compared exactly (case included).
    pub fn has_permission(&self, permission: &str) -> bool {
        self.0.permissions.iter().any(|p| p == permission)
    }

    /// Whether the key carries `permission` or a wildcard covering it: `*` covers every
    /// permission, and `prefix:*` every permission that starts `prefix:` and goes on
    /// (`reports:*` covers `reports:read` and `reports:read:all`, not `reports` or
    /// `reportsx`). A `*` anywhere else is a character like any other.
    pub fn grants(&self, permission: &str) -> bool {
        self.0
            .permissions
            .iter()
            .any(|held| wildcard_covers(held, permission))
    }

    /// When the key expires; `None` is never. For an identity from an access token
    /// (`tokens::BearerTokenLayer`), when the token expires.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.0.expires_at
    }
}

/// Whether any of the `held` permissions covers `required` (the rule of [`Identity::grants`]):
/// what a user may give a key of their own.
#[cfg(any(feature = "selfservice", feature = "tokens"))]
pub(crate) fn permission_covers(held: &[String], required: &str) -> bool {
    held.iter().any(|h| wildcard_covers(h, required))
}

/// Whether the held permission `held` covers `required` (see [`Identity::grants`]).
fn wildcard_covers(held: &str, required: &str) -> bool {
    if held == required || held == "*" {
        return true;
    }
    match held.strip_suffix('*') {
        Some(prefix) if prefix.ends_with(':') => {
            required.len() > prefix.len() && required.starts_with(prefix)
        }
        _ => false,
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("principal", &self.0.principal)
            .field("key_id", &self.0.key_id)
            .field("name", &self.0.name)
            .field("permissions", &self.0.permissions)
            .field("expires_at", &self.0.expires_at)
            .finish()
    }
}

impl serde::Serialize for Identity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Identity", 5)?;
        s.serialize_field("principal", &self.0.principal)?;
        s.serialize_field("key_id", &self.0.key_id)?;
        s.serialize_field("name", &self.0.name)?;
        s.serialize_field("permissions", &self.0.permissions)?;
        s.serialize_field("expires_at", &self.0.expires_at)?;
        s.end()
    }
}

/// A request reached a permission check or a handler that wants an [`Identity`] without
/// passing through [`ApiKeyLayer`](crate::ApiKeyLayer): a wiring mistake, answered as
/// [`Rejection::Internal`](crate::rejection::Rejection::Internal) (500) and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no API key identity in the request: is `ApiKeyLayer` applied in front of it?")]
pub struct MissingIdentity;

impl MissingIdentity {
    /// Logs the mistake (once per request that hits it) and answers with `rejection`.
    pub(crate) fn respond<B, R: crate::rejection::RejectionResponse<B>>(
        self,
        rejection: &R,
    ) -> http::Response<B> {
        tracing::error!("{self}");
        rejection.respond(crate::rejection::Rejection::Internal)
    }
}

/// In a request that [`ApiKeyLayer::optional`](crate::ApiKeyLayer::optional) let through
/// without a key, in place of an [`Identity`]: what tells "no key, allowed" from "the layer
/// was never applied" (which stays a 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anonymous;

#[cfg(feature = "axum")]
mod extract {
    use axum_core::body::Body;
    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum_core::response::{IntoResponse, Response};
    use http::request::Parts;

    use super::{Anonymous, Identity, MissingIdentity};
    use crate::rejection::DefaultRejection;

    impl IntoResponse for MissingIdentity {
        fn into_response(self) -> Response {
            self.respond::<Body, _>(&DefaultRejection::new())
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for Identity {
        type Rejection = MissingIdentity;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            parts
                .extensions
                .get::<Identity>()
                .cloned()
                .ok_or(MissingIdentity)
        }
    }

    /// `Option<Identity>`: `None` for a request [`ApiKeyLayer::optional`] let through
    /// without a key; a request that never passed the layer is still [`MissingIdentity`].
    ///
    /// [`ApiKeyLayer::optional`]: crate::ApiKeyLayer::optional
    impl<S: Send + Sync> OptionalFromRequestParts<S> for Identity {
        type Rejection = MissingIdentity;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            match parts.extensions.get::<Identity>() {
                Some(identity) => Ok(Some(identity.clone())),
                None if parts.extensions.get::<Anonymous>().is_some() => Ok(None),
                None => Err(MissingIdentity),
            }
        }
    }
}
