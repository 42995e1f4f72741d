//! `lectern model ...`: manage the models of a running server through its `/v1` API.
//!
//! Exit codes: 0 done; 1 the server refused (its `error` message and the HTTP status are
//! printed), or a pushed version failed to load; 2 a usage error (clap's, or a local file that
//! cannot be read); 3 the server cannot be reached.

use crate::client::{block_on, open_file, Client, ClientArgs, Failure};
use crate::output::{print_json, print_table, size_text, time_text};
use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// `lectern model`.
#[derive(Args, Debug)]
pub struct ModelArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: ModelCommand,
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Upload FILE as a new version of model NAME (streamed), then show how it loaded.
    Push(PushArgs),
    /// List the models with their versions and what is serving.
    List,
    /// Show one model: its default version, config, labels and versions.
    Show {
        /// Model name
        name: String,
    },
    /// Set the version unversioned requests use, or `newest` (the newest ready version).
    Default {
        /// Model name
        name: String,
        /// A version number, or `newest`
        #[arg(value_parser = parse_default)]
        version: DefaultVersion,
    },
    /// Delete a model with all its versions, or one version with --version.
    Rm {
        /// Model name
        name: String,
        /// Delete only this version
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        version: Option<u64>,
    },
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Model name
    pub name: String,
    /// The model file (ONNX), or a sentence-transformers folder (packed into one archive)
    pub file: PathBuf,
    /// Version number to give it [default: the model's newest version + 1]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub version: Option<u64>,
    /// Create the model first when it does not exist
    #[arg(long)]
    pub create: bool,
    /// Labels file (one class name per line) to set on the model before the upload
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
}

/// The argument of `model default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultVersion {
    Newest,
    Version(u64),
}

fn parse_default(text: &str) -> Result<DefaultVersion, String> {
    if text.eq_ignore_ascii_case("newest") {
        return Ok(DefaultVersion::Newest);
    }
    match text.parse::<u64>() {
        Ok(v) if v > 0 => Ok(DefaultVersion::Version(v)),
        _ => Err("a positive version number, or `newest`".into()),
    }
}

/// Runs `lectern model ...`; returns the exit code.
pub fn run(args: ModelArgs) -> i32 {
    let ModelArgs { client, command } = args;
    block_on(&client, async {
        let api = Client::new(&client)?;
        match command {
            ModelCommand::Push(push_args) => push(&api, push_args).await,
            ModelCommand::List => list(&api).await,
            ModelCommand::Show { name } => show(&api, &name).await,
            ModelCommand::Default { name, version } => set_default(&api, &name, version).await,
            ModelCommand::Rm { name, version } => remove(&api, &name, version).await,
        }
    })
}

// ----- the commands -----

async fn push(api: &Client, args: PushArgs) -> Result<(), Failure> {
    let packed = match args.file.is_dir() {
        true => Some(pack_encoder_folder(&args.file).await?),
        false => None,
    };
    let result = push_file(api, &args, packed.as_deref().unwrap_or(&args.file)).await;
    if let Some(path) = packed {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Packs a sentence-transformers folder into one archive in the temporary folder (the form
/// the server stores it in); its path.
async fn pack_encoder_folder(folder: &std::path::Path) -> Result<PathBuf, Failure> {
    use lectern_backends::encoder::bundle;
    if !bundle::is_encoder_folder(folder) {
        return Err(Failure::Usage(format!(
            "{} is a folder without {} and {}: push an ONNX file or a sentence-transformers folder",
            folder.display(),
            bundle::WEIGHTS_FILE,
            bundle::TOKENIZER_FILE
        )));
    }
    let target = std::env::temp_dir().join(format!("lectern-push-{}.tar", std::process::id()));
    let (source, dest) = (folder.to_path_buf(), target.clone());
    let packed = tokio::task::spawn_blocking(move || {
        bundle::pack_folder(&source).and_then(|bytes| std::fs::write(&dest, bytes))
    })
    .await
    .map_err(|e| Failure::Failed(format!("packing failed: {e}")))?;
    packed.map_err(|e| Failure::Usage(format!("cannot pack {}: {e}", folder.display())))?;
    Ok(target)
}

async fn push_file(api: &Client, args: &PushArgs, path: &std::path::Path) -> Result<(), Failure> {
    let name = args.name.as_str();
    let file = open_file(path).await?;
    let labels = match &args.labels {
        Some(path) => Some(read_labels(path)?),
        None => None,
    };
    let mut labels_set = false;
    if args.create {
        let mut body = json!({ "name": name });
        if let Some(labels) = &labels {
            body["labels"] = json!(labels);
        }
        match api.send_json(Method::POST, &["v1", "models"], &body).await {
            Ok(_) => {
                eprintln!("created model {name}");
                labels_set = true;
            }
            Err(e) if e.is_status(StatusCode::CONFLICT) => {}
            Err(e) => return Err(e),
        }
    }
    // Asked first, so that a missing model is a clear 404 before any byte is sent.
    let model = api.get(&["v1", "models", name]).await.map_err(|e| match e {
        Failure::Refused { status: StatusCode::NOT_FOUND, message, retry_after } => Failure::Refused {
            status: StatusCode::NOT_FOUND,
            message: format!("{message} (add --create to create it)"),
            retry_after,
        },
        other => other,
    })?;
    if let (Some(labels), false) = (&labels, labels_set) {
        // The config stays as it is (the server never shows labels inside it).
        let config = model.get("config").cloned().unwrap_or(Value::Null);
        api.send_json(Method::PUT, &["v1", "models", name, "config"], &json!({ "config": config, "labels": labels }))
            .await?;
        eprintln!("set {} labels on {name}", labels.len());
    }

    let mut url = api.url(&["v1", "models", name, "versions"]);
    if let Some(v) = args.version {
        url.query_pairs_mut().append_pair("version", &v.to_string());
    }
    let answer = api.upload(url, file, "application/octet-stream").await?;
    if api.json {
        print_json(&answer);
    }
    let version = &answer["version"];
    let number = version["version"].as_u64().unwrap_or_default();
    let state = version["state"].as_str().unwrap_or("UNKNOWN");
    let serving = version["serving"].as_bool().unwrap_or(false);
    if !api.json {
        let size = version["size"].as_u64().map(size_text).unwrap_or_default();
        let sha = version["sha256"].as_str().unwrap_or_default();
        let sha = &sha[..sha.len().min(12)];
        println!(
            "{name} version {number}: {state}{} ({size}, sha256 {sha})",
            if serving { ", serving" } else { ", not serving" }
        );
    }
    if state == "UNAVAILABLE" {
        let reason = version["reason"].as_str().unwrap_or("no reason given");
        let still: Vec<String> = serving_versions(&answer["model"]).iter().map(u64::to_string).collect();
        let still = if still.is_empty() {
            "no version of it is serving".to_string()
        } else {
            format!("still serving: {}", still.join(", "))
        };
        return Err(Failure::Failed(format!("version {number} of {name} failed to load: {reason} ({still})")));
    }
    if !serving && !api.json {
        eprintln!("note: version {number} is stored but not serving (the model's version policy does not select it)");
    }
    Ok(())
}

fn read_labels(path: &Path) -> Result<Vec<String>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read labels file {}: {e}", path.display())))?;
    let mut labels: Vec<String> = text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect();
    while labels.last().is_some_and(|l| l.trim().is_empty()) {
        labels.pop();
    }
    if labels.is_empty() {
        return Err(Failure::Usage(format!("labels file {} is empty", path.display())));
    }
    Ok(labels)
}

fn serving_versions(model: &Value) -> Vec<u64> {
    versions(model)
        .iter()
        .filter(|v| v["serving"].as_bool() == Some(true))
        .filter_map(|v| v["version"].as_u64())
        .collect()
}

fn versions(model: &Value) -> Vec<Value> {
    model["versions"].as_array().cloned().unwrap_or_default()
}

fn numbers(list: &[u64]) -> String {
    if list.is_empty() {
        "-".into()
    } else {
        list.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
    }
}

fn default_text(model: &Value) -> String {
    model["default_version"].as_u64().map(|v| v.to_string()).unwrap_or_else(|| "newest".into())
}

async fn list(api: &Client) -> Result<(), Failure> {
    let answer = api.get(&["v1", "models"]).await?;
    if api.json {
        print_json(&answer);
        return Ok(());
    }
    let models = answer["models"].as_array().cloned().unwrap_or_default();
    if models.is_empty() {
        eprintln!("no models");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|m| {
            let all: Vec<u64> = versions(m).iter().filter_map(|v| v["version"].as_u64()).collect();
            let failed: Vec<u64> = versions(m)
                .iter()
                .filter(|v| v["state"] == "UNAVAILABLE")
                .filter_map(|v| v["version"].as_u64())
                .collect();
            vec![
                m["name"].as_str().unwrap_or_default().to_string(),
                default_text(m),
                numbers(&serving_versions(m)),
                numbers(&all),
                numbers(&failed),
            ]
        })
        .collect();
    print_table(&["NAME", "DEFAULT", "SERVING", "VERSIONS", "UNAVAILABLE"], &rows);
    Ok(())
}

async fn show(api: &Client, name: &str) -> Result<(), Failure> {
    let model = api.get(&["v1", "models", name]).await?;
    if api.json {
        print_json(&model);
        return Ok(());
    }
    print_model(&model);
    Ok(())
}

fn print_model(model: &Value) {
    println!("model:    {}", model["name"].as_str().unwrap_or_default());
    println!("default:  {}", default_text(model));
    println!("serving:  {}", numbers(&serving_versions(model)));
    let config = match &model["config"] {
        Value::Object(map) if map.is_empty() => "(defaults)".to_string(),
        Value::Null => "(defaults)".to_string(),
        other => other.to_string(),
    };
    println!("config:   {config}");
    let labels = match model["labels"].as_array() {
        Some(l) => {
            let names: Vec<&str> = l.iter().filter_map(Value::as_str).collect();
            let shown: Vec<&str> = names.iter().take(10).copied().collect();
            let more = if names.len() > 10 { format!(", ... ({} in all)", names.len()) } else { String::new() };
            format!("{}{more}", shown.join(", "))
        }
        None => "-".into(),
    };
    println!("labels:   {labels}");
    println!("created:  {}", time_text(model["created_at_ms"].as_i64()));
    println!("updated:  {}", time_text(model["updated_at_ms"].as_i64()));
    let rows: Vec<Vec<String>> = versions(model)
        .iter()
        .map(|v| {
            let sha = v["sha256"].as_str().unwrap_or_default();
            vec![
                v["version"].as_u64().map(|n| n.to_string()).unwrap_or_default(),
                v["state"].as_str().unwrap_or_default().to_string(),
                if v["serving"].as_bool() == Some(true) { "yes" } else { "no" }.to_string(),
                v["size"].as_u64().map(size_text).unwrap_or_default(),
                sha[..sha.len().min(12)].to_string(),
                time_text(v["created_at_ms"].as_i64()),
                v["reason"].as_str().unwrap_or_default().to_string(),
            ]
        })
        .collect();
    println!();
    if rows.is_empty() {
        println!("no versions yet: lectern model push NAME FILE");
    } else {
        print_table(&["VERSION", "STATE", "SERVING", "SIZE", "SHA256", "CREATED (UTC)", "REASON"], &rows);
    }
}

async fn set_default(api: &Client, name: &str, version: DefaultVersion) -> Result<(), Failure> {
    let body = match version {
        DefaultVersion::Newest => json!({ "version": null }),
        DefaultVersion::Version(v) => json!({ "version": v }),
    };
    let model = api.send_json(Method::PUT, &["v1", "models", name, "default"], &body).await?;
    if api.json {
        print_json(&model);
        return Ok(());
    }
    match version {
        DefaultVersion::Newest => println!("{name}: unversioned requests use the newest ready version"),
        DefaultVersion::Version(v) => println!("{name}: unversioned requests use version {v}"),
    }
    println!("serving: {}", numbers(&serving_versions(&model)));
    Ok(())
}

async fn remove(api: &Client, name: &str, version: Option<u64>) -> Result<(), Failure> {
    match version {
        Some(v) => {
            let model = api.delete(&["v1", "models", name, "versions", &v.to_string()]).await?;
            if api.json {
                print_json(&model);
            } else {
                println!("deleted version {v} of {name}");
                println!("serving: {}", numbers(&serving_versions(&model)));
            }
        }
        None => {
            api.delete(&["v1", "models", name]).await?;
            if api.json {
                print_json(&json!({}));
            } else {
                println!("deleted model {name}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_versions_parse() {
        assert_eq!(parse_default("newest"), Ok(DefaultVersion::Newest));
        assert_eq!(parse_default("3"), Ok(DefaultVersion::Version(3)));
        assert!(parse_default("0").is_err() && parse_default("x").is_err());
    }
}
