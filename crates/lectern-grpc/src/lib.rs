//! The gRPC face of the V2 protocol: KServe's and Triton's `inference.GRPCInferenceService`
//! (what `tritonclient.grpc` speaks), on its own port (`--grpc-listen`), over the same state,
//! access gate, limits and error table as the HTTP routes.

mod accept;
pub mod codec;
mod gate;
mod service;
pub mod status;

pub mod convert;

/// The messages and service generated from `proto/inference.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("inference");
}

pub use accept::serve;
pub use service::Inference;

/// How the gRPC listener behaves.
#[derive(Debug, Clone)]
pub struct GrpcSettings {
    /// Largest request message accepted (after decompression), in bytes: `--max-body-bytes`.
    pub max_message_bytes: usize,
    /// Connections served at once (past that, new ones wait in the listen queue).
    pub max_connections: usize,
}

/// What can stop the gRPC listener.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}
