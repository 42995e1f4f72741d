//! Inference engines behind one small trait.
//!
//! A [`Backend`] is a loaded, prepared model (load once); a [`Session`] is the per-instance
//! state that runs it (run many). Both are synchronous: the runtime calls them from its own
//! threads, never from the async executor.

#[cfg(feature = "encoder")]
pub mod encoder;
#[cfg(feature = "french")]
pub mod french;
pub mod ocr;
pub mod onnx;
#[cfg(feature = "ort")]
pub mod ort;

use lectern_core::{DataType, Tensor};
use std::sync::Arc;

/// The name, datatype and shape of one model input or output; `-1` marks a free dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

/// What a model takes and gives, in the order the backend expects and returns them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Signature {
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
}

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The model file is unusable (corrupt, unsupported operator, ...).
    #[error("cannot load model: {0}")]
    Load(String),
    /// The engine refused or failed on these inputs.
    #[error("inference failed: {0}")]
    Inference(String),
    /// An input's elements cannot be given to the engine (e.g. BYTES that are not UTF-8).
    #[error("input '{input}': {message}")]
    BadInput { input: String, message: String },
    /// Something this build or this machine lacks (a cargo feature, a system package); the
    /// message names what to install. A server refuses to start with such a model (see
    /// [`check_available`]).
    #[error("cannot load model, this build or machine lacks something: {0}")]
    Missing(String),
}

/// What a build without the `french` feature says of a French analysis model.
const FRENCH_NOT_BUILT: &str = "engine 'french' is not in this build: build Lectern with the cargo feature `french`";

/// What a text encoder tells the APIs built on it (`/v1/embeddings`, collections).
#[derive(Debug, Clone, PartialEq)]
pub struct TextEncoding {
    /// Most tokens per text, special tokens included; longer texts are truncated.
    pub max_tokens: usize,
    /// Length of each vector.
    pub dimension: usize,
    /// Vectors have unit length.
    pub normalized: bool,
    /// `mean`, `cls` or `max`.
    pub pooling: &'static str,
}

/// A prepared model, shared by all its instances.
pub trait Backend: Send + Sync {
    /// Inputs and outputs, in the order `Session::run` takes and returns them.
    fn signature(&self) -> &Signature;
    /// A new instance with its own working state.
    fn session(&self) -> Result<Box<dyn Session>, BackendError>;
    /// The platform model metadata names (`onnx`, `sentence_transformers`).
    fn platform(&self) -> &'static str {
        "onnx"
    }
    /// For a text encoder, what its texts and vectors are.
    fn text(&self) -> Option<&TextEncoding> {
        None
    }
    /// Checks one request's inputs (in signature order, already checked against the
    /// signature) before they are batched with other requests' inputs, so that one bad
    /// request cannot fail a batch.
    fn check(&self, _inputs: &[Tensor]) -> Result<(), BackendError> {
        Ok(())
    }
    /// The batch size when the model's config gives none; `None`: from the signature. Engines
    /// that read one item at a time say 0, so that one client's bad item never fails another's.
    fn default_max_batch_size(&self) -> Option<usize> {
        None
    }
}

/// One instance of a model; not shared between threads.
pub trait Session: Send {
    /// Runs the model. `inputs` are in signature order and already checked against it;
    /// the result holds every output, in signature order.
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError>;
}

/// The engine a model runs on unless its config names another.
pub const DEFAULT_ENGINE: &str = "tract";

/// The engines this build can run ONNX models on, by the name a model's config gives them (OCR and
/// French analysis models name `tesseract` and `french`, see [`load_backend`]).
pub const ENGINES: &[&str] = &[
    "tract",
    #[cfg(feature = "ort")]
    "ort",
];

/// Loads a model: a text encoder's bundle (a tar of a sentence-transformers folder, see
/// [`encoder::bundle`]) on candle, whatever `engine` says; else an ONNX model on the named
/// engine: `"tract"` (pure Rust, the default) or `"ort"` (ONNX Runtime, in builds with the `ort`
/// cargo feature); `"tesseract"` reads images (OCR, its file is the version's `model.toml`, see
/// [`ocr`]) and `"french"` analyses French text (its file is a bundle of a spaCy model folder).
pub fn load_backend(engine: &str, bytes: &[u8]) -> Result<Arc<dyn Backend>, BackendError> {
    match engine {
        "tesseract" => return Ok(Arc::new(ocr::OcrBackend::from_bytes(bytes)?)),
        #[cfg(feature = "french")]
        "french" => return Ok(Arc::new(french::FrenchBackend::from_bundle(bytes)?)),
        #[cfg(not(feature = "french"))]
        "french" => return Err(BackendError::Missing(FRENCH_NOT_BUILT.into())),
        _ => {}
    }
    #[cfg(feature = "encoder")]
    if encoder::bundle::is_bundle(bytes) {
        return Ok(Arc::new(encoder::EncoderBackend::from_bundle(bytes)?));
    }
    match engine {
        "tract" => Ok(Arc::new(onnx::OnnxBackend::from_bytes(bytes)?)),
        #[cfg(feature = "ort")]
        "ort" => Ok(Arc::new(ort::OrtBackend::from_bytes(bytes)?)),
        #[cfg(not(feature = "ort"))]
        "ort" => Err(BackendError::Load(
            "engine 'ort' (ONNX Runtime) is not in this build: build Lectern with the cargo feature \
             `ort` (lectern-backends/ort)"
                .into(),
        )),
        other => Err(BackendError::Load(format!("unknown engine '{other}' (this build has: {})", ENGINES.join(", ")))),
    }
}

/// Checks, without loading the model, that this build and machine have what `engine` needs for
/// it: an OCR model's language data and the `ocr` feature, the `french` feature. Other engines
/// (and other problems) answer when the model loads.
pub fn check_available(engine: &str, bytes: &[u8]) -> Result<(), BackendError> {
    match engine {
        "tesseract" => ocr::check_available(bytes),
        "french" if cfg!(not(feature = "french")) => Err(BackendError::Missing(FRENCH_NOT_BUILT.into())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_are_chosen_by_name() {
        let unknown = load_backend("tensorrt", b"").err().expect("unknown engine").to_string();
        assert!(unknown.contains("unknown engine 'tensorrt'"), "{unknown}");
        assert!(load_backend("tract", b"not a model").is_err());
        if !cfg!(feature = "ort") {
            let missing = load_backend("ort", b"").err().expect("no ort").to_string();
            assert!(missing.contains("cargo feature `ort`"), "{missing}");
        }
    }
}
