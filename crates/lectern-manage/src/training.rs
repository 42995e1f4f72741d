//! Training jobs: checked against their dataset before they are queued, recorded, then run in
//! the background, each in a training process of its own (at most `workers` at once, at low
//! CPU priority, killed to cancel), and registered as a new version of their model through
//! the upload path. Progress and results live in the store, so they survive a restart; a job
//! that was running when the server stopped is marked failed at the next start.

use crate::{check_model_name, ManageError, Manager};
use bytes::Bytes;
use lectern_store::{new_job_id, JobEnd, JobRecord};
use lectern_train::job::{self, JobFailure, JobResult, JobSpec, DEFAULT_TEST_FRACTION, PICTURES};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::{mpsc, Notify};

/// At most this many jobs wait for a worker; more are refused (503).
pub const MAX_WAITING: usize = 100;
/// What a job that was running when its server stopped is marked failed with.
pub const STOPPED: &str = "the server stopped while this job was running";
/// Progress is written to the store at most this often (and at each new stage).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// How training runs.
#[derive(Debug, Clone)]
pub struct TrainingSettings {
    /// Jobs run at once.
    pub workers: usize,
    /// The program started as the training process, as `PROGRAM train-worker FOLDER`.
    pub program: PathBuf,
    /// A local folder for the jobs' working files.
    pub work_dir: PathBuf,
}

/// The body of `POST /v1/training-jobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TrainingRequest {
    /// The dataset's name.
    pub dataset: String,
    /// The column to predict.
    pub target: String,
    /// The model the trained version is registered under (created when missing).
    pub model: String,
    /// `decision_tree`, `random_forest`, `logistic_regression`, `linear_regression` or `knn`.
    pub algorithm: String,
    /// The input columns (default: every other column).
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// The algorithm's parameters.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub params: Option<Map<String, Value>>,
    /// Held-out share of the rows, strictly between 0 and 1 (default 0.25).
    #[serde(default)]
    pub test_fraction: Option<f64>,
    /// Exactly these 0-based rows held out (instead of `test_fraction`).
    #[serde(default)]
    pub test_rows: Option<Vec<usize>>,
    /// Seeds the split and the learner (default 0).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Register the trained model only when it qualifies (scheduled `retrain` jobs send this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_if: Option<RegisterIf>,
}

/// When a trained model is good enough to become a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterIf {
    /// The held-out accuracy (classification) or r2 (regression) must reach this.
    #[serde(default)]
    pub min_metric: Option<f64>,
    /// It must also beat the metric of the model's default version, when a training job made it.
    #[serde(default)]
    pub beat_default: bool,
}

/// The metric a `register_if` rule compares: accuracy for classification, r2 for regression.
pub fn headline_metric(metrics: &Value) -> Option<(&'static str, f64)> {
    match metrics.get("task").and_then(Value::as_str) {
        Some("classification") => metrics.get("accuracy").and_then(Value::as_f64).map(|x| ("accuracy", x)),
        Some("regression") => metrics.get("r2").and_then(Value::as_f64).map(|x| ("r2", x)),
        _ => None,
    }
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    pub id: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// `queued`, `loading`, `preparing`, `training`, `evaluating`, `registering`, `done`.
    pub stage: String,
    pub percent: u8,
    pub dataset: String,
    pub dataset_sha256: Option<String>,
    pub model: String,
    /// The version registered (once succeeded).
    pub version: Option<u64>,
    pub target: String,
    pub features: Option<Vec<String>>,
    pub algorithm: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub params: Map<String, Value>,
    pub test_fraction: Option<f64>,
    pub seed: u64,
    pub error: Option<String>,
    /// `classification` or `regression` (once succeeded).
    pub task: Option<String>,
    pub classes: Option<Vec<String>>,
    pub train_rows: Option<u64>,
    pub test_rows: Option<u64>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metrics: Option<Value>,
    /// The pictures this job has (`tree`, `importance`, `confusion`).
    pub pictures: Vec<String>,
    pub created_by: String,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

impl JobView {
    fn new(record: JobRecord) -> Self {
        let request: Option<TrainingRequest> = serde_json::from_str(&record.request_json).ok();
        let result: Option<JobResult> = record.result_json.as_deref().and_then(|r| serde_json::from_str(r).ok());
        let (target, algorithm, mut features, mut params, test_fraction, seed) = match request {
            Some(r) => (
                r.target,
                r.algorithm,
                r.features,
                r.params.unwrap_or_default(),
                if r.test_rows.is_some() { None } else { Some(r.test_fraction.unwrap_or(DEFAULT_TEST_FRACTION)) },
                r.seed.unwrap_or(0),
            ),
            None => Default::default(),
        };
        let mut view = JobView {
            id: record.id,
            state: record.state,
            stage: record.stage,
            percent: record.percent,
            dataset: record.dataset,
            dataset_sha256: record.dataset_sha256,
            model: record.model,
            version: record.version,
            target,
            features: None,
            algorithm,
            params: Map::new(),
            test_fraction,
            seed,
            error: record.error,
            task: None,
            classes: None,
            train_rows: None,
            test_rows: None,
            metrics: None,
            pictures: Vec::new(),
            created_by: record.created_by,
            created_at_ms: record.created_at_ms,
            started_at_ms: record.started_at_ms,
            finished_at_ms: record.finished_at_ms,
        };
        if let Some(result) = result {
            features = Some(result.features);
            params = result.params.into_iter().collect();
            view.task = Some(result.task);
            view.classes = result.classes;
            view.train_rows = Some(result.train_rows);
            view.test_rows = Some(result.test_rows);
            view.metrics = Some(result.metrics);
            view.pictures = result.pictures;
        }
        view.features = features;
        view.params = params;
        view
    }
}

/// A running job, as its runner and a cancellation share it.
#[derive(Default)]
struct LiveJob {
    cancelled: AtomicBool,
    cancel: Notify,
    /// Held while the job registers its version, and by a cancellation while it ends the job:
    /// a job is either registered or cancelled, never both.
    turn: tokio::sync::Mutex<()>,
}

/// How a run ended, short of success.
enum Ended {
    Cancelled,
    Failed(String),
}

/// The training service.
pub struct Training {
    manager: Arc<Manager>,
    settings: TrainingSettings,
    queue: mpsc::UnboundedSender<String>,
    receiver: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    waiting: AtomicUsize,
    live: std::sync::Mutex<HashMap<String, Arc<LiveJob>>>,
}

impl Training {
    pub fn new(manager: Arc<Manager>, settings: TrainingSettings) -> Arc<Self> {
        let (queue, receiver) = mpsc::unbounded_channel();
        Arc::new(Training {
            manager,
            settings,
            queue,
            receiver: tokio::sync::Mutex::new(receiver),
            waiting: AtomicUsize::new(0),
            live: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Clears the jobs' working folder, marks the jobs a previous process left running as
    /// failed, queues the jobs still waiting, and starts the workers.
    pub async fn start(self: &Arc<Self>) -> Result<(), ManageError> {
        // Folders a killed server left behind: no process of this data folder uses them now.
        if let Err(e) = tokio::fs::remove_dir_all(&self.settings.work_dir).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(folder = %self.settings.work_dir.display(), error = %e, "cannot clear the training jobs' folder");
            }
        }
        let failed = self.manager.store.fail_running_jobs(STOPPED).await?;
        if failed > 0 {
            tracing::warn!(jobs = failed, "training jobs that were running when the server stopped are marked failed");
        }
        for id in self.manager.store.queued_jobs().await? {
            self.enqueue(id);
        }
        for _ in 0..self.settings.workers.max(1) {
            let this = self.clone();
            tokio::spawn(async move { this.work().await });
        }
        Ok(())
    }

    fn enqueue(&self, id: String) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _ = self.queue.send(id);
    }

    async fn work(self: Arc<Self>) {
        loop {
            let next = self.receiver.lock().await.recv().await;
            let Some(id) = next else { return };
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            self.run(&id).await;
        }
    }

    /// Checks a request against its dataset, records the job and queues it.
    pub async fn submit(&self, actor: &str, request: TrainingRequest) -> Result<JobView, ManageError> {
        check_model_name(&request.model)?;
        let bad = |m: &str| ManageError::BadTrainingRequest(lectern_train::TrainError::BadSplit(m.to_string()));
        if request.test_rows.is_some() && request.test_fraction.is_some() {
            return Err(bad("give test_fraction or test_rows, not both"));
        }
        if let Some(f) = request.test_fraction {
            if !(f > 0.0 && f < 1.0) {
                return Err(bad(&format!("must be more than 0 and less than 1, got {f}")));
            }
        }
        if self.waiting.load(Ordering::SeqCst) >= MAX_WAITING {
            return Err(ManageError::TrainingQueueFull(MAX_WAITING));
        }
        let dataset = self.manager.dataset_record(&request.dataset).await?;
        let spec = spec_of(&request, &dataset.format);
        let bytes = self.manager.objects.get_checked(&dataset.object_key, &dataset.sha256).await.map_err(|e| {
            tracing::warn!(dataset = %request.dataset, error = %e, "cannot read a dataset file");
            ManageError::Objects(format!("the file of dataset '{}' cannot be read", request.dataset))
        })?;
        tokio::task::spawn_blocking(move || -> Result<(), ManageError> {
            let format = spec.data_format().map_err(ManageError::BadTrainingRequest)?;
            let dataset = lectern_train::Dataset::read(bytes.as_slice(), format).map_err(ManageError::BadDataset)?;
            lectern_train::check(&dataset, &spec.request()).map_err(ManageError::BadTrainingRequest)
        })
        .await
        .map_err(|e| ManageError::Invalid(format!("checking the request stopped: {e}")))??;
        let record = JobRecord {
            id: new_job_id()?,
            model: request.model.clone(),
            dataset: request.dataset.clone(),
            dataset_sha256: None,
            request_json: serde_json::to_string(&request).expect("json"),
            state: "queued".into(),
            stage: "queued".into(),
            percent: 0,
            error: None,
            result_json: None,
            version: None,
            created_by: actor.to_string(),
            created_at_ms: crate::manager::lectern_now_ms() as i64,
            started_at_ms: None,
            finished_at_ms: None,
        };
        self.manager.store.insert_job(&record).await?;
        self.enqueue(record.id.clone());
        Ok(JobView::new(record))
    }

    /// One job.
    pub async fn job(&self, id: &str) -> Result<JobView, ManageError> {
        let record = self.manager.store.job(id).await?.ok_or_else(|| ManageError::JobNotFound(id.to_string()))?;
        Ok(JobView::new(record))
    }

    /// The newest jobs, of one model when given.
    pub async fn jobs(&self, model: Option<&str>, limit: u32) -> Result<Vec<JobView>, ManageError> {
        Ok(self.manager.store.jobs(model, limit).await?.into_iter().map(JobView::new).collect())
    }

    /// How many training jobs are recorded.
    pub async fn job_count(&self) -> Result<u64, ManageError> {
        Ok(self.manager.store.job_count().await?)
    }

    /// A picture of a succeeded job (SVG text).
    pub async fn picture(&self, id: &str, name: &str) -> Result<String, ManageError> {
        let job = self.job(id).await?;
        if !PICTURES.contains(&name) {
            return Err(ManageError::PictureNotFound(format!(
                "there is no picture '{name}': the pictures are {}",
                PICTURES.join(", ")
            )));
        }
        if job.state != "succeeded" {
            return Err(ManageError::PictureNotFound(format!(
                "training job '{id}' is {}: pictures are drawn once it has succeeded",
                job.state
            )));
        }
        self.manager.store.picture(id, name).await?.ok_or_else(|| {
            ManageError::PictureNotFound(format!(
                "a {} model has no '{name}' picture (this job has: {})",
                job.algorithm,
                job.pictures.join(", ")
            ))
        })
    }

    /// Cancels a queued or running job (a running one's process is killed).
    pub async fn cancel(&self, actor: &str, id: &str) -> Result<JobView, ManageError> {
        let error = format!("cancelled by {actor}");
        // A runner puts its job in `live` before moving it to `running`: a job not in `live`
        // is cancelled only while still queued, and looked for again once it is running.
        for _ in 0..3 {
            let job = self.job(id).await?;
            let end = JobEnd {
                state: "cancelled",
                percent: job.percent,
                error: Some(&error),
                result_json: None,
                version: None,
                actor: Some(actor),
                only_queued: false,
            };
            let live = self.live.lock().expect("live jobs").get(id).cloned();
            let ended = match &live {
                Some(live) => {
                    live.cancelled.store(true, Ordering::SeqCst);
                    let _turn = live.turn.lock().await;
                    let ended = self.manager.store.finish_job(id, &end, &[]).await?;
                    live.cancel.notify_one();
                    ended
                }
                None => self.manager.store.finish_job(id, &JobEnd { only_queued: true, ..end }, &[]).await?,
            };
            let job = self.job(id).await?;
            if ended {
                return Ok(job);
            }
            if job.state != "running" {
                return Err(ManageError::JobFinished(id.to_string(), job.state));
            }
        }
        Err(ManageError::JobFinished(id.to_string(), "ended".into()))
    }

    /// Runs one queued job to its end.
    async fn run(&self, id: &str) {
        let live = Arc::new(LiveJob::default());
        self.live.lock().expect("live jobs").insert(id.to_string(), live.clone());
        let started = self.manager.store.start_job(id).await;
        if !matches!(started, Ok(true)) {
            self.live.lock().expect("live jobs").remove(id);
            if let Err(e) = started {
                tracing::warn!(job = id, error = %e, "cannot start a training job; it stays queued until the next start");
            }
            return; // Ok(false): cancelled while it waited
        }
        let dir = self.settings.work_dir.join(id);
        let outcome = match self.manager.store.job(id).await {
            Ok(Some(job)) => self.execute(&job, &dir, &live).await,
            Ok(None) => Err(Ended::Failed("the job disappeared".into())),
            Err(e) => Err(Ended::Failed(format!("the database failed: {e}"))),
        };
        if let Err(ended) = outcome {
            let percent = self.manager.store.job(id).await.ok().flatten().map_or(0, |j| j.percent);
            let (state, error) = match &ended {
                Ended::Cancelled => ("cancelled", "cancelled".to_string()),
                Ended::Failed(why) => ("failed", why.clone()),
            };
            let end = JobEnd {
                state,
                percent,
                error: Some(&error),
                result_json: None,
                version: None,
                actor: None,
                only_queued: false,
            };
            if let Err(e) = self.manager.store.finish_job(id, &end, &[]).await {
                tracing::warn!(job = id, error = %e, "cannot record the end of a training job");
            }
            if let Ended::Failed(why) = &ended {
                tracing::info!(job = id, reason = %why, "training job failed");
            }
        }
        self.live.lock().expect("live jobs").remove(id);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(job = id, error = %e, "cannot remove a training job's folder");
            }
        }
    }

    /// Prepares the job's folder, runs the training process, and registers what it made.
    async fn execute(&self, job: &JobRecord, dir: &Path, live: &LiveJob) -> Result<(), Ended> {
        let failed = |what: &str, e: &dyn std::fmt::Display| Ended::Failed(format!("{what}: {e}"));
        let request: TrainingRequest =
            serde_json::from_str(&job.request_json).map_err(|e| failed("the stored request cannot be read", &e))?;
        let dataset = match self.manager.store.dataset(&job.dataset).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                return Err(Ended::Failed(format!("the dataset '{}' was deleted before the job started", job.dataset)))
            }
            Err(e) => return Err(failed("the database failed", &e)),
        };
        tokio::fs::create_dir_all(dir).await.map_err(|e| failed("cannot create the job's folder", &e))?;
        let spec = spec_of(&request, &dataset.format);
        tokio::fs::write(dir.join(job::SPEC_FILE), serde_json::to_vec(&spec).expect("json"))
            .await
            .map_err(|e| failed("cannot write the job's file", &e))?;
        self.manager
            .objects
            .download(&dataset.object_key, &dataset.sha256, &dir.join(job::DATA_FILE))
            .await
            .map_err(|e| failed("cannot read the dataset file", &e))?;
        let _ = self.manager.store.job_progress(&job.id, "loading", 0, Some(&dataset.sha256)).await;
        self.train_in_process(&job.id, dir, live).await?;
        let result: JobResult = read_json(&dir.join(job::RESULT_FILE))
            .await
            .map_err(|e| failed("the training process left no result", &e))?;
        let model = tokio::fs::read(dir.join(job::MODEL_FILE)).await.map_err(|e| failed("no model file", &e))?;
        let mut pictures = Vec::new();
        for name in &result.pictures {
            let svg = tokio::fs::read_to_string(dir.join(format!("{name}.svg")))
                .await
                .map_err(|e| failed("a picture is missing", &e))?;
            pictures.push((name.clone(), svg));
        }
        let _turn = live.turn.lock().await;
        if live.cancelled.load(Ordering::SeqCst) {
            return Err(Ended::Cancelled);
        }
        if let Some(rule) = &request.register_if {
            if let Some(why) = self.disqualified(rule, &job.model, &result.metrics).await {
                let result_json = serde_json::to_string(&result).expect("json");
                let end = JobEnd {
                    state: "succeeded",
                    percent: 100,
                    error: Some(&why),
                    result_json: Some(&result_json),
                    version: None,
                    actor: None,
                    only_queued: false,
                };
                return match self.manager.store.finish_job(&job.id, &end, &pictures).await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(failed("recording the result failed", &e)),
                };
            }
        }
        let _ = self.manager.store.job_progress(&job.id, "registering", 95, None).await;
        let version = self
            .register(&job.created_by, &job.model, result.classes.as_deref(), model)
            .await
            .map_err(|e| failed("registering the model failed", &e))?;
        let result_json = serde_json::to_string(&result).expect("json");
        let end = JobEnd {
            state: "succeeded",
            percent: 100,
            error: None,
            result_json: Some(&result_json),
            version: Some(version),
            actor: None,
            only_queued: false,
        };
        match self.manager.store.finish_job(&job.id, &end, &pictures).await {
            Ok(_) => Ok(()),
            Err(e) => Err(failed("recording the result failed", &e)),
        }
    }

    /// Runs `lectern train-worker DIR` and follows its progress until it exits or the job is
    /// cancelled (then it is killed).
    async fn train_in_process(&self, id: &str, dir: &Path, live: &LiveJob) -> Result<(), Ended> {
        let mut child = tokio::process::Command::new(&self.settings.program)
            .arg("train-worker")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Ended::Failed(format!("cannot start the training process: {e}")))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let stderr_tail = tokio::spawn(last_text(stderr, 2000));
        let mut lines = BufReader::new(stdout).lines();
        let mut last: Option<(String, Instant)> = None;
        let status = loop {
            tokio::select! {
                _ = live.cancel.notified() => {
                    let _ = child.kill().await;
                    return Err(Ended::Cancelled);
                }
                line = lines.next_line() => match line {
                    Ok(Some(line)) => {
                        let Ok(progress) = serde_json::from_str::<lectern_train::Progress>(&line) else { continue };
                        let stage = serde_json::to_value(progress.stage).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
                        let due = last.as_ref().is_none_or(|(s, at)| *s != stage || at.elapsed() >= PROGRESS_EVERY || progress.percent == 100);
                        if due {
                            let _ = self.manager.store.job_progress(id, &stage, progress.percent.min(94), None).await;
                            last = Some((stage, Instant::now()));
                        }
                    }
                    Ok(None) | Err(_) => {
                        tokio::select! {
                            _ = live.cancel.notified() => {
                                let _ = child.kill().await;
                                return Err(Ended::Cancelled);
                            }
                            status = child.wait() => break status,
                        }
                    }
                }
            }
        };
        let status = status.map_err(|e| Ended::Failed(format!("the training process was lost: {e}")))?;
        if status.success() {
            return Ok(());
        }
        if let Ok(failure) = read_json::<JobFailure>(&dir.join(job::ERROR_FILE)).await {
            return Err(Ended::Failed(failure.message));
        }
        let tail = stderr_tail.await.unwrap_or_default();
        Err(Ended::Failed(format!(
            "the training process stopped ({status}){}",
            if tail.is_empty() { String::new() } else { format!(": {tail}") }
        )))
    }

    /// Why a trained model with these metrics may not be registered under `rule`; `None`: it may.
    async fn disqualified(&self, rule: &RegisterIf, model: &str, metrics: &Value) -> Option<String> {
        let Some((name, value)) = headline_metric(metrics) else {
            return Some("not registered: the job has no metric to compare".into());
        };
        if let Some(min) = rule.min_metric {
            if value < min {
                return Some(format!("not registered: {name} {value:.4} is below min_metric {min}"));
            }
        }
        if rule.beat_default {
            if let Some((version, best)) = self.default_metric(model).await {
                if value <= best {
                    return Some(format!(
                        "not registered: {name} {value:.4} does not beat {best:.4} of the default version {version}"
                    ));
                }
            }
        }
        None
    }

    /// The metric of the version unversioned requests use (the explicit default, else the
    /// newest), when a training job made it.
    async fn default_metric(&self, model: &str) -> Option<(u64, f64)> {
        let store = &self.manager.store;
        let record = store.model(model).await.ok()??;
        let version = match record.default_version {
            Some(v) => v,
            None => store.versions(model).await.ok()?.iter().map(|v| v.version).max()?,
        };
        let jobs = store.jobs(Some(model), 1000).await.ok()?;
        let job = jobs.iter().find(|j| j.version == Some(version) && j.state == "succeeded")?;
        let result: JobResult = serde_json::from_str(job.result_json.as_deref()?).ok()?;
        headline_metric(&result.metrics).map(|(_, x)| (version, x))
    }

    /// Registers a trained model as the next version of `model` (created when missing; for
    /// classification its labels become the classes).
    async fn register(
        &self,
        actor: &str,
        model: &str,
        classes: Option<&[String]>,
        onnx: Vec<u8>,
    ) -> Result<u64, ManageError> {
        let labels = classes.map(|c| c.join("\n"));
        let store = &self.manager.store;
        match store.model(model).await? {
            None => match store.create_model(actor, model, "", labels.as_deref()).await {
                Ok(_) | Err(lectern_store::StoreError::ModelExists(_)) => {}
                Err(e) => return Err(e.into()),
            },
            Some(existing) if labels.is_some() && existing.labels != labels => {
                store.set_config(actor, model, &existing.config, labels.as_deref()).await?;
            }
            Some(_) => {}
        }
        let body = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(onnx))]);
        let (version, _) = self.manager.upload_version(actor, model, None, body).await?;
        Ok(version)
    }
}

/// The training process's request, from the API's.
fn spec_of(request: &TrainingRequest, format: &str) -> JobSpec {
    JobSpec {
        format: format.to_string(),
        target: request.target.clone(),
        features: request.features.clone(),
        algorithm: request.algorithm.clone(),
        params: request.params.clone().unwrap_or_default().into_iter().collect(),
        test_fraction: request.test_fraction,
        test_rows: request.test_rows.clone(),
        seed: request.seed.unwrap_or(0),
    }
}

/// The last `keep` bytes a stream gives before it ends (read to its end, so the writer never
/// blocks on a full pipe), as text.
async fn last_text(mut stream: impl tokio::io::AsyncRead + Unpin, keep: usize) -> String {
    let mut tail: Vec<u8> = Vec::with_capacity(2 * keep);
    let mut chunk = [0u8; 8192];
    while let Ok(n) = stream.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > keep {
            tail.drain(..tail.len() - keep);
        }
    }
    String::from_utf8_lossy(&tail).trim().to_string()
}

async fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let bytes = tokio::fs::read(path).await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_last_text_of_a_stream_is_its_end() {
        let text: String = (0..5000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let last = super::last_text(format!("{text}\nthe reason\n").as_bytes(), 12).await;
        assert_eq!(last, "the reason");
        assert_eq!(super::last_text(&b""[..], 12).await, "");
    }
}
