//! One key's policy state in a validator: its rate-limit state, its quota lease and its
//! allow-list, shared by every identity the validator makes for the key.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Gcra, PolicyRefusal, Quota, QuotaLease, RateLimit};

/// A key's policies as its record holds them: rate limit, quota, allow-list.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policies<'a>(
    pub(crate) Option<RateLimit>,
    pub(crate) Option<Quota>,
    pub(crate) &'a [IpNet],
);

/// A key's policies and their state in one validator, shared by every identity the validator
/// makes for the key, so neither a cache refill nor a change to another field of the record
/// starts the rate limit afresh.
#[derive(Debug)]
pub(crate) struct PolicyState {
    pub(crate) rate: Option<Gcra>,
    pub(crate) quota: Option<QuotaLease>,
    pub(crate) allowed_ips: Box<[IpNet]>,
}

impl PolicyState {
    /// The state for a key's policies, or `None` if it has none.
    pub(crate) fn of(policies: Policies<'_>) -> Option<Self> {
        let Policies(rate, quota, allowed_ips) = policies;
        if rate.is_none() && quota.is_none() && allowed_ips.is_empty() {
            return None;
        }
        Some(Self {
            rate: rate.map(Gcra::new),
            quota: quota.map(QuotaLease::new),
            allowed_ips: allowed_ips.into(),
        })
    }

    /// Whether a key carries the policies this state was made for.
    pub(crate) fn is_for(&self, policies: Policies<'_>) -> bool {
        let Policies(rate, quota, allowed_ips) = policies;
        self.rate.as_ref().map(Gcra::limit) == rate
            && self.quota.as_ref().map(|q| q.quota) == quota
            && *self.allowed_ips == *allowed_ips
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

    #[test]
    fn allow_lists_match_v4_v6_and_mapped_addresses() {
        assert!(
            PolicyState::of(Policies(None, None, &[])).is_none(),
            "no policy, no state"
        );
        let ips = [
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        let usage = PolicyState::of(Policies(None, None, &ips)).unwrap();
        assert!(usage.is_for(Policies(None, None, &ips)));
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
        let rate = Some("1/1s".parse().unwrap());
        assert!(!usage.is_for(Policies(rate, None, &ips)));
    }
}
