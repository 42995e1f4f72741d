//! The queue and thread that run one loaded model version off the async runtime.
//!
//! Requests go into a bounded channel; a full channel is reported at once so the caller can
//! answer 503 instead of letting the queue grow. The thread owns the engine session, checks
//! each request's deadline before computing it, and survives a panic inside the engine.

use crate::metrics::ModelMetrics;
use lectern_backends::{BackendError, Session};
use lectern_core::Tensor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// What a worker answers for one job.
#[derive(Debug)]
pub enum JobError {
    /// The engine failed on these inputs.
    Backend(BackendError),
    /// The request's deadline passed while it waited; it was not computed.
    Expired,
    /// The worker is gone (the model was unloaded while the job waited).
    Stopped,
}

/// One request for the worker.
pub struct Job {
    pub inputs: Vec<Tensor>,
    pub rows: u64,
    pub enqueued: Instant,
    pub deadline: Option<Instant>,
    pub reply: oneshot::Sender<Result<Vec<Tensor>, JobError>>,
}

/// Why a job could not be queued.
pub enum SubmitError {
    /// The queue is at capacity.
    Full,
    /// The worker thread has stopped.
    Stopped,
}

/// Handle to a model version's worker; dropping the last handle stops the thread.
pub struct Worker {
    queue: SyncSender<Job>,
    metrics: Arc<ModelMetrics>,
}

/// Builds a fresh session after a panic poisoned the old one.
pub type SessionFactory = Box<dyn Fn() -> Result<Box<dyn Session>, BackendError> + Send>;

impl Worker {
    /// Starts the worker thread for `label` (used as the thread name).
    pub fn start(
        label: &str,
        capacity: usize,
        session: Box<dyn Session>,
        new_session: SessionFactory,
        metrics: Arc<ModelMetrics>,
    ) -> std::io::Result<Worker> {
        let (queue, jobs) = sync_channel(capacity);
        let thread_metrics = metrics.clone();
        std::thread::Builder::new()
            .name(format!("model-{label}"))
            .spawn(move || run(jobs, session, new_session, thread_metrics))?;
        Ok(Worker { queue, metrics })
    }

    /// Queues a job without waiting.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        self.metrics.queue_depth.fetch_add(1, Relaxed);
        match self.queue.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.metrics.queue_depth.fetch_sub(1, Relaxed);
                Err(match e {
                    TrySendError::Full(_) => SubmitError::Full,
                    TrySendError::Disconnected(_) => SubmitError::Stopped,
                })
            }
        }
    }
}

fn run(jobs: Receiver<Job>, mut session: Box<dyn Session>, new_session: SessionFactory, metrics: Arc<ModelMetrics>) {
    for job in jobs {
        metrics.queue_depth.fetch_sub(1, Relaxed);
        let started = Instant::now();
        metrics.queue_duration.observe(started - job.enqueued);
        if job.deadline.is_some_and(|d| started > d) {
            metrics.deadline_expired.fetch_add(1, Relaxed);
            let _ = job.reply.send(Err(JobError::Expired));
            continue;
        }
        let result = match catch_unwind(AssertUnwindSafe(|| session.run(job.inputs))) {
            Ok(result) => result.map_err(JobError::Backend),
            Err(panic) => {
                let message = panic_message(&panic);
                tracing::error!(%message, "model engine panicked; starting a new session");
                match new_session() {
                    Ok(fresh) => session = fresh,
                    Err(e) => tracing::error!(error = %e, "cannot rebuild the session"),
                }
                Err(JobError::Backend(BackendError::Inference(format!("the engine failed: {message}"))))
            }
        };
        metrics.compute_duration.observe(started.elapsed());
        metrics.exec_count.fetch_add(1, Relaxed);
        if result.is_ok() {
            metrics.inference_count.fetch_add(job.rows, Relaxed);
        }
        let _ = job.reply.send(result);
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
