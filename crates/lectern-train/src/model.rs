//! A trained model as Lectern keeps it: the feature encoding, the class labels and the learned
//! structure (trees, a linear model or stored neighbours) in a form that the ONNX exporter and
//! the pictures read, independent of the library that learned it.

use serde::Serialize;

/// The kind of task, decided by the target column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// The target is a category (or a whole number with few distinct values).
    Classification,
    /// The target is a number.
    Regression,
}

/// How one input column becomes numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureEncoding {
    /// A number; a missing value becomes `fill` (the training rows' mean).
    Numeric { fill: f64 },
    /// A category given to the model as its index in `categories`; a missing value becomes
    /// `fill` (the most frequent category in the training rows). Trees split on the index
    /// (ordinal encoding); logistic regression and k-nearest neighbours see one 0/1 column per
    /// category (one-hot encoding).
    Categorical { categories: Vec<String>, fill: u32 },
}

/// One input column of the model, in the order of the model's input `X`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feature {
    /// The dataset column.
    pub name: String,
    /// How its values become numbers.
    pub encoding: FeatureEncoding,
}

/// A split: rows with `x[feature] <= threshold` go to `left`, others (and NaN) to `right`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Split {
    /// Index into the model's encoded feature columns (for trees: the input columns).
    pub feature: usize,
    /// The threshold, as the learner chose it.
    pub threshold: f64,
    /// The node for `x <= threshold`.
    pub left: usize,
    /// The node for `x > threshold`.
    pub right: usize,
}

/// A node of a tree, with what the training rows that reached it looked like.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TreeNode {
    /// `None` for a leaf.
    pub split: Option<Split>,
    /// The leaf's prediction: a class index, or a value for regression.
    pub output: f64,
    /// Training rows that reached the node.
    pub samples: u64,
    /// Per class, the training rows that reached the node (classification only).
    pub class_counts: Vec<u64>,
    /// Mean target of the training rows that reached the node (regression only).
    pub mean: f64,
    /// Gini impurity (classification) or variance (regression) of those rows.
    pub impurity: f64,
}

/// A decision tree; node 0 is the root.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tree {
    /// The nodes; children come after their parent.
    pub nodes: Vec<TreeNode>,
}

impl Tree {
    /// The index of the leaf a row falls into.
    pub fn leaf(&self, x: &[f64]) -> usize {
        let mut at = 0;
        while let Some(split) = &self.nodes[at].split {
            at = if x[split.feature] <= split.threshold { split.left } else { split.right };
        }
        at
    }

    /// The depth (a lone leaf has depth 0).
    pub fn depth(&self) -> usize {
        fn walk(tree: &Tree, at: usize) -> usize {
            match &tree.nodes[at].split {
                None => 0,
                Some(s) => 1 + walk(tree, s.left).max(walk(tree, s.right)),
            }
        }
        walk(self, 0)
    }
}

/// The learned structure.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelBody {
    /// One tree or a forest. A classifier forest predicts the class most trees vote for (the
    /// first such class on a tie) and gives the share of votes as probabilities; a regressor
    /// forest predicts the trees' mean.
    Trees { trees: Vec<Tree> },
    /// A linear model on standardized encoded features: `z = W·((x - mean) / scale) + b`.
    /// Classification: one row of `W` per class (softmax), or one row for two classes
    /// (sigmoid gives the second class's probability). Regression: one row, `z` is the value.
    Linear { weights: Vec<Vec<f64>>, intercepts: Vec<f64>, mean: Vec<f64>, scale: Vec<f64> },
    /// k-nearest neighbours (Euclidean distance on the encoded features, uniform weights): the
    /// training rows and their targets (class index or value).
    Neighbours { k: usize, points: Vec<Vec<f64>>, targets: Vec<f64> },
}
