//! The scheduling loop every process runs, and the operations of `/v1/jobs`.
//!
//! Each tick (at the earliest next firing, at least once a second, and whenever this process
//! changed a job) the loop fails the runs whose lease expired, then looks at every job whose
//! next firing is due and has no run in progress: it decides (run, or record as missed) and
//! claims the firing with a conditional update, so that exactly one process acts on it. A
//! claimed run executes in its own task, renewing its lease every third of it, stopped at its
//! timeout or when the lease is lost.

use crate::kinds::{self, Deps, RunCtx};
use crate::schedule::Decision;
use crate::spec::JobDef;
use crate::view::{JobView, RunView};
use crate::{now_ms, JobsError};
use lectern_store::{Claim, JobRun, RunEnd, ScheduledJob, Store, StoreError};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// The longest the loop sleeps: other processes' changes are seen within this.
const TICK: Duration = Duration::from_secs(1);
const LEASE_EXPIRED: &str = "the process running it stopped (its lease expired)";
const STOPPED: &str = "the server stopped while this run was running";

/// The jobs service of one process.
pub struct Jobs {
    deps: Deps,
    store: Store,
    http: reqwest::Client,
    /// Who this process is, in the runs it records.
    owner: String,
    wake: Notify,
    stopping: AtomicBool,
    /// This process's runs in progress: run id -> (job, task).
    running: Mutex<HashMap<String, (String, AbortHandle)>>,
}

/// Reads the `[jobs.*]` tables of a config file.
pub fn parse_config(text: &str, file: &str) -> Result<Vec<JobDef>, JobsError> {
    let table: toml::Table =
        text.parse().map_err(|e| JobsError::Invalid(format!("{file}: cannot read the config file: {e}")))?;
    let Some(jobs) = table.get("jobs") else { return Ok(Vec::new()) };
    let jobs = jobs.as_table().ok_or_else(|| JobsError::Invalid(format!("{file}: [jobs] must be a table")))?;
    jobs.iter()
        .map(|(name, spec)| {
            let json =
                serde_json::to_value(spec).map_err(|e| JobsError::Invalid(format!("{file}: job '{name}': {e}")))?;
            let def = JobDef::parse(name, &json).map_err(|e| JobsError::Invalid(format!("{file}: {e}")))?;
            def.check_environment().map_err(|e| JobsError::Invalid(format!("{file}: {e}")))?;
            Ok(def)
        })
        .collect()
}

impl Jobs {
    pub fn new(deps: Deps) -> Result<Arc<Jobs>, JobsError> {
        let store = deps.manager.store().clone();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| JobsError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        let mut tag = [0u8; 4];
        let _ = getrandom::getrandom(&mut tag);
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "lectern".into());
        let owner = format!("{host}:{}:{}", std::process::id(), lectern_store::hex(&tag));
        Ok(Arc::new(Jobs {
            deps,
            store,
            http,
            owner,
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            running: Mutex::new(HashMap::new()),
        }))
    }

    /// Writes the config file's jobs to the database (a job whose schedule did not change keeps
    /// its next firing) and deletes the config jobs no longer in it.
    pub async fn sync_config(&self, defs: &[JobDef]) -> Result<(), JobsError> {
        let now = now_ms();
        for def in defs {
            let spec_json = Value::Object(def.given.clone()).to_string();
            let existing = self.store.scheduled_job(&def.name).await?;
            let row = match &existing {
                Some(old) if old.schedule_key == def.schedule.key() => {
                    let next = match old.next_run_at_ms {
                        Some(next) if def.enabled => Some(next),
                        _ if def.enabled && !old.paused => def.schedule.next_after(old.anchor_ms, now),
                        _ => None,
                    };
                    ScheduledJob { source: "config".into(), spec_json, next_run_at_ms: next, ..old.clone() }
                }
                _ => new_row(def, "config", "config", spec_json, now),
            };
            if existing.is_some() {
                self.store.update_scheduled_job("config", &row).await?;
                continue;
            }
            match self.store.insert_scheduled_job("config", &row).await {
                Ok(()) => {}
                // Another process of this config stored it first.
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for job in self.store.scheduled_jobs().await? {
            if job.source == "config" && !defs.iter().any(|d| d.name == job.name) {
                self.store.delete_scheduled_job("config", &job.name).await?;
                tracing::info!(job = %job.name, "removed a job no longer in the config file");
            }
        }
        Ok(())
    }

    /// Starts the scheduling loop.
    pub fn start(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move { this.run_loop().await });
    }

    /// Stops the loop and this process's runs, marking them failed.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        let running: Vec<(String, String, AbortHandle)> = {
            let mut map = self.running.lock().expect("running runs");
            map.drain().map(|(id, (job, task))| (id, job, task)).collect()
        };
        for (id, job, task) in running {
            task.abort();
            if let Err(e) = self.store.fail_run(&job, &id, now_ms(), true, STOPPED).await {
                tracing::warn!(job = %job, error = %e, "cannot record that a run stopped with the server");
            }
        }
    }

    async fn run_loop(self: Arc<Self>) {
        while !self.stopping.load(Ordering::SeqCst) {
            let wait = match self.tick().await {
                Ok(Some(next)) => Duration::from_millis((next - now_ms()).clamp(0, TICK.as_millis() as i64) as u64),
                Ok(None) => TICK,
                Err(e) => {
                    tracing::warn!(error = %e, "the job scheduler cannot read the jobs; trying again");
                    TICK
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// One look at every job; returns the earliest next firing.
    async fn tick(self: &Arc<Self>) -> Result<Option<i64>, JobsError> {
        let now = now_ms();
        for (job, run_id) in self.store.expired_leases(now).await? {
            if self.store.fail_run(&job, &run_id, now, false, LEASE_EXPIRED).await? {
                tracing::warn!(job = %job, run = %run_id, "a run's lease expired: marked failed");
            }
        }
        let mut earliest: Option<i64> = None;
        for job in self.store.scheduled_jobs().await? {
            if job.paused || job.run_id.is_some() {
                continue;
            }
            let Some(due) = job.next_run_at_ms else { continue };
            if due > now {
                earliest = Some(earliest.map_or(due, |e| e.min(due)));
                continue;
            }
            if let Err(e) = self.fire(&job, due, now).await {
                tracing::warn!(job = %job.name, error = %e, "cannot fire a job");
            }
        }
        Ok(earliest)
    }

    /// Acts on a due firing of `job`.
    async fn fire(self: &Arc<Self>, job: &ScheduledJob, due: i64, now: i64) -> Result<(), JobsError> {
        let def = match read_def(job) {
            Ok(def) => def,
            Err(e) => return self.fail_unreadable(job, due, now, &e.to_string()).await,
        };
        let grace = def.misfire_grace.as_millis().min(i64::MAX as u128) as i64;
        match def.schedule.decide(job.anchor_ms, due, now, grace, def.coalesce) {
            Decision::Run { scheduled_for, count, next } => {
                let mut run = self.new_run(&job.name, "schedule", Some(scheduled_for), now)?;
                if count > 1 {
                    run.detail = Some(format!("{count} missed firings coalesced into this run"));
                }
                let claim =
                    Claim { expected_next_ms: due, new_next_ms: next, run: &run, lease_until_ms: now + lease_ms(&def) };
                if self.store.claim_firing(&job.name, &claim).await? {
                    tracing::info!(job = %job.name, run = %run.id, scheduled_for, "job fired");
                    self.spawn(Arc::new(def), run);
                }
            }
            Decision::Missed { scheduled_for, count, late_ms, next } => {
                let mut run = self.new_run(&job.name, "schedule", Some(scheduled_for), now)?;
                run.state = "missed".into();
                run.finished_at_ms = Some(now);
                let firings = if count == 1 { "1 firing".to_string() } else { format!("{count} firings") };
                run.error = Some(format!(
                    "{firings} missed: the latest was {} late (misfire_grace {})",
                    human(late_ms),
                    human(grace)
                ));
                if self.store.skip_firing(&job.name, due, next, &run).await? {
                    tracing::warn!(job = %job.name, count, late_ms, "job firings missed");
                }
            }
        }
        Ok(())
    }

    /// A stored job that no longer reads (an environment variable it needs is gone): its firing
    /// is recorded as a failed run and the schedule moves on.
    async fn fail_unreadable(&self, job: &ScheduledJob, due: i64, now: i64, why: &str) -> Result<(), JobsError> {
        let mut run = self.new_run(&job.name, "schedule", Some(due), now)?;
        run.state = "failed".into();
        run.finished_at_ms = Some(now);
        run.error = Some(why.to_string());
        // Without a readable schedule, the next look is in a minute.
        self.store.skip_firing(&job.name, due, Some(now + 60_000), &run).await?;
        Ok(())
    }

    fn new_run(&self, job: &str, trigger: &str, scheduled_for: Option<i64>, now: i64) -> Result<JobRun, JobsError> {
        Ok(JobRun {
            id: lectern_store::new_job_id()?,
            job: job.to_string(),
            trigger: trigger.to_string(),
            scheduled_for_ms: scheduled_for,
            started_at_ms: now,
            finished_at_ms: None,
            state: "running".into(),
            items: 0,
            error: None,
            detail: None,
            owner: self.owner.clone(),
        })
    }

    /// Runs a claimed run in its own task.
    fn spawn(self: &Arc<Self>, def: Arc<JobDef>, run: JobRun) {
        let this = self.clone();
        tokio::spawn(async move { this.execute(def, run).await });
    }

    /// Runs the kind under the timeout, renewing the lease, and records the end.
    async fn execute(self: Arc<Self>, def: Arc<JobDef>, run: JobRun) {
        let ctx = Arc::new(RunCtx {
            job: def.name.clone(),
            run_id: run.id.clone(),
            store: self.store.clone(),
            http: self.http.clone(),
            items: AtomicU64::new(0),
        });
        let mut work = tokio::spawn(kinds::run(self.deps.clone(), def.clone(), ctx.clone()));
        self.running.lock().expect("running runs").insert(run.id.clone(), (def.name.clone(), work.abort_handle()));
        let lease = def.lease;
        let mut renew = tokio::time::interval(lease / 3);
        renew.tick().await;
        let deadline = tokio::time::sleep(def.timeout);
        tokio::pin!(deadline);
        let outcome: Result<String, String> = loop {
            tokio::select! {
                joined = &mut work => break match joined {
                    Ok(result) => result,
                    Err(e) if e.is_panic() => Err("the run stopped on an internal error (a panic)".into()),
                    Err(_) => Err(STOPPED.into()),
                },
                _ = &mut deadline => {
                    work.abort();
                    break Err(format!("timed out after {}", humantime::format_duration(def.timeout)));
                }
                _ = renew.tick() => {
                    let until = now_ms() + lease_ms(&def);
                    match self.store.renew_lease(&def.name, &run.id, until).await {
                        Ok(true) => {}
                        Ok(false) => {
                            work.abort();
                            self.running.lock().expect("running runs").remove(&run.id);
                            tracing::warn!(job = %def.name, run = %run.id, "a run lost its lease; stopped");
                            return;
                        }
                        Err(e) => tracing::warn!(job = %def.name, error = %e, "cannot renew a run's lease"),
                    }
                }
            }
        };
        if self.running.lock().expect("running runs").remove(&run.id).is_none() {
            return; // stopped with the server: already recorded
        }
        let items = ctx.items.load(Ordering::Relaxed);
        let succeeded = outcome.is_ok();
        let end = match outcome {
            Ok(detail) => RunEnd { state: "succeeded", items, error: None, detail: Some(join_detail(&run, detail)) },
            Err(error) => RunEnd { state: "failed", items, error: Some(error), detail: run.detail.clone() },
        };
        match self.store.finish_run(&def.name, &run.id, &end, succeeded).await {
            Ok(true) => tracing::info!(job = %def.name, run = %run.id, state = end.state, items, "job run ended"),
            Ok(false) => tracing::warn!(job = %def.name, run = %run.id, "a run ended after losing its lease"),
            Err(e) => {
                tracing::warn!(job = %def.name, error = %e, "cannot record the end of a run; its lease will expire")
            }
        }
        self.wake.notify_one();
    }

    // ---- the API ----

    /// Every job, by name.
    pub async fn list(&self) -> Result<Vec<JobView>, JobsError> {
        let mut views = Vec::new();
        for job in self.store.scheduled_jobs().await? {
            views.push(self.view(&job).await?);
        }
        Ok(views)
    }

    /// One job.
    pub async fn get(&self, name: &str) -> Result<JobView, JobsError> {
        let job = self.stored(name).await?;
        self.view(&job).await
    }

    /// Stores a new job (source `api`).
    pub async fn create(&self, actor: &str, name: &str, given: &Value) -> Result<JobView, JobsError> {
        let def = JobDef::parse(name, given)?;
        def.check_environment()?;
        let row = new_row(&def, "api", actor, Value::Object(def.given.clone()).to_string(), now_ms());
        match self.store.insert_scheduled_job(actor, &row).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Err(JobsError::Exists(name.to_string())),
            Err(e) => return Err(e.into()),
        }
        self.wake.notify_one();
        self.get(name).await
    }

    /// Replaces an API job's definition; its schedule starts over when it changed.
    pub async fn replace(&self, actor: &str, name: &str, given: &Value) -> Result<JobView, JobsError> {
        let old = self.stored(name).await?;
        if old.source == "config" {
            return Err(JobsError::FromConfig(name.to_string()));
        }
        let def = JobDef::parse(name, given)?;
        def.check_environment()?;
        let now = now_ms();
        let spec_json = Value::Object(def.given.clone()).to_string();
        let row = if old.schedule_key == def.schedule.key() && old.next_run_at_ms.is_some() && def.enabled {
            ScheduledJob { spec_json, ..old.clone() }
        } else {
            let mut row = new_row(&def, "api", &old.created_by, spec_json, now);
            if old.paused {
                row.next_run_at_ms = None;
            }
            row
        };
        if !self.store.update_scheduled_job(actor, &row).await? {
            return Err(JobsError::NotFound(name.to_string()));
        }
        self.wake.notify_one();
        self.get(name).await
    }

    /// Deletes an API job and its history.
    pub async fn delete(&self, actor: &str, name: &str) -> Result<(), JobsError> {
        let old = self.stored(name).await?;
        if old.source == "config" {
            return Err(JobsError::FromConfig(name.to_string()));
        }
        if let Some(run_id) = &old.run_id {
            if let Some((_, task)) = self.running.lock().expect("running runs").remove(run_id) {
                task.abort();
            }
        }
        if !self.store.delete_scheduled_job(actor, name).await? {
            return Err(JobsError::NotFound(name.to_string()));
        }
        Ok(())
    }

    /// Pauses (no firing until resumed) or resumes (the schedule starts over from now).
    pub async fn pause(&self, actor: &str, name: &str, paused: bool) -> Result<JobView, JobsError> {
        let job = self.stored(name).await?;
        let def = read_def(&job)?;
        let now = now_ms();
        let (anchor, next) = match paused {
            true => (job.anchor_ms, None),
            false if def.enabled => (now, def.schedule.next_after(now, now)),
            false => (now, None),
        };
        if !self.store.pause_scheduled_job(actor, name, paused, anchor, next).await? {
            return Err(JobsError::NotFound(name.to_string()));
        }
        self.wake.notify_one();
        self.get(name).await
    }

    /// Starts a run now (its schedule stays as it is).
    pub async fn run_now(self: &Arc<Self>, actor: &str, name: &str) -> Result<RunView, JobsError> {
        let job = self.stored(name).await?;
        let def = read_def(&job)?;
        def.check_environment()?;
        let now = now_ms();
        let run = self.new_run(name, "manual", None, now)?;
        if !self.store.claim_manual(actor, name, &run, now + lease_ms(&def)).await? {
            return Err(JobsError::Running(name.to_string()));
        }
        tracing::info!(job = %name, run = %run.id, "job run started by hand");
        self.spawn(Arc::new(def), run.clone());
        Ok(run.into())
    }

    /// The newest runs of a job.
    pub async fn runs(&self, name: &str, limit: u32) -> Result<Vec<RunView>, JobsError> {
        self.stored(name).await?;
        Ok(self.store.job_runs(name, limit).await?.into_iter().map(RunView::from).collect())
    }

    async fn stored(&self, name: &str) -> Result<ScheduledJob, JobsError> {
        self.store.scheduled_job(name).await?.ok_or_else(|| JobsError::NotFound(name.to_string()))
    }

    async fn view(&self, job: &ScheduledJob) -> Result<JobView, JobsError> {
        let def = read_def(job)?;
        let recent = self.store.job_runs(&job.name, 2).await?;
        let running = match &job.run_id {
            Some(id) => self.store.job_run(id).await?.map(RunView::from),
            None => None,
        };
        let last = recent.into_iter().find(|r| r.state != "running").map(RunView::from);
        Ok(JobView::new(job, &def, running, last))
    }
}

/// A job's stored definition, read again.
fn read_def(job: &ScheduledJob) -> Result<JobDef, JobsError> {
    let given: Value = serde_json::from_str(&job.spec_json)
        .map_err(|e| JobsError::Invalid(format!("job '{}': the stored definition cannot be read: {e}", job.name)))?;
    JobDef::parse(&job.name, &given)
}

/// A job's row as first stored: its schedule starts now.
fn new_row(def: &JobDef, source: &str, actor: &str, spec_json: String, now: i64) -> ScheduledJob {
    ScheduledJob {
        name: def.name.clone(),
        source: source.to_string(),
        spec_json,
        schedule_key: def.schedule.key(),
        anchor_ms: now,
        paused: false,
        next_run_at_ms: if def.enabled { def.schedule.next_after(now, now) } else { None },
        run_id: None,
        lease_until_ms: None,
        checkpoint_json: None,
        created_by: actor.to_string(),
        created_at_ms: now,
        updated_at_ms: now,
    }
}

fn join_detail(run: &JobRun, detail: String) -> String {
    match &run.detail {
        Some(first) => format!("{first}; {detail}"),
        None => detail,
    }
}

fn lease_ms(def: &JobDef) -> i64 {
    def.lease.as_millis().min(i64::MAX as u128) as i64
}

fn human(ms: i64) -> String {
    humantime::format_duration(Duration::from_millis(ms.max(0) as u64)).to_string()
}
