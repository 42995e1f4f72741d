//! What the API shows of a job and of a run.

use crate::schedule::Schedule;
use crate::spec::JobDef;
use lectern_store::{JobRun, ScheduledJob};
use serde::Serialize;
use serde_json::{Map, Value};

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    pub name: String,
    /// `http-ingest`, `cleanup`, `retrain` or `pipeline-batch`.
    pub kind: String,
    /// `config` or `api`.
    pub source: String,
    /// The interval in milliseconds (for an interval job).
    pub every: Option<i64>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub misfire_grace_ms: u64,
    pub coalesce: bool,
    pub timeout_ms: u64,
    pub lease_ms: u64,
    pub enabled: bool,
    pub paused: bool,
    /// `null` while paused or disabled.
    pub next_run_at_ms: Option<i64>,
    /// The kind's own fields, as given.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub spec: Map<String, Value>,
    pub running: Option<RunView>,
    pub last_run: Option<RunView>,
}

impl JobView {
    pub(crate) fn new(job: &ScheduledJob, def: &JobDef, running: Option<RunView>, last_run: Option<RunView>) -> Self {
        let (every, cron, timezone) = match &def.schedule {
            Schedule::Every { every_ms } => (Some(*every_ms), None, None),
            Schedule::Cron { text, zone, .. } => (None, Some(text.clone()), Some(zone.name().to_string())),
        };
        let ms = |d: std::time::Duration| d.as_millis().min(u64::MAX as u128) as u64;
        JobView {
            name: job.name.clone(),
            kind: def.kind.name().to_string(),
            source: job.source.clone(),
            every,
            cron,
            timezone,
            misfire_grace_ms: ms(def.misfire_grace),
            coalesce: def.coalesce,
            timeout_ms: ms(def.timeout),
            lease_ms: ms(def.lease),
            enabled: def.enabled,
            paused: job.paused,
            next_run_at_ms: job.next_run_at_ms,
            spec: def.own_fields(),
            running,
            last_run,
        }
    }
}

/// A run as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunView {
    pub id: String,
    pub job: String,
    /// `schedule` or `manual`.
    pub trigger: String,
    pub scheduled_for_ms: Option<i64>,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// `running`, `succeeded`, `failed` or `missed`.
    pub state: String,
    pub items: u64,
    pub error: Option<String>,
    pub detail: Option<String>,
    /// The process that ran it.
    pub owner: String,
}

impl From<JobRun> for RunView {
    fn from(r: JobRun) -> Self {
        RunView {
            id: r.id,
            job: r.job,
            trigger: r.trigger,
            scheduled_for_ms: r.scheduled_for_ms,
            started_at_ms: r.started_at_ms,
            finished_at_ms: r.finished_at_ms,
            state: r.state,
            items: r.items,
            error: r.error,
            detail: r.detail,
            owner: r.owner,
        }
    }
}
