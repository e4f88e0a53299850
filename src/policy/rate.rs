//! Rate limits: the policy on a key (`100/1m`) and the generic cell rate algorithm (GCRA)
//! that enforces it in one atomic word.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Period, PeriodError};

/// At most `requests` per `period`, spread smoothly, with a burst of `requests` allowed from
/// rest (GCRA). Written `100/1m`, `5/1s`, `1000/1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    requests: u32,
    period: Period,
}

/// A rate limit that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// Not `<requests>/<period>`.
    #[error("a rate limit is <requests>/<period>, e.g. 100/1m")]
    Syntax,
    /// Zero requests, or more than 1,000,000,000 per period.
    #[error("a rate limit allows between 1 and 1000000000 requests per period")]
    Requests,
    /// The period does not parse.
    #[error(transparent)]
    Period(#[from] PeriodError),
}

impl RateLimit {
    /// The most requests per period a limit may allow.
    pub const MAX_REQUESTS: u32 = 1_000_000_000;

    /// `requests` per `period`.
    ///
    /// # Errors
    /// [`RateLimitError::Requests`] for 0 or more than [`MAX_REQUESTS`](Self::MAX_REQUESTS).
    pub fn new(requests: u32, period: Period) -> Result<Self, RateLimitError> {
        if requests == 0 || requests > Self::MAX_REQUESTS {
            return Err(RateLimitError::Requests);
        }
        Ok(Self { requests, period })
    }

    /// Requests allowed per period (and in one burst from rest).
    pub const fn requests(&self) -> u32 {
        self.requests
    }

    /// The period.
    pub const fn period(&self) -> Period {
        self.period
    }
}

impl FromStr for RateLimit {
    type Err = RateLimitError;

    fn from_str(text: &str) -> Result<Self, RateLimitError> {
        let (requests, period) = text.split_once('/').ok_or(RateLimitError::Syntax)?;
        if requests.is_empty() || !requests.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RateLimitError::Syntax);
        }
        let requests = requests
            .parse::<u64>()
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(RateLimitError::Requests)?;
        Self::new(requests, period.parse()?)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.requests, self.period)
    }
}

super::serde_as_string!(RateLimit, "a rate limit such as 100/1m");

/// A key's rate limit as it stands after a request: what the `RateLimit-Policy` and
/// `RateLimit` headers say, and what [`Identity::rate_limit`](crate::Identity::rate_limit)
/// gives a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimitStatus {
    /// The policy.
    pub limit: RateLimit,
    /// Requests that could be sent at once now.
    pub remaining: u32,
    /// Until the limit is whole again (no request counted against it).
    pub reset: Duration,
    /// For a refused request: until one would be admitted. Zero when admitted.
    pub retry_after: Duration,
}

/// How many periods of requests admitted over the limit a key may owe, at most.
const MAX_DEBT_PERIODS: u64 = 4;

/// Nanoseconds on a process-wide monotonic clock, the GCRA's time base.
#[inline]
pub(crate) fn monotonic_nanos() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    // Starts at 1 s, so 0 stays "never used".
    let base = *BASE.get_or_init(|| Instant::now() - Duration::from_secs(1));
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// GCRA state of one key: the theoretical arrival time (TAT) of the next request, in
/// [`monotonic_nanos`]. One atomic, no lock, no allocation per request.
///
/// A request at `now` is admitted when `max(TAT, now) + interval - now <= period` (a burst of
/// `requests` from rest) and moves the TAT by one interval.
#[derive(Debug)]
pub(crate) struct Gcra {
    limit: RateLimit,
    interval: u64,
    period: u64,
    tat: AtomicU64,
    /// Requests admitted here and not yet shared with the fleet.
    unshared: AtomicU64,
    /// The fleet's total of admitted requests as last heard; `u64::MAX` before the first.
    fleet_seen: AtomicU64,
}

impl Gcra {
    pub(crate) fn new(limit: RateLimit) -> Self {
        let period = limit.period.as_secs() * 1_000_000_000;
        Self {
            limit,
            interval: (period / u64::from(limit.requests)).max(1),
            period,
            tat: AtomicU64::new(0),
            unshared: AtomicU64::new(0),
            fleet_seen: AtomicU64::new(u64::MAX),
        }
    }

    pub(crate) fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Counts one request at `now`: `Ok` with the state after it, or `Err` with the state
    /// that refused it (nothing counted).
    #[inline]
    pub(crate) fn check(&self, now: u64) -> Result<RateLimitStatus, RateLimitStatus> {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now) + self.interval;
            if next - now > self.period {
                let retry_after = next - now - self.period;
                return Err(self.status(tat.max(now) - now, retry_after));
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.unshared.fetch_add(1, Ordering::Relaxed);
                    return Ok(self.status(next - now, 0));
                }
                Err(seen) => tat = seen,
            }
        }
    }

    /// The state at `now`, counting nothing.
    pub(crate) fn peek(&self, now: u64) -> RateLimitStatus {
        let tat = self.tat.load(Ordering::Relaxed);
        self.status(tat.saturating_sub(now), 0)
    }

    /// Takes the count of requests admitted here since the last call, to share.
    pub(crate) fn take_unshared(&self) -> u64 {
        self.unshared.swap(0, Ordering::Relaxed)
    }

    /// Puts back a count that could not be shared, for the next try.
    pub(crate) fn unshare(&self, requests: u64) {
        self.unshared.fetch_add(requests, Ordering::Relaxed);
    }

    /// Whether a request was admitted here within the last period (so the fleet's use of
    /// the key is worth hearing even when none was admitted since the last share).
    pub(crate) fn recently_used(&self, now: u64) -> bool {
        self.tat.load(Ordering::Relaxed).saturating_add(self.period) > now
    }

    /// The fleet's total after this server added `mine`: what other servers admitted since
    /// the last total heard counts here as if admitted now. The first total heard is only a
    /// starting point.
    pub(crate) fn learn_fleet_total(&self, total: u64, mine: u64, now: u64) {
        let seen = self.fleet_seen.swap(total, Ordering::Relaxed);
        if seen == u64::MAX {
            return;
        }
        let others = total.saturating_sub(seen).saturating_sub(mine);
        if others > 0 {
            self.absorb(others, now);
        }
    }

    /// Counts `requests` admitted elsewhere (another server of a fleet) as if admitted at
    /// `now`: the TAT moves on by their intervals. What the fleet admitted over the limit
    /// while servers had not heard of each other stays owed (this server admits nothing
    /// until it is paid off), up to [`MAX_DEBT_PERIODS`] periods, so a lag in sharing does
    /// not add up over time.
    pub(crate) fn absorb(&self, requests: u64, now: u64) {
        let most = now.saturating_add(self.period.saturating_mul(MAX_DEBT_PERIODS));
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                let moved = tat
                    .max(now)
                    .saturating_add(requests.saturating_mul(self.interval));
                Some(moved.min(most))
            });
    }

    /// `ahead`: how far the TAT is ahead of now.
    fn status(&self, ahead: u64, retry_after: u64) -> RateLimitStatus {
        let room = self.period.saturating_sub(ahead) / self.interval;
        RateLimitStatus {
            limit: self.limit,
            remaining: u32::try_from(room)
                .unwrap_or(u32::MAX)
                .min(self.limit.requests),
            reset: Duration::from_nanos(ahead),
            retry_after: Duration::from_nanos(retry_after),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn gcra(text: &str) -> Gcra {
        Gcra::new(text.parse().unwrap())
    }

    #[test]
    fn parses_and_shows() {
        let limit: RateLimit = "100/1m".parse().unwrap();
        assert_eq!((limit.requests(), limit.period().as_secs()), (100, 60));
        assert_eq!(limit.to_string(), "100/1m");
        assert_eq!("5/60s".parse::<RateLimit>().unwrap().to_string(), "5/1m");
        for bad in ["", "100", "/1m", "a/1m", "-1/1m", "1.5/1m", " 1/1m"] {
            assert_eq!(
                bad.parse::<RateLimit>(),
                Err(RateLimitError::Syntax),
                "{bad}"
            );
        }
        for bad in ["0/1m", "1000000001/1s", "99999999999999999999/1s"] {
            assert_eq!(
                bad.parse::<RateLimit>(),
                Err(RateLimitError::Requests),
                "{bad}"
            );
        }
        assert!(matches!(
            "1/0s".parse::<RateLimit>(),
            Err(RateLimitError::Period(_))
        ));
        assert_eq!(
            serde_json::to_string(&limit).unwrap(),
            "\"100/1m\"",
            "stored as text"
        );
        assert_eq!(
            serde_json::from_str::<RateLimit>("\"100/1m\"").unwrap(),
            limit
        );
        assert!(serde_json::from_str::<RateLimit>("\"100\"").is_err());
    }

    #[test]
    fn a_burst_of_the_limit_from_rest_then_one_per_interval() {
        let limiter = gcra("5/1s");
        let t0 = 10 * SECOND;
        for n in 0..5 {
            let status = limiter.check(t0).unwrap();
            assert_eq!(status.remaining, 4 - n);
        }
        let refused = limiter.check(t0).unwrap_err();
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after, Duration::from_millis(200));
        assert_eq!(refused.reset, Duration::from_secs(1));
        // Refusals count nothing: 200 ms later exactly one more is admitted.
        assert!(limiter.check(t0 + SECOND / 5 - 1).is_err());
        assert!(limiter.check(t0 + SECOND / 5).is_ok());
        assert!(limiter.check(t0 + SECOND / 5).is_err());
        // After a whole period at rest, a whole burst again.
        let later = t0 + 3 * SECOND;
        assert_eq!(limiter.peek(later).remaining, 5);
        assert_eq!((0..10).filter(|_| limiter.check(later).is_ok()).count(), 5);
    }

    #[test]
    fn over_a_long_run_admits_the_rate_plus_one_burst() {
        let limiter = gcra("10/1s");
        let step = SECOND / 100; // 100 requests a second offered for 5 s
        let admitted = (0..500u64)
            .filter(|i| limiter.check(SECOND + i * step).is_ok())
            .count();
        assert!((50..=60).contains(&admitted), "{admitted}");
    }

    #[test]
    fn the_fleets_other_requests_count_here_from_the_second_total_on() {
        let limiter = gcra("10/1s");
        for _ in 0..3 {
            limiter.check(SECOND).unwrap();
        }
        assert_eq!(limiter.take_unshared(), 3);
        assert_eq!(limiter.take_unshared(), 0);
        // The first total (history included) is a starting point only.
        limiter.learn_fleet_total(1_000, 3, SECOND);
        assert_eq!(limiter.peek(SECOND).remaining, 7);
        // Then: 1,010 with our 0 since: 10 by others, the limit used up.
        limiter.learn_fleet_total(1_010, 0, SECOND);
        assert!(limiter.check(SECOND).is_err());
        // A failed share puts its count back.
        limiter.unshare(2);
        assert_eq!(limiter.take_unshared(), 2);
        assert!(limiter.recently_used(SECOND * 2));
        assert!(!limiter.recently_used(SECOND * 10));
    }

    #[test]
    fn absorbed_requests_use_up_the_limit() {
        let limiter = gcra("10/1s");
        limiter.absorb(8, SECOND);
        assert_eq!((0..10).filter(|_| limiter.check(SECOND).is_ok()).count(), 2);
        // A debt is kept (nothing admitted until it is paid), but never more than
        // MAX_DEBT_PERIODS periods of it, however many are absorbed.
        limiter.absorb(1_000_000, SECOND);
        let paid = SECOND + MAX_DEBT_PERIODS * SECOND - SECOND + SECOND / 10;
        assert!(limiter.check(paid - SECOND / 5).is_err());
        assert!(limiter.check(paid).is_ok());
    }

    #[test]
    fn two_threads_together_admit_only_the_burst() {
        let limiter = std::sync::Arc::new(gcra("1000/1h"));
        let now = SECOND;
        let admitted: usize = (0..2)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || {
                    (0..1_000).filter(|_| limiter.check(now).is_ok()).count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(admitted, 1_000);
    }
}
