//! The change follower: how a store hears of changes other servers made.

use std::sync::Weak;
use std::time::Duration;

use tokio_postgres::AsyncMessage;

use super::schema::LISTEN;
use super::Inner;
use crate::key::KeyId;
use crate::store::{ChangeFeed, StoreChange};
use crate::streak::Streak;

/// Follows the change log for as long as the store lives: LISTENs on a connection of its
/// own, reads the log on each notification, each poll interval and each reconnect, and
/// tells subscribers what changed.
pub(super) async fn follow(inner: Weak<Inner>, listen: bool, poll: Duration) {
    let mut cursor = Cursor {
        version: None,
        read_at: std::time::Instant::now(),
    };
    let mut backoff = Duration::from_millis(100);
    // Logged when reading the log starts failing and when it works again, not on every
    // retry: a database that is down, or not migrated yet, would write ten lines a second.
    let failing = Streak::default();
    loop {
        let Some((config, tls)) = inner.upgrade().map(|i| (i.config.clone(), i.tls.clone())) else {
            return;
        };
        match config.connect(tls).await {
            Ok((client, mut connection)) => {
                let (tx, mut notified) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    while let Some(message) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        match message {
                            Ok(AsyncMessage::Notification(_)) => {
                                let _ = tx.send(());
                            }
                            Ok(_) => {}
                            Err(error) => {
                                tracing::warn!(error = %super::PgError::from(error), "key store change listener lost its connection");
                                break;
                            }
                        }
                    }
                });
                let listening = if listen {
                    client.batch_execute(LISTEN).await
                } else {
                    Ok(())
                };
                if listening.is_ok() {
                    loop {
                        let Some(strong) = inner.upgrade() else {
                            driver.abort();
                            return;
                        };
                        if let Err(error) = catch_up(&client, &strong.feed, &mut cursor).await {
                            if failing.fail() {
                                tracing::warn!(error = %super::PgError::from(error), "key store change log not read; retrying until it is");
                            }
                            break;
                        }
                        backoff = Duration::from_millis(100);
                        if let Some(ended) = failing.succeed() {
                            tracing::info!(
                                failures = ended.failures,
                                lasted_ms = ended.lasted.as_millis() as u64,
                                "key store change log read again"
                            );
                        }
                        drop(strong);
                        // A notification, or the poll interval, whichever comes first.
                        if let Ok(None) = tokio::time::timeout(poll, notified.recv()).await {
                            break;
                        }
                        // One read covers every notification already here: a burst of
                        // changes costs each server a few reads, not one per change.
                        while notified.try_recv().is_ok() {}
                        if driver.is_finished() {
                            break;
                        }
                    }
                }
                driver.abort();
            }
            Err(error) => {
                if failing.fail() {
                    tracing::warn!(error = %super::PgError::from(error), "key store change listener cannot connect; retrying until it can");
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

const LAST_CHANGE: &str = "SELECT coalesce(max(version), 0) FROM tower_apikey_changes";
const CHANGES_AFTER: &str =
    "SELECT version, id FROM tower_apikey_changes WHERE version > $1 ORDER BY version";

/// Where a follower is in the change log.
struct Cursor {
    /// The last version read; `None` before the first read.
    version: Option<i64>,
    /// When the log was last read in full.
    read_at: std::time::Instant,
}

/// Publishes every change after the cursor and moves it on. A follower that could not read
/// the log for longer than changes are kept may have missed some: it resets instead.
async fn catch_up(
    client: &tokio_postgres::Client,
    feed: &ChangeFeed,
    cursor: &mut Cursor,
) -> Result<(), tokio_postgres::Error> {
    let Some(last) = cursor.version else {
        // First read: start from now. Anything cached before it (the database may have been
        // down when the store was made) may have missed a change: drop it.
        let row = client.query_one(LAST_CHANGE, &[]).await?;
        cursor.version = Some(row.get(0));
        cursor.read_at = std::time::Instant::now();
        feed.publish(&StoreChange::Reset);
        return Ok(());
    };
    let rows = client.query(CHANGES_AFTER, &[&last]).await?;
    // Changes are pruned after a day; stay well inside that.
    if cursor.read_at.elapsed() > Duration::from_secs(20 * 3600) {
        feed.publish(&StoreChange::Reset);
    }
    cursor.read_at = std::time::Instant::now();
    let mut seen = std::collections::HashSet::new();
    for row in &rows {
        cursor.version = Some(row.get(0));
        let id: String = row.get(1);
        if seen.insert(id.clone()) {
            match KeyId::new(&id) {
                Ok(id) => feed.publish(&StoreChange::Changed(id)),
                Err(_) => feed.publish(&StoreChange::Reset),
            }
        }
    }
    Ok(())
}
