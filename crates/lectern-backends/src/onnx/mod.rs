//! ONNX models on tract, a pure-Rust engine.

mod convert;
mod rewrite;

use crate::{Backend, BackendError, Session, Signature, TensorInfo};
use lectern_core::Tensor;
use std::sync::Arc;
use tract_onnx::prelude::*;

type Plan = TypedSimplePlan;

/// An ONNX model, optimised and ready to run.
pub struct OnnxBackend {
    plan: Arc<Plan>,
    signature: Signature,
}

impl OnnxBackend {
    /// Loads a model from the bytes of an `.onnx` file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BackendError> {
        let load = |e: TractError| BackendError::Load(format!("{e:#}"));
        let onnx = tract_onnx::onnx().with_ignore_output_shapes(true).with_ignore_output_types(true);
        let mut proto = onnx.proto_model_for_read(&mut &*bytes).map_err(load)?;
        let graph = proto.graph.as_mut().ok_or_else(|| BackendError::Load("the file has no graph".into()))?;
        rewrite::make_runnable(graph).map_err(BackendError::Load)?;
        let input_names = rewrite::input_names(graph);
        let output_names: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();

        let mut model = onnx.model_for_proto_model(&proto).map_err(load)?;
        // Unnamed free dimensions: the first one of every input is the shared batch size
        // `N`; every other one is a size of its own.
        for ix in 0..model.inputs.len() {
            let fact = model.input_fact(ix).map_err(load)?.clone();
            let symbols = model.symbols.clone();
            let fact = convert::with_free_dims(fact, |axis| {
                symbols.sym(&if axis == 0 { "N".to_string() } else { format!("lectern_in{ix}_d{axis}") })
            });
            model.set_input_fact(ix, fact).map_err(load)?;
        }
        let typed = model.into_typed().map_err(load)?;
        let signature = Signature {
            inputs: convert::infos(&typed, typed.input_outlets().map_err(load)?, &input_names).map_err(load)?,
            outputs: convert::infos(&typed, typed.output_outlets().map_err(load)?, &output_names).map_err(load)?,
        };
        let plan = typed.into_optimized().map_err(load)?.into_runnable().map_err(load)?;
        Ok(OnnxBackend { plan, signature })
    }
}

impl Backend for OnnxBackend {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn session(&self) -> Result<Box<dyn Session>, BackendError> {
        let state = self.plan.spawn().map_err(|e| BackendError::Load(format!("{e:#}")))?;
        Ok(Box::new(OnnxSession { state, outputs: self.signature.outputs.clone() }))
    }
}

struct OnnxSession {
    state: TypedSimpleState,
    outputs: Vec<TensorInfo>,
}

impl Session for OnnxSession {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let values = inputs.into_iter().map(convert::to_tract).collect::<Result<TVec<_>, _>>()?;
        let results = self.state.run(values).map_err(|e| BackendError::Inference(format!("{e:#}")))?;
        results.into_iter().zip(&self.outputs).map(|(value, info)| convert::from_tract(&info.name, &value)).collect()
    }
}
