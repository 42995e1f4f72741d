//! A job's definition: the fields every kind has (schedule, misfire grace, coalescing, timeout,
//! lease, enabled) and the kind's own, read from a `[jobs.NAME]` table of the config file or
//! from the body of `POST /v1/jobs` (both as JSON).

use crate::kinds::{BatchSpec, CleanupSpec, IngestSpec, RetrainSpec};
use crate::schedule::Schedule;
use crate::JobsError;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use std::time::Duration;

/// The fields every kind shares.
const COMMON: &[&str] =
    &["kind", "every", "cron", "timezone", "misfire_grace", "coalesce", "timeout", "lease", "enabled"];

/// A parsed job.
#[derive(Debug, Clone)]
pub struct JobDef {
    pub name: String,
    pub kind: Kind,
    pub schedule: Schedule,
    pub misfire_grace: Duration,
    pub coalesce: bool,
    pub timeout: Duration,
    pub lease: Duration,
    pub enabled: bool,
    /// The definition as given (without its name): what is stored.
    pub given: Map<String, Value>,
}

/// What a job does.
#[derive(Debug, Clone)]
pub enum Kind {
    Ingest(Box<IngestSpec>),
    Cleanup(CleanupSpec),
    Retrain(Box<RetrainSpec>),
    Batch(BatchSpec),
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Ingest(_) => "http-ingest",
            Kind::Cleanup(_) => "cleanup",
            Kind::Retrain(_) => "retrain",
            Kind::Batch(_) => "pipeline-batch",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Common {
    kind: String,
    every: Option<Dur>,
    cron: Option<String>,
    timezone: Option<String>,
    misfire_grace: Option<Dur>,
    coalesce: Option<bool>,
    timeout: Option<Dur>,
    lease: Option<Dur>,
    enabled: Option<bool>,
}

impl JobDef {
    /// Reads a job's definition; errors name the job and what is wrong.
    pub fn parse(name: &str, given: &Value) -> Result<JobDef, JobsError> {
        let bad = |m: String| JobsError::Invalid(format!("job '{name}': {m}"));
        lectern_manage::check_model_name(name).map_err(|_| {
            bad("invalid name: use letters, digits, '-', '_' and '.', not starting with '.' (at most 128)".into())
        })?;
        let Value::Object(given) = given else { return Err(bad("a job is a table (an object) of fields".into())) };
        let (common, own): (Map<String, Value>, Map<String, Value>) =
            given.clone().into_iter().partition(|(k, _)| COMMON.contains(&k.as_str()));
        let common: Common = read(Value::Object(common)).map_err(bad)?;
        let schedule = Schedule::new(common.every.map(|d| d.0), common.cron.as_deref(), common.timezone.as_deref())
            .map_err(bad)?;
        let kind = parse_kind(&common.kind, own).map_err(bad)?;
        let positive = |field: &str, d: Option<Dur>, default: Duration| -> Result<Duration, JobsError> {
            let d = d.map_or(default, |d| d.0);
            if d.is_zero() {
                return Err(bad(format!("'{field}' must be more than zero")));
            }
            Ok(d)
        };
        Ok(JobDef {
            name: name.to_string(),
            kind,
            schedule,
            misfire_grace: common.misfire_grace.map_or(Duration::from_secs(60), |d| d.0),
            coalesce: common.coalesce.unwrap_or(true),
            timeout: positive("timeout", common.timeout, Duration::from_secs(3600))?,
            lease: positive("lease", common.lease, Duration::from_secs(30))?.max(Duration::from_millis(300)),
            enabled: common.enabled.unwrap_or(true),
            given: given.clone(),
        })
    }

    /// What must hold in this process's environment for the job to run (the secret headers'
    /// variables are set); checked when a job is stored and at start-up.
    pub fn check_environment(&self) -> Result<(), JobsError> {
        match &self.kind {
            Kind::Ingest(spec) => {
                spec.check_environment().map_err(|m| JobsError::Invalid(format!("job '{}': {m}", self.name)))
            }
            _ => Ok(()),
        }
    }

    /// The kind's own fields, as given.
    pub fn own_fields(&self) -> Map<String, Value> {
        self.given.iter().filter(|(k, _)| !COMMON.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Reads fields into `T`; an error names the field it is about.
pub(crate) fn read<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || path.is_empty() {
            e.into_inner().to_string()
        } else {
            format!("'{path}': {}", e.into_inner())
        }
    })
}

fn parse_kind(kind: &str, own: Map<String, Value>) -> Result<Kind, String> {
    let kind = match kind {
        "retrain" => Kind::Retrain(Box::new(RetrainSpec::parse(own)?)),
        "http-ingest" => Kind::Ingest(Box::new(read(Value::Object(own))?)),
        "cleanup" => Kind::Cleanup(read(Value::Object(own))?),
        "pipeline-batch" => Kind::Batch(read(Value::Object(own))?),
        other => {
            return Err(format!("unknown kind '{other}' (http-ingest, cleanup, retrain or pipeline-batch)"));
        }
    };
    match &kind {
        Kind::Ingest(spec) => spec.check()?,
        Kind::Cleanup(spec) => spec.check()?,
        Kind::Retrain(spec) => spec.check()?,
        Kind::Batch(spec) => spec.check()?,
    }
    Ok(kind)
}

/// A duration as the config file and the API give it: a string with units (`"500ms"`,
/// `"1h30m"`, `"7d"`) or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        lectern_core::duration::deserialize(deserializer).map(|d| Dur(d.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cleanup(extra: Value) -> Value {
        let mut job = json!({"kind": "cleanup", "target": "job_runs", "older_than": "1d"});
        job.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        job
    }

    #[test]
    fn a_job_reads_its_common_fields_and_defaults() {
        let job = JobDef::parse("tidy", &cleanup(json!({"every": "1h"}))).unwrap();
        assert_eq!(job.kind.name(), "cleanup");
        assert_eq!(job.misfire_grace, Duration::from_secs(60));
        assert!(job.coalesce && job.enabled);
        assert_eq!(job.timeout, Duration::from_secs(3600));
        assert_eq!(job.own_fields().keys().collect::<Vec<_>>(), ["older_than", "target"]);
    }

    #[test]
    fn bad_definitions_say_what_is_wrong() {
        let cases = [
            (cleanup(json!({"cron": "not a cron"})), "cron"),
            (cleanup(json!({"every": "0s"})), "every"),
            (cleanup(json!({"every": 0})), "every"),
            (cleanup(json!({})), "every"),
            (cleanup(json!({"every": "1h", "cron": "* * * * *"})), "not both"),
            (cleanup(json!({"cron": "0 3 * * *", "timezone": "Mars/Olympus"})), "Mars/Olympus"),
            (cleanup(json!({"every": "1h", "colour": "red"})), "colour"),
            (json!({"kind": "teleport", "every": "1h"}), "teleport"),
            (json!({"kind": "cleanup", "every": "1h", "target": "job_runs"}), "older_than"),
            (cleanup(json!({"every": "1h", "timeout": "0s"})), "timeout"),
        ];
        for (given, mention) in cases {
            let error = JobDef::parse("j", &given).unwrap_err().to_string();
            assert!(error.contains(mention), "{given}: {error}");
            assert!(error.contains("job 'j'"), "{error}");
        }
        assert!(JobDef::parse("bad name", &cleanup(json!({"every": "1h"}))).is_err());
    }
}
