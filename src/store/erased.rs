//! Stores as trait objects: [`BoxKeyStore`], and the handles the crate's own parts hold, each
//! with the capabilities its part needs. Generated from the one list of methods each
//! capability keeps beside its trait (`records.rs`, `usage.rs`, `outbox.rs`): a method added
//! there is erased here with nothing written by hand.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::outbox::outbox_store_methods;
use super::records::key_store_methods;
use super::sessions::session_store_methods;
use super::usage::usage_store_methods;
use super::{KeyStore, OutboxStore, SessionStore, StoreError, UsageStore};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// For a capability's trait `$Trait`: an object-safe mirror `$Erased` (each future boxed),
/// implemented for every store of `$Trait`, and `$Trait` implemented for the boxed store
/// `$Boxed` (a field `inner` holding the trait object) through it.
macro_rules! erase {
    (
        $Erased:ident: [$($Super:tt)*] => $Boxed:ident;
        $Trait:ident {
            $( $method:ident ( $( $arg:ident : $ty:ty ),* ) -> $out:ty ; )*
            $( @sync $sync:ident ( $( $sarg:ident : $sty:ty ),* ) ; )*
        }
    ) => {
        #[doc = concat!("[`", stringify!($Trait), "`] as a trait object.")]
        pub(crate) trait $Erased: $($Super)* {
            $(
                fn $method<'a>(&'a self $(, $arg: $ty)*)
                    -> BoxFuture<'a, Result<$out, StoreError>>;
            )*
            $(
                fn $sync(&self $(, $sarg: $sty)*);
            )*
        }

        impl fmt::Debug for dyn $Erased {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!("dyn ", stringify!($Trait)))
            }
        }

        impl<S: $Trait> $Erased for S {
            $(
                fn $method<'a>(&'a self $(, $arg: $ty)*)
                    -> BoxFuture<'a, Result<$out, StoreError>> {
                    Box::pin(<S as $Trait>::$method(self $(, $arg)*))
                }
            )*
            $(
                fn $sync(&self $(, $sarg: $sty)*) {
                    <S as $Trait>::$sync(self $(, $sarg)*)
                }
            )*
        }

        impl $Trait for $Boxed {
            $(
                fn $method<'a>(&'a self $(, $arg: $ty)*)
                    -> impl Future<Output = Result<$out, StoreError>> + Send + 'a {
                    $Erased::$method(&*self.inner $(, $arg)*)
                }
            )*
            $(
                fn $sync(&self $(, $sarg: $sty)*) {
                    $Erased::$sync(&*self.inner $(, $sarg)*)
                }
            )*
        }
    };
}

key_store_methods!(erase { ErasedKeyStore: [Send + Sync + 'static] => BoxKeyStore; });
usage_store_methods!(erase { ErasedUsageStore: [ErasedKeyStore] => BoxKeyStore; });
outbox_store_methods!(erase { ErasedOutboxStore: [ErasedKeyStore] => BoxKeyStore; });
session_store_methods!(erase { ErasedSessionStore: [Send + Sync + 'static] => BoxSessionStore; });

/// Every capability, as [`BoxKeyStore`] holds it.
pub(crate) trait ErasedStore: ErasedUsageStore + ErasedOutboxStore {}

impl<S: UsageStore + OutboxStore> ErasedStore for S {}

impl fmt::Debug for dyn ErasedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn store")
    }
}

/// Any store with every capability ([`KeyStore`], [`UsageStore`], [`OutboxStore`]) behind an
/// [`Arc`]: clone it freely, pass it where a store is wanted. What an application holds when
/// it picks its backend at run time (the CLI, the admin example).
///
/// Each call costs one allocation for its future, which is nothing beside a store read.
/// Boxing a `BoxKeyStore` again gives it back as it is.
///
/// ```
/// use tower_apikey::store::{BoxKeyStore, FileStore, MemoryStore};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// # let dir = tempfile::tempdir()?;
/// let store = if std::env::var_os("KEYS_IN_MEMORY").is_some() {
///     BoxKeyStore::new(MemoryStore::new())
/// } else {
///     BoxKeyStore::new(FileStore::open(dir.path().join("keys.json")).await?)
/// };
/// let manager = tower_apikey::KeyManager::new(store.clone());
/// let validator = tower_apikey::Validator::builder(store).build();
/// # drop((manager, validator));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct BoxKeyStore {
    inner: Arc<dyn ErasedStore>,
}

impl fmt::Debug for BoxKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxKeyStore").finish_non_exhaustive()
    }
}

impl BoxKeyStore {
    /// Boxes `store`.
    pub fn new<S: UsageStore + OutboxStore>(store: S) -> Self {
        // Not boxed twice: each call would go through two vtables and two allocations.
        match boxed(&store) {
            Some(boxed) => boxed.clone(),
            None => Self {
                inner: Arc::new(store),
            },
        }
    }
}

fn boxed<S: KeyStore>(store: &S) -> Option<&BoxKeyStore> {
    (store as &dyn Any).downcast_ref::<BoxKeyStore>()
}

/// Any [`SessionStore`] behind an [`Arc`]: what the console holds its sessions in, whichever
/// backend the application picked at run time. Boxing a `BoxSessionStore` again gives it
/// back as it is.
#[derive(Clone)]
pub struct BoxSessionStore {
    inner: Arc<dyn ErasedSessionStore>,
}

impl fmt::Debug for BoxSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxSessionStore").finish_non_exhaustive()
    }
}

impl BoxSessionStore {
    /// Boxes `store`.
    pub fn new<S: SessionStore>(store: S) -> Self {
        match (&store as &dyn Any).downcast_ref::<BoxSessionStore>() {
            Some(boxed) => boxed.clone(),
            None => Self {
                inner: Arc::new(store),
            },
        }
    }
}

/// `store` as the handle of a part that needs every capability (the key manager).
pub(crate) fn full(store: impl UsageStore + OutboxStore) -> Arc<dyn ErasedStore> {
    match boxed(&store) {
        Some(boxed) => Arc::clone(&boxed.inner),
        None => Arc::new(store),
    }
}

/// `store` as the usage handle a validator holds.
pub(crate) fn usage(store: impl UsageStore) -> Arc<dyn ErasedUsageStore> {
    match boxed(&store) {
        Some(boxed) => Arc::clone(&boxed.inner) as Arc<dyn ErasedUsageStore>,
        None => Arc::new(store),
    }
}

/// `store` as the outbox handle a webhook sender or the expiry sweeper holds.
pub(crate) fn outbox(store: impl OutboxStore) -> Arc<dyn ErasedOutboxStore> {
    match boxed(&store) {
        Some(boxed) => Arc::clone(&boxed.inner) as Arc<dyn ErasedOutboxStore>,
        None => Arc::new(store),
    }
}
