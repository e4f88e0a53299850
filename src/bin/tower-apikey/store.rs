//! Opening the store a command names, and a key manager over it.

use tower_apikey::key::KeyFormat;
use tower_apikey::{BoxKeyStore, FileStore, KeyManager, LifecycleError};

use crate::args::{PolicyArgs, StoreArgs};
use crate::terminal::Failure;

/// Runs `f` with a key manager over the store `args` name.
pub(crate) fn with_manager<T, F, Fut>(
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
        let mut keys = KeyManager::new(store.boxed()).actor(cli_actor());
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

/// Who the CLI acts as in the records it changes: `cli:$USER`.
pub(crate) fn cli_actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// Opens the store `args` name, without following changes (this process is short-lived),
/// and runs `f` on it.
pub(crate) fn with_store<T, F, Fut>(args: &StoreArgs, f: F) -> Result<T, Failure>
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
pub(crate) enum Opened {
    File(FileStore),
    #[cfg(feature = "postgres")]
    Pg(tower_apikey::store::PgKeyStore),
}

impl Opened {
    pub(crate) fn boxed(self) -> BoxKeyStore {
        match self {
            Opened::File(store) => BoxKeyStore::new(store),
            #[cfg(feature = "postgres")]
            Opened::Pg(store) => BoxKeyStore::new(store),
        }
    }
}
