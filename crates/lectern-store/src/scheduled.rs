//! The `scheduled_jobs`, `job_runs` and `dataset_rows` tables: scheduled jobs with their next
//! firing, pause flag, run in progress (and its lease) and checkpoint; every run's history; and
//! the rows ingest jobs upsert by key.
//!
//! A firing or a manual run is claimed with one conditional update of the job's row ("its next
//! firing is still this one and no run is in progress"), so that among several processes on one
//! database exactly one wins; everything a run writes afterwards is conditional on it still
//! holding the job (`run_id`).

use crate::audit::audit;
use crate::{now_ms, Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

/// A scheduled job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledJob {
    pub name: String,
    /// `config` or `api`.
    pub source: String,
    /// The job's definition (JSON, as given).
    pub spec_json: String,
    /// What the schedule was computed from: a change starts the schedule over.
    pub schedule_key: String,
    /// When the schedule started (interval firings are `anchor + k * every`).
    pub anchor_ms: i64,
    pub paused: bool,
    pub next_run_at_ms: Option<i64>,
    /// The run in progress.
    pub run_id: Option<String>,
    pub lease_until_ms: Option<i64>,
    /// Where an interrupted run resumes (JSON).
    pub checkpoint_json: Option<String>,
    pub created_by: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One run of a scheduled job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRun {
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

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    pub state: &'static str,
    pub items: u64,
    pub error: Option<String>,
    pub detail: Option<String>,
}

/// A claim on a job's firing: the firing it expects to find, the one after it, and the run.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub expected_next_ms: i64,
    pub new_next_ms: Option<i64>,
    pub run: &'a JobRun,
    pub lease_until_ms: i64,
}

const JOB_COLUMNS: &str = "name, source, spec_json, schedule_key, anchor, paused, next_run_at, run_id, lease_until, \
                           checkpoint_json, created_by, created_at, updated_at";
const RUN_COLUMNS: &str =
    "id, job, trigger_kind, scheduled_for, started_at, finished_at, state, items, error, detail, owner";

fn job_row(r: &AnyRow) -> Result<ScheduledJob, StoreError> {
    Ok(ScheduledJob {
        name: r.try_get("name")?,
        source: r.try_get("source")?,
        spec_json: r.try_get("spec_json")?,
        schedule_key: r.try_get("schedule_key")?,
        anchor_ms: r.try_get("anchor")?,
        paused: r.try_get::<i64, _>("paused")? != 0,
        next_run_at_ms: r.try_get("next_run_at")?,
        run_id: r.try_get("run_id")?,
        lease_until_ms: r.try_get("lease_until")?,
        checkpoint_json: r.try_get("checkpoint_json")?,
        created_by: r.try_get("created_by")?,
        created_at_ms: r.try_get("created_at")?,
        updated_at_ms: r.try_get("updated_at")?,
    })
}

fn run_row(r: &AnyRow) -> Result<JobRun, StoreError> {
    Ok(JobRun {
        id: r.try_get("id")?,
        job: r.try_get("job")?,
        trigger: r.try_get("trigger_kind")?,
        scheduled_for_ms: r.try_get("scheduled_for")?,
        started_at_ms: r.try_get("started_at")?,
        finished_at_ms: r.try_get("finished_at")?,
        state: r.try_get("state")?,
        items: r.try_get::<i64, _>("items")?.max(0) as u64,
        error: r.try_get("error")?,
        detail: r.try_get("detail")?,
        owner: r.try_get("owner")?,
    })
}

async fn insert_run(tx: &mut Transaction<'_, Any>, run: &JobRun) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO job_runs (id, job, trigger_kind, scheduled_for, started_at, finished_at, state, items, error, \
         detail, owner) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&run.id)
    .bind(&run.job)
    .bind(&run.trigger)
    .bind(run.scheduled_for_ms)
    .bind(run.started_at_ms)
    .bind(run.finished_at_ms)
    .bind(&run.state)
    .bind(run.items as i64)
    .bind(&run.error)
    .bind(&run.detail)
    .bind(&run.owner)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Every scheduled job, by name.
    pub async fn scheduled_jobs(&self) -> Result<Vec<ScheduledJob>, StoreError> {
        self.run(async {
            let sql = format!("SELECT {JOB_COLUMNS} FROM scheduled_jobs ORDER BY name");
            let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
            rows.iter().map(job_row).collect()
        })
        .await
    }

    /// One scheduled job.
    pub async fn scheduled_job(&self, name: &str) -> Result<Option<ScheduledJob>, StoreError> {
        self.run(async {
            let sql = format!("SELECT {JOB_COLUMNS} FROM scheduled_jobs WHERE name = $1");
            let row = sqlx::query(&sql).bind(name).fetch_optional(&self.pool).await?;
            row.map(|r| job_row(&r)).transpose()
        })
        .await
    }

    /// Stores a new job; `Conflict` when one of that name exists.
    pub async fn insert_scheduled_job(&self, actor: &str, job: &ScheduledJob) -> Result<(), StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let exists = sqlx::query("SELECT name FROM scheduled_jobs WHERE name = $1")
                .bind(&job.name)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if exists {
                return Err(StoreError::Conflict(format!("a job named '{}' exists", job.name)));
            }
            sqlx::query(
                "INSERT INTO scheduled_jobs (name, source, spec_json, schedule_key, anchor, paused, next_run_at, \
                 created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&job.name)
            .bind(&job.source)
            .bind(&job.spec_json)
            .bind(&job.schedule_key)
            .bind(job.anchor_ms)
            .bind(job.paused as i64)
            .bind(job.next_run_at_ms)
            .bind(&job.created_by)
            .bind(job.created_at_ms)
            .bind(job.updated_at_ms)
            .execute(&mut *tx)
            .await?;
            audit(&mut tx, actor, "job.create", &job.name, &job.source).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Replaces a job's definition and schedule (its pause flag, run in progress and
    /// checkpoint stay); false when there is no such job.
    pub async fn update_scheduled_job(&self, actor: &str, job: &ScheduledJob) -> Result<bool, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let done = sqlx::query(
                "UPDATE scheduled_jobs SET source = $1, spec_json = $2, schedule_key = $3, anchor = $4, \
                 next_run_at = $5, updated_at = $6 WHERE name = $7",
            )
            .bind(&job.source)
            .bind(&job.spec_json)
            .bind(&job.schedule_key)
            .bind(job.anchor_ms)
            .bind(job.next_run_at_ms)
            .bind(now_ms())
            .bind(&job.name)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            audit(&mut tx, actor, "job.update", &job.name, &job.source).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Deletes a job and its history; false when there was none.
    pub async fn delete_scheduled_job(&self, actor: &str, name: &str) -> Result<bool, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let done = sqlx::query("DELETE FROM scheduled_jobs WHERE name = $1").bind(name).execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM job_runs WHERE job = $1").bind(name).execute(&mut *tx).await?;
            audit(&mut tx, actor, "job.delete", name, "").await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Pauses or resumes a job, setting its next firing; false when there is no such job.
    pub async fn pause_scheduled_job(
        &self,
        actor: &str,
        name: &str,
        paused: bool,
        anchor_ms: i64,
        next_run_at_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let done = sqlx::query(
                "UPDATE scheduled_jobs SET paused = $1, anchor = $2, next_run_at = $3, updated_at = $4 WHERE name = $5",
            )
            .bind(paused as i64)
            .bind(anchor_ms)
            .bind(next_run_at_ms)
            .bind(now_ms())
            .bind(name)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            audit(&mut tx, actor, if paused { "job.pause" } else { "job.resume" }, name, "").await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Claims a due firing: moves the job's next firing on and records the run as `running`,
    /// only when the next firing is still `expected_next_ms`, no run is in progress and the job
    /// is not paused. False: another process took it, or it changed.
    pub async fn claim_firing(&self, name: &str, claim: &Claim<'_>) -> Result<bool, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let done = sqlx::query(
                "UPDATE scheduled_jobs SET next_run_at = $1, run_id = $2, lease_until = $3 \
                 WHERE name = $4 AND next_run_at = $5 AND run_id IS NULL AND paused = 0",
            )
            .bind(claim.new_next_ms)
            .bind(&claim.run.id)
            .bind(claim.lease_until_ms)
            .bind(name)
            .bind(claim.expected_next_ms)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
            insert_run(&mut tx, claim.run).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Moves the next firing on without running it, recording `skipped` (a `missed` run for
    /// firings too late, or a `failed` one for a job that cannot be read), under the same
    /// conditions as [`Store::claim_firing`].
    pub async fn skip_firing(
        &self,
        name: &str,
        expected_next_ms: i64,
        new_next_ms: Option<i64>,
        skipped: &JobRun,
    ) -> Result<bool, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let done = sqlx::query(
                "UPDATE scheduled_jobs SET next_run_at = $1 \
                 WHERE name = $2 AND next_run_at = $3 AND run_id IS NULL AND paused = 0",
            )
            .bind(new_next_ms)
            .bind(name)
            .bind(expected_next_ms)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
            insert_run(&mut tx, skipped).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Claims a job for a manual run (its schedule is left as it is); false when a run is in
    /// progress or the job is gone.
    pub async fn claim_manual(
        &self,
        actor: &str,
        name: &str,
        run: &JobRun,
        lease_until_ms: i64,
    ) -> Result<bool, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let done = sqlx::query(
                "UPDATE scheduled_jobs SET run_id = $1, lease_until = $2 WHERE name = $3 AND run_id IS NULL",
            )
            .bind(&run.id)
            .bind(lease_until_ms)
            .bind(name)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
            insert_run(&mut tx, run).await?;
            audit(&mut tx, actor, "job.run", name, &run.id).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Extends the lease of a run still holding its job; false when it no longer does.
    pub async fn renew_lease(&self, name: &str, run_id: &str, lease_until_ms: i64) -> Result<bool, StoreError> {
        self.run(async {
            let done = sqlx::query("UPDATE scheduled_jobs SET lease_until = $1 WHERE name = $2 AND run_id = $3")
                .bind(lease_until_ms)
                .bind(name)
                .bind(run_id)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    /// Records how a run ended and frees its job (clearing the checkpoint when asked); false
    /// when the run no longer held the job (its lease expired and it was marked failed).
    pub async fn finish_run(
        &self,
        name: &str,
        run_id: &str,
        end: &RunEnd,
        clear_checkpoint: bool,
    ) -> Result<bool, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let freed = sqlx::query(&format!(
                "UPDATE scheduled_jobs SET run_id = NULL, lease_until = NULL{} WHERE name = $1 AND run_id = $2",
                if clear_checkpoint { ", checkpoint_json = NULL" } else { "" }
            ))
            .bind(name)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
            if freed.rows_affected() != 1 {
                return Ok(false);
            }
            end_run(&mut tx, run_id, end).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// The jobs whose run in progress has a lease that ran out before `now_ms`, with that run.
    pub async fn expired_leases(&self, now_ms: i64) -> Result<Vec<(String, String)>, StoreError> {
        self.run(async {
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT name, run_id FROM scheduled_jobs WHERE run_id IS NOT NULL AND lease_until < $1")
                    .bind(now_ms)
                    .fetch_all(&self.pool)
                    .await?;
            Ok(rows)
        })
        .await
    }

    /// Marks a run whose lease expired `failed` and frees its job, only when it still holds the
    /// job with an expired lease (or, with `any_lease`, whatever its lease); false otherwise.
    pub async fn fail_run(
        &self,
        name: &str,
        run_id: &str,
        now_ms: i64,
        any_lease: bool,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let freed = sqlx::query(
                "UPDATE scheduled_jobs SET run_id = NULL, lease_until = NULL \
                 WHERE name = $1 AND run_id = $2 AND (lease_until < $3 OR $4 = 1)",
            )
            .bind(name)
            .bind(run_id)
            .bind(now_ms)
            .bind(any_lease as i64)
            .execute(&mut *tx)
            .await?;
            if freed.rows_affected() != 1 {
                return Ok(false);
            }
            let end = RunEnd { state: "failed", items: 0, error: Some(error.to_string()), detail: None };
            end_run(&mut tx, run_id, &end).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// The newest `limit` runs of a job, newest first.
    pub async fn job_runs(&self, name: &str, limit: u32) -> Result<Vec<JobRun>, StoreError> {
        self.run(async {
            let sql = format!("SELECT {RUN_COLUMNS} FROM job_runs WHERE job = $1 ORDER BY seq DESC LIMIT $2");
            let rows = sqlx::query(&sql).bind(name).bind(limit as i64).fetch_all(&self.pool).await?;
            rows.iter().map(run_row).collect()
        })
        .await
    }

    /// One run.
    pub async fn job_run(&self, id: &str) -> Result<Option<JobRun>, StoreError> {
        self.run(async {
            let sql = format!("SELECT {RUN_COLUMNS} FROM job_runs WHERE id = $1");
            let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
            row.map(|r| run_row(&r)).transpose()
        })
        .await
    }

    /// Deletes (or, with `dry_run`, counts) the finished runs of every job that started before
    /// `cut_ms`.
    pub async fn delete_old_runs(&self, cut_ms: i64, dry_run: bool) -> Result<u64, StoreError> {
        self.run(async {
            let filter = "FROM job_runs WHERE state <> 'running' AND started_at < $1";
            if dry_run {
                let (n,): (i64,) =
                    sqlx::query_as(&format!("SELECT COUNT(*) {filter}")).bind(cut_ms).fetch_one(&self.pool).await?;
                return Ok(n.max(0) as u64);
            }
            let done = sqlx::query(&format!("DELETE {filter}")).bind(cut_ms).execute(&self.pool).await?;
            Ok(done.rows_affected())
        })
        .await
    }

    /// The job's checkpoint.
    pub async fn job_checkpoint(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.scheduled_job(name).await?.and_then(|j| j.checkpoint_json))
    }

    /// Upserts rows of a dataset by key and sets the job's checkpoint, in one transaction, only
    /// while `run_id` holds the job; returns how many rows were inserted or changed, `None` when
    /// the run no longer holds the job (nothing is written).
    pub async fn upsert_rows(
        &self,
        job: &str,
        run_id: &str,
        dataset: &str,
        rows: &[(String, String)],
        checkpoint_json: Option<&str>,
    ) -> Result<Option<u64>, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let held = sqlx::query("UPDATE scheduled_jobs SET checkpoint_json = $1 WHERE name = $2 AND run_id = $3")
                .bind(checkpoint_json)
                .bind(job)
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
            if held.rows_affected() != 1 {
                return Ok(None);
            }
            let now = now_ms();
            let mut changed = 0;
            for (key, json) in rows {
                changed += upsert_row(&mut tx, dataset, key, json, now).await? as u64;
            }
            tx.commit().await?;
            Ok(Some(changed))
        })
        .await
    }

    /// Every row of a dataset's upserted rows, ordered by key.
    pub async fn dataset_rows(&self, dataset: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.run(async {
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT row_key, row_json FROM dataset_rows WHERE dataset = $1 ORDER BY row_key")
                    .bind(dataset)
                    .fetch_all(&self.pool)
                    .await?;
            Ok(rows)
        })
        .await
    }

    /// Deletes (or counts) a dataset's upserted rows last seen before `cut_ms`.
    pub async fn delete_old_rows(&self, dataset: &str, cut_ms: i64, dry_run: bool) -> Result<u64, StoreError> {
        self.run(async {
            let filter = "FROM dataset_rows WHERE dataset = $1 AND updated_at < $2";
            if dry_run {
                let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) {filter}"))
                    .bind(dataset)
                    .bind(cut_ms)
                    .fetch_one(&self.pool)
                    .await?;
                return Ok(n.max(0) as u64);
            }
            let done = sqlx::query(&format!("DELETE {filter}")).bind(dataset).bind(cut_ms).execute(&self.pool).await?;
            Ok(done.rows_affected())
        })
        .await
    }

    /// Finished training jobs created before `cut_ms`, oldest first: (id, model).
    pub async fn old_training_jobs(&self, cut_ms: i64) -> Result<Vec<(String, String)>, StoreError> {
        self.run(async {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT id, model FROM training_jobs WHERE state NOT IN ('queued', 'running') AND created_at < $1 \
                 ORDER BY seq",
            )
            .bind(cut_ms)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows)
        })
        .await
    }

    /// Deletes finished training jobs (and their pictures) by id; returns how many went.
    pub async fn delete_training_jobs(&self, actor: &str, ids: &[String]) -> Result<u64, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let mut deleted = 0;
            for id in ids {
                let done =
                    sqlx::query("DELETE FROM training_jobs WHERE id = $1 AND state NOT IN ('queued', 'running')")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                if done.rows_affected() == 1 {
                    sqlx::query("DELETE FROM training_pictures WHERE job_id = $1").bind(id).execute(&mut *tx).await?;
                    audit(&mut tx, actor, "training.delete", id, "").await?;
                    deleted += 1;
                }
            }
            tx.commit().await?;
            Ok(deleted)
        })
        .await
    }
}

/// Inserts or replaces one row; true when it was new or its value changed.
async fn upsert_row(
    tx: &mut Transaction<'_, Any>,
    dataset: &str,
    key: &str,
    json: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let old: Option<(String,)> =
        sqlx::query_as("SELECT row_json FROM dataset_rows WHERE dataset = $1 AND row_key = $2")
            .bind(dataset)
            .bind(key)
            .fetch_optional(&mut **tx)
            .await?;
    let sql = match &old {
        None => "INSERT INTO dataset_rows (row_json, updated_at, dataset, row_key) VALUES ($1, $2, $3, $4)",
        Some(_) => "UPDATE dataset_rows SET row_json = $1, updated_at = $2 WHERE dataset = $3 AND row_key = $4",
    };
    sqlx::query(sql).bind(json).bind(now).bind(dataset).bind(key).execute(&mut **tx).await?;
    Ok(old.is_none_or(|(o,)| o != json))
}

async fn end_run(tx: &mut Transaction<'_, Any>, run_id: &str, end: &RunEnd) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE job_runs SET state = $1, items = $2, error = $3, detail = $4, finished_at = $5 \
         WHERE id = $6 AND state = 'running'",
    )
    .bind(end.state)
    .bind(end.items as i64)
    .bind(&end.error)
    .bind(&end.detail)
    .bind(now_ms())
    .bind(run_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
