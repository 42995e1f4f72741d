//! The errors of the training crate: each says what went wrong in words a teacher understands,
//! and whether it was the caller's mistake (a 4xx once served) or an internal failure.

use thiserror::Error;

/// Everything that can go wrong reading a dataset, training, exporting or drawing.
#[derive(Debug, Error)]
pub enum TrainError {
    /// The dataset file could not be understood; `line` and `column` are 1-based.
    #[error("line {line}, column {column}: {message}")]
    Malformed { line: u64, column: u64, message: String },
    /// The dataset has no rows (or no columns).
    #[error("the dataset is empty: {0}")]
    EmptyDataset(String),
    /// A column named in the request is not in the dataset.
    #[error("there is no column named '{0}' in the dataset")]
    UnknownColumn(String),
    /// A column cannot be used the way the request asks (text as a feature, numbers needed, ...).
    #[error("column '{column}': {message}")]
    UnusableColumn { column: String, message: String },
    /// The target column has a single class (or no values), so there is nothing to learn.
    #[error("the target column '{column}' {message}")]
    UnusableTarget { column: String, message: String },
    /// An unknown algorithm name.
    #[error("unknown algorithm '{0}' (choose one of: {1})")]
    UnknownAlgorithm(String, String),
    /// A parameter is unknown, of the wrong type or out of range.
    #[error("parameter '{name}': {message}")]
    BadParameter { name: String, message: String },
    /// The test fraction is outside (0, 1) or leaves no rows on one side.
    #[error("test fraction: {0}")]
    BadSplit(String),
    /// The job was cancelled through its flag.
    #[error("training was cancelled")]
    Cancelled,
    /// The learning library failed.
    #[error("the learning library failed: {0}")]
    Learner(String),
    /// Reading the stream failed (not a format problem).
    #[error("reading the dataset failed: {0}")]
    Io(#[from] std::io::Error),
    /// Building or checking the ONNX file failed.
    #[error("exporting the model to ONNX failed: {0}")]
    Export(String),
}

impl TrainError {
    /// Whether the caller can fix this by changing the request or the file (a 4xx), as opposed
    /// to a failure of Lectern or a library (a 500-class failure, logged).
    pub fn is_caller_mistake(&self) -> bool {
        match self {
            TrainError::Malformed { .. }
            | TrainError::EmptyDataset(_)
            | TrainError::UnknownColumn(_)
            | TrainError::UnusableColumn { .. }
            | TrainError::UnusableTarget { .. }
            | TrainError::UnknownAlgorithm(..)
            | TrainError::BadParameter { .. }
            | TrainError::BadSplit(_) => true,
            TrainError::Cancelled | TrainError::Learner(_) | TrainError::Io(_) | TrainError::Export(_) => false,
        }
    }

    pub(crate) fn param(name: &str, message: impl Into<String>) -> Self {
        TrainError::BadParameter { name: name.to_string(), message: message.into() }
    }
}
