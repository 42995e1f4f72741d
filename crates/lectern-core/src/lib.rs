//! Lectern's shared vocabulary: tensors, the V2 inference protocol and model configuration.
//! Nothing here knows about HTTP or any inference engine.

pub mod config;
pub mod protocol;
pub mod tensor;

pub use config::{
    BatchingMode, ColorMode, ConfigError, ImageLayout, ImageSpec, ModelConfig, TensorSpec, VersionPolicy,
};
pub use protocol::{
    decode_request, encode_response, EncodedResponse, InferRequest, InferResponse, ProtocolError,
    RequestedOutput, ResponseOutput,
};
pub use tensor::{element_count, DataType, Tensor, TensorData};
