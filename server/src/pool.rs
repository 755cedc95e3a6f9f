//! The evaluation threads: a fixed pool of OS threads that run decisions (and only decisions)
//! beside the async runtime, so no evaluation, however slow, holds up an async worker.
//!
//! Only evaluations known to be cheap stay on the worker that received them: untraced, on a
//! small body, of a bundle whose measured [`Cost`] is within [`INLINE_BUDGET`]. For those (W52
//! takes about a microsecond) the hop to a thread and back would cost ten times the evaluation.
//!
//! Jobs wait in one FIFO queue; each thread takes the next job when it is free, so a busy pool
//! costs no wake-up per job, and an idle thread is woken by the job that arrives. The queue needs
//! no bound of its own: each connection has at most one request in flight, and connections are
//! bounded ([`crate::conn`]). A job that panics (a bug) loses its answer (its handler answers
//! 500) but not its thread.

use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// An untraced evaluation of a bundle whose evaluations cost at most this much (see [`Cost`]),
/// on an input of at most [`INLINE_INPUT`] bytes, runs on the async worker that received it:
/// the hop to an evaluation thread and back would cost more than the evaluation.
pub const INLINE_BUDGET: Duration = Duration::from_micros(50);
/// The largest request body evaluated inline (evaluation time grows with the strings it scans).
pub const INLINE_INPUT: usize = 4 * 1024;

/// A bundle's evaluation cost: a decaying maximum of the times its evaluations took. A slow
/// evaluation raises it at once; it falls by an eighth per evaluation after, so one slow input
/// sends the next dozens of evaluations of that bundle to the evaluation threads. Unknown (never
/// cheap) until the first evaluation is measured.
#[derive(Debug)]
pub struct Cost(AtomicU64);

impl Default for Cost {
    fn default() -> Cost {
        Cost(AtomicU64::new(u64::MAX))
    }
}

impl Cost {
    /// Whether evaluations are cheap enough to run inline.
    pub fn cheap(&self) -> bool {
        u128::from(self.0.load(Ordering::Relaxed)) <= INLINE_BUDGET.as_nanos()
    }

    /// Records one evaluation's time (approximate under races: a lost update only delays the
    /// decay or the rise by one evaluation).
    pub fn observe(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let old = self.0.load(Ordering::Relaxed);
        let decayed = if old == u64::MAX { 0 } else { old - old / 8 };
        self.0.store(ns.max(decayed), Ordering::Relaxed);
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The sending side; the threads stop when it is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    jobs: Sender<Job>,
}

/// Why the pool cannot be started.
#[derive(Debug)]
pub struct PoolError {
    pub source: std::io::Error,
}

impl std::fmt::Display for PoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot start the evaluation threads: {}", self.source)
    }
}

impl std::error::Error for PoolError {}

impl Pool {
    /// Starts `threads` threads (at least one).
    pub fn start(threads: usize) -> Result<Pool, PoolError> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("verdict-eval-{i}"))
                .spawn(move || work(&queue))
                .map_err(|source| PoolError { source })?;
        }
        Ok(Pool { jobs })
    }

    /// Queues a job. `false` if the pool has stopped (never while the sender lives).
    pub fn run(&self, job: impl FnOnce() + Send + 'static) -> bool {
        self.jobs.send(Box::new(job)).is_ok()
    }
}

fn work(queue: &Receiver<Job>) {
    while let Ok(job) = queue.recv() {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("an evaluation panicked; its request is answered 500");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Cost, INLINE_BUDGET};
    use std::time::Duration;

    #[test]
    fn cost_is_unknown_until_measured_rises_at_once_and_decays() {
        let cost = Cost::default();
        assert!(!cost.cheap(), "unknown is not cheap");
        cost.observe(Duration::from_micros(2));
        assert!(cost.cheap());
        cost.observe(Duration::from_millis(500));
        assert!(!cost.cheap(), "one slow evaluation is enough");
        let mut fast = 0;
        while !cost.cheap() && fast < 1_000 {
            cost.observe(Duration::from_micros(2));
            fast += 1;
        }
        // From 500 ms to 50 µs by eighths: about 69 evaluations.
        assert!((60..80).contains(&fast), "cheap again after {fast} fast evaluations");
        cost.observe(INLINE_BUDGET);
        assert!(cost.cheap(), "the budget itself is cheap");
    }
}
