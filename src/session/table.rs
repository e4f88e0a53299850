//! Sessions kept in memory (or in a file, serialised whole): the rules the memory and file
//! stores apply.

use std::collections::HashMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Session, SessionDigest};

/// Sessions by digest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionTable {
    sessions: HashMap<SessionDigest, Session>,
}

impl SessionTable {
    /// Adds `session` (one with the same digest is replaced).
    pub fn insert(&mut self, session: Session) {
        self.sessions.insert(session.digest.clone(), session);
    }

    /// The session with `digest`.
    pub fn get(&self, digest: &SessionDigest) -> Option<&Session> {
        self.sessions.get(digest)
    }

    /// Sets its `seen_at` to `at` (never back); whether there was such a session.
    pub fn touch(&mut self, digest: &SessionDigest, at: Timestamp) -> bool {
        match self.sessions.get_mut(digest) {
            Some(session) => {
                session.seen_at = session.seen_at.max(at);
                true
            }
            None => false,
        }
    }

    /// Removes it; whether it was there.
    pub fn remove(&mut self, digest: &SessionDigest) -> bool {
        self.sessions.remove(digest).is_some()
    }

    /// Removes up to `limit` sessions last seen before `seen_before` or created before
    /// `created_before`; how many went.
    pub fn prune(
        &mut self,
        seen_before: Timestamp,
        created_before: Timestamp,
        limit: usize,
    ) -> usize {
        let ended: Vec<SessionDigest> = self
            .sessions
            .values()
            .filter(|s| s.seen_at < seen_before || s.created_at < created_before)
            .map(|s| s.digest.clone())
            .take(limit)
            .collect();
        for digest in &ended {
            self.sessions.remove(digest);
        }
        ended.len()
    }

    /// How many sessions it holds.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}
