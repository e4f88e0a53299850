//! `tower-apikey`: hash, verify, issue, rotate, regenerate, revoke, export and import API keys.
//!
//! Secrets come on stdin or from the OS RNG, never from argv. Exit status: 0 done, 1 refused
//! by a rule (no match, limit reached, key inactive or protected, unknown id), 2 bad usage or
//! bad input; the reason goes to stderr, never a key.

mod args;
mod events;
mod scan;
mod store;
mod terminal;
mod usage;

use std::io::{self, Read};
use std::process::ExitCode;

use clap::Parser;
use jiff::Timestamp;
use serde::Serialize;
use tower_apikey::hash::{Pbkdf2Hash, Prf};
use tower_apikey::key::{KeyId, PresentedKey};
use tower_apikey::lifecycle::{Export, MaximoKey};
use tower_apikey::policy::{IpNet, Quota, RateLimit};
use tower_apikey::{KeyPatch, KeyRecord, KeyStatus, NewKey, Revocation};

use crate::args::{Clearable, Cli, Command, ImportFormat, StoreArgs};
use crate::store::{with_manager, with_store, Opened};
use crate::terminal::{print_line, read_key, write_stdout, Failure};

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
            limits,
            policy,
        } => {
            let mut new = NewKey::new(principal)
                .permissions(permissions)
                .expires(expires)
                .protected(protected)
                .rate_limit(limits.rate_limit.clone().and_then(Clearable::into_option))
                .quota(limits.quota.clone().and_then(Clearable::into_option))
                .allowed_ips(
                    limits
                        .allowed_ips()?
                        .unwrap_or_default()
                        .into_iter()
                        .map(|n| n.0),
                );
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
        Command::Update {
            store,
            id,
            name,
            description,
            permissions,
            expires,
            limits,
        } => {
            let mut patch = KeyPatch::new();
            if let Some(name) = name {
                patch = patch.name(name.into_option());
            }
            if let Some(description) = description {
                patch = patch.description(description.into_option());
            }
            if !permissions.is_empty() {
                patch = patch.permissions(permissions);
            }
            if let Some(expires) = expires {
                patch = patch.expires(expires);
            }
            if let Some(limit) = limits.rate_limit.clone() {
                patch = patch.rate_limit(limit.into_option());
            }
            if let Some(quota) = limits.quota.clone() {
                patch = patch.quota(quota.into_option());
            }
            if let Some(allowed) = limits.allowed_ips()? {
                patch = patch.allowed_ips(allowed.into_iter().map(|n| n.0));
            }
            if patch.is_empty() {
                return Err(Failure::usage("nothing to change: give at least one flag"));
            }
            let r = with_manager(
                &store,
                None,
                |keys| async move { keys.update(&id, patch).await },
            )?;
            done("updated", &r)
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
            field("last used", &or_none(record.usage.last_used_at, "never"));
            field("protected", if record.protected { "yes" } else { "no" });
            let or_dash = |v: Option<String>| v.unwrap_or_else(|| "none".to_owned());
            field(
                "rate limit",
                &or_dash(record.rate_limit.map(|l| l.to_string())),
            );
            field("quota", &or_dash(record.quota.map(|q| q.to_string())));
            if let Some(quota) = record.quota {
                let left = record.usage.quota_remaining.unwrap_or(quota.uses());
                field(
                    "quota left",
                    &format!("{left} (leases held by servers count as used)"),
                );
            }
            let allowed: Vec<String> = record.allowed_ips.iter().map(ToString::to_string).collect();
            let allowed = if allowed.is_empty() {
                "anywhere".to_owned()
            } else {
                allowed.join(", ")
            };
            field("allowed ips", &allowed);
            if let Some(revocation) = &record.revocation {
                field("revoked for", revocation.reason.as_str());
                field("found at", revocation.location.as_deref().unwrap_or(""));
            }
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
                        .usage
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
        Command::Revoke {
            store,
            id,
            reason,
            location,
        } => {
            let revocation = Revocation { reason, location };
            let r = with_manager(&store, None, |keys| async move {
                keys.revoke_with(&id, revocation).await
            })?;
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
        Command::Scan {
            paths,
            prefix,
            store,
            database_url,
            revoke,
        } => scan::run(
            &paths,
            &prefix,
            &StoreArgs {
                store,
                database_url,
            },
            revoke,
        ),
        Command::Usage {
            store,
            id,
            since,
            granularity,
            json,
        } => usage::show(&store, &id, since, granularity, json),
        Command::Events {
            store,
            key,
            principal,
            kind,
            actor,
            since,
            limit,
            json,
        } => {
            let filters = events::Filters {
                key,
                principal,
                kind,
                actor,
                since,
                limit: limit as usize,
            };
            events::show(&store, filters, json)
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
    rate_limit: Option<RateLimit>,
    quota: Option<Quota>,
    quota_remaining: Option<u64>,
    allowed_ips: &'a [IpNet],
    #[serde(skip_serializing_if = "Option::is_none")]
    revocation: Option<&'a Revocation>,
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
            last_used_at: r.usage.last_used_at,
            protected: r.protected,
            legacy: r.legacy,
            created_at: r.created_at,
            created_by: r.created_by.as_deref(),
            updated_at: r.updated_at,
            updated_by: r.updated_by.as_deref(),
            rate_limit: r.rate_limit,
            quota: r.quota,
            quota_remaining: r.quota.map(|q| r.usage.quota_remaining.unwrap_or(q.uses())),
            allowed_ips: &r.allowed_ips,
            revocation: r.revocation.as_ref(),
        }
    }
}
