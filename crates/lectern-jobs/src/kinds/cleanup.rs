//! `cleanup`: deletes what is older than a time to live: an ingested dataset's rows, whole
//! datasets, model versions (never a model's default or last one), finished training jobs, or
//! the history of job runs; or, as a dry run, only counts them.

use super::{matches, publish_rows, Deps, Detail, RunCtx};
use crate::now_ms;
use crate::spec::Dur;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    DatasetRows,
    Datasets,
    Versions,
    TrainingJobs,
    JobRuns,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupSpec {
    pub target: Target,
    pub older_than: Dur,
    #[serde(default)]
    pub dataset: Option<String>,
    #[serde(default, rename = "match")]
    pub pattern: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
}

impl CleanupSpec {
    pub fn check(&self) -> Result<(), String> {
        match (self.target, &self.dataset) {
            (Target::DatasetRows, None) => Err("target 'dataset_rows' needs 'dataset'".into()),
            (Target::DatasetRows, Some(_)) => Ok(()),
            (_, Some(_)) => Err("'dataset' applies to target 'dataset_rows' only".into()),
            _ => Ok(()),
        }
    }

    pub async fn run(&self, deps: &Deps, ctx: &RunCtx) -> Result<Detail, String> {
        let cut = now_ms() - self.older_than.0.as_millis().min(i64::MAX as u128) as i64;
        let pattern = self.pattern.as_deref().unwrap_or("*");
        let (count, what) = match self.target {
            Target::DatasetRows => self.rows(deps, ctx, cut).await?,
            Target::Datasets => self.datasets(deps, ctx, cut, pattern).await?,
            Target::Versions => self.versions(deps, ctx, cut, pattern).await?,
            Target::TrainingJobs => self.training_jobs(ctx, cut, pattern).await?,
            Target::JobRuns => {
                let n = ctx.store.delete_old_runs(cut, self.dry_run).await.map_err(|e| e.to_string())?;
                ctx.add_items(n);
                (n, "finished job runs".to_string())
            }
        };
        let verb = if self.dry_run { "would delete" } else { "deleted" };
        Ok(format!("{verb} {count} {what} older than {}", humantime::format_duration(self.older_than.0)))
    }

    async fn rows(&self, deps: &Deps, ctx: &RunCtx, cut: i64) -> Result<(u64, String), String> {
        let dataset = self.dataset.as_deref().unwrap_or_default();
        let n = ctx.store.delete_old_rows(dataset, cut, self.dry_run).await.map_err(|e| e.to_string())?;
        ctx.add_items(n);
        if n > 0 && !self.dry_run {
            publish_rows(deps, ctx, dataset, &[]).await?;
        }
        Ok((n, format!("rows of '{dataset}'")))
    }

    async fn datasets(&self, deps: &Deps, ctx: &RunCtx, cut: i64, pattern: &str) -> Result<(u64, String), String> {
        let all = deps.manager.datasets().await.map_err(|e| e.to_string())?;
        let old: Vec<String> =
            all.into_iter().filter(|d| d.created_at_ms < cut && matches(pattern, &d.name)).map(|d| d.name).collect();
        if !self.dry_run {
            for name in &old {
                match deps.manager.delete_dataset(&ctx.actor(), name).await {
                    Ok(()) | Err(lectern_manage::ManageError::DatasetNotFound(_)) => {}
                    Err(e) => return Err(format!("deleting dataset '{name}': {e}")),
                }
                ctx.store.delete_old_rows(name, i64::MAX, false).await.map_err(|e| e.to_string())?;
                ctx.add_items(1);
            }
        } else {
            ctx.add_items(old.len() as u64);
        }
        Ok((old.len() as u64, format!("datasets{}", listed(&old))))
    }

    async fn versions(&self, deps: &Deps, ctx: &RunCtx, cut: i64, pattern: &str) -> Result<(u64, String), String> {
        let store = &ctx.store;
        let mut doomed: Vec<(String, u64)> = Vec::new();
        for model in store.models().await.map_err(|e| e.to_string())? {
            if !matches(pattern, &model.name) {
                continue;
            }
            let versions = store.versions(&model.name).await.map_err(|e| e.to_string())?;
            let newest = versions.iter().map(|v| v.version).max();
            for v in versions {
                let kept = Some(v.version) == newest || Some(v.version) == model.default_version;
                if !kept && v.created_at_ms < cut {
                    doomed.push((model.name.clone(), v.version));
                }
            }
        }
        if !self.dry_run {
            for (model, version) in &doomed {
                match deps.manager.delete_version(&ctx.actor(), model, *version).await {
                    Ok(_) => ctx.add_items(1),
                    Err(lectern_manage::ManageError::Store(lectern_store::StoreError::VersionNotFound(..))) => {}
                    Err(e) => return Err(format!("deleting {model} version {version}: {e}")),
                }
            }
        } else {
            ctx.add_items(doomed.len() as u64);
        }
        let names: Vec<String> = doomed.iter().map(|(m, v)| format!("{m}/{v}")).collect();
        Ok((doomed.len() as u64, format!("model versions{}", listed(&names))))
    }

    async fn training_jobs(&self, ctx: &RunCtx, cut: i64, pattern: &str) -> Result<(u64, String), String> {
        let old: Vec<String> = ctx
            .store
            .old_training_jobs(cut)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|(_, model)| matches(pattern, model))
            .map(|(id, _)| id)
            .collect();
        let n = if self.dry_run {
            old.len() as u64
        } else {
            ctx.store.delete_training_jobs(&ctx.actor(), &old).await.map_err(|e| e.to_string())?
        };
        ctx.add_items(n);
        Ok((n, "finished training jobs".to_string()))
    }
}

/// ` (a, b, c)`, or ` (a, b, c and 7 more)`; nothing for none.
fn listed(names: &[String]) -> String {
    const SHOWN: usize = 10;
    match names.len() {
        0 => String::new(),
        n if n <= SHOWN => format!(" ({})", names.join(", ")),
        n => format!(" ({} and {} more)", names[..SHOWN].join(", "), n - SHOWN),
    }
}
