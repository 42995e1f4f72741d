//! Lectern's shared vocabulary: tensors, the V2 inference protocol, model configuration and
//! the table of error codes.
//! Nothing here knows about HTTP or any inference engine.

pub mod config;
pub mod duration;
pub mod error;
pub mod protocol;
pub mod ratelimit;
pub mod tensor;
pub mod time;

pub use config::{
    BatchingMode, ColorMode, ConfigChange, ConfigError, ImageLayout, ImageSpec, ModelConfig, TensorSpec, VersionPolicy,
    WarmupInputs, WarmupSpec, MAX_WARMUP_REQUEST_BYTES,
};
pub use error::{Coded, ErrorCode, ErrorType};
pub use protocol::{
    check_inputs, decode_binary, decode_request, encode_binary, encode_response, input_tensor, EncodedResponse,
    InferRequest, InferResponse, ProtocolError, RequestedOutput, ResponseOutput,
};
pub use tensor::{element_count, DataType, Tensor, TensorData};

/// Names of models and pipelines: 1 to 128 letters, digits, `-`, `_` and `.` (safe in URLs,
/// object keys and folder names).
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
