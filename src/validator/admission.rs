//! Admission for cold work (derivations, legacy scans): a bounded number of jobs running, a
//! bounded number waiting, and every place released by a guard's `Drop`.
//!
//! A caller may vanish at any `.await` (hyper drops the future when the client disconnects).
//! So nothing here is counted up before an await and down after it: a place is an owned
//! semaphore permit, held by the caller while it waits and by the job while it runs, and given
//! back when whichever holds it last is dropped. A job whose caller left before it started is
//! discarded unrun; a running job can ask [`Caller::is_gone`] between steps and stop.

use std::sync::Arc;

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::pool::{DerivationPool, PoolGone};

/// Places for cold work: `running` at once on a pool of as many threads, `queued` more waiting.
pub(super) struct Admission {
    pool: DerivationPool,
    /// One permit per job that may run at once.
    running: Arc<Semaphore>,
    /// One permit per job running or waiting to run.
    places: Arc<Semaphore>,
    max_running: usize,
    max_places: usize,
}

/// Every place is taken: the caller is refused at once instead of queueing without bound.
#[derive(Debug)]
pub(super) struct Full;

/// How much cold work is under way now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Load {
    /// Jobs holding a running slot (started, or handed to a thread).
    pub(super) running: usize,
    /// Callers holding a place while they wait for a running slot.
    pub(super) queued: usize,
}

impl Admission {
    /// `running` jobs at once (at least one) on threads of their own, `queued` more waiting.
    pub(super) fn new(running: usize, queued: usize, low_priority: bool) -> Self {
        let running = running.max(1);
        Self {
            pool: DerivationPool::new(running, low_priority),
            running: Arc::new(Semaphore::new(running)),
            places: Arc::new(Semaphore::new(running + queued)),
            max_running: running,
            max_places: running + queued,
        }
    }

    /// Takes a place (or fails at once when none is free), then waits for a running slot.
    ///
    /// Cancel-safe: dropping the future gives the place back.
    pub(super) async fn admit(&self) -> Result<Admitted<'_>, Full> {
        let place = Arc::clone(&self.places)
            .try_acquire_owned()
            .map_err(|_| Full)?;
        let slot = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| Full)?;
        Ok(Admitted {
            pool: &self.pool,
            permits: (place, slot),
        })
    }

    /// The work under way now.
    pub(super) fn load(&self) -> Load {
        let running = self.max_running - self.running.available_permits();
        let taken = self.max_places - self.places.available_permits();
        Load {
            running,
            queued: taken.saturating_sub(running),
        }
    }
}

/// A running slot and the place behind it; dropping it gives both back.
pub(super) struct Admitted<'a> {
    pool: &'a DerivationPool,
    permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

impl Admitted<'_> {
    /// Runs `work` on the pool, which then holds the slot until the work ends. If the caller
    /// is gone before a thread takes the job, it is dropped unrun.
    ///
    /// # Errors
    /// [`PoolGone`] when the pool could not run it (no thread, or the work panicked).
    pub(super) async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce(&Caller<'_, T>) -> T + Send + 'static,
    ) -> Result<T, PoolGone> {
        let (done, result) = oneshot::channel();
        let permits = self.permits;
        self.pool.submit(Box::new(move || {
            if done.is_closed() {
                return;
            }
            let value = work(&Caller(&done));
            // Free before answering: a caller that goes straight on to more cold work
            // must find the slot free.
            drop(permits);
            let _ = done.send(value);
        }))?;
        result.await.map_err(|_| PoolGone)
    }
}

/// What a job knows of the caller waiting for its result.
pub(super) struct Caller<'a, T>(&'a oneshot::Sender<T>);

impl<T> Caller<'_, T> {
    /// Whether nobody waits for the result any more: long work should stop.
    pub(super) fn is_gone(&self) -> bool {
        self.0.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Admission, Load};

    async fn settle(admission: &Admission) {
        for _ in 0..200 {
            if admission.load() == Load::default() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("admission not idle: {:?}", admission.load());
    }

    #[tokio::test]
    async fn bounds_running_and_queued_and_refuses_beyond() {
        let admission = Admission::new(1, 1, false);
        let running = admission.admit().await.unwrap();
        assert_eq!(
            admission.load(),
            Load {
                running: 1,
                queued: 0
            }
        );
        let mut waiting = Box::pin(admission.admit());
        assert!(futures_poll(&mut waiting).is_none());
        assert_eq!(
            admission.load(),
            Load {
                running: 1,
                queued: 1
            }
        );
        assert!(
            admission.admit().await.is_err(),
            "a third caller is refused"
        );
        drop(running);
        let second = waiting.await.unwrap();
        assert_eq!(
            admission.load(),
            Load {
                running: 1,
                queued: 0
            }
        );
        drop(second);
        settle(&admission).await;
    }

    #[tokio::test]
    async fn a_waiter_that_is_dropped_gives_its_place_back() {
        let admission = Admission::new(1, 1, false);
        let running = admission.admit().await.unwrap();
        for _ in 0..10 {
            let mut waiting = Box::pin(admission.admit());
            assert!(futures_poll(&mut waiting).is_none());
            drop(waiting);
        }
        assert_eq!(
            admission.load(),
            Load {
                running: 1,
                queued: 0
            }
        );
        drop(running);
        settle(&admission).await;
    }

    #[tokio::test]
    async fn a_job_whose_caller_left_before_it_started_never_runs() {
        let admission = Arc::new(Admission::new(1, 4, false));
        let ran = Arc::new(AtomicUsize::new(0));
        // Hold the only thread with a job that waits for the test's word.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let blocker = {
            let admission = Arc::clone(&admission);
            tokio::spawn(async move {
                let admitted = admission.admit().await.unwrap();
                admitted.run(move |_| hold.recv().ok()).await
            })
        };
        while admission.load().running == 0 {
            tokio::task::yield_now().await;
        }
        let counted = Arc::clone(&ran);
        let mut job = Box::pin(async {
            let admitted = admission.admit().await.unwrap();
            admitted
                .run(move |_| counted.fetch_add(1, Ordering::SeqCst))
                .await
        });
        assert!(futures_poll(&mut job).is_none());
        drop(job);
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        settle(&admission).await;
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn running_work_sees_its_caller_leave() {
        let admission = Admission::new(1, 0, false);
        let (started, on_start) = tokio::sync::oneshot::channel::<()>();
        let steps = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&steps);
        let job = async {
            let admitted = admission.admit().await.unwrap();
            admitted
                .run(move |caller| {
                    let _ = started.send(());
                    while !caller.is_gone() {
                        counted.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
                .await
        };
        tokio::select! {
            _ = job => panic!("the job never ends while its caller waits"),
            _ = on_start => {}
        }
        settle(&admission).await;
        let after = steps.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(steps.load(Ordering::SeqCst), after, "the job stopped");
    }

    /// Polls once with a waker that does nothing; `None` while pending.
    fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::Pin::new(f).poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }
}
