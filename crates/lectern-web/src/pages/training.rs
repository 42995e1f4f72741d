//! Training: the jobs, the form that uploads and trains, a job's live progress, metrics and
//! pictures.

use super::{Cell, Table};
use crate::http::{encode, html, json, ok, read_form, PageError, PageResult, Posted};
use crate::templates::Nav;
use crate::viewer::Viewer;
use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use lectern_manage::{JobView, TrainingRequest};
use lectern_server::AppState;
use lectern_store::Role;
use serde_json::{json, Value};
use std::sync::Arc;

const ALGORITHMS: [&str; 5] = ["decision_tree", "random_forest", "logistic_regression", "linear_regression", "knn"];

#[derive(Template)]
#[template(path = "training.html")]
struct TrainingPage {
    nav: Nav,
    t: Table,
    datasets: Vec<String>,
    algorithms: [&'static str; 5],
    error: Option<String>,
    form: Values,
}

/// What the form held, shown again after an error.
#[derive(Default)]
struct Values {
    dataset: String,
    target: String,
    model: String,
    algorithm: String,
}

/// `GET /ui/training`
pub async fn list(State(state): State<Arc<AppState>>, viewer: Viewer) -> PageResult {
    training_page(&state, &viewer, StatusCode::OK, None, Values::default()).await
}

async fn training_page(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    error: Option<String>,
    form: Values,
) -> PageResult {
    let mut t = Table::new(
        "training-jobs",
        &["Job", "State", "Progress", "Dataset", "Model", "Algorithm", "Created by", "Created"],
        "No training jobs yet.",
    );
    for job in state.visible_training_jobs(&viewer.principal, None, 100).await? {
        t.push(vec![
            Cell::link(job.id.clone(), format!("/ui/training/{}", encode(&job.id))),
            Cell::text(job.state.clone()).class(state_class(&job.state)),
            Cell::text(format!("{}%", job.percent)),
            Cell::text(job.dataset.clone()),
            Cell::text(job.model.clone()),
            Cell::text(job.algorithm.clone()),
            Cell::text(job.created_by.clone()),
            Cell::text(super::when(job.created_at_ms)),
        ]);
    }
    let datasets = state
        .manager
        .datasets()
        .await?
        .into_iter()
        .map(|d| d.name)
        .filter(|name| crate::pages::projects::visible(viewer, name))
        .collect();
    let page = TrainingPage { nav: Nav::of(viewer), t, datasets, algorithms: ALGORITHMS, error, form };
    Ok(html(status, &page))
}

pub fn state_class(state: &str) -> &'static str {
    match state {
        "succeeded" => "state-succeeded",
        "failed" | "cancelled" => "state-failed",
        _ => "",
    }
}

/// `POST /ui/training`: uploads the file (if any) as the dataset, then starts the job.
pub async fn submit(State(state): State<Arc<AppState>>, viewer: Viewer, request: Request) -> PageResult {
    viewer.require(Role::Trainer)?;
    let form = read_form(&viewer.csrf, request, super::datasets::upload_limit(&state)).await?;
    let values = Values {
        dataset: form.text("dataset").into(),
        target: form.text("target").into(),
        model: form.text("model").into(),
        algorithm: form.text("algorithm").into(),
    };
    match start(&state, &viewer, &form).await {
        Ok(job) => Ok(crate::http::see_other(&format!("/ui/training/{}", encode(&job.id)))),
        Err(e) => training_page(&state, &viewer, e.status, Some(e.message), values).await,
    }
}

async fn start(state: &AppState, viewer: &Viewer, form: &Posted) -> Result<JobView, PageError> {
    let dataset = form.text("dataset");
    for (field, value) in [("dataset", dataset), ("target", form.text("target")), ("model", form.text("model"))] {
        if value.is_empty() {
            return Err(PageError::bad(format!("fill in the {field}")));
        }
    }
    state.check_owner(&viewer.principal, form.text("model"))?;
    if form.file("file").is_some() {
        super::datasets::store_upload(state, viewer, dataset, form).await?;
    } else if !crate::pages::projects::visible(viewer, dataset) {
        return Err(PageError::not_found(format!("no dataset named '{dataset}'")));
    }
    let algorithm = match form.text("algorithm") {
        "" => "decision_tree",
        other => other,
    };
    submit_training(state, viewer, dataset, form.text("target"), form.text("model"), algorithm).await
}

/// Starts a training job as `viewer`.
pub async fn submit_training(
    state: &AppState,
    viewer: &Viewer,
    dataset: &str,
    target: &str,
    model: &str,
    algorithm: &str,
) -> Result<JobView, PageError> {
    let request: TrainingRequest =
        serde_json::from_value(json!({"dataset": dataset, "target": target, "model": model, "algorithm": algorithm}))
            .map_err(|e| PageError::bad(e.to_string()))?;
    Ok(state.training.submit(viewer.actor(), request).await?)
}

#[derive(Template)]
#[template(path = "training_job.html")]
struct JobPage {
    nav: Nav,
    job: JobView,
    running: bool,
    metrics: Table,
}

/// The job, if the viewer may see it.
pub async fn visible_job(state: &AppState, viewer: &Viewer, id: &str) -> Result<JobView, PageError> {
    let job = state.training.job(id).await?;
    if !crate::pages::projects::visible(viewer, &job.dataset) {
        return Err(PageError::not_found(format!("no training job '{id}'")));
    }
    Ok(job)
}

/// `GET /ui/training/{id}`
pub async fn detail(State(state): State<Arc<AppState>>, viewer: Viewer, Path(id): Path<String>) -> PageResult {
    let job = visible_job(&state, &viewer, &id).await?;
    let running = matches!(job.state.as_str(), "queued" | "running");
    let metrics = metrics_table(job.metrics.as_ref());
    ok(&JobPage { nav: Nav::of(&viewer), job, running, metrics })
}

/// The metrics of a job as rows of (metric, value); nested objects flattened with dots.
pub fn metrics_table(metrics: Option<&Value>) -> Table {
    let mut t = Table::new("metrics", &["Metric", "Value"], "No metrics yet.");
    fn walk(t: &mut Table, prefix: &str, value: &Value) {
        match value {
            Value::Object(fields) => {
                for (k, v) in fields {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(t, &key, v);
                }
            }
            Value::Number(n) => {
                let text =
                    n.as_f64()
                        .map_or(n.to_string(), |x| if x.fract() == 0.0 { n.to_string() } else { format!("{x:.4}") });
                t.push(vec![Cell::text(prefix), Cell::text(text)]);
            }
            Value::Array(items) if items.len() > 12 => {
                t.push(vec![Cell::text(prefix), Cell::text(format!("{} values", items.len()))])
            }
            other => t.push(vec![Cell::text(prefix), Cell::text(other.to_string())]),
        }
    }
    if let Some(m) = metrics {
        walk(&mut t, "", m);
    }
    t
}

/// `GET /ui/training/{id}/status`: the job as the API shows it, for the script.
pub async fn status(State(state): State<Arc<AppState>>, viewer: Viewer, Path(id): Path<String>) -> Response {
    match visible_job(&state, &viewer, &id).await {
        Ok(job) => json(StatusCode::OK, &serde_json::to_value(&job).unwrap_or(Value::Null)),
        Err(e) => json(e.status, &json!({"error": e.message})),
    }
}

/// `GET /ui/training/{id}/{picture}.svg`: a picture, as an image (never inlined in a page).
pub async fn picture(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path((id, picture)): Path<(String, String)>,
) -> PageResult {
    visible_job(&state, &viewer, &id).await?;
    let name = picture.strip_suffix(".svg").ok_or_else(|| PageError::not_found("pictures end in .svg"))?;
    let svg = state.training.picture(&id, name).await?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}
