//! The lock that makes artifact deletion safe next to uploads. Artifacts are content-addressed
//! per model, so an upload and a deletion can name the same object: an artifact may be removed
//! only when no version row refers to it, and that decision must not interleave with an upload
//! that puts the object in place and then adds its row. Both hold an [`ArtifactLock`] on the
//! model across their object-store step and their rows.

use crate::versions::insert_version;
use crate::DatabaseKind;
use crate::{NewVersion, Store, StoreError, VersionRecord};
use sqlx::{Any, Transaction};

/// First key of the PostgreSQL advisory locks on models' artifacts (the second is the
/// model name's hash); 7410001 is the migrations' lock.
const ARTIFACT_LOCK_CLASS: i32 = 7410002;

/// Exclusive access to one model's artifacts, for this server and every replica sharing the
/// database, until [`ArtifactLock::commit`] or drop (which rolls back what it wrote). On
/// PostgreSQL a transaction-scoped advisory lock per model; on SQLite the database's write lock.
pub struct ArtifactLock {
    tx: Transaction<'static, Any>,
}

impl Store {
    /// Waits for and takes the lock on `model`'s artifacts. Hold it only across short steps,
    /// and make no other store call while holding it (on SQLite it is the write lock).
    pub async fn lock_artifacts(&self, model: &str) -> Result<ArtifactLock, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            if self.kind() == DatabaseKind::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                    .bind(ARTIFACT_LOCK_CLASS)
                    .bind(model)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(ArtifactLock { tx })
        })
        .await
    }
}

impl ArtifactLock {
    /// True when some version row (of any model) refers to the object `key`.
    pub async fn is_referenced(&mut self, key: &str) -> Result<bool, StoreError> {
        let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM model_versions WHERE object_key = $1")
            .bind(key)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(row.0 > 0)
    }

    /// The next free version number of a model (1 for the first).
    pub async fn next_version(&mut self, model: &str) -> Result<u64, StoreError> {
        let row: (Option<i64>,) = sqlx::query_as("SELECT MAX(version) FROM model_versions WHERE model = $1")
            .bind(model)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(row.0.unwrap_or(0) as u64 + 1)
    }

    /// Registers a version whose artifact is in place, with its audit row.
    pub async fn add_version(&mut self, actor: &str, new: &NewVersion) -> Result<VersionRecord, StoreError> {
        insert_version(&mut self.tx, actor, new).await
    }

    /// Makes what was written durable and releases the lock.
    pub async fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }
}
