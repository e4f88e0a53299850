//! `tower-apikey`: hash, verify, issue, list and revoke API keys.
//!
//! Secrets come on stdin or from the OS RNG, never from argv. Exit status: 0 done, 1 refused
//! (no match, unknown id), 2 bad usage or bad input; the reason goes to stderr, never a key.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use jiff::Timestamp;
use serde::Serialize;
use tower_apikey::key::{KeyFormat, KeyId};
use tower_apikey::record::{HashParams, Pbkdf2Hash, Prf};
use tower_apikey::store::Expiry;
use tower_apikey::{FileStore, KeyRecord, KeyStatus, KeyStore};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(
    name = "tower-apikey",
    version,
    about = "Hash, verify, issue, list and revoke API keys"
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
        /// When the key expires: `never`, a duration (`30d`, `P1W`) or an RFC 3339 time.
        #[arg(long, default_value = "never")]
        expires: Expiry,
        /// Key prefix.
        #[arg(long, default_value = KeyFormat::DEFAULT_PREFIX)]
        prefix: String,
        #[command(flatten)]
        hash: HashArgs,
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
    /// Revoke a key for good.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// The key's id.
        id: KeyId,
    },
}

#[derive(Args)]
struct StoreArgs {
    /// The JSON key store file.
    #[arg(long)]
    store: PathBuf,
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
            prefix,
            hash,
        } => {
            let params = hash.params()?;
            let format = KeyFormat::with_prefix(&prefix).map_err(Failure::usage)?;
            if principal.trim().is_empty() {
                return Err(Failure::usage("principal must not be empty"));
            }
            let expires_at = expires.resolve(Timestamp::now()).map_err(Failure::usage)?;
            let (mut record, key) =
                KeyRecord::generate(principal, &format, &params).map_err(Failure::usage)?;
            record.name = name;
            record.description = description;
            record.permissions = permissions;
            record.expires_at = expires_at;
            with_store(&store, |store| async move { store.insert(record).await })?;
            print_line(key.expose())
        }
        Command::List {
            store,
            principal,
            json,
        } => {
            let records = with_store(&store, |store| async move {
                store.list(principal.as_deref()).await
            })?;
            let now = Timestamp::now();
            if json {
                let rows: Vec<Listed<'_>> = records.iter().map(|r| Listed::new(r, now)).collect();
                let text = serde_json::to_string_pretty(&rows).map_err(Failure::usage)?;
                print_line(&text)
            } else {
                let mut out = format!(
                    "{:<18} {:<20} {:<9} {:<26} {}\n",
                    "ID", "PRINCIPAL", "STATUS", "EXPIRES", "NAME"
                );
                for r in &records {
                    let status = if r.status == KeyStatus::Active && r.is_expired_at(now) {
                        "expired"
                    } else {
                        r.status.as_str()
                    };
                    let expires = r
                        .expires_at
                        .map_or_else(|| "never".to_owned(), |t| t.to_string());
                    out += &format!(
                        "{:<18} {:<20} {:<9} {:<26} {}\n",
                        r.id,
                        r.principal,
                        status,
                        expires,
                        r.name.as_deref().unwrap_or("")
                    );
                }
                write_stdout(out.as_bytes())
            }
        }
        Command::Revoke { store, id } => {
            let record = with_store(&store, |store| async move {
                let Some(mut record) = store.get(&id).await? else {
                    return Ok(None);
                };
                record.status = KeyStatus::Revoked;
                store.update(record.clone()).await?;
                Ok(Some(record))
            })?;
            match record {
                Some(record) => {
                    eprintln!("revoked key {} of {}", record.id, record.principal);
                    Ok(())
                }
                None => Err(Failure::refused("no key with that id")),
            }
        }
    }
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
    created_at: Timestamp,
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
            created_at: r.created_at,
        }
    }
}

/// Opens the file store (no watching: this process is short-lived) and runs `f` on it.
fn with_store<T, F, Fut>(args: &StoreArgs, f: F) -> Result<T, Failure>
where
    F: FnOnce(FileStore) -> Fut,
    Fut: std::future::Future<Output = Result<T, tower_apikey::StoreError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(Failure::usage)?;
    runtime.block_on(async {
        let store = FileStore::builder(&args.store)
            .no_polling()
            .open()
            .await
            .map_err(Failure::usage)?;
        f(store).await.map_err(Failure::usage)
    })
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
