//! Sessions of people signed in to the console: who signed in, with which admin key, since
//! when, as every store keeps them.
//!
//! A session's id is 32 random bytes, the value of the browser's cookie ([`SessionId`]). A
//! store never holds it: it keys the session by its SHA-256 ([`SessionDigest`]), so a copy of
//! the database signs no one in. The session holds the admin key's id, never the key, and the
//! token every form of the session carries against cross-site requests
//! ([`Session::csrf_token`]). Stores keep sessions through their
//! [session capability](crate::store::SessionStore), so a fleet on one database shares them:
//! a sign-out or an expiry holds on every server.
//!
//! # Example
//! ```
//! use jiff::Timestamp;
//! use tower_apikey::key::KeyId;
//! use tower_apikey::session::{Session, SessionId, SessionLifetime};
//!
//! let id = SessionId::generate()?;
//! let now = Timestamp::now();
//! let session = Session::new(&id, KeyId::new("k1")?, "ops", now)?;
//! // The cookie's value finds the session again; the store only knows its digest.
//! assert_eq!(SessionId::parse(id.expose()).unwrap().digest(), session.digest);
//! assert!(SessionLifetime::default().is_live(&session, now));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod table;

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::key::KeyId;
use crate::random::{fill_random, RngError};

pub use table::SessionTable;

/// Random bytes in a session id and in a CSRF token.
const RANDOM_BYTES: usize = 32;
/// Their length in unpadded base64url.
const ENCODED_LEN: usize = 43;

/// A session's id: what the browser's cookie holds, and nothing else does. Redacted in
/// `Debug`, zeroed when dropped.
pub struct SessionId(Zeroizing<String>);

impl SessionId {
    /// A new id, 32 bytes from the operating system's RNG.
    ///
    /// # Errors
    /// When the RNG fails.
    pub fn generate() -> Result<Self, RngError> {
        random_text().map(Self)
    }

    /// The id a cookie's value holds, or `None` where it cannot be one (a wrong length or a
    /// character outside base64url): such a cookie names no session and costs no store read.
    pub fn parse(value: &str) -> Option<Self> {
        (value.len() == ENCODED_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Self(Zeroizing::new(value.to_owned())))
    }

    /// The id as the cookie carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What a store keys the session by.
    pub fn digest(&self) -> SessionDigest {
        SessionDigest(crate::key::lookup_digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// SHA-256 of a [`SessionId`], hex: how a store finds a session. It cannot be turned back into
/// the id, so it signs no one in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionDigest(String);

impl SessionDigest {
    /// The digest as hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A digest read back from a store's own column. Not checked: a store only gives back
    /// what it was given.
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }
}

/// A signed-in session, as a store keeps it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Session {
    /// The digest of the session's id.
    pub digest: SessionDigest,
    /// The admin key the person signed in with: checked on every request to be live and to
    /// hold the console's permission still.
    pub key_id: KeyId,
    /// The key's principal, who changes are recorded as made by.
    pub principal: String,
    /// The token every form of this session carries (random, base64url).
    pub csrf_token: String,
    /// When the person signed in.
    pub created_at: Timestamp,
    /// When the session was last used (kept up to a minute stale: see
    /// [`SessionLifetime::needs_touch`]).
    pub seen_at: Timestamp,
}

impl Session {
    /// A session for `id`, signed in now with the key `key_id` of `principal`, with a new
    /// CSRF token.
    ///
    /// # Errors
    /// When the RNG fails.
    pub fn new(
        id: &SessionId,
        key_id: KeyId,
        principal: impl Into<String>,
        now: Timestamp,
    ) -> Result<Self, RngError> {
        Ok(Self {
            digest: id.digest(),
            key_id,
            principal: principal.into(),
            csrf_token: random_text()?.to_string(),
            created_at: now,
            seen_at: now,
        })
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("digest", &self.digest)
            .field("key_id", &self.key_id)
            .field("principal", &self.principal)
            .field("csrf_token", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("seen_at", &self.seen_at)
            .finish()
    }
}

/// How long a session lasts: `idle` since it was last used, `max` since sign-in, whichever
/// ends first (default 30 minutes and 12 hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetime {
    /// Ends a session not used for this long.
    pub idle: Duration,
    /// Ends a session this long after sign-in, however busy.
    pub max: Duration,
}

impl Default for SessionLifetime {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            max: Duration::from_secs(12 * 60 * 60),
        }
    }
}

/// How stale a stored `seen_at` may be: a session is written at most once a minute, not on
/// every page.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

impl SessionLifetime {
    /// Whether `session` is still live at `now`.
    pub fn is_live(&self, session: &Session, now: Timestamp) -> bool {
        now < add(session.seen_at, self.idle) && now < add(session.created_at, self.max)
    }

    /// Whether `session`'s `seen_at` is old enough to be written again at `now` (a minute).
    pub fn needs_touch(&self, session: &Session, now: Timestamp) -> bool {
        now >= add(session.seen_at, TOUCH_EVERY)
    }

    /// The bounds a store prunes by: sessions last seen before the first, or signed in
    /// before the second, have ended at `now`.
    pub fn ended_before(&self, now: Timestamp) -> (Timestamp, Timestamp) {
        (sub(now, self.idle), sub(now, self.max))
    }
}

fn add(at: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn sub(at: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| at.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

/// 32 random bytes as unpadded base64url.
fn random_text() -> Result<Zeroizing<String>, RngError> {
    let mut bytes = Zeroizing::new([0u8; RANDOM_BYTES]);
    fill_random(&mut *bytes)?;
    Ok(Zeroizing::new(URL_SAFE_NO_PAD.encode(*bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_43_base64url_characters_and_anything_else_is_no_id() {
        let id = SessionId::generate().unwrap();
        assert_eq!(id.expose().len(), ENCODED_LEN);
        assert!(SessionId::parse(id.expose()).is_some());
        assert_ne!(
            SessionId::generate().unwrap().expose(),
            id.expose(),
            "random"
        );
        for bad in [
            "",
            "short",
            &"a".repeat(44),
            &format!("{}=", &"a".repeat(42)),
        ] {
            assert!(SessionId::parse(bad).is_none(), "{bad:?}");
        }
        assert!(!format!("{id:?}").contains(id.expose()));
    }

    #[test]
    fn a_session_ends_when_idle_or_old_whichever_first() {
        let lifetime = SessionLifetime::default();
        let id = SessionId::generate().unwrap();
        let start: Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
        let mut session = Session::new(&id, KeyId::new("k1").unwrap(), "ops", start).unwrap();
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert!(lifetime.is_live(&session, at("2026-03-01T10:29:59Z")));
        assert!(!lifetime.is_live(&session, at("2026-03-01T10:30:00Z")));
        // Busy all day: still over at 12 hours.
        session.seen_at = at("2026-03-01T21:59:00Z");
        assert!(lifetime.is_live(&session, at("2026-03-01T21:59:59Z")));
        assert!(!lifetime.is_live(&session, at("2026-03-01T22:00:00Z")));
        assert!(!lifetime.needs_touch(&session, at("2026-03-01T21:59:59Z")));
        assert!(lifetime.needs_touch(&session, at("2026-03-01T22:00:00Z")));
        assert!(!format!("{session:?}").contains(&session.csrf_token));
    }
}
