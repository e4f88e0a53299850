//! Where PBKDF2 runs: threads of the validator's own, at the lowest CPU priority.
//!
//! A derivation is a quarter of a millisecond of pure CPU. Under a flood of cold keys, on
//! threads of normal priority, it competes with the runtime's workers, and cached requests
//! wait behind it. At the lowest priority (nice 19 on Linux), derivations get the CPU the
//! runtime leaves: measured here, with 64 connections flooding wrong keys on 2 cores, the
//! cached keys' p99 went from 2.3-2.6x their p99 alone to 1.09-1.17x. The flood was served
//! 7x slower; the bounded queue refuses what it cannot take. On an idle machine the priority
//! changes nothing.
//!
//! The threads are the validator's own, not Tokio's blocking pool: a lowered priority cannot
//! be raised again without privilege, and the blocking pool runs other work too.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

/// Work for a pool thread; its result, if any, travels by a channel it carries.
pub(super) type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads, started on first use, ended when the pool is dropped.
pub(super) struct DerivationPool {
    threads: usize,
    low_priority: bool,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

/// The pool is gone or could not start a thread, or a job panicked before answering.
#[derive(Debug, thiserror::Error)]
#[error("the PBKDF2 job failed: it panicked, or no thread could start")]
pub(super) struct PoolGone;

impl DerivationPool {
    pub(super) fn new(threads: usize, low_priority: bool) -> Self {
        Self {
            threads: threads.max(1),
            low_priority,
            jobs: Mutex::new(None),
        }
    }

    /// Hands `job` to a pool thread. Admission bounds how many are handed over at once
    /// ([`Admission`](super::admission::Admission)), so one is always free to take it.
    ///
    /// # Errors
    /// [`PoolGone`] when no thread could be started; `job` is dropped.
    pub(super) fn submit(&self, job: Job) -> Result<(), PoolGone> {
        self.sender()?.send(job).map_err(|_| PoolGone)
    }

    fn sender(&self) -> Result<mpsc::Sender<Job>, PoolGone> {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = jobs.as_ref() {
            return Ok(sender.clone());
        }
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..self.threads {
            let receiver = Arc::clone(&receiver);
            let low_priority = self.low_priority;
            std::thread::Builder::new()
                .name(format!("tower-apikey-pbkdf2-{i}"))
                .spawn(move || work(&receiver, low_priority))
                .map_err(|error| {
                    tracing::error!(%error, "no thread for PBKDF2 derivations");
                    PoolGone
                })?;
        }
        *jobs = Some(sender.clone());
        Ok(sender)
    }
}

/// A pool thread: lowers its priority, then runs jobs until the pool is dropped.
fn work(jobs: &Mutex<mpsc::Receiver<Job>>, low_priority: bool) {
    if low_priority {
        if let Err(error) =
            thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
        {
            tracing::debug!(?error, "PBKDF2 thread keeps normal priority");
        }
    }
    loop {
        // The lock is held only while waiting for a job, never while running one.
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(job) => {
                // A panicking job drops its result channel (its caller sees an error) and
                // leaves the thread serving.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                    tracing::error!("a PBKDF2 derivation panicked");
                }
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DerivationPool;

    /// Runs `work` on `pool` and waits for its result (`None` if it panicked).
    fn run<T: Send + 'static>(
        pool: &DerivationPool,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (done, result) = std::sync::mpsc::channel();
        pool.submit(Box::new(move || {
            let _ = done.send(work());
        }))
        .unwrap();
        result.recv().ok()
    }

    /// The nice value of the calling thread (field 19 of `/proc/thread-self/stat`).
    #[cfg(target_os = "linux")]
    fn thread_nice() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name may hold spaces; fields are counted after its closing parenthesis.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn jobs_run_on_the_pools_own_threads_at_the_lowest_priority() {
        let pool = DerivationPool::new(2, true);
        let (name, nice) = run(&pool, || {
            (
                std::thread::current().name().map(str::to_owned),
                thread_nice(),
            )
        })
        .unwrap();
        assert!(name.unwrap().starts_with("tower-apikey-pbkdf2-"));
        assert_eq!(nice, 19);
        let normal = DerivationPool::new(1, false);
        assert_eq!(run(&normal, thread_nice).unwrap(), thread_nice());
    }

    #[test]
    fn a_panicking_job_fails_its_caller_and_the_pool_serves_on() {
        let pool = DerivationPool::new(1, false);
        assert!(run(&pool, || panic!("boom")).is_none());
        assert_eq!(run(&pool, || 7), Some(7));
    }
}
