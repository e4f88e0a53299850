//! A store that forwards every call to another, so a test double overrides only the method
//! it tests. Generated from the one list of methods each store capability keeps beside its
//! trait.

use std::future::Future;
use std::ops::{Deref, DerefMut};

use crate::store::{
    key_store_methods, outbox_store_methods, usage_store_methods, KeyStore, OutboxStore,
    StoreError, UsageStore,
};

/// The chain that hands every capability's list to `double!`.
macro_rules! with_usage {
    ($($lists:tt)*) => {
        usage_store_methods!(with_outbox { $($lists)* });
    };
}

macro_rules! with_outbox {
    ($($lists:tt)*) => {
        outbox_store_methods!(double { $($lists)* });
    };
}

/// [`StoreDouble`], one method per store method, each forwarding to the inner store; and
/// every capability's trait for [`Forward`], through the double.
macro_rules! double {
    ($(
        $Trait:ident {
            $( $method:ident ( $( $arg:ident : $ty:ty ),* ) -> $out:ty ; )*
            $( @sync $sync:ident ( $( $sarg:ident : $sty:ty ),* ) ; )*
        }
    )*) => {
        /// What a test double changes of the store it wraps: each method forwards to
        /// [`inner`](Self::inner) unless the double overrides it, and [`before`](Self::before)
        /// runs ahead of every call. Wrap the double in [`Forward`] to use it as a store.
        ///
        /// ```
        /// use tower_apikey::key::KeyId;
        /// use tower_apikey::test_util::{Forward, StoreDouble};
        /// use tower_apikey::{KeyRecord, KeyStore, MemoryStore, StoreError};
        ///
        /// /// A store whose reads fail, as a database that went away would.
        /// struct DownForReads(MemoryStore);
        ///
        /// impl StoreDouble for DownForReads {
        ///     type Inner = MemoryStore;
        ///     fn inner(&self) -> &MemoryStore {
        ///         &self.0
        ///     }
        ///     async fn get(&self, _: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        ///         Err(StoreError::Unavailable("connection refused".into()))
        ///     }
        /// }
        ///
        /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
        /// let store = Forward(DownForReads(MemoryStore::new()));
        /// assert!(store.get(&KeyId::new("k1").unwrap()).await.is_err());
        /// assert!(store.delete(&KeyId::new("k1").unwrap()).await.is_ok()); // forwarded
        /// # });
        /// ```
        pub trait StoreDouble: Send + Sync + 'static {
            /// The store every call goes to unless the double overrides it.
            type Inner: UsageStore + OutboxStore;

            /// The inner store.
            fn inner(&self) -> &Self::Inner;

            /// Runs before every call, named by its method; an error is the call's answer.
            /// Where a double makes every call fail, wait or yield. Lets every call through by
            /// default.
            fn before<'a>(
                &'a self,
                method: &'static str,
            ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a {
                let _ = method;
                std::future::ready(Ok(()))
            }

            $($(
                #[doc = concat!("[`", stringify!($Trait), "::", stringify!($method), "`], forwarded by default.")]
                fn $method<'a>(&'a self $(, $arg: $ty)*)
                    -> impl Future<Output = Result<$out, StoreError>> + Send + 'a {
                    <Self::Inner as $Trait>::$method(self.inner() $(, $arg)*)
                }
            )*
            $(
                #[doc = concat!("[`", stringify!($Trait), "::", stringify!($sync), "`], forwarded by default.")]
                fn $sync(&self $(, $sarg: $sty)*) {
                    <Self::Inner as $Trait>::$sync(self.inner() $(, $sarg)*)
                }
            )*)*
        }

        $(
            impl<D: StoreDouble> $Trait for Forward<D> {
                $(
                    fn $method<'a>(&'a self $(, $arg: $ty)*)
                        -> impl Future<Output = Result<$out, StoreError>> + Send + 'a {
                        async move {
                            self.0.before(stringify!($method)).await?;
                            StoreDouble::$method(&self.0 $(, $arg)*).await
                        }
                    }
                )*
                $(
                    fn $sync(&self $(, $sarg: $sty)*) {
                        StoreDouble::$sync(&self.0 $(, $sarg)*)
                    }
                )*
            }
        )*
    };
}

key_store_methods!(with_usage {});

/// A test double as a store with every capability: each call runs the double's
/// [`before`](StoreDouble::before), then its method (the inner store's, unless overridden).
/// Dereferences to the double.
#[derive(Debug, Clone, Default)]
pub struct Forward<D>(pub D);

impl<D> Deref for Forward<D> {
    type Target = D;

    fn deref(&self) -> &D {
        &self.0
    }
}

impl<D> DerefMut for Forward<D> {
    fn deref_mut(&mut self) -> &mut D {
        &mut self.0
    }
}
