//! The `datasets`, `training_jobs` and `training_pictures` tables: uploaded datasets (their
//! files are in the object store), training jobs with their state and results, and the SVG
//! pictures of finished jobs.

use crate::audit::audit;
use crate::{hex, now_ms, Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// An uploaded dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetRecord {
    pub name: String,
    /// `csv` or `json`.
    pub format: String,
    pub object_key: String,
    pub sha256: String,
    pub size: u64,
    pub rows: u64,
    /// The columns (JSON, as the training engine's schema serializes them).
    pub schema_json: String,
    /// The first rows (JSON).
    pub preview_json: String,
    pub created_by: String,
    pub created_at_ms: i64,
}

/// A training job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub model: String,
    pub dataset: String,
    /// The dataset file the job trained on (set when it starts).
    pub dataset_sha256: Option<String>,
    /// The training request (JSON).
    pub request_json: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    pub stage: String,
    pub percent: u8,
    pub error: Option<String>,
    /// What the run found (JSON), once it succeeded.
    pub result_json: Option<String>,
    /// The model version it registered.
    pub version: Option<u64>,
    pub created_by: String,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// The job states that have not ended.
const LIVE: &str = "('queued', 'running')";

const JOB_COLUMNS: &str = "id, model, dataset, dataset_sha256, request_json, state, stage, percent, error, \
                           result_json, version, created_by, created_at, started_at, finished_at";

fn dataset_row(r: &AnyRow) -> Result<DatasetRecord, StoreError> {
    Ok(DatasetRecord {
        name: r.try_get("name")?,
        format: r.try_get("format")?,
        object_key: r.try_get("object_key")?,
        sha256: r.try_get("sha256")?,
        size: r.try_get::<i64, _>("size")? as u64,
        rows: r.try_get::<i64, _>("row_count")? as u64,
        schema_json: r.try_get("schema_json")?,
        preview_json: r.try_get("preview_json")?,
        created_by: r.try_get("created_by")?,
        created_at_ms: r.try_get("created_at")?,
    })
}

fn job_row(r: &AnyRow) -> Result<JobRecord, StoreError> {
    Ok(JobRecord {
        id: r.try_get("id")?,
        model: r.try_get("model")?,
        dataset: r.try_get("dataset")?,
        dataset_sha256: r.try_get("dataset_sha256")?,
        request_json: r.try_get("request_json")?,
        state: r.try_get("state")?,
        stage: r.try_get("stage")?,
        percent: r.try_get::<i64, _>("percent")?.clamp(0, 100) as u8,
        error: r.try_get("error")?,
        result_json: r.try_get("result_json")?,
        version: r.try_get::<Option<i64>, _>("version")?.map(|v| v as u64),
        created_by: r.try_get("created_by")?,
        created_at_ms: r.try_get("created_at")?,
        started_at_ms: r.try_get("started_at")?,
        finished_at_ms: r.try_get("finished_at")?,
    })
}

/// A new job id: 16 random bytes, hex.
pub fn new_job_id() -> Result<String, StoreError> {
    let mut id = [0u8; 16];
    getrandom::getrandom(&mut id).map_err(StoreError::Randomness)?;
    Ok(hex(&id))
}

impl Store {
    /// Stores a dataset, replacing one of the same name; returns the replaced one.
    pub async fn put_dataset(&self, actor: &str, d: &DatasetRecord) -> Result<Option<DatasetRecord>, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let old = sqlx::query("SELECT * FROM datasets WHERE name = $1")
                .bind(&d.name)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| dataset_row(&r))
                .transpose()?;
            if old.is_some() {
                sqlx::query("DELETE FROM datasets WHERE name = $1").bind(&d.name).execute(&mut *tx).await?;
            }
            sqlx::query(
                "INSERT INTO datasets (name, format, object_key, sha256, size, row_count, schema_json, preview_json, \
                 created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&d.name)
            .bind(&d.format)
            .bind(&d.object_key)
            .bind(&d.sha256)
            .bind(d.size as i64)
            .bind(d.rows as i64)
            .bind(&d.schema_json)
            .bind(&d.preview_json)
            .bind(&d.created_by)
            .bind(d.created_at_ms)
            .execute(&mut *tx)
            .await?;
            let detail = format!("{} rows, sha256 {}", d.rows, d.sha256);
            audit(&mut tx, actor, "dataset.put", &d.name, &detail).await?;
            tx.commit().await?;
            Ok(old)
        })
        .await
    }

    /// One dataset.
    pub async fn dataset(&self, name: &str) -> Result<Option<DatasetRecord>, StoreError> {
        self.run(async {
            let row =
                sqlx::query("SELECT * FROM datasets WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
            row.map(|r| dataset_row(&r)).transpose()
        })
        .await
    }

    /// Every dataset, by name.
    pub async fn datasets(&self) -> Result<Vec<DatasetRecord>, StoreError> {
        self.run(async {
            let rows = sqlx::query("SELECT * FROM datasets ORDER BY name").fetch_all(&self.pool).await?;
            rows.iter().map(dataset_row).collect()
        })
        .await
    }

    /// Deletes a dataset; returns it (its object is the caller's to delete), `None` when there
    /// was none.
    pub async fn delete_dataset(&self, actor: &str, name: &str) -> Result<Option<DatasetRecord>, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let Some(old) = sqlx::query("SELECT * FROM datasets WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| dataset_row(&r))
                .transpose()?
            else {
                return Ok(None);
            };
            sqlx::query("DELETE FROM datasets WHERE name = $1").bind(name).execute(&mut *tx).await?;
            audit(&mut tx, actor, "dataset.delete", name, "").await?;
            tx.commit().await?;
            Ok(Some(old))
        })
        .await
    }

    /// Records a new job (state `queued`).
    pub async fn insert_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            sqlx::query(
                "INSERT INTO training_jobs (id, model, dataset, request_json, state, stage, percent, created_by, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&job.id)
            .bind(&job.model)
            .bind(&job.dataset)
            .bind(&job.request_json)
            .bind(&job.state)
            .bind(&job.stage)
            .bind(job.percent as i64)
            .bind(&job.created_by)
            .bind(job.created_at_ms)
            .execute(&mut *tx)
            .await?;
            let detail = format!("model {}, dataset {}", job.model, job.dataset);
            audit(&mut tx, &job.created_by, "training.create", &job.id, &detail).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// One job.
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.run(async {
            let sql = format!("SELECT {JOB_COLUMNS} FROM training_jobs WHERE id = $1");
            let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
            row.map(|r| job_row(&r)).transpose()
        })
        .await
    }

    /// The newest `limit` jobs (of one model, when given), newest first.
    pub async fn jobs(&self, model: Option<&str>, limit: u32) -> Result<Vec<JobRecord>, StoreError> {
        self.run(async {
            let rows = match model {
                Some(m) => {
                    let sql =
                        format!("SELECT {JOB_COLUMNS} FROM training_jobs WHERE model = $1 ORDER BY seq DESC LIMIT $2");
                    sqlx::query(&sql).bind(m).bind(limit as i64).fetch_all(&self.pool).await?
                }
                None => {
                    let sql = format!("SELECT {JOB_COLUMNS} FROM training_jobs ORDER BY seq DESC LIMIT $1");
                    sqlx::query(&sql).bind(limit as i64).fetch_all(&self.pool).await?
                }
            };
            rows.iter().map(job_row).collect()
        })
        .await
    }

    /// How many training jobs are recorded.
    pub async fn job_count(&self) -> Result<u64, StoreError> {
        self.run(async {
            let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM training_jobs").fetch_one(&self.pool).await?;
            Ok(row.0.max(0) as u64)
        })
        .await
    }

    /// The ids of the queued jobs, oldest first.
    pub async fn queued_jobs(&self) -> Result<Vec<String>, StoreError> {
        self.run(async {
            let rows: Vec<(String,)> =
                sqlx::query_as("SELECT id FROM training_jobs WHERE state = 'queued' ORDER BY seq")
                    .fetch_all(&self.pool)
                    .await?;
            Ok(rows.into_iter().map(|(id,)| id).collect())
        })
        .await
    }

    /// Moves a queued job to `running`; false when it is no longer queued (cancelled).
    pub async fn start_job(&self, id: &str) -> Result<bool, StoreError> {
        self.run(async {
            let done = sqlx::query(
                "UPDATE training_jobs SET state = 'running', stage = 'loading', percent = 0, started_at = $1 \
                 WHERE id = $2 AND state = 'queued'",
            )
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    /// Records a running job's stage, progress and (once known) its dataset file.
    pub async fn job_progress(
        &self,
        id: &str,
        stage: &str,
        percent: u8,
        dataset_sha256: Option<&str>,
    ) -> Result<(), StoreError> {
        self.run(async {
            sqlx::query(
                "UPDATE training_jobs SET stage = $1, percent = $2, \
                 dataset_sha256 = COALESCE($3, dataset_sha256) WHERE id = $4 AND state = 'running'",
            )
            .bind(stage)
            .bind(percent as i64)
            .bind(dataset_sha256)
            .bind(id)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    /// Ends a queued or running job as `state` (`succeeded`, `failed` or `cancelled`) with its
    /// error or its result and version, and the pictures of a success; false (and nothing
    /// written) when it had already ended.
    pub async fn finish_job(
        &self,
        id: &str,
        end: &JobEnd<'_>,
        pictures: &[(String, String)],
    ) -> Result<bool, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let from = if end.only_queued { "('queued')" } else { LIVE };
            let sql = format!(
                "UPDATE training_jobs SET state = $1, stage = 'done', percent = $2, error = $3, result_json = $4, \
                 version = $5, finished_at = $6 WHERE id = $7 AND state IN {from}"
            );
            let done = sqlx::query(&sql)
                .bind(end.state)
                .bind(if end.state == "succeeded" { 100i64 } else { end.percent as i64 })
                .bind(end.error)
                .bind(end.result_json)
                .bind(end.version.map(|v| v as i64))
                .bind(now_ms())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            for (name, svg) in pictures {
                sqlx::query("INSERT INTO training_pictures (job_id, name, svg) VALUES ($1, $2, $3)")
                    .bind(id)
                    .bind(name)
                    .bind(svg)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(actor) = end.actor {
                audit(&mut tx, actor, &format!("training.{}", end.state), id, end.error.unwrap_or_default()).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Marks every running job failed with `reason` (at start-up: the process that ran them is
    /// gone); returns how many.
    pub async fn fail_running_jobs(&self, reason: &str) -> Result<u64, StoreError> {
        self.run(async {
            let done = sqlx::query(
                "UPDATE training_jobs SET state = 'failed', stage = 'done', error = $1, finished_at = $2 \
                 WHERE state = 'running'",
            )
            .bind(reason)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected())
        })
        .await
    }

    /// A picture of a job.
    pub async fn picture(&self, id: &str, name: &str) -> Result<Option<String>, StoreError> {
        self.run(async {
            let row: Option<(String,)> =
                sqlx::query_as("SELECT svg FROM training_pictures WHERE job_id = $1 AND name = $2")
                    .bind(id)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
            Ok(row.map(|(svg,)| svg))
        })
        .await
    }
}

/// How a job ended.
pub struct JobEnd<'a> {
    pub state: &'a str,
    /// The progress kept when it did not succeed.
    pub percent: u8,
    pub error: Option<&'a str>,
    pub result_json: Option<&'a str>,
    pub version: Option<u64>,
    /// Who ended it, for the audit log (`None`: not audited).
    pub actor: Option<&'a str>,
    /// End it only if it is still queued (not once it runs).
    pub only_queued: bool,
}
