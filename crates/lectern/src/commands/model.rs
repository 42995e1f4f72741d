//! `lectern model ...`: manage the models of a running server through its `/v1` API; also the
//! HTTP client, failures and output helpers the `keys` commands share.
//!
//! Exit codes: 0 done; 1 the server refused (its `error` message and the HTTP status are
//! printed), or a pushed version failed to load; 2 a usage error (clap's, or a local file that
//! cannot be read); 3 the server cannot be reached. The credential (`--key`) is sent as
//! `Authorization: Bearer` and is never printed, not even in an error message.

use clap::{Args, Subcommand};
use futures_util::StreamExt;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the server is and how to talk to it; shared by `model` and `keys`.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// URL of the Lectern server
    #[arg(long, env = "LECTERN_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// API key or OIDC token, sent as `Authorization: Bearer`; prefer the environment variable
    /// (a flag is visible to other users of the machine)
    #[arg(long, env = "LECTERN_KEY", hide_env_values = true, global = true, value_name = "KEY")]
    pub key: Option<String>,
    /// PEM certificate to trust for an https:// URL, besides the public roots (self-signed servers)
    #[arg(long, env = "LECTERN_CA_CERT", global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Print the server's JSON answer instead of a table
    #[arg(long, global = true)]
    pub json: bool,
}

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
    /// The model file (ONNX)
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

/// Runs a command on a current-thread runtime and turns its outcome into an exit code. Every
/// message is scrubbed of the credential before it is printed.
pub(crate) fn block_on<F>(client: &ClientArgs, command: F) -> i32
where
    F: std::future::Future<Output = Result<(), Failure>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let outcome = runtime.block_on(command);
    std::io::stdout().flush().ok();
    match outcome {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("error: {}", redact(&failure.to_string(), client.key.as_deref()));
            failure.exit_code()
        }
    }
}

/// Why a command failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server answered with an error status.
    Refused { status: StatusCode, message: String, retry_after: Option<String> },
    /// No answer: connection refused, name not resolved, TLS handshake failed, timeout.
    Unreachable { url: String, detail: String },
    /// A local input problem (a file that cannot be read, a bad --url): exit 2.
    Usage(String),
    /// Anything else: exit 1.
    Failed(String),
}

impl Failure {
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Failure::Refused { .. } | Failure::Failed(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable { .. } => 3,
        }
    }

    fn is_status(&self, wanted: StatusCode) -> bool {
        matches!(self, Failure::Refused { status, .. } if *status == wanted)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused { status, message, retry_after } => {
                write!(f, "the server refused the request (HTTP {status}): {message}")?;
                if let Some(wait) = retry_after {
                    write!(f, " (retry after {wait} s)")?;
                }
                Ok(())
            }
            Failure::Unreachable { url, detail } => write!(f, "cannot reach the server at {url}: {detail}"),
            Failure::Usage(m) | Failure::Failed(m) => f.write_str(m),
        }
    }
}

/// `text` with every occurrence of the credential replaced.
pub(crate) fn redact(text: &str, key: Option<&str>) -> String {
    match key.map(str::trim).filter(|k| !k.is_empty()) {
        Some(k) => text.replace(k, "[credential]"),
        None => text.to_string(),
    }
}

/// The HTTP client of one command.
pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    /// The base URL as given, for messages.
    shown: String,
    auth: Option<HeaderValue>,
    /// `--json`: print the server's answer as it is.
    pub(crate) json: bool,
}

impl Client {
    pub(crate) fn new(args: &ClientArgs) -> Result<Self, Failure> {
        let shown = args.url.trim_end_matches('/').to_string();
        let base =
            Url::parse(&args.url).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host()).ok_or_else(
                || Failure::Usage(format!("invalid --url '{}': give http://HOST:PORT or https://HOST:PORT", args.url)),
            )?;
        let auth = match args.key.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            Some(key) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                    Failure::Usage("the key (--key / LECTERN_KEY) holds characters a header cannot carry".into())
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("lectern-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // A redirect could carry the credential elsewhere: follow none.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| Failure::Usage(format!("cannot read --ca-cert {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Failure::Usage(format!("--ca-cert {} holds no PEM certificate: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(Failure::Usage(format!("--ca-cert {} holds no PEM certificate", path.display())));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http =
            builder.build().map_err(|e| Failure::Failed(format!("cannot set up the HTTP client: {}", chain(&e))))?;
        Ok(Client { http, base, shown, auth, json: args.json })
    }

    /// The URL of `segments` under the base URL (each segment percent-encoded).
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    pub(crate) fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.auth {
            Some(value) => builder.header(AUTHORIZATION, value.clone()),
            None => builder,
        }
    }

    /// Sends a request; a 2xx answer's JSON body (`null` when empty), else the failure.
    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, Failure> {
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
        if status.is_success() {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|e| {
                Failure::Failed(format!(
                    "the server at {} answered {status} with a body that is not JSON: {e}",
                    self.shown
                ))
            });
        }
        let message = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(o)) if o.get("error").is_some_and(Value::is_string) => {
                o["error"].as_str().unwrap_or_default().to_string()
            }
            _ => {
                let text = String::from_utf8_lossy(&bytes);
                let text = text.trim();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("no message").to_string()
                } else {
                    text.chars().take(300).collect()
                }
            }
        };
        Err(Failure::Refused { status, message, retry_after })
    }

    pub(crate) async fn get(&self, segments: &[&str]) -> Result<Value, Failure> {
        self.send(self.request(Method::GET, self.url(segments))).await
    }

    pub(crate) async fn delete(&self, segments: &[&str]) -> Result<Value, Failure> {
        self.send(self.request(Method::DELETE, self.url(segments))).await
    }

    pub(crate) async fn send_json(&self, method: Method, segments: &[&str], body: &Value) -> Result<Value, Failure> {
        self.send(self.request(method, self.url(segments)).json(body)).await
    }

    /// A transport error: unreachable (exit 3) when no connection was made.
    fn transport(&self, e: reqwest::Error) -> Failure {
        let detail = chain(&e);
        if e.is_connect() || e.is_timeout() {
            Failure::Unreachable { url: self.shown.clone(), detail }
        } else {
            Failure::Failed(format!("the request to {} failed: {detail}", self.shown))
        }
    }
}

/// An error with its causes, without the request URL.
fn chain(e: &reqwest::Error) -> String {
    let mut parts = vec![];
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    parts.join(": ")
}

/// Prints a JSON value, indented, on stdout.
pub(crate) fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
}

/// Prints rows under headers in aligned columns.
pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A time in milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC; `-` when absent.
pub(crate) fn time_text(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// A byte count for people.
fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

// ----- the commands -----

async fn push(api: &Client, args: PushArgs) -> Result<(), Failure> {
    let name = args.name.as_str();
    let file = tokio::fs::File::open(&args.file)
        .await
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", args.file.display())))?;
    let metadata =
        file.metadata().await.map_err(|e| Failure::Usage(format!("cannot read {}: {e}", args.file.display())))?;
    if !metadata.is_file() {
        return Err(Failure::Usage(format!("{} is not a file", args.file.display())));
    }
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
        // The config stays as it is; labels travel next to it, not inside it.
        let mut config = model.get("config").cloned().unwrap_or(Value::Null);
        if let Some(map) = config.as_object_mut() {
            map.remove("labels");
        }
        api.send_json(Method::PUT, &["v1", "models", name, "config"], &json!({ "config": config, "labels": labels }))
            .await?;
        eprintln!("set {} labels on {name}", labels.len());
    }

    let mut url = api.url(&["v1", "models", name, "versions"]);
    if let Some(v) = args.version {
        url.query_pairs_mut().append_pair("version", &v.to_string());
    }
    let progress = Arc::new(Progress::new(metadata.len(), std::io::stderr().is_terminal()));
    let counter = progress.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect(move |chunk| {
        if let Ok(bytes) = chunk {
            counter.advance(bytes.len() as u64);
        }
    });
    let request = api
        .request(Method::POST, url)
        .header(CONTENT_TYPE, "application/octet-stream")
        // The length up front lets the server refuse an oversize file before it is sent.
        .header(reqwest::header::CONTENT_LENGTH, metadata.len())
        .body(reqwest::Body::wrap_stream(stream));
    let answer = api.send(request).await;
    progress.finish();
    let answer = answer.map_err(|e| match e {
        // A server that refuses an upload early (over its size limit) may close the connection
        // before its answer can be read: say what probably happened.
        Failure::Failed(message) if progress.sent() < progress.total => Failure::Failed(format!(
            "{message}\nthe server closed the connection after about {} of {} bytes of the upload: the file may be \
             larger than the server's limit (lectern serve --max-upload-bytes)",
            progress.sent(),
            progress.total
        )),
        other => other,
    })?;
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

/// The upload's progress bar on stderr (only when stderr is a terminal).
struct Progress {
    total: u64,
    sent: AtomicU64,
    enabled: bool,
    last: Mutex<Option<Instant>>,
}

impl Progress {
    fn new(total: u64, enabled: bool) -> Self {
        Progress { total, sent: AtomicU64::new(0), enabled, last: Mutex::new(None) }
    }

    /// Bytes handed to the connection so far.
    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn advance(&self, bytes: u64) {
        let sent = self.sent.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if !self.enabled {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) && sent < self.total {
            return;
        }
        *last = Some(Instant::now());
        self.draw(sent);
    }

    fn draw(&self, sent: u64) {
        const WIDTH: u64 = 30;
        let fraction = if self.total == 0 { 1.0 } else { (sent as f64 / self.total as f64).min(1.0) };
        let filled = (fraction * WIDTH as f64).round() as u64;
        let bar: String = (0..WIDTH).map(|i| if i < filled { '#' } else { '.' }).collect();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2Kuploading [{bar}] {:>3.0}%  {} / {}",
            fraction * 100.0,
            size_text(sent),
            size_text(self.total)
        );
        if sent >= self.total {
            let _ = write!(err, "  loading...");
        }
        let _ = err.flush();
    }

    /// Clears the bar once the server has answered.
    fn finish(&self) {
        if self.enabled && self.last.lock().map(|l| l.is_some()).unwrap_or(true) {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(time_text(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(time_text(Some(951_782_400_000)), "2000-02-29 00:00:00");
        assert_eq!(time_text(Some(1_700_000_000_123)), "2023-11-14 22:13:20");
        assert_eq!(time_text(None), "-");
    }

    #[test]
    fn the_credential_is_scrubbed_from_messages() {
        assert_eq!(redact("bad lk_abc_def here", Some("lk_abc_def")), "bad [credential] here");
        assert_eq!(redact("nothing", None), "nothing");
        assert_eq!(redact("x", Some("  ")), "x");
    }

    #[test]
    fn default_versions_parse() {
        assert_eq!(parse_default("newest"), Ok(DefaultVersion::Newest));
        assert_eq!(parse_default("3"), Ok(DefaultVersion::Version(3)));
        assert!(parse_default("0").is_err() && parse_default("x").is_err());
    }

    #[test]
    fn urls_encode_each_segment_under_the_base_path() {
        let args = ClientArgs { url: "http://h:1/prefix/".into(), key: None, ca_cert: None, json: false };
        let client = Client::new(&args).unwrap();
        assert_eq!(client.url(&["v1", "models", "a b/c"]).as_str(), "http://h:1/prefix/v1/models/a%20b%2Fc");
        let args = ClientArgs { url: "http://h:1".into(), ..args };
        assert_eq!(Client::new(&args).unwrap().url(&["v1", "keys"]).as_str(), "http://h:1/v1/keys");
        let args = ClientArgs { url: "ftp://h".into(), key: None, ca_cert: None, json: false };
        assert!(matches!(Client::new(&args), Err(Failure::Usage(_))));
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size_text(12), "12 B");
        assert_eq!(size_text(1536), "1.5 KiB");
        assert_eq!(size_text(3 << 20), "3.0 MiB");
    }
}
