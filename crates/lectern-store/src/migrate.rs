//! Versioned migrations, applied at start-up, each in its own transaction.

use crate::DatabaseKind;
use crate::{now_ms, StoreError};
use sqlx::{AnyConnection, AnyPool, Connection};
use std::collections::{BTreeMap, BTreeSet};

/// (version, SQL), in order. Never edit one that has shipped: add one. The words the two
/// engines spell differently, `$IDENTITY` (an auto-numbered primary key) and `$BLOB` (bytes),
/// are filled in per engine.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_initial.sql")),
    (2, include_str!("../migrations/0002_origins.sql")),
    (3, include_str!("../migrations/0003_pipelines.sql")),
    (4, include_str!("../migrations/0004_training.sql")),
    (5, include_str!("../migrations/0005_collections.sql")),
    (6, include_str!("../migrations/0006_jobs.sql")),
    (7, include_str!("../migrations/0007_web_sessions.sql")),
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

/// A list of migrations: Lectern's ([`migrations`]), or a test's.
pub(crate) type Migrations<'a> = &'a [(i64, &'a str)];

/// Lectern's migrations.
pub(crate) fn migrations() -> Migrations<'static> {
    MIGRATIONS
}

/// The newest schema version of a list of migrations (its last).
pub(crate) fn latest(migrations: Migrations) -> i64 {
    migrations.last().map(|m| m.0).unwrap_or(0)
}

/// The bookkeeping table of applied migrations; every schema version has it.
pub(crate) const BOOKKEEPING: &str = "schema_migrations";

/// Applies the migrations up to `up_to` on a connection, inside the caller's transaction
/// (a restore builds the schema of its backup, loads the rows, then commits once). The schema
/// must not hold any of them yet.
pub(crate) async fn apply_up_to(
    conn: &mut AnyConnection,
    kind: DatabaseKind,
    migrations: Migrations<'_>,
    up_to: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    for &(version, sql) in migrations.iter().filter(|m| m.0 <= up_to) {
        apply_one(conn, kind, version, sql).await?;
    }
    Ok(())
}

/// One migration's statements and its bookkeeping row, on the caller's connection.
async fn apply_one(conn: &mut AnyConnection, kind: DatabaseKind, version: i64, sql: &str) -> Result<(), StoreError> {
    let script = for_engine(sql, kind);
    for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
        .bind(version)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Lectern's tables at one schema version, each after the tables its foreign keys name (the
/// order rows can be inserted in), `schema_migrations` first.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    pub version: i64,
    pub tables: Vec<Table>,
}

/// A table and its columns, in their order.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub name: String,
    pub columns: Vec<String>,
}

/// The tables of every schema version, read from the migrations themselves: they are applied
/// one by one to an in-memory SQLite database whose catalog is listed after each. So a
/// migration that adds a table adds it to backups and restores with no other change.
pub(crate) async fn schemas(migrations: Migrations<'_>) -> Result<Vec<Schema>, StoreError> {
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect("sqlite::memory:").await?;
    apply_up_to(&mut conn, DatabaseKind::Sqlite, migrations, 0).await?;
    let mut out = Vec::new();
    for &(version, sql) in migrations {
        apply_one(&mut conn, DatabaseKind::Sqlite, version, sql).await?;
        let names: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                .fetch_all(&mut conn)
                .await?;
        let mut parents = BTreeMap::new();
        let mut columns = BTreeMap::new();
        for (name,) in &names {
            let refs: Vec<(String,)> = sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_list($1)")
                .bind(name)
                .fetch_all(&mut conn)
                .await?;
            parents.insert(name.clone(), refs.into_iter().map(|r| r.0).filter(|p| p != name).collect::<BTreeSet<_>>());
            let names: Vec<(String,)> = sqlx::query_as("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                .bind(name)
                .fetch_all(&mut conn)
                .await?;
            columns.insert(name.clone(), names.into_iter().map(|c| c.0).collect::<Vec<_>>());
        }
        let tables = dependency_order(parents)
            .into_iter()
            .map(|name| Table { columns: columns.remove(&name).unwrap_or_default(), name })
            .collect();
        out.push(Schema { version, tables });
    }
    conn.close().await?;
    Ok(out)
}

/// Tables ordered so that each comes after the tables it refers to (by name among equals;
/// `schema_migrations` first). A cycle, which no migration makes, keeps name order.
fn dependency_order(mut parents: BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut order = Vec::new();
    if parents.remove(BOOKKEEPING).is_some() {
        order.push(BOOKKEEPING.to_string());
    }
    while !parents.is_empty() {
        let ready: Vec<String> = parents
            .iter()
            .filter(|(_, refs)| refs.iter().all(|r| !parents.contains_key(r)))
            .map(|(name, _)| name.clone())
            .collect();
        let next = if ready.is_empty() { parents.keys().cloned().collect() } else { ready };
        for name in next {
            parents.remove(&name);
            order.push(name);
        }
    }
    order
}
