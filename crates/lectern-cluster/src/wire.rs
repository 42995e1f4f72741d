//! What travels between a gateway and a worker on one inference: the request as a V2 body
//! with every tensor binary (the binary tensor extension, decoded by the worker with the very
//! decoder the HTTP server uses), and the answer with every output binary, the outputs the
//! caller wanted as JSON named in a header so the gateway can answer as asked.

use bytes::Bytes;
use lectern_core::protocol::{decode_binary, encode_binary, MAX_ELEMENTS};
use lectern_core::{element_count, DataType, ErrorCode, InferRequest, InferResponse, ResponseOutput, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The length of the JSON part of a body (as the V2 HTTP header).
pub const JSON_LENGTH: &str = "Inference-Header-Content-Length";
/// The version the request asks for (absent: the model's default).
pub const VERSION: &str = "Lectern-Version";
/// On an answer: the error code name; the body is the message.
pub const ERROR: &str = "Lectern-Error";
/// On an answer: which outputs the caller wanted as binary (`1`) or JSON (`0`), in order.
pub const BINARY: &str = "Lectern-Binary";
/// On an answer: the worker that computed it.
pub const WORKER: &str = "Lectern-Worker";

/// A request body: a JSON header whose tensors are all binary, then their bytes.
pub fn encode_request(request: &InferRequest) -> (Vec<u8>, usize) {
    let mut binary = Vec::new();
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for tensor in &request.inputs {
        let before = binary.len();
        encode_binary(&tensor.data, &mut binary);
        inputs.push(json!({
            "name": tensor.name,
            "datatype": tensor.datatype().as_str(),
            "shape": tensor.shape,
            "parameters": {"binary_data_size": binary.len() - before},
        }));
    }
    let outputs: Vec<Value> = request
        .outputs
        .iter()
        .map(|o| {
            let mut parameters = Map::new();
            if let Some(b) = o.binary {
                parameters.insert("binary_data".into(), b.into());
            }
            if let Some(k) = o.classification {
                parameters.insert("classification".into(), k.into());
            }
            json!({"name": o.name, "parameters": parameters})
        })
        .collect();
    let mut parameters = Map::new();
    parameters.insert("binary_data_output".into(), request.binary_output.into());
    if request.priority > 0 {
        parameters.insert("priority".into(), request.priority.into());
    }
    if request.timeout_us > 0 {
        parameters.insert("timeout".into(), request.timeout_us.into());
    }
    if request.refuse_over_length {
        parameters.insert("truncate".into(), false.into());
    }
    let mut header = Map::new();
    if let Some(id) = &request.id {
        header.insert("id".into(), id.clone().into());
    }
    header.insert("parameters".into(), parameters.into());
    header.insert("inputs".into(), inputs.into());
    if !outputs.is_empty() {
        header.insert("outputs".into(), outputs.into());
    }
    let mut body = serde_json::to_vec(&header).expect("serialising to a Vec cannot fail");
    let json_len = body.len();
    body.extend_from_slice(&binary);
    (body, json_len)
}

#[derive(Serialize, Deserialize)]
struct ResponseHeader {
    model_name: String,
    model_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    outputs: Vec<OutputHeader>,
}

#[derive(Serialize, Deserialize)]
struct OutputHeader {
    name: String,
    datatype: String,
    shape: Vec<usize>,
    size: usize,
}

/// An answer body (every output binary) and the [`BINARY`] header value.
pub fn encode_response(response: &InferResponse) -> (Vec<u8>, usize, String) {
    let mut binary = Vec::new();
    let mut outputs = Vec::with_capacity(response.outputs.len());
    for output in &response.outputs {
        let before = binary.len();
        encode_binary(&output.tensor.data, &mut binary);
        outputs.push(OutputHeader {
            name: output.tensor.name.clone(),
            datatype: output.tensor.datatype().as_str().to_string(),
            shape: output.tensor.shape.clone(),
            size: binary.len() - before,
        });
    }
    let header = ResponseHeader {
        model_name: response.model_name.clone(),
        model_version: response.model_version.clone(),
        id: response.id.clone(),
        outputs,
    };
    let mut body = serde_json::to_vec(&header).expect("serialising to a Vec cannot fail");
    let json_len = body.len();
    body.extend_from_slice(&binary);
    let flags: Vec<&str> = response.outputs.iter().map(|o| if o.binary { "1" } else { "0" }).collect();
    (body, json_len, flags.join(","))
}

/// An answer that is not what a worker sends.
#[derive(Debug, thiserror::Error)]
#[error("malformed answer from a worker: {0}")]
pub struct Malformed(pub String);

/// Decodes an answer body written by [`encode_response`].
pub fn decode_response(body: &Bytes, json_len: usize, binary_flags: &str) -> Result<InferResponse, Malformed> {
    let bad = |m: String| Malformed(m);
    if json_len > body.len() {
        return Err(bad(format!("header length {json_len} is past the body's {} bytes", body.len())));
    }
    let header: ResponseHeader = serde_json::from_slice(&body[..json_len]).map_err(|e| bad(e.to_string()))?;
    let flags: Vec<bool> = binary_flags.split(',').filter(|f| !f.is_empty()).map(|f| f == "1").collect();
    if flags.len() != header.outputs.len() {
        return Err(bad(format!("{} binary flags for {} outputs", flags.len(), header.outputs.len())));
    }
    let mut rest = &body[json_len..];
    let mut outputs = Vec::with_capacity(header.outputs.len());
    for (output, binary) in header.outputs.into_iter().zip(flags) {
        let datatype: DataType = output.datatype.parse().map_err(|e| bad(format!("{e}")))?;
        if output.size > rest.len() {
            return Err(bad(format!("output '{}' is cut off", output.name)));
        }
        let (mine, tail) = rest.split_at(output.size);
        rest = tail;
        let count = element_count(&output.shape)
            .filter(|&n| n as u64 <= MAX_ELEMENTS)
            .ok_or_else(|| bad(format!("output '{}' has too large a shape", output.name)))?;
        let data = decode_binary(datatype, mine, count).map_err(bad)?;
        if data.len() != count {
            return Err(bad(format!("output '{}' has {} elements, its shape says {count}", output.name, data.len())));
        }
        let tensor = Tensor { name: output.name, shape: output.shape, data };
        outputs.push(ResponseOutput { tensor, binary });
    }
    if !rest.is_empty() {
        return Err(bad("bytes left over after the last output".into()));
    }
    Ok(InferResponse { model_name: header.model_name, model_version: header.model_version, id: header.id, outputs })
}

/// The error code an answer's [`ERROR`] header names (unknown names: internal).
pub fn error_code(name: &str) -> ErrorCode {
    ErrorCode::from_name(name).unwrap_or(ErrorCode::Internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lectern_core::{decode_request, RequestedOutput, TensorData};

    #[test]
    fn a_request_reaches_the_worker_as_it_was_decoded_at_the_gateway() {
        let request = InferRequest {
            id: Some("r1".into()),
            inputs: vec![
                Tensor { name: "x".into(), shape: vec![2, 2], data: TensorData::F32(vec![1.0, 2.5, -3.0, 4.0]) },
                Tensor {
                    name: "t".into(),
                    shape: vec![2],
                    data: TensorData::Bytes(vec![b"hi".to_vec(), "é".as_bytes().to_vec()]),
                },
            ],
            outputs: vec![
                RequestedOutput { name: "a".into(), binary: Some(true), classification: None },
                RequestedOutput { name: "b".into(), binary: None, classification: Some(2) },
            ],
            binary_output: true,
            priority: 2,
            timeout_us: 5000,
            refuse_over_length: true,
        };
        let (body, json_len) = encode_request(&request);
        assert_eq!(decode_request(&body, Some(json_len)).unwrap(), request);
        let plain = InferRequest { inputs: request.inputs.clone(), ..Default::default() };
        let (body, json_len) = encode_request(&plain);
        assert_eq!(decode_request(&body, Some(json_len)).unwrap(), plain);
    }

    #[test]
    fn an_answer_keeps_its_tensors_and_which_were_wanted_binary() {
        let response = InferResponse {
            model_name: "m".into(),
            model_version: "3".into(),
            id: None,
            outputs: vec![
                ResponseOutput {
                    tensor: Tensor { name: "p".into(), shape: vec![1, 3], data: TensorData::F32(vec![0.1, 0.2, 0.7]) },
                    binary: false,
                },
                ResponseOutput {
                    tensor: Tensor { name: "l".into(), shape: vec![1], data: TensorData::Bytes(vec![b"cat".to_vec()]) },
                    binary: true,
                },
            ],
        };
        let (body, json_len, flags) = encode_response(&response);
        assert_eq!(flags, "0,1");
        let back = decode_response(&Bytes::from(body.clone()), json_len, &flags).unwrap();
        assert_eq!(back.model_version, "3");
        assert_eq!(back.outputs[0].tensor, response.outputs[0].tensor);
        assert!(!back.outputs[0].binary && back.outputs[1].binary);
        assert_eq!(back.outputs[1].tensor, response.outputs[1].tensor);
        assert!(decode_response(&Bytes::from(body.clone()), json_len, "1").is_err(), "flags must match");
        assert!(decode_response(&Bytes::from(body[..body.len() - 1].to_vec()), json_len, &flags).is_err());
        assert!(decode_response(&Bytes::from_static(b"garbage"), 7, "").is_err());
        assert!(decode_response(&Bytes::from_static(b"{}"), 99, "").is_err());
    }
}
