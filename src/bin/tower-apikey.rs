//! `tower-apikey`: hash, verify, issue, rotate, regenerate, revoke, export and import API keys.
//!
//! Secrets come on stdin or from the OS RNG, never from argv. Exit status: 0 done, 1 refused
//! by a rule (no match, limit reached, key inactive or protected, unknown id), 2 bad usage or
//! bad input; the reason goes to stderr, never a key.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use jiff::Timestamp;
use serde::Serialize;
use tower_apikey::expiry::Expiry;
use tower_apikey::hash::{HashParams, Pbkdf2Hash, Prf};
use tower_apikey::key::{KeyFormat, KeyId, PresentedKey};
use tower_apikey::lifecycle::{Export, MaximoKey};
use tower_apikey::{
    BoxKeyStore, FileStore, KeyManager, KeyRecord, KeyStatus, LifecycleError, NewKey,
};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(
    name = "tower-apikey",
    version,
    about = "Hash, verify, issue, rotate, regenerate, revoke, export and import API keys"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        policy: PolicyArgs,
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

#[derive(Clone, Copy, clap::ValueEnum)]
enum ImportFormat {
    Json,
    Maximo,
}

/// How keys are made and limited.
#[derive(Args)]
struct PolicyArgs {
    /// The most live keys one principal may hold.
    #[arg(long, default_value = "2")]
    max_keys_per_principal: std::num::NonZeroUsize,
    /// Key prefix.
    #[arg(long, default_value = KeyFormat::DEFAULT_PREFIX)]
    prefix: String,
    #[command(flatten)]
    hash: HashArgs,
}

/// Where the keys are: a JSON file or a PostgreSQL database. With neither flag, the
/// DATABASE_URL environment variable names the database (so no password need be in argv).
#[derive(Args)]
#[group(multiple = false)]
struct StoreArgs {
    /// The JSON key store file.
    #[arg(long)]
    store: Option<PathBuf>,
    /// A PostgreSQL database (`postgresql://user@host/db` or `host=/run/postgresql
    /// dbname=apikeys`). Needs the `postgres` feature.
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Args)]
struct HashArgs {
    /// The HMAC hash function.
    #[arg(long, default_value = "sha1")]
    prf: Prf,
    /// PBKDF2 iterations.
    #[arg(long, default_value_t = 1000)]
    iterations: u32,
    /// Salt length in bytes.
    #[arg(long, default_value_t = 24)]
    salt_bytes: usize,
    /// Hash length in bytes.
    #[arg(long, default_value_t = 24)]
    hash_bytes: usize,
}

impl HashArgs {
    fn params(&self) -> Result<HashParams, Failure> {
        HashParams::default()
            .prf(self.prf)
            .iterations(self.iterations)
            .and_then(|p| p.salt_len(self.salt_bytes))
            .and_then(|p| p.hash_len(self.hash_bytes))
            .map_err(Failure::usage)
    }
}

/// A failed command: its exit status and the reason for stderr.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Bad usage or input: exit 2.
    fn usage(error: impl std::fmt::Display) -> Self {
        Self {
            code: 2,
            message: error.to_string(),
        }
    }

    /// Refused by a rule: exit 1.
    fn refused(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("tower-apikey: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Hash(args) => {
            let params = args.params()?;
            let key = read_key()?;
            let record = Pbkdf2Hash::create(&key, &params).map_err(Failure::usage)?;
            print_line(&record.to_string())
        }
        Command::Verify { record, prf } => {
            let record: Pbkdf2Hash = record
                .parse()
                .map_err(|e| Failure::usage(format!("malformed record: {e}")))?;
            let key = read_key()?;
            if record.verify(prf, &key) {
                Ok(())
            } else {
                Err(Failure::refused("key does not match the record"))
            }
        }
        Command::Issue {
            store,
            principal,
            name,
            description,
            permissions,
            expires,
            protected,
            key_stdin,
            policy,
        } => {
            let mut new = NewKey::new(principal)
                .permissions(permissions)
                .expires(expires)
                .protected(protected);
            if let Some(name) = name {
                new = new.name(name);
            }
            if let Some(description) = description {
                new = new.description(description);
            }
            if key_stdin {
                let key = read_key()?;
                let key = PresentedKey::new(&key).map_err(Failure::usage)?;
                let record = with_manager(&store, Some(&policy), |keys| async move {
                    keys.issue_with_key(new, &key).await
                })?;
                print_line(record.id.as_str())
            } else {
                let (_, key) = with_manager(&store, Some(&policy), |keys| async move {
                    keys.issue(new).await
                })?;
                print_line(key.expose())
            }
        }
        Command::Show { store, id, json } => {
            let record = with_manager(&store, None, |keys| async move { keys.get(&id).await })?;
            let now = Timestamp::now();
            if json {
                let text = serde_json::to_string_pretty(&Listed::new(&record, now))
                    .map_err(Failure::usage)?;
                return print_line(&text);
            }
            let or_none =
                |t: Option<Timestamp>, none: &str| t.map_or(none.to_owned(), |t| t.to_string());
            let mut out = String::new();
            let mut field = |name: &str, value: &str| out += &format!("{name:<13} {value}\n");
            field("id", record.id.as_str());
            field("principal", &record.principal);
            field("status", status_of(&record, now));
            field("name", record.name.as_deref().unwrap_or(""));
            field("description", record.description.as_deref().unwrap_or(""));
            field("permissions", &record.permissions.join(", "));
            field("expires", &or_none(record.expires_at, "never"));
            field(
                "key expired",
                if record.is_expired_at(now) {
                    "yes"
                } else {
                    "no"
                },
            );
            field("last used", &or_none(record.last_used_at, "never"));
            field("protected", if record.protected { "yes" } else { "no" });
            field("legacy", if record.legacy { "yes" } else { "no" });
            field("prf", &record.prf.to_string());
            field("iterations", &record.hash.iterations().to_string());
            field("created", &record.created_at.to_string());
            field("created by", record.created_by.as_deref().unwrap_or(""));
            field("updated", &or_none(record.updated_at, ""));
            field("updated by", record.updated_by.as_deref().unwrap_or(""));
            write_stdout(out.as_bytes())
        }
        Command::List {
            store,
            principal,
            json,
        } => {
            let records = with_manager(&store, None, |keys| async move {
                keys.list(principal.as_deref()).await
            })?;
            let now = Timestamp::now();
            if json {
                let rows: Vec<Listed<'_>> = records.iter().map(|r| Listed::new(r, now)).collect();
                let text = serde_json::to_string_pretty(&rows).map_err(Failure::usage)?;
                print_line(&text)
            } else {
                let row = |id: &str,
                           principal: &str,
                           status: &str,
                           expires: &str,
                           used: &str,
                           name: &str| {
                    format!(
                        "{id:<18} {principal:<20} {status:<9} {expires:<26} {used:<26} {name}\n"
                    )
                };
                let mut out = row("ID", "PRINCIPAL", "STATUS", "EXPIRES", "LAST USED", "NAME");
                for r in &records {
                    let expires = r
                        .expires_at
                        .map_or_else(|| "never".to_owned(), |t| t.to_string());
                    let used = r
                        .last_used_at
                        .map_or_else(|| "never".to_owned(), |t| t.to_string());
                    out += &row(
                        r.id.as_str(),
                        &r.principal,
                        status_of(r, now),
                        &expires,
                        &used,
                        r.name.as_deref().unwrap_or(""),
                    );
                }
                write_stdout(out.as_bytes())
            }
        }
        Command::Rotate {
            store,
            id,
            grace,
            policy,
        } => {
            let (record, key) = with_manager(&store, Some(&policy), |keys| async move {
                keys.rotate(&id, grace).await
            })?;
            eprintln!("issued key {} of {}", record.id, record.principal);
            print_line(key.expose())
        }
        Command::Regenerate { store, id, policy } => {
            let (_, key) = with_manager(&store, Some(&policy), |keys| async move {
                keys.regenerate(&id).await
            })?;
            print_line(key.expose())
        }
        Command::Deactivate { store, id } => {
            let r = with_manager(
                &store,
                None,
                |keys| async move { keys.deactivate(&id).await },
            )?;
            done("deactivated", &r)
        }
        Command::Activate { store, id } => {
            let r = with_manager(&store, None, |keys| async move { keys.activate(&id).await })?;
            done("activated", &r)
        }
        Command::Revoke { store, id } => {
            let r = with_manager(&store, None, |keys| async move { keys.revoke(&id).await })?;
            done("revoked", &r)
        }
        Command::Delete { store, id, force } => {
            let r = with_manager(
                &store,
                None,
                |keys| async move { keys.delete(&id, force).await },
            )?;
            done("deleted", &r)
        }
        Command::Migrate { database_url } => {
            let args = StoreArgs {
                store: None,
                database_url: Some(database_url),
            };
            let applied = with_store(&args, |store| async move {
                match store {
                    Opened::File(_) => Ok(0),
                    #[cfg(feature = "postgres")]
                    Opened::Pg(store) => store.migrate().await,
                }
            })?;
            eprintln!("applied {applied} migration(s); the schema is up to date");
            Ok(())
        }
        Command::Export { store } => {
            let export = with_manager(&store, None, |keys| async move { keys.export().await })?;
            let text = serde_json::to_string_pretty(&export).map_err(Failure::usage)?;
            print_line(&text)
        }
        Command::Import { store, format } => {
            let mut input = Vec::new();
            io::stdin()
                .read_to_end(&mut input)
                .map_err(|e| Failure::usage(format!("reading stdin: {e}")))?;
            let n = match format {
                ImportFormat::Json => {
                    let export: Export = serde_json::from_slice(&input)
                        .map_err(|e| Failure::usage(format!("not an export: {e}")))?;
                    with_manager(
                        &store,
                        None,
                        |keys| async move { keys.import(export).await },
                    )?
                }
                ImportFormat::Maximo => {
                    let rows = MaximoKey::parse_export(&input).map_err(Failure::usage)?;
                    with_manager(&store, None, |keys| async move {
                        keys.import_maximo(rows).await.map(|r| r.len())
                    })?
                }
            };
            eprintln!("imported {n} key record(s)");
            Ok(())
        }
    }
}

/// The status a listing shows: an active key past its expiry shows as expired.
fn status_of(record: &KeyRecord, now: Timestamp) -> &'static str {
    if record.status == KeyStatus::Active && record.is_expired_at(now) {
        "expired"
    } else {
        record.status.as_str()
    }
}

fn done(what: &str, record: &KeyRecord) -> Result<(), Failure> {
    eprintln!("{what} key {} of {}", record.id, record.principal);
    Ok(())
}

/// One row of `list --json`.
#[derive(Serialize)]
struct Listed<'a> {
    id: &'a KeyId,
    principal: &'a str,
    name: Option<&'a str>,
    description: Option<&'a str>,
    status: KeyStatus,
    permissions: &'a [String],
    prf: Prf,
    expires_at: Option<Timestamp>,
    key_expired: bool,
    last_used_at: Option<Timestamp>,
    protected: bool,
    legacy: bool,
    created_at: Timestamp,
    created_by: Option<&'a str>,
    updated_at: Option<Timestamp>,
    updated_by: Option<&'a str>,
}

impl<'a> Listed<'a> {
    fn new(r: &'a KeyRecord, now: Timestamp) -> Self {
        Self {
            id: &r.id,
            principal: &r.principal,
            name: r.name.as_deref(),
            description: r.description.as_deref(),
            status: r.status,
            permissions: &r.permissions,
            prf: r.prf,
            expires_at: r.expires_at,
            key_expired: r.is_expired_at(now),
            last_used_at: r.last_used_at,
            protected: r.protected,
            legacy: r.legacy,
            created_at: r.created_at,
            created_by: r.created_by.as_deref(),
            updated_at: r.updated_at,
            updated_by: r.updated_by.as_deref(),
        }
    }
}

/// Runs `f` with a key manager over the store `args` name.
fn with_manager<T, F, Fut>(
    args: &StoreArgs,
    policy: Option<&PolicyArgs>,
    f: F,
) -> Result<T, Failure>
where
    F: FnOnce(KeyManager) -> Fut,
    Fut: std::future::Future<Output = Result<T, LifecycleError>>,
{
    let mut keys_config = None;
    if let Some(policy) = policy {
        let params = policy.hash.params()?;
        let format = KeyFormat::with_prefix(&policy.prefix).map_err(Failure::usage)?;
        keys_config = Some((params, format, policy.max_keys_per_principal));
    }
    let outcome = with_store(args, |store| async move {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        let mut keys = KeyManager::new(store.boxed()).actor(format!("cli:{user}"));
        if let Some((params, format, max)) = keys_config {
            keys = keys
                .hash_params(params)
                .key_format(format)
                .max_keys_per_principal(max);
        }
        Ok(f(keys).await)
    })?;
    outcome.map_err(|e| Failure {
        code: if e.is_refusal() { 1 } else { 2 },
        message: e.to_string(),
    })
}

/// Opens the store `args` name, without following changes (this process is short-lived),
/// and runs `f` on it.
fn with_store<T, F, Fut>(args: &StoreArgs, f: F) -> Result<T, Failure>
where
    F: FnOnce(Opened) -> Fut,
    Fut: std::future::Future<Output = Result<T, tower_apikey::StoreError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::usage)?;
    let from_env = std::env::var("DATABASE_URL").ok();
    let database_url = args.database_url.as_ref().or(from_env.as_ref());
    runtime.block_on(async {
        let store = match (&args.store, database_url) {
            (Some(path), _) => Opened::File(
                FileStore::builder(path)
                    .no_polling()
                    .open()
                    .await
                    .map_err(Failure::usage)?,
            ),
            #[cfg(feature = "postgres")]
            (None, Some(url)) => Opened::Pg(
                tower_apikey::store::PgKeyStore::builder(url.as_str())
                    .follow_changes(false)
                    .connect()
                    .await
                    .map_err(Failure::usage)?,
            ),
            #[cfg(not(feature = "postgres"))]
            (None, Some(_)) => {
                return Err(Failure::usage(
                    "this build has no PostgreSQL support (feature `postgres`)",
                ))
            }
            (None, None) => {
                return Err(Failure::usage(
                    "give --store PATH or --database-url URL (or set DATABASE_URL)",
                ))
            }
        };
        f(store).await.map_err(Failure::usage)
    })
}

/// The store the CLI opened: every command works on it as a [`BoxKeyStore`]; `migrate` needs
/// the PostgreSQL store itself.
enum Opened {
    File(FileStore),
    #[cfg(feature = "postgres")]
    Pg(tower_apikey::store::PgKeyStore),
}

impl Opened {
    fn boxed(self) -> BoxKeyStore {
        match self {
            Opened::File(store) => BoxKeyStore::new(store),
            #[cfg(feature = "postgres")]
            Opened::Pg(store) => BoxKeyStore::new(store),
        }
    }
}

/// The key on stdin, less one trailing newline.
fn read_key() -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut key = Zeroizing::new(Vec::new());
    io::stdin()
        .read_to_end(&mut key)
        .map_err(|e| Failure::usage(format!("reading stdin: {e}")))?;
    if key.ends_with(b"\n") {
        key.pop();
        if key.ends_with(b"\r") {
            key.pop();
        }
    }
    if key.is_empty() {
        return Err(Failure::usage("no key on stdin"));
    }
    Ok(key)
}

fn print_line(line: &str) -> Result<(), Failure> {
    let mut out = Zeroizing::new(Vec::with_capacity(line.len() + 1));
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::usage(format!("writing stdout: {e}")))
}
