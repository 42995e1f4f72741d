//! Training: from a dataset and a request to a [`TrainedModel`] with held-out metrics.
//!
//! The learners are smartcore's (decision tree, random forest, logistic and linear regression,
//! k-nearest neighbours); after fitting, the learned structure is read out of the library's
//! model into [`ModelBody`], and checked to give the library's own predictions on every test
//! row before anything else uses it.

use crate::dataset::{ColumnType, ColumnValues, Dataset, MAX_CATEGORIES, MISSING_CODE};
use crate::error::TrainError;
use crate::metrics::Metrics;
use crate::model::{Feature, FeatureEncoding, ModelBody, Split, Task, Tree, TreeNode};
use crate::params::Params;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// The algorithms, by the names requests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// A single CART decision tree (smartcore).
    DecisionTree,
    /// A random forest: bootstrapped trees, each split choosing among `max_features` random
    /// features (smartcore, one tree at a time so progress and cancellation work per tree).
    RandomForest,
    /// Logistic regression with L2 penalty `1/C` on standardized features (smartcore, L-BFGS).
    LogisticRegression,
    /// Ordinary least squares on standardized features (smartcore, SVD); numeric targets only.
    LinearRegression,
    /// k-nearest neighbours, Euclidean distance, uniform weights (brute-force search; ties
    /// broken by training row order, as the exported model does).
    Knn,
}

/// The names accepted for [`Algorithm`].
pub const ALGORITHM_NAMES: &str = "decision_tree, random_forest, logistic_regression, linear_regression, knn";

impl Algorithm {
    /// Parses a request's algorithm name.
    pub fn parse(name: &str) -> Result<Algorithm, TrainError> {
        match name.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "decision_tree" | "tree" => Ok(Algorithm::DecisionTree),
            "random_forest" | "forest" => Ok(Algorithm::RandomForest),
            "logistic_regression" | "logistic" => Ok(Algorithm::LogisticRegression),
            "linear_regression" | "linear" => Ok(Algorithm::LinearRegression),
            "knn" | "k_nearest_neighbours" | "k_nearest_neighbors" => Ok(Algorithm::Knn),
            _ => Err(TrainError::UnknownAlgorithm(name.to_string(), ALGORITHM_NAMES.to_string())),
        }
    }

    /// The request name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::DecisionTree => "decision_tree",
            Algorithm::RandomForest => "random_forest",
            Algorithm::LogisticRegression => "logistic_regression",
            Algorithm::LinearRegression => "linear_regression",
            Algorithm::Knn => "knn",
        }
    }

    fn one_hot(self) -> bool {
        matches!(self, Algorithm::LogisticRegression | Algorithm::LinearRegression | Algorithm::Knn)
    }
}

/// Which rows are held out for testing.
#[derive(Debug, Clone, PartialEq)]
pub enum Holdout {
    /// A random `fraction` in (0, 1) of the rows, drawn with the request's seed.
    Fraction(f64),
    /// Exactly these rows (0-based indices into the dataset), e.g. to match another tool's split.
    Rows(Vec<usize>),
}

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// The column to predict.
    pub target: String,
    /// The input columns; `None`: every other column.
    pub features: Option<Vec<String>>,
    /// The algorithm's name.
    pub algorithm: String,
    /// The algorithm's parameters.
    pub params: BTreeMap<String, Value>,
    /// The held-out rows.
    pub holdout: Holdout,
    /// Seeds the split and the learner: the same data, parameters and seed give the same model.
    pub seed: u64,
}

/// A stage of a training run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Checking the request, encoding features, splitting rows.
    Preparing,
    /// Fitting.
    Training,
    /// Predicting the held-out rows and computing metrics.
    Evaluating,
}

/// A progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Progress {
    /// The stage.
    pub stage: Stage,
    /// Overall completion, 0 to 100.
    pub percent: u8,
}

/// The held-out importance of each input, for the importance chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Importances {
    /// What the numbers are ("mean decrease in impurity", "coefficient", ...).
    pub measure: String,
    /// Encoded feature name and value, in feature order.
    pub values: Vec<(String, f64)>,
}

/// A model trained and evaluated.
#[derive(Debug, Clone, Serialize)]
pub struct TrainedModel {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Classification or regression.
    pub task: Task,
    /// The target column.
    pub target: String,
    /// The input columns, in the order of the model input `X`.
    pub features: Vec<Feature>,
    /// The encoded feature names (one-hot columns as `column=category`).
    pub encoded_names: Vec<String>,
    /// Class labels, index = class (classification only).
    pub classes: Vec<String>,
    /// The learned structure.
    pub body: ModelBody,
    /// Every parameter's value, given or default.
    pub params: BTreeMap<String, Value>,
    /// Metrics on the held-out rows.
    pub metrics: Metrics,
    /// The held-out rows (dataset indices).
    pub test_rows: Vec<usize>,
    /// The prediction for each held-out row: class index, or value.
    pub test_predictions: Vec<f64>,
    /// Feature importances or coefficients, when the algorithm has them.
    pub importances: Option<Importances>,
    /// The training rows used (after dropping rows with no target).
    pub train_rows: usize,
}

impl TrainedModel {
    /// Encodes raw model inputs (as the ONNX input `X` takes them) for this model's learner.
    pub fn encode_row(&self, raw: &[f64]) -> Vec<f64> {
        encode(&self.features, raw, self.algorithm.one_hot())
    }
}

/// A tiny deterministic generator (SplitMix64) for the train/test split.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Rounds to the nearest 32-bit float: the served model takes FP32 inputs, so the learner sees
/// exactly the values the ONNX model will.
fn f32_exact(x: f64) -> f64 {
    x as f32 as f64
}

fn encode(features: &[Feature], raw: &[f64], one_hot: bool) -> Vec<f64> {
    let mut out = Vec::with_capacity(raw.len());
    for (feature, &x) in features.iter().zip(raw) {
        match &feature.encoding {
            FeatureEncoding::Numeric { fill } => out.push(if x.is_nan() { *fill } else { x }),
            FeatureEncoding::Categorical { categories, fill } => {
                let code = if x.is_nan() { *fill as f64 } else { x };
                if one_hot {
                    out.extend((0..categories.len()).map(|c| if code == c as f64 { 1.0 } else { 0.0 }));
                } else {
                    out.push(code);
                }
            }
        }
    }
    out
}

fn check_cancel(cancel: &AtomicBool) -> Result<(), TrainError> {
    if cancel.load(Ordering::Relaxed) {
        Err(TrainError::Cancelled)
    } else {
        Ok(())
    }
}

/// The target column, read as classes or values.
enum Target {
    Classes { labels: Vec<String>, y: Vec<Option<usize>> },
    Values(Vec<Option<f64>>),
}

fn read_target(dataset: &Dataset, name: &str) -> Result<Target, TrainError> {
    let column = dataset.column(name)?;
    let unusable = |message: String| TrainError::UnusableTarget { column: name.to_string(), message };
    match (&column.values, column.schema.kind) {
        (_, ColumnType::Text) => {
            Err(unusable("holds free text (too many different values to be classes, and not numbers)".into()))
        }
        (ColumnValues::Numbers(v), kind) => {
            let mut distinct: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
            distinct.sort_by(f64::total_cmp);
            distinct.dedup();
            if kind == ColumnType::Integer && distinct.len() <= MAX_CATEGORIES {
                let labels = distinct.iter().map(|x| crate::dataset::format_number(*x)).collect();
                let y = v.iter().map(|x| distinct.iter().position(|d| d == x)).collect();
                Ok(Target::Classes { labels, y })
            } else {
                Ok(Target::Values(v.iter().map(|x| Some(*x).filter(|x| !x.is_nan())).collect()))
            }
        }
        (ColumnValues::Strings { dictionary, codes }, _) => {
            let mut order: Vec<usize> = (0..dictionary.len()).collect();
            order.sort_by(|a, b| dictionary[*a].cmp(&dictionary[*b]));
            let mut rank = vec![0; dictionary.len()];
            for (r, code) in order.iter().enumerate() {
                rank[*code] = r;
            }
            let labels = order.iter().map(|c| dictionary[*c].clone()).collect();
            let y = codes.iter().map(|c| (*c != MISSING_CODE).then(|| rank[*c as usize])).collect();
            Ok(Target::Classes { labels, y })
        }
    }
}

/// A request checked against its dataset: the task, the split, the encoded features and the
/// algorithm's parameters, everything but the fit.
struct Prepared {
    algorithm: Algorithm,
    task: Task,
    target: Target,
    train_rows: Vec<usize>,
    test_rows: Vec<usize>,
    features: Vec<Feature>,
    raw_columns: Vec<Vec<f64>>,
    encoded_names: Vec<String>,
    spec: crate::learners::Spec,
    params: BTreeMap<String, Value>,
}

/// Checks a request against a dataset without training: every refusal [`train`] would give
/// before fitting (columns, target, split, algorithm, parameters) is given here, quickly.
pub fn check(dataset: &Dataset, request: &TrainRequest) -> Result<(), TrainError> {
    prepare(dataset, request).map(|_| ())
}

/// Trains and evaluates a model. Runs synchronously (call it off the async runtime);
/// `progress` is called at each stage and after each tree; `cancel` is checked between stages
/// and between trees.
pub fn train(
    dataset: &Dataset,
    request: &TrainRequest,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<TrainedModel, TrainError> {
    progress(Progress { stage: Stage::Preparing, percent: 0 });
    let Prepared { algorithm, task, target, train_rows, test_rows, features, raw_columns, encoded_names, spec, params } =
        prepare(dataset, request)?;
    let one_hot = algorithm.one_hot();
    let row = |r: usize| -> Vec<f64> {
        let raw: Vec<f64> = raw_columns.iter().map(|c| c[r]).collect();
        encode(&features, &raw, one_hot)
    };
    let x_train: Vec<Vec<f64>> = train_rows.iter().map(|&r| row(r)).collect();
    let x_test: Vec<Vec<f64>> = test_rows.iter().map(|&r| row(r)).collect();
    check_cancel(cancel)?;
    progress(Progress { stage: Stage::Preparing, percent: 10 });

    let fitted = match &target {
        Target::Classes { labels, y } => {
            let y_train: Vec<usize> = train_rows.iter().map(|&r| y[r].expect("labelled")).collect();
            crate::learners::fit_classifier(
                spec,
                &x_train,
                &y_train,
                labels.len(),
                &x_test,
                request.seed,
                progress,
                cancel,
            )?
        }
        Target::Values(v) => {
            let y_train: Vec<f64> = train_rows.iter().map(|&r| v[r].expect("labelled")).collect();
            crate::learners::fit_regressor(spec, &x_train, &y_train, &x_test, request.seed, progress, cancel)?
        }
    };
    check_cancel(cancel)?;
    progress(Progress { stage: Stage::Evaluating, percent: 90 });

    let (classes, metrics) = match &target {
        Target::Classes { labels, y } => {
            let truth: Vec<usize> = test_rows.iter().map(|&r| y[r].expect("labelled")).collect();
            let predicted: Vec<usize> = fitted.test_predictions.iter().map(|p| *p as usize).collect();
            (labels.clone(), Metrics::classification(labels, &truth, &predicted))
        }
        Target::Values(v) => {
            let truth: Vec<f64> = test_rows.iter().map(|&r| v[r].expect("labelled")).collect();
            (Vec::new(), Metrics::regression(&truth, &fitted.test_predictions))
        }
    };
    let importances = importances(&fitted.body, &encoded_names, task);
    progress(Progress { stage: Stage::Evaluating, percent: 100 });
    Ok(TrainedModel {
        algorithm,
        task,
        target: request.target.clone(),
        features,
        encoded_names,
        classes,
        body: fitted.body,
        params,
        metrics,
        train_rows: train_rows.len(),
        test_rows,
        test_predictions: fitted.test_predictions,
        importances,
    })
}

fn prepare(dataset: &Dataset, request: &TrainRequest) -> Result<Prepared, TrainError> {
    let algorithm = Algorithm::parse(&request.algorithm)?;
    let target = read_target(dataset, &request.target)?;
    let task = match (&target, algorithm) {
        (Target::Classes { .. }, Algorithm::LinearRegression) => {
            return Err(TrainError::UnusableTarget {
                column: request.target.clone(),
                message: "holds classes; linear_regression predicts numbers (use logistic_regression for classes)"
                    .into(),
            })
        }
        (Target::Values(_), Algorithm::LogisticRegression) => {
            return Err(TrainError::UnusableTarget {
                column: request.target.clone(),
                message: "holds numbers; logistic_regression predicts classes (use linear_regression for numbers)"
                    .into(),
            })
        }
        (Target::Classes { .. }, _) => Task::Classification,
        (Target::Values(_), _) => Task::Regression,
    };

    // Rows with a target value.
    let labelled: Vec<usize> = (0..dataset.rows)
        .filter(|&r| match &target {
            Target::Classes { y, .. } => y[r].is_some(),
            Target::Values(v) => v[r].is_some(),
        })
        .collect();
    if labelled.is_empty() {
        return Err(TrainError::UnusableTarget { column: request.target.clone(), message: "has no values".into() });
    }
    if let Target::Classes { labels, y } = &target {
        let first = labelled.iter().find_map(|&r| y[r]).expect("labelled rows have a class");
        if labelled.iter().all(|&r| y[r] == Some(first)) {
            return Err(TrainError::UnusableTarget {
                column: request.target.clone(),
                message: format!(
                    "has only one class ('{}'); a model needs at least two classes to tell apart",
                    labels[first]
                ),
            });
        }
    }

    // Split.
    let (train_rows, test_rows) = split(&labelled, dataset.rows, &request.holdout, request.seed)?;
    if let Target::Classes { labels, y } = &target {
        let first = y[train_rows[0]];
        if train_rows.iter().all(|&r| y[r] == first) {
            return Err(TrainError::BadSplit(format!(
                "the training rows hold only one class ('{}'); hold out fewer rows or add rows of other classes",
                first.map(|c| labels[c].as_str()).unwrap_or_default()
            )));
        }
    }

    // Features.
    let feature_names: Vec<String> = match &request.features {
        Some(names) => {
            if names.is_empty() {
                return Err(TrainError::UnusableColumn {
                    column: String::new(),
                    message: "the feature list is empty; leave it out to use every other column".into(),
                });
            }
            names.clone()
        }
        None => dataset.columns.iter().map(|c| c.schema.name.clone()).filter(|n| *n != request.target).collect(),
    };
    let mut features = Vec::new();
    let mut raw_columns: Vec<Vec<f64>> = Vec::new();
    for name in &feature_names {
        if *name == request.target {
            return Err(TrainError::UnusableColumn {
                column: name.clone(),
                message: "is the target; it cannot also be a feature".into(),
            });
        }
        let column = dataset.column(name)?;
        let (encoding, raw) = match (&column.values, column.schema.kind) {
            (_, ColumnType::Text) => {
                return Err(TrainError::UnusableColumn {
                    column: name.clone(),
                    message: "holds free text (too many different values); only numbers and categories can be features"
                        .into(),
                })
            }
            (ColumnValues::Numbers(v), _) => {
                let raw: Vec<f64> = v.iter().map(|x| f32_exact(*x)).collect();
                let present: Vec<f64> = train_rows.iter().map(|&r| raw[r]).filter(|x| !x.is_nan()).collect();
                if present.is_empty() {
                    return Err(TrainError::UnusableColumn {
                        column: name.clone(),
                        message: "has no values in the training rows".into(),
                    });
                }
                let fill = f32_exact(present.iter().sum::<f64>() / present.len() as f64);
                (FeatureEncoding::Numeric { fill }, raw)
            }
            (ColumnValues::Strings { dictionary, codes }, _) => {
                let mut counts = vec![0u64; dictionary.len()];
                for &r in &train_rows {
                    if codes[r] != MISSING_CODE {
                        counts[codes[r] as usize] += 1;
                    }
                }
                let fill = (0..counts.len()).max_by_key(|&c| (counts[c], std::cmp::Reverse(c))).unwrap_or(0) as u32;
                let raw = codes.iter().map(|&c| if c == MISSING_CODE { f64::NAN } else { c as f64 }).collect();
                (FeatureEncoding::Categorical { categories: dictionary.clone(), fill }, raw)
            }
        };
        features.push(Feature { name: name.clone(), encoding });
        raw_columns.push(raw);
    }
    let one_hot = algorithm.one_hot();
    let encoded_names: Vec<String> = features
        .iter()
        .flat_map(|f| match &f.encoding {
            FeatureEncoding::Categorical { categories, .. } if one_hot => {
                categories.iter().map(|c| format!("{}={c}", f.name)).collect::<Vec<_>>()
            }
            _ => vec![f.name.clone()],
        })
        .collect();
    let mut params = Params::new(request.params.clone());
    let spec = crate::learners::read_spec(
        algorithm,
        task == Task::Classification,
        &mut params,
        encoded_names.len(),
        train_rows.len(),
    )?;
    Ok(Prepared {
        algorithm,
        task,
        target,
        train_rows,
        test_rows,
        features,
        raw_columns,
        encoded_names,
        spec,
        params: params.resolved,
    })
}

fn split(
    labelled: &[usize],
    rows: usize,
    holdout: &Holdout,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), TrainError> {
    let (train, test): (Vec<usize>, Vec<usize>) = match holdout {
        Holdout::Fraction(f) => {
            if !(*f > 0.0 && *f < 1.0) {
                return Err(TrainError::BadSplit(format!("must be more than 0 and less than 1, got {f}")));
            }
            let mut order = labelled.to_vec();
            let mut rng = SplitMix(seed);
            for i in (1..order.len()).rev() {
                let j = (rng.next() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
            let n_test = ((order.len() as f64) * f).round() as usize;
            let mut test = order[..n_test].to_vec();
            let mut train = order[n_test..].to_vec();
            test.sort_unstable();
            train.sort_unstable();
            (train, test)
        }
        Holdout::Rows(test_rows) => {
            let mut is_test = vec![false; rows];
            for &r in test_rows {
                if r >= rows {
                    return Err(TrainError::BadSplit(format!("test row {r} is past the last row ({})", rows - 1)));
                }
                is_test[r] = true;
            }
            labelled.iter().partition(|&&r| !is_test[r])
        }
    };
    if test.is_empty() || train.is_empty() {
        return Err(TrainError::BadSplit(format!(
            "leaves {} rows for training and {} for testing out of {}; both need at least one",
            train.len(),
            test.len(),
            labelled.len()
        )));
    }
    Ok((train, test))
}

/// Mean decrease in impurity per feature for trees (normalized to sum 1), the weights' mean
/// absolute value per encoded feature for linear models; none for k-nearest neighbours.
fn importances(body: &ModelBody, names: &[String], task: Task) -> Option<Importances> {
    match body {
        ModelBody::Trees { trees } => {
            let mut total = vec![0.0; names.len()];
            for tree in trees {
                for node in &tree.nodes {
                    if let Some(s) = &node.split {
                        let (l, r) = (&tree.nodes[s.left], &tree.nodes[s.right]);
                        let decrease = node.samples as f64 * node.impurity
                            - l.samples as f64 * l.impurity
                            - r.samples as f64 * r.impurity;
                        total[s.feature] += decrease.max(0.0);
                    }
                }
            }
            let sum: f64 = total.iter().sum();
            if sum > 0.0 {
                total.iter_mut().for_each(|v| *v /= sum);
            }
            let measure = match task {
                Task::Classification => "mean decrease in Gini impurity",
                Task::Regression => "mean decrease in variance",
            };
            Some(Importances { measure: measure.into(), values: names.iter().cloned().zip(total).collect() })
        }
        ModelBody::Linear { weights, .. } => {
            let values = (0..names.len())
                .map(|j| weights.iter().map(|w| w[j]).sum::<f64>() / weights.len() as f64)
                .collect::<Vec<_>>();
            let measure = if weights.len() == 1 {
                "coefficient (on standardized features)"
            } else {
                "mean coefficient over classes (on standardized features)"
            };
            Some(Importances { measure: measure.into(), values: names.iter().cloned().zip(values).collect() })
        }
        ModelBody::Neighbours { .. } => None,
    }
}

/// Fills in each node's training statistics by routing the training rows through the tree.
pub(crate) fn fill_node_stats(tree: &mut Tree, x: &[Vec<f64>], y: &[f64], n_classes: usize) {
    let n = tree.nodes.len();
    let mut counts = vec![vec![0u64; n_classes]; n];
    let mut sums = vec![(0u64, 0.0f64, 0.0f64); n];
    for (row, &target) in x.iter().zip(y) {
        let mut at = 0;
        loop {
            if n_classes > 0 {
                counts[at][target as usize] += 1;
            }
            let s = &mut sums[at];
            s.0 += 1;
            s.1 += target;
            s.2 += target * target;
            match &tree.nodes[at].split {
                Some(split) => at = if row[split.feature] <= split.threshold { split.left } else { split.right },
                None => break,
            }
        }
    }
    for (i, node) in tree.nodes.iter_mut().enumerate() {
        let (count, sum, sumsq) = sums[i];
        node.samples = count;
        if n_classes > 0 {
            node.impurity = if count == 0 {
                0.0
            } else {
                1.0 - counts[i].iter().map(|c| (*c as f64 / count as f64).powi(2)).sum::<f64>()
            };
            node.class_counts = std::mem::take(&mut counts[i]);
        } else if count > 0 {
            node.mean = sum / count as f64;
            node.impurity = (sumsq / count as f64 - node.mean * node.mean).max(0.0);
        }
    }
}

/// Reads a tree out of smartcore's serialized model: the first `nodes` array found. A leaf's
/// `output` is mapped through `map_output` (a classifier's class position to our class index).
pub(crate) fn tree_from_json(model: &Value, map_output: &dyn Fn(&Value) -> Option<f64>) -> Result<Tree, TrainError> {
    fn find_nodes(v: &Value) -> Option<&Vec<Value>> {
        match v {
            Value::Object(map) => {
                if let Some(Value::Array(nodes)) = map.get("nodes") {
                    return Some(nodes);
                }
                map.values().find_map(find_nodes)
            }
            Value::Array(items) => items.iter().find_map(find_nodes),
            _ => None,
        }
    }
    let bad = |what: &str| TrainError::Learner(format!("unexpected tree layout from smartcore: {what}"));
    let nodes = find_nodes(model).ok_or_else(|| bad("no nodes"))?;
    let mut out = Vec::with_capacity(nodes.len());
    for node in nodes {
        let output = map_output(&node["output"]).ok_or_else(|| bad("leaf output"))?;
        let split = match (node["true_child"].as_u64(), node["false_child"].as_u64()) {
            (Some(left), Some(right)) => Some(Split {
                feature: node["split_feature"].as_u64().ok_or_else(|| bad("split feature"))? as usize,
                threshold: node["split_value"].as_f64().unwrap_or(f64::NAN),
                left: left as usize,
                right: right as usize,
            }),
            _ => None,
        };
        out.push(TreeNode { split, output, samples: 0, class_counts: Vec::new(), mean: 0.0, impurity: 0.0 });
    }
    if out.is_empty() {
        return Err(bad("empty tree"));
    }
    Ok(Tree { nodes: out })
}
