//! Conversions between Lectern tensors and tract's.

use crate::{BackendError, TensorInfo};
use lectern_core::{DataType, Tensor as LTensor, TensorData};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{DimFact, GenericFactoid, InferenceFact, ShapeFactoid};

/// Replaces every unknown dimension of an input fact with the symbol `symbol_for(axis)`, so
/// that the model can be typed and optimised once for any size.
pub fn with_free_dims(mut fact: InferenceFact, symbol_for: impl Fn(usize) -> Symbol) -> InferenceFact {
    if let GenericFactoid::Only(_) = fact.shape.rank() {
        let dims: TVec<DimFact> = fact
            .shape
            .dims()
            .enumerate()
            .map(|(axis, d)| match d {
                GenericFactoid::Any => DimFact::from(TDim::from(symbol_for(axis))),
                known => known.clone(),
            })
            .collect();
        fact.shape = ShapeFactoid::closed(dims);
    }
    fact
}

/// The protocol datatype of a tract datum type, if the protocol has one.
pub fn datatype_of(dt: DatumType) -> Option<DataType> {
    Some(match dt {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::U8,
        DatumType::U16 => DataType::U16,
        DatumType::U32 => DataType::U32,
        DatumType::U64 => DataType::U64,
        DatumType::I8 => DataType::I8,
        DatumType::I16 => DataType::I16,
        DatumType::I32 => DataType::I32,
        DatumType::I64 => DataType::I64,
        DatumType::F16 => DataType::F16,
        DatumType::F32 => DataType::F32,
        DatumType::F64 => DataType::F64,
        DatumType::String => DataType::Bytes,
        // tract types some integer results (labels after a Cast) as symbolic dims.
        DatumType::TDim => DataType::I64,
        _ => return None,
    })
}

/// Describes the given outlets of a typed model under the names of the original graph.
pub fn infos(model: &TypedModel, outlets: &[OutletId], names: &[String]) -> TractResult<Vec<TensorInfo>> {
    outlets
        .iter()
        .enumerate()
        .map(|(ix, outlet)| {
            let fact = model.outlet_fact(*outlet)?;
            let name = names.get(ix).cloned().unwrap_or_else(|| model.node(outlet.node).name.clone());
            let datatype = datatype_of(fact.datum_type).ok_or_else(|| {
                TractError::msg(format!("'{name}' has type {:?}, which the V2 protocol cannot carry", fact.datum_type))
            })?;
            let shape = fact.shape.iter().map(|d| d.to_i64().unwrap_or(-1)).collect();
            Ok(TensorInfo { name, datatype, shape })
        })
        .collect()
}

fn array<T: Datum>(shape: &[usize], data: Vec<T>) -> TValue {
    tract_ndarray::ArrayD::from_shape_vec(tract_ndarray::IxDyn(shape), data)
        .expect("shape checked against data length")
        .into_tensor()
        .into_tvalue()
}

/// A Lectern tensor as a tract value (moves the data, no copy for numbers).
pub fn to_tract(tensor: LTensor) -> Result<TValue, BackendError> {
    let shape = tensor.shape;
    Ok(match tensor.data {
        TensorData::Bool(v) => array(&shape, v),
        TensorData::U8(v) => array(&shape, v),
        TensorData::U16(v) => array(&shape, v),
        TensorData::U32(v) => array(&shape, v),
        TensorData::U64(v) => array(&shape, v),
        TensorData::I8(v) => array(&shape, v),
        TensorData::I16(v) => array(&shape, v),
        TensorData::I32(v) => array(&shape, v),
        TensorData::I64(v) => array(&shape, v),
        TensorData::F16(v) => array(&shape, v),
        TensorData::F32(v) => array(&shape, v),
        TensorData::F64(v) => array(&shape, v),
        TensorData::Bytes(v) => {
            let strings = v.into_iter().map(String::from_utf8).collect::<Result<Vec<_>, _>>().map_err(|_| {
                BackendError::BadInput {
                    input: tensor.name.clone(),
                    message: "BYTES elements must be UTF-8 text for this model".into(),
                }
            })?;
            array(&shape, strings)
        }
    })
}

fn slice<T: Datum + Clone>(tensor: &Tensor) -> TractResult<Vec<T>> {
    Ok(tensor.try_as_plain_ram()?.as_slice::<T>()?.to_vec())
}

/// A tract value as a Lectern tensor named `name`.
pub fn from_tract(name: &str, value: &TValue) -> Result<LTensor, BackendError> {
    let fail = |e: TractError| BackendError::Inference(format!("output '{name}': {e:#}"));
    let data = match value.datum_type() {
        DatumType::Bool => TensorData::Bool(slice(value).map_err(fail)?),
        DatumType::U8 => TensorData::U8(slice(value).map_err(fail)?),
        DatumType::U16 => TensorData::U16(slice(value).map_err(fail)?),
        DatumType::U32 => TensorData::U32(slice(value).map_err(fail)?),
        DatumType::U64 => TensorData::U64(slice(value).map_err(fail)?),
        DatumType::I8 => TensorData::I8(slice(value).map_err(fail)?),
        DatumType::I16 => TensorData::I16(slice(value).map_err(fail)?),
        DatumType::I32 => TensorData::I32(slice(value).map_err(fail)?),
        DatumType::I64 => TensorData::I64(slice(value).map_err(fail)?),
        DatumType::F16 => TensorData::F16(slice(value).map_err(fail)?),
        DatumType::F32 => TensorData::F32(slice(value).map_err(fail)?),
        DatumType::F64 => TensorData::F64(slice(value).map_err(fail)?),
        DatumType::String => TensorData::Bytes(
            value
                .try_as_plain_ram()
                .map_err(fail)?
                .as_slice::<String>()
                .map_err(fail)?
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
        ),
        DatumType::TDim => TensorData::I64(slice::<i64>(&*value.cast_to::<i64>().map_err(fail)?).map_err(fail)?),
        other => {
            return Err(BackendError::Inference(format!(
                "output '{name}' has type {other:?}, which the V2 protocol cannot carry"
            )))
        }
    };
    Ok(LTensor { name: name.to_string(), shape: value.shape().to_vec(), data })
}
