//! The serving runtime: the model repository, loaded versions with their queues and
//! threads, and metrics. Nothing here knows about HTTP.

pub mod metrics;
pub mod model;
pub mod registry;
pub mod source;
pub mod worker;

pub use lectern_backends::{Signature, TensorInfo};
pub use metrics::{MetricsRegistry, ModelMetrics};
pub use model::LoadedModel;
pub use registry::{IndexEntry, Registry, VersionState};
pub use source::{FolderSource, ModelDefinition, ModelSource, SourceFuture, MODEL_FILE};

/// What can go wrong serving a request or changing the registry. `kind()` tells the
/// transport layer how to answer.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Protocol(#[from] lectern_core::ProtocolError),
    #[error("{0}")]
    BadRequest(String),
    #[error("unknown model '{0}'")]
    ModelNotFound(String),
    #[error("model '{0}' has no version {1}")]
    VersionNotFound(String, u64),
    #[error("model '{0}' is not ready: {1}")]
    NotReady(String, String),
    #[error("model '{0}' is overloaded: its queue is full; retry later")]
    QueueFull(String),
    #[error("the request's timeout of {0} microseconds passed before it could run")]
    DeadlineExpired(u64),
    #[error("model '{0}': {1}")]
    Inference(String, String),
    #[error("failed to load model '{0}': {1}")]
    LoadFailed(String, String),
    #[error("{0}")]
    Repository(String),
}

/// The class of a [`RuntimeError`], for mapping to a transport status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent something wrong.
    Invalid,
    /// The named thing does not exist.
    NotFound,
    /// The model exists but cannot serve now.
    Unavailable,
    /// Too much load; retry later.
    Overloaded,
    /// The caller's deadline passed.
    Timeout,
    /// The request conflicts with what exists (a name or version taken).
    Conflict,
    /// The request body is larger than allowed.
    TooLarge,
    /// A service Lectern depends on (the database, the object store) failed; retry later.
    Dependency,
    /// The server itself is broken (misconfiguration at start-up).
    Internal,
}

impl RuntimeError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::Protocol(_) | RuntimeError::BadRequest(_) | RuntimeError::Inference(..) => ErrorKind::Invalid,
            RuntimeError::LoadFailed(..) | RuntimeError::NotReady(..) => ErrorKind::Unavailable,
            RuntimeError::ModelNotFound(_) | RuntimeError::VersionNotFound(..) => ErrorKind::NotFound,
            RuntimeError::QueueFull(_) => ErrorKind::Overloaded,
            RuntimeError::DeadlineExpired(_) => ErrorKind::Timeout,
            RuntimeError::Repository(_) => ErrorKind::Internal,
        }
    }
}
