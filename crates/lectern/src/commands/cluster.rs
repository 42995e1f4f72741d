//! `lectern cluster status`: the workers of a gateway's cluster, their models and load.
//!
//! Exit codes as `lectern model`: 0 done; 1 the server refused; 2 usage; 3 unreachable.

use crate::client::{block_on, Client, ClientArgs, Failure};
use crate::commands::dataset::text;
use crate::output::{print_json, print_table};
use clap::{Args, Subcommand};
use serde_json::Value;

/// `lectern cluster`.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Workers (labels, memory, load, models) and where each model is placed.
    Status,
}

/// Runs `lectern cluster ...`; returns the exit code.
pub fn run(args: ClusterArgs) -> i32 {
    let ClusterArgs { client, command } = args;
    block_on(&client, async {
        let api = Client::new(&client)?;
        match command {
            ClusterCommand::Status => status(&api).await,
        }
    })
}

async fn status(api: &Client) -> Result<(), Failure> {
    let answer = api.get(&["v1", "cluster"]).await?;
    if api.json {
        print_json(&answer);
        return Ok(());
    }
    println!(
        "cluster {} on {} ({})",
        text(&answer["cluster"]),
        text(&answer["nats"]),
        if answer["connected"].as_bool() == Some(true) { "connected" } else { "NOT connected" }
    );
    let workers = rows(&answer["workers"], |w| {
        vec![
            text(&w["name"]),
            labels(&w["labels"]),
            format!("{}/{} MiB", mib(&w["used_bytes"]), mib(&w["memory_bytes"])),
            text(&w["inflight"]),
            names(&w["models"]),
            format!("{} ms ago", text(&w["last_seen_ms"])),
        ]
    });
    println!();
    print_table(&["WORKER", "LABELS", "MEMORY", "IN FLIGHT", "MODELS", "SEEN"], &workers);
    let models = rows(&answer["models"], |m| {
        vec![
            text(&m["name"]),
            format!("{}/{}", m["ready_on"].as_array().map_or(0, Vec::len), text(&m["replicas"])),
            labels(&m["placement"]),
            names(&m["workers"]),
            m["reason"].as_str().filter(|r| !r.is_empty()).unwrap_or("-").to_string(),
        ]
    });
    println!();
    print_table(&["MODEL", "READY", "PLACEMENT", "WORKERS", "REASON"], &models);
    Ok(())
}

fn rows(list: &Value, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    list.as_array().map(|items| items.iter().map(row).collect()).unwrap_or_default()
}

fn labels(map: &Value) -> String {
    let pairs: Vec<String> = map
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect())
        .unwrap_or_default();
    if pairs.is_empty() {
        "-".into()
    } else {
        pairs.join(",")
    }
}

fn names(list: &Value) -> String {
    let names: Vec<&str> = list.as_array().map(|l| l.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(",")
    }
}

fn mib(bytes: &Value) -> u64 {
    bytes.as_u64().unwrap_or(0) >> 20
}
