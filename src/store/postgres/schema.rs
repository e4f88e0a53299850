//! The schema: migrations, the notification channel, the advisory locks.

/// The schema, one migration per entry, applied in order by [`migrate`].
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE tower_apikey_keys (
    id            TEXT PRIMARY KEY,
    principal     TEXT NOT NULL,
    hash          TEXT NOT NULL,
    prf           TEXT NOT NULL,
    name          TEXT,
    description   TEXT,
    permissions   TEXT[] NOT NULL DEFAULT '{}',
    status        TEXT NOT NULL,
    expires_at    TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL,
    created_by    TEXT,
    updated_at    TIMESTAMPTZ,
    updated_by    TEXT,
    protected     BOOLEAN NOT NULL DEFAULT FALSE,
    last_used_at  TIMESTAMPTZ,
    legacy        BOOLEAN NOT NULL DEFAULT FALSE,
    lookup_digest TEXT,
    version       BIGINT NOT NULL
);
CREATE INDEX tower_apikey_keys_principal ON tower_apikey_keys (principal);
CREATE INDEX tower_apikey_keys_legacy ON tower_apikey_keys (id) WHERE legacy;
-- One row per committed change, in commit order (writers serialise on an advisory lock):
-- what a server that missed notifications reads to catch up.
CREATE TABLE tower_apikey_changes (
    version    BIGSERIAL PRIMARY KEY,
    id         TEXT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tower_apikey_changes_at ON tower_apikey_changes (changed_at);
",
    r"
-- Per-key policies (issue 15). The quota is kept as numbers, so a lease is one statement.
ALTER TABLE tower_apikey_keys
    ADD COLUMN rate_limit           TEXT,
    ADD COLUMN quota_uses           BIGINT,
    ADD COLUMN quota_refill_seconds BIGINT,
    ADD COLUMN quota_remaining      BIGINT,
    ADD COLUMN quota_period_start   TIMESTAMPTZ,
    ADD COLUMN allowed_ips          TEXT[] NOT NULL DEFAULT '{}';
-- Requests each rate-limited key was admitted, fleet-wide: validators add theirs in batches.
CREATE TABLE tower_apikey_rate_usage (
    id       TEXT PRIMARY KEY,
    admitted BIGINT NOT NULL
);
",
    r"
-- Why and where a key was revoked, and the key a rotation replaced (issue 16).
ALTER TABLE tower_apikey_keys
    ADD COLUMN revocation_reason   TEXT,
    ADD COLUMN revocation_location TEXT,
    ADD COLUMN replaces            TEXT;
-- The outbox: each change's events, written in the change's own transaction, until a
-- sender has delivered them (and a week after).
CREATE TABLE tower_apikey_events (
    seq           BIGSERIAL PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    event         TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    not_before    TIMESTAMPTZ,
    claimed_until TIMESTAMPTZ,
    delivered_at  TIMESTAMPTZ
);
CREATE INDEX tower_apikey_events_pending ON tower_apikey_events (seq) WHERE delivered_at IS NULL;
-- What the expiry sweeper reads.
CREATE INDEX tower_apikey_keys_expires ON tower_apikey_keys (expires_at) WHERE expires_at IS NOT NULL;
",
    r"
-- Requests per key, hour and outcome (issue 23), and the same by UTC day; the batches added,
-- so a batch tried again is not counted twice.
CREATE TABLE tower_apikey_usage_hourly (
    key_id            TEXT NOT NULL,
    bucket            TIMESTAMPTZ NOT NULL,
    valid             BIGINT NOT NULL DEFAULT 0,
    wrong_secret      BIGINT NOT NULL DEFAULT 0,
    expired           BIGINT NOT NULL DEFAULT 0,
    inactive          BIGINT NOT NULL DEFAULT 0,
    revoked           BIGINT NOT NULL DEFAULT 0,
    rate_limited      BIGINT NOT NULL DEFAULT 0,
    usage_exceeded    BIGINT NOT NULL DEFAULT 0,
    ip_not_allowed    BIGINT NOT NULL DEFAULT 0,
    permission_denied BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, bucket)
);
CREATE INDEX tower_apikey_usage_hourly_bucket ON tower_apikey_usage_hourly (bucket);
CREATE TABLE tower_apikey_usage_daily (LIKE tower_apikey_usage_hourly INCLUDING ALL);
CREATE TABLE tower_apikey_usage_batches (
    id       TEXT PRIMARY KEY,
    added_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tower_apikey_usage_batches_added ON tower_apikey_usage_batches (added_at);
-- The audit trail: every event, written with the outbox's row, kept 400 days whatever its
-- delivery (the outbox drops delivered events after a week).
CREATE TABLE tower_apikey_audit (
    seq       BIGSERIAL PRIMARY KEY,
    id        TEXT NOT NULL UNIQUE,
    at        TIMESTAMPTZ NOT NULL,
    type      TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    principal TEXT NOT NULL,
    actor     TEXT,
    event     TEXT NOT NULL
);
CREATE INDEX tower_apikey_audit_key ON tower_apikey_audit (key_id, seq);
CREATE INDEX tower_apikey_audit_principal ON tower_apikey_audit (principal, seq);
CREATE INDEX tower_apikey_audit_at ON tower_apikey_audit (at);
-- Trigram indexes for the listing's search (a substring of id, principal, name or
-- description), so a search at a million keys reads what matches, not the table. Where
-- pg_trgm cannot be had (not installed, not allowed), the search reads the table, as before.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX tower_apikey_keys_search_id ON tower_apikey_keys
        USING gin (lower(id) gin_trgm_ops);
    CREATE INDEX tower_apikey_keys_search_principal ON tower_apikey_keys
        USING gin (lower(principal) gin_trgm_ops);
    CREATE INDEX tower_apikey_keys_search_name ON tower_apikey_keys
        USING gin (lower(coalesce(name, '')) gin_trgm_ops);
    CREATE INDEX tower_apikey_keys_search_description ON tower_apikey_keys
        USING gin (lower(coalesce(description, '')) gin_trgm_ops);
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'tower-apikey: no trigram index (%): a key search reads the whole table', SQLERRM;
END
$$;
",
    r"
-- Console sessions, by the SHA-256 of their id (the id itself is only in the browser).
CREATE TABLE tower_apikey_sessions (
    digest      TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL,
    principal   TEXT NOT NULL,
    csrf_token  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    seen_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX tower_apikey_sessions_seen_at ON tower_apikey_sessions (seen_at);
CREATE INDEX tower_apikey_sessions_created_at ON tower_apikey_sessions (created_at);
",
    r"
-- Who shares rate limits (issue 28): each validator's last share, and when it last listed
-- each key; pruned an hour after, with usage.
CREATE TABLE tower_apikey_rate_servers (
    server   BIGINT PRIMARY KEY,
    seen_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX tower_apikey_rate_servers_seen_at ON tower_apikey_rate_servers (seen_at);
CREATE TABLE tower_apikey_rate_listed (
    id       TEXT NOT NULL,
    server   BIGINT NOT NULL,
    seen_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (id, server)
);
CREATE INDEX tower_apikey_rate_listed_seen_at ON tower_apikey_rate_listed (seen_at);
",
];

/// The NOTIFY channel a commit notifies and followers LISTEN on; the log holds what changed.
macro_rules! channel {
    () => {
        "tower_apikey_changes"
    };
}

pub(super) const LISTEN: &str = concat!("LISTEN ", channel!());

/// Logs a change for each id and stamps each record with its version.
pub(super) const LOG_CHANGES: &str = "WITH logged AS (INSERT INTO tower_apikey_changes (id) \
     SELECT unnest($1::TEXT[]) RETURNING version, id) \
     UPDATE tower_apikey_keys AS k SET version = logged.version \
     FROM logged WHERE k.id = logged.id";

/// One notification for the whole transaction (followers read the log); changes are kept a
/// day for servers catching up (one offline longer forgets its whole cache).
pub(super) const NOTIFY_AND_PRUNE: &str = concat!(
    "NOTIFY ",
    channel!(),
    "; DELETE FROM tower_apikey_changes WHERE changed_at < now() - interval '1 day'"
);

/// Serialises writers, so change versions commit in order.
const WRITE_LOCK: i64 = 0x7461_6b5f_7772_6974;
pub(super) const TAKE_WRITE_LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

/// Serialises migrations.
const MIGRATE_LOCK: i64 = 0x7461_6b5f_6d69_6772;
const LOCK_MIGRATIONS: &str = "SELECT pg_advisory_lock($1)";
const UNLOCK_MIGRATIONS: &str = "SELECT pg_advisory_unlock($1)";
const CREATE_SCHEMA_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS tower_apikey_schema (version INT NOT NULL)";
const APPLIED: &str = "SELECT coalesce(max(version), 0) FROM tower_apikey_schema";
const MARK_APPLIED: &str = "INSERT INTO tower_apikey_schema (version) VALUES ($1)";

/// The write lock, as a parameter of [`TAKE_WRITE_LOCK`].
pub(super) fn write_lock() -> &'static i64 {
    &WRITE_LOCK
}

/// Applies, in one transaction each, the migrations not yet applied, holding the migration
/// lock (several servers may call this at once). Returns how many were applied.
pub(super) async fn migrate(
    client: &mut deadpool_postgres::Object,
) -> Result<usize, tokio_postgres::Error> {
    client.execute(LOCK_MIGRATIONS, &[&MIGRATE_LOCK]).await?;
    let result = async {
        client.batch_execute(CREATE_SCHEMA_TABLE).await?;
        let applied: i32 = client.query_one(APPLIED, &[]).await?.get(0);
        let applied = usize::try_from(applied).unwrap_or(0);
        let mut count = 0;
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
            let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
            let tx = client.transaction().await?;
            tx.batch_execute(migration).await?;
            tx.execute(MARK_APPLIED, &[&version]).await?;
            tx.commit().await?;
            count += 1;
        }
        Ok(count)
    }
    .await;
    let unlocked = client.execute(UNLOCK_MIGRATIONS, &[&MIGRATE_LOCK]).await;
    let count = result?;
    unlocked?;
    Ok(count)
}
