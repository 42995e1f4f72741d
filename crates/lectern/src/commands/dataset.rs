//! `lectern dataset ...`: upload, list, show and delete the datasets of a running server.
//!
//! Exit codes as `lectern model`: 0 done; 1 the server refused; 2 usage; 3 unreachable.

use crate::client::{block_on, open_file, Client, ClientArgs, Failure};
use crate::output::{print_json, print_table, size_text, time_text};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `lectern dataset`.
#[derive(Args, Debug)]
pub struct DatasetArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: DatasetCommand,
}

#[derive(Subcommand, Debug)]
pub enum DatasetCommand {
    /// Upload FILE (CSV with a header line, or a JSON array of objects) as dataset NAME.
    Push {
        /// Dataset name
        name: String,
        /// The file
        file: PathBuf,
        /// csv or json [default: from the file's extension, else csv]
        #[arg(long)]
        format: Option<String>,
    },
    /// List the datasets.
    List,
    /// Show a dataset's columns and first rows.
    Show {
        /// Dataset name
        name: String,
    },
    /// Delete a dataset.
    Rm {
        /// Dataset name
        name: String,
    },
}

/// Runs `lectern dataset ...`; returns the exit code.
pub fn run(args: DatasetArgs) -> i32 {
    let DatasetArgs { client, command } = args;
    block_on(&client, async {
        let api = Client::new(&client)?;
        match command {
            DatasetCommand::Push { name, file, format } => {
                let dataset = push(&api, &name, &file, format.as_deref()).await?;
                show_dataset(&api, &dataset);
                Ok(())
            }
            DatasetCommand::List => list(&api).await,
            DatasetCommand::Show { name } => {
                let dataset = api.get(&["v1", "datasets", &name]).await?;
                show_dataset(&api, &dataset);
                Ok(())
            }
            DatasetCommand::Rm { name } => {
                api.delete(&["v1", "datasets", &name]).await?;
                if !api.json {
                    println!("deleted dataset {name}");
                }
                Ok(())
            }
        }
    })
}

/// The format of a file: as given, else from its extension (`.json` is JSON, anything else CSV).
fn format_of(file: &Path, format: Option<&str>) -> Result<String, Failure> {
    match format.map(str::to_ascii_lowercase) {
        Some(f) if f == "csv" || f == "json" => Ok(f),
        Some(other) => Err(Failure::Usage(format!("--format must be csv or json, not '{other}'"))),
        None => {
            let json = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
            Ok(if json { "json" } else { "csv" }.to_string())
        }
    }
}

/// Uploads FILE as dataset NAME; returns the server's dataset.
pub(crate) async fn push(api: &Client, name: &str, file: &Path, format: Option<&str>) -> Result<Value, Failure> {
    let format = format_of(file, format)?;
    let local = open_file(file).await?;
    let mut url = api.url(&["v1", "datasets", name]);
    url.query_pairs_mut().append_pair("format", &format);
    let content_type = if format == "json" { "application/json" } else { "text/csv" };
    api.upload(url, local, content_type).await
}

async fn list(api: &Client) -> Result<(), Failure> {
    let answer = api.get(&["v1", "datasets"]).await?;
    if api.json {
        print_json(&answer);
        return Ok(());
    }
    let rows = rows_of(&answer["datasets"], |d| {
        vec![
            text(&d["name"]),
            d["rows"].as_u64().unwrap_or_default().to_string(),
            d["columns"].as_array().map_or(0, Vec::len).to_string(),
            d["size"].as_u64().map(size_text).unwrap_or_default(),
            time_text(d["created_at_ms"].as_i64()),
        ]
    });
    print_table(&["NAME", "ROWS", "COLUMNS", "SIZE", "CREATED"], &rows);
    Ok(())
}

fn show_dataset(api: &Client, dataset: &Value) {
    if api.json {
        print_json(dataset);
        return;
    }
    println!(
        "{}: {} rows, {} ({})",
        text(&dataset["name"]),
        dataset["rows"].as_u64().unwrap_or_default(),
        text(&dataset["format"]),
        dataset["size"].as_u64().map(size_text).unwrap_or_default()
    );
    let rows = rows_of(&dataset["columns"], |c| {
        vec![
            text(&c["name"]),
            text(&c["type"]),
            c["missing"].as_u64().unwrap_or_default().to_string(),
            c["distinct"].as_u64().map(|d| d.to_string()).unwrap_or_default(),
        ]
    });
    print_table(&["COLUMN", "TYPE", "MISSING", "DISTINCT"], &rows);
}

/// One table row per item of a JSON list (none when it is not a list).
pub(crate) fn rows_of(list: &Value, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    list.as_array().map(Vec::as_slice).unwrap_or_default().iter().map(row).collect()
}

pub(crate) fn text(value: &Value) -> String {
    value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string())
}
