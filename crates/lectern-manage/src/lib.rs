//! Model management over the store: the store is the registry's source of models, artifacts
//! live in an object store, a repository folder is imported at start-up, and every change
//! (create, upload, config, default, delete) is durable before it is acknowledged and swaps
//! the served versions without a failed request.

mod import;
mod manager;
pub mod objects;
mod source;
mod views;

pub use manager::Manager;
pub use objects::{Objects, Stored, UploadError};
pub use source::StoreSource;
pub use views::{ModelView, VersionView};

use lectern_runtime::{ErrorKind, RuntimeError};
use lectern_store::StoreError;

/// What can go wrong managing models.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("object store: {0}")]
    Objects(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the upload is larger than the limit of {0} bytes")]
    TooLarge(u64),
}

impl ManageError {
    /// The class of this error, for mapping to a transport status.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ManageError::Store(e) => match e {
                StoreError::ModelNotFound(_) | StoreError::VersionNotFound(..) | StoreError::KeyNotFound(_) => {
                    ErrorKind::NotFound
                }
                StoreError::ModelExists(_) | StoreError::VersionExists(..) => ErrorKind::Conflict,
                StoreError::Invalid(_) => ErrorKind::Invalid,
                StoreError::Url(_) | StoreError::Database(_) => ErrorKind::Dependency,
            },
            ManageError::Runtime(e) => e.kind(),
            ManageError::Objects(_) => ErrorKind::Dependency,
            ManageError::Invalid(_) => ErrorKind::Invalid,
            ManageError::TooLarge(_) => ErrorKind::TooLarge,
        }
    }
}

/// Model names: letters, digits, `-`, `_` and `.`, not starting with `.`, at most 128 bytes.
pub fn check_model_name(name: &str) -> Result<(), ManageError> {
    let valid = lectern_core::is_plain_name(name) && !name.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err(ManageError::Invalid(format!(
            "invalid model name '{name}': use letters, digits, '-', '_' and '.', not starting with '.' (at most 128)"
        )))
    }
}
