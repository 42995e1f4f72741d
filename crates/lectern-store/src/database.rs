//! The database engines a store runs on, and their URLs.

use crate::StoreError;
use std::path::Path;

/// The database engine behind a store (not to be confused with an inference engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl DatabaseKind {
    /// Splits the engine off a URL; SQLite files (and their folders) are created when missing.
    pub(crate) fn from_url(url: &str) -> Result<(DatabaseKind, String), StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok((DatabaseKind::Postgres, url.to_string()));
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
                .map_err(|source| StoreError::Folder { path: parent.to_path_buf(), source })?;
        }
        let url = if path.contains('?') { url.to_string() } else { format!("{url}?mode=rwc") };
        Ok((DatabaseKind::Sqlite, url))
    }

    /// The engine's spelling of an auto-numbered primary key (`$IDENTITY` in migrations).
    pub(crate) fn identity_column(self) -> &'static str {
        match self {
            DatabaseKind::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            DatabaseKind::Postgres => "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        }
    }

    pub(crate) fn blob_column(self) -> &'static str {
        match self {
            DatabaseKind::Sqlite => "BLOB",
            DatabaseKind::Postgres => "BYTEA",
        }
    }
}
