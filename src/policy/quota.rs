//! Usage quotas: the policy on a key (`10000/1d`: ten thousand uses, refilled daily).

use jiff::Timestamp;
use std::fmt;
use std::str::FromStr;

use super::{Period, PeriodError};

/// A number of uses, optionally refilled to that number every period. Written `10000`
/// (never refilled) or `10000/1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    uses: u64,
    refill: Option<Period>,
}

/// A quota that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// Not `<uses>` or `<uses>/<period>`.
    #[error("a quota is <uses> or <uses>/<refill period>, e.g. 10000 or 10000/1d")]
    Syntax,
    /// More than 10^15 uses.
    #[error("a quota allows at most 1000000000000000 uses")]
    Uses,
    /// The refill period does not parse.
    #[error(transparent)]
    Period(#[from] PeriodError),
}

impl Quota {
    /// The most uses a quota may hold.
    pub const MAX_USES: u64 = 1_000_000_000_000_000;

    /// `uses`, refilled every `refill` if given. Zero uses is a key that is refused until
    /// its quota is changed (or refilled).
    ///
    /// # Errors
    /// [`QuotaError::Uses`] above [`MAX_USES`](Self::MAX_USES).
    pub fn new(uses: u64, refill: Option<Period>) -> Result<Self, QuotaError> {
        if uses > Self::MAX_USES {
            return Err(QuotaError::Uses);
        }
        Ok(Self { uses, refill })
    }

    /// Uses per period (or in all, when never refilled).
    pub const fn uses(&self) -> u64 {
        self.uses
    }

    /// How often the uses are refilled, if they are.
    pub const fn refill(&self) -> Option<Period> {
        self.refill
    }
}

impl FromStr for Quota {
    type Err = QuotaError;

    fn from_str(text: &str) -> Result<Self, QuotaError> {
        let (uses, refill) = match text.split_once('/') {
            Some((uses, period)) => (uses, Some(period.parse()?)),
            None => (text, None),
        };
        if uses.is_empty() || !uses.bytes().all(|b| b.is_ascii_digit()) {
            return Err(QuotaError::Syntax);
        }
        Self::new(uses.parse().map_err(|_| QuotaError::Uses)?, refill)
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.refill {
            Some(period) => write!(f, "{}/{period}", self.uses),
            None => write!(f, "{}", self.uses),
        }
    }
}

super::serde_as_string!(Quota, "a quota such as 10000 or 10000/1d");

/// What [`UsageStore::take_quota`](crate::store::UsageStore::take_quota) hands out: uses to
/// spend, and the quota period they belong to. [`KeyRecord::take_quota`] is the rule.
///
/// [`KeyRecord::take_quota`]: crate::KeyRecord::take_quota
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuotaGrant {
    /// Uses granted: up to the number asked for, 0 when none are left.
    pub granted: u64,
    /// Uses left in the store after this grant.
    pub remaining: u64,
    /// When the current period started (the last refill); what
    /// [`return_quota`](crate::store::UsageStore::return_quota) is given back, so uses of an
    /// earlier period are not returned into a later one. `None` for a key without a quota.
    pub period_start: Option<Timestamp>,
    /// When the uses are next refilled, if they are.
    pub refills_at: Option<Timestamp>,
}

impl QuotaGrant {
    /// The answer for a key without a quota: nothing granted.
    pub const NONE: QuotaGrant = QuotaGrant {
        granted: 0,
        remaining: 0,
        period_start: None,
        refills_at: None,
    };

    /// A grant read back from a store that keeps its quotas elsewhere (a database row).
    pub fn new(
        granted: u64,
        remaining: u64,
        period_start: Option<Timestamp>,
        refills_at: Option<Timestamp>,
    ) -> Self {
        Self {
            granted,
            remaining,
            period_start,
            refills_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_shows() {
        let quota: Quota = "10000/1d".parse().unwrap();
        assert_eq!(
            (quota.uses(), quota.refill().map(Period::as_secs)),
            (10_000, Some(86_400))
        );
        assert_eq!(quota.to_string(), "10000/1d");
        assert_eq!("30".parse::<Quota>().unwrap().to_string(), "30");
        for bad in ["", "/1d", "x", "-1", "1e3", " 1"] {
            assert_eq!(bad.parse::<Quota>(), Err(QuotaError::Syntax), "{bad}");
        }
        assert_eq!("1000000000000001".parse::<Quota>(), Err(QuotaError::Uses));
        assert!(matches!(
            "1/1w".parse::<Quota>(),
            Err(QuotaError::Period(_))
        ));
    }
}
