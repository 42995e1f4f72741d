//! Pipelines: declarative cascades of models, routes and LLM helpers, declared in TOML and run
//! per request (and per item under `for_each`). Nothing here knows about the HTTP server.

mod catalog;
mod expr;
mod image;
pub mod llm;
mod plan;
mod run;
mod spec;
mod words;

pub use catalog::{Catalog, Resource};
pub use plan::{Pipeline, Step, StepKind};
pub use run::{Engine, PipelineRequest, Searcher};
pub use spec::PipelineFile;

use lectern_core::{Coded, ErrorCode};
use lectern_runtime::RuntimeError;

/// What can go wrong building or running a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The config file declares something impossible (start-up only).
    #[error("{file}:{line}: {message}")]
    Config { file: String, line: usize, message: String },
    /// A file the config names cannot be used (start-up only).
    #[error("{0}")]
    File(String),
    #[error("unknown pipeline '{0}'")]
    UnknownPipeline(String),
    /// The request does not fit the pipeline.
    #[error("{0}")]
    Input(String),
    /// A step failed on this request (a template or expression could not be evaluated).
    #[error("step '{step}': {message}")]
    Step { step: String, message: String },
    /// A model step failed; the runtime error says how.
    #[error("step '{step}': {source}")]
    Model { step: String, source: RuntimeError },
    /// The error of one item under `for_each`.
    #[error("{field}[{index}]: {source}")]
    Item { field: String, index: usize, source: Box<PipelineError> },
}

impl Coded for PipelineError {
    fn code(&self) -> ErrorCode {
        match self {
            PipelineError::Config { .. } | PipelineError::File(_) => ErrorCode::Internal,
            PipelineError::UnknownPipeline(_) => ErrorCode::PipelineNotFound,
            PipelineError::Input(_) => ErrorCode::InvalidInput,
            PipelineError::Step { .. } => ErrorCode::PipelineStepFailed,
            PipelineError::Model { source, .. } => match source.code() {
                // A model the pipeline names that is missing now is not the caller's URL.
                ErrorCode::ModelNotFound | ErrorCode::VersionNotFound => ErrorCode::ModelNotReady,
                code => code,
            },
            PipelineError::Item { source, .. } => source.code(),
        }
    }
}
