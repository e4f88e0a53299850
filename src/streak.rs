//! Runs of failures, so that logs say when a failure starts and ends instead of once per
//! request: a 70 s store outage under load is two lines, not tens of thousands.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A run of failures of one kind (the store unreachable, cold work shed).
#[derive(Debug, Default)]
pub(crate) struct Streak {
    on: AtomicBool,
    /// Failures since the run began.
    count: AtomicU64,
    since: Mutex<Option<Instant>>,
}

/// A run that just ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended {
    /// Failures during the run.
    pub(crate) failures: u64,
    /// How long it lasted.
    pub(crate) lasted: Duration,
}

impl Streak {
    /// Notes one failure; `true` when it begins a run (log that one).
    pub(crate) fn fail(&self) -> bool {
        self.count.fetch_add(1, Ordering::Relaxed);
        if self.on.swap(true, Ordering::AcqRel) {
            return false;
        }
        *self.since.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        true
    }

    /// Notes a success; the run it ends, if one was on (log that one).
    pub(crate) fn succeed(&self) -> Option<Ended> {
        // One relaxed load while nothing fails: this sits on every cold lookup.
        if !self.on.load(Ordering::Relaxed) || !self.on.swap(false, Ordering::AcqRel) {
            return None;
        }
        let since = self
            .since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Some(Ended {
            failures: self.count.swap(0, Ordering::Relaxed),
            lasted: since.map_or(Duration::ZERO, |at| at.elapsed()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Streak;

    #[test]
    fn reports_the_start_and_the_end_of_a_run_once_each() {
        let streak = Streak::default();
        assert_eq!(streak.succeed(), None);
        assert!(streak.fail());
        for _ in 0..999 {
            assert!(!streak.fail());
        }
        let ended = streak.succeed().unwrap();
        assert_eq!(ended.failures, 1000);
        assert_eq!(streak.succeed(), None);
        assert!(streak.fail(), "a new run begins");
        assert_eq!(streak.succeed().unwrap().failures, 1);
    }
}
