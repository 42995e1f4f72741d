//! `GET /metrics`: Prometheus text exposition of every model version's metrics.

use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

const COUNTERS: [(&str, &str); 6] = [
    ("lectern_inference_request_success_total", "Inference requests answered successfully."),
    ("lectern_inference_request_failure_total", "Inference requests that failed."),
    ("lectern_inference_count_total", "Rows inferred (a batch of 8 counts 8)."),
    ("lectern_inference_exec_count_total", "Model executions (a batch counts 1)."),
    ("lectern_inference_queue_rejected_total", "Requests refused because the model's queue was full."),
    ("lectern_inference_deadline_expired_total", "Requests whose timeout passed while queued; never computed."),
];

const HISTOGRAMS: [(&str, &str); 3] = [
    ("lectern_inference_request_duration_seconds", "Whole inference request time."),
    ("lectern_inference_queue_duration_seconds", "Time a request waited in the model's queue."),
    ("lectern_inference_compute_duration_seconds", "Time the engine spent computing."),
];

/// `GET /metrics`: renders all metrics as Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition 0.0.4.", body = String, content_type = "text/plain")))]
pub async fn render(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut models = state.registry.metrics().all();
    // Open to anyone: the models of private projects are left out (their names name children).
    if let Some(prefix) = state.projects.as_deref() {
        models.retain(|((model, _), _)| !model.starts_with(prefix));
    }
    let mut out = inference_metrics(&models);
    let mut memory = state.registry.memory();
    if let Some(prefix) = state.projects.as_deref() {
        memory.models.retain(|m| !m.name.starts_with(prefix));
    }
    write_memory(&mut out, &memory);
    if let Some(gateway) = &state.cluster {
        write_cluster(&mut out, &gateway.status());
    }
    write_proxy(&mut out, state.proxy.metrics().await);
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], out)
}

/// Every model version's metrics as Prometheus text (the server's and a cluster worker's).
pub fn inference_metrics(models: &[((String, String), Arc<lectern_runtime::ModelMetrics>)]) -> String {
    let mut out = String::with_capacity(4096);
    for (ix, (name, help)) in COUNTERS.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for ((model, version), m) in models {
            let value =
                [&m.success, &m.failure, &m.inference_count, &m.exec_count, &m.queue_rejected, &m.deadline_expired][ix]
                    .load(Relaxed);
            let _ = writeln!(out, "{name}{{model=\"{}\",version=\"{version}\"}} {value}", escape(model));
        }
    }
    let name = "lectern_inference_queue_depth";
    let _ = writeln!(out, "# HELP {name} Requests waiting in the model's queue now.\n# TYPE {name} gauge");
    for ((model, version), m) in models {
        let _ = writeln!(
            out,
            "{name}{{model=\"{}\",version=\"{version}\"}} {}",
            escape(model),
            m.queue_depth.load(Relaxed)
        );
    }
    for (ix, (name, help)) in HISTOGRAMS.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for ((model, version), m) in models {
            let h = [&m.request_duration, &m.queue_duration, &m.compute_duration][ix];
            write_histogram(
                &mut out,
                name,
                &format!("model=\"{}\",version=\"{version}\"", escape(model)),
                h.snapshot(),
            );
        }
    }
    let name = "lectern_inference_batch_size";
    let _ = writeln!(out, "# HELP {name} Rows per model execution.\n# TYPE {name} histogram");
    for ((model, version), m) in models {
        write_histogram(
            &mut out,
            name,
            &format!("model=\"{}\",version=\"{version}\"", escape(model)),
            m.batch_size.snapshot(),
        );
    }
    out
}

/// Model loads, unloads by the memory budget, the bytes each model holds, and the budget.
fn write_memory(out: &mut String, memory: &lectern_runtime::MemoryReport) {
    type Field = fn(&lectern_runtime::ModelMemory) -> u64;
    let families: [(&str, &str, &str, Field); 3] = [
        (
            "lectern_model_loads_total",
            "Times a model was loaded (at start-up, on request or on demand).",
            "counter",
            |m| m.loads,
        ),
        ("lectern_model_evictions_total", "Times the memory budget unloaded a model.", "counter", |m| m.evictions),
        ("lectern_model_resident_bytes", "Bytes a model's loaded versions hold.", "gauge", |m| m.resident_bytes),
    ];
    for (name, help, kind, field) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for m in &memory.models {
            let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", escape(&m.name), field(m));
        }
    }
    if let Some(budget) = memory.budget {
        let name = "lectern_memory_budget_bytes";
        let _ = writeln!(
            out,
            "# HELP {name} Bytes the loaded models may hold together.\n# TYPE {name} gauge\n{name} {budget}"
        );
    }
    if let Some(rss) = lectern_runtime::memory::resident_bytes() {
        let name = "lectern_process_resident_bytes";
        let _ =
            writeln!(out, "# HELP {name} Bytes of the server resident in memory.\n# TYPE {name} gauge\n{name} {rss}");
    }
}

/// A gateway's view of its cluster: live workers, their load, and ignored messages.
fn write_cluster(out: &mut String, status: &lectern_cluster::ClusterStatus) {
    let name = "lectern_cluster_workers";
    let _ = writeln!(
        out,
        "# HELP {name} Live workers in the cluster.\n# TYPE {name} gauge\n{name} {}",
        status.workers.len()
    );
    let name = "lectern_cluster_worker_inflight";
    let _ = writeln!(out, "# HELP {name} Requests a worker is answering now.\n# TYPE {name} gauge");
    for w in &status.workers {
        let _ = writeln!(out, "{name}{{worker=\"{}\"}} {}", escape(&w.name), w.inflight);
    }
    let name = "lectern_cluster_invalid_messages_total";
    let _ = writeln!(out, "# HELP {name} Cluster records and answers that were not what Lectern sends (ignored).\n# TYPE {name} counter\n{name} {}", status.invalid_messages);
}

/// The caching proxy's requests by cache outcome, upstream times and cache sizes.
fn write_proxy(out: &mut String, upstreams: Vec<(String, lectern_proxy::MetricsSnapshot, u64)>) {
    let name = "lectern_proxy_requests_total";
    let _ = writeln!(out, "# HELP {name} Proxied requests by upstream and cache outcome.\n# TYPE {name} counter");
    for (upstream, m, _) in &upstreams {
        for (cache, n) in &m.requests {
            let _ = writeln!(out, "{name}{{upstream=\"{}\",cache=\"{cache}\"}} {n}", escape(upstream));
        }
    }
    let name = "lectern_proxy_upstream_seconds";
    let _ = writeln!(out, "# HELP {name} Time of each exchange with an upstream.\n# TYPE {name} histogram");
    for (upstream, m, _) in upstreams.iter() {
        write_histogram(out, name, &format!("upstream=\"{}\"", escape(upstream)), m.upstream_seconds.clone());
    }
    let name = "lectern_proxy_cache_bytes";
    let _ = writeln!(out, "# HELP {name} Bytes held by an upstream's response cache.\n# TYPE {name} gauge");
    for (upstream, _, bytes) in &upstreams {
        let _ = writeln!(out, "{name}{{upstream=\"{}\"}} {bytes}", escape(upstream));
    }
}

fn write_histogram(out: &mut String, name: &str, labels: &str, snapshot: (Vec<(f64, u64)>, u64, f64)) {
    let (buckets, count, sum) = snapshot;
    for (le, n) in buckets {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
