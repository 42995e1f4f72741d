//! One training job as a training process runs it: a folder holds the request (`job.json`)
//! and the dataset file (`data`); the run writes the ONNX file (`model.onnx`), what the server
//! records (`result.json`) and the pictures (`tree.svg`, `importance.svg`, `confusion.svg`),
//! or `error.json` when it fails. The server starts the process, reads its progress and these
//! files, and kills it to cancel; this module knows nothing of the server.

use crate::dataset::{Dataset, Format};
use crate::error::TrainError;
use crate::model::Task;
use crate::onnx::export;
use crate::pictures::{confusion_svg, importance_svg, tree_svg, DEFAULT_TREE_DEPTH};
use crate::train::{train, Holdout, Progress, TrainRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// The request file of a job.
pub const SPEC_FILE: &str = "job.json";
/// The dataset file of a job.
pub const DATA_FILE: &str = "data";
/// The trained model.
pub const MODEL_FILE: &str = "model.onnx";
/// What the run found.
pub const RESULT_FILE: &str = "result.json";
/// Why the run failed.
pub const ERROR_FILE: &str = "error.json";
/// The pictures a job can have, by name (`<name>.svg`).
pub const PICTURES: [&str; 3] = ["tree", "importance", "confusion"];

/// What to train, as the server writes it for the training process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobSpec {
    /// `csv` or `json`: how to read the dataset file.
    pub format: String,
    pub target: String,
    #[serde(default)]
    pub features: Option<Vec<String>>,
    pub algorithm: String,
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Held-out share of the rows (used when `test_rows` is absent).
    #[serde(default)]
    pub test_fraction: Option<f64>,
    /// Exactly these rows held out.
    #[serde(default)]
    pub test_rows: Option<Vec<usize>>,
    #[serde(default)]
    pub seed: u64,
}

/// The share of rows held out when a request names neither a fraction nor rows.
pub const DEFAULT_TEST_FRACTION: f64 = 0.25;

impl JobSpec {
    /// The engine's request.
    pub fn request(&self) -> TrainRequest {
        let holdout = match &self.test_rows {
            Some(rows) => Holdout::Rows(rows.clone()),
            None => Holdout::Fraction(self.test_fraction.unwrap_or(DEFAULT_TEST_FRACTION)),
        };
        TrainRequest {
            target: self.target.clone(),
            features: self.features.clone(),
            algorithm: self.algorithm.clone(),
            params: self.params.clone(),
            holdout,
            seed: self.seed,
        }
    }

    /// The dataset file format.
    pub fn data_format(&self) -> Result<Format, TrainError> {
        parse_format(&self.format)
    }
}

/// `csv` or `json`.
pub fn parse_format(name: &str) -> Result<Format, TrainError> {
    match name.to_ascii_lowercase().as_str() {
        "csv" => Ok(Format::Csv),
        "json" => Ok(Format::Json),
        other => Err(TrainError::param("format", format!("must be csv or json, got '{other}'"))),
    }
}

/// What a successful run found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobResult {
    /// `classification` or `regression`.
    pub task: String,
    /// The input columns, in the order of the model input `X`.
    pub features: Vec<String>,
    /// Class labels (classification only).
    pub classes: Option<Vec<String>>,
    /// Every parameter's value, given or default.
    pub params: BTreeMap<String, Value>,
    /// The held-out metrics, as [`crate::Metrics`] serializes them.
    pub metrics: Value,
    pub train_rows: u64,
    pub test_rows: u64,
    /// The pictures written, by name.
    pub pictures: Vec<String>,
}

/// Why a run failed: the message, and whether the request (not Lectern) was at fault.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobFailure {
    pub message: String,
    pub caller_mistake: bool,
}

/// Runs the job in `dir`: reads the request and the dataset, trains, writes the model, the
/// result and the pictures. `progress` hears `loading` as percent 0 (before reading) and
/// then the engine's stages.
pub fn run(dir: &Path, progress: &mut dyn FnMut(Progress)) -> Result<JobResult, TrainError> {
    let spec: JobSpec = serde_json::from_slice(&std::fs::read(dir.join(SPEC_FILE))?)
        .map_err(|e| TrainError::Export(format!("the job file cannot be read: {e}")))?;
    let format = spec.data_format()?;
    let dataset = Dataset::read(std::io::BufReader::new(std::fs::File::open(dir.join(DATA_FILE))?), format)?;
    let model = train(&dataset, &spec.request(), progress, &AtomicBool::new(false))?;
    let onnx = export(&model)?;
    write(dir, MODEL_FILE, &onnx)?;
    let mut pictures = Vec::new();
    if let Some(svg) = tree_svg(&model, DEFAULT_TREE_DEPTH) {
        write(dir, "tree.svg", svg.as_bytes())?;
        pictures.push("tree".to_string());
    }
    if model.importances.is_some() {
        write(dir, "importance.svg", importance_svg(&model).as_bytes())?;
        pictures.push("importance".to_string());
    }
    if model.task == Task::Classification {
        write(dir, "confusion.svg", confusion_svg(&model).as_bytes())?;
        pictures.push("confusion".to_string());
    }
    let result = JobResult {
        task: match model.task {
            Task::Classification => "classification".into(),
            Task::Regression => "regression".into(),
        },
        features: model.features.iter().map(|f| f.name.clone()).collect(),
        classes: (model.task == Task::Classification).then(|| model.classes.clone()),
        params: model.params.clone(),
        metrics: serde_json::to_value(&model.metrics).map_err(|e| TrainError::Export(e.to_string()))?,
        train_rows: model.train_rows as u64,
        test_rows: model.test_rows.len() as u64,
        pictures,
    };
    write(dir, RESULT_FILE, &serde_json::to_vec(&result).map_err(|e| TrainError::Export(e.to_string()))?)?;
    Ok(result)
}

/// Writes `error.json` for a failed run.
pub fn write_failure(dir: &Path, error: &TrainError) -> std::io::Result<()> {
    let failure = JobFailure { message: error.to_string(), caller_mistake: error.is_caller_mistake() };
    write(dir, ERROR_FILE, &serde_json::to_vec(&failure).expect("json"))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(dir.join(name), bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_folder_gives_a_model_a_result_and_pictures() {
        let dir = std::env::temp_dir().join(format!("lectern-job-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut csv = String::from("x,y,label\n");
        for i in 0..60 {
            let label = if i % 3 == 0 { "a" } else { "b" };
            csv.push_str(&format!("{},{},{label}\n", i % 7, (i * 13) % 11));
        }
        std::fs::write(dir.join(DATA_FILE), csv).unwrap();
        let spec = JobSpec {
            format: "csv".into(),
            target: "label".into(),
            features: None,
            algorithm: "decision_tree".into(),
            params: BTreeMap::from([("max_depth".to_string(), Value::from(3))]),
            test_fraction: None,
            test_rows: None,
            seed: 1,
        };
        std::fs::write(dir.join(SPEC_FILE), serde_json::to_vec(&spec).unwrap()).unwrap();
        let mut stages = Vec::new();
        let result = run(&dir, &mut |p| stages.push(p.percent)).unwrap();
        assert_eq!(result.task, "classification");
        assert_eq!(result.classes, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(result.train_rows + result.test_rows, 60);
        assert_eq!(result.test_rows, 15, "a quarter held out by default");
        assert_eq!(result.pictures, vec!["tree", "importance", "confusion"]);
        assert!(stages.windows(2).all(|w| w[0] <= w[1]) && stages.last() == Some(&100));
        for file in [MODEL_FILE, RESULT_FILE, "tree.svg", "importance.svg", "confusion.svg"] {
            assert!(dir.join(file).exists(), "{file}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
