//! The store: one `AnyPool` over SQLite or PostgreSQL. Every change is one transaction that
//! also writes its audit row, so an acknowledged change and its audit entry are durable together.
//! The operations on each table are in that table's file; this one opens the pool and runs
//! every operation through [`Store::run`], which keeps the database's health.

use crate::health::{self, Health};
use crate::{migrate, DatabaseKind, StoreError};
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Executor, Transaction};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Lectern's database.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    kind: DatabaseKind,
    health: Arc<Health>,
    /// PostgreSQL: where to listen for other processes' changes (holds the password: never shown).
    pub(crate) listen_url: Option<String>,
}

impl Store {
    /// Opens `url` (`sqlite://PATH` or `postgres://...`) and runs the pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (kind, url) = DatabaseKind::from_url(url)?;
        let pool = match kind {
            DatabaseKind::Sqlite => {
                AnyPoolOptions::new()
                    .acquire_timeout(Duration::from_secs(10))
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
            // A server that is down refuses connections, and the pool retries until the
            // acquire timeout: keep it short, so that a request finds out in seconds.
            DatabaseKind::Postgres => {
                AnyPoolOptions::new().acquire_timeout(Duration::from_secs(3)).max_connections(8).connect(&url).await?
            }
        };
        migrate::run(&pool, kind).await?;
        let listen_url = (kind == DatabaseKind::Postgres).then_some(url);
        Ok(Store { pool, kind, health: Arc::default(), listen_url })
    }

    /// Runs one operation on the database. While the database is known to be down it fails
    /// at once; an operation that finds it unreachable marks it down (a probe notices when
    /// it is back).
    pub(crate) async fn run<T>(&self, operation: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        if self.health.is_down() {
            return Err(StoreError::Unavailable(None));
        }
        let result = operation.await;
        if let Err(StoreError::Unavailable(Some(cause))) = &result {
            self.health.mark_down(&self.pool, cause);
        }
        result
    }

    /// A transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so that concurrent writers wait for each other (busy_timeout)
    /// instead of failing when a read lock cannot be upgraded.
    pub(crate) async fn write_tx(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(match self.kind {
            DatabaseKind::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            DatabaseKind::Postgres => self.pool.begin().await?,
        })
    }

    /// Which engine this store runs on.
    pub fn kind(&self) -> DatabaseKind {
        self.kind
    }

    /// True when the database answers now (one round trip).
    pub async fn ping(&self) -> bool {
        health::ping(&self.pool).await
    }

    /// True when the database is believed to answer: cheap enough for every readiness check
    /// (at most one round trip a second; none while it is known to be down).
    pub async fn available(&self) -> bool {
        self.health.available(&self.pool).await
    }
}
