//! One key's requests as a validator counts them: an atomic per outcome, added to on the
//! request path with one relaxed add, taken by the validator's collection.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Counts, Outcome};

/// One key's requests since they were last taken.
///
/// A request is counted once, by its outcome. A request first counted [`Outcome::Valid`]
/// (its key validated) and then refused by a policy or a permission guard is moved: the
/// refusal is counted, and so is one valid request taken back (`unvalid`), which
/// [`take`](Self::take) nets out — carrying what it cannot net yet (a refusal taken in the
/// collection after the one that took its valid count) to the next.
#[derive(Debug, Default)]
pub(crate) struct KeyTally {
    counts: [AtomicU64; 9],
    /// Valid requests refused afterwards, not yet netted out.
    unvalid: AtomicU64,
}

impl KeyTally {
    /// Counts one request with `outcome`.
    #[inline]
    pub(crate) fn count(&self, outcome: Outcome) {
        self.counts[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Moves one request counted valid to `refusal`.
    pub(crate) fn refuse_after_valid(&self, refusal: Outcome) {
        self.counts[refusal.index()].fetch_add(1, Ordering::Relaxed);
        self.unvalid.fetch_add(1, Ordering::Relaxed);
    }

    /// Everything counted since the last take, valid requests net of those refused since.
    pub(crate) fn take(&self) -> Counts {
        let mut counts = [0u64; 9];
        for (slot, counter) in counts.iter_mut().zip(&self.counts) {
            *slot = counter.swap(0, Ordering::Relaxed);
        }
        let unvalid = self.unvalid.swap(0, Ordering::Relaxed);
        let valid = &mut counts[Outcome::Valid.index()];
        if unvalid > *valid {
            // Their valid counts went out with an earlier take: taken back from the next.
            self.unvalid.fetch_add(unvalid - *valid, Ordering::Relaxed);
        }
        *valid = valid.saturating_sub(unvalid);
        Counts::from_array(counts)
    }

    /// Whether nothing is counted (a refusal still to net out counts as something).
    pub(crate) fn is_idle(&self) -> bool {
        self.unvalid.load(Ordering::Relaxed) == 0
            && self.counts.iter().all(|c| c.load(Ordering::Relaxed) == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_after_valid_moves_the_request_even_across_takes() {
        let tally = KeyTally::default();
        tally.count(Outcome::Valid);
        tally.count(Outcome::Valid);
        tally.refuse_after_valid(Outcome::PermissionDenied);
        let first = tally.take();
        assert_eq!(
            (
                first.get(Outcome::Valid),
                first.get(Outcome::PermissionDenied)
            ),
            (1, 1)
        );
        // The valid count went out, then its refusal came: netted out of the next take.
        tally.count(Outcome::Valid);
        let second = tally.take();
        tally.refuse_after_valid(Outcome::RateLimited);
        let third = tally.take();
        assert_eq!(second.get(Outcome::Valid), 1);
        assert_eq!(
            (third.get(Outcome::Valid), third.get(Outcome::RateLimited)),
            (0, 1)
        );
        assert!(!tally.is_idle(), "one valid request still to take back");
        tally.count(Outcome::Valid);
        assert_eq!(tally.take().get(Outcome::Valid), 0);
        assert!(tally.is_idle());
    }
}
