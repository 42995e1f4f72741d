//! Trains one model from a CSV file and writes what the reference tests compare:
//!
//! ```text
//! cargo run -p lectern-train --example fit -- DATA.csv TARGET ALGORITHM OUT_DIR \
//!     [--param name=value ...] [--test-fraction F | --test-rows FILE] [--seed N] [--bench]
//! ```
//!
//! `--bench` trains only (no export, no tract run) and writes the fit time and metrics.
//! `--test-rows FILE` names a JSON array of 0-based row indices to hold out (to use the same
//! split as another tool). Writes `OUT_DIR/model.onnx` and `OUT_DIR/result.json`: the held-out
//! rows, their raw model inputs, the predictions (Rust, and tract running the exported ONNX),
//! the class labels and the metrics; and `OUT_DIR/model.json`, the learned structure; and the pictures
//! (`tree.svg` for trees, `importance.svg`, `confusion.svg`).

use anyhow::{bail, Context};
use lectern_train::onnx::{export, predict_with_tract};
use lectern_train::{train, Dataset, Holdout, TrainRequest};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        bail!("usage: fit DATA.csv TARGET ALGORITHM OUT_DIR [--param k=v ...] [--test-fraction F | --test-rows FILE] [--seed N]");
    }
    let (data, target, algorithm, out) = (&args[0], &args[1], &args[2], std::path::PathBuf::from(&args[3]));
    let mut params = BTreeMap::new();
    let mut holdout = Holdout::Fraction(0.25);
    let mut seed = 0u64;
    let mut bench = false;
    let mut rest = args[4..].iter();
    while let Some(flag) = rest.next() {
        if flag == "--bench" {
            bench = true;
            continue;
        }
        let value = rest.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--param" => {
                let (k, v) = value.split_once('=').context("--param takes name=value")?;
                params.insert(k.to_string(), Value::String(v.to_string()));
            }
            "--test-fraction" => holdout = Holdout::Fraction(value.parse()?),
            "--test-rows" => holdout = Holdout::Rows(serde_json::from_str(&std::fs::read_to_string(value)?)?),
            "--seed" => seed = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    let dataset = Dataset::read_csv(std::fs::File::open(data).with_context(|| format!("opening {data}"))?)?;
    let request =
        TrainRequest { target: target.clone(), features: None, algorithm: algorithm.clone(), params, holdout, seed };
    let started = std::time::Instant::now();
    let mut stages: Vec<(String, u8, f64)> = Vec::new();
    let model = train(
        &dataset,
        &request,
        &mut |p| stages.push((format!("{:?}", p.stage), p.percent, started.elapsed().as_secs_f64())),
        &AtomicBool::new(false),
    )?;
    let fit_seconds = started.elapsed().as_secs_f64();
    std::fs::create_dir_all(&out)?;
    if bench {
        let result = json!({
            "fit_seconds": fit_seconds,
            "stages": stages,
            "metrics": model.metrics,
            "train_rows": model.train_rows,
        });
        std::fs::write(out.join("result.json"), serde_json::to_vec_pretty(&result)?)?;
        return Ok(());
    }
    let onnx = export(&model)?;
    std::fs::write(out.join("model.onnx"), &onnx)?;

    // The raw inputs of the held-out rows, as the ONNX input X takes them.
    let inputs: Vec<Vec<f32>> = model
        .test_rows
        .iter()
        .map(|&r| {
            model
                .features
                .iter()
                .map(|f| {
                    let column = dataset.column(&f.name).expect("trained on it");
                    match &column.values {
                        lectern_train::dataset::ColumnValues::Numbers(v) => v[r] as f32,
                        lectern_train::dataset::ColumnValues::Strings { codes, .. } => {
                            if codes[r] == lectern_train::dataset::MISSING_CODE {
                                f32::NAN
                            } else {
                                codes[r] as f32
                            }
                        }
                    }
                })
                .collect()
        })
        .collect();
    let tract = predict_with_tract(&onnx, &inputs)?;
    let result = json!({
        "task": model.task,
        "classes": model.classes,
        "features": model.features.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
        "test_rows": model.test_rows,
        "inputs": inputs,
        "predictions": model.test_predictions,
        "tract_predictions": tract.labels,
        "tract_probabilities": tract.probabilities,
        "metrics": model.metrics,
        "params": model.params,
        "fit_seconds": fit_seconds,
    });
    std::fs::write(out.join("result.json"), serde_json::to_vec_pretty(&result)?)?;
    std::fs::write(out.join("model.json"), serde_json::to_vec(&model.body)?)?;
    if let Some(tree) = lectern_train::pictures::tree_svg(&model, lectern_train::pictures::DEFAULT_TREE_DEPTH) {
        std::fs::write(out.join("tree.svg"), tree)?;
    }
    std::fs::write(out.join("importance.svg"), lectern_train::pictures::importance_svg(&model))?;
    std::fs::write(out.join("confusion.svg"), lectern_train::pictures::confusion_svg(&model))?;
    Ok(())
}
