//! Conversions between Lectern tensors and ONNX Runtime values.

use crate::BackendError;
use ::ort::value::{DynValue, Tensor, TensorElementType, ValueType};
use lectern_core::{DataType, Tensor as LTensor, TensorData};

/// The protocol datatype of an ONNX Runtime element type, if the protocol has one.
pub fn datatype_of(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::U8,
        TensorElementType::Uint16 => DataType::U16,
        TensorElementType::Uint32 => DataType::U32,
        TensorElementType::Uint64 => DataType::U64,
        TensorElementType::Int8 => DataType::I8,
        TensorElementType::Int16 => DataType::I16,
        TensorElementType::Int32 => DataType::I32,
        TensorElementType::Int64 => DataType::I64,
        TensorElementType::Float16 => DataType::F16,
        TensorElementType::Float32 => DataType::F32,
        TensorElementType::Float64 => DataType::F64,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

/// The datatype and shape (`-1` for a free dimension) of a model input or output.
pub fn describe(name: &str, ty: &ValueType) -> Result<(DataType, Vec<i64>), String> {
    match ty {
        ValueType::Tensor { ty, shape, .. } => match datatype_of(*ty) {
            Some(datatype) => Ok((datatype, shape.iter().map(|&d| if d < 0 { -1 } else { d }).collect())),
            None => Err(format!("'{name}' has type {ty}, which the V2 protocol cannot carry")),
        },
        other => Err(format!("'{name}' is a {other:?}, not a tensor: the V2 protocol cannot carry it")),
    }
}

fn owned<T: ::ort::value::PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static>(
    shape: Vec<usize>,
    data: Vec<T>,
) -> ::ort::Result<DynValue> {
    Tensor::from_array((shape, data)).map(Tensor::into_dyn)
}

/// A Lectern tensor as an ONNX Runtime value (moves the data, no copy for numbers).
pub fn to_ort(tensor: LTensor) -> Result<DynValue, BackendError> {
    let name = tensor.name;
    let shape = tensor.shape;
    let value = match tensor.data {
        TensorData::Bool(v) => owned(shape, v),
        TensorData::U8(v) => owned(shape, v),
        TensorData::U16(v) => owned(shape, v),
        TensorData::U32(v) => owned(shape, v),
        TensorData::U64(v) => owned(shape, v),
        TensorData::I8(v) => owned(shape, v),
        TensorData::I16(v) => owned(shape, v),
        TensorData::I32(v) => owned(shape, v),
        TensorData::I64(v) => owned(shape, v),
        TensorData::F16(v) => owned(shape, v),
        TensorData::F32(v) => owned(shape, v),
        TensorData::F64(v) => owned(shape, v),
        TensorData::Bytes(v) => {
            // ONNX Runtime strings are C strings: UTF-8 text (as tract requires) without NUL.
            let strings = v
                .into_iter()
                .map(String::from_utf8)
                .collect::<Result<Vec<_>, _>>()
                .ok()
                .filter(|s| s.iter().all(|s| !s.contains('\0')))
                .ok_or_else(|| BackendError::BadInput {
                    input: name.clone(),
                    message: "BYTES elements must be UTF-8 text without NUL for this model".into(),
                })?;
            Tensor::from_string_array((shape, &strings[..])).map(Tensor::into_dyn)
        }
    };
    value.map_err(|e| BackendError::BadInput { input: name, message: format!("ONNX Runtime refused it: {e}") })
}

/// An ONNX Runtime value as a Lectern tensor named `name`.
pub fn from_ort(name: &str, value: &DynValue) -> Result<LTensor, BackendError> {
    let fail = |e: ::ort::Error| BackendError::Inference(format!("output '{name}': {e}"));
    let ValueType::Tensor { ty, shape, .. } = value.dtype() else {
        return Err(BackendError::Inference(format!(
            "output '{name}' is a {:?}, not a tensor: the V2 protocol cannot carry it",
            value.dtype()
        )));
    };
    macro_rules! numbers {
        ($variant:ident, $t:ty) => {
            TensorData::$variant(value.try_extract_tensor::<$t>().map_err(fail)?.1.to_vec())
        };
    }
    let data = match ty {
        TensorElementType::Bool => numbers!(Bool, bool),
        TensorElementType::Uint8 => numbers!(U8, u8),
        TensorElementType::Uint16 => numbers!(U16, u16),
        TensorElementType::Uint32 => numbers!(U32, u32),
        TensorElementType::Uint64 => numbers!(U64, u64),
        TensorElementType::Int8 => numbers!(I8, i8),
        TensorElementType::Int16 => numbers!(I16, i16),
        TensorElementType::Int32 => numbers!(I32, i32),
        TensorElementType::Int64 => numbers!(I64, i64),
        TensorElementType::Float16 => numbers!(F16, half::f16),
        TensorElementType::Float32 => numbers!(F32, f32),
        TensorElementType::Float64 => numbers!(F64, f64),
        TensorElementType::String => TensorData::Bytes(
            value.try_extract_strings().map_err(fail)?.1.into_iter().map(String::into_bytes).collect(),
        ),
        other => {
            return Err(BackendError::Inference(format!(
                "output '{name}' has type {other}, which the V2 protocol cannot carry"
            )))
        }
    };
    let shape = shape.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
    Ok(LTensor { name: name.to_string(), shape, data })
}
