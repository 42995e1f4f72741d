//! Lectern's durable state. One schema over two engines: SQLite embedded (a file in the data
//! folder, WAL mode) and PostgreSQL. Holds models, their versions, configs and states, API keys
//! (hashed) and an audit log written in the same transaction as each change. SQL lives here
//! and nowhere else.

mod artifacts;
mod keys;
mod migrate;
mod records;
mod store;

pub use artifacts::ArtifactLock;
pub use keys::{fingerprint as key_fingerprint, hex, ApiKey, Role};
pub use records::{AuditEntry, ModelRecord, NewVersion, VersionRecord, VersionState};
pub use store::{Backend, Store};

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one Lectern can use.
    #[error("invalid database URL: {0}")]
    Url(String),
    #[error("unknown model '{0}'")]
    ModelNotFound(String),
    #[error("model '{0}' has no version {1}")]
    VersionNotFound(String, u64),
    #[error("model '{0}' already exists")]
    ModelExists(String),
    #[error("model '{0}' already has version {1}")]
    VersionExists(String, u64),
    #[error("unknown API key '{0}'")]
    KeyNotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// The database failed; the message never carries the URL (it may hold a password).
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(match e {
            sqlx::Error::Database(db) => db.message().to_string(),
            other => other.to_string(),
        })
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
