//! One key's policy state in a validator (rate-limit state, quota lease, allow-list), and why
//! a policy refused a request.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::{Gcra, QuotaLease, RateLimitStatus};
use crate::record::KeyRecord;

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

/// A key's policies and their state in one validator, shared by every identity the validator
/// makes for the key, so neither a cache refill nor a change to another field of the record
/// starts the rate limit afresh.
#[derive(Debug)]
pub(crate) struct KeyUsage {
    pub(crate) rate: Option<Gcra>,
    pub(crate) quota: Option<QuotaLease>,
    pub(crate) allowed_ips: Box<[IpNet]>,
}

impl KeyUsage {
    /// The state for `record`'s policies, or `None` if it has none.
    pub(crate) fn of(record: &KeyRecord) -> Option<Self> {
        if record.rate_limit.is_none() && record.quota.is_none() && record.allowed_ips.is_empty() {
            return None;
        }
        Some(Self {
            rate: record.rate_limit.map(Gcra::new),
            quota: record.quota.map(QuotaLease::new),
            allowed_ips: record.allowed_ips.clone().into_boxed_slice(),
        })
    }

    /// Whether `record` carries the policies this state was made for.
    pub(crate) fn is_for(&self, record: &KeyRecord) -> bool {
        self.rate.as_ref().map(Gcra::limit) == record.rate_limit
            && self.quota.as_ref().map(|q| q.quota) == record.quota
            && *self.allowed_ips == *record.allowed_ips
    }

    /// Whether `client` may use the key: always, with no allow-list.
    pub(crate) fn admits(
        &self,
        client: impl FnOnce() -> Option<IpAddr>,
    ) -> Result<(), PolicyRefusal> {
        if self.allowed_ips.is_empty() {
            return Ok(());
        }
        let Some(ip) = client() else {
            return Err(PolicyRefusal::NoClientAddress);
        };
        let ip = ip.to_canonical();
        if self.allowed_ips.iter().any(|net| net.contains(&ip)) {
            Ok(())
        } else {
            Err(PolicyRefusal::IpNotAllowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashParams;
    use crate::key::KeyFormat;

    #[test]
    fn allow_lists_match_v4_v6_and_mapped_addresses() {
        let (mut record, _) = KeyRecord::generate(
            "a",
            &KeyFormat::default(),
            &HashParams::default().iterations(1000).unwrap(),
        )
        .unwrap();
        assert!(KeyUsage::of(&record).is_none(), "no policy, no state");
        record.allowed_ips = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        let usage = KeyUsage::of(&record).unwrap();
        assert!(usage.is_for(&record));
        fn ip(s: &str) -> impl FnOnce() -> Option<IpAddr> + '_ {
            move || Some(s.parse::<IpAddr>().unwrap())
        }
        assert_eq!(usage.admits(ip("10.1.2.3")), Ok(()));
        assert_eq!(usage.admits(ip("::ffff:10.1.2.3")), Ok(()));
        assert_eq!(usage.admits(ip("2001:db8::1")), Ok(()));
        assert_eq!(
            usage.admits(ip("127.0.0.1")),
            Err(PolicyRefusal::IpNotAllowed)
        );
        assert_eq!(
            usage.admits(ip("11.0.0.1")),
            Err(PolicyRefusal::IpNotAllowed)
        );
        assert_eq!(usage.admits(|| None), Err(PolicyRefusal::NoClientAddress));
        record.rate_limit = Some("1/1s".parse().unwrap());
        assert!(!usage.is_for(&record));
    }
}
