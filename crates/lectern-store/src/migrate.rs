//! Versioned migrations, applied at start-up, each in its own transaction.

use crate::store::Backend;
use crate::{now_ms, StoreError};
use sqlx::AnyPool;

/// (version, SQLite text, PostgreSQL text), in order. Never edit one that has shipped: add one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_initial.sql"), include_str!("../migrations/postgres/0001_initial.sql")),
    (2, include_str!("../migrations/sqlite/0002_origins.sql"), include_str!("../migrations/postgres/0002_origins.sql")),
    (3, include_str!("../migrations/sqlite/0003_pipelines.sql"), include_str!("../migrations/postgres/0003_pipelines.sql")),
];

/// Applies the migrations the database has not seen yet; returns how many ran.
pub async fn run(pool: &AnyPool, backend: Backend) -> Result<usize, StoreError> {
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .execute(pool)
        .await?;
    let mut applied = 0;
    for &(version, sqlite, postgres) in MIGRATIONS {
        let mut tx = match backend {
            Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => pool.begin().await?,
        };
        if backend == Backend::Postgres {
            // Replicas starting together: one migrates, the others wait here, then see it done.
            sqlx::query("SELECT pg_advisory_xact_lock(7410001)").execute(&mut *tx).await?;
        }
        let done: Option<(i64,)> = sqlx::query_as("SELECT version FROM schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
        if done.is_some() {
            continue;
        }
        let script = if backend == Backend::Sqlite { sqlite } else { postgres };
        for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied database migration");
        applied += 1;
    }
    Ok(applied)
}
