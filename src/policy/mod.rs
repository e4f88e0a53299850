//! Per-key policies: a [rate limit](RateLimit), a [quota](Quota) of uses, and an IP
//! allow-list, kept on the [`KeyRecord`](crate::KeyRecord) and enforced by
//! [`ApiKeyLayer`](crate::ApiKeyLayer) after the key is found valid.
//!
//! - **Rate limit** (`100/1m`): GCRA, smooth, with a burst of the limit from rest; its state
//!   is one atomic word per key, checked with no lock and no allocation.
//! - **Quota** (`10000` or `10000/1d`): uses left, durable in the store, optionally refilled
//!   every period. A validator takes uses from the store in leases (blocks that grow with
//!   the key's traffic, up to 1,000), so the store is written once per lease, never per
//!   request; unused uses go back when the server stops ([`Validator::shutdown`]). A crash
//!   loses at most the lease in hand until the next refill.
//! - **IP allow-list**: CIDRs (`10.0.0.0/8`, `2001:db8::/32`); empty means anywhere. The
//!   address is the connection's peer, or, behind [trusted proxies](crate::layer::ClientAddress),
//!   the rightmost address they did not add.
//!
//! A key with none of these pays nothing for them.
//!
//! [`Validator::shutdown`]: crate::Validator::shutdown

mod fleet_rate;
mod period;
mod quota;
mod quota_lease;
mod rate;
mod refusal;
mod state;

pub use fleet_rate::{FleetRates, KeyFleetRate, RateShare};
pub use ipnet::IpNet;
pub use period::{Period, PeriodError};
pub use quota::{Quota, QuotaError, QuotaGrant};
pub use rate::{RateLimit, RateLimitError, RateLimitStatus};
pub use refusal::PolicyRefusal;

pub(crate) use quota_lease::{QuotaLease, Spend, MAX_BLOCK};
pub(crate) use rate::{monotonic_nanos, FleetHeard, Gcra};
pub(crate) use state::{Policies, PolicyState};

/// Serializes a policy as its text form and parses it back, as the CLI writes it.
macro_rules! serde_as_string {
    ($type:ty, $expected:literal) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $type;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expected)
                    }
                    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<$type, E> {
                        text.parse().map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }
    };
}
pub(crate) use serde_as_string;
