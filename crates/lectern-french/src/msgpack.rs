//! Reading spaCy's msgpack files (`rmpv` values): map look-ups by key and numpy arrays as
//! msgpack-numpy writes them (`{nd: true, type: "<f4", shape: [..], data: bytes}`).

use std::path::Path;

use rmpv::Value;

use crate::FrenchError;

/// Decodes msgpack bytes; `path` names the file in errors.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Value, FrenchError> {
    let mut reader = bytes;
    rmpv::decode::read_value(&mut reader).map_err(|e| bad(path, format!("not msgpack: {e}")))
}

pub fn bad(path: &Path, what: impl Into<String>) -> FrenchError {
    FrenchError::Malformed { path: path.to_path_buf(), what: what.into() }
}

/// A map key given as a string or as bytes.
fn key_is(key: &Value, name: &str) -> bool {
    match key {
        Value::String(s) => s.as_str() == Some(name),
        Value::Binary(b) => b.as_slice() == name.as_bytes(),
        _ => false,
    }
}

/// The value under `name` in a map, if `value` is a map and has it.
pub fn get<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match value {
        Value::Map(entries) => entries.iter().find(|(k, _)| key_is(k, name)).map(|(_, v)| v),
        _ => None,
    }
}

/// A string value, also accepting UTF-8 bytes.
pub fn as_str(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => s.as_str(),
        Value::Binary(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

/// A float32 numpy array: its shape and its data.
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Decodes a msgpack-numpy float32 array.
pub fn array(value: &Value, path: &Path, what: &str) -> Result<Array, FrenchError> {
    let dtype = get(value, "type").and_then(as_str).unwrap_or("");
    if dtype != "<f4" {
        return Err(bad(path, format!("{what}: expected a float32 array, got {dtype:?}")));
    }
    let shape: Vec<usize> = match get(value, "shape") {
        Some(Value::Array(dims)) => dims
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad(path, format!("{what}: bad shape")))?,
        _ => return Err(bad(path, format!("{what}: no shape"))),
    };
    let bytes = match get(value, "data") {
        Some(Value::Binary(b)) => b,
        _ => return Err(bad(path, format!("{what}: no data"))),
    };
    let count: usize = shape.iter().product();
    if bytes.len() != count * 4 {
        return Err(bad(path, format!("{what}: data size does not match shape {shape:?}")));
    }
    let data = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(Array { shape, data })
}
