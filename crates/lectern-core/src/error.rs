//! The one table of error codes. Every error Lectern answers carries one of these codes: a
//! stable snake_case name that clients can match on, a type (what the caller can do about it)
//! and an HTTP status as a plain number (the HTTP layer turns it into its own type). Each
//! crate's error type classifies itself with [`Coded`]; the transport maps a code to a status
//! with [`ErrorCode::status`] and nothing else.
//!
//! A code's name never changes once shipped: add a code rather than rename one.

use std::fmt;

/// What the caller can do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// The request is wrong; sending it again unchanged fails again.
    InvalidRequest,
    /// The credential is missing, invalid, or lacks the role (or its rate is exceeded).
    Auth,
    /// A resource Lectern needs (a model queue, the database, an issuer) cannot serve now;
    /// retry later.
    Unavailable,
    /// Lectern itself is misconfigured or broken.
    Internal,
}

impl ErrorType {
    /// The type's stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "invalid_request",
            ErrorType::Auth => "auth",
            ErrorType::Unavailable => "unavailable",
            ErrorType::Internal => "internal",
        }
    }
}

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $name:literal, $kind:ident, $status:literal;)*) => {
        /// A stable, machine-readable error code. The table below is the single place that
        /// gives each code its name, its type and its status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code's stable snake_case name (the `code` of an error body).
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }

            /// What the caller can do about it.
            pub fn error_type(self) -> ErrorType {
                match self {
                    $(ErrorCode::$variant => ErrorType::$kind,)*
                }
            }

            /// The HTTP status it is answered with.
            pub fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }
        }
    };
}

error_codes! {
    /// Malformed JSON, a missing field, a bad query or path parameter.
    InvalidRequest => "invalid_request", InvalidRequest, 400;
    /// The inference request does not fit the model (input names, datatypes, shapes, data,
    /// binary header) or the pipeline's inputs.
    InvalidInput => "invalid_input", InvalidRequest, 400;
    /// The engine rejected the inputs while running the model.
    InferenceFailed => "inference_failed", InvalidRequest, 400;
    /// A pipeline step could not be evaluated on this request (a template or expression).
    PipelineStepFailed => "pipeline_step_failed", InvalidRequest, 400;
    /// A dataset file cannot be read (the message and the body's `line` and `column` say where).
    InvalidDataset => "invalid_dataset", InvalidRequest, 400;
    /// A training request does not fit its dataset or its algorithm.
    InvalidTrainingRequest => "invalid_training_request", InvalidRequest, 400;
    /// The model (or version) is known but not ready: unloaded, failed, or without versions.
    ModelNotReady => "model_not_ready", InvalidRequest, 400;
    /// Loading a model failed; the versions that were serving keep serving.
    ModelLoadFailed => "model_load_failed", InvalidRequest, 400;
    /// No credential, or one that is invalid, expired or revoked.
    Unauthorized => "unauthorized", Auth, 401;
    /// The credential's role may not do this.
    Forbidden => "forbidden", Auth, 403;
    /// No such route (or resource of no more specific kind).
    NotFound => "not_found", InvalidRequest, 404;
    /// No such model.
    ModelNotFound => "model_not_found", InvalidRequest, 404;
    /// The model has no such version.
    VersionNotFound => "version_not_found", InvalidRequest, 404;
    /// No such pipeline.
    PipelineNotFound => "pipeline_not_found", InvalidRequest, 404;
    /// No such live API key.
    KeyNotFound => "key_not_found", InvalidRequest, 404;
    /// No such dataset.
    DatasetNotFound => "dataset_not_found", InvalidRequest, 404;
    /// No such training job or scheduled job.
    JobNotFound => "job_not_found", InvalidRequest, 404;
    /// No such proxy upstream.
    UpstreamNotFound => "upstream_not_found", InvalidRequest, 404;
    /// The training job has no such picture (not this algorithm's, or it has not succeeded).
    PictureNotFound => "picture_not_found", InvalidRequest, 404;
    /// No such collection.
    CollectionNotFound => "collection_not_found", InvalidRequest, 404;
    /// The route exists but not for this method.
    MethodNotAllowed => "method_not_allowed", InvalidRequest, 405;
    /// The request's own timeout passed before it could run.
    RequestTimeout => "request_timeout", Unavailable, 408;
    /// The request conflicts with what exists.
    Conflict => "conflict", InvalidRequest, 409;
    /// A model of that name exists.
    ModelExists => "model_exists", InvalidRequest, 409;
    /// The model has that version already.
    VersionExists => "version_exists", InvalidRequest, 409;
    /// The training job had already ended (succeeded, failed or cancelled).
    JobFinished => "job_finished", InvalidRequest, 409;
    /// A scheduled job of that name exists.
    JobExists => "job_exists", InvalidRequest, 409;
    /// The scheduled job comes from the config file: the API cannot change or delete it.
    JobFromConfig => "job_from_config", InvalidRequest, 409;
    /// The scheduled job has a run in progress.
    JobRunning => "job_running", InvalidRequest, 409;
    /// The body (or an upload) is larger than the limit.
    PayloadTooLarge => "payload_too_large", InvalidRequest, 413;
    /// The URL is longer than the server reads.
    UriTooLong => "uri_too_long", InvalidRequest, 414;
    /// The content type is not one the route reads.
    UnsupportedMediaType => "unsupported_media_type", InvalidRequest, 415;
    /// Too many requests for this credential; `Retry-After` says when to retry.
    RateLimited => "rate_limited", Auth, 429;
    /// The request's headers are too many or too large.
    HeadersTooLarge => "headers_too_large", InvalidRequest, 431;
    /// A proxy upstream could not be reached, did not speak HTTP, or answered more than allowed.
    UpstreamError => "upstream_error", Unavailable, 502;
    /// A proxy upstream did not answer in time.
    UpstreamTimeout => "upstream_timeout", Unavailable, 504;
    /// Lectern is misconfigured or hit a bug (never expected on a request).
    Internal => "internal", Internal, 500;
    /// Something Lectern needs cannot serve now; retry later.
    Unavailable => "unavailable", Unavailable, 503;
    /// The server is still starting (loading its models and pipelines).
    NotReady => "not_ready", Unavailable, 503;
    /// The model's queue is full; retry later.
    QueueFull => "queue_full", Unavailable, 503;
    /// The model loads on demand (lazy, or unloaded by the memory budget) and was not ready
    /// within the wait; it goes on loading: retry later.
    ModelLoading => "model_loading", Unavailable, 503;
    /// The database cannot be reached (down, restarting, or out of connections); retry later.
    DatabaseUnavailable => "database_unavailable", Unavailable, 503;
    /// The database answered with an error that is not the request's fault.
    DatabaseError => "database_error", Unavailable, 503;
    /// The object store holding model artifacts failed; retry later.
    ObjectStoreUnavailable => "object_store_unavailable", Unavailable, 503;
    /// The OIDC issuer's keys cannot be fetched; retry later.
    IdentityProviderUnavailable => "identity_provider_unavailable", Unavailable, 503;
    /// A proxy upstream is at its rate or concurrency limit; retry later.
    UpstreamBusy => "upstream_busy", Unavailable, 503;
}

impl ErrorCode {
    /// The generic code of a status, for errors that have no more specific one.
    pub fn for_status(status: u16) -> ErrorCode {
        match status {
            401 => ErrorCode::Unauthorized,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            408 => ErrorCode::RequestTimeout,
            409 => ErrorCode::Conflict,
            413 => ErrorCode::PayloadTooLarge,
            414 => ErrorCode::UriTooLong,
            415 => ErrorCode::UnsupportedMediaType,
            429 => ErrorCode::RateLimited,
            431 => ErrorCode::HeadersTooLarge,
            503 => ErrorCode::Unavailable,
            500..=599 => ErrorCode::Internal,
            _ => ErrorCode::InvalidRequest,
        }
    }

    /// True when retrying later may succeed (the answer carries `Retry-After`).
    /// The code of this name (as [`ErrorCode::name`] writes it).
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.name() == name)
    }

    pub fn is_retryable(self) -> bool {
        self.status() == 503
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error that knows its code.
pub trait Coded {
    /// The code the transport answers this error with.
    fn code(&self) -> ErrorCode;
}

impl Coded for crate::ProtocolError {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidInput
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_snake_case_and_statuses_are_errors() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let name = code.name();
            assert!(seen.insert(name), "{name} twice");
            assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{name}");
            assert!((400..600).contains(&code.status()), "{name}");
        }
    }

    #[test]
    fn generic_codes_answer_their_own_status() {
        for status in [400, 401, 403, 404, 405, 408, 409, 413, 414, 415, 429, 431, 500, 503] {
            assert_eq!(ErrorCode::for_status(status).status(), status, "{status}");
        }
        assert_eq!(ErrorCode::for_status(418), ErrorCode::InvalidRequest);
        assert_eq!(ErrorCode::DatabaseUnavailable.status(), 503);
        assert_eq!(ErrorCode::DatabaseUnavailable.error_type(), ErrorType::Unavailable);
        assert!(ErrorCode::QueueFull.is_retryable() && !ErrorCode::ModelNotReady.is_retryable());
    }
}
