//! Middleware that authenticates requests by API key.
//!
//! [`ApiKeyLayer`] takes the key from the configured [sources](KeySource) (header `apikey`,
//! then query parameter `apikey`, by default), checks it with a [`Validator`], and either
//! passes the request on with an [`Identity`] in its extensions or answers
//! with a [rejection](RejectionResponse). Missing key: 401 with `WWW-Authenticate`. Invalid,
//! unknown, wrong-secret, expired, inactive and revoked keys: one response, byte for byte.
//! Store unreachable: 503.
//!
//! A cached key is checked in the service's `call`, with no allocation and no boxing; only a
//! cache miss builds a boxed future for the cold path.
//!
//! # Example
//! ```
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_apikey::{ApiKeyLayer, Identity, KeyRecord, KeyStore, MemoryStore, Validator};
//! use tower_apikey::key::KeyFormat;
//! use tower_apikey::hash::HashParams;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let (record, key) = KeyRecord::generate("alice", &KeyFormat::default(), &HashParams::default())?;
//! store.insert(record).await?;
//!
//! let service = ServiceBuilder::new()
//!     .layer(ApiKeyLayer::new(Validator::builder(store).build()))
//!     .service_fn(|req: Request<Full<Bytes>>| async move {
//!         let who = req.extensions().get::<Identity>().unwrap().principal().to_owned();
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::from(who)))
//!     });
//!
//! let request = Request::get("/").header("apikey", key.expose()).body(Full::default())?;
//! let response = service.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let response = service.oneshot(Request::get("/").body(Full::default())?).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod client_address;
mod extract;
mod service;

use std::sync::Arc;

use http::Request;
use tower_layer::Layer;

pub use crate::rejection::{
    DefaultRejection, GrpcRejection, MaximoRejection, Rejection, RejectionResponse,
};
pub use client_address::{ClientAddress, ForwardedHeader};
pub use extract::{ExtractError, KeyExtractor, KeySource};
#[cfg(feature = "tokens")]
pub(crate) use service::take_ready;
pub use service::{ApiKey, ResponseFuture};

use crate::identity::Identity;
use crate::policy::PolicyRefusal;
use crate::validator::{PolicyError, Validator};

/// Applies [`ApiKey`] to a service. Cheap to clone: configuration is behind an `Arc`.
#[derive(Debug, Clone)]
pub struct ApiKeyLayer<R = DefaultRejection> {
    validator: Validator,
    config: Arc<Config>,
    rejection: R,
}

/// What the layer and its services share.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    extractor: KeyExtractor,
    strip_key: bool,
    optional: bool,
    client_address: ClientAddress,
    ip_refusal: IpRefusal,
}

/// How a valid key used from outside its IP allow-list is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IpRefusal {
    /// The same answer as an invalid key ([`Rejection::Invalid`]), so a caller cannot learn
    /// that the key is good from elsewhere (default). The reason `ip_not_allowed` goes to
    /// logs and metrics.
    #[default]
    AsInvalidKey,
    /// [`Rejection::Forbidden`]: 403.
    Forbidden,
}

impl Config {
    /// Hands the identity to the inner service, removing the key first if asked to.
    fn admit<B>(&self, req: &mut Request<B>, identity: Identity) {
        if self.strip_key {
            self.extractor.strip(req);
        }
        req.extensions_mut().insert(identity);
    }
}

impl Config {
    /// The answer to a request a key's policy refused.
    fn policy_rejection(&self, refusal: PolicyRefusal) -> Rejection {
        match refusal {
            PolicyRefusal::RateLimited(status) => Rejection::RateLimited(status),
            PolicyRefusal::UsageExceeded { retry_after } => {
                Rejection::UsageExceeded { retry_after }
            }
            // IpNotAllowed, NoClientAddress (logged with how to mend it).
            _ => match self.ip_refusal {
                IpRefusal::AsInvalidKey => Rejection::Invalid,
                IpRefusal::Forbidden => Rejection::Forbidden,
            },
        }
    }

    /// The answer when spending a quota use failed.
    fn lease_failed(&self, error: PolicyError) -> Rejection {
        match error {
            PolicyError::Refused(refusal) => self.policy_rejection(refusal),
            PolicyError::Unavailable(error) => {
                tracing::debug!(%error, "quota lease could not be taken");
                Rejection::Unavailable
            }
            error => {
                tracing::error!(%error, "quota lease failed");
                Rejection::Internal
            }
        }
    }
}

impl ApiKeyLayer {
    /// A layer checking keys with `validator`, from the `apikey` header then the `apikey`
    /// query parameter, answering with [`DefaultRejection`].
    pub fn new(validator: Validator) -> Self {
        let extractor = KeyExtractor::new(
            [KeySource::header(), KeySource::query()],
            validator.key_format(),
        );
        Self {
            validator,
            config: Arc::new(Config {
                extractor,
                strip_key: false,
                optional: false,
                client_address: ClientAddress::default(),
                ip_refusal: IpRefusal::default(),
            }),
            rejection: DefaultRejection::new(),
        }
    }
}

impl<R> ApiKeyLayer<R> {
    /// Where to look for the key, in order (default: `apikey` header, `apikey` query
    /// parameter). HTTP Basic is off unless listed.
    pub fn sources(mut self, sources: impl IntoIterator<Item = KeySource>) -> Self {
        Arc::make_mut(&mut self.config).extractor =
            KeyExtractor::new(sources, self.validator.key_format());
        self
    }

    /// Remove the key (every configured source) from the request before the inner service
    /// sees it (default: off).
    pub fn strip_key(mut self, strip: bool) -> Self {
        Arc::make_mut(&mut self.config).strip_key = strip;
        self
    }

    /// Optional authentication (default off), as Kong's `anonymous`: a request that carries
    /// no key (none of the sources present, or present and empty) reaches the inner service
    /// with no [`Identity`] and an [`Anonymous`](crate::identity::Anonymous) marker instead;
    /// axum handlers take `Option<Identity>`. A request whose key is not valid (unknown,
    /// wrong, expired, revoked, malformed, or two different keys) is still refused: never
    /// anonymous. Permission checks answer an anonymous request `401 missing_api_key`.
    pub fn optional(mut self, optional: bool) -> Self {
        Arc::make_mut(&mut self.config).optional = optional;
        self
    }

    /// How to find a request's client address, checked against a key's IP allow-list
    /// (default: the connection's peer, no proxy trusted; see [`ClientAddress`]).
    pub fn client_address(mut self, client_address: ClientAddress) -> Self {
        Arc::make_mut(&mut self.config).client_address = client_address;
        self
    }

    /// How a valid key used from outside its allow-list is answered (default: as an
    /// invalid key).
    pub fn ip_refusal(mut self, refusal: IpRefusal) -> Self {
        Arc::make_mut(&mut self.config).ip_refusal = refusal;
        self
    }

    /// The responses for refused requests (default [`DefaultRejection`]; see
    /// [`MaximoRejection`], or pass a closure).
    pub fn rejection<R2>(self, rejection: R2) -> ApiKeyLayer<R2> {
        ApiKeyLayer {
            validator: self.validator,
            config: self.config,
            rejection,
        }
    }

    /// The validator keys are checked with.
    pub fn validator(&self) -> &Validator {
        &self.validator
    }

    /// What refused requests are answered with: the admin API gives its permission check the
    /// same.
    #[cfg(feature = "admin")]
    pub(crate) fn rejection_response(&self) -> &R {
        &self.rejection
    }
}

impl<S, R: Clone> Layer<S> for ApiKeyLayer<R> {
    type Service = ApiKey<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKey::from_parts(
            inner,
            self.validator.clone(),
            Arc::clone(&self.config),
            self.rejection.clone(),
        )
    }
}
