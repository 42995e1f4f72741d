//! ONNX models on ONNX Runtime (cargo feature `ort`), through the `ort` crate.
//!
//! The ONNX Runtime shared library is loaded at run time, once per process: `$ORT_DYLIB_PATH`,
//! else the one in the `onnxruntime` Python wheel (see [`dylib`]). Nothing is downloaded or
//! linked at build time. The library must be ONNX Runtime 1.17 or newer (the API version the
//! `ort` crate asks for without `api-*` features); `ort` 2.0.0-rc.15 was made for 1.31.
//!
//! Models get the same treatment as on tract where the two would differ: a final `ZipMap`
//! answers the `[N, classes]` FP32 probabilities instead of a list of maps (see [`zipmap`]).
//! Each session runs on one intra-op thread by default: the server runs its own instances.

mod convert;
pub mod dylib;
mod zipmap;

use crate::{Backend, BackendError, Session, Signature, TensorInfo};
use ::ort::environment::Environment;
use ::ort::session::{builder::GraphOptimizationLevel, Session as OrtSession, SessionInputValue};
use lectern_core::{Tensor, TensorData};
use std::sync::{Arc, Mutex, OnceLock};

/// Intra-op threads per session unless told otherwise.
pub const DEFAULT_INTRA_THREADS: usize = 1;

/// The process's ONNX Runtime environment (ONNX Runtime allows one), or why it failed.
static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Loads the ONNX Runtime library (once) and returns the environment.
pub fn environment() -> Result<&'static Environment, BackendError> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = dylib::locate()?;
            let builder = ::ort::init_from(&path)
                .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?;
            tracing::info!(library = %path.display(), "loaded ONNX Runtime");
            let environment =
                builder.with_name("lectern").build().map_err(|e| format!("cannot start ONNX Runtime: {e}"))?;
            // ONNX Runtime's failures come back as errors, which the caller reports; its own log
            // would print them again on stderr. `ORT_LOG=warning` (or info, ...) brings it back.
            if std::env::var_os("ORT_LOG").is_none() {
                environment.set_log_level(::ort::logging::LogLevel::Fatal);
            }
            Ok(environment)
        })
        .as_ref()
        .map_err(|e| BackendError::Load(e.clone()))
}

/// An ONNX model, prepared by ONNX Runtime.
pub struct OrtBackend {
    /// The model as ONNX Runtime reads it (after the ZipMap rewrite).
    model: Arc<[u8]>,
    intra_threads: usize,
    signature: Signature,
    /// The session made while loading, handed to the first instance.
    first: Mutex<Option<OrtSession>>,
}

impl OrtBackend {
    /// Loads a model from the bytes of an `.onnx` file, one intra-op thread per session.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BackendError> {
        Self::from_bytes_with_threads(bytes, DEFAULT_INTRA_THREADS)
    }

    /// Loads a model whose sessions each use `intra_threads` threads (at least one).
    pub fn from_bytes_with_threads(bytes: &[u8], intra_threads: usize) -> Result<Self, BackendError> {
        let model: Arc<[u8]> = zipmap::replace_zipmaps(bytes).map_err(BackendError::Load)?.into();
        let intra_threads = intra_threads.max(1);
        let session = new_session(&model, intra_threads)?;
        let infos = |outlets: &[::ort::value::Outlet]| {
            outlets
                .iter()
                .map(|o| {
                    let (datatype, shape) = convert::describe(o.name(), o.dtype()).map_err(BackendError::Load)?;
                    Ok(TensorInfo { name: o.name().to_string(), datatype, shape })
                })
                .collect::<Result<Vec<_>, BackendError>>()
        };
        let signature = Signature { inputs: infos(session.inputs())?, outputs: infos(session.outputs())? };
        Ok(OrtBackend { model, intra_threads, signature, first: Mutex::new(Some(session)) })
    }
}

fn load<R>(e: ::ort::Error<R>) -> BackendError {
    BackendError::Load(format!("ONNX Runtime: {e}"))
}

fn new_session(model: &[u8], intra_threads: usize) -> Result<OrtSession, BackendError> {
    OrtSession::builder(environment()?)
        .map_err(load)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(load)?
        .with_intra_threads(intra_threads)
        .map_err(load)?
        .with_inter_threads(1)
        .map_err(load)?
        .with_intra_op_spinning(false)
        .map_err(load)?
        .commit_from_memory(model)
        .map_err(load)
}

impl Backend for OrtBackend {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn session(&self) -> Result<Box<dyn Session>, BackendError> {
        let first = self.first.lock().unwrap_or_else(|e| e.into_inner()).take();
        let session = match first {
            Some(session) => session,
            None => new_session(&self.model, self.intra_threads)?,
        };
        Ok(Box::new(OrtInstance { session, outputs: self.signature.outputs.clone() }))
    }
}

struct OrtInstance {
    session: OrtSession,
    outputs: Vec<TensorInfo>,
}

impl Session for OrtInstance {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let rows: Vec<usize> = inputs.iter().map(|t| t.shape.first().copied().unwrap_or(1)).collect();
        let values = inputs
            .into_iter()
            .map(|t| convert::to_ort(t).map(SessionInputValue::from))
            .collect::<Result<Vec<_>, _>>()?;
        let results = match self.session.run(&values[..]) {
            Ok(results) => results,
            // Some ONNX-ML kernels (ArrayFeatureExtractor, behind skl2onnx's labels) refuse a batch
            // of no rows, which tract answers with empty outputs: answer those too.
            Err(e) => {
                return empty_outputs(&self.outputs, &rows).ok_or_else(|| BackendError::Inference(format!("{e}")))
            }
        };
        if results.len() != self.outputs.len() {
            return Err(BackendError::Inference(format!(
                "ONNX Runtime gave {} outputs, the model declares {}",
                results.len(),
                self.outputs.len()
            )));
        }
        results.values().zip(&self.outputs).map(|(value, info)| convert::from_ort(&info.name, &value)).collect()
    }
}

/// Empty outputs for a batch of no rows (every input `[0, ...]`), when every output's shape
/// is `[N, known...]`; `None` otherwise.
fn empty_outputs(outputs: &[TensorInfo], rows: &[usize]) -> Option<Vec<Tensor>> {
    if rows.is_empty() || rows.iter().any(|&r| r != 0) {
        return None;
    }
    outputs
        .iter()
        .map(|info| {
            let (batch, rest) = info.shape.split_first()?;
            let rest: Vec<usize> = rest.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<_>>()?;
            (*batch < 0).then(|| Tensor {
                name: info.name.clone(),
                shape: std::iter::once(0).chain(rest).collect(),
                data: TensorData::empty(info.datatype),
            })
        })
        .collect()
}
