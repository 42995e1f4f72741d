//! The serving runtime: the model repository, loaded versions with their queues and
//! threads, and metrics. Nothing here knows about HTTP.

pub mod memory;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod source;
pub mod text;
mod warmup;
pub mod worker;

pub use lectern_backends::{Signature, TensorInfo, TextEncoding};
pub use metrics::{MetricsRegistry, ModelMetrics};
pub use model::{LoadedModel, Remote, RemoteVersion};
pub use registry::{IndexEntry, MemoryReport, ModelMemory, Placer, Registry, VersionState, ON_DEMAND_WAIT};
pub use source::{FolderSource, ModelDefinition, ModelSource, SourceError, SourceFuture, MODEL_FILE};
pub use worker::WorkerError;

use lectern_core::{Coded, ErrorCode};

/// What can go wrong serving a request or changing the registry. [`Coded::code`] tells the
/// transport layer how to answer.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Protocol(#[from] lectern_core::ProtocolError),
    #[error("{0}")]
    BadRequest(String),
    /// Triton's words, which its clients look for.
    #[error("Request for unknown model: '{0}' is not found")]
    ModelNotFound(String),
    #[error("model '{0}' has no version {1}")]
    VersionNotFound(String, u64),
    #[error("model '{0}' is not ready: {1}")]
    NotReady(String, String),
    /// The model loads on demand and was not ready within [`ON_DEMAND_WAIT`]; it goes on loading.
    #[error("model '{0}' is loading on demand and was not ready in time; retry later")]
    Loading(String),
    #[error("model '{0}' is overloaded: its queue is full; retry later")]
    QueueFull(String),
    #[error("the request's timeout of {0} microseconds passed before it could run")]
    DeadlineExpired(u64),
    #[error("model '{0}': {1}")]
    Inference(String, String),
    /// Versions of the model failed to load (the reason names each).
    #[error("failed to load model '{0}': {1}")]
    LoadFailed(String, String),
    /// The source could not give the model's definition.
    #[error("failed to load model '{model}': {source}")]
    SourceFailed {
        model: String,
        #[source]
        source: SourceError,
    },
    /// The source could not list its models.
    #[error("{0}")]
    Source(#[from] SourceError),
    /// Texts were sent to a model that is not a text encoder.
    #[error("model '{0}' is not a text encoder (it takes no texts)")]
    NotAnEncoder(String),
    /// In a cluster: no worker serves the model now (the reason says why); retry later.
    #[error("model '{0}' is unavailable: {1}")]
    NoReplica(String, String),
    /// The process that serves the model answered with this error.
    #[error("{message}")]
    Remote { code: ErrorCode, message: String },
}

impl Coded for RuntimeError {
    fn code(&self) -> ErrorCode {
        match self {
            RuntimeError::Protocol(e) => e.code(),
            RuntimeError::BadRequest(_) => ErrorCode::InvalidInput,
            RuntimeError::NotAnEncoder(_) => ErrorCode::InvalidRequest,
            RuntimeError::Inference(..) => ErrorCode::InferenceFailed,
            RuntimeError::ModelNotFound(_) => ErrorCode::ModelNotFound,
            RuntimeError::VersionNotFound(..) => ErrorCode::VersionNotFound,
            RuntimeError::NotReady(..) => ErrorCode::ModelNotReady,
            RuntimeError::Loading(_) => ErrorCode::ModelLoading,
            RuntimeError::LoadFailed(..) => ErrorCode::ModelLoadFailed,
            RuntimeError::QueueFull(_) => ErrorCode::QueueFull,
            RuntimeError::DeadlineExpired(_) => ErrorCode::RequestTimeout,
            RuntimeError::SourceFailed { source, .. } | RuntimeError::Source(source) => source.code(),
            RuntimeError::NoReplica(..) => ErrorCode::Unavailable,
            RuntimeError::Remote { code, .. } => *code,
        }
    }
}
