//! Lectern's durable state. One schema over two engines: SQLite embedded (a file in the data
//! folder, WAL mode) and PostgreSQL. Holds models, their versions, configs and states, API keys
//! (hashed), pipelines defined through the API, datasets and training jobs, and an audit log written in the same
//! transaction as each change. SQL lives here and nowhere else.
//!
//! Layout: `store.rs` opens the pool and runs every operation through the health watch
//! (`health.rs`); each table has its own file (`models.rs`, `versions.rs`, `keys.rs`,
//! `pipelines.rs`, `training.rs`, `scheduled.rs`, `audit.rs`); `migrate.rs` and `database.rs` (the engine and its URL) sit
//! below the store. `snapshot.rs` copies and restores the whole database for backups (with
//! `sqlite_copy.rs`, SQLite's online backup API).

mod artifacts;
mod audit;
mod changes;
mod collections;
mod database;
mod error;
mod health;
mod keys;
mod migrate;
mod models;
mod pipelines;
mod records;
mod scheduled;
mod sessions;
pub mod snapshot;
mod sqlite_copy;
mod store;
mod training;
mod versions;

pub use artifacts::ArtifactLock;
pub use changes::{Change, Changes};
pub use collections::{CollectionRecord, CollectionSpec, ItemRecord};
pub use database::DatabaseKind;
pub use error::StoreError;
pub use keys::{fingerprint as key_fingerprint, hex, ApiKey, Role};
pub use records::{AuditEntry, ModelRecord, NewVersion, VersionRecord, VersionState};
pub use scheduled::{Claim, JobRun, RunEnd, ScheduledJob};
pub use sessions::WebSession;
pub use store::Store;
pub use training::{new_job_id, DatasetRecord, JobEnd, JobRecord};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
