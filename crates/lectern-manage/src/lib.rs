//! Model management over the store: the store is the registry's source of models, artifacts
//! live in an object store, a repository folder is imported at start-up, and every change
//! (create, upload, config, default, delete) is durable before it is acknowledged and swaps
//! the served versions without a failed request.

mod access;
mod datasets;
mod import;
mod manager;
pub mod objects;
mod pipelines;
mod source;
pub mod training;
mod views;

pub use datasets::DatasetView;
pub use manager::Manager;
pub use objects::{ArtifactError, Objects, Stored, UploadError};
pub use source::{artifact_error, ModelPlan, StoreSource};
pub use training::{headline_metric, JobView, RegisterIf, Training, TrainingRequest, TrainingSettings};
pub use views::{ModelView, VersionView};

use lectern_core::{Coded, ErrorCode};
use lectern_runtime::{RuntimeError, SourceError};
use lectern_store::StoreError;

/// What can go wrong managing models.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A repository folder cannot be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("object store: {0}")]
    Objects(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the upload is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error(transparent)]
    Pipeline(#[from] lectern_pipeline::PipelineError),
    /// A dataset file cannot be read.
    #[error("the dataset cannot be read: {0}")]
    BadDataset(lectern_train::TrainError),
    /// A training request does not fit its dataset or algorithm.
    #[error("{0}")]
    BadTrainingRequest(lectern_train::TrainError),
    #[error("unknown dataset '{0}'")]
    DatasetNotFound(String),
    #[error("unknown training job '{0}'")]
    JobNotFound(String),
    #[error("training job '{0}' has already {1}")]
    JobFinished(String, String),
    #[error("{0}")]
    PictureNotFound(String),
    #[error("{0} training jobs are waiting already; retry later")]
    TrainingQueueFull(usize),
}

impl ManageError {
    /// Where in a dataset file the first problem is (1-based line and column), when known.
    pub fn position(&self) -> Option<(u64, u64)> {
        match self {
            ManageError::BadDataset(lectern_train::TrainError::Malformed { line, column, .. }) => {
                Some((*line, *column))
            }
            ManageError::BadDataset(_) => Some((1, 1)),
            _ => None,
        }
    }
}

impl Coded for ManageError {
    fn code(&self) -> ErrorCode {
        match self {
            ManageError::Store(e) => e.code(),
            ManageError::Runtime(e) => e.code(),
            ManageError::Source(e) => e.code(),
            ManageError::Objects(_) => ErrorCode::ObjectStoreUnavailable,
            ManageError::Invalid(_) => ErrorCode::InvalidRequest,
            ManageError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            ManageError::Pipeline(e) => e.code(),
            ManageError::BadDataset(_) => ErrorCode::InvalidDataset,
            ManageError::BadTrainingRequest(_) => ErrorCode::InvalidTrainingRequest,
            ManageError::DatasetNotFound(_) => ErrorCode::DatasetNotFound,
            ManageError::JobNotFound(_) => ErrorCode::JobNotFound,
            ManageError::JobFinished(..) => ErrorCode::JobFinished,
            ManageError::PictureNotFound(_) => ErrorCode::PictureNotFound,
            ManageError::TrainingQueueFull(_) => ErrorCode::QueueFull,
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
