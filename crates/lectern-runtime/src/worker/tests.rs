//! The batching queue with a probe engine: each job carries its id as its only element, the
//! engine records which ids each execution ran and answers its inputs back, and a test can
//! hold the instances inside an execution while it queues more jobs.

use super::*;
use lectern_backends::Signature;
use lectern_core::TensorData;
use std::sync::Condvar;

/// The longest a test waits for anything; reaching it is a failure, not a hang.
const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Default)]
struct ProbeState {
    /// The ids of each execution, in the order executions started.
    runs: Vec<Vec<i64>>,
    running: usize,
    most_running: usize,
    /// Executions wait while this is set.
    hold: bool,
    /// When this many executions are running at once, `hold` is lifted (0: never).
    release_at: usize,
}

#[derive(Default)]
struct Probe {
    state: Mutex<ProbeState>,
    changed: Condvar,
}

impl Probe {
    fn lock(&self) -> MutexGuard<'_, ProbeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hold(&self) {
        self.lock().hold = true;
    }

    fn release(&self) {
        self.lock().hold = false;
        self.changed.notify_all();
    }

    /// Waits until `n` executions are running at once; false after [`PATIENCE`].
    fn wait_running(&self, n: usize) -> bool {
        let deadline = Instant::now() + PATIENCE;
        let mut state = self.lock();
        while state.running < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }

    fn runs(&self) -> Vec<Vec<i64>> {
        self.lock().runs.clone()
    }

    /// Every id run, in execution order.
    fn ids_run(&self) -> Vec<i64> {
        self.runs().concat()
    }
}

struct ProbeBackend {
    probe: Arc<Probe>,
    signature: Signature,
}

struct ProbeSession(Arc<Probe>);

impl Backend for ProbeBackend {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn session(&self) -> Result<Box<dyn Session>, BackendError> {
        Ok(Box::new(ProbeSession(self.probe.clone())))
    }
}

impl Session for ProbeSession {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let probe = &self.0;
        let ids = match &inputs[0].data {
            TensorData::I64(ids) => ids.clone(),
            other => panic!("the probe takes INT64 ids, not {:?}", other.datatype()),
        };
        let mut state = probe.lock();
        state.runs.push(ids);
        state.running += 1;
        state.most_running = state.most_running.max(state.running);
        if state.release_at > 0 && state.running >= state.release_at {
            state.hold = false;
        }
        probe.changed.notify_all();
        let deadline = Instant::now() + PATIENCE;
        while state.hold && Instant::now() < deadline {
            state = probe.changed.wait_timeout(state, PATIENCE).unwrap_or_else(|e| e.into_inner()).0;
        }
        state.running -= 1;
        probe.changed.notify_all();
        Ok(inputs)
    }
}

fn config(instances: usize, max_batch_size: usize, mode: BatchingMode, max_delay: Duration) -> SchedulerConfig {
    SchedulerConfig { capacity: 1024, instances, max_batch_size, mode, max_delay }
}

/// A worker over a fresh probe (its metrics too).
fn start(config: SchedulerConfig) -> (Worker, Arc<Probe>, Arc<ModelMetrics>) {
    let probe = Arc::new(Probe::default());
    let backend = Arc::new(ProbeBackend { probe: probe.clone(), signature: Signature::default() });
    let metrics = Arc::new(ModelMetrics::default());
    let worker = Worker::start("probe", config, backend, metrics.clone()).expect("the worker starts");
    (worker, probe, metrics)
}

type Reply = oneshot::Receiver<Result<Vec<Tensor>, JobError>>;

/// A job of one row holding `id`, at `priority`, with an optional deadline.
fn job(id: i64, priority: u64, deadline: Option<Instant>) -> (Job, Reply) {
    let (reply, answer) = oneshot::channel();
    let input = Tensor { name: "x".into(), shape: vec![1, 1], data: TensorData::I64(vec![id]) };
    let job = Job { inputs: vec![input], rows: 1, priority, enqueued: Instant::now(), deadline, reply };
    (job, answer)
}

fn submit(worker: &Worker, id: i64, priority: u64, deadline: Option<Instant>) -> Reply {
    let (job, answer) = job(id, priority, deadline);
    assert!(worker.submit(job).is_ok(), "job {id} was refused");
    answer
}

/// The answer to a job (within [`PATIENCE`], else the test fails).
fn answer(mut reply: Reply, what: &str) -> Result<Vec<Tensor>, JobError> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match reply.try_recv() {
            Ok(result) => return result,
            Err(oneshot::error::TryRecvError::Empty) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("{what}: no answer ({e:?}) within {PATIENCE:?}"),
        }
    }
}

/// The id a successful answer carries back (the probe answers its inputs).
fn answered_id(reply: Reply, what: &str) -> i64 {
    match answer(reply, what) {
        Ok(outputs) => match &outputs[0].data {
            TensorData::I64(ids) if ids.len() == 1 => ids[0],
            other => panic!("{what}: answered {other:?}, not its own row"),
        },
        Err(e) => panic!("{what}: failed with {e:?}"),
    }
}

/// Submits job 0 and waits until the only instance is inside its execution, held there.
fn occupy(worker: &Worker, probe: &Probe) -> Reply {
    probe.hold();
    let blocker = submit(worker, 0, 0, None);
    assert!(probe.wait_running(1), "the first job never started");
    blocker
}

#[test]
fn higher_priority_levels_run_first_and_the_default_level_last() {
    let (worker, probe, _) = start(config(1, 0, BatchingMode::Off, Duration::ZERO));
    let blocker = occupy(&worker, &probe);
    // (id, priority); priority 0 is the default level, served after every explicit one.
    let jobs = [(1, 0), (2, 3), (3, 1), (4, 2), (5, 0), (6, 1), (7, 3), (8, 2)];
    let replies: Vec<_> = jobs.iter().map(|&(id, p)| (id, submit(&worker, id, p, None))).collect();
    probe.release();
    answered_id(blocker, "the blocker");
    for (id, reply) in replies {
        assert_eq!(answered_id(reply, &format!("job {id}")), id);
    }
    assert_eq!(probe.ids_run(), vec![0, 3, 6, 4, 8, 2, 7, 1, 5]);
    assert_eq!(probe.runs().iter().map(Vec::len).max(), Some(1), "batching is off: one job per execution");
}

#[test]
fn jobs_of_one_level_run_in_arrival_order() {
    let (worker, probe, _) = start(config(1, 0, BatchingMode::Off, Duration::ZERO));
    let blocker = occupy(&worker, &probe);
    let mut replies = Vec::new();
    for id in 1..=60 {
        // Two levels interleaved: each keeps its own arrival order.
        let priority = if id % 2 == 0 { 5 } else { 0 };
        replies.push((id, submit(&worker, id, priority, None)));
    }
    probe.release();
    answered_id(blocker, "the blocker");
    for (id, reply) in replies {
        assert_eq!(answered_id(reply, &format!("job {id}")), id);
    }
    let evens: Vec<i64> = (1..=60).filter(|id| id % 2 == 0).collect();
    let odds: Vec<i64> = (1..=60).filter(|id| id % 2 == 1).collect();
    assert_eq!(probe.ids_run(), [vec![0], evens, odds].concat());
}

#[test]
fn a_batch_takes_jobs_in_priority_then_arrival_order_and_each_gets_its_own_row() {
    let (worker, probe, metrics) = start(config(1, 4, BatchingMode::Fixed, Duration::ZERO));
    let blocker = occupy(&worker, &probe);
    let replies: Vec<_> = (1..=10).map(|id| (id, submit(&worker, id, if id > 7 { 1 } else { 0 }, None))).collect();
    probe.release();
    answered_id(blocker, "the blocker");
    for (id, reply) in replies {
        assert_eq!(answered_id(reply, &format!("job {id}")), id, "a job got another job's row");
    }
    // 8, 9 and 10 are on level 1; then 1..7 in arrival order, four rows at most per batch.
    assert_eq!(probe.runs(), vec![vec![0], vec![8, 9, 10, 1], vec![2, 3, 4, 5], vec![6, 7]]);
    assert_eq!(metrics.batch_size.snapshot().1, 4, "executions");
}

#[test]
fn a_job_whose_deadline_passed_in_the_queue_is_answered_expired_and_never_run() {
    let (worker, probe, metrics) = start(config(1, 0, BatchingMode::Off, Duration::ZERO));
    let blocker = occupy(&worker, &probe);
    let soon = Instant::now() + Duration::from_millis(20);
    let late = submit(&worker, 1, 0, Some(soon));
    let patient = submit(&worker, 2, 0, Some(Instant::now() + PATIENCE));
    let urgent_but_late = submit(&worker, 3, 1, Some(soon));
    std::thread::sleep(Duration::from_millis(40));
    probe.release();
    answered_id(blocker, "the blocker");
    assert!(matches!(answer(late, "job 1"), Err(JobError::Expired)));
    assert!(matches!(answer(urgent_but_late, "job 3"), Err(JobError::Expired)));
    assert_eq!(answered_id(patient, "job 2"), 2);
    assert_eq!(probe.ids_run(), vec![0, 2], "an expired job was computed");
    assert_eq!(metrics.deadline_expired.load(Relaxed), 2);
}

#[test]
fn a_job_that_expires_while_its_batch_fills_is_answered_expired_and_not_run() {
    // The instance takes job 1 and holds its batch open for 60 ms; job 1's deadline passes
    // meanwhile, job 2 (no deadline) joins the batch.
    let (worker, probe, metrics) = start(config(1, 8, BatchingMode::Fixed, Duration::from_millis(60)));
    let short = submit(&worker, 1, 0, Some(Instant::now() + Duration::from_millis(15)));
    let long = submit(&worker, 2, 0, None);
    assert!(matches!(answer(short, "job 1"), Err(JobError::Expired)));
    assert_eq!(answered_id(long, "job 2"), 2);
    assert_eq!(probe.ids_run(), vec![2]);
    assert_eq!(metrics.deadline_expired.load(Relaxed), 1);
}

#[test]
fn a_submit_wakes_a_sleeping_instance() {
    let (worker, probe, _) = start(config(1, 0, BatchingMode::Off, Duration::ZERO));
    for id in 1..=20 {
        // The instance has gone back to sleep on an empty queue before each submit.
        std::thread::sleep(Duration::from_millis(5));
        let started = Instant::now();
        assert_eq!(answered_id(submit(&worker, id, 0, None), &format!("job {id}")), id);
        assert!(started.elapsed() < Duration::from_secs(1), "job {id} waited {:?}", started.elapsed());
    }
    assert_eq!(probe.ids_run(), (1..=20).collect::<Vec<_>>());
}

#[test]
fn n_jobs_wake_n_sleeping_instances() {
    // Every execution waits until all N are running at once: a lost wake-up leaves a job
    // queued with an instance asleep, and the N never meet.
    const N: usize = 4;
    let (worker, probe, _) = start(config(N, 0, BatchingMode::Off, Duration::ZERO));
    for round in 0..50 {
        {
            let mut state = probe.lock();
            state.hold = true;
            state.release_at = N;
            state.most_running = 0;
        }
        // The instances are back asleep on the empty queue.
        std::thread::sleep(Duration::from_millis(2));
        let replies: Vec<_> = (0..N as i64).map(|i| (i, submit(&worker, round * 10 + i, 0, None))).collect();
        for (i, reply) in replies {
            assert_eq!(answered_id(reply, &format!("round {round} job {i}")), round * 10 + i);
        }
        let most = probe.lock().most_running;
        assert_eq!(most, N, "round {round}: only {most} of {N} instances ran at once: a wake-up was lost");
    }
}

#[test]
fn concurrent_submitters_are_all_answered() {
    let (worker, probe, _) = start(config(3, 8, BatchingMode::Adaptive, Duration::from_micros(500)));
    let worker = Arc::new(worker);
    let threads: Vec<_> = (0..4i64)
        .map(|t| {
            let worker = worker.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    let id = t * 1000 + i;
                    assert_eq!(answered_id(submit(&worker, id, (i % 3) as u64, None), "a job"), id);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a submitter failed");
    }
    let mut ids = probe.ids_run();
    ids.sort_unstable();
    let mut want: Vec<i64> = (0..4).flat_map(|t| (0..250).map(move |i| t * 1000 + i)).collect();
    want.sort_unstable();
    assert_eq!(ids, want, "every job runs exactly once");
}

#[test]
fn a_full_queue_refuses_at_once() {
    let mut settings = config(1, 0, BatchingMode::Off, Duration::ZERO);
    settings.capacity = 3;
    let (worker, probe, _) = start(settings);
    let blocker = occupy(&worker, &probe);
    let queued: Vec<_> = (1..=3).map(|id| submit(&worker, id, 0, None)).collect();
    let (extra, _) = job(4, 0, None);
    assert!(matches!(worker.submit(extra), Err(SubmitError::Full)));
    probe.release();
    answered_id(blocker, "the blocker");
    for (id, reply) in (1..).zip(queued) {
        assert_eq!(answered_id(reply, &format!("job {id}")), id);
    }
}
