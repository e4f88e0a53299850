//! A whole number of seconds written with a unit (`30s`, `1m`, `12h`, `1d`): the period of a
//! rate limit and the refill interval of a quota.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A period of whole seconds, at least one second and at most 366 days, written `<n><unit>`
/// with unit `s`, `m`, `h` or `d` (`90s`, `1m`, `1d`; a missing `n` is 1: `m` is `1m`).
///
/// Displayed in the largest unit that divides it exactly, so `60s` reads back as `1m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period(u32);

/// A period that does not parse or is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeriodError {
    /// Not `<n><unit>` with a unit of `s`, `m`, `h` or `d`.
    #[error("a period is a number and a unit: s, m, h or d (e.g. 30s, 1m, 1d)")]
    Syntax,
    /// Zero, or longer than 366 days.
    #[error("a period is between 1 second and 366 days")]
    OutOfRange,
}

const UNITS: [(char, u32); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

impl Period {
    /// The longest period: 366 days.
    pub const MAX: Period = Period(366 * 86_400);

    /// A period of `seconds`.
    ///
    /// # Errors
    /// [`PeriodError::OutOfRange`] for 0 or more than 366 days.
    pub const fn from_secs(seconds: u64) -> Result<Self, PeriodError> {
        if seconds == 0 || seconds > Self::MAX.0 as u64 {
            return Err(PeriodError::OutOfRange);
        }
        Ok(Self(seconds as u32))
    }

    /// The period in seconds.
    pub const fn as_secs(self) -> u64 {
        self.0 as u64
    }

    /// The period as a span of time.
    pub(crate) fn span(self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_secs(i64::from(self.0))
    }

    /// The period as a [`Duration`].
    pub const fn as_duration(self) -> Duration {
        Duration::from_secs(self.0 as u64)
    }
}

impl FromStr for Period {
    type Err = PeriodError;

    fn from_str(text: &str) -> Result<Self, PeriodError> {
        let unit = text.chars().last().ok_or(PeriodError::Syntax)?;
        let (_, scale) = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .ok_or(PeriodError::Syntax)?;
        let count = &text[..text.len() - 1];
        let count: u64 = if count.is_empty() {
            1
        } else if count.bytes().all(|b| b.is_ascii_digit()) && count.len() <= 9 {
            count.parse().map_err(|_| PeriodError::Syntax)?
        } else {
            return Err(PeriodError::Syntax);
        };
        Self::from_secs(count * u64::from(*scale))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, scale) = UNITS
            .iter()
            .find(|(_, scale)| self.0.is_multiple_of(*scale))
            .copied()
            .unwrap_or(('s', 1));
        write!(f, "{}{unit}", self.0 / scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        for (text, secs, shown) in [
            ("1s", 1, "1s"),
            ("90s", 90, "90s"),
            ("60s", 60, "1m"),
            ("m", 60, "1m"),
            ("1d", 86_400, "1d"),
            ("36h", 129_600, "36h"),
            ("366d", 366 * 86_400, "366d"),
        ] {
            let period: Period = text.parse().unwrap();
            assert_eq!(period.as_secs(), secs, "{text}");
            assert_eq!(period.to_string(), shown, "{text}");
        }
        for bad in [
            "", "s1", "1", "1w", "-1s", "+1s", " 1s", "1.5m", "1 m", "1sS", "١s",
        ] {
            assert_eq!(bad.parse::<Period>(), Err(PeriodError::Syntax), "{bad:?}");
        }
        for out in ["0s", "367d", "999999999d"] {
            assert_eq!(
                out.parse::<Period>(),
                Err(PeriodError::OutOfRange),
                "{out:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_round_trips(text in "\\PC{0,12}") {
            if let Ok(period) = text.parse::<Period>() {
                proptest::prop_assert_eq!(period.to_string().parse::<Period>(), Ok(period));
            }
        }
    }
}
