//! The smartcore learners behind each algorithm, and reading their fitted structure out.

use crate::error::TrainError;
use crate::model::{ModelBody, Tree};
use crate::params::Params;
use crate::train::{fill_node_stats, tree_from_json, Algorithm, Progress, Stage};
use serde_json::Value;
use smartcore::ensemble::random_forest_classifier::{RandomForestClassifier, RandomForestClassifierParameters};
use smartcore::ensemble::random_forest_regressor::{RandomForestRegressor, RandomForestRegressorParameters};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::linear_regression::{LinearRegression, LinearRegressionParameters};
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};
use smartcore::tree::decision_tree_classifier::{
    DecisionTreeClassifier, DecisionTreeClassifierParameters, SplitCriterion,
};
use smartcore::tree::decision_tree_regressor::{DecisionTreeRegressor, DecisionTreeRegressorParameters};
use std::sync::atomic::{AtomicBool, Ordering};

/// A fitted model's structure and its predictions on the test rows.
pub(crate) struct Fitted {
    pub body: ModelBody,
    pub test_predictions: Vec<f64>,
}

fn learner(e: smartcore::error::Failed) -> TrainError {
    TrainError::Learner(e.to_string())
}

fn matrix(rows: &[Vec<f64>]) -> Result<DenseMatrix<f64>, TrainError> {
    DenseMatrix::from_2d_vec(&rows.to_vec()).map_err(learner)
}

fn serialized<T: serde::Serialize>(model: &T) -> Result<Value, TrainError> {
    serde_json::to_value(model).map_err(|e| TrainError::Learner(format!("reading the fitted model: {e}")))
}

fn cancelled(cancel: &AtomicBool) -> Result<(), TrainError> {
    if cancel.load(Ordering::Relaxed) {
        Err(TrainError::Cancelled)
    } else {
        Ok(())
    }
}

/// The tree parameters shared by decision trees and forests.
pub(crate) struct TreeParams {
    max_depth: Option<u16>,
    min_samples_split: usize,
    min_samples_leaf: usize,
}

fn tree_params(params: &mut Params) -> Result<TreeParams, TrainError> {
    Ok(TreeParams {
        // Ours counts levels of splits (as scikit-learn's); smartcore counts the root as level 1.
        max_depth: params.integer("max_depth", None, 1, 100)?.map(|d| d as u16 + 1),
        min_samples_split: params.integer("min_samples_split", Some(2), 2, 1_000_000)?.unwrap_or(2) as usize,
        min_samples_leaf: params.integer("min_samples_leaf", Some(1), 1, 1_000_000)?.unwrap_or(1) as usize,
    })
}

fn criterion(params: &mut Params) -> Result<SplitCriterion, TrainError> {
    Ok(match params.choice("criterion", &["gini", "entropy"])? {
        "entropy" => SplitCriterion::Entropy,
        _ => SplitCriterion::Gini,
    })
}

/// An algorithm with its parameters read and checked, before any fitting.
pub(crate) enum Spec {
    Tree { tp: TreeParams, criterion: SplitCriterion },
    Forest { n_trees: usize, tp: TreeParams, m: usize, criterion: SplitCriterion },
    Logistic { c: f64 },
    Linear,
    Knn { k: usize },
}

/// Reads and checks the parameters of `algorithm` for `width` encoded features and `n_train`
/// training rows; an unknown parameter, or one out of range, is refused here.
pub(crate) fn read_spec(
    algorithm: Algorithm,
    classification: bool,
    params: &mut Params,
    width: usize,
    n_train: usize,
) -> Result<Spec, TrainError> {
    let spec = match algorithm {
        Algorithm::DecisionTree => {
            let tp = tree_params(params)?;
            let criterion = if classification { criterion(params)? } else { SplitCriterion::Gini };
            Spec::Tree { tp, criterion }
        }
        Algorithm::RandomForest => {
            let n_trees = params.integer("n_trees", Some(100), 1, 1000)?.unwrap_or(100) as usize;
            let tp = tree_params(params)?;
            let default_m =
                if classification { ((width as f64).sqrt().floor() as u64).max(1) } else { width.max(1) as u64 };
            let m =
                params.integer("max_features", Some(default_m), 1, width.max(1) as u64)?.unwrap_or(default_m) as usize;
            let criterion = if classification { criterion(params)? } else { SplitCriterion::Gini };
            Spec::Forest { n_trees, tp, m, criterion }
        }
        Algorithm::LogisticRegression => Spec::Logistic { c: params.positive("C", 1.0, 0.0, 1e9)? },
        Algorithm::LinearRegression => Spec::Linear,
        Algorithm::Knn => Spec::Knn { k: params.integer("k", Some(5), 1, n_train as u64)?.unwrap_or(5) as usize },
    };
    params.finish(algorithm.name())?;
    Ok(spec)
}

/// Per column mean and standard deviation (1 where a column is constant).
fn standardizer(x: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let n = x.len() as f64;
    let width = x.first().map_or(0, Vec::len);
    let mut mean = vec![0.0; width];
    let mut scale = vec![0.0; width];
    for row in x {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v / n;
        }
    }
    for row in x {
        for ((s, v), m) in scale.iter_mut().zip(row).zip(&mean) {
            *s += (v - m) * (v - m) / n;
        }
    }
    for s in &mut scale {
        *s = if *s > 0.0 { s.sqrt() } else { 1.0 };
    }
    (mean, scale)
}

fn standardize(x: &[Vec<f64>], mean: &[f64], scale: &[f64]) -> Vec<Vec<f64>> {
    x.iter().map(|row| row.iter().zip(mean).zip(scale).map(|((v, m), s)| (v - m) / s).collect()).collect()
}

fn check_same(rust: &[f64], extracted: &[f64]) -> Result<(), TrainError> {
    if rust.iter().zip(extracted).all(|(a, b)| a == b || (a - b).abs() <= 1e-9 * a.abs().max(1.0)) {
        Ok(())
    } else {
        Err(TrainError::Learner("the model read out of smartcore does not predict as smartcore does".into()))
    }
}

/// Fits a classifier; `y` holds class indices `0..n_classes`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit_classifier(
    spec: Spec,
    x: &[Vec<f64>],
    y: &[usize],
    n_classes: usize,
    x_test: &[Vec<f64>],
    seed: u64,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<Fitted, TrainError> {
    let width = x.first().map_or(0, Vec::len);
    let y_i32: Vec<i32> = y.iter().map(|c| *c as i32).collect();
    let y_f64: Vec<f64> = y.iter().map(|c| *c as f64).collect();
    let class_of = |v: &Value, classes: &Value| -> Option<f64> {
        let position = v.as_u64()? as usize;
        classes.get(position)?.as_f64()
    };
    match spec {
        Spec::Tree { tp, criterion } => {
            progress(Progress { stage: Stage::Training, percent: 10 });
            let xm = matrix(x)?;
            let model = DecisionTreeClassifier::fit(
                &xm,
                &y_i32,
                DecisionTreeClassifierParameters {
                    criterion,
                    max_depth: tp.max_depth,
                    min_samples_leaf: tp.min_samples_leaf,
                    min_samples_split: tp.min_samples_split,
                    seed: Some(seed),
                },
            )
            .map_err(learner)?;
            let predicted: Vec<f64> =
                model.predict(&matrix(x_test)?).map_err(learner)?.iter().map(|c| *c as f64).collect();
            let json = serialized(&model)?;
            let classes = json["classes"].clone();
            let mut tree = tree_from_json(&json, &|v| class_of(v, &classes))?;
            check_same(&predicted, &x_test.iter().map(|r| tree.nodes[tree.leaf(r)].output).collect::<Vec<_>>())?;
            fill_node_stats(&mut tree, x, &y_f64, n_classes);
            Ok(Fitted { body: ModelBody::Trees { trees: vec![tree] }, test_predictions: predicted })
        }
        Spec::Forest { n_trees, tp, m, criterion } => {
            let xm = matrix(x)?;
            let xt = matrix(x_test)?;
            let mut votes = vec![vec![0usize; n_classes]; x_test.len()];
            let mut trees: Vec<Tree> = Vec::with_capacity(n_trees);
            for i in 0..n_trees {
                cancelled(cancel)?;
                let model = RandomForestClassifier::fit(
                    &xm,
                    &y_i32,
                    RandomForestClassifierParameters {
                        criterion: criterion.clone(),
                        max_depth: tp.max_depth,
                        min_samples_leaf: tp.min_samples_leaf,
                        min_samples_split: tp.min_samples_split,
                        n_trees: 1,
                        m: Some(m),
                        keep_samples: false,
                        seed: seed.wrapping_add(i as u64),
                    },
                )
                .map_err(learner)?;
                let predicted: Vec<f64> = model.predict(&xt).map_err(learner)?.iter().map(|c| *c as f64).collect();
                let json = serialized(&model)?;
                let forest_classes = json["classes"].clone();
                let tree_json = &json["trees"][0];
                let tree_classes = tree_json["classes"].clone();
                let mut tree = tree_from_json(tree_json, &|v| {
                    let value = class_of(v, &tree_classes)?;
                    forest_classes.as_array()?.iter().position(|c| c.as_f64() == Some(value))?;
                    Some(value)
                })?;
                check_same(&predicted, &x_test.iter().map(|r| tree.nodes[tree.leaf(r)].output).collect::<Vec<_>>())?;
                for (row, p) in votes.iter_mut().zip(&predicted) {
                    row[*p as usize] += 1;
                }
                fill_node_stats(&mut tree, x, &y_f64, n_classes);
                trees.push(tree);
                progress(Progress { stage: Stage::Training, percent: (10 + 80 * (i + 1) / n_trees) as u8 });
            }
            let test_predictions = votes.iter().map(|v| first_max(v) as f64).collect();
            Ok(Fitted { body: ModelBody::Trees { trees }, test_predictions })
        }
        Spec::Logistic { c } => {
            progress(Progress { stage: Stage::Training, percent: 10 });
            let (mean, scale) = standardizer(x);
            let xs = standardize(x, &mean, &scale);
            let model = LogisticRegression::fit(
                &matrix(&xs)?,
                &y_i32,
                LogisticRegressionParameters::default().with_alpha(1.0 / c),
            )
            .map_err(learner)?;
            let predicted: Vec<f64> = model
                .predict(&matrix(&standardize(x_test, &mean, &scale))?)
                .map_err(learner)?
                .iter()
                .map(|c| *c as f64)
                .collect();
            let present: Vec<usize> = model.classes().iter().map(|c| *c as usize).collect();
            let coef = model.coefficients();
            let intercept = model.intercept();
            let (rows, cols) = coef.shape();
            if cols != width {
                return Err(TrainError::Learner(format!(
                    "logistic regression gave {cols} coefficients for {width} features"
                )));
            }
            // One row per class; a class with no training rows can never win.
            let mut weights = vec![vec![0.0; width]; n_classes];
            let mut intercepts = vec![-1e9; n_classes];
            if rows == 1 {
                intercepts[present[0]] = 0.0;
                weights[present[1]] = (0..width).map(|j| *coef.get((0, j))).collect();
                intercepts[present[1]] = *intercept.get((0, 0));
            } else {
                for (r, class) in present.iter().enumerate() {
                    weights[*class] = (0..width).map(|j| *coef.get((r, j))).collect();
                    intercepts[*class] = *intercept.get((r, 0));
                }
            }
            Ok(Fitted { body: ModelBody::Linear { weights, intercepts, mean, scale }, test_predictions: predicted })
        }
        Spec::Knn { k } => {
            progress(Progress { stage: Stage::Training, percent: 10 });
            let predicted: Vec<f64> = x_test
                .iter()
                .map(|row| {
                    let mut votes = vec![0usize; n_classes];
                    for i in nearest(x, row, k) {
                        votes[y[i]] += 1;
                    }
                    first_max(&votes) as f64
                })
                .collect();
            Ok(Fitted {
                body: ModelBody::Neighbours { k, points: x.to_vec(), targets: y_f64 },
                test_predictions: predicted,
            })
        }
        Spec::Linear => unreachable!("refused for classes before fitting"),
    }
}

/// The `k` training rows nearest to `row` (squared Euclidean distance), nearest first; among
/// rows at the same distance, the earlier training row first. This is the exported model's
/// rule (ONNX `TopK`), which is why k-nearest neighbours is searched here rather than by
/// smartcore, whose heap search breaks ties in an order the ONNX model cannot reproduce.
fn nearest(points: &[Vec<f64>], row: &[f64], k: usize) -> Vec<usize> {
    let mut distances: Vec<(f64, usize)> = points
        .iter()
        .enumerate()
        .map(|(i, p)| (p.iter().zip(row).map(|(a, b)| (a - b) * (a - b)).sum::<f64>(), i))
        .collect();
    let k = k.min(distances.len());
    if k < distances.len() {
        distances.select_nth_unstable_by(k, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        distances.truncate(k);
    }
    distances.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    distances.into_iter().map(|(_, i)| i).collect()
}

/// The first index of the largest count (as smartcore's forest vote).
fn first_max(v: &[usize]) -> usize {
    let mut best = 0;
    for (i, c) in v.iter().enumerate() {
        if *c > v[best] {
            best = i;
        }
    }
    best
}

/// Fits a regressor.
pub(crate) fn fit_regressor(
    spec: Spec,
    x: &[Vec<f64>],
    y: &[f64],
    x_test: &[Vec<f64>],
    seed: u64,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<Fitted, TrainError> {
    let width = x.first().map_or(0, Vec::len);
    let y_vec = y.to_vec();
    match spec {
        Spec::Tree { tp, .. } => {
            progress(Progress { stage: Stage::Training, percent: 10 });
            let model = DecisionTreeRegressor::fit(
                &matrix(x)?,
                &y_vec,
                DecisionTreeRegressorParameters {
                    max_depth: tp.max_depth,
                    min_samples_leaf: tp.min_samples_leaf,
                    min_samples_split: tp.min_samples_split,
                    seed: Some(seed),
                },
            )
            .map_err(learner)?;
            let predicted: Vec<f64> = model.predict(&matrix(x_test)?).map_err(learner)?;
            let mut tree = tree_from_json(&serialized(&model)?, &|v| v.as_f64())?;
            check_same(&predicted, &x_test.iter().map(|r| tree.nodes[tree.leaf(r)].output).collect::<Vec<_>>())?;
            fill_node_stats(&mut tree, x, y, 0);
            Ok(Fitted { body: ModelBody::Trees { trees: vec![tree] }, test_predictions: predicted })
        }
        Spec::Forest { n_trees, tp, m, .. } => {
            let xm = matrix(x)?;
            let xt = matrix(x_test)?;
            let mut sums = vec![0.0; x_test.len()];
            let mut trees = Vec::with_capacity(n_trees);
            for i in 0..n_trees {
                cancelled(cancel)?;
                let model = RandomForestRegressor::fit(
                    &xm,
                    &y_vec,
                    RandomForestRegressorParameters {
                        max_depth: tp.max_depth,
                        min_samples_leaf: tp.min_samples_leaf,
                        min_samples_split: tp.min_samples_split,
                        n_trees: 1,
                        m: Some(m),
                        keep_samples: false,
                        seed: seed.wrapping_add(i as u64),
                    },
                )
                .map_err(learner)?;
                let predicted: Vec<f64> = model.predict(&xt).map_err(learner)?;
                let mut tree = tree_from_json(&serialized(&model)?, &|v| v.as_f64())?;
                check_same(&predicted, &x_test.iter().map(|r| tree.nodes[tree.leaf(r)].output).collect::<Vec<_>>())?;
                for (s, p) in sums.iter_mut().zip(&predicted) {
                    *s += p;
                }
                fill_node_stats(&mut tree, x, y, 0);
                trees.push(tree);
                progress(Progress { stage: Stage::Training, percent: (10 + 80 * (i + 1) / n_trees) as u8 });
            }
            let test_predictions = sums.iter().map(|s| s / n_trees as f64).collect();
            Ok(Fitted { body: ModelBody::Trees { trees }, test_predictions })
        }
        Spec::Linear => {
            progress(Progress { stage: Stage::Training, percent: 10 });
            let (mean, scale) = standardizer(x);
            let model = LinearRegression::fit(
                &matrix(&standardize(x, &mean, &scale))?,
                &y_vec,
                LinearRegressionParameters::default(),
            )
            .map_err(learner)?;
            let predicted: Vec<f64> = model.predict(&matrix(&standardize(x_test, &mean, &scale))?).map_err(learner)?;
            let coef = model.coefficients();
            let weights: Vec<f64> = match coef.shape() {
                (r, 1) if r == width => (0..width).map(|j| *coef.get((j, 0))).collect(),
                (1, c) if c == width => (0..width).map(|j| *coef.get((0, j))).collect(),
                (r, c) => {
                    return Err(TrainError::Learner(format!(
                        "linear regression gave {r}x{c} coefficients for {width} features"
                    )))
                }
            };
            Ok(Fitted {
                body: ModelBody::Linear { weights: vec![weights], intercepts: vec![*model.intercept()], mean, scale },
                test_predictions: predicted,
            })
        }
        Spec::Knn { k } => {
            progress(Progress { stage: Stage::Training, percent: 10 });
            let predicted: Vec<f64> =
                x_test.iter().map(|row| nearest(x, row, k).iter().map(|i| y[*i]).sum::<f64>() / k as f64).collect();
            Ok(Fitted {
                body: ModelBody::Neighbours { k, points: x.to_vec(), targets: y_vec },
                test_predictions: predicted,
            })
        }
        Spec::Logistic { .. } => unreachable!("refused for numbers before fitting"),
    }
}
