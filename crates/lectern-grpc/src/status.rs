//! Errors as gRPC statuses: the one mapping from Lectern's errors (already classified for HTTP
//! by `lectern_server::ApiError`) to gRPC codes, as Triton maps its own.

use lectern_core::ErrorCode;
use lectern_server::ApiError;
use tonic::{Code, Status};

/// The metadata key carrying Lectern's error code (`model_not_found`, `queue_full`, ...).
pub const ERROR_CODE_KEY: &str = "lectern-error-code";

/// The gRPC code of an HTTP status (and of the codes that read differently over gRPC).
pub fn code_of(status: u16, code: ErrorCode) -> Code {
    if code == ErrorCode::ModelNotReady {
        // Triton: a model that exists but is not ready is UNAVAILABLE
        return Code::Unavailable;
    }
    match status {
        400 | 415 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        405 | 501 => Code::Unimplemented,
        408 | 504 => Code::DeadlineExceeded,
        409 => Code::AlreadyExists,
        412 => Code::FailedPrecondition,
        413 | 414 | 429 | 431 => Code::ResourceExhausted,
        502 | 503 => Code::Unavailable,
        499 => Code::Cancelled,
        500..=599 => Code::Internal,
        _ => Code::Unknown,
    }
}

/// The status of an error, with its message and Lectern's code in the metadata.
pub fn status(error: ApiError) -> Status {
    with_code(Status::new(code_of(error.status.as_u16(), error.code), error.message), error.code)
}

/// `status` with Lectern's `code` in its metadata.
pub fn with_code(mut status: Status, code: ErrorCode) -> Status {
    if let Ok(value) = code.name().parse() {
        status.metadata_mut().insert(ERROR_CODE_KEY, value);
    }
    status
}

/// The code gRPC's own servers (Triton's among them) give a client error that tonic reports
/// with one blaming the server: a message over the size limit is OUT_OF_RANGE in tonic,
/// RESOURCE_EXHAUSTED elsewhere; a message cut off or missing is INTERNAL in tonic, and
/// INVALID_ARGUMENT (the client sent it). `None`: the status stands.
pub fn client_code(code: Code, message: &str) -> Option<Code> {
    const CUT_OFF: [&str; 4] = [
        "Error decompressing",
        "protocol error: received message",
        "Unexpected EOF decoding stream",
        "Missing request message",
    ];
    match code {
        Code::OutOfRange if message.starts_with("Error, decoded message length too large") => {
            Some(Code::ResourceExhausted)
        }
        Code::Internal if CUT_OFF.iter().any(|prefix| message.starts_with(prefix)) => Some(Code::InvalidArgument),
        _ => None,
    }
}

/// A status tonic made, with [`client_code`]'s code.
pub fn recoded(status: Status) -> Status {
    match client_code(status.code(), status.message()) {
        Some(code) => Status::new(code, status.message()),
        None => status,
    }
}

/// Converts any error the HTTP layer can answer into a status.
pub fn from<E: Into<ApiError>>(error: E) -> Status {
    status(error.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_of_the_error_table_has_a_grpc_code() {
        for code in ErrorCode::ALL {
            let grpc = code_of(code.status(), *code);
            assert_ne!(grpc, Code::Unknown, "{code}");
            assert_ne!(grpc, Code::Ok, "{code}");
        }
        assert_eq!(code_of(404, ErrorCode::ModelNotFound), Code::NotFound);
        assert_eq!(code_of(400, ErrorCode::ModelNotReady), Code::Unavailable);
        assert_eq!(code_of(413, ErrorCode::ModelNotFound), Code::ResourceExhausted);
    }

    #[test]
    fn a_status_carries_the_message_and_the_code() {
        let s = status(lectern_runtime::RuntimeError::ModelNotFound("m".into()).into());
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().contains("'m'"), "{}", s.message());
        assert_eq!(s.metadata().get(ERROR_CODE_KEY).unwrap(), "model_not_found");
    }
}
