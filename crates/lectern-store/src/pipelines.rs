//! The `pipelines` table: pipelines defined through the API.

use crate::audit::audit;
use crate::{now_ms, Store, StoreError};

impl Store {
    /// Stores (or replaces) a pipeline definition.
    pub async fn put_pipeline(&self, actor: &str, name: &str, definition: &str) -> Result<(), StoreError> {
        self.run(async {
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
        })
        .await
    }

    /// Deletes a stored pipeline; false when there was none.
    pub async fn delete_pipeline(&self, actor: &str, name: &str) -> Result<bool, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let done = sqlx::query("DELETE FROM pipelines WHERE name = $1").bind(name).execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            audit(&mut tx, actor, "pipeline.delete", name, "").await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Every stored pipeline: (name, definition), by name.
    pub async fn pipelines(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.run(async {
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT name, definition FROM pipelines ORDER BY name").fetch_all(&self.pool).await?;
            Ok(rows)
        })
        .await
    }
}
