//! Metrics on the held-out rows.

use serde::Serialize;

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// The class label.
    pub label: String,
    /// Of the rows predicted as this class, the share that are (0 when none was predicted).
    pub precision: f64,
    /// Of the rows of this class, the share predicted as it (0 when the class has no test row).
    pub recall: f64,
    /// The harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Test rows of this class.
    pub support: u64,
}

/// Held-out metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Metrics {
    /// For a class target.
    Classification {
        /// Share of test rows predicted right.
        accuracy: f64,
        /// Per class, in class order.
        per_class: Vec<ClassMetrics>,
        /// `confusion[true][predicted]` row counts, in class order.
        confusion: Vec<Vec<u64>>,
        /// The class labels (the matrix's row and column order).
        labels: Vec<String>,
    },
    /// For a numeric target.
    Regression {
        /// Coefficient of determination (1 is perfect; 0 is as good as predicting the mean).
        r2: f64,
        /// Mean absolute error.
        mae: f64,
        /// Root mean squared error.
        rmse: f64,
    },
}

impl Metrics {
    /// Classification metrics from true and predicted class indices.
    pub fn classification(labels: &[String], truth: &[usize], predicted: &[usize]) -> Metrics {
        let k = labels.len();
        let mut confusion = vec![vec![0u64; k]; k];
        for (t, p) in truth.iter().zip(predicted) {
            confusion[*t][*p] += 1;
        }
        let correct: u64 = (0..k).map(|c| confusion[c][c]).sum();
        let accuracy = if truth.is_empty() { 0.0 } else { correct as f64 / truth.len() as f64 };
        let per_class = (0..k)
            .map(|c| {
                let tp = confusion[c][c] as f64;
                let support: u64 = confusion[c].iter().sum();
                let predicted: u64 = confusion.iter().map(|row| row[c]).sum();
                let precision = if predicted == 0 { 0.0 } else { tp / predicted as f64 };
                let recall = if support == 0 { 0.0 } else { tp / support as f64 };
                let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
                ClassMetrics { label: labels[c].clone(), precision, recall, f1, support }
            })
            .collect();
        Metrics::Classification { accuracy, per_class, confusion, labels: labels.to_vec() }
    }

    /// Regression metrics from true and predicted values.
    pub fn regression(truth: &[f64], predicted: &[f64]) -> Metrics {
        let n = truth.len().max(1) as f64;
        let mean = truth.iter().sum::<f64>() / n;
        let ss_res: f64 = truth.iter().zip(predicted).map(|(t, p)| (t - p) * (t - p)).sum();
        let ss_tot: f64 = truth.iter().map(|t| (t - mean) * (t - mean)).sum();
        let r2 = if ss_tot > 0.0 {
            1.0 - ss_res / ss_tot
        } else if ss_res == 0.0 {
            1.0
        } else {
            0.0
        };
        let mae = truth.iter().zip(predicted).map(|(t, p)| (t - p).abs()).sum::<f64>() / n;
        Metrics::Regression { r2, mae, rmse: (ss_res / n).sqrt() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_metrics_match_a_hand_count() {
        let labels = vec!["a".to_string(), "b".to_string()];
        // truth a,a,b,b ; predicted a,b,b,b
        let m = Metrics::classification(&labels, &[0, 0, 1, 1], &[0, 1, 1, 1]);
        let Metrics::Classification { accuracy, per_class, confusion, .. } = m else { panic!("classification") };
        assert_eq!(accuracy, 0.75);
        assert_eq!(confusion, vec![vec![1, 1], vec![0, 2]]);
        assert_eq!(per_class[0].precision, 1.0);
        assert_eq!(per_class[0].recall, 0.5);
        assert!((per_class[1].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((per_class[1].f1 - 0.8).abs() < 1e-12);
    }

    #[test]
    fn regression_metrics_match_the_definitions() {
        let Metrics::Regression { r2, mae, .. } = Metrics::regression(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0]) else {
            panic!("regression")
        };
        assert!((r2 - 0.5).abs() < 1e-12);
        assert!((mae - 1.0 / 3.0).abs() < 1e-12);
    }
}
