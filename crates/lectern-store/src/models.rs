//! The `models` table: names, configs, labels and default versions.

use crate::audit::audit;
use crate::records::{ModelRecord, VersionRecord};
use crate::versions::{fetch_version, fetch_versions};
use crate::{now_ms, Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

const MODEL_COLUMNS: &str = "name, config, labels, default_version, imported, created_at, updated_at";

impl Store {
    /// Registers a model; fails if the name is taken.
    pub async fn create_model(
        &self,
        actor: &str,
        name: &str,
        config: &str,
        labels: Option<&str>,
    ) -> Result<ModelRecord, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            if fetch_model(&mut tx, name).await?.is_some() {
                return Err(StoreError::ModelExists(name.to_string()));
            }
            let now = now_ms();
            sqlx::query("INSERT INTO models (name, config, labels, default_version, created_at, updated_at) VALUES ($1, $2, $3, NULL, $4, $5)")
                .bind(name)
                .bind(config)
                .bind(labels)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            audit(&mut tx, actor, "model.create", name, "").await?;
            let record = fetch_model(&mut tx, name).await?.expect("just inserted");
            tx.commit().await?;
            Ok(record)
        })
        .await
    }

    /// Replaces a model's config and labels.
    pub async fn set_config(
        &self,
        actor: &str,
        name: &str,
        config: &str,
        labels: Option<&str>,
    ) -> Result<ModelRecord, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let done = sqlx::query("UPDATE models SET config = $1, labels = $2, updated_at = $3 WHERE name = $4")
                .bind(config)
                .bind(labels)
                .bind(now_ms())
                .bind(name)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::ModelNotFound(name.to_string()));
            }
            audit(&mut tx, actor, "model.config", name, "").await?;
            let record = fetch_model(&mut tx, name).await?.expect("just updated");
            tx.commit().await?;
            Ok(record)
        })
        .await
    }

    /// Records the fingerprint of the config and labels last imported from a folder.
    pub async fn set_imported(&self, name: &str, fingerprint: &str) -> Result<(), StoreError> {
        self.run(async {
            sqlx::query("UPDATE models SET imported = $1 WHERE name = $2")
                .bind(fingerprint)
                .bind(name)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    /// Sets (or clears) the version unversioned requests use.
    pub async fn set_default_version(&self, actor: &str, name: &str, version: Option<u64>) -> Result<(), StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            if let Some(v) = version {
                if fetch_version(&mut tx, name, v).await?.is_none() {
                    return Err(StoreError::VersionNotFound(name.to_string(), v));
                }
            }
            let done = sqlx::query("UPDATE models SET default_version = $1, updated_at = $2 WHERE name = $3")
                .bind(version.map(|v| v as i64))
                .bind(now_ms())
                .bind(name)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::ModelNotFound(name.to_string()));
            }
            let detail = version.map(|v| v.to_string()).unwrap_or_else(|| "newest".into());
            audit(&mut tx, actor, "model.default", name, &detail).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Removes a model and all its versions (the caller removes the artifacts).
    pub async fn delete_model(&self, actor: &str, name: &str) -> Result<Vec<VersionRecord>, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let versions = fetch_versions(&mut tx, name).await?;
            sqlx::query("DELETE FROM model_versions WHERE model = $1").bind(name).execute(&mut *tx).await?;
            let done = sqlx::query("DELETE FROM models WHERE name = $1").bind(name).execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::ModelNotFound(name.to_string()));
            }
            audit(&mut tx, actor, "model.delete", name, "").await?;
            tx.commit().await?;
            Ok(versions)
        })
        .await
    }

    /// One model.
    pub async fn model(&self, name: &str) -> Result<Option<ModelRecord>, StoreError> {
        self.run(async {
            let mut conn = self.pool.acquire().await?;
            let row = sqlx::query(&format!("SELECT {MODEL_COLUMNS} FROM models WHERE name = $1"))
                .bind(name)
                .fetch_optional(&mut *conn)
                .await?;
            row.map(|r| model_row(&r)).transpose()
        })
        .await
    }

    /// Every model, by name.
    pub async fn models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        self.run(async {
            let rows =
                sqlx::query(&format!("SELECT {MODEL_COLUMNS} FROM models ORDER BY name")).fetch_all(&self.pool).await?;
            rows.iter().map(model_row).collect()
        })
        .await
    }
}

pub(crate) async fn fetch_model(tx: &mut Transaction<'_, Any>, name: &str) -> Result<Option<ModelRecord>, StoreError> {
    let row = sqlx::query(&format!("SELECT {MODEL_COLUMNS} FROM models WHERE name = $1"))
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| model_row(&r)).transpose()
}

fn model_row(r: &AnyRow) -> Result<ModelRecord, StoreError> {
    Ok(ModelRecord {
        name: r.try_get("name")?,
        config: r.try_get("config")?,
        labels: r.try_get("labels")?,
        default_version: r.try_get::<Option<i64>, _>("default_version")?.map(|v| v as u64),
        imported: r.try_get("imported")?,
        created_at_ms: r.try_get("created_at")?,
        updated_at_ms: r.try_get("updated_at")?,
    })
}
