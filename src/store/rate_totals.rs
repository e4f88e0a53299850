//! Rate-limit counts totalled across every validator on a store: the rule of
//! [`UsageStore::share_rate_usage`](super::UsageStore::share_rate_usage) for the memory and
//! file stores.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::key::KeyId;

/// Each rate-limited key's admitted requests, totalled since the total began.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct RateTotals(BTreeMap<KeyId, u64>);

impl RateTotals {
    /// Adds one validator's counts; returns the new total of each key it listed.
    pub(crate) fn add(&mut self, admitted: Vec<(KeyId, u64)>) -> Vec<(KeyId, u64)> {
        admitted
            .into_iter()
            .map(|(id, n)| {
                let total = self.0.entry(id.clone()).or_default();
                *total = total.saturating_add(n);
                (id, *total)
            })
            .collect()
    }

    /// Drops the totals of keys `exists` says are gone: they are never asked for again.
    pub(crate) fn retain(&mut self, exists: impl Fn(&KeyId) -> bool) {
        self.0.retain(|id, _| exists(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_across_callers() {
        let (a, b) = (KeyId::new("a").unwrap(), KeyId::new("b").unwrap());
        let mut totals = RateTotals::default();
        assert_eq!(totals.add(vec![(a.clone(), 3)]), [(a.clone(), 3)]);
        assert_eq!(
            totals.add(vec![(a.clone(), 2), (b.clone(), 1)]),
            [(a.clone(), 5), (b.clone(), 1)]
        );
        totals.retain(|id| *id == b);
        assert_eq!(totals.add(vec![(a.clone(), 1)]), [(a, 1)]);
    }
}
