//! Warmup samples (`[[warmup]]` in a model's config): inputs made from the model's signature,
//! run on every instance before a version reports ready.

use lectern_backends::Signature;
use lectern_core::{DataType, Tensor, TensorData, WarmupInputs, WarmupSpec};

/// Most elements a warmup sample may have over all its inputs (a BYTES element counts 8).
pub const MAX_ELEMENTS: usize = 1 << 22;

/// Each spec's inputs and how many times to run them. A free first dimension takes the
/// spec's `batch_size` when the model batches, every other free dimension 1. A sample of
/// more than [`MAX_ELEMENTS`] is refused.
pub fn samples(
    model: &str,
    signature: &Signature,
    max_batch_size: usize,
    specs: &[WarmupSpec],
) -> Result<Vec<(Vec<Tensor>, usize)>, String> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    specs
        .iter()
        .map(|spec| {
            if let Some(request) = &spec.request {
                return Ok((from_request(model, signature, max_batch_size, request)?, spec.count));
            }
            let mut budget = MAX_ELEMENTS;
            let inputs = signature
                .inputs
                .iter()
                .map(|info| {
                    let shape: Vec<usize> = info
                        .shape
                        .iter()
                        .enumerate()
                        .map(|(ix, &d)| match d {
                            d if d >= 0 => d as usize,
                            _ if ix == 0 && max_batch_size > 0 => spec.batch_size.min(max_batch_size),
                            _ => 1,
                        })
                        .collect();
                    let weight = if info.datatype == DataType::Bytes { 8 } else { 1 };
                    let n = lectern_core::element_count(&shape)
                        .filter(|&n| n.saturating_mul(weight) <= budget)
                        .ok_or_else(|| {
                            format!("the sample is larger than {MAX_ELEMENTS} elements (input '{}')", info.name)
                        })?;
                    budget -= n * weight;
                    Ok(Tensor { name: info.name.clone(), shape, data: fill(info.datatype, n, spec.inputs, &mut seed) })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok((inputs, spec.count))
        })
        .collect()
}

/// The inputs of a V2 request (JSON text), checked and ordered as a request's are (names,
/// datatypes, shapes, at most `max_batch_size` rows), at most [`MAX_ELEMENTS`] elements in all.
fn from_request(
    model: &str,
    signature: &Signature,
    max_batch_size: usize,
    request: &str,
) -> Result<Vec<Tensor>, String> {
    let decoded =
        lectern_core::decode_request(request.as_bytes(), None).map_err(|e| format!("the warmup request: {e}"))?;
    let elements: usize = decoded.inputs.iter().map(|t| t.data.len()).sum();
    if elements > MAX_ELEMENTS {
        return Err(format!("the warmup request is larger than {MAX_ELEMENTS} elements"));
    }
    let checked = crate::model::order_inputs(model, &signature.inputs, decoded.inputs)
        .and_then(|inputs| crate::model::batch_rows(model, max_batch_size, &inputs).map(|_| inputs));
    checked.map_err(|e| format!("the warmup request: {e}"))
}

fn fill(datatype: DataType, n: usize, inputs: WarmupInputs, seed: &mut u64) -> TensorData {
    let mut next = || {
        // xorshift64*: a fixed sequence, enough to exercise the engine's code paths
        *seed ^= *seed >> 12;
        *seed ^= *seed << 25;
        *seed ^= *seed >> 27;
        (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    };
    let values: Vec<f64> = match inputs {
        WarmupInputs::Zeros => vec![0.0; n],
        WarmupInputs::Random if matches!(datatype, DataType::F16 | DataType::F32 | DataType::F64) => {
            (0..n).map(|_| next()).collect()
        }
        WarmupInputs::Random => (0..n).map(|_| (next() * 10.0).floor()).collect(),
    };
    match TensorData::from_f64(datatype, &values) {
        Some(data) => data,
        None => TensorData::Bytes(values.iter().map(|v| (*v as u8).to_string().into_bytes()).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lectern_backends::TensorInfo;

    fn info(name: &str, datatype: DataType, shape: &[i64]) -> TensorInfo {
        TensorInfo { name: name.into(), datatype, shape: shape.to_vec() }
    }

    #[test]
    fn samples_take_the_declared_shapes_and_batch_size() {
        let signature = Signature {
            inputs: vec![info("x", DataType::F32, &[-1, 4]), info("t", DataType::Bytes, &[-1, -1])],
            outputs: vec![],
        };
        let spec = |inputs, batch_size, count| WarmupSpec { inputs, batch_size, count, request: None, file: None };
        let out =
            samples("m", &signature, 8, &[spec(WarmupInputs::Zeros, 3, 2), spec(WarmupInputs::Random, 50, 1)]).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].1, 2);
        assert_eq!(out[0].0[0].shape, vec![3, 4]);
        assert_eq!(out[0].0[0].data, TensorData::F32(vec![0.0; 12]));
        assert_eq!(out[0].0[1].data, TensorData::Bytes(vec![b"0".to_vec(); 3]));
        // capped by the model's max_batch_size; random floats in [0, 1)
        assert_eq!(out[1].0[0].shape, vec![8, 4]);
        let TensorData::F32(v) = &out[1].0[0].data else { panic!() };
        assert!(v.iter().all(|x| (0.0..1.0).contains(x)) && v.iter().any(|x| *x != v[0]));
        // no batch dimension: free dimensions are 1
        assert_eq!(samples("m", &signature, 0, &[spec(WarmupInputs::Zeros, 5, 1)]).unwrap()[0].0[0].shape, vec![1, 4]);
        let huge = Signature { inputs: vec![info("x", DataType::F32, &[-1, 1 << 20, 1 << 20])], outputs: vec![] };
        assert!(samples("m", &huge, 8, &[spec(WarmupInputs::Zeros, 1, 1)]).unwrap_err().contains("larger than"));
    }

    #[test]
    fn a_request_sample_is_its_inputs() {
        let signature = Signature { inputs: vec![info("x", DataType::F32, &[-1, 2])], outputs: vec![] };
        let request = r#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 2]}]}"#;
        let spec = WarmupSpec {
            inputs: WarmupInputs::Zeros,
            batch_size: 1,
            count: 3,
            request: Some(request.into()),
            file: None,
        };
        let out = samples("m", &signature, 8, std::slice::from_ref(&spec)).unwrap();
        assert_eq!(out[0].1, 3);
        assert_eq!(out[0].0[0].data, TensorData::F32(vec![0.5, 2.0]));
        let with = |request: &str| WarmupSpec { request: Some(request.into()), ..spec.clone() };
        for (request, why) in [
            ("{\"inputs\": 3}", "the warmup request:"),
            (r#"{"inputs": [{"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [0, 0]}]}"#, "has no input 'y'"),
            (r#"{"inputs": [{"name": "x", "datatype": "INT32", "shape": [1, 2], "data": [0, 0]}]}"#, "must be FP32"),
            (r#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [0, 0, 0]}]}"#, "shape [1, 3]"),
            (
                r#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [9, 2], "data": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}"#,
                "over the max_batch_size 8",
            ),
        ] {
            let refused = samples("m", &signature, 8, &[with(request)]).unwrap_err();
            assert!(refused.contains(why), "{refused} should say {why}");
        }
    }
}
