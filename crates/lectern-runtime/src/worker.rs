//! The queue and threads that run one loaded model version off the async runtime.
//!
//! Requests wait in a bounded priority queue; a full queue is reported at once so the caller
//! can answer 503 instead of letting it grow. Each instance is a thread with its own engine
//! session. An instance takes the highest-priority request, gathers compatible requests into
//! one batch (dynamic batching), drops those whose deadline passed without computing them,
//! runs the batch and hands every caller its own rows. A panic inside the engine fails that
//! batch and the instance carries on with a fresh session.

use crate::metrics::{Execution, ModelMetrics};
use lectern_backends::{Backend, BackendError, Session};
use lectern_core::{BatchingMode, Tensor};
use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What a worker answers for one job.
#[derive(Debug)]
pub enum JobError {
    /// The engine failed on these inputs.
    Backend(BackendError),
    /// The request's deadline passed while it waited; it was not computed.
    Expired,
}

/// One request for the worker.
pub struct Job {
    pub inputs: Vec<Tensor>,
    /// Rows along the batch dimension (1 when the model has none).
    pub rows: usize,
    /// Queue level: 1 is served first; 0 (default) is served after every explicit level.
    pub priority: u64,
    pub enqueued: Instant,
    pub deadline: Option<Instant>,
    pub reply: oneshot::Sender<Result<Vec<Tensor>, JobError>>,
}

impl Job {
    fn queue_level(&self) -> u64 {
        if self.priority == 0 {
            u64::MAX
        } else {
            self.priority
        }
    }

    /// The dimensions after the first of every input, when every input has `rows` rows:
    /// requests batch only when these agree.
    fn batch_key(&self) -> Option<Vec<Vec<usize>>> {
        self.inputs
            .iter()
            .map(|t| match t.shape.split_first() {
                Some((&rows, rest)) if rows == self.rows => Some(rest.to_vec()),
                _ => None,
            })
            .collect()
    }

    /// True when this job's `batch_key` is `key` (without building it).
    fn matches(&self, key: &[Vec<usize>]) -> bool {
        self.inputs.len() == key.len()
            && self.inputs.iter().zip(key).all(|(t, k)| {
                t.shape.split_first().is_some_and(|(&rows, rest)| rows == self.rows && rest == k.as_slice())
            })
    }

    fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now > d)
    }
}

/// Why a job could not be queued.
pub enum SubmitError {
    /// The queue is at capacity.
    Full,
}

/// How a worker schedules its model.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Bound of the queue.
    pub capacity: usize,
    /// Parallel instances (threads with a session each).
    pub instances: usize,
    /// Largest batch in rows; 0 or 1 disables batching.
    pub max_batch_size: usize,
    pub mode: BatchingMode,
    /// Longest wait for a batch to fill.
    pub max_delay: Duration,
}

/// Below this compute time per execution the adaptive window stays at zero: waking a
/// thread again costs more than it could save.
const HEAVY_COMPUTE: Duration = Duration::from_micros(200);

#[derive(Default)]
struct Queue {
    levels: BTreeMap<u64, VecDeque<Job>>,
    len: usize,
    closed: bool,
    /// Instances blocked on the condition variable, and how many of them were already
    /// signalled: a submit wakes one only when some sleeper has not been (each wake is a
    /// system call, and a woken instance may not run before more requests arrive).
    sleeping: usize,
    signalled: usize,
}

impl Queue {
    fn push(&mut self, job: Job) {
        self.levels.entry(job.queue_level()).or_default().push_back(job);
        self.len += 1;
    }

    fn pop(&mut self) -> Option<Job> {
        let mut level = self.levels.first_entry()?;
        let job = level.get_mut().pop_front();
        // The default level stays (empty) so that its buffer is not reallocated every time
        // the queue drains; explicit levels go, so that they cannot pile up.
        if level.get().is_empty() && *level.key() != u64::MAX {
            level.remove();
        }
        self.len -= job.is_some() as usize;
        job
    }

    /// Marks a job's arrival; true when a sleeping instance should be woken for it.
    fn wake_needed(&mut self) -> bool {
        let needed = self.sleeping > self.signalled;
        self.signalled += needed as usize;
        needed
    }

    /// Removes, in priority order, the jobs that fit `key` within `room` rows.
    fn take_compatible(&mut self, key: &[Vec<usize>], room: &mut usize, into: &mut Vec<Job>) {
        for queue in self.levels.values_mut() {
            let mut ix = 0;
            while ix < queue.len() && *room > 0 {
                let job = &queue[ix];
                if job.rows <= *room && job.matches(key) {
                    let job = queue.remove(ix).expect("index in range");
                    *room -= job.rows;
                    into.push(job);
                } else {
                    ix += 1;
                }
            }
        }
        self.levels.retain(|&level, q| !q.is_empty() || level == u64::MAX);
        self.len = self.levels.values().map(VecDeque::len).sum();
    }
}

/// Running averages that drive the adaptive window.
#[derive(Default)]
struct Load {
    /// Rows per execution, times 16.
    rows_x16: AtomicU64,
    /// Nanoseconds per execution.
    compute_ns: AtomicU64,
}

impl Load {
    fn record(&self, rows: usize, compute: Duration) {
        let ema = |cell: &AtomicU64, x: u64| {
            let old = cell.load(Relaxed);
            cell.store(if old == 0 { x } else { old - old / 8 + x / 8 }, Relaxed);
        };
        ema(&self.rows_x16, rows as u64 * 16);
        ema(&self.compute_ns, compute.as_nanos() as u64);
    }
}

struct Shared {
    queue: Mutex<Queue>,
    arrived: Condvar,
    config: SchedulerConfig,
    metrics: Arc<ModelMetrics>,
    load: Load,
    /// Cleared when a batch's outputs could not be split by rows: the model does not batch.
    batchable: AtomicBool,
    /// Instance threads still running; the last one to stop releases the freed memory.
    running: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn batching(&self) -> bool {
        self.config.max_batch_size > 1 && self.config.mode != BatchingMode::Off && self.batchable.load(Relaxed)
    }

    /// How long to hold a batch of `rows` open for more requests.
    fn window(&self, rows: usize) -> Duration {
        match self.config.mode {
            BatchingMode::Off => Duration::ZERO,
            BatchingMode::Fixed => self.config.max_delay,
            BatchingMode::Adaptive => {
                // Greedy by default: take what is queued and go. Under steady load requests
                // pile up while a batch computes, so batches form without any wait, and an
                // idle model never waits. Hold a batch open only for heavy models whose
                // recent batches were at least twice this one, and then for at most a
                // quarter of a computation: that much delay buys a batch twice as large.
                let typical_x16 = self.load.rows_x16.load(Relaxed);
                let compute = Duration::from_nanos(self.load.compute_ns.load(Relaxed));
                if typical_x16 < (rows as u64) * 32 || compute < HEAVY_COMPUTE {
                    return Duration::ZERO;
                }
                (compute / 4).min(self.config.max_delay)
            }
        }
    }

    fn publish_depth(&self, queue: &Queue) {
        self.metrics.queue_depth.store(queue.len as u64, Relaxed);
    }

    fn expire(&self, job: Job) {
        self.metrics.deadline_expired.fetch_add(1, Relaxed);
        let _ = job.reply.send(Err(JobError::Expired));
    }

    /// Waits for a submit (or at most `limit`), keeping the sleeper counts.
    fn sleep<'a>(&self, mut queue: MutexGuard<'a, Queue>, limit: Option<Duration>) -> MutexGuard<'a, Queue> {
        queue.sleeping += 1;
        let mut queue = match limit {
            None => self.arrived.wait(queue).unwrap_or_else(|e| e.into_inner()),
            Some(limit) => self.arrived.wait_timeout(queue, limit).unwrap_or_else(|e| e.into_inner()).0,
        };
        queue.sleeping -= 1;
        queue.signalled = queue.signalled.saturating_sub(1).min(queue.sleeping);
        queue
    }

    /// Blocks until there is work; `None` once the worker is closed and drained.
    fn next_batch(&self) -> Option<Vec<Job>> {
        let mut queue = self.lock();
        let first = loop {
            match queue.pop() {
                Some(job) if job.expired(Instant::now()) => self.expire(job),
                Some(job) => break job,
                None if queue.closed => return None,
                None => {
                    self.publish_depth(&queue);
                    queue = self.sleep(queue, None);
                }
            }
        };
        let Some(key) = first.batch_key().filter(|_| self.batching()) else {
            self.publish_depth(&queue);
            return Some(vec![first]);
        };
        let mut room = self.config.max_batch_size.saturating_sub(first.rows);
        let mut batch = vec![first];
        queue.take_compatible(&key, &mut room, &mut batch);
        let until = Instant::now() + self.window(self.config.max_batch_size - room);
        while room > 0 && !queue.closed {
            let now = Instant::now();
            if now >= until {
                break;
            }
            queue = self.sleep(queue, Some(until - now));
            queue.take_compatible(&key, &mut room, &mut batch);
        }
        self.publish_depth(&queue);
        drop(queue);
        let now = Instant::now();
        if batch.iter().any(|j| j.expired(now)) {
            let (live, expired): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(|j| !j.expired(now));
            expired.into_iter().for_each(|j| self.expire(j));
            return Some(live);
        }
        Some(batch)
    }
}

/// Handle to a model version's instances; dropping it lets them finish the queue and stop.
pub struct Worker {
    shared: Arc<Shared>,
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The engine could not open a session for an instance.
    #[error(transparent)]
    Session(BackendError),
    /// The operating system refused a thread.
    #[error("cannot start a model thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A warmup sample failed on an instance.
    #[error("warmup failed: {0}")]
    Warmup(BackendError),
}

impl Worker {
    /// Starts `config.instances` threads named after `label`, each with its own session.
    pub fn start(
        label: &str,
        config: SchedulerConfig,
        backend: Arc<dyn Backend>,
        metrics: Arc<ModelMetrics>,
    ) -> Result<Worker, WorkerError> {
        Self::start_warmed(label, config, backend, metrics, &[])
    }

    /// [`Self::start`], after running each of `warmup` (inputs and runs) on every instance's
    /// session, so that no request pays for a session's first runs.
    pub fn start_warmed(
        label: &str,
        config: SchedulerConfig,
        backend: Arc<dyn Backend>,
        metrics: Arc<ModelMetrics>,
        warmup: &[(Vec<Tensor>, usize)],
    ) -> Result<Worker, WorkerError> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            arrived: Condvar::new(),
            config,
            metrics,
            load: Load::default(),
            batchable: AtomicBool::new(true),
            running: AtomicUsize::new(0),
        });
        let worker = Worker { shared: shared.clone() };
        // Each instance warms up on its own thread: the engine keeps scratch space per thread.
        let warmup = Arc::new(warmup.to_vec());
        let (warmed, results) = std::sync::mpsc::channel();
        let instances = shared.config.instances.max(1);
        for ix in 0..instances {
            let mut session = backend.session().map_err(WorkerError::Session)?;
            shared.running.fetch_add(1, Relaxed);
            let spawned = {
                let (shared, backend, warmup, warmed) =
                    (shared.clone(), backend.clone(), warmup.clone(), warmed.clone());
                std::thread::Builder::new().name(format!("model-{label}-{ix}")).spawn(move || {
                    let stopped = Stopped(shared.clone());
                    let result = warm_up(&mut session, &warmup);
                    let ok = result.is_ok();
                    let _ = warmed.send(result);
                    if ok {
                        run_instance(&shared, session, &*backend);
                    } else {
                        drop(session);
                    }
                    drop(backend);
                    drop(stopped);
                })
            };
            if let Err(e) = spawned {
                shared.running.fetch_sub(1, Relaxed);
                return Err(WorkerError::Thread(e));
            }
        }
        for _ in 0..instances {
            // a thread that died without answering counts as a failed warmup
            results
                .recv()
                .unwrap_or_else(|_| Err(BackendError::Inference("the instance thread stopped".into())))
                .map_err(WorkerError::Warmup)?;
        }
        Ok(worker)
    }

    /// Queues a job without waiting.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        let mut queue = self.shared.lock();
        if queue.len >= self.shared.config.capacity {
            return Err(SubmitError::Full);
        }
        queue.push(job);
        self.shared.publish_depth(&queue);
        let wake = queue.wake_needed();
        drop(queue);
        if wake {
            self.shared.arrived.notify_one();
        }
        Ok(())
    }
}

impl Worker {
    /// Closes the queue and waits, at most `timeout`, for the instances to stop (they finish
    /// what is queued first).
    pub fn stop(self, timeout: Duration) {
        let shared = self.shared.clone();
        drop(self);
        let deadline = Instant::now() + timeout;
        while shared.running.load(Relaxed) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        // the last instance releases too, but may not have yet
        crate::memory::release_free_memory();
    }
}

/// Counts an instance thread out when it ends (also by a panic); the last one hands the
/// version's memory back.
struct Stopped(Arc<Shared>);

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Relaxed) == 1 {
            crate::memory::release_free_memory();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.arrived.notify_all();
    }
}

/// Runs each warmup sample its number of times on `session`.
fn warm_up(session: &mut Box<dyn Session>, samples: &[(Vec<Tensor>, usize)]) -> Result<(), BackendError> {
    for (inputs, runs) in samples {
        for _ in 0..*runs {
            match catch_unwind(AssertUnwindSafe(|| session.run(inputs.clone()))) {
                Ok(result) => result?,
                Err(panic) => {
                    return Err(BackendError::Inference(format!("the engine failed: {}", panic_message(&*panic))))
                }
            };
        }
    }
    Ok(())
}

fn run_instance(shared: &Shared, mut session: Box<dyn Session>, backend: &dyn Backend) {
    prefer_throughput();
    while let Some(batch) = shared.next_batch() {
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let mut queued = Duration::ZERO;
        for job in &batch {
            shared.metrics.queue_duration.observe(started - job.enqueued);
            queued += started - job.enqueued;
        }
        if batch.len() == 1 {
            let job = batch.into_iter().next().expect("one job");
            let result = run_guarded(shared, &mut session, backend, job.inputs, job.rows);
            if result.is_ok() {
                let (rows, infer) = (job.rows as u64, started.elapsed());
                shared.metrics.executed(Execution { rows, requests: 1, queued, infer, ..Execution::default() });
            }
            let _ = job.reply.send(result.map_err(JobError::Backend));
        } else {
            run_batch(shared, &mut session, backend, batch, queued);
        }
    }
}

/// Marks the calling thread SCHED_BATCH: waking it does not preempt the thread that queued
/// the work. On a busy core the HTTP task then keeps reading and queueing requests, and the
/// instance takes them as one batch when it runs, instead of two context switches per request.
#[cfg(target_os = "linux")]
fn prefer_throughput() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on the calling thread with a valid parameter block.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if rc != 0 {
        tracing::debug!("SCHED_BATCH not available: {}", std::io::Error::last_os_error());
    }
}

#[cfg(not(target_os = "linux"))]
fn prefer_throughput() {}

/// Runs jobs as one execution and hands each its own rows of every output.
fn run_batch(
    shared: &Shared,
    session: &mut Box<dyn Session>,
    backend: &dyn Backend,
    batch: Vec<Job>,
    queued: Duration,
) {
    let started = Instant::now();
    let rows: Vec<usize> = batch.iter().map(|j| j.rows).collect();
    let total: usize = rows.iter().sum();
    let (mut inputs_per_job, replies): (Vec<Vec<Tensor>>, Vec<_>) =
        batch.into_iter().map(|j| (j.inputs, j.reply)).unzip();
    let inputs: Option<Vec<Tensor>> = (0..inputs_per_job[0].len())
        .map(|i| Tensor::concat_rows(inputs_per_job.iter_mut().map(|inputs| std::mem::take(&mut inputs[i])).collect()))
        .collect();
    let fail_all = |replies: Vec<oneshot::Sender<_>>, message: String| {
        for reply in replies {
            let _ = reply.send(Err(JobError::Backend(BackendError::Inference(message.clone()))));
        }
    };
    let Some(inputs) = inputs else {
        return fail_all(replies, "requests could not be joined into a batch".into());
    };
    let mut execution = Execution { rows: total as u64, requests: rows.len() as u64, queued, ..Execution::default() };
    execution.input = started.elapsed();
    let result = run_guarded(shared, session, backend, inputs, total);
    execution.infer = started.elapsed() - execution.input;
    let outputs = match result {
        Ok(outputs) => outputs,
        Err(BackendError::Inference(message)) => return fail_all(replies, message),
        Err(e) => return fail_all(replies, e.to_string()),
    };
    let split: Option<Vec<Vec<Tensor>>> = outputs.iter().map(|o| o.split_rows(&rows)).collect();
    let Some(per_output) = split else {
        tracing::warn!("the model's outputs have no batch dimension; set max_batch_size = 0 for it");
        shared.batchable.store(false, Relaxed);
        return fail_all(replies, "the model's outputs cannot be split by rows; batching is now off for it".into());
    };
    let mut per_output: Vec<std::vec::IntoIter<Tensor>> = per_output.into_iter().map(Vec::into_iter).collect();
    execution.output = started.elapsed() - execution.input - execution.infer;
    shared.metrics.executed(execution);
    for reply in replies {
        let mine = per_output.iter_mut().map(|parts| parts.next().expect("one part per job")).collect();
        let _ = reply.send(Ok(mine));
    }
}

/// One execution, timed and counted, surviving a panic of the engine.
fn run_guarded(
    shared: &Shared,
    session: &mut Box<dyn Session>,
    backend: &dyn Backend,
    inputs: Vec<Tensor>,
    rows: usize,
) -> Result<Vec<Tensor>, BackendError> {
    let started = Instant::now();
    let result = match catch_unwind(AssertUnwindSafe(|| session.run(inputs))) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic_message(&*panic);
            tracing::error!(%message, "model engine panicked; starting a new session");
            match backend.session() {
                Ok(fresh) => *session = fresh,
                Err(e) => tracing::error!(error = %e, "cannot rebuild the session"),
            }
            Err(BackendError::Inference(format!("the engine failed: {message}")))
        }
    };
    let compute = started.elapsed();
    let m = &shared.metrics;
    m.compute_duration.observe(compute);
    m.exec_count.fetch_add(1, Relaxed);
    m.batch_size.observe(rows as u64);
    shared.load.record(rows, compute);
    if result.is_ok() {
        m.inference_count.fetch_add(rows as u64, Relaxed);
    }
    result
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests;
