//! `lectern job ...`: list, show, run, pause, resume the scheduled jobs of a running server, and
//! read their history.
//!
//! Exit codes as `lectern model`: 0 done; 1 the server refused (or, with `run --wait`, the run
//! failed); 2 usage; 3 unreachable.

use crate::client::{block_on, Client, ClientArgs, Failure};
use crate::commands::dataset::{rows_of, text};
use crate::output::{print_json, print_table, time_text};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// How often `run --wait` looks at the run.
const POLL: Duration = Duration::from_millis(250);

/// `lectern job`.
#[derive(Args, Debug)]
pub struct JobArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: JobCommand,
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// List the jobs with their next run and last outcome.
    List,
    /// Show one job.
    Show {
        /// Job name
        name: String,
    },
    /// Run a job now.
    Run {
        /// Job name
        name: String,
        /// Follow the run to its end (exit 1 when it failed)
        #[arg(long)]
        wait: bool,
    },
    /// Pause a job: it does not fire until resumed.
    Pause {
        /// Job name
        name: String,
    },
    /// Resume a paused job (its schedule starts over from now).
    Resume {
        /// Job name
        name: String,
    },
    /// The newest runs of a job.
    History {
        /// Job name
        name: String,
        /// At most this many runs
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

/// Runs `lectern job ...`; returns the exit code.
pub fn run(args: JobArgs) -> i32 {
    let JobArgs { client, command } = args;
    block_on(&client, async {
        let api = Client::new(&client)?;
        match command {
            JobCommand::List => list(&api).await,
            JobCommand::Show { name } => {
                let job = api.get(&["v1", "jobs", &name]).await?;
                show(&api, &job);
                Ok(())
            }
            JobCommand::Run { name, wait } => run_job(&api, &name, wait).await,
            JobCommand::Pause { name } => change(&api, &name, "pause").await,
            JobCommand::Resume { name } => change(&api, &name, "resume").await,
            JobCommand::History { name, limit } => history(&api, &name, limit).await,
        }
    })
}

async fn list(api: &Client) -> Result<(), Failure> {
    let answer = api.get(&["v1", "jobs"]).await?;
    if api.json {
        print_json(&answer);
        return Ok(());
    }
    let rows = rows_of(&answer["jobs"], |j| {
        vec![
            text(&j["name"]),
            text(&j["kind"]),
            schedule(j),
            state(j),
            time_text(j["next_run_at_ms"].as_i64()),
            j["last_run"]["state"].as_str().unwrap_or("-").to_string(),
        ]
    });
    print_table(&["NAME", "KIND", "SCHEDULE", "STATE", "NEXT RUN", "LAST RUN"], &rows);
    Ok(())
}

fn schedule(job: &Value) -> String {
    match (job["every"].as_i64(), job["cron"].as_str()) {
        (Some(ms), _) => format!("every {}", humantime_ms(ms)),
        (None, Some(cron)) => format!("cron {cron} ({})", job["timezone"].as_str().unwrap_or("UTC")),
        _ => "-".into(),
    }
}

fn state(job: &Value) -> String {
    if !job["running"].is_null() {
        "running"
    } else if job["paused"].as_bool() == Some(true) {
        "paused"
    } else if job["enabled"].as_bool() == Some(false) {
        "disabled"
    } else {
        "scheduled"
    }
    .to_string()
}

fn humantime_ms(ms: i64) -> String {
    let s = ms as f64 / 1000.0;
    match s {
        s if s >= 86400.0 && s % 86400.0 == 0.0 => format!("{}d", s / 86400.0),
        s if s >= 3600.0 && s % 3600.0 == 0.0 => format!("{}h", s / 3600.0),
        s if s >= 60.0 && s % 60.0 == 0.0 => format!("{}m", s / 60.0),
        s => format!("{s}s"),
    }
}

fn show(api: &Client, job: &Value) {
    if api.json {
        print_json(job);
        return;
    }
    println!("{} ({}, from the {})", text(&job["name"]), text(&job["kind"]), text(&job["source"]));
    println!("  schedule: {}", schedule(job));
    println!("  state:    {}", state(job));
    println!("  next run: {}", time_text(job["next_run_at_ms"].as_i64()));
    for (label, run) in [("running", &job["running"]), ("last run", &job["last_run"])] {
        if !run.is_null() {
            println!("  {label}: {}", run_line(run));
        }
    }
    println!("  spec:     {}", job["spec"]);
}

fn run_line(run: &Value) -> String {
    let mut line =
        format!("{} {} items, started {}", text(&run["state"]), run["items"], time_text(run["started_at_ms"].as_i64()));
    for field in ["error", "detail"] {
        if let Some(t) = run[field].as_str() {
            line.push_str(&format!("; {t}"));
        }
    }
    line
}

async fn change(api: &Client, name: &str, action: &str) -> Result<(), Failure> {
    let job = api.send_json(Method::POST, &["v1", "jobs", name, action], &json!({})).await?;
    if api.json {
        print_json(&job);
    } else {
        println!("{name}: {} (next run {})", state(&job), time_text(job["next_run_at_ms"].as_i64()));
    }
    Ok(())
}

async fn run_job(api: &Client, name: &str, wait: bool) -> Result<(), Failure> {
    let mut run = api.send_json(Method::POST, &["v1", "jobs", name, "run"], &json!({})).await?;
    let id = text(&run["id"]);
    if wait {
        while run["state"] == "running" {
            tokio::time::sleep(POLL).await;
            let runs = api.get(&["v1", "jobs", name, "runs"]).await?;
            if let Some(found) = runs["runs"].as_array().and_then(|r| r.iter().find(|r| r["id"] == id.as_str())) {
                run = found.clone();
            }
        }
    }
    if api.json {
        print_json(&run);
    } else {
        println!("{name}: run {id} {}", run_line(&run));
    }
    if run["state"] == "failed" {
        return Err(Failure::Failed(format!("the run of {name} failed: {}", text(&run["error"]))));
    }
    Ok(())
}

async fn history(api: &Client, name: &str, limit: u32) -> Result<(), Failure> {
    if !(1..=1000).contains(&limit) {
        return Err(Failure::Usage(format!("--limit must be from 1 to 1000, not {limit}")));
    }
    let mut url = api.url(&["v1", "jobs", name, "runs"]);
    url.query_pairs_mut().append_pair("limit", &limit.to_string());
    let answer = api.send(api.request(Method::GET, url)).await?;
    if api.json {
        print_json(&answer);
        return Ok(());
    }
    let rows = rows_of(&answer["runs"], |r| {
        vec![
            time_text(r["started_at_ms"].as_i64()),
            text(&r["trigger"]),
            text(&r["state"]),
            r["items"].to_string(),
            r["error"].as_str().or(r["detail"].as_str()).unwrap_or("").to_string(),
        ]
    });
    print_table(&["STARTED", "TRIGGER", "STATE", "ITEMS", "ERROR / DETAIL"], &rows);
    Ok(())
}
