//! Scheduled jobs: declared in the config file (`[jobs.NAME]`) or through the API, fired by a
//! scheduling loop every Lectern process runs, with their next firings, runs and checkpoints
//! kept in the database so that nothing is missed across a restart and nothing runs twice
//! across processes.
//!
//! Layout: `spec.rs` reads a job's definition, `schedule.rs` says when it fires and what to do
//! with a late firing (pure functions), `scheduler.rs` is the loop and the operations of the API,
//! `view.rs` what the API shows, and `kinds/` what each kind of job does.

mod kinds;
mod schedule;
mod scheduler;
mod spec;
mod view;

pub use kinds::Deps;
pub use schedule::{Decision, Schedule};
pub use scheduler::{parse_config, Jobs};
pub use spec::{JobDef, Kind};
pub use view::{JobView, RunView};

use lectern_core::{Coded, ErrorCode};
use lectern_store::StoreError;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// What can go wrong with jobs.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// A definition that cannot run (the message names the job and the field).
    #[error("{0}")]
    Invalid(String),
    #[error("unknown job '{0}'")]
    NotFound(String),
    #[error("a job named '{0}' exists")]
    Exists(String),
    #[error("job '{0}' comes from the config file: change or remove it there")]
    FromConfig(String),
    #[error("job '{0}' has a run in progress")]
    Running(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for JobsError {
    fn code(&self) -> ErrorCode {
        match self {
            JobsError::Invalid(_) => ErrorCode::InvalidRequest,
            JobsError::NotFound(_) => ErrorCode::JobNotFound,
            JobsError::Exists(_) => ErrorCode::JobExists,
            JobsError::FromConfig(_) => ErrorCode::JobFromConfig,
            JobsError::Running(_) => ErrorCode::JobRunning,
            JobsError::Store(e) => e.code(),
        }
    }
}
