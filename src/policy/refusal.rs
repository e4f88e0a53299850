//! Why a policy refused a request.

use std::time::Duration;

use super::RateLimitStatus;

/// Why a valid key's policy refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyRefusal {
    /// The client's address is outside the key's allow-list.
    IpNotAllowed,
    /// The key has an allow-list and the request no client address: the server gives the
    /// layer none (see [`ClientAddress`](crate::layer::ClientAddress)). Refused: fails closed.
    NoClientAddress,
    /// Over the key's rate limit.
    RateLimited(RateLimitStatus),
    /// The key's quota is used up; refilled after `retry_after`, if it refills.
    UsageExceeded {
        /// Until the next refill, if the quota refills.
        retry_after: Option<Duration>,
    },
}

impl PolicyRefusal {
    /// A short lower-case label (`rate_limited`), for logs and metrics.
    pub const fn as_str(&self) -> &'static str {
        match self {
            PolicyRefusal::IpNotAllowed => "ip_not_allowed",
            PolicyRefusal::NoClientAddress => "no_client_address",
            PolicyRefusal::RateLimited(_) => "rate_limited",
            PolicyRefusal::UsageExceeded { .. } => "usage_exceeded",
        }
    }
}

impl std::fmt::Display for PolicyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
