//! The store's errors, each classified by the error table of lectern-core.

use lectern_core::{Coded, ErrorCode};

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one Lectern can use (the message never repeats the URL).
    #[error("invalid database URL: {0}")]
    Url(String),
    /// The folder of a SQLite file cannot be created.
    #[error("cannot create the database folder {}", .path.display())]
    Folder {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    #[error("unknown collection '{0}'")]
    CollectionNotFound(String),
    /// The change conflicts with what is stored.
    #[error("{0}")]
    Conflict(String),
    /// The database cannot be reached: down, restarting, or no connection free in time. The
    /// cause is absent when the store already knows it is down and did not try.
    #[error("the database is unavailable; retry later")]
    Unavailable(#[source] Option<sqlx::Error>),
    /// The database answered with an error; the message never carries the URL (it may hold a
    /// password).
    #[error("database error: {}", database_message(.0))]
    Database(#[source] sqlx::Error),
    /// A row holds a value this version of Lectern does not know.
    #[error("the database holds an unknown {what} '{value}'")]
    Corrupt { what: &'static str, value: String },
    /// The operating system gave no randomness for a new key.
    #[error("no randomness for a new key")]
    Randomness(#[source] getrandom::Error),
}

impl StoreError {
    /// True when the database could not be reached (as opposed to answering with an error).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl Coded for StoreError {
    fn code(&self) -> ErrorCode {
        match self {
            StoreError::Url(_) | StoreError::Folder { .. } | StoreError::Randomness(_) => ErrorCode::Internal,
            StoreError::ModelNotFound(_) => ErrorCode::ModelNotFound,
            StoreError::VersionNotFound(..) => ErrorCode::VersionNotFound,
            StoreError::ModelExists(_) => ErrorCode::ModelExists,
            StoreError::VersionExists(..) => ErrorCode::VersionExists,
            StoreError::KeyNotFound(_) => ErrorCode::KeyNotFound,
            StoreError::Invalid(_) => ErrorCode::InvalidRequest,
            StoreError::CollectionNotFound(_) => ErrorCode::CollectionNotFound,
            StoreError::Conflict(_) => ErrorCode::Conflict,
            StoreError::Unavailable(_) => ErrorCode::DatabaseUnavailable,
            StoreError::Database(_) | StoreError::Corrupt { .. } => ErrorCode::DatabaseError,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if unreachable(&e) {
            StoreError::Unavailable(Some(e))
        } else {
            StoreError::Database(e)
        }
    }
}

/// The database could not be reached or dropped the connection, as opposed to refusing a
/// statement: I/O and TLS failures, pool timeouts, and PostgreSQL's connection exceptions
/// (SQLSTATE class 08), shutdowns (57P01-57P03) and `too_many_connections` (53300).
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")),
        _ => false,
    }
}

fn database_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_unavailable_and_the_rest_are_database_errors() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = StoreError::from(sqlx::Error::Io(refused));
        assert!(e.is_unavailable());
        assert_eq!(e.code(), ErrorCode::DatabaseUnavailable);
        assert!(std::error::Error::source(&e).is_some(), "the cause is kept");
        assert_eq!(StoreError::from(sqlx::Error::PoolTimedOut).code(), ErrorCode::DatabaseUnavailable);
        let e = StoreError::from(sqlx::Error::RowNotFound);
        assert_eq!(e.code(), ErrorCode::DatabaseError);
        assert_eq!(StoreError::ModelExists("m".into()).code().status(), 409);
    }
}
