//! Versioned migrations, applied at start-up, each in its own transaction.

use crate::DatabaseKind;
use crate::{now_ms, StoreError};
use sqlx::AnyPool;

/// (version, SQL), in order. Never edit one that has shipped: add one. The words the two
/// engines spell differently, `$IDENTITY` (an auto-numbered primary key) and `$BLOB` (bytes),
/// are filled in per engine.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_initial.sql")),
    (2, include_str!("../migrations/0002_origins.sql")),
    (3, include_str!("../migrations/0003_pipelines.sql")),
    (4, include_str!("../migrations/0004_training.sql")),
    (5, include_str!("../migrations/0005_collections.sql")),
];

/// A migration's SQL for one engine.
fn for_engine(sql: &str, kind: DatabaseKind) -> String {
    sql.replace("$IDENTITY", kind.identity_column()).replace("$BLOB", kind.blob_column())
}

/// Applies the migrations the database has not seen yet; returns how many ran.
pub async fn run(pool: &AnyPool, kind: DatabaseKind) -> Result<usize, StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await?;
    let mut applied = 0;
    for &(version, sql) in MIGRATIONS {
        let mut tx = match kind {
            DatabaseKind::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
            DatabaseKind::Postgres => pool.begin().await?,
        };
        if kind == DatabaseKind::Postgres {
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
        let script = for_engine(sql, kind);
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
