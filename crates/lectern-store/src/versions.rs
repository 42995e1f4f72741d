//! The `model_versions` table: each version's artifact, checksum and load state.

use crate::audit::audit;
use crate::models::fetch_model;
use crate::records::{NewVersion, VersionRecord, VersionState};
use crate::{now_ms, Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

const VERSION_COLUMNS: &str = "model, version, sha256, size, object_key, state, reason, created_at, from_folder";

impl Store {
    /// Registers a version whose artifact is already stored.
    pub async fn add_version(&self, actor: &str, new: &NewVersion) -> Result<VersionRecord, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let record = insert_version(&mut tx, actor, new).await?;
            tx.commit().await?;
            Ok(record)
        })
        .await
    }

    /// The next free version number of a model (1 for the first).
    pub async fn next_version(&self, model: &str) -> Result<u64, StoreError> {
        self.run(async {
            let row: (Option<i64>,) = sqlx::query_as("SELECT MAX(version) FROM model_versions WHERE model = $1")
                .bind(model)
                .fetch_one(&self.pool)
                .await?;
            Ok(row.0.unwrap_or(0) as u64 + 1)
        })
        .await
    }

    /// Records the outcome of loading a version (not audited: the server did it, not a person).
    pub async fn set_version_state(
        &self,
        model: &str,
        version: u64,
        state: VersionState,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.run(async {
            sqlx::query("UPDATE model_versions SET state = $1, reason = $2 WHERE model = $3 AND version = $4")
                .bind(state.as_str())
                .bind(reason)
                .bind(model)
                .bind(version as i64)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    /// Removes one version (the caller removes the artifact). Clears the default if it was it.
    pub async fn delete_version(&self, actor: &str, model: &str, version: u64) -> Result<VersionRecord, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let record = fetch_version(&mut tx, model, version)
                .await?
                .ok_or_else(|| StoreError::VersionNotFound(model.to_string(), version))?;
            sqlx::query("DELETE FROM model_versions WHERE model = $1 AND version = $2")
                .bind(model)
                .bind(version as i64)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE models SET default_version = NULL WHERE name = $1 AND default_version = $2")
                .bind(model)
                .bind(version as i64)
                .execute(&mut *tx)
                .await?;
            audit(&mut tx, actor, "version.delete", model, &format!("version {version}")).await?;
            tx.commit().await?;
            Ok(record)
        })
        .await
    }

    /// The versions of a model, oldest first.
    pub async fn versions(&self, model: &str) -> Result<Vec<VersionRecord>, StoreError> {
        self.run(async {
            let mut conn = self.pool.begin().await?;
            let versions = fetch_versions(&mut conn, model).await?;
            conn.commit().await?;
            Ok(versions)
        })
        .await
    }

    /// Every version of every model, by model name, each model's in version order (one query,
    /// for listing all models).
    pub async fn all_versions(&self) -> Result<std::collections::HashMap<String, Vec<VersionRecord>>, StoreError> {
        self.run(async {
            let sql = format!("SELECT {VERSION_COLUMNS} FROM model_versions ORDER BY model, version");
            let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
            let mut by_model: std::collections::HashMap<String, Vec<VersionRecord>> = std::collections::HashMap::new();
            for row in &rows {
                let version = version_row(row)?;
                by_model.entry(version.model.clone()).or_default().push(version);
            }
            Ok(by_model)
        })
        .await
    }
}

pub(crate) async fn fetch_version(
    tx: &mut Transaction<'_, Any>,
    model: &str,
    version: u64,
) -> Result<Option<VersionRecord>, StoreError> {
    let row = sqlx::query(&format!("SELECT {VERSION_COLUMNS} FROM model_versions WHERE model = $1 AND version = $2"))
        .bind(model)
        .bind(version as i64)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| version_row(&r)).transpose()
}

pub(crate) async fn fetch_versions(
    tx: &mut Transaction<'_, Any>,
    model: &str,
) -> Result<Vec<VersionRecord>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {VERSION_COLUMNS} FROM model_versions WHERE model = $1 ORDER BY version"))
        .bind(model)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(version_row).collect()
}

fn version_row(r: &AnyRow) -> Result<VersionRecord, StoreError> {
    Ok(VersionRecord {
        model: r.try_get("model")?,
        version: r.try_get::<i64, _>("version")? as u64,
        sha256: r.try_get("sha256")?,
        size: r.try_get::<i64, _>("size")? as u64,
        object_key: r.try_get("object_key")?,
        state: VersionState::parse(&r.try_get::<String, _>("state")?)?,
        reason: r.try_get("reason")?,
        from_folder: r.try_get::<i64, _>("from_folder")? != 0,
        created_at_ms: r.try_get("created_at")?,
    })
}

/// Inserts a version row and its audit row in `tx` (the upload path holds an artifact lock's
/// transaction; [`Store::add_version`] its own).
pub(crate) async fn insert_version(
    tx: &mut Transaction<'_, Any>,
    actor: &str,
    new: &NewVersion,
) -> Result<VersionRecord, StoreError> {
    if fetch_model(tx, &new.model).await?.is_none() {
        return Err(StoreError::ModelNotFound(new.model.clone()));
    }
    if fetch_version(tx, &new.model, new.version).await?.is_some() {
        return Err(StoreError::VersionExists(new.model.clone(), new.version));
    }
    sqlx::query(&format!("INSERT INTO model_versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, '', $7, $8)"))
        .bind(&new.model)
        .bind(new.version as i64)
        .bind(&new.sha256)
        .bind(new.size as i64)
        .bind(&new.object_key)
        .bind(VersionState::Pending.as_str())
        .bind(now_ms())
        .bind(i64::from(new.from_folder))
        .execute(&mut **tx)
        .await?;
    let detail = format!("version {} sha256 {}", new.version, new.sha256);
    audit(tx, actor, "version.create", &new.model, &detail).await?;
    Ok(fetch_version(tx, &new.model, new.version).await?.expect("just inserted"))
}
