//! The evaluation threads: a fixed pool of OS threads that run decisions (and only decisions)
//! beside the async runtime, so no evaluation, however slow, holds up an async worker.
//!
//! Jobs wait in one FIFO queue; each thread takes the next job when it is free, so a busy pool
//! costs no wake-up per job, and an idle thread is woken by the job that arrives. The queue needs
//! no bound of its own: each connection has at most one request in flight, and connections are
//! bounded ([`crate::conn`]). A job that panics (a bug) loses its answer (its handler answers
//! 500) but not its thread.

use crossbeam_channel::{Receiver, Sender};

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
