//! The store: one `AnyPool` over SQLite or PostgreSQL. Every change is one transaction that
//! also writes its audit row, so an acknowledged change and its audit entry are durable together.

use crate::keys::{self, ApiKey, Role};
use crate::records::{AuditEntry, ModelRecord, NewVersion, VersionRecord, VersionState};
use crate::{migrate, now_ms, StoreError};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use std::path::Path;
use std::time::Duration;

/// The database engine behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Lectern's database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

const MODEL_COLUMNS: &str = "name, config, labels, default_version, imported, created_at, updated_at";
const VERSION_COLUMNS: &str = "model, version, sha256, size, object_key, state, reason, created_at, from_folder";

impl Store {
    /// Opens `url` (`sqlite://PATH` or `postgres://...`) and runs the pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = normalise_url(url)?;
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        let pool = match backend {
            Backend::Sqlite => {
                options
                    .max_connections(4)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL: readers never block the writer; FULL: a commit survives power loss.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = FULL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA busy_timeout = 5000").await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => options.max_connections(8).connect(&url).await?,
        };
        migrate::run(&pool, backend).await?;
        Ok(Store { pool, backend })
    }

    /// A transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so that concurrent writers wait for each other (busy_timeout)
    /// instead of failing when a read lock cannot be upgraded.
    pub(crate) async fn write_tx(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Which engine this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    // ----- models -----

    /// Registers a model; fails if the name is taken.
    pub async fn create_model(
        &self,
        actor: &str,
        name: &str,
        config: &str,
        labels: Option<&str>,
    ) -> Result<ModelRecord, StoreError> {
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
    }

    /// Replaces a model's config and labels.
    pub async fn set_config(
        &self,
        actor: &str,
        name: &str,
        config: &str,
        labels: Option<&str>,
    ) -> Result<ModelRecord, StoreError> {
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
    }

    /// Records the fingerprint of the config and labels last imported from a folder.
    pub async fn set_imported(&self, name: &str, fingerprint: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE models SET imported = $1 WHERE name = $2")
            .bind(fingerprint)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sets (or clears) the version unversioned requests use.
    pub async fn set_default_version(&self, actor: &str, name: &str, version: Option<u64>) -> Result<(), StoreError> {
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
    }

    /// Removes a model and all its versions (the caller removes the artifacts).
    pub async fn delete_model(&self, actor: &str, name: &str) -> Result<Vec<VersionRecord>, StoreError> {
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
    }

    /// One model.
    pub async fn model(&self, name: &str) -> Result<Option<ModelRecord>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query(&format!("SELECT {MODEL_COLUMNS} FROM models WHERE name = $1"))
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
        row.map(|r| model_row(&r)).transpose()
    }

    /// Every model, by name.
    pub async fn models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {MODEL_COLUMNS} FROM models ORDER BY name")).fetch_all(&self.pool).await?;
        rows.iter().map(model_row).collect()
    }

    // ----- versions -----

    /// Registers a version whose artifact is already stored.
    pub async fn add_version(&self, actor: &str, new: &NewVersion) -> Result<VersionRecord, StoreError> {
        let mut tx = self.write_tx().await?;
        let record = insert_version(&mut tx, actor, new).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The next free version number of a model (1 for the first).
    pub async fn next_version(&self, model: &str) -> Result<u64, StoreError> {
        let row: (Option<i64>,) = sqlx::query_as("SELECT MAX(version) FROM model_versions WHERE model = $1")
            .bind(model)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.0.unwrap_or(0) as u64 + 1)
    }

    /// Records the outcome of loading a version (not audited: the server did it, not a person).
    pub async fn set_version_state(
        &self,
        model: &str,
        version: u64,
        state: VersionState,
        reason: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE model_versions SET state = $1, reason = $2 WHERE model = $3 AND version = $4")
            .bind(state.as_str())
            .bind(reason)
            .bind(model)
            .bind(version as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes one version (the caller removes the artifact). Clears the default if it was it.
    pub async fn delete_version(&self, actor: &str, model: &str, version: u64) -> Result<VersionRecord, StoreError> {
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
    }

    /// The versions of a model, oldest first.
    pub async fn versions(&self, model: &str) -> Result<Vec<VersionRecord>, StoreError> {
        let mut conn = self.pool.begin().await?;
        let versions = fetch_versions(&mut conn, model).await?;
        conn.commit().await?;
        Ok(versions)
    }

    // ----- API keys -----

    /// Creates a key; returns it with its full text, which is never stored or shown again.
    pub async fn create_key(&self, actor: &str, name: &str, role: Role) -> Result<(ApiKey, String), StoreError> {
        let (id, key) = keys::generate()?;
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO api_keys (id, name, role, hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(&id)
        .bind(name)
        .bind(role.as_str())
        .bind(keys::hash(&key))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        audit(&mut tx, actor, "key.create", &id, &format!("name {name} role {}", role.as_str())).await?;
        tx.commit().await?;
        let record = self.key(&id).await?.expect("just inserted");
        Ok((record, key))
    }

    /// Every key (revoked ones too), oldest first.
    pub async fn keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query("SELECT id, name, role, created_at, revoked_at FROM api_keys ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_row).collect()
    }

    async fn key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let row = sqlx::query("SELECT id, name, role, created_at, revoked_at FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_row).transpose()
    }

    /// Revokes a key: it stops working at once.
    pub async fn revoke_key(&self, actor: &str, id: &str) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::KeyNotFound(id.to_string()));
        }
        audit(&mut tx, actor, "key.revoke", id, "").await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live key a presented key text belongs to, if any.
    pub async fn verify_key(&self, presented: &str) -> Result<Option<ApiKey>, StoreError> {
        let Some(id) = keys::id_of(presented) else { return Ok(None) };
        let row = sqlx::query("SELECT id, name, role, created_at, revoked_at, hash FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.try_get("hash")?;
        let key = key_row(&row)?;
        Ok((keys::same_hash(&stored, &keys::hash(presented)) && key.revoked_at_ms.is_none()).then_some(key))
    }

    /// True when at least one key is live.
    pub async fn has_keys(&self) -> Result<bool, StoreError> {
        let row: (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL").fetch_one(&self.pool).await?;
        Ok(row.0 > 0)
    }

    // ----- pipelines defined through the API -----

    /// Stores (or replaces) a pipeline definition.
    pub async fn put_pipeline(&self, actor: &str, name: &str, definition: &str) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let now = now_ms();
        let updated = sqlx::query("UPDATE pipelines SET definition = $1, updated_at = $2 WHERE name = $3")
            .bind(definition)
            .bind(now)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            sqlx::query("INSERT INTO pipelines (name, definition, created_at, updated_at) VALUES ($1, $2, $3, $4)")
                .bind(name)
                .bind(definition)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        audit(&mut tx, actor, "pipeline.put", name, "").await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a stored pipeline; false when there was none.
    pub async fn delete_pipeline(&self, actor: &str, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM pipelines WHERE name = $1").bind(name).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        audit(&mut tx, actor, "pipeline.delete", name, "").await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Every stored pipeline: (name, definition), by name.
    pub async fn pipelines(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT name, definition FROM pipelines ORDER BY name").fetch_all(&self.pool).await?;
        Ok(rows)
    }

    // ----- audit -----

    /// Records an action that changes no row (a repository load or unload).
    pub async fn record(&self, actor: &str, action: &str, target: &str, detail: &str) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        audit(&mut tx, actor, action, target, detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest `limit` audit entries, newest first.
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query("SELECT id, at, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT $1")
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at_ms: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}

/// Splits the backend off a URL; SQLite files are created when missing.
fn normalise_url(url: &str) -> Result<(Backend, String), StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_string()));
    }
    let Some(path) = url.strip_prefix("sqlite://") else {
        return Err(StoreError::Url("use sqlite://PATH or postgres://USER@HOST/DB".into()));
    };
    let file = path.split('?').next().unwrap_or_default();
    if file.is_empty() {
        return Err(StoreError::Url("sqlite:// needs a file path".into()));
    }
    if let Some(parent) = Path::new(file).parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::Url(format!("cannot create {}: {e}", parent.display())))?;
    }
    let url = if path.contains('?') { url.to_string() } else { format!("{url}?mode=rwc") };
    Ok((Backend::Sqlite, url))
}

async fn audit(
    tx: &mut Transaction<'_, Any>,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(now_ms())
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Inserts a version row and its audit row in `tx`.
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

async fn fetch_model(tx: &mut Transaction<'_, Any>, name: &str) -> Result<Option<ModelRecord>, StoreError> {
    let row = sqlx::query(&format!("SELECT {MODEL_COLUMNS} FROM models WHERE name = $1"))
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| model_row(&r)).transpose()
}

async fn fetch_version(
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

async fn fetch_versions(tx: &mut Transaction<'_, Any>, model: &str) -> Result<Vec<VersionRecord>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {VERSION_COLUMNS} FROM model_versions WHERE model = $1 ORDER BY version"))
        .bind(model)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(version_row).collect()
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

fn key_row(r: &AnyRow) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: r.try_get::<String, _>("role")?.parse()?,
        created_at_ms: r.try_get("created_at")?,
        revoked_at_ms: r.try_get("revoked_at")?,
    })
}
