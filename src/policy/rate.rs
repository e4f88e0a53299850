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

/// What [`Gcra::learn_fleet`] hears of a key from one share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FleetHeard {
    /// The fleet's total of admitted requests, this server's share included.
    pub(crate) total: u64,
    /// Servers admitting the key lately, this one included.
    pub(crate) key_servers: u32,
    /// Servers on the store, this one included.
    pub(crate) fleet_servers: u32,
}

/// `fleet_seen` before the first total is heard.
const UNHEARD: u64 = u64::MAX;

/// GCRA state of one key: the theoretical arrival time (TAT) of the next request, in
/// [`monotonic_nanos`]. One atomic, no lock, no allocation per request.
///
/// A request at `now` is admitted when `max(TAT, now) + step - now <= period` and moves the
/// TAT by one step. Alone, the step is one interval (a burst of `requests` from rest). In a
/// fleet, the TAT is this server's view of the fleet's: the step is the interval times the
/// servers admitting the key, since each of them admits at about the same pace until the
/// next share says what they did; then [`learn_fleet`](Self::learn_fleet) puts the TAT
/// right. So `n` servers flooded at once spend one burst between them, not `n`.
#[derive(Debug)]
pub(crate) struct Gcra {
    limit: RateLimit,
    interval: u64,
    period: u64,
    tat: AtomicU64,
    /// What one request admitted here moves the TAT by: `interval × servers`.
    step: AtomicU64,
    /// Requests admitted here and not yet shared with the fleet.
    unshared: AtomicU64,
    /// The fleet's total of admitted requests as last heard; [`UNHEARD`] before the first.
    fleet_seen: AtomicU64,
    /// Requests foreseen for the other servers before the starting point, some of which the
    /// next total may hold.
    foreseen_before: AtomicU64,
    /// Done once the fleet was first heard on the key (or could not be).
    pub(crate) introduced: tokio::sync::OnceCell<()>,
}

impl Gcra {
    pub(crate) fn new(limit: RateLimit) -> Self {
        let period = limit.period.as_secs() * 1_000_000_000;
        let interval = (period / u64::from(limit.requests)).max(1);
        Self {
            limit,
            interval,
            period,
            tat: AtomicU64::new(0),
            step: AtomicU64::new(interval),
            unshared: AtomicU64::new(0),
            fleet_seen: AtomicU64::new(UNHEARD),
            foreseen_before: AtomicU64::new(0),
            introduced: tokio::sync::OnceCell::new(),
        }
    }

    pub(crate) fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Counts one request at `now`: `Ok` with the state after it, or `Err` with the state
    /// that refused it (nothing counted).
    #[inline]
    pub(crate) fn check(&self, now: u64) -> Result<RateLimitStatus, RateLimitStatus> {
        let step = self.step.load(Ordering::Relaxed);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now) + step;
            if next - now > self.period {
                let retry_after = next - now - self.period;
                return Err(self.status(tat.max(now) - now, step, retry_after));
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.unshared.fetch_add(1, Ordering::Relaxed);
                    return Ok(self.status(next - now, step, 0));
                }
                Err(seen) => tat = seen,
            }
        }
    }

    /// The state at `now`, counting nothing.
    pub(crate) fn peek(&self, now: u64) -> RateLimitStatus {
        let tat = self.tat.load(Ordering::Relaxed);
        let step = self.step.load(Ordering::Relaxed);
        self.status(tat.saturating_sub(now), step, 0)
    }

    /// Takes the count of requests admitted here since the last call, to share.
    pub(crate) fn take_unshared(&self) -> u64 {
        self.unshared.swap(0, Ordering::Relaxed)
    }

    /// Whether a request was admitted here within the last period (so the fleet's use of
    /// the key is worth hearing even when none was admitted since the last share).
    pub(crate) fn recently_used(&self, now: u64) -> bool {
        self.tat.load(Ordering::Relaxed).saturating_add(self.period) > now
    }

    /// Whether more than half of what this server may admit at once is used: the key is
    /// near its limit, and worth sharing more often.
    pub(crate) fn is_hot(&self, now: u64) -> bool {
        self.tat.load(Ordering::Relaxed) > now.saturating_add(self.period / 2)
    }

    /// The servers each request here is taken to stand for.
    pub(crate) fn servers(&self) -> u64 {
        self.step.load(Ordering::Relaxed) / self.interval
    }

    /// Takes each request here to stand for `servers`: at least 1, and at most the burst, so
    /// a server from rest always admits one (a burst smaller than the fleet is spent one a
    /// server).
    fn set_servers(&self, servers: u32) {
        let servers = u64::from(servers.clamp(1, self.limit.requests));
        self.step
            .store(self.interval.saturating_mul(servers), Ordering::Relaxed);
    }

    /// Forgets the fleet (the key went quiet here, or the store could not be reached):
    /// the next total heard is a starting point again, and until then each request here
    /// stands for `servers` (1: alone).
    pub(crate) fn forget_fleet(&self, servers: u32) {
        self.fleet_seen.store(UNHEARD, Ordering::Relaxed);
        self.set_servers(servers);
    }

    /// What one share heard, after this server added `mine`. The first total after a
    /// [`forget_fleet`](Self::forget_fleet) is a starting point (what came before it is
    /// history), and each request here then stands for every server on the store. From the
    /// second on, what the other servers admitted since the last total is put in place of
    /// what was foreseen for them (`mine × (servers − 1)`): more counts as if admitted now,
    /// less is given back; and each request here stands for the servers admitting the key.
    /// What was foreseen before the starting point may be in the next total (the others
    /// shared after it): it offsets what counts then, and is given back only when no other
    /// server admitted the key lately.
    pub(crate) fn learn_fleet(&self, heard: FleetHeard, mine: u64, now: u64) {
        let seen = self.fleet_seen.swap(heard.total, Ordering::Relaxed);
        let foreseen = mine.saturating_mul(self.servers().saturating_sub(1));
        if seen == UNHEARD {
            self.foreseen_before.store(foreseen, Ordering::Relaxed);
            self.set_servers(heard.fleet_servers.max(heard.key_servers));
            return;
        }
        let before = self.foreseen_before.swap(0, Ordering::Relaxed);
        let others = heard.total.saturating_sub(seen).saturating_sub(mine);
        // No other server admitted the key lately: none of what was foreseen happened.
        let undone = if heard.key_servers <= 1 {
            foreseen.saturating_add(before)
        } else {
            foreseen
        };
        if others > foreseen.saturating_add(before) {
            self.absorb(others - foreseen - before, now);
        } else if undone > others {
            let back = (undone - others).saturating_mul(self.interval);
            let _ = self
                .tat
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                    Some(tat.saturating_sub(back))
                });
        }
        self.set_servers(heard.key_servers);
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

    /// `ahead`: how far the TAT is ahead of now; `step`: what a request moves it by.
    fn status(&self, ahead: u64, step: u64, retry_after: u64) -> RateLimitStatus {
        let room = self.period.saturating_sub(ahead) / step;
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

    fn heard(total: u64, key_servers: u32, fleet_servers: u32) -> FleetHeard {
        FleetHeard {
            total,
            key_servers,
            fleet_servers,
        }
    }

    #[test]
    fn the_fleets_other_requests_count_here_from_the_second_total_on() {
        let limiter = gcra("10/1s");
        for _ in 0..3 {
            limiter.check(SECOND).unwrap();
        }
        assert_eq!(limiter.take_unshared(), 3);
        assert_eq!(limiter.take_unshared(), 0);
        // The first total (history included) is a starting point only; alone on the store,
        // each request stands for itself.
        limiter.learn_fleet(heard(1_000, 1, 1), 3, SECOND);
        assert_eq!(limiter.peek(SECOND).remaining, 7);
        // Then: 1,010 with our 0 since: 10 by others, the limit used up.
        limiter.learn_fleet(heard(1_010, 1, 1), 0, SECOND);
        assert!(limiter.check(SECOND).is_err());
        assert!(limiter.recently_used(SECOND * 2));
        assert!(!limiter.recently_used(SECOND * 10));
        // Forgotten (the key went quiet): the next total is a starting point again, not
        // 1,000,000 requests owed at once.
        limiter.forget_fleet(1);
        limiter.learn_fleet(heard(1_001_010, 1, 1), 0, SECOND * 10);
        assert_eq!(limiter.peek(SECOND * 10).remaining, 10);
    }

    #[test]
    fn servers_flooded_at_once_spend_one_burst_between_them() {
        // Three servers, each taking its requests to stand for the fleet's three.
        let servers: Vec<Gcra> = (0..3).map(|_| gcra("30/1s")).collect();
        for server in &servers {
            server.forget_fleet(3);
        }
        let t0 = SECOND;
        let admitted: usize = servers
            .iter()
            .map(|s| (0..100).filter(|_| s.check(t0).is_ok()).count())
            .sum();
        assert_eq!(admitted, 30, "one burst, a third each");
        // The first share is a starting point; from the second on, every server flooded
        // evenly: what each foresaw for the others is what they did.
        let mut total = 0;
        for server in &servers {
            total += server.take_unshared();
            server.learn_fleet(heard(total, 3, 3), 10, t0);
        }
        let t1 = t0 + SECOND / 2;
        let again: Vec<u64> = servers
            .iter()
            .map(|s| (0..100).filter(|_| s.check(t1).is_ok()).count() as u64)
            .collect();
        assert_eq!(again, [5, 5, 5], "half a second: 15 between them");
        let total_then = total + 15;
        for server in &servers {
            let mine = server.take_unshared();
            server.learn_fleet(heard(total_then, 3, 3), mine, t1);
        }
        // Each heard what the others did since its starting point: foreseen, nothing moves
        // (server 0's starting point held none of the others' first 20, server 2's all).
        assert!(servers.iter().all(|s| s.check(t1).is_err()));
        assert_eq!(
            servers[0].check(t1 + SECOND / 10).map(|s| s.remaining),
            Ok(0)
        );
    }

    #[test]
    fn a_server_alone_gets_back_what_it_foresaw_for_the_others() {
        let limiter = gcra("30/1s");
        limiter.forget_fleet(3);
        let t0 = SECOND;
        assert_eq!((0..100).filter(|_| limiter.check(t0).is_ok()).count(), 10);
        limiter.learn_fleet(heard(10, 3, 3), limiter.take_unshared(), t0);
        assert!(limiter.check(t0).is_err(), "a starting point moves nothing");
        // The others admitted nothing and are no longer admitting the key: the 20 foreseen
        // for them come back, and each request stands for itself.
        limiter.learn_fleet(heard(10, 1, 3), 0, t0);
        assert_eq!(limiter.servers(), 1);
        let mine = (0..100).filter(|_| limiter.check(t0).is_ok()).count() as u64;
        assert_eq!(mine, 20, "the whole burst in the end, as one server alone");
    }

    #[test]
    fn a_burst_smaller_than_the_fleet_is_one_a_server() {
        let limiter = gcra("2/1h");
        limiter.forget_fleet(3);
        assert_eq!(limiter.servers(), 2);
        assert_eq!((0..5).filter(|_| limiter.check(SECOND).is_ok()).count(), 1);
        // Woken here, heard after the first request: a starting point. Then alone after
        // all (no other server admitted the key lately): the one foreseen comes back.
        limiter.learn_fleet(heard(1, 3, 3), limiter.take_unshared(), SECOND);
        assert!(limiter.check(SECOND).is_err());
        limiter.learn_fleet(heard(1, 1, 3), 0, SECOND);
        assert_eq!((0..5).filter(|_| limiter.check(SECOND).is_ok()).count(), 1);
    }

    #[test]
    fn what_was_foreseen_and_not_done_is_given_back() {
        let limiter = gcra("30/1s");
        limiter.forget_fleet(3);
        let t0 = SECOND;
        limiter.learn_fleet(heard(0, 3, 3), 0, t0);
        // 10 admitted here, each foreseen with two more elsewhere; the others did 2.
        assert_eq!((0..100).filter(|_| limiter.check(t0).is_ok()).count(), 10);
        limiter.learn_fleet(heard(12, 3, 3), limiter.take_unshared(), t0);
        // TAT: 30 intervals foreseen, 18 given back: 12 used of 30, 18 left at a weight
        // of 3 is 6.
        assert_eq!((0..100).filter(|_| limiter.check(t0).is_ok()).count(), 6);
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
