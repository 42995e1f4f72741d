//! `lectern train ...`: train a model on a running server from one of its datasets (or a local
//! file pushed first), follow the job with a progress bar, and print its metrics.
//!
//! Exit codes as `lectern model`; a job that fails or is cancelled exits 1 with its error.

use crate::client::{block_on, Client, ClientArgs, Failure};
use crate::commands::dataset::{self, rows_of, text};
use crate::output::{bar, print_json, print_table};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

/// `lectern train`.
#[derive(Args, Debug)]
#[command(subcommand_negates_reqs = true)]
pub struct TrainArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: Option<TrainCommand>,
    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Subcommand, Debug)]
pub enum TrainCommand {
    /// Show a training job's state, progress and metrics.
    Status {
        /// Job id
        id: String,
    },
    /// Cancel a queued or running training job.
    Cancel {
        /// Job id
        id: String,
    },
}

/// What to train.
#[derive(Args, Debug)]
pub struct JobArgs {
    /// The server's dataset to train on
    #[arg(long, required_unless_present = "data", conflicts_with = "data")]
    pub dataset: Option<String>,
    /// A local CSV or JSON file: pushed as a dataset named after the file, then trained on
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// The column to predict
    #[arg(long, required = true)]
    pub target: Option<String>,
    /// decision_tree, random_forest, logistic_regression, linear_regression or knn
    #[arg(long, required = true)]
    pub algorithm: Option<String>,
    /// The model the trained version is registered under (created when missing)
    #[arg(long, required = true)]
    pub model: Option<String>,
    /// An input column (repeat; default: every other column)
    #[arg(long = "feature", value_name = "COLUMN")]
    pub features: Vec<String>,
    /// An algorithm parameter, NAME=VALUE (repeat)
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Share of rows held out for the metrics, between 0 and 1 [default: 0.25]
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// Seeds the split and the learner [default: 0]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the job id and return without waiting
    #[arg(long)]
    pub no_wait: bool,
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_string(), value.trim().to_string())),
        _ => Err("a parameter is NAME=VALUE".into()),
    }
}

/// Runs `lectern train ...`; returns the exit code.
pub fn run(args: TrainArgs) -> i32 {
    let TrainArgs { client, command, job } = args;
    block_on(&client, async {
        let api = Client::new(&client)?;
        match command {
            Some(TrainCommand::Status { id }) => {
                let job = api.get(&["v1", "training-jobs", &id]).await?;
                report(&api, &job)
            }
            Some(TrainCommand::Cancel { id }) => {
                let job = api.delete(&["v1", "training-jobs", &id]).await?;
                if api.json {
                    print_json(&job);
                } else {
                    println!("cancelled training job {id}");
                }
                Ok(())
            }
            None => train(&api, job).await,
        }
    })
}

async fn train(api: &Client, args: JobArgs) -> Result<(), Failure> {
    let dataset = match (&args.dataset, &args.data) {
        (Some(name), _) => name.clone(),
        (None, Some(file)) => {
            let name = dataset_name(file)?;
            let pushed = dataset::push(api, &name, file, None).await?;
            eprintln!("pushed {} as dataset {name} ({} rows)", file.display(), pushed["rows"]);
            name
        }
        (None, None) => return Err(Failure::Usage("give --dataset NAME or --data FILE".into())),
    };
    let mut body = json!({
        "dataset": dataset,
        "target": args.target,
        "algorithm": args.algorithm,
        "model": args.model,
    });
    if !args.features.is_empty() {
        body["features"] = json!(args.features);
    }
    if !args.params.is_empty() {
        let params: Map<String, Value> = args.params.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        body["params"] = Value::Object(params);
    }
    if let Some(f) = args.test_fraction {
        body["test_fraction"] = json!(f);
    }
    if let Some(s) = args.seed {
        body["seed"] = json!(s);
    }
    let job = api.send_json(Method::POST, &["v1", "training-jobs"], &body).await?;
    let id = text(&job["id"]);
    if args.no_wait {
        if api.json {
            print_json(&job);
        } else {
            println!("{id}");
        }
        return Ok(());
    }
    eprintln!("training job {id}");
    let job = follow(api, &id).await?;
    report(api, &job)
}

/// A dataset name from a file name: its stem, with other characters than letters, digits,
/// `-`, `_` and `.` made `_`.
fn dataset_name(file: &std::path::Path) -> Result<String, Failure> {
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    let name = name.trim_start_matches('.').to_string();
    if name.is_empty() {
        return Err(Failure::Usage(format!("cannot name a dataset after {}", file.display())));
    }
    Ok(name)
}

/// Polls the job until it ends, drawing its stage and percent on stderr.
async fn follow(api: &Client, id: &str) -> Result<Value, Failure> {
    let terminal = std::io::stderr().is_terminal();
    let mut last = String::new();
    loop {
        let job = api.get(&["v1", "training-jobs", id]).await?;
        let state = text(&job["state"]);
        let stage = text(&job["stage"]);
        let percent = job["percent"].as_u64().unwrap_or_default();
        let line = format!("{stage:<11} [{}] {percent:>3}%", bar(percent as f64 / 100.0));
        if line != last {
            let mut err = std::io::stderr().lock();
            if terminal {
                let _ = write!(err, "\r\x1b[2K{line}");
            } else if !matches!(state.as_str(), "succeeded" | "failed" | "cancelled") {
                let _ = writeln!(err, "{line}");
            }
            let _ = err.flush();
            last = line;
        }
        if matches!(state.as_str(), "succeeded" | "failed" | "cancelled") {
            if terminal {
                eprint!("\r\x1b[2K");
            }
            return Ok(job);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Prints a job: its state, and once it succeeded its metrics and the version registered.
fn report(api: &Client, job: &Value) -> Result<(), Failure> {
    let state = text(&job["state"]);
    if api.json {
        print_json(job);
    }
    match state.as_str() {
        "succeeded" => {
            if !api.json {
                print_metrics(job);
                println!("model {} version {} registered", text(&job["model"]), job["version"]);
            }
            Ok(())
        }
        "failed" | "cancelled" => Err(Failure::Failed(format!(
            "training job {} {state}: {}",
            text(&job["id"]),
            job["error"].as_str().unwrap_or("no reason given")
        ))),
        _ => {
            if !api.json {
                println!("training job {}: {state}, {} {}%", text(&job["id"]), text(&job["stage"]), job["percent"]);
            }
            Ok(())
        }
    }
}

fn print_metrics(job: &Value) {
    let metrics = &job["metrics"];
    let number = |v: &Value| v.as_f64().map(|x| format!("{x:.3}")).unwrap_or_default();
    println!("{} on {} held-out rows ({} training rows)", text(&job["algorithm"]), job["test_rows"], job["train_rows"]);
    if metrics["task"] == "regression" {
        print_table(
            &["R2", "MAE", "RMSE"],
            &[vec![number(&metrics["r2"]), number(&metrics["mae"]), number(&metrics["rmse"])]],
        );
        return;
    }
    println!("accuracy {}", number(&metrics["accuracy"]));
    let rows = rows_of(&metrics["per_class"], |c| {
        vec![
            text(&c["label"]),
            number(&c["precision"]),
            number(&c["recall"]),
            number(&c["f1"]),
            c["support"].to_string(),
        ]
    });
    print_table(&["CLASS", "PRECISION", "RECALL", "F1", "SUPPORT"], &rows);
}
