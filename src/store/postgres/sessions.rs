//! The session capability of [`PgKeyStore`]: `tower_apikey_sessions`, one statement a call,
//! shared by every server on the database.

use jiff::Timestamp;

use super::{unavailable, PgKeyStore};
use crate::key::KeyId;
use crate::session::{Session, SessionDigest};
use crate::store::{SessionStore, StoreError};

const INSERT: &str = "INSERT INTO tower_apikey_sessions \
     (digest, key_id, principal, csrf_token, created_at, seen_at) \
     VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (digest) DO UPDATE SET key_id = $2, principal = $3, csrf_token = $4, \
     created_at = $5, seen_at = $6";
const SELECT: &str = "SELECT digest, key_id, principal, csrf_token, created_at, seen_at \
     FROM tower_apikey_sessions WHERE digest = $1";
const TOUCH: &str = "UPDATE tower_apikey_sessions SET seen_at = GREATEST(seen_at, $2) \
     WHERE digest = $1";
const DELETE: &str = "DELETE FROM tower_apikey_sessions WHERE digest = $1";
const PRUNE: &str = "DELETE FROM tower_apikey_sessions WHERE digest IN ( \
     SELECT digest FROM tower_apikey_sessions WHERE seen_at < $1 \
     UNION SELECT digest FROM tower_apikey_sessions WHERE created_at < $2 LIMIT $3)";

impl SessionStore for PgKeyStore {
    async fn insert_session(&self, session: Session) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                INSERT,
                &[
                    &session.digest.as_str(),
                    &session.key_id.as_str(),
                    &session.principal,
                    &session.csrf_token,
                    &session.created_at,
                    &session.seen_at,
                ],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn session(&self, digest: &SessionDigest) -> Result<Option<Session>, StoreError> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(SELECT, &[&digest.as_str()])
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let key_id: String = row.get(1);
        // The column holds what `insert_session` wrote; a row edited by hand into no id is
        // no session.
        let Ok(key_id) = KeyId::new(&key_id) else {
            return Ok(None);
        };
        Ok(Some(Session {
            digest: SessionDigest::from_stored(row.get(0)),
            key_id,
            principal: row.get(2),
            csrf_token: row.get(3),
            created_at: row.get(4),
            seen_at: row.get(5),
        }))
    }

    async fn touch_session(
        &self,
        digest: &SessionDigest,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let touched = client
            .execute(TOUCH, &[&digest.as_str(), &at])
            .await
            .map_err(unavailable)?;
        Ok(touched > 0)
    }

    async fn delete_session(&self, digest: &SessionDigest) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let deleted = client
            .execute(DELETE, &[&digest.as_str()])
            .await
            .map_err(unavailable)?;
        Ok(deleted > 0)
    }

    async fn prune_sessions(
        &self,
        seen_before: Timestamp,
        created_before: Timestamp,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let pruned = client
            .execute(PRUNE, &[&seen_before, &created_before, &limit])
            .await
            .map_err(unavailable)?;
        Ok(usize::try_from(pruned).unwrap_or(usize::MAX))
    }
}
