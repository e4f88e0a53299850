//! Rate-limit counts totalled across every validator on a store, and who shares them: the
//! rule of [`UsageStore::share_rate_usage`](super::UsageStore::share_rate_usage) for the
//! memory and file stores.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::key::KeyId;
use crate::policy::{FleetRates, KeyFleetRate, RateShare};

/// Each rate-limited key's admitted requests, totalled since the total began; when each
/// validator last listed each key, and last shared at all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RateTotals {
    totals: BTreeMap<KeyId, u64>,
    /// Key → validator → when it last shared requests admitted of the key.
    listed: BTreeMap<KeyId, BTreeMap<u64, Timestamp>>,
    /// Validator → when it last shared.
    servers: BTreeMap<u64, Timestamp>,
}

impl RateTotals {
    /// Adds one validator's share at `now`; answers with the new totals and who shares.
    pub(crate) fn share(&mut self, share: RateShare, now: Timestamp) -> FleetRates {
        let since = |within: std::time::Duration| {
            now.checked_sub(SignedDuration::try_from(within).unwrap_or(SignedDuration::MAX))
                .unwrap_or(Timestamp::MIN)
        };
        let (active_since, server_since) =
            (since(share.active_within), since(RateShare::SERVER_MEMORY));
        self.servers.retain(|_, at| *at >= server_since);
        self.servers.insert(share.server, now);
        let keys = share
            .admitted
            .into_iter()
            .map(|(id, n)| {
                let total = self.totals.entry(id.clone()).or_default();
                *total = total.saturating_add(n);
                let total = *total;
                let listed = self.listed.entry(id.clone()).or_default();
                listed.retain(|_, at| *at >= server_since);
                if n > 0 {
                    listed.insert(share.server, now);
                }
                let others = listed
                    .iter()
                    .filter(|(server, at)| **server != share.server && **at >= active_since)
                    .count();
                let servers = others + 1;
                KeyFleetRate::new(id, total, u32::try_from(servers).unwrap_or(u32::MAX))
            })
            .collect();
        FleetRates::new(u32::try_from(self.servers.len()).unwrap_or(u32::MAX), keys)
    }

    /// Forgets validator `server`: it stopped. Keys no validator admitted lately are dropped
    /// from `listed` (their totals stay).
    pub(crate) fn leave(&mut self, server: u64) {
        self.servers.remove(&server);
        self.listed.retain(|_, listed| {
            listed.remove(&server);
            !listed.is_empty()
        });
    }

    /// Drops what is kept of keys `exists` says are gone: they are never asked for again.
    pub(crate) fn retain(&mut self, exists: impl Fn(&KeyId) -> bool) {
        self.totals.retain(|id, _| exists(id));
        self.listed.retain(|id, _| exists(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn share(server: u64, admitted: &[(&KeyId, u64)]) -> RateShare {
        let admitted = admitted.iter().map(|(id, n)| ((*id).clone(), *n)).collect();
        RateShare::new(server, admitted, Duration::from_millis(500))
    }

    #[test]
    fn totals_add_up_across_callers_who_are_counted() {
        let (a, b) = (KeyId::new("a").unwrap(), KeyId::new("b").unwrap());
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let mut totals = RateTotals::default();
        let fleet = totals.share(share(1, &[(&a, 3)]), t0);
        assert_eq!(
            fleet,
            FleetRates::new(1, vec![KeyFleetRate::new(a.clone(), 3, 1)])
        );
        let fleet = totals.share(share(2, &[(&a, 2), (&b, 1)]), t0);
        assert_eq!(
            fleet,
            FleetRates::new(
                2,
                vec![
                    KeyFleetRate::new(a.clone(), 5, 2),
                    KeyFleetRate::new(b.clone(), 1, 1)
                ]
            )
        );
        // A second later server 1 no longer counts as admitting `a`, but is still there; a
        // count of 0 does not make a server active on a key (it counts itself, always).
        let t1 = t0 + SignedDuration::from_secs(1);
        let fleet = totals.share(share(2, &[(&a, 0)]), t1);
        assert_eq!(
            fleet,
            FleetRates::new(2, vec![KeyFleetRate::new(a.clone(), 5, 1)])
        );
        // After the server memory, it is forgotten.
        let later = t0
            + SignedDuration::try_from(RateShare::SERVER_MEMORY).unwrap()
            + SignedDuration::from_secs(1);
        assert_eq!(totals.share(share(3, &[]), later).servers, 2);
        assert_eq!(totals.share(share(4, &[(&b, 0)]), later).keys[0].servers, 1);
        // Server 4 leaves: no longer there (2 and 3 are), nor admitting `b`; its count stays.
        let fleet = totals.share(share(4, &[(&b, 2)]), later);
        assert_eq!((fleet.servers, fleet.keys[0].servers), (3, 1));
        let fleet = totals.share(share(3, &[(&b, 0)]), later);
        assert_eq!((fleet.servers, fleet.keys[0].servers), (3, 2));
        totals.leave(4);
        let fleet = totals.share(share(3, &[(&b, 0)]), later);
        assert_eq!(
            fleet,
            FleetRates::new(2, vec![KeyFleetRate::new(b.clone(), 3, 1)])
        );
        totals.leave(4);
        totals.retain(|id| *id == b);
        assert_eq!(
            totals.share(share(3, &[(&a, 1)]), later).keys[0].admitted,
            1
        );
    }
}
