//! [`FileStore`]'s session capability: sessions in `<path>.sessions`, each change one locked
//! rewrite of that file (the records file is never written for a session).

use std::sync::Arc;

use jiff::Timestamp;

use super::sidecar::SESSIONS;
use super::{blocking, FileStore};
use crate::session::{Session, SessionDigest, SessionTable};
use crate::store::{SessionStore, StoreError};

impl SessionStore for FileStore {
    async fn insert_session(&self, session: Session) -> Result<(), StoreError> {
        self.change_sessions(move |table| table.insert(session))
            .await
    }

    async fn session(&self, digest: &SessionDigest) -> Result<Option<Session>, StoreError> {
        let path = self.inner.path.clone();
        let table: SessionTable = blocking(move || SESSIONS.load(&path)).await?;
        Ok(table.get(digest).cloned())
    }

    async fn touch_session(
        &self,
        digest: &SessionDigest,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let digest = digest.clone();
        self.change_sessions(move |table| table.touch(&digest, at))
            .await
    }

    async fn delete_session(&self, digest: &SessionDigest) -> Result<bool, StoreError> {
        let digest = digest.clone();
        self.change_sessions(move |table| table.remove(&digest))
            .await
    }

    async fn prune_sessions(
        &self,
        seen_before: Timestamp,
        created_before: Timestamp,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.change_sessions(move |table| table.prune(seen_before, created_before, limit))
            .await
    }
}

impl FileStore {
    /// Reads, changes and writes the sessions file under the store's lock.
    async fn change_sessions<R: Send + 'static>(
        &self,
        change: impl FnOnce(&mut SessionTable) -> R + Send + 'static,
    ) -> Result<R, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || SESSIONS.update(&inner.path, &inner.lock_path, change)).await
    }
}
