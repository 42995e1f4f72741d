//! Graph surgery on the ONNX protobuf before tract sees it.
//!
//! scikit-learn models exported by skl2onnx use a few ONNX-ML operators that tract does not
//! implement. Each is replaced here by standard operators with the same result:
//! - `ZipMap` (probabilities as a list of maps) becomes `Identity`: the output keeps its name
//!   and carries the `[N, classes]` probability tensor, as onnxruntime gives with
//!   `zipmap=False`;
//! - `Scaler` becomes `Cast` + `Sub` + `Mul`;
//! - `ArrayFeatureExtractor` becomes `Reshape` + `Gather` on the last axis;
//! - a binary `TreeEnsembleClassifier` whose weights all sit on one class (what skl2onnx
//!   writes for a two-class tree) gets its label from `ArgMax` over its probabilities, as
//!   onnxruntime does; tract would answer the first class for every row.

use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType as PbType, type_proto, AttributeProto, GraphProto,
    NodeProto, TensorProto, TypeProto,
};

/// Names of the graph's real inputs (initializers listed as inputs are not inputs).
pub fn input_names(graph: &GraphProto) -> Vec<String> {
    graph.input.iter().filter(|i| !graph.initializer.iter().any(|t| t.name == i.name)).map(|i| i.name.clone()).collect()
}

/// Rewrites the operators tract lacks into ones it runs.
pub fn make_runnable(graph: &mut GraphProto) -> Result<(), String> {
    let nodes = std::mem::take(&mut graph.node);
    for node in nodes {
        match (node.domain.as_str(), node.op_type.as_str()) {
            ("ai.onnx.ml", "ZipMap") => replace_zipmap(graph, node)?,
            ("ai.onnx.ml", "Scaler") => replace_scaler(graph, node)?,
            ("ai.onnx.ml", "ArrayFeatureExtractor") => replace_array_feature_extractor(graph, node)?,
            ("ai.onnx.ml", "TreeEnsembleClassifier") if is_single_column_binary(&node) => {
                relabel_binary_tree_classifier(graph, node)?
            }
            _ => graph.node.push(node),
        }
    }
    Ok(())
}

fn one_in_one_out(node: &NodeProto, inputs: usize) -> Result<(), String> {
    if node.input.len() != inputs || node.output.len() != 1 {
        return Err(format!("{} node '{}' has an unexpected number of inputs or outputs", node.op_type, node.name));
    }
    Ok(())
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        name: format!("lectern_{op}_{output}"),
        op_type: op.to_string(),
        attribute,
        ..Default::default()
    }
}

fn int_attribute(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: value, ..Default::default() }
}

fn floats(node: &NodeProto, name: &str) -> Vec<f32> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.floats.clone()).unwrap_or_default()
}

fn float_tensor(name: String, values: Vec<f32>) -> TensorProto {
    TensorProto {
        name,
        dims: vec![values.len() as i64],
        data_type: PbType::Float as i32,
        float_data: values,
        ..Default::default()
    }
}

fn replace_zipmap(graph: &mut GraphProto, zipmap: NodeProto) -> Result<(), String> {
    one_in_one_out(&zipmap, 1)?;
    let output = &zipmap.output[0];
    if let Some(info) = graph.output.iter_mut().find(|o| &o.name == output) {
        info.r#type = Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: PbType::Float as i32,
                shape: None,
            })),
            ..Default::default()
        });
    }
    graph.node.push(node("Identity", &[&zipmap.input[0]], output, vec![]));
    Ok(())
}

fn replace_scaler(graph: &mut GraphProto, scaler: NodeProto) -> Result<(), String> {
    one_in_one_out(&scaler, 1)?;
    let out = scaler.output[0].clone();
    let (cast, offset, shifted, scale) = (
        format!("{out}_lectern_cast"),
        format!("{out}_lectern_offset"),
        format!("{out}_lectern_shifted"),
        format!("{out}_lectern_scale"),
    );
    let or_default = |mut v: Vec<f32>, default: f32| {
        if v.is_empty() {
            v.push(default);
        }
        v
    };
    graph.initializer.push(float_tensor(offset.clone(), or_default(floats(&scaler, "offset"), 0.0)));
    graph.initializer.push(float_tensor(scale.clone(), or_default(floats(&scaler, "scale"), 1.0)));
    graph.node.push(node("Cast", &[&scaler.input[0]], &cast, vec![int_attribute("to", PbType::Float as i64)]));
    graph.node.push(node("Sub", &[&cast, &offset], &shifted, vec![]));
    graph.node.push(node("Mul", &[&shifted, &scale], &out, vec![]));
    Ok(())
}

fn replace_array_feature_extractor(graph: &mut GraphProto, afe: NodeProto) -> Result<(), String> {
    one_in_one_out(&afe, 2)?;
    let out = afe.output[0].clone();
    let (flat_shape, flat) = (format!("{out}_lectern_flat_shape"), format!("{out}_lectern_flat"));
    graph.initializer.push(TensorProto {
        name: flat_shape.clone(),
        dims: vec![1],
        data_type: PbType::Int64 as i32,
        int64_data: vec![-1],
        ..Default::default()
    });
    graph.node.push(node("Reshape", &[&afe.input[1], &flat_shape], &flat, vec![]));
    graph.node.push(node("Gather", &[&afe.input[0], &flat], &out, vec![int_attribute("axis", -1)]));
    Ok(())
}

fn ints(node: &NodeProto, name: &str) -> Vec<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.ints.clone()).unwrap_or_default()
}

fn strings(node: &NodeProto, name: &str) -> Vec<Vec<u8>> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.strings.clone()).unwrap_or_default()
}

fn is_single_column_binary(node: &NodeProto) -> bool {
    let classes = ints(node, "classlabels_int64s").len().max(strings(node, "classlabels_strings").len());
    let ids = ints(node, "class_ids");
    classes == 2 && !ids.is_empty() && ids.iter().all(|&c| c == ids[0]) && node.output.len() == 2
}

fn relabel_binary_tree_classifier(graph: &mut GraphProto, mut tree: NodeProto) -> Result<(), String> {
    let label = std::mem::take(&mut tree.output[0]);
    tree.output[0] = format!("{label}_lectern_unused");
    let probabilities = tree.output[1].clone();
    let (classes, argmax) = (format!("{label}_lectern_classes"), format!("{label}_lectern_argmax"));
    let labels_int = ints(&tree, "classlabels_int64s");
    graph.initializer.push(if labels_int.is_empty() {
        TensorProto {
            name: classes.clone(),
            dims: vec![2],
            data_type: PbType::String as i32,
            string_data: strings(&tree, "classlabels_strings"),
            ..Default::default()
        }
    } else {
        TensorProto {
            name: classes.clone(),
            dims: vec![2],
            data_type: PbType::Int64 as i32,
            int64_data: labels_int,
            ..Default::default()
        }
    });
    graph.node.push(tree);
    graph.node.push(node(
        "ArgMax",
        &[&probabilities],
        &argmax,
        vec![int_attribute("axis", 1), int_attribute("keepdims", 0)],
    ));
    graph.node.push(node("Gather", &[&classes, &argmax], &label, vec![int_attribute("axis", 0)]));
    Ok(())
}
