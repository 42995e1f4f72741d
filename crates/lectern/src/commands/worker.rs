//! `lectern worker`: joins a cluster over NATS and serves the models placed on it, until
//! stopped (a clean stop leaves the cluster at once; a crash is noticed by the heartbeat).

use crate::commands::serve::{init_logging, shutdown_signal};
use anyhow::Context;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use clap::Args;
use lectern_cluster::worker::Worker;
use lectern_cluster::{ClusterAddress, WorkerSettings};
use lectern_runtime::MetricsRegistry;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// `lectern worker`.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// NATS server of the cluster, e.g. nats://10.0.0.5:4222
    #[arg(long, env = "LECTERN_NATS")]
    pub nats: String,
    /// Name of the cluster (as the gateways') [default: lectern]
    #[arg(long, env = "LECTERN_CLUSTER")]
    pub cluster: Option<String>,
    /// This worker's name, unique in the cluster [default: the host name]
    #[arg(long, env = "LECTERN_WORKER_NAME")]
    pub name: Option<String>,
    /// A label models' `placement` can ask for, as key=value; repeat it (or separate by commas)
    #[arg(long = "label", env = "LECTERN_WORKER_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Memory offered to models, e.g. 8GiB or 512MiB [default: the machine's memory]
    #[arg(long, env = "LECTERN_WORKER_MEMORY")]
    pub memory: Option<String>,
    /// Object store of the models' artifacts [default: the one the gateways announce]
    #[arg(long, env = "LECTERN_OBJECTS")]
    pub objects: Option<String>,
    /// Serve /v2/health/live, /v2/health/ready and /metrics on this address (probes, scraping)
    #[arg(long, env = "LECTERN_WORKER_LISTEN")]
    pub listen: Option<String>,
    /// Log filter (tracing `EnvFilter` syntax)
    #[arg(long, env = "LECTERN_LOG", default_value = "info")]
    pub log: String,
}

/// Runs the worker until stopped.
pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    init_logging(&args.log)?;
    let settings = settings(&args)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(work(settings, args.listen))
}

fn settings(args: &WorkerArgs) -> anyhow::Result<WorkerSettings> {
    let name = match &args.name {
        Some(name) => name.clone(),
        None => host_name(),
    };
    anyhow::ensure!(
        lectern_cluster::records::valid_worker_name(&name),
        "invalid worker name '{name}': use letters, digits, '-' and '_' (at most 64)"
    );
    let mut labels = BTreeMap::new();
    for label in &args.labels {
        let (k, v) = label.split_once('=').map(|(k, v)| (k.trim(), v.trim())).unwrap_or_default();
        anyhow::ensure!(!k.is_empty() && !v.is_empty(), "a label is key=value, not '{label}'");
        labels.insert(k.to_string(), v.to_string());
    }
    let memory_bytes = match &args.memory {
        Some(text) => crate::settings::parse_size(text)
            .with_context(|| format!("--memory: cannot read '{text}' (e.g. 8GiB, 512MiB)"))?,
        None => machine_memory(),
    };
    Ok(WorkerSettings {
        address: ClusterAddress::new(args.nats.clone(), args.cluster.clone())?,
        name,
        labels,
        memory_bytes,
        objects: args.objects.clone(),
    })
}

async fn work(settings: WorkerSettings, listen: Option<String>) -> anyhow::Result<()> {
    let metrics = Arc::new(MetricsRegistry::default());
    let worker = tokio::select! {
        joined = Worker::join(settings, metrics) => joined?,
        _ = shutdown_signal() => return Ok(()),
    };
    if let Some(address) = listen {
        let listener =
            tokio::net::TcpListener::bind(&address).await.with_context(|| format!("cannot listen on {address}"))?;
        let bound = listener.local_addr()?;
        let app = Router::new()
            .route("/v2/health/live", get(|| async { Json(json!({"live": true})) }))
            .route("/v2/health/ready", get(ready))
            .route("/metrics", get(metrics_text))
            .with_state(worker.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "health endpoint stopped");
            }
        });
        println!("lectern worker health on http://{bound}");
    }
    tokio::select! {
        ran = worker.run() => ran?,
        _ = shutdown_signal() => worker.leave().await,
    }
    tracing::info!("worker stopped");
    Ok(())
}

async fn ready(State(worker): State<Arc<Worker>>) -> impl IntoResponse {
    if worker.ready() {
        (StatusCode::OK, Json(json!({"ready": true})))
    } else {
        let error = "the worker has not read its placement yet";
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false, "error": error, "code": "not_ready"})))
    }
}

async fn metrics_text(State(worker): State<Arc<Worker>>) -> impl IntoResponse {
    let mut out = lectern_server::inference_metrics(&worker.registry().metrics().all());
    let stats = &worker.stats;
    let name = "lectern_cluster_worker_inflight";
    let _ = writeln!(
        out,
        "# HELP {name} Requests this worker is answering now.\n# TYPE {name} gauge\n{name} {}",
        stats.inflight.load(Relaxed)
    );
    let name = "lectern_cluster_invalid_messages_total";
    let _ = writeln!(
        out,
        "# HELP {name} Messages that were not what Lectern sends (ignored).\n# TYPE {name} counter\n{name} {}",
        stats.invalid.load(Relaxed)
    );
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], out)
}

/// The host's name, cut to what a worker name may hold.
fn host_name() -> String {
    let raw = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .unwrap_or_else(|| "worker".into());
    let name: String = raw
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .take(64)
        .collect();
    if name.is_empty() {
        "worker".into()
    } else {
        name
    }
}

/// Total memory from /proc/meminfo; 4 GiB where it cannot be read.
fn machine_memory() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(4 << 30)
}
