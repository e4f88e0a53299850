//! [`RequirePermissionLayer`]: the permission guard's configuration, cheap to clone.

use std::sync::Arc;

use tower_layer::Layer;

use super::RequirePermission;
use crate::rejection::DefaultRejection;

/// Layer of [`RequirePermission`]; see the [module docs](super).
///
/// Refusals are answered by the same [`RejectionResponse`](crate::rejection::RejectionResponse) as [`ApiKeyLayer`]'s
/// ([`DefaultRejection`] unless [`rejection`](Self::rejection) says otherwise): give a tonic
/// stack [`GrpcRejection`](crate::rejection::GrpcRejection) here too, and a key without the
/// permission gets `PERMISSION_DENIED`.
///
/// [`ApiKeyLayer`]: crate::ApiKeyLayer
#[derive(Debug, Clone)]
pub struct RequirePermissionLayer<R = DefaultRejection> {
    permission: Arc<str>,
    wildcards: bool,
    rejection: R,
}

impl RequirePermissionLayer {
    /// Requires `permission` (compared exactly, case included).
    pub fn new(permission: impl Into<Arc<str>>) -> Self {
        Self {
            permission: permission.into(),
            wildcards: false,
            rejection: DefaultRejection::new(),
        }
    }
}

impl<R> RequirePermissionLayer<R> {
    /// The responses for refused requests.
    pub fn rejection<R2>(self, rejection: R2) -> RequirePermissionLayer<R2> {
        RequirePermissionLayer {
            permission: self.permission,
            wildcards: self.wildcards,
            rejection,
        }
    }

    /// Whether a key's wildcard permissions count (default `false`: compared exactly). On,
    /// a key holding `reports:*` satisfies `reports:read`, and one holding `*` satisfies
    /// every permission ([`Identity::grants`](crate::Identity::grants)). Only for guards where a `*` key should pass:
    /// the admin API's guard stays exact.
    pub fn wildcards(mut self, wildcards: bool) -> Self {
        self.wildcards = wildcards;
        self
    }

    /// The permission required.
    pub fn required_permission(&self) -> &str {
        &self.permission
    }
}

impl<S, R: Clone> Layer<S> for RequirePermissionLayer<R> {
    type Service = RequirePermission<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RequirePermission {
            inner,
            permission: Arc::clone(&self.permission),
            wildcards: self.wildcards,
            rejection: self.rejection.clone(),
        }
    }
}
