//! ZipMap → Identity on the serialized model, for ONNX Runtime.
//!
//! skl2onnx's default export ends in `ZipMap`, whose output is a sequence of maps (one map of
//! class → probability per row), which the V2 protocol cannot carry. As the tract engine does
//! (see `onnx/rewrite.rs`), the node becomes an `Identity`: the output keeps its name and
//! carries the `[N, classes]` FP32 probabilities, what onnxruntime gives with `zipmap=False`.
//!
//! Unlike tract, ONNX Runtime runs the other ONNX-ML operators itself, so only this node
//! changes. The edit is made on the protobuf wire format: every field of the model other than
//! the ZipMap nodes and their graph outputs is copied byte for byte, so nothing that
//! `tract_onnx::pb` does not model (sequence and map types, newer fields) is lost. A model
//! without a ZipMap is handed to ONNX Runtime unchanged.

use prost::Message;
use std::borrow::Cow;
use tract_onnx::pb::{
    tensor_proto::DataType as PbType, tensor_shape_proto, type_proto, NodeProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

const WIRE_VARINT: u64 = 0;
const WIRE_I64: u64 = 1;
const WIRE_LEN: u64 = 2;
const WIRE_I32: u64 = 5;

// Field numbers in onnx.proto.
const MODEL_GRAPH: u64 = 7;
const GRAPH_NODE: u64 = 1;
const GRAPH_OUTPUT: u64 = 12;
const GRAPH_VALUE_INFO: u64 = 13;

/// One field of a protobuf message.
struct Field<'a> {
    number: u64,
    /// The whole field: key, (length) and payload.
    raw: &'a [u8],
    /// The payload of a length-delimited field (empty for others).
    payload: &'a [u8],
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or("truncated protobuf varint")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("malformed protobuf varint".into())
}

fn fields(buf: &[u8]) -> Result<Vec<Field<'_>>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let key = varint(buf, &mut pos)?;
        let (number, wire) = (key >> 3, key & 7);
        let mut payload: &[u8] = &[];
        match wire {
            WIRE_VARINT => {
                varint(buf, &mut pos)?;
            }
            WIRE_I64 => pos += 8,
            WIRE_I32 => pos += 4,
            WIRE_LEN => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| "protobuf length overflows")?;
                let end = pos.checked_add(len).ok_or("protobuf length overflows")?;
                payload = buf.get(pos..end).ok_or("truncated protobuf field")?;
                pos = end;
            }
            other => return Err(format!("unsupported protobuf wire type {other} (field {number})")),
        }
        if pos > buf.len() {
            return Err("truncated protobuf field".into());
        }
        out.push(Field { number, raw: &buf[start..pos], payload });
    }
    Ok(out)
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn push_message(out: &mut Vec<u8>, number: u64, payload: &[u8]) {
    push_varint(out, (number << 3) | WIRE_LEN);
    push_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// A ZipMap found in the graph: its output and how many classes it names.
struct ZipMap {
    output: String,
    classes: usize,
}

fn as_zipmap(node: &NodeProto) -> Option<ZipMap> {
    if node.domain != "ai.onnx.ml" || node.op_type != "ZipMap" || node.input.len() != 1 || node.output.len() != 1 {
        return None;
    }
    let classes = node
        .attribute
        .iter()
        .filter(|a| a.name == "classlabels_int64s" || a.name == "classlabels_strings")
        .map(|a| a.ints.len().max(a.strings.len()))
        .max()
        .unwrap_or(0);
    Some(ZipMap { output: node.output[0].clone(), classes })
}

fn identity(zipmap: &NodeProto) -> NodeProto {
    NodeProto {
        input: zipmap.input.clone(),
        output: zipmap.output.clone(),
        name: format!("lectern_Identity_{}", zipmap.output[0]),
        op_type: "Identity".into(),
        ..Default::default()
    }
}

/// The graph output of a replaced ZipMap: FP32 `[N, classes]` (`[N, ?]` if unknown).
fn probabilities(zipmap: &ZipMap) -> ValueInfoProto {
    let dim = |value| tensor_shape_proto::Dimension { value, ..Default::default() };
    let classes = (zipmap.classes > 0).then_some(tensor_shape_proto::dimension::Value::DimValue(zipmap.classes as i64));
    ValueInfoProto {
        name: zipmap.output.clone(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: PbType::Float as i32,
                shape: Some(TensorShapeProto { dim: vec![dim(None), dim(classes)] }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn decode_node(payload: &[u8]) -> Option<NodeProto> {
    // Only the names are looked at; a node tract's protobuf types cannot read is kept as is.
    NodeProto::decode(payload).ok()
}

fn value_name(payload: &[u8]) -> Option<String> {
    ValueInfoProto::decode(payload).ok().map(|v| v.name)
}

/// The graph with its top-level ZipMaps replaced, or `None` when it has none.
fn rewrite_graph(graph: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let fields = fields(graph)?;
    let zipmaps: Vec<ZipMap> = fields
        .iter()
        .filter(|f| f.number == GRAPH_NODE)
        .filter_map(|f| decode_node(f.payload).as_ref().and_then(as_zipmap))
        .collect();
    if zipmaps.is_empty() {
        return Ok(None);
    }
    let find = |name: &Option<String>| name.as_ref().and_then(|n| zipmaps.iter().find(|z| &z.output == n));
    let mut out = Vec::with_capacity(graph.len() + 64);
    for field in &fields {
        match field.number {
            GRAPH_NODE => match decode_node(field.payload) {
                Some(node) if as_zipmap(&node).is_some() => {
                    push_message(&mut out, GRAPH_NODE, &identity(&node).encode_to_vec())
                }
                _ => out.extend_from_slice(field.raw),
            },
            GRAPH_OUTPUT => match find(&value_name(field.payload)) {
                Some(zipmap) => push_message(&mut out, GRAPH_OUTPUT, &probabilities(zipmap).encode_to_vec()),
                None => out.extend_from_slice(field.raw),
            },
            // A declared sequence-of-maps type for the output would contradict the new node.
            GRAPH_VALUE_INFO if find(&value_name(field.payload)).is_some() => {}
            _ => out.extend_from_slice(field.raw),
        }
    }
    Ok(Some(out))
}

/// The model with every top-level ZipMap replaced by an Identity; borrowed when unchanged.
pub fn replace_zipmaps(model: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    let fields = fields(model).map_err(|e| format!("not an ONNX model: {e}"))?;
    let mut out: Option<Vec<u8>> = None;
    for (ix, field) in fields.iter().enumerate() {
        if field.number == MODEL_GRAPH {
            if let Some(graph) = rewrite_graph(field.payload).map_err(|e| format!("not an ONNX model: {e}"))? {
                let out = out.get_or_insert_with(|| {
                    let mut v = Vec::with_capacity(model.len() + 64);
                    fields[..ix].iter().for_each(|f| v.extend_from_slice(f.raw));
                    v
                });
                push_message(out, MODEL_GRAPH, &graph);
                continue;
            }
        }
        if let Some(out) = out.as_mut() {
            out.extend_from_slice(field.raw);
        }
    }
    Ok(out.map_or(Cow::Borrowed(model), Cow::Owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{AttributeProto, GraphProto, ModelProto, OperatorSetIdProto};

    fn zipmap_model() -> ModelProto {
        let zipmap = NodeProto {
            input: vec!["probabilities".into()],
            output: vec!["output_probability".into()],
            name: "ZipMap".into(),
            op_type: "ZipMap".into(),
            domain: "ai.onnx.ml".into(),
            attribute: vec![AttributeProto {
                name: "classlabels_int64s".into(),
                ints: vec![0, 1, 2],
                ..Default::default()
            }],
            ..Default::default()
        };
        let softmax = NodeProto {
            input: vec!["X".into()],
            output: vec!["probabilities".into()],
            op_type: "Softmax".into(),
            ..Default::default()
        };
        ModelProto {
            ir_version: 8,
            producer_name: "test".into(),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 15 }],
            graph: Some(GraphProto {
                node: vec![softmax, zipmap],
                output: vec![ValueInfoProto { name: "output_probability".into(), ..Default::default() }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_zipmap_becomes_an_identity_with_a_tensor_output() {
        let bytes = zipmap_model().encode_to_vec();
        let rewritten = replace_zipmaps(&bytes).unwrap();
        let model = ModelProto::decode(&*rewritten).unwrap();
        let graph = model.graph.unwrap();
        assert_eq!(graph.node.len(), 2);
        assert_eq!(graph.node[0].op_type, "Softmax");
        assert_eq!((graph.node[1].op_type.as_str(), graph.node[1].domain.as_str()), ("Identity", ""));
        assert_eq!(graph.node[1].input, vec!["probabilities".to_string()]);
        assert_eq!(graph.output[0], probabilities(&ZipMap { output: "output_probability".into(), classes: 3 }));
        assert_eq!(model.producer_name, "test");
        assert_eq!(model.ir_version, 8);
    }

    #[test]
    fn a_model_without_zipmap_is_borrowed_unchanged() {
        let mut model = zipmap_model();
        model.graph.as_mut().unwrap().node.pop();
        let bytes = model.encode_to_vec();
        assert!(matches!(replace_zipmaps(&bytes).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn unknown_fields_survive_the_rewrite() {
        let mut bytes = zipmap_model().encode_to_vec();
        // Field 99 (a string) that tract's protobuf types do not know.
        push_message(&mut bytes, 99, b"kept");
        let rewritten = replace_zipmaps(&bytes).unwrap();
        assert!(rewritten.ends_with(b"kept"));
        assert!(replace_zipmaps(b"\xff").is_err());
    }
}
