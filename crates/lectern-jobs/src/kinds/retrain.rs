//! `retrain`: re-runs a training request through the training service with a `register_if`
//! rule, waits for its job, and reports whether a new version was registered.

use super::{Deps, Detail, RunCtx};
use lectern_manage::{RegisterIf, TrainingRequest};
use serde_json::{Map, Value};
use std::time::Duration;

/// How often the training job is looked at while the run waits for it.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct RetrainSpec {
    pub request: TrainingRequest,
    pub rule: RegisterIf,
}

impl RetrainSpec {
    /// Reads the training request's fields and the rule's (`min_metric`, `beat_default`).
    pub fn parse(own: Map<String, Value>) -> Result<RetrainSpec, String> {
        let (rule, request): (Map<String, Value>, Map<String, Value>) =
            own.into_iter().partition(|(k, _)| k == "min_metric" || k == "beat_default");
        let rule: RegisterIf = crate::spec::read(Value::Object(rule))?;
        let request: TrainingRequest = crate::spec::read(Value::Object(request))?;
        if request.register_if.is_some() {
            return Err("give 'min_metric' and 'beat_default' directly, not 'register_if'".into());
        }
        Ok(RetrainSpec { request, rule })
    }

    pub fn check(&self) -> Result<(), String> {
        lectern_manage::check_model_name(&self.request.model)
            .map_err(|_| format!("invalid 'model' name '{}'", self.request.model))?;
        if self.rule.min_metric.is_some_and(|m| !m.is_finite()) {
            return Err("'min_metric' must be a number".into());
        }
        Ok(())
    }

    pub async fn run(&self, deps: &Deps, ctx: &RunCtx) -> Result<Detail, String> {
        let request = TrainingRequest { register_if: Some(self.rule.clone()), ..self.request.clone() };
        let job =
            deps.training.submit(&ctx.actor(), request).await.map_err(|e| format!("the training request: {e}"))?;
        let id = job.id;
        loop {
            tokio::time::sleep(POLL).await;
            let job = deps.training.job(&id).await.map_err(|e| format!("training job {id}: {e}"))?;
            let metric = job.metrics.as_ref().and_then(lectern_manage::headline_metric);
            let scored = metric.map(|(name, x)| format!(", {name} {x:.4}")).unwrap_or_default();
            match job.state.as_str() {
                "succeeded" => {
                    return Ok(match job.version {
                        Some(version) => {
                            ctx.add_items(1);
                            format!("training job {id}: registered {} version {version}{scored}", job.model)
                        }
                        None => format!("training job {id}: {}", job.error.unwrap_or_else(|| "not registered".into())),
                    });
                }
                "failed" | "cancelled" => {
                    return Err(format!("training job {id} {}: {}", job.state, job.error.unwrap_or_default()))
                }
                _ => {}
            }
        }
    }
}
