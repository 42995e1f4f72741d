//! Protobuf messages to and from Lectern's requests and answers. Tensor data arrives either
//! as raw little-endian bytes (`raw_input_contents`, what `tritonclient` sends) or in the typed
//! lists of `InferTensorContents`; answers always carry raw bytes (`raw_output_contents`), as
//! Triton's do.

use crate::pb;
use crate::pb::infer_parameter::ParameterChoice;
use crate::pb::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use crate::pb::model_infer_response::InferOutputTensor;
use lectern_core::protocol::{bad_input, decode_binary, encode_binary};
use lectern_core::{check_inputs, input_tensor, DataType, InferRequest, InferResponse, ProtocolError, RequestedOutput};
use lectern_core::{Tensor, TensorData};
use std::collections::HashMap;

/// The request's parameters Lectern reads (`priority`, `timeout` in microseconds, `truncate`);
/// as over HTTP, one of another type (or a negative number) counts as absent, and parameters
/// Lectern does not know are ignored.
fn parameter_u64(parameters: &HashMap<String, pb::InferParameter>, key: &str) -> u64 {
    match parameters.get(key).and_then(|p| p.parameter_choice.as_ref()) {
        Some(ParameterChoice::Uint64Param(n)) => *n,
        Some(ParameterChoice::Int64Param(n)) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    }
}

fn parameter_bool(parameters: &HashMap<String, pb::InferParameter>, key: &str) -> Option<bool> {
    match parameters.get(key)?.parameter_choice {
        Some(ParameterChoice::BoolParam(b)) => Some(b),
        _ => None,
    }
}

/// A `ModelInferRequest` as Lectern's request.
pub fn infer_request(request: pb::ModelInferRequest) -> Result<InferRequest, ProtocolError> {
    let pb::ModelInferRequest { id, parameters, inputs, outputs, raw_input_contents, .. } = request;
    if !raw_input_contents.is_empty() && raw_input_contents.len() != inputs.len() {
        return Err(ProtocolError::BadBinary(format!(
            "raw_input_contents has {} entries for {} inputs: send raw contents for every input or for none",
            raw_input_contents.len(),
            inputs.len()
        )));
    }
    let mut raw = raw_input_contents.into_iter();
    let inputs = inputs.into_iter().map(|input| input_of(input, raw.next())).collect::<Result<Vec<_>, _>>()?;
    check_inputs(&inputs)?;
    if outputs.len() > lectern_core::protocol::MAX_TENSORS_PER_REQUEST {
        return Err(ProtocolError::TooMany { what: "requested outputs", count: outputs.len() });
    }
    Ok(InferRequest {
        id: (!id.is_empty()).then_some(id),
        inputs,
        outputs: outputs.into_iter().map(requested_output).collect::<Result<_, _>>()?,
        binary_output: true,
        priority: parameter_u64(&parameters, "priority"),
        timeout_us: parameter_u64(&parameters, "timeout"),
        refuse_over_length: parameter_bool(&parameters, "truncate") == Some(false),
    })
}

fn input_of(input: InferInputTensor, raw: Option<Vec<u8>>) -> Result<Tensor, ProtocolError> {
    let InferInputTensor { name, datatype, shape, contents, .. } = input;
    input_tensor(name, &datatype, &shape, |name, datatype, expected| {
        match (raw, contents) {
            (Some(_), Some(_)) => Err("has both raw contents and typed contents".into()),
            (Some(bytes), None) => decode_binary(datatype, &bytes, expected),
            (None, Some(contents)) => typed(datatype, contents),
            (None, None) => Err("has no data: neither raw_input_contents nor contents".into()),
        }
        .map_err(|message| bad_input(name, message))
    })
}

/// Narrows the 32-bit lists of `InferTensorContents` to the datatype, refusing values out of range.
fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(values: Vec<S>, datatype: DataType) -> Result<Vec<T>, String> {
    values.into_iter().map(|v| T::try_from(v).map_err(|_| format!("{v} is out of range for {datatype}"))).collect()
}

fn typed(datatype: DataType, c: pb::InferTensorContents) -> Result<TensorData, String> {
    // the list for the datatype, and no other
    let lists = [
        (!c.bool_contents.is_empty(), "bool_contents"),
        (!c.int_contents.is_empty(), "int_contents"),
        (!c.int64_contents.is_empty(), "int64_contents"),
        (!c.uint_contents.is_empty(), "uint_contents"),
        (!c.uint64_contents.is_empty(), "uint64_contents"),
        (!c.fp32_contents.is_empty(), "fp32_contents"),
        (!c.fp64_contents.is_empty(), "fp64_contents"),
        (!c.bytes_contents.is_empty(), "bytes_contents"),
    ];
    let field = match datatype {
        DataType::Bool => "bool_contents",
        DataType::I8 | DataType::I16 | DataType::I32 => "int_contents",
        DataType::I64 => "int64_contents",
        DataType::U8 | DataType::U16 | DataType::U32 => "uint_contents",
        DataType::U64 => "uint64_contents",
        DataType::F32 => "fp32_contents",
        DataType::F64 => "fp64_contents",
        DataType::Bytes => "bytes_contents",
        DataType::F16 => return Err("FP16 data travels only as raw_input_contents".into()),
    };
    if let Some((_, other)) = lists.iter().find(|(filled, name)| *filled && *name != field) {
        return Err(format!("{datatype} data belongs in contents.{field}, not {other}"));
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(c.bool_contents),
        DataType::I8 => TensorData::I8(narrow(c.int_contents, datatype)?),
        DataType::I16 => TensorData::I16(narrow(c.int_contents, datatype)?),
        DataType::I32 => TensorData::I32(c.int_contents),
        DataType::I64 => TensorData::I64(c.int64_contents),
        DataType::U8 => TensorData::U8(narrow(c.uint_contents, datatype)?),
        DataType::U16 => TensorData::U16(narrow(c.uint_contents, datatype)?),
        DataType::U32 => TensorData::U32(c.uint_contents),
        DataType::U64 => TensorData::U64(c.uint64_contents),
        DataType::F32 => TensorData::F32(c.fp32_contents),
        DataType::F64 => TensorData::F64(c.fp64_contents),
        DataType::Bytes => TensorData::Bytes(c.bytes_contents),
        DataType::F16 => unreachable!("refused above"),
    })
}

fn requested_output(output: InferRequestedOutputTensor) -> Result<RequestedOutput, ProtocolError> {
    let classification = match output.parameters.get("classification").map(|p| &p.parameter_choice) {
        None => None,
        Some(Some(ParameterChoice::Int64Param(k))) if *k > 0 => Some(*k as usize),
        Some(Some(ParameterChoice::Uint64Param(k))) if *k > 0 => Some(*k as usize),
        Some(_) => {
            return Err(ProtocolError::BadOutput {
                output: output.name,
                message: "parameter 'classification' must be a positive integer".into(),
            })
        }
    };
    Ok(RequestedOutput { name: output.name, binary: Some(true), classification })
}

/// Lectern's answer as a `ModelInferResponse`, every output as raw bytes.
pub fn infer_response(response: InferResponse) -> pb::ModelInferResponse {
    let mut outputs = Vec::with_capacity(response.outputs.len());
    let mut raw = Vec::with_capacity(response.outputs.len());
    for output in response.outputs {
        let tensor = output.tensor;
        // BYTES (no fixed size) grows as it is written
        let mut bytes = Vec::with_capacity(tensor.datatype().element_size().unwrap_or(0) * tensor.data.len());
        encode_binary(&tensor.data, &mut bytes);
        raw.push(bytes);
        outputs.push(InferOutputTensor {
            datatype: tensor.datatype().as_str().to_string(),
            shape: tensor.shape.iter().map(|&d| d as i64).collect(),
            name: tensor.name,
            parameters: HashMap::new(),
            contents: None,
        });
    }
    pb::ModelInferResponse {
        model_name: response.model_name,
        model_version: response.model_version,
        id: response.id.unwrap_or_default(),
        parameters: HashMap::new(),
        outputs,
        raw_output_contents: raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lectern_core::ResponseOutput;

    fn input(
        name: &str,
        datatype: &str,
        shape: Vec<i64>,
        contents: Option<pb::InferTensorContents>,
    ) -> InferInputTensor {
        InferInputTensor { name: name.into(), datatype: datatype.into(), shape, parameters: HashMap::new(), contents }
    }

    fn request(inputs: Vec<InferInputTensor>, raw: Vec<Vec<u8>>) -> pb::ModelInferRequest {
        pb::ModelInferRequest { model_name: "m".into(), inputs, raw_input_contents: raw, ..Default::default() }
    }

    #[test]
    fn raw_and_typed_contents_become_tensors() {
        let raw: Vec<u8> = [1i32, -2, 3, 4].iter().flat_map(|v| v.to_le_bytes()).collect();
        let decoded = infer_request(request(vec![input("a", "INT32", vec![2, 2], None)], vec![raw])).unwrap();
        assert_eq!(decoded.inputs[0].shape, vec![2, 2]);
        assert_eq!(decoded.inputs[0].data, TensorData::I32(vec![1, -2, 3, 4]));

        let contents = pb::InferTensorContents { uint_contents: vec![0, 255], ..Default::default() };
        let decoded = infer_request(request(vec![input("b", "UINT8", vec![2], Some(contents))], vec![])).unwrap();
        assert_eq!(decoded.inputs[0].data, TensorData::U8(vec![0, 255]));

        let strings: Vec<u8> =
            [&b"hi"[..], b""].iter().flat_map(|s| [&(s.len() as u32).to_le_bytes()[..], s].concat()).collect();
        let decoded = infer_request(request(vec![input("s", "BYTES", vec![2], None)], vec![strings])).unwrap();
        assert_eq!(decoded.inputs[0].data, TensorData::Bytes(vec![b"hi".to_vec(), vec![]]));
    }

    #[test]
    fn bad_inputs_are_refused_with_their_reason() {
        let cases: Vec<(pb::ModelInferRequest, &str)> = vec![
            (request(vec![], vec![]), "no inputs"),
            (request(vec![input("a", "INT32", vec![2], None)], vec![vec![0; 4]]), "binary_data_size is 4 bytes"),
            (request(vec![input("a", "INT32", vec![2], None)], vec![]), "has no data"),
            (request(vec![input("a", "INT99", vec![1], None)], vec![vec![0; 4]]), "INT99"),
            (request(vec![input("a", "INT32", vec![-1], None)], vec![vec![]]), "negative"),
            (request(vec![input("a", "INT32", vec![1 << 40], None)], vec![vec![]]), "more than"),
            (
                request(
                    vec![input(
                        "a",
                        "INT8",
                        vec![1],
                        Some(pb::InferTensorContents { int_contents: vec![300], ..Default::default() }),
                    )],
                    vec![],
                ),
                "out of range",
            ),
            (
                request(
                    vec![input(
                        "a",
                        "FP32",
                        vec![1],
                        Some(pb::InferTensorContents { int_contents: vec![3], ..Default::default() }),
                    )],
                    vec![],
                ),
                "fp32_contents, not int_contents",
            ),
            (
                request(
                    vec![input(
                        "a",
                        "FP32",
                        vec![2],
                        Some(pb::InferTensorContents { fp32_contents: vec![3.0], ..Default::default() }),
                    )],
                    vec![],
                ),
                "needs 2 elements but 1",
            ),
            (
                request(
                    vec![input("a", "FP32", vec![1], None), input("a", "FP32", vec![1], None)],
                    vec![vec![0; 4], vec![0; 4]],
                ),
                "more than once",
            ),
            (
                request(vec![input("a", "FP32", vec![1], None), input("b", "FP32", vec![1], None)], vec![vec![0; 4]]),
                "for every input",
            ),
            (
                request(
                    vec![input(
                        "a",
                        "FP32",
                        vec![1],
                        Some(pb::InferTensorContents { fp32_contents: vec![3.0], ..Default::default() }),
                    )],
                    vec![vec![0; 4]],
                ),
                "both raw contents and typed",
            ),
        ];
        for (request, expected) in cases {
            let error = infer_request(request).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} should say {expected:?}");
        }
    }

    #[test]
    fn parameters_and_requested_outputs_are_read() {
        let mut r = request(vec![input("a", "FP32", vec![1], None)], vec![vec![0; 4]]);
        r.id = "req-1".into();
        r.parameters
            .insert("priority".into(), pb::InferParameter { parameter_choice: Some(ParameterChoice::Int64Param(2)) });
        r.parameters
            .insert("timeout".into(), pb::InferParameter { parameter_choice: Some(ParameterChoice::Uint64Param(500)) });
        let k = pb::InferParameter { parameter_choice: Some(ParameterChoice::Int64Param(3)) };
        r.outputs.push(InferRequestedOutputTensor {
            name: "probabilities".into(),
            parameters: HashMap::from([("classification".into(), k)]),
        });
        let decoded = infer_request(r).unwrap();
        assert_eq!((decoded.id.as_deref(), decoded.priority, decoded.timeout_us), (Some("req-1"), 2, 500));
        assert_eq!(decoded.outputs[0].classification, Some(3));

        let mut r = request(vec![input("a", "FP32", vec![1], None)], vec![vec![0; 4]]);
        r.parameters
            .insert("timeout".into(), pb::InferParameter { parameter_choice: Some(ParameterChoice::Int64Param(-1)) });
        r.parameters
            .insert("priority".into(), pb::InferParameter { parameter_choice: Some(ParameterChoice::BoolParam(true)) });
        let decoded = infer_request(r).unwrap();
        assert_eq!((decoded.timeout_us, decoded.priority), (0, 0));
    }

    #[test]
    fn answers_carry_raw_little_endian_contents() {
        let tensor = Tensor { name: "y".into(), shape: vec![1, 2], data: TensorData::F32(vec![1.5, -2.0]) };
        let response = InferResponse {
            model_name: "m".into(),
            model_version: "3".into(),
            id: Some("x".into()),
            outputs: vec![ResponseOutput { tensor, binary: true }],
        };
        let answer = infer_response(response);
        assert_eq!((answer.model_version.as_str(), answer.id.as_str()), ("3", "x"));
        assert_eq!((answer.outputs[0].datatype.as_str(), answer.outputs[0].shape.clone()), ("FP32", vec![1, 2]));
        let expected: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(answer.raw_output_contents, vec![expected]);
    }
}
