//! Rows of the store, as the rest of Lectern sees them.

use crate::StoreError;

/// A registered model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRecord {
    pub name: String,
    /// The model's `config.toml` text.
    pub config: String,
    /// Class names, one per line (the labels file's text).
    pub labels: Option<String>,
    /// The version unversioned requests use; `None`: the newest ready one.
    pub default_version: Option<u64>,
    /// The config and labels as last imported from a repository folder (a fingerprint), so
    /// an import only overwrites what changed in the folder since.
    pub imported: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Where a version is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    /// Registered; not loaded yet.
    Pending,
    Ready,
    Unavailable,
}

impl VersionState {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Pending => "PENDING",
            VersionState::Ready => "READY",
            VersionState::Unavailable => "UNAVAILABLE",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "PENDING" => Ok(VersionState::Pending),
            "READY" => Ok(VersionState::Ready),
            "UNAVAILABLE" => Ok(VersionState::Unavailable),
            other => Err(StoreError::Corrupt { what: "version state", value: other.to_string() }),
        }
    }
}

/// A version of a model whose artifact is in the object store.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    pub model: String,
    pub version: u64,
    /// SHA-256 of the artifact, lower-case hex.
    pub sha256: String,
    pub size: u64,
    /// Where the artifact is in the object store.
    pub object_key: String,
    pub state: VersionState,
    /// Why the version is unavailable.
    pub reason: String,
    /// Imported from the repository folder (an import may replace or remove it); otherwise
    /// uploaded, and only a person removes it.
    pub from_folder: bool,
    pub created_at_ms: i64,
}

/// A version to register, after its artifact is stored.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub model: String,
    pub version: u64,
    pub sha256: String,
    pub size: u64,
    pub object_key: String,
    pub from_folder: bool,
}

/// One management action.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    /// Who: a key id, a token subject, or `local` / `startup`.
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}
