//! The V2 (Open Inference Protocol) inference request and response, in JSON and with the
//! binary tensor data extension, decoded into [`Tensor`]s and encoded back.

use crate::tensor::{element_count, DataType, Tensor, TensorData};
use half::f16;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// Largest number of elements one tensor may declare.
pub const MAX_ELEMENTS: u64 = 1 << 31;

/// Most inputs one request may carry, and most outputs it may ask for: far above any real
/// model, low enough that a hostile request cannot make decoding or matching expensive.
pub const MAX_TENSORS_PER_REQUEST: usize = 1024;

/// A request that cannot be decoded; always the caller's mistake.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    #[error("malformed request body: {0}")]
    MalformedJson(String),
    #[error("input '{input}': {message}")]
    BadInput { input: String, message: String },
    #[error("output '{output}': {message}")]
    BadOutput { output: String, message: String },
    #[error("binary tensor data: {0}")]
    BadBinary(String),
    #[error("request has no inputs")]
    NoInputs,
    #[error("input '{0}' appears more than once")]
    DuplicateInput(String),
    /// More inputs or requested outputs than [`MAX_TENSORS_PER_REQUEST`].
    #[error("the request has {count} {what}; at most {MAX_TENSORS_PER_REQUEST} are accepted")]
    TooMany { what: &'static str, count: usize },
}

/// `input '<input>': <message>`.
pub fn bad_input(input: &str, message: impl Into<String>) -> ProtocolError {
    ProtocolError::BadInput { input: input.to_string(), message: message.into() }
}

/// What the caller asked for one output.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestedOutput {
    pub name: String,
    /// `Some(true)`: return this output as binary data.
    pub binary: Option<bool>,
    /// Triton's classification extension: return the top k classes as strings.
    pub classification: Option<usize>,
}

/// A decoded inference request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// Empty: every output of the model.
    pub outputs: Vec<RequestedOutput>,
    /// Request parameter `binary_data_output`: outputs default to binary.
    pub binary_output: bool,
    /// Schedule-policy parameter `priority` (1 is highest; 0 means default).
    pub priority: u64,
    /// Schedule-policy parameter `timeout` in microseconds (0 means none).
    pub timeout_us: u64,
    /// Request parameter `truncate: false`: a text encoder refuses texts over its length
    /// instead of truncating them.
    pub refuse_over_length: bool,
}

/// The JSON of an inference request as it arrives (the OpenAPI document's `InferRequest`).
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = InferRequest))]
pub struct RequestJson<'a> {
    #[serde(default)]
    id: Option<String>,
    /// `binary_data_output`, `priority`, `timeout` (microseconds).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    parameters: Option<Map<String, Value>>,
    #[serde(borrow)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<InputJson>, min_items = 1, max_items = 1024))]
    inputs: Bounded<InputJson<'a>>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<OutputJson>>, max_items = 1024))]
    outputs: Option<Bounded<OutputJson>>,
}

/// A JSON array of which at most [`MAX_TENSORS_PER_REQUEST`] elements are decoded; the rest are
/// only counted (checked as JSON, never allocated), so that an oversized list is refused in
/// time and memory linear in its text.
struct Bounded<T> {
    items: Vec<T>,
    /// Elements in the array, decoded or not.
    count: usize,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Bounded<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BoundedVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for BoundedVisitor<T> {
            type Value = Bounded<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bounded<T>, A::Error> {
                let hint = seq.size_hint().unwrap_or(0).min(MAX_TENSORS_PER_REQUEST);
                let mut items = Vec::with_capacity(hint);
                while items.len() < MAX_TENSORS_PER_REQUEST {
                    match seq.next_element()? {
                        Some(item) => items.push(item),
                        None => return Ok(Bounded { count: items.len(), items }),
                    }
                }
                let mut count = items.len();
                while seq.next_element::<de::IgnoredAny>()?.is_some() {
                    count += 1;
                }
                Ok(Bounded { items, count })
            }
        }
        d.deserialize_seq(BoundedVisitor(std::marker::PhantomData))
    }
}

impl<T> Bounded<T> {
    /// The elements, or [`ProtocolError::TooMany`] when there were more than the bound.
    fn into_checked(self, what: &'static str) -> Result<Vec<T>, ProtocolError> {
        if self.count > MAX_TENSORS_PER_REQUEST {
            return Err(ProtocolError::TooMany { what, count: self.count });
        }
        Ok(self.items)
    }
}

/// One input tensor of a request.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = InferInput))]
pub struct InputJson<'a> {
    name: String,
    /// Borrowed from the body (datatype names never need unescaping).
    #[serde(borrow)]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "FP32"))]
    datatype: Cow<'a, str>,
    shape: Vec<i64>,
    /// `binary_data_size` when the data follows the JSON (binary tensor extension).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    parameters: Option<Map<String, Value>>,
    /// Row-major values, flat or nested; absent when the data is binary.
    #[serde(default, borrow)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Value>>))]
    data: Option<&'a RawValue>,
}

/// One output a request asks for.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = InferRequestedOutput))]
pub struct OutputJson {
    name: String,
    /// `binary_data`, `classification`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    parameters: Option<Map<String, Value>>,
}

/// Decodes a request body. `json_len` is the `Inference-Header-Content-Length` header when
/// present: the JSON part is then `body[..json_len]` and the binary tensors follow it.
pub fn decode_request(body: &[u8], json_len: Option<usize>) -> Result<InferRequest, ProtocolError> {
    let (json, mut binary) = match json_len {
        Some(n) if n > body.len() => {
            return Err(ProtocolError::BadBinary(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            )))
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    let raw: RequestJson<'_> = serde_json::from_slice(json).map_err(|e| ProtocolError::MalformedJson(e.to_string()))?;
    let raw_inputs = raw.inputs.into_checked("inputs")?;
    if raw_inputs.is_empty() {
        return Err(ProtocolError::NoInputs);
    }
    check_unique_names(raw_inputs.iter().map(|i| i.name.as_str()))?;
    let mut inputs = Vec::with_capacity(raw_inputs.len());
    for input in raw_inputs {
        inputs.push(decode_input(input, &mut binary)?);
    }
    if !binary.is_empty() {
        return Err(ProtocolError::BadBinary(format!(
            "{} bytes of binary data are left over after the last input",
            binary.len()
        )));
    }
    let params = raw.parameters.as_ref();
    let outputs = match raw.outputs {
        Some(list) => list.into_checked("requested outputs")?.iter().map(decode_output).collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    Ok(InferRequest {
        id: raw.id,
        inputs,
        outputs,
        binary_output: param_bool(params, "binary_data_output").unwrap_or(false),
        priority: param_u64(params, "priority").unwrap_or(0),
        timeout_us: param_u64(params, "timeout").unwrap_or(0),
        refuse_over_length: param_bool(params, "truncate") == Some(false),
    })
}

/// Refuses a request naming one input twice, in time linear in the number of inputs: a
/// scan for the few inputs of real models, a hash set above that.
fn check_unique_names<'a>(names: impl ExactSizeIterator<Item = &'a str> + Clone) -> Result<(), ProtocolError> {
    const SCAN_UP_TO: usize = 8;
    if names.len() <= SCAN_UP_TO {
        for (i, name) in names.clone().enumerate() {
            if names.clone().take(i).any(|earlier| earlier == name) {
                return Err(ProtocolError::DuplicateInput(name.to_string()));
            }
        }
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    for name in names {
        if !seen.insert(name) {
            return Err(ProtocolError::DuplicateInput(name.to_string()));
        }
    }
    Ok(())
}

/// The checks every request's inputs pass, whatever carried them (JSON, binary, gRPC): at
/// least one, at most [`MAX_TENSORS_PER_REQUEST`], each name once.
pub fn check_inputs(inputs: &[Tensor]) -> Result<(), ProtocolError> {
    if inputs.is_empty() {
        return Err(ProtocolError::NoInputs);
    }
    if inputs.len() > MAX_TENSORS_PER_REQUEST {
        return Err(ProtocolError::TooMany { what: "inputs", count: inputs.len() });
    }
    check_unique_names(inputs.iter().map(|t| t.name.as_str()))
}

/// An input tensor from its parts, checked alike whatever carried it (JSON, binary, gRPC): a
/// known datatype, a shape of at most [`MAX_ELEMENTS`], and as many elements as the shape
/// holds. `data` decodes the elements, given the input's name, the datatype and the element
/// count.
pub fn input_tensor(
    name: String,
    datatype: &str,
    shape: &[i64],
    data: impl FnOnce(&str, DataType, usize) -> Result<TensorData, ProtocolError>,
) -> Result<Tensor, ProtocolError> {
    let datatype: DataType =
        datatype.parse().map_err(|e: crate::tensor::UnknownDataType| bad_input(&name, e.to_string()))?;
    let shape = checked_shape(&name, shape)?;
    let expected = element_count(&shape).expect("bounded by MAX_ELEMENTS");
    let data = data(&name, datatype, expected)?;
    if data.len() != expected {
        return Err(bad_input(
            &name,
            format!("shape {shape:?} needs {expected} elements but {} were given", data.len()),
        ));
    }
    Ok(Tensor { name, shape, data })
}

fn param_bool(params: Option<&Map<String, Value>>, key: &str) -> Option<bool> {
    params?.get(key)?.as_bool()
}

fn param_u64(params: Option<&Map<String, Value>>, key: &str) -> Option<u64> {
    params?.get(key)?.as_u64()
}

fn decode_output(output: &OutputJson) -> Result<RequestedOutput, ProtocolError> {
    let params = output.parameters.as_ref();
    let classification = match params.and_then(|p| p.get("classification")) {
        None => None,
        Some(v) => match v.as_u64() {
            Some(k) if k > 0 => Some(k as usize),
            _ => {
                return Err(ProtocolError::BadOutput {
                    output: output.name.clone(),
                    message: "parameter 'classification' must be a positive integer".into(),
                })
            }
        },
    };
    Ok(RequestedOutput { name: output.name.clone(), binary: param_bool(params, "binary_data"), classification })
}

fn checked_shape(name: &str, dims: &[i64]) -> Result<Vec<usize>, ProtocolError> {
    let mut total: u64 = 1;
    let mut shape = Vec::with_capacity(dims.len());
    for &d in dims {
        if d < 0 {
            return Err(bad_input(name, format!("dimension {d} in shape {dims:?} is negative")));
        }
        total = total.saturating_mul(d as u64);
        if total > MAX_ELEMENTS {
            return Err(bad_input(name, format!("shape {dims:?} declares more than {MAX_ELEMENTS} elements")));
        }
        shape.push(d as usize);
    }
    Ok(shape)
}

fn decode_input(input: InputJson<'_>, binary: &mut &[u8]) -> Result<Tensor, ProtocolError> {
    let binary_size = input.parameters.as_ref().and_then(|p| p.get("binary_data_size"));
    let json = input.data;
    input_tensor(input.name, &input.datatype, &input.shape, |name, datatype, expected| match (binary_size, json) {
        (Some(_), Some(_)) => Err(bad_input(name, "has both 'data' and 'binary_data_size'")),
        (Some(size), None) => {
            let size =
                size.as_u64().ok_or_else(|| bad_input(name, "'binary_data_size' must be a non-negative integer"))?;
            if size > binary.len() as u64 {
                return Err(ProtocolError::BadBinary(format!(
                    "input '{name}' declares {size} bytes but only {} remain in the body",
                    binary.len()
                )));
            }
            let (mine, rest) = binary.split_at(size as usize);
            *binary = rest;
            decode_binary(datatype, mine, expected).map_err(|m| bad_input(name, m))
        }
        (None, Some(raw)) => decode_json_data(datatype, raw.get(), expected).map_err(|m| bad_input(name, m)),
        (None, None) => Err(bad_input(name, "has neither 'data' nor 'binary_data_size'")),
    })
}

// ---- JSON data: flat or nested arrays of scalars ----

/// A scalar that can be read from a JSON value of the V2 `data` field.
trait JsonScalar: Sized {
    const WHAT: &'static str;
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
    fn from_str(_: &str) -> Option<Self> {
        None
    }
}

macro_rules! int_scalar {
    ($t:ty, $what:literal) => {
        impl JsonScalar for $t {
            const WHAT: &'static str = $what;
            fn from_u64(v: u64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn from_i64(v: i64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn from_f64(v: f64) -> Option<Self> {
                if v.fract() == 0.0 && v >= <$t>::MIN as f64 && v <= <$t>::MAX as f64 {
                    Some(v as $t)
                } else {
                    None
                }
            }
        }
    };
}
int_scalar!(u8, "a UINT8 integer (0..=255)");
int_scalar!(u16, "a UINT16 integer");
int_scalar!(u32, "a UINT32 integer");
int_scalar!(u64, "a UINT64 integer");
int_scalar!(i8, "an INT8 integer (-128..=127)");
int_scalar!(i16, "an INT16 integer");
int_scalar!(i32, "an INT32 integer");
int_scalar!(i64, "an INT64 integer");

macro_rules! float_scalar {
    ($t:ty, $what:literal, $conv:expr) => {
        impl JsonScalar for $t {
            const WHAT: &'static str = $what;
            fn from_u64(v: u64) -> Option<Self> {
                Some($conv(v as f64))
            }
            fn from_i64(v: i64) -> Option<Self> {
                Some($conv(v as f64))
            }
            fn from_f64(v: f64) -> Option<Self> {
                Some($conv(v))
            }
        }
    };
}
float_scalar!(f32, "an FP32 number", |v: f64| v as f32);
float_scalar!(f64, "an FP64 number", |v: f64| v);
float_scalar!(f16, "an FP16 number", f16::from_f64);

impl JsonScalar for bool {
    const WHAT: &'static str = "a BOOL (true or false)";
    fn from_bool(v: bool) -> Option<Self> {
        Some(v)
    }
}

impl JsonScalar for Vec<u8> {
    const WHAT: &'static str = "a BYTES string";
    fn from_str(v: &str) -> Option<Self> {
        Some(v.as_bytes().to_vec())
    }
}

/// Appends every scalar of a (possibly nested) JSON array to `out`.
struct Flatten<'a, T> {
    out: &'a mut Vec<T>,
}

impl<'de, T: JsonScalar> DeserializeSeed<'de> for Flatten<'_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: JsonScalar> Visitor<'de> for Flatten<'_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} or an array of them", T::WHAT)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some(n) = seq.size_hint() {
            self.out.reserve(n);
        }
        while seq.next_element_seed(Flatten { out: &mut *self.out })?.is_some() {}
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(T::from_u64(v), &v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(T::from_i64(v), &v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(T::from_f64(v), &v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.push(T::from_bool(v), &v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.push(T::from_str(v), &format_args!("\"{v}\""))
    }
}

impl<T: JsonScalar> Flatten<'_, T> {
    fn push<E: de::Error>(self, value: Option<T>, seen: &dyn fmt::Display) -> Result<(), E> {
        match value {
            Some(v) => {
                self.out.push(v);
                Ok(())
            }
            None => Err(E::custom(format!("expected {}, found {seen}", T::WHAT))),
        }
    }
}

fn flatten_json<T: JsonScalar>(raw: &str, expected: usize) -> Result<Vec<T>, String> {
    // Reserve no more than the text could hold: a hostile shape must not allocate.
    let mut out = Vec::with_capacity(expected.min(raw.len() / 2 + 1));
    let mut de = serde_json::Deserializer::from_str(raw);
    Flatten { out: &mut out }.deserialize(&mut de).map_err(|e| format!("bad 'data': {e}"))?;
    Ok(out)
}

fn decode_json_data(datatype: DataType, raw: &str, expected: usize) -> Result<TensorData, String> {
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(flatten_json(raw, expected)?),
        DataType::U8 => TensorData::U8(flatten_json(raw, expected)?),
        DataType::U16 => TensorData::U16(flatten_json(raw, expected)?),
        DataType::U32 => TensorData::U32(flatten_json(raw, expected)?),
        DataType::U64 => TensorData::U64(flatten_json(raw, expected)?),
        DataType::I8 => TensorData::I8(flatten_json(raw, expected)?),
        DataType::I16 => TensorData::I16(flatten_json(raw, expected)?),
        DataType::I32 => TensorData::I32(flatten_json(raw, expected)?),
        DataType::I64 => TensorData::I64(flatten_json(raw, expected)?),
        DataType::F16 => TensorData::F16(flatten_json(raw, expected)?),
        DataType::F32 => TensorData::F32(flatten_json(raw, expected)?),
        DataType::F64 => TensorData::F64(flatten_json(raw, expected)?),
        DataType::Bytes => TensorData::Bytes(flatten_json(raw, expected)?),
    })
}

// ---- binary data ----

fn chunks<const N: usize, T>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    bytes.chunks_exact(N).map(|c| f(c.try_into().expect("exact chunk"))).collect()
}

/// Decodes little-endian binary tensor data of `expected` elements.
pub fn decode_binary(datatype: DataType, bytes: &[u8], expected: usize) -> Result<TensorData, String> {
    if let Some(size) = datatype.element_size() {
        let needed = (expected as u64) * size as u64;
        if bytes.len() as u64 != needed {
            return Err(format!(
                "binary_data_size is {} bytes but {expected} {datatype} elements need {needed}",
                bytes.len()
            ));
        }
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        DataType::U8 => TensorData::U8(bytes.to_vec()),
        DataType::U16 => TensorData::U16(chunks(bytes, u16::from_le_bytes)),
        DataType::U32 => TensorData::U32(chunks(bytes, u32::from_le_bytes)),
        DataType::U64 => TensorData::U64(chunks(bytes, u64::from_le_bytes)),
        DataType::I8 => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
        DataType::I16 => TensorData::I16(chunks(bytes, i16::from_le_bytes)),
        DataType::I32 => TensorData::I32(chunks(bytes, i32::from_le_bytes)),
        DataType::I64 => TensorData::I64(chunks(bytes, i64::from_le_bytes)),
        DataType::F16 => TensorData::F16(chunks(bytes, |b| f16::from_bits(u16::from_le_bytes(b)))),
        DataType::F32 => TensorData::F32(chunks(bytes, f32::from_le_bytes)),
        DataType::F64 => TensorData::F64(chunks(bytes, f64::from_le_bytes)),
        DataType::Bytes => TensorData::Bytes(decode_binary_strings(bytes)?),
    })
}

fn decode_binary_strings(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 4 {
            return Err("BYTES element is cut off inside its 4-byte length".into());
        }
        let (len, rest) = bytes.split_at(4);
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        if len > rest.len() {
            return Err(format!("BYTES element declares {len} bytes but only {} remain", rest.len()));
        }
        let (item, rest) = rest.split_at(len);
        out.push(item.to_vec());
        bytes = rest;
    }
    Ok(out)
}

/// Encodes tensor data as little-endian binary, appending to `out`.
pub fn encode_binary(data: &TensorData, out: &mut Vec<u8>) {
    match data {
        TensorData::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
        TensorData::U8(v) => out.extend_from_slice(v),
        TensorData::U16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::U32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::U64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I8(v) => out.extend(v.iter().map(|&b| b as u8)),
        TensorData::I16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::F16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_bits().to_le_bytes())),
        TensorData::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Bytes(v) => v.iter().for_each(|s| {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s);
        }),
    }
}

// ---- response ----

/// One output of a response and whether it travels as binary.
#[derive(Debug, Clone)]
pub struct ResponseOutput {
    pub tensor: Tensor,
    pub binary: bool,
}

/// A computed inference response.
#[derive(Debug, Clone)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    pub id: Option<String>,
    pub outputs: Vec<ResponseOutput>,
}

/// An encoded response body; `json_len` is set when binary tensors follow the JSON.
#[derive(Debug)]
pub struct EncodedResponse {
    pub body: Vec<u8>,
    pub json_len: Option<usize>,
}

struct JsonData<'a>(&'a TensorData);

impl Serialize for JsonData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fn seq<S: Serializer, T: Serialize>(s: S, v: &[T]) -> Result<S::Ok, S::Error> {
            let mut q = s.serialize_seq(Some(v.len()))?;
            for x in v {
                q.serialize_element(x)?;
            }
            q.end()
        }
        match self.0 {
            TensorData::F16(v) => {
                let mut q = s.serialize_seq(Some(v.len()))?;
                for x in v {
                    q.serialize_element(&x.to_f32())?;
                }
                q.end()
            }
            TensorData::Bytes(v) => {
                let mut q = s.serialize_seq(Some(v.len()))?;
                for x in v {
                    q.serialize_element(&String::from_utf8_lossy(x))?;
                }
                q.end()
            }
            TensorData::Bool(v) => seq(s, v),
            TensorData::U8(v) => seq(s, v),
            TensorData::U16(v) => seq(s, v),
            TensorData::U32(v) => seq(s, v),
            TensorData::U64(v) => seq(s, v),
            TensorData::I8(v) => seq(s, v),
            TensorData::I16(v) => seq(s, v),
            TensorData::I32(v) => seq(s, v),
            TensorData::I64(v) => seq(s, v),
            TensorData::F32(v) => seq(s, v),
            TensorData::F64(v) => seq(s, v),
        }
    }
}

struct JsonOutput<'a> {
    output: &'a ResponseOutput,
    binary_size: Option<usize>,
}

impl Serialize for JsonOutput<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = &self.output.tensor;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", &t.name)?;
        m.serialize_entry("datatype", t.datatype().as_str())?;
        m.serialize_entry("shape", &t.shape)?;
        match self.binary_size {
            Some(n) => m.serialize_entry("parameters", &serde_json::json!({ "binary_data_size": n }))?,
            None => m.serialize_entry("data", &JsonData(&t.data))?,
        }
        m.end()
    }
}

/// Encodes a response as JSON, followed by the binary outputs when any are binary.
pub fn encode_response(response: &InferResponse) -> EncodedResponse {
    let mut binary = Vec::new();
    let mut outputs = Vec::with_capacity(response.outputs.len());
    for output in &response.outputs {
        let binary_size = output.binary.then(|| {
            let before = binary.len();
            encode_binary(&output.tensor.data, &mut binary);
            binary.len() - before
        });
        outputs.push(JsonOutput { output, binary_size });
    }
    #[derive(Serialize)]
    struct Body<'a> {
        model_name: &'a str,
        model_version: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        outputs: Vec<JsonOutput<'a>>,
    }
    // Room for the envelope, each output's name/datatype/shape, and ~20 bytes per JSON number,
    // so that the buffer is rarely grown while writing.
    let json_values: usize = response.outputs.iter().filter(|o| !o.binary).map(|o| o.tensor.data.len()).sum();
    let mut body = Vec::with_capacity(160 + 96 * response.outputs.len() + 20 * json_values + binary.len());
    serde_json::to_writer(
        &mut body,
        &Body {
            model_name: &response.model_name,
            model_version: &response.model_version,
            id: response.id.as_deref(),
            outputs,
        },
    )
    .expect("serialising to a Vec cannot fail");
    let any_binary = response.outputs.iter().any(|o| o.binary);
    let json_len = any_binary.then_some(body.len());
    body.extend_from_slice(&binary);
    EncodedResponse { body, json_len }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(body: &str) -> Result<InferRequest, ProtocolError> {
        decode_request(body.as_bytes(), None)
    }

    #[test]
    fn flat_and_nested_data_decode_to_the_same_tensor() {
        let flat = one(r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[1,2,3.5,4]}]}"#).unwrap();
        let nested =
            one(r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[[1,2],[3.5,4]]}]}"#).unwrap();
        assert_eq!(flat.inputs, nested.inputs);
        assert_eq!(flat.inputs[0].data, TensorData::F32(vec![1.0, 2.0, 3.5, 4.0]));
    }

    #[test]
    fn out_of_range_integers_are_rejected_with_the_type_named() {
        let err = one(r#"{"inputs":[{"name":"x","datatype":"UINT8","shape":[1],"data":[256]}]}"#).unwrap_err();
        assert!(err.to_string().contains("UINT8"), "{err}");
        let err = one(r#"{"inputs":[{"name":"x","datatype":"INT32","shape":[1],"data":[1.5]}]}"#).unwrap_err();
        assert!(err.to_string().contains("INT32"), "{err}");
    }

    #[test]
    fn shape_and_data_length_must_agree() {
        let err = one(r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[3],"data":[1,2]}]}"#).unwrap_err();
        assert!(err.to_string().contains("needs 3 elements but 2"), "{err}");
    }

    #[test]
    fn negative_and_absurd_dimensions_are_rejected() {
        let err = one(r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[-1],"data":[]}]}"#).unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
        let err = one(r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[4294967296,4294967296],"data":[]}]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");
    }

    #[test]
    fn binary_inputs_are_read_in_order_after_the_json_header() {
        let header = r#"{"inputs":[{"name":"a","datatype":"INT32","shape":[2],"parameters":{"binary_data_size":8}},{"name":"s","datatype":"BYTES","shape":[2],"parameters":{"binary_data_size":11}}]}"#;
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(&7i32.to_le_bytes());
        body.extend_from_slice(&(-1i32).to_le_bytes());
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(b"abc");
        body.extend_from_slice(&0u32.to_le_bytes());
        let req = decode_request(&body, Some(header.len())).unwrap();
        assert_eq!(req.inputs[0].data, TensorData::I32(vec![7, -1]));
        assert_eq!(req.inputs[1].data, TensorData::Bytes(vec![b"abc".to_vec(), vec![]]));
    }

    #[test]
    fn truncated_binary_data_is_an_error_not_a_panic() {
        let header = r#"{"inputs":[{"name":"a","datatype":"FP64","shape":[2],"parameters":{"binary_data_size":16}}]}"#;
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(&[0u8; 9]);
        assert!(matches!(decode_request(&body, Some(header.len())), Err(ProtocolError::BadBinary(_))));
        assert!(matches!(decode_request(&body, Some(body.len() + 1)), Err(ProtocolError::BadBinary(_))));
    }

    /// A request body with `n` one-element inputs named `x0`, `x1`, ..., the last named `last`.
    fn many_inputs(n: usize, last: &str) -> String {
        let mut inputs: Vec<String> =
            (0..n - 1).map(|i| format!(r#"{{"name":"x{i}","datatype":"FP32","shape":[1],"data":[1]}}"#)).collect();
        inputs.push(format!(r#"{{"name":"{last}","datatype":"FP32","shape":[1],"data":[1]}}"#));
        format!(r#"{{"inputs":[{}]}}"#, inputs.join(","))
    }

    #[test]
    fn inputs_and_outputs_are_bounded_per_request() {
        let at_bound = one(&many_inputs(MAX_TENSORS_PER_REQUEST, "last")).unwrap();
        assert_eq!(at_bound.inputs.len(), MAX_TENSORS_PER_REQUEST);
        let err = one(&many_inputs(50_000, "last")).unwrap_err();
        assert_eq!(err, ProtocolError::TooMany { what: "inputs", count: 50_000 });
        assert!(err.to_string().contains("50000 inputs; at most 1024"), "{err}");
        let outputs: Vec<String> = (0..1025).map(|i| format!(r#"{{"name":"o{i}"}}"#)).collect();
        let body = format!(
            r#"{{"inputs":[{{"name":"x","datatype":"FP32","shape":[1],"data":[1]}}],"outputs":[{}]}}"#,
            outputs.join(",")
        );
        let err = one(&body).unwrap_err();
        assert_eq!(err, ProtocolError::TooMany { what: "requested outputs", count: 1025 });
        // The elements past the bound are still checked as JSON.
        let broken = many_inputs(2_000, "last").replace("x1500\"", "x1500");
        assert!(matches!(one(&broken), Err(ProtocolError::MalformedJson(_))));
    }

    #[test]
    fn duplicate_inputs_are_found_among_few_and_many() {
        let err = one(&many_inputs(3, "x1")).unwrap_err();
        assert_eq!(err, ProtocolError::DuplicateInput("x1".into()));
        let err = one(&many_inputs(MAX_TENSORS_PER_REQUEST, "x7")).unwrap_err();
        assert_eq!(err, ProtocolError::DuplicateInput("x7".into()));
        assert!(one(&many_inputs(MAX_TENSORS_PER_REQUEST, "x")).is_ok());
    }

    #[test]
    fn responses_put_binary_outputs_after_the_json() {
        let response = InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: Some("r1".into()),
            outputs: vec![
                ResponseOutput {
                    tensor: Tensor { name: "a".into(), shape: vec![2], data: TensorData::F32(vec![1.0, 2.0]) },
                    binary: true,
                },
                ResponseOutput {
                    tensor: Tensor { name: "b".into(), shape: vec![1], data: TensorData::I64(vec![3]) },
                    binary: false,
                },
            ],
        };
        let enc = encode_response(&response);
        let n = enc.json_len.unwrap();
        let json: Value = serde_json::from_slice(&enc.body[..n]).unwrap();
        assert_eq!(json["id"], "r1");
        assert_eq!(json["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(json["outputs"][1]["data"], serde_json::json!([3]));
        assert_eq!(&enc.body[n..n + 4], &1.0f32.to_le_bytes());
    }
}
