//! The command line: commands and their flags (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tower_apikey::events::EventKind;
use tower_apikey::hash::{HashParams, Prf};
use tower_apikey::key::{KeyFormat, KeyId};
use tower_apikey::lifecycle::Expiry;
use tower_apikey::policy::{Quota, RateLimit};
use tower_apikey::usage::Granularity;
use tower_apikey::RevocationReason;

use crate::terminal::Failure;

#[derive(Parser)]
#[command(
    name = "tower-apikey",
    version,
    about = "Hash, verify, issue, rotate, regenerate, revoke, export and import API keys"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Read a key on stdin and print its PBKDF2 record `iterations:salt_hex:hash_hex`.
    Hash(HashArgs),
    /// Read a key on stdin and check it against a record: exit 0 match, 1 no match.
    Verify {
        /// The record, `iterations:salt_hex:hash_hex`.
        #[arg(long, allow_hyphen_values = true)]
        record: String,
        /// The HMAC hash the record was made with.
        #[arg(long, default_value = "sha1")]
        prf: Prf,
    },
    /// Create a key for a principal and print it, once, as the only line on stdout.
    Issue {
        #[command(flatten)]
        store: StoreArgs,
        /// Who the key belongs to.
        #[arg(long)]
        principal: String,
        /// A short label.
        #[arg(long)]
        name: Option<String>,
        /// A longer note.
        #[arg(long)]
        description: Option<String>,
        /// A permission the key carries (repeat for several).
        #[arg(long = "permission")]
        permissions: Vec<String>,
        /// When the key expires: `never`, a duration (`30d`, `P1W`), Maximo minutes (`-1` is
        /// never) or an RFC 3339 time.
        #[arg(long, default_value = "never", allow_hyphen_values = true)]
        expires: Expiry,
        /// Deleted only with `delete --force`.
        #[arg(long)]
        protected: bool,
        /// Store the key given on stdin instead of making one, and print its id. A key not in
        /// this format is kept as a legacy opaque key.
        #[arg(long)]
        key_stdin: bool,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Change a key's metadata, rate limit, quota or IP allow-list; `none` clears a setting.
    Update {
        #[command(flatten)]
        store: StoreArgs,
        /// The key's id.
        id: KeyId,
        /// A short label (`none` clears it).
        #[arg(long)]
        name: Option<Clearable<String>>,
        /// A longer note (`none` clears it).
        #[arg(long)]
        description: Option<Clearable<String>>,
        /// A permission the key carries (repeat for several; replaces them all).
        #[arg(long = "permission")]
        permissions: Vec<String>,
        /// When the key expires, counted from now (as for `issue`; `never` clears it).
        #[arg(long, allow_hyphen_values = true)]
        expires: Option<Expiry>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Show one key's record (no secrets).
    Show {
        #[command(flatten)]
        store: StoreArgs,
        /// The key's id.
        id: KeyId,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List keys (no secrets).
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this principal's keys.
        #[arg(long)]
        principal: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Issue a second key like this one and let this one expire after a grace period; print
    /// the new key as the only line on stdout.
    Rotate {
        #[command(flatten)]
        store: StoreArgs,
        /// The key's id.
        id: KeyId,
        /// How long the old key keeps working (`7d`, `PT12H`, `0s`).
        #[arg(long, default_value = "7d")]
        grace: jiff::Span,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Give a key a new secret (same id and metadata) and print it as the only line on stdout;
    /// the old secret stops working.
    Regenerate {
        #[command(flatten)]
        store: StoreArgs,
        /// The key's id.
        id: KeyId,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Switch a key off until it is activated.
    Deactivate {
        #[command(flatten)]
        store: StoreArgs,
        /// The key's id.
        id: KeyId,
    },
    /// Switch a deactivated key back on.
    Activate {
        #[command(flatten)]
        store: StoreArgs,
        /// The key's id.
        id: KeyId,
    },
    /// Revoke a key for good.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// The key's id.
        id: KeyId,
        /// Why: unspecified, leaked, compromised, superseded or retired.
        #[arg(long, default_value = "unspecified")]
        reason: RevocationReason,
        /// Where it came to light (a URL, a ticket), kept on the record.
        #[arg(long)]
        location: Option<String>,
    },
    /// Delete a key's record.
    Delete {
        #[command(flatten)]
        store: StoreArgs,
        /// The key's id.
        id: KeyId,
        /// Delete a protected key too.
        #[arg(long)]
        force: bool,
    },
    /// Create or update the PostgreSQL schema.
    Migrate {
        /// The database (or DATABASE_URL).
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Write every record (no secrets) as JSON to stdout.
    Export {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Find keys in files, directories (recursively) or stdin and print `PATH:LINE: key ID`,
    /// never the secret: exit 1 when any is found, 0 when none, 2 on an error. With a store,
    /// say whether each is live.
    Scan {
        /// Files or directories; stdin when none.
        paths: Vec<PathBuf>,
        /// The key prefix to look for.
        #[arg(long, default_value = KeyFormat::DEFAULT_PREFIX)]
        prefix: String,
        /// The JSON key store file, to say whether each key found is live.
        #[arg(long)]
        store: Option<PathBuf>,
        /// A PostgreSQL database, to say whether each key found is live.
        #[arg(long)]
        database_url: Option<String>,
        /// Revoke every key found that is ours and not yet revoked (deactivated and expired
        /// ones too), with the reason `leaked` and where it was found.
        #[arg(long)]
        revoke: bool,
    },
    /// Show a key's requests by outcome, hour by hour (or day by day), with a bar each.
    Usage {
        #[command(flatten)]
        store: StoreArgs,
        /// The key's id.
        id: KeyId,
        /// How far back (`24h`, `7d`, `P30D`; default 24 hours by the hour, 30 days by the
        /// day), up to the current hour or day.
        #[arg(long)]
        since: Option<jiff::Span>,
        /// `hour` or `day` (UTC days).
        #[arg(long, default_value = "hour")]
        granularity: Granularity,
        /// Print the JSON the admin API answers (`{"buckets": [...]}`).
        #[arg(long)]
        json: bool,
    },
    /// Show the audit trail, newest first: what was done to which key, by whom, and why.
    Events {
        #[command(flatten)]
        store: StoreArgs,
        /// Only events about this key.
        #[arg(long)]
        key: Option<KeyId>,
        /// Only events about this principal's keys.
        #[arg(long)]
        principal: Option<String>,
        /// Only events of this type (`key.revoked`, or `revoked`).
        #[arg(long = "type")]
        kind: Option<EventKind>,
        /// Only events this actor caused (`cli:alice`, `admin:ops/KEY_ID`, …).
        #[arg(long)]
        actor: Option<String>,
        /// How far back (`24h`, `30d`, `P1Y`).
        #[arg(long, default_value = "30d")]
        since: jiff::Span,
        /// At most this many events.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        limit: u32,
        /// Print one JSON array of the events, each as the admin API shows it.
        #[arg(long)]
        json: bool,
    },
    /// Read records from stdin and add them all, or none.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// `json`: an `export`. `maximo`: CSV or a JSON array of `userid, apikey,
        /// expiration` (PBKDF2 record, minutes with -1 for never), kept as legacy opaque keys.
        #[arg(long, value_enum, default_value_t = ImportFormat::Json)]
        format: ImportFormat,
    },
}

/// A key's rate limit, quota and IP allow-list.
#[derive(Args)]
pub(crate) struct LimitArgs {
    /// At most N requests per period, with a burst of N (`100/1m`, `5/1s`; `none` clears it).
    #[arg(long)]
    pub(crate) rate_limit: Option<Clearable<RateLimit>>,
    /// Uses allowed, optionally refilled every period (`10000`, `10000/1d`; `none` clears
    /// it). Setting it starts it afresh.
    #[arg(long)]
    pub(crate) quota: Option<Clearable<Quota>>,
    /// An address or CIDR the key may be used from (repeat for several; replaces the list;
    /// `none` allows anywhere).
    #[arg(long = "allow-ip")]
    pub(crate) allow_ips: Vec<Clearable<IpNet>>,
}

impl LimitArgs {
    /// The allow-list given, if any: `Some(empty)` for `none`.
    pub(crate) fn allowed_ips(&self) -> Result<Option<Vec<IpNet>>, Failure> {
        if self.allow_ips.is_empty() {
            return Ok(None);
        }
        let nets: Vec<IpNet> = self
            .allow_ips
            .iter()
            .filter_map(|ip| ip.clone().into_option())
            .collect();
        if !nets.is_empty() && nets.len() != self.allow_ips.len() {
            return Err(Failure::usage(
                "--allow-ip none cannot be given with addresses",
            ));
        }
        Ok(Some(nets))
    }
}

/// A setting, or `none` to clear it.
#[derive(Clone, Debug)]
pub(crate) enum Clearable<T> {
    Set(T),
    None,
}

impl<T> Clearable<T> {
    pub(crate) fn into_option(self) -> Option<T> {
        match self {
            Clearable::Set(value) => Some(value),
            Clearable::None => None,
        }
    }
}

impl<T: std::str::FromStr> std::str::FromStr for Clearable<T>
where
    T::Err: std::fmt::Display,
{
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "none" {
            return Ok(Clearable::None);
        }
        text.parse()
            .map(Clearable::Set)
            .map_err(|e: T::Err| e.to_string())
    }
}

/// A single address counts as a host CIDR (`/32`, `/128`).
#[derive(Clone, Debug)]
pub(crate) struct IpNet(pub(crate) tower_apikey::policy::IpNet);

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Ok(net) = text.parse::<tower_apikey::policy::IpNet>() {
            return Ok(Self(net.trunc()));
        }
        text.parse::<std::net::IpAddr>()
            .map(|ip| Self(ip.into()))
            .map_err(|_| format!("not an IP address or CIDR: {text:?}"))
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum ImportFormat {
    Json,
    Maximo,
}

/// How keys are made and limited.
#[derive(Args)]
pub(crate) struct PolicyArgs {
    /// The most live keys one principal may hold.
    #[arg(long, default_value = "2")]
    pub(crate) max_keys_per_principal: std::num::NonZeroUsize,
    /// Key prefix.
    #[arg(long, default_value = KeyFormat::DEFAULT_PREFIX)]
    pub(crate) prefix: String,
    #[command(flatten)]
    pub(crate) hash: HashArgs,
}

/// Where the keys are: a JSON file or a PostgreSQL database. With neither flag, the
/// DATABASE_URL environment variable names the database (so no password need be in argv).
#[derive(Args)]
#[group(multiple = false)]
pub(crate) struct StoreArgs {
    /// The JSON key store file.
    #[arg(long)]
    pub(crate) store: Option<PathBuf>,
    /// A PostgreSQL database (`postgresql://user@host/db?sslmode=verify-full&sslrootcert=system`
    /// or `host=/run/postgresql dbname=apikeys`; sslmode and sslrootcert as in libpq). Needs
    /// the `postgres` feature.
    #[arg(long)]
    pub(crate) database_url: Option<String>,
}

#[derive(Args)]
pub(crate) struct HashArgs {
    /// The HMAC hash function.
    #[arg(long, default_value = "sha1")]
    pub(crate) prf: Prf,
    /// PBKDF2 iterations.
    #[arg(long, default_value_t = 1000)]
    pub(crate) iterations: u32,
    /// Salt length in bytes.
    #[arg(long, default_value_t = 24)]
    pub(crate) salt_bytes: usize,
    /// Hash length in bytes.
    #[arg(long, default_value_t = 24)]
    pub(crate) hash_bytes: usize,
}

impl HashArgs {
    pub(crate) fn params(&self) -> Result<HashParams, Failure> {
        HashParams::default()
            .with_prf(self.prf)
            .with_iterations(self.iterations)
            .and_then(|p| p.with_salt_len(self.salt_bytes))
            .and_then(|p| p.with_hash_len(self.hash_bytes))
            .map_err(Failure::usage)
    }
}
