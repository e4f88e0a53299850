//! When a key expires, in the forms operators write it.

use std::fmt;
use std::str::FromStr;

use jiff::{tz::TimeZone, Span, Timestamp};

/// A key's expiry as written by an operator: `never`, a duration from now, or a time.
///
/// Accepted forms (parsed by `jiff`):
/// - `never`;
/// - a duration: friendly (`30d`, `12h`, `1 week`) or ISO 8601 (`P1W`, `PT12H`);
/// - an RFC 3339 time (`2027-01-31T00:00:00Z`);
/// - Maximo's whole minutes: `1440` is a day, `-1` is never.
///
/// # Example
/// ```
/// use tower_apikey::lifecycle::Expiry;
/// let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse()?;
/// assert_eq!("never".parse::<Expiry>()?.resolve(now)?, None);
/// assert_eq!("P1W".parse::<Expiry>()?.resolve(now)?, Some("2026-01-08T00:00:00Z".parse()?));
/// assert_eq!("30d".parse::<Expiry>()?.resolve(now)?, Some("2026-01-31T00:00:00Z".parse()?));
/// assert_eq!("30 days".parse::<Expiry>()?.resolve(now)?, Some("2026-01-31T00:00:00Z".parse()?));
/// assert_eq!("1440".parse::<Expiry>()?.resolve(now)?, Some("2026-01-02T00:00:00Z".parse()?));
/// assert_eq!("-1".parse::<Expiry>()?.resolve(now)?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub enum Expiry {
    /// The key does not expire.
    Never,
    /// The key expires this long after it is issued.
    After(Span),
    /// The key expires at this time.
    At(Timestamp),
}

/// Why an expiry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpiryError {
    /// Neither `never`, a duration nor an RFC 3339 time.
    #[error(
        "expiry must be `never`, a duration (30d, P1W), minutes (-1 = never) or an RFC 3339 time"
    )]
    Unrecognised,
    /// A duration that is zero or negative.
    #[error("expiry duration must be positive")]
    NotPositive,
    /// A duration that runs past the representable range of times.
    #[error("expiry is too far in the future")]
    OutOfRange,
}

impl FromStr for Expiry {
    type Err = ExpiryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("never") {
            return Ok(Expiry::Never);
        }
        if let Ok(at) = s.parse::<Timestamp>() {
            return Ok(Expiry::At(at));
        }
        if let Ok(minutes) = s.parse::<i64>() {
            return Expiry::from_minutes(minutes);
        }
        let span: Span = s.parse().map_err(|_| ExpiryError::Unrecognised)?;
        if span.is_negative() || span.is_zero() {
            return Err(ExpiryError::NotPositive);
        }
        Ok(Expiry::After(span))
    }
}

impl Expiry {
    /// Maximo's form: whole minutes from issue, `-1` for never.
    ///
    /// # Errors
    /// [`ExpiryError::NotPositive`] for zero or a negative other than `-1`;
    /// [`ExpiryError::OutOfRange`] beyond jiff's range of spans.
    pub fn from_minutes(minutes: i64) -> Result<Self, ExpiryError> {
        match minutes {
            -1 => Ok(Expiry::Never),
            m if m <= 0 => Err(ExpiryError::NotPositive),
            m => Span::new()
                .try_minutes(m)
                .map(Expiry::After)
                .map_err(|_| ExpiryError::OutOfRange),
        }
    }

    /// The expiry time for a key issued at `now`; `None` is never.
    ///
    /// Durations with days or longer units are added in UTC calendar terms (`P1M` from
    /// January 31 is February 28 or 29).
    ///
    /// # Errors
    /// [`ExpiryError::OutOfRange`].
    pub fn resolve(self, now: Timestamp) -> Result<Option<Timestamp>, ExpiryError> {
        match self {
            Expiry::Never => Ok(None),
            Expiry::At(at) => Ok(Some(at)),
            Expiry::After(span) => now
                .to_zoned(TimeZone::UTC)
                .checked_add(span)
                .map(|z| Some(z.timestamp()))
                .map_err(|_| ExpiryError::OutOfRange),
        }
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expiry::Never => f.write_str("never"),
            Expiry::After(span) => write!(f, "{span}"),
            Expiry::At(at) => write!(f, "{at}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let now: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        let at = |s: &str| s.parse::<Expiry>().unwrap().resolve(now).unwrap();
        assert_eq!(at("never"), None);
        assert_eq!(at("NEVER"), None);
        assert_eq!(at("12h"), Some("2026-03-02T00:00:00Z".parse().unwrap()));
        assert_eq!(at("PT90M"), Some("2026-03-01T13:30:00Z".parse().unwrap()));
        assert_eq!(at("1 week"), Some("2026-03-08T12:00:00Z".parse().unwrap()));
        assert_eq!(
            at("2027-01-31T00:00:00Z"),
            Some("2027-01-31T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            "0d".parse::<Expiry>().unwrap_err(),
            ExpiryError::NotPositive
        );
        assert_eq!(
            "-3d".parse::<Expiry>().unwrap_err(),
            ExpiryError::NotPositive
        );
        assert_eq!(
            "soon".parse::<Expiry>().unwrap_err(),
            ExpiryError::Unrecognised
        );
        assert_eq!("".parse::<Expiry>().unwrap_err(), ExpiryError::Unrecognised);
        assert_eq!(at("-1"), None);
        assert_eq!(at("90"), Some("2026-03-01T13:30:00Z".parse().unwrap()));
        assert_eq!(at("30 days"), Some("2026-03-31T12:00:00Z".parse().unwrap()));
        assert_eq!("0".parse::<Expiry>().unwrap_err(), ExpiryError::NotPositive);
        assert_eq!(
            "-2".parse::<Expiry>().unwrap_err(),
            ExpiryError::NotPositive
        );
        assert_eq!(
            i64::MAX.to_string().parse::<Expiry>().unwrap_err(),
            ExpiryError::OutOfRange
        );
    }
}
