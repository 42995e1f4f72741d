//! The training engine end to end on small made-up data: reading, training every algorithm,
//! ONNX export run by tract, pictures, and the refusals a teacher may meet.

use lectern_train::dataset::{ColumnType, Dataset};
use lectern_train::onnx::{export, predict_with_tract, round_down_f32};
use lectern_train::pictures::{confusion_svg, importance_svg, tree_svg};
use lectern_train::{train, Holdout, Progress, Stage, Task, TrainError, TrainRequest, TrainedModel};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

/// 300 rows: two numbers, a colour (category) with some missing values, a free-text note and
/// a class that depends on all three inputs.
fn animals_csv() -> String {
    let mut csv = String::from("weight,height,colour,note,kind\n");
    let mut state = 7u64;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    for i in 0..300 {
        let weight = (next() * 40.0 * 10.0).round() / 10.0;
        let height = (next() * 100.0).round() / 4.0;
        let colour = ["red", "green", "blue"][i % 3];
        let kind = if weight + if colour == "red" { 15.0 } else { 0.0 } > 30.0 {
            "bear"
        } else if height > 12.0 {
            "deer"
        } else {
            "fox"
        };
        let colour = if i % 17 == 0 { "" } else { colour };
        let weight = if i % 23 == 0 { "NA".to_string() } else { weight.to_string() };
        csv.push_str(&format!("{weight},{height},{colour},animal number {i},{kind}\n"));
    }
    csv
}

fn regression_csv() -> String {
    let mut csv = String::from("a,b,size,price\n");
    for i in 0..200 {
        let a = (i * 37 % 101) as f64 / 10.0;
        let b = (i * 53 % 89) as f64 / 7.0;
        let size = ["small", "large"][i % 2];
        let price = 3.0 * a - 2.0 * b + if size == "large" { 10.0 } else { 0.0 } + (i % 7) as f64 * 0.1;
        csv.push_str(&format!("{a},{b},{size},{price:.3}\n"));
    }
    csv
}

fn request(target: &str, algorithm: &str, params: Value) -> TrainRequest {
    let params: BTreeMap<String, Value> = serde_json::from_value(params).unwrap();
    TrainRequest {
        target: target.into(),
        features: None,
        algorithm: algorithm.into(),
        params,
        holdout: Holdout::Fraction(0.25),
        seed: 42,
    }
}

fn animals() -> Dataset {
    Dataset::read_csv(animals_csv().as_bytes()).unwrap()
}

fn fit(dataset: &Dataset, req: &TrainRequest) -> Result<TrainedModel, TrainError> {
    train(dataset, req, &mut |_| {}, &AtomicBool::new(false))
}

/// The raw ONNX inputs of the model's held-out rows.
fn raw_inputs(dataset: &Dataset, model: &TrainedModel) -> Vec<Vec<f32>> {
    use lectern_train::dataset::{ColumnValues, MISSING_CODE};
    model
        .test_rows
        .iter()
        .map(|&r| {
            model
                .features
                .iter()
                .map(|f| match &dataset.column(&f.name).unwrap().values {
                    ColumnValues::Numbers(v) => v[r] as f32,
                    ColumnValues::Strings { codes, .. } if codes[r] == MISSING_CODE => f32::NAN,
                    ColumnValues::Strings { codes, .. } => codes[r] as f32,
                })
                .collect()
        })
        .collect()
}

#[test]
fn csv_schema_is_inferred_with_types_and_missing_counts() {
    let data = animals();
    let schema = data.schema();
    assert_eq!(schema.rows, 300);
    let kinds: Vec<(String, ColumnType, u64)> =
        schema.columns.iter().map(|c| (c.name.clone(), c.kind, c.missing)).collect();
    assert_eq!(
        kinds,
        vec![
            ("weight".into(), ColumnType::Number, 14),
            ("height".into(), ColumnType::Number, 0),
            ("colour".into(), ColumnType::Category, 18),
            ("note".into(), ColumnType::Text, 0),
            ("kind".into(), ColumnType::Category, 0),
        ]
    );
    assert_eq!(data.preview.len(), lectern_train::dataset::PREVIEW_ROWS);
    assert_eq!(data.preview[0][2], None, "row 0 has no colour");
    let ints = Dataset::read_csv("n\n1\n2\n3\n".as_bytes()).unwrap();
    assert_eq!(ints.schema().columns[0].kind, ColumnType::Integer);
}

#[test]
fn a_row_with_a_different_width_is_refused_with_its_line_and_column() {
    let err = Dataset::read_csv("a,b,c\n1,2,3\n4,5\n".as_bytes()).unwrap_err();
    match &err {
        TrainError::Malformed { line, column, message } => {
            assert_eq!((*line, *column), (3, 3));
            assert!(message.contains("2 fields") && message.contains("header has 3"), "{message}");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    assert!(err.is_caller_mistake());
    assert!(err.to_string().starts_with("line 3, column 3:"));
}

#[test]
fn empty_files_and_bad_headers_are_refused() {
    assert!(matches!(Dataset::read_csv("".as_bytes()), Err(TrainError::EmptyDataset(_))));
    assert!(matches!(Dataset::read_csv("a,b\n".as_bytes()), Err(TrainError::EmptyDataset(_))));
    assert!(matches!(
        Dataset::read_csv("a,a\n1,2\n".as_bytes()),
        Err(TrainError::Malformed { line: 1, column: 2, .. })
    ));
    assert!(matches!(Dataset::read_json("[]".as_bytes()), Err(TrainError::EmptyDataset(_))));
}

#[test]
fn json_arrays_of_objects_are_read_in_key_order() {
    let text = r#"[{"z": 1.5, "a": "cat"}, {"z": null, "a": "dog"}, {"a": "cat"}, {"z": 2, "a": "dog"}]"#;
    let data = Dataset::read_json(text.as_bytes()).unwrap();
    let schema = data.schema();
    assert_eq!(schema.rows, 4);
    assert_eq!(schema.columns[0].name, "z");
    assert_eq!(schema.columns[0].missing, 2);
    assert_eq!(schema.columns[1].kind, ColumnType::Category);
}

#[test]
fn json_errors_name_the_line_and_column() {
    let text = "[\n{\"a\": 1},\n{\"a\": 2, \"b\": 3}\n]";
    match Dataset::read_json(text.as_bytes()).unwrap_err() {
        TrainError::Malformed { line, message, .. } => {
            assert_eq!(line, 3);
            assert!(message.contains("'b' is not in the first object"), "{message}");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    match Dataset::read_json("[{\"a\": [1]}]".as_bytes()).unwrap_err() {
        TrainError::Malformed { line: 1, message, .. } => assert!(message.contains("list"), "{message}"),
        other => panic!("expected Malformed, got {other:?}"),
    }
    assert!(matches!(Dataset::read_json("[{\"a\": 1},".as_bytes()), Err(TrainError::Malformed { .. })));
}

#[test]
fn the_same_data_parameters_and_seed_give_the_same_model() {
    let data = animals();
    let mut req = request("kind", "random_forest", json!({"n_trees": 10}));
    req.features = Some(vec!["weight".into(), "height".into(), "colour".into()]);
    let a = fit(&data, &req).unwrap();
    let b = fit(&data, &req).unwrap();
    assert_eq!(a.body, b.body);
    assert_eq!(export(&a).unwrap(), export(&b).unwrap());
    req.seed = 43;
    let c = fit(&data, &req).unwrap();
    assert_ne!(a.test_rows, c.test_rows, "another seed draws another split");
}

/// Every algorithm, on classes and on numbers, exported and run by tract, gives the trained
/// model's own predictions on every held-out row.
#[test]
fn every_algorithm_exports_to_onnx_that_tract_runs_with_the_same_predictions() {
    let data = animals();
    let features = Some(vec!["weight".to_string(), "height".to_string(), "colour".to_string()]);
    for (algorithm, params) in [
        ("decision_tree", json!({})),
        ("decision_tree", json!({"max_depth": 3, "criterion": "entropy"})),
        ("random_forest", json!({"n_trees": 15, "max_features": 2})),
        ("logistic_regression", json!({"C": 0.5})),
        ("knn", json!({"k": 3})),
    ] {
        let mut req = request("kind", algorithm, params);
        req.features = features.clone();
        let model = fit(&data, &req).unwrap();
        assert_eq!(model.task, Task::Classification);
        assert_eq!(model.classes, vec!["bear", "deer", "fox"]);
        let onnx = export(&model).unwrap();
        let got = predict_with_tract(&onnx, &raw_inputs(&data, &model)).unwrap();
        assert_eq!(got.labels, model.test_predictions, "{algorithm}");
        let probabilities = got.probabilities.unwrap();
        for row in &probabilities {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{algorithm}: {row:?}");
        }
        let lectern_train::Metrics::Classification { accuracy, .. } = model.metrics else { panic!() };
        assert!(accuracy > 0.7, "{algorithm}: accuracy {accuracy}");
    }
    let data = Dataset::read_csv(regression_csv().as_bytes()).unwrap();
    for (algorithm, params) in [
        ("decision_tree", json!({"max_depth": 6})),
        ("random_forest", json!({"n_trees": 10})),
        ("linear_regression", json!({})),
        ("knn", json!({"k": 4})),
    ] {
        let model = fit(&data, &request("price", algorithm, params)).unwrap();
        assert_eq!(model.task, Task::Regression);
        let onnx = export(&model).unwrap();
        let got = predict_with_tract(&onnx, &raw_inputs(&data, &model)).unwrap();
        assert!(got.probabilities.is_none());
        for (a, b) in got.labels.iter().zip(&model.test_predictions) {
            assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "{algorithm}: {a} vs {b}");
        }
        let lectern_train::Metrics::Regression { r2, .. } = model.metrics else { panic!() };
        assert!(r2 > 0.6, "{algorithm}: R² {r2}");
    }
}

#[test]
fn missing_inputs_are_filled_inside_the_onnx_model() {
    let data = animals();
    let mut req = request("kind", "decision_tree", json!({}));
    req.features = Some(vec!["weight".into(), "height".into(), "colour".into()]);
    let model = fit(&data, &req).unwrap();
    let onnx = export(&model).unwrap();
    let filled: Vec<f32> = model
        .features
        .iter()
        .map(|f| match &f.encoding {
            lectern_train::model::FeatureEncoding::Numeric { fill } => *fill as f32,
            lectern_train::model::FeatureEncoding::Categorical { fill, .. } => *fill as f32,
        })
        .collect();
    let a = predict_with_tract(&onnx, &[vec![f32::NAN; 3]]).unwrap();
    let b = predict_with_tract(&onnx, &[filled]).unwrap();
    assert_eq!(a, b);
}

#[test]
fn thresholds_round_down_to_fp32() {
    for t in [0.1f64, -0.1, 2.45, 1e-40, -1e-40, 0.0, 16.5] {
        let r = round_down_f32(t);
        assert!(r as f64 <= t, "{t}");
        let next = if r >= 0.0 { f32::from_bits(r.to_bits() + 1) } else { f32::from_bits(r.to_bits() - 1) };
        assert!(next as f64 > t || r == 0.0 && t == 0.0, "{t}: {r} is not the largest FP32 below");
    }
}

#[test]
fn progress_is_reported_and_cancel_stops_a_forest() {
    let data = animals();
    let mut req = request("kind", "random_forest", json!({"n_trees": 50}));
    req.features = Some(vec!["weight".into(), "height".into()]);
    let mut seen: Vec<Progress> = Vec::new();
    train(&data, &req, &mut |p| seen.push(p), &AtomicBool::new(false)).unwrap();
    assert_eq!(seen.first().unwrap().stage, Stage::Preparing);
    assert_eq!(*seen.last().unwrap(), Progress { stage: Stage::Evaluating, percent: 100 });
    assert!(seen.windows(2).all(|w| w[0].percent <= w[1].percent));
    assert!(seen.iter().filter(|p| p.stage == Stage::Training).count() >= 50);

    let cancel = AtomicBool::new(false);
    let mut trees = 0;
    let result = train(
        &data,
        &req,
        &mut |p| {
            if p.stage == Stage::Training {
                trees += 1;
                if trees == 3 {
                    cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        },
        &cancel,
    );
    assert!(matches!(result, Err(TrainError::Cancelled)));
    assert!(trees < 5, "stopped after {trees} trees");
}

#[test]
fn bad_requests_are_refused_with_a_caller_mistake() {
    let data = animals();
    let cases: Vec<(TrainRequest, &str)> = vec![
        (request("species", "decision_tree", json!({})), "no column named 'species'"),
        (request("kind", "neural_net", json!({})), "unknown algorithm 'neural_net'"),
        (request("kind", "decision_tree", json!({"max_depth": 0})), "max_depth"),
        (request("kind", "decision_tree", json!({"depth": 3})), "does not take this parameter"),
        (request("kind", "knn", json!({"k": "many"})), "'many' is not a number"),
        (request("kind", "logistic_regression", json!({"C": -1})), "must be more than 0"),
        (request("kind", "decision_tree", json!({})), "free text"),
        (request("note", "decision_tree", json!({})), "free text"),
        (request("kind", "linear_regression", json!({})), "linear_regression predicts numbers"),
        (request("weight", "logistic_regression", json!({})), "logistic_regression predicts classes"),
    ];
    for (mut req, expected) in cases {
        if expected != "free text" {
            req.features = Some(vec!["weight".into(), "colour".into()]);
        }
        if req.target == "weight" {
            req.features = Some(vec!["height".into()]);
        }
        let err = fit(&data, &req).unwrap_err();
        assert!(err.is_caller_mistake(), "{err:?}");
        assert!(err.to_string().contains(expected), "{err} (expected '{expected}')");
    }
    let mut req = request("kind", "decision_tree", json!({}));
    req.features = Some(vec!["weight".into()]);
    for fraction in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
        req.holdout = Holdout::Fraction(fraction);
        assert!(matches!(fit(&data, &req), Err(TrainError::BadSplit(_))), "{fraction}");
    }
    let two_classes = Dataset::read_csv("x,y\n1,a\n2,a\n3,a\n4,b\n".as_bytes()).unwrap();
    let mut req = request("y", "logistic_regression", json!({}));
    req.holdout = Holdout::Rows(vec![3]);
    let err = fit(&two_classes, &req).unwrap_err();
    assert!(err.is_caller_mistake() && err.to_string().contains("only one class ('a')"), "{err}");
    let one_class = Dataset::read_csv("x,y\n1,a\n2,a\n3,a\n4,a\n".as_bytes()).unwrap();
    let err = fit(&one_class, &request("y", "decision_tree", json!({}))).unwrap_err();
    assert!(err.to_string().contains("only one class ('a')"), "{err}");
}

#[test]
fn pictures_show_the_tree_the_importances_and_the_confusion_matrix() {
    let data = animals();
    let mut req = request("kind", "decision_tree", json!({}));
    req.features = Some(vec!["weight".into(), "height".into(), "colour".into()]);
    let model = fit(&data, &req).unwrap();
    let depth = match &model.body {
        lectern_train::ModelBody::Trees { trees } => trees[0].depth(),
        _ => unreachable!(),
    };
    assert!(depth > 2);
    let full = tree_svg(&model, 64).unwrap();
    assert!(full.contains("<svg") && full.contains("weight &lt;= ") && full.contains("→ bear"), "{full}");
    assert!(!full.contains("Drawn to depth"));
    let cut = tree_svg(&model, 2).unwrap();
    assert!(cut.contains(&format!("Drawn to depth 2 of {depth}")), "{cut}");
    assert!(cut.len() < full.len());

    let importance = importance_svg(&model);
    assert!(importance.contains("mean decrease in Gini impurity") && importance.contains(">weight<"));
    let confusion = confusion_svg(&model);
    let lectern_train::Metrics::Classification { confusion: counts, .. } = &model.metrics else { panic!() };
    assert!(confusion.contains(&format!(">{}</text>", counts[0][0])));
    assert!(confusion.contains(">bear</text>"));

    let mut req = request("kind", "knn", json!({}));
    req.features = Some(vec!["weight".into()]);
    let knn = fit(&data, &req).unwrap();
    assert!(tree_svg(&knn, 4).is_none());
    assert!(importance_svg(&knn).contains("no feature importances"));
}

/// `max_depth` counts levels of splits, as scikit-learn's does (smartcore counts the root as
/// level 1, so its own `max_depth = 4` gives three levels of splits).
#[test]
fn max_depth_counts_levels_of_splits_like_scikit_learn() {
    let data = animals();
    let features = Some(vec!["weight".to_string(), "height".to_string(), "colour".to_string()]);
    for algorithm in ["decision_tree", "random_forest"] {
        for depth in [1u64, 3] {
            let mut req = request("kind", algorithm, json!({"max_depth": depth, "n_trees": 3}));
            if algorithm == "decision_tree" {
                req.params.remove("n_trees");
            }
            req.features = features.clone();
            let model = fit(&data, &req).unwrap();
            let lectern_train::ModelBody::Trees { trees } = &model.body else { panic!() };
            assert!(trees.iter().all(|t| t.depth() <= depth as usize), "{algorithm}");
            assert!(trees.iter().any(|t| t.depth() == depth as usize), "{algorithm}: max_depth {depth}");
        }
        let data = Dataset::read_csv(regression_csv().as_bytes()).unwrap();
        let mut req = request("price", algorithm, json!({"max_depth": 2, "n_trees": 3}));
        if algorithm == "decision_tree" {
            req.params.remove("n_trees");
        }
        let model = fit(&data, &req).unwrap();
        let lectern_train::ModelBody::Trees { trees } = &model.body else { panic!() };
        assert!(trees.iter().all(|t| t.depth() == 2), "{algorithm} regression");
    }
}
