//! Export of a trained model to ONNX, with standard operators only (opset 13), so that both
//! tract and onnxruntime run it.
//!
//! The model takes `X`: FP32 `[N, features]`, one column per input feature in
//! [`TrainedModel::features`] order — a number, or a category's index in that feature's
//! category list; NaN for a missing value (replaced inside the model by the training rows'
//! mean, or most frequent category). Outputs, as skl2onnx's with `zipmap=False`:
//! - classification: `output_label` INT64 `[N]` (the class index; the labels are in the model's
//!   metadata `classes` and in [`TrainedModel::classes`]) and `output_probability` FP32
//!   `[N, classes]`;
//! - regression: `output_label` FP32 `[N]`.
//!
//! Trees are evaluated as a fixed number of steps of "gather this node's feature and threshold,
//! compare, move to a child" over all trees at once (leaves point to themselves), which needs
//! no ONNX-ML operator: tract supports `TreeEnsembleClassifier` but not the regressor.
//! Thresholds are rounded down to the nearest FP32 value so that FP32 inputs go the same way
//! as in the trained model.

use crate::error::TrainError;
use crate::model::{FeatureEncoding, ModelBody, Task};
use crate::train::TrainedModel;
use prost::Message;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

/// The opset the exported graph uses.
pub const OPSET: i64 = 13;

/// Builds a graph node by node, naming intermediate values.
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    next: usize,
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i, ..Default::default() }
}

fn attr_ints(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints, ..Default::default() }
}

impl Graph {
    fn fresh(&mut self, base: &str) -> String {
        self.next += 1;
        format!("{base}_{}", self.next)
    }

    fn op(&mut self, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> String {
        self.op_n(op, inputs, 1, attribute).remove(0)
    }

    fn op_n(&mut self, op: &str, inputs: &[&str], outputs: usize, attribute: Vec<AttributeProto>) -> Vec<String> {
        let output: Vec<String> = (0..outputs).map(|_| self.fresh(&op.to_ascii_lowercase())).collect();
        let name = self.fresh(op);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: output.clone(),
            name,
            op_type: op.into(),
            attribute,
            ..Default::default()
        });
        output
    }

    /// Renames the last node's output (to give a graph output its name).
    fn name_last(&mut self, name: &str) {
        let last = self.nodes.last_mut().expect("a node");
        last.output[0] = name.into();
    }

    fn floats(&mut self, dims: &[usize], data: Vec<f32>) -> String {
        let name = self.fresh("const");
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|d| *d as i64).collect(),
            data_type: DataType::Float as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    fn ints(&mut self, dims: &[usize], data: Vec<i64>) -> String {
        let name = self.fresh("const");
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|d| *d as i64).collect(),
            data_type: DataType::Int64 as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }
}

/// The largest FP32 value not above `t`: for an FP32 `x`, `x <= t` exactly when
/// `x <= round_down_f32(t)`.
pub fn round_down_f32(t: f64) -> f32 {
    let f = t as f32;
    if t.is_nan() || (f as f64) <= t {
        return f;
    }
    if f > 0.0 {
        f32::from_bits(f.to_bits() - 1)
    } else if f < 0.0 {
        f32::from_bits(f.to_bits() + 1)
    } else {
        -f32::from_bits(1)
    }
}

fn tensor_info(name: &str, elem: DataType, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Some(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
                None => tensor_shape_proto::dimension::Value::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// True when `bytes` are an ONNX model (a `ModelProto` with a graph).
pub fn is_onnx(bytes: &[u8]) -> bool {
    ModelProto::decode(bytes).is_ok_and(|m| m.ir_version > 0 && m.graph.is_some())
}

/// The ONNX file of a trained model.
pub fn export(model: &TrainedModel) -> Result<Vec<u8>, TrainError> {
    let mut g = Graph { nodes: Vec::new(), initializers: Vec::new(), next: 0 };
    let n_features = model.features.len();
    let n_classes = model.classes.len();

    // Missing values → the training fill.
    let fills: Vec<f32> = model
        .features
        .iter()
        .map(|f| match &f.encoding {
            FeatureEncoding::Numeric { fill } => *fill as f32,
            FeatureEncoding::Categorical { fill, .. } => *fill as f32,
        })
        .collect();
    let fill = g.floats(&[n_features], fills);
    let nan = g.op("IsNaN", &["X"], vec![]);
    let imputed = g.op("Where", &[&nan, &fill, "X"], vec![]);

    // One-hot encoding where the learner saw it.
    let one_hot = matches!(model.body, ModelBody::Linear { .. } | ModelBody::Neighbours { .. });
    let has_categories = model.features.iter().any(|f| matches!(f.encoding, FeatureEncoding::Categorical { .. }));
    let encoded = if one_hot && has_categories {
        let mut parts = Vec::new();
        for (j, feature) in model.features.iter().enumerate() {
            let index = g.ints(&[1], vec![j as i64]);
            let column = g.op("Gather", &[&imputed, &index], vec![attr_int("axis", 1)]);
            match &feature.encoding {
                FeatureEncoding::Numeric { .. } => parts.push(column),
                FeatureEncoding::Categorical { categories, .. } => {
                    let codes = g.floats(&[categories.len()], (0..categories.len()).map(|c| c as f32).collect());
                    let equal = g.op("Equal", &[&column, &codes], vec![]);
                    parts.push(g.op("Cast", &[&equal], vec![attr_int("to", DataType::Float as i64)]));
                }
            }
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        g.op("Concat", &refs, vec![attr_int("axis", 1)])
    } else {
        imputed
    };
    let width = model.encoded_names.len();

    let classification = model.task == Task::Classification;
    match &model.body {
        ModelBody::Trees { trees } => {
            // All trees' nodes in one table; each tree's node ids offset by its start.
            let mut feature = Vec::new();
            let mut threshold = Vec::new();
            let mut left = Vec::new();
            let mut right = Vec::new();
            let mut value: Vec<f32> = Vec::new();
            let mut roots = Vec::new();
            let mut depth = 0;
            for tree in trees {
                let base = feature.len() as i64;
                roots.push(base);
                depth = depth.max(tree.depth());
                for (i, node) in tree.nodes.iter().enumerate() {
                    match &node.split {
                        Some(s) => {
                            feature.push(s.feature as i64);
                            threshold.push(round_down_f32(s.threshold));
                            left.push(base + s.left as i64);
                            right.push(base + s.right as i64);
                        }
                        None => {
                            feature.push(0);
                            threshold.push(0.0);
                            left.push(base + i as i64);
                            right.push(base + i as i64);
                        }
                    }
                    if classification {
                        value.extend((0..n_classes).map(|c| if node.output as usize == c { 1.0 } else { 0.0 }));
                    } else {
                        value.push(node.output as f32);
                    }
                }
            }
            let n_trees = trees.len();
            let total = feature.len();
            let root_feature = g.ints(&[n_trees], roots.iter().map(|r| feature[*r as usize]).collect());
            let root_threshold = g.floats(&[n_trees], roots.iter().map(|r| threshold[*r as usize]).collect());
            let root_left = g.ints(&[n_trees], roots.iter().map(|r| left[*r as usize]).collect());
            let root_right = g.ints(&[n_trees], roots.iter().map(|r| right[*r as usize]).collect());
            let feature_t = g.ints(&[total], feature);
            let threshold_t = g.floats(&[total], threshold);
            let left_t = g.ints(&[total], left);
            let right_t = g.ints(&[total], right);
            // Step 1 from the roots: [N, trees] node ids.
            let v = g.op("Gather", &[&encoded, &root_feature], vec![attr_int("axis", 1)]);
            let cond = g.op("LessOrEqual", &[&v, &root_threshold], vec![]);
            let mut state = g.op("Where", &[&cond, &root_left, &root_right], vec![]);
            for _ in 1..depth {
                let f = g.op("Gather", &[&feature_t, &state], vec![]);
                let v = g.op("GatherElements", &[&encoded, &f], vec![attr_int("axis", 1)]);
                let t = g.op("Gather", &[&threshold_t, &state], vec![]);
                let cond = g.op("LessOrEqual", &[&v, &t], vec![]);
                let l = g.op("Gather", &[&left_t, &state], vec![]);
                let r = g.op("Gather", &[&right_t, &state], vec![]);
                state = g.op("Where", &[&cond, &l, &r], vec![]);
            }
            if classification {
                let table = g.floats(&[total, n_classes], value);
                let votes = g.op("Gather", &[&table, &state], vec![]);
                g.op("ReduceMean", &[&votes], vec![attr_ints("axes", vec![1]), attr_int("keepdims", 0)]);
                g.name_last("output_probability");
                g.op("ArgMax", &["output_probability"], vec![attr_int("axis", 1), attr_int("keepdims", 0)]);
                g.name_last("output_label");
            } else {
                let table = g.floats(&[total], value);
                let values = g.op("Gather", &[&table, &state], vec![]);
                g.op("ReduceMean", &[&values], vec![attr_ints("axes", vec![1]), attr_int("keepdims", 0)]);
                g.name_last("output_label");
            }
        }
        ModelBody::Linear { weights, intercepts, mean, scale } => {
            let outputs = weights.len();
            let mean = g.floats(&[width], mean.iter().map(|v| *v as f32).collect());
            let scale = g.floats(&[width], scale.iter().map(|v| *v as f32).collect());
            let centred = g.op("Sub", &[&encoded, &mean], vec![]);
            let standard = g.op("Div", &[&centred, &scale], vec![]);
            let mut wt = vec![0f32; width * outputs];
            for (o, row) in weights.iter().enumerate() {
                for (j, w) in row.iter().enumerate() {
                    wt[j * outputs + o] = *w as f32;
                }
            }
            let wt = g.floats(&[width, outputs], wt);
            let b = g.floats(&[outputs], intercepts.iter().map(|v| *v as f32).collect());
            let product = g.op("MatMul", &[&standard, &wt], vec![]);
            let z = g.op("Add", &[&product, &b], vec![]);
            if classification {
                g.op("Softmax", &[&z], vec![attr_int("axis", 1)]);
                g.name_last("output_probability");
                g.op("ArgMax", &[&z], vec![attr_int("axis", 1), attr_int("keepdims", 0)]);
                g.name_last("output_label");
            } else {
                let axes = g.ints(&[1], vec![1]);
                g.op("Squeeze", &[&z, &axes], vec![]);
                g.name_last("output_label");
            }
        }
        ModelBody::Neighbours { k, points, targets } => {
            let m = points.len();
            let flat: Vec<f32> = points.iter().flatten().map(|v| *v as f32).collect();
            let points_t = g.floats(&[m, width], flat);
            let axes = g.ints(&[1], vec![1]);
            let x3 = g.op("Unsqueeze", &[&encoded, &axes], vec![]);
            let diff = g.op("Sub", &[&x3, &points_t], vec![]);
            let square = g.op("Mul", &[&diff, &diff], vec![]);
            let axes2 = g.ints(&[1], vec![2]);
            let distance = g.op("ReduceSum", &[&square, &axes2], vec![attr_int("keepdims", 0)]);
            let kk = g.ints(&[1], vec![*k as i64]);
            let nearest = g.op_n(
                "TopK",
                &[&distance, &kk],
                2,
                vec![attr_int("axis", 1), attr_int("largest", 0), attr_int("sorted", 1)],
            );
            if classification {
                let labels = g.ints(&[m], targets.iter().map(|t| *t as i64).collect());
                let neighbour_labels = g.op("Gather", &[&labels, &nearest[1]], vec![]);
                let axes3 = g.ints(&[1], vec![2]);
                let l3 = g.op("Unsqueeze", &[&neighbour_labels, &axes3], vec![]);
                let classes = g.ints(&[n_classes], (0..n_classes as i64).collect());
                let equal = g.op("Equal", &[&l3, &classes], vec![]);
                let votes = g.op("Cast", &[&equal], vec![attr_int("to", DataType::Float as i64)]);
                g.op("ReduceMean", &[&votes], vec![attr_ints("axes", vec![1]), attr_int("keepdims", 0)]);
                g.name_last("output_probability");
                g.op("ArgMax", &["output_probability"], vec![attr_int("axis", 1), attr_int("keepdims", 0)]);
                g.name_last("output_label");
            } else {
                let values = g.floats(&[m], targets.iter().map(|t| *t as f32).collect());
                let neighbour_values = g.op("Gather", &[&values, &nearest[1]], vec![]);
                g.op("ReduceMean", &[&neighbour_values], vec![attr_ints("axes", vec![1]), attr_int("keepdims", 0)]);
                g.name_last("output_label");
            }
        }
    }

    let mut outputs = Vec::new();
    if classification {
        outputs.push(tensor_info("output_label", DataType::Int64, &[None]));
        outputs.push(tensor_info("output_probability", DataType::Float, &[None, Some(n_classes as i64)]));
    } else {
        outputs.push(tensor_info("output_label", DataType::Float, &[None]));
    }
    let metadata = vec![
        StringStringEntryProto { key: "classes".into(), value: to_json(&model.classes) },
        StringStringEntryProto { key: "features".into(), value: to_json(&model.features) },
        StringStringEntryProto { key: "algorithm".into(), value: model.algorithm.name().into() },
        StringStringEntryProto { key: "target".into(), value: model.target.clone() },
    ];
    let proto = ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "lectern-train".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            node: g.nodes,
            name: format!("lectern_{}", model.algorithm.name()),
            initializer: g.initializers,
            input: vec![tensor_info("X", DataType::Float, &[None, Some(n_features as i64)])],
            output: outputs,
            ..Default::default()
        }),
        metadata_props: metadata,
        ..Default::default()
    };
    Ok(proto.encode_to_vec())
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// What a model gives for a batch: labels (class index, or value) and class probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// One per row: the class index (as a number) or the predicted value.
    pub labels: Vec<f64>,
    /// One row of class probabilities per input row (classification only).
    pub probabilities: Option<Vec<Vec<f32>>>,
}

/// Runs an exported model in tract on raw input rows (as `X` takes them).
pub fn predict_with_tract(model_bytes: &[u8], rows: &[Vec<f32>]) -> Result<Predictions, TrainError> {
    use tract_onnx::prelude::*;
    let fail = |e: TractError| TrainError::Export(format!("tract could not run the exported model: {e}"));
    let width = rows.first().map_or(0, Vec::len);
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &*model_bytes)
        .map_err(fail)?
        .with_input_fact(0, f32::fact([rows.len(), width]).into())
        .map_err(fail)?
        .into_optimized()
        .map_err(fail)?
        .into_runnable()
        .map_err(fail)?;
    let data: Vec<f32> = rows.iter().flatten().copied().collect();
    let input = tract_ndarray::Array2::from_shape_vec((rows.len(), width), data)
        .map_err(|e| TrainError::Export(e.to_string()))?;
    let outputs = plan.run(tvec!(Tensor::from(input).into())).map_err(fail)?;
    let label = &outputs[0];
    let labels: Vec<f64> = match label.datum_type() {
        DatumType::I64 => {
            label.try_as_plain_ram().map_err(fail)?.as_slice::<i64>().map_err(fail)?.iter().map(|v| *v as f64).collect()
        }
        _ => {
            label.try_as_plain_ram().map_err(fail)?.as_slice::<f32>().map_err(fail)?.iter().map(|v| *v as f64).collect()
        }
    };
    let probabilities = match outputs.get(1) {
        Some(p) => {
            let classes = p.shape().get(1).copied().unwrap_or(0).max(1);
            Some(
                p.try_as_plain_ram()
                    .map_err(fail)?
                    .as_slice::<f32>()
                    .map_err(fail)?
                    .chunks(classes)
                    .map(<[f32]>::to_vec)
                    .collect(),
            )
        }
        None => None,
    };
    Ok(Predictions { labels, probabilities })
}
