//! Projects (ML for Kids): with `[dashboard] projects = "P"`, a project is the dataset
//! `P<user>-<name>` and the model trained from it, private to the user whose name it carries.
//! A child enters labelled examples, trains a decision tree, sees it drawn and tries it.

use super::{Cell, Table};
use crate::http::{encode, html, read_form, see_other, PageError, PageResult, Posted};
use crate::templates::Nav;
use crate::viewer::Viewer;
use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use bytes::Bytes;
use lectern_manage::JobView;
use lectern_server::AppState;
use lectern_store::Role;
use serde_json::json;
use std::sync::Arc;

/// Whether `viewer` may see the dataset or model `name`: anything outside the projects'
/// prefix; inside it, only the viewer's own projects (admins see all).
pub fn visible(viewer: &Viewer, name: &str) -> bool {
    viewer.principal.may_see(viewer.web.config.projects.as_deref(), name)
}

/// `text` with other users' project names (`<prefix>...` names the viewer may not see) written
/// as `(a project)`, for what non-admins read of jobs' definitions and histories.
pub fn redact(viewer: &Viewer, text: &str) -> String {
    match viewer.web.config.projects.as_deref() {
        Some(prefix) => redact_names(text, prefix, |name| visible(viewer, name)),
        None => text.to_string(),
    }
}

/// `text` with the names starting with `prefix` that `shown` refuses written as `(a project)`.
fn redact_names(text: &str, prefix: &str, shown: impl Fn(&str) -> bool) -> String {
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let starts_word = rest[..at].chars().next_back().is_none_or(|c| !name_char(c));
        let end = rest[at..].find(|c: char| !name_char(c)).map_or(rest.len(), |n| at + n);
        out.push_str(&rest[..at]);
        let name = &rest[at..end];
        out.push_str(if starts_word && !shown(name) { "(a project)" } else { name });
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn own_prefix(viewer: &Viewer, prefix: &str) -> String {
    viewer.principal.own_projects(prefix)
}

fn prefix(viewer: &Viewer) -> Result<String, PageError> {
    viewer
        .web
        .config
        .projects
        .clone()
        .ok_or_else(|| PageError::not_found("projects are not turned on ([dashboard] projects)"))
}

/// A project's short name: letters, digits and `-`, 1 to 40.
fn check_name(name: &str) -> Result<String, PageError> {
    let ok = !name.is_empty() && name.len() <= 40 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        return Err(PageError::bad("a project name is 1 to 40 letters, digits or '-'"));
    }
    Ok(name.to_ascii_lowercase())
}

#[derive(Template)]
#[template(path = "projects.html")]
struct ProjectsPage {
    nav: Nav,
    t: Table,
    error: Option<String>,
    name: String,
    rows: String,
}

/// `GET /ui/projects`
pub async fn list(State(state): State<Arc<AppState>>, viewer: Viewer) -> PageResult {
    projects_page(&state, &viewer, StatusCode::OK, None, String::new(), String::new()).await
}

async fn projects_page(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    error: Option<String>,
    name: String,
    rows: String,
) -> PageResult {
    let prefix = prefix(viewer)?;
    let mine = own_prefix(viewer, &prefix);
    let mut t =
        Table::new("projects", &["Project", "Examples", "Created by", "Created"], "No projects yet: start one below.");
    for d in state.manager.datasets().await? {
        if !d.name.starts_with(&prefix) || !visible(viewer, &d.name) {
            continue;
        }
        let (short, href) = match d.name.strip_prefix(&mine) {
            Some(short) => (short.to_string(), format!("/ui/projects/{}", encode(short))),
            None => (d.name.clone(), format!("/ui/datasets/{}", encode(&d.name))),
        };
        t.push(vec![
            Cell::link(short, href),
            Cell::text(d.rows.to_string()),
            Cell::text(d.created_by.clone()),
            Cell::text(super::when(d.created_at_ms)),
        ]);
    }
    Ok(html(status, &ProjectsPage { nav: Nav::of(viewer), t, error, name, rows }))
}

/// `POST /ui/projects`: a new project (or new examples for one) from the textarea or a file.
pub async fn create(State(state): State<Arc<AppState>>, viewer: Viewer, request: Request) -> PageResult {
    viewer.require(Role::Trainer)?;
    let prefix = prefix(&viewer)?;
    let form = read_form(&viewer.csrf, request, super::datasets::upload_limit(&state)).await?;
    let (name, rows) = (form.text("name").to_string(), form.text("rows").to_string());
    match store_project(&state, &viewer, &prefix, &form).await {
        Ok(short) => Ok(see_other(&format!("/ui/projects/{}", encode(&short)))),
        Err(e) => projects_page(&state, &viewer, e.status, Some(e.message), name, rows).await,
    }
}

async fn store_project(state: &AppState, viewer: &Viewer, prefix: &str, form: &Posted) -> Result<String, PageError> {
    let short = check_name(form.text("name"))?;
    let bytes = match (form.file("file"), form.text("rows")) {
        (Some(file), _) => file.clone(),
        (None, "") => return Err(PageError::bad("type the examples or choose a CSV file")),
        (None, rows) => Bytes::from(format!("{}\n", rows.replace("\r\n", "\n"))),
    };
    let dataset = format!("{}{short}", own_prefix(viewer, prefix));
    super::datasets::store_bytes(state, viewer, &dataset, bytes).await?;
    Ok(short)
}

/// One feature field of the try-it form.
struct Feature {
    name: String,
    value: String,
}

#[derive(Template)]
#[template(path = "project.html")]
struct ProjectPage {
    nav: Nav,
    name: String,
    label: String,
    examples: Table,
    job: Option<JobView>,
    running: bool,
    accuracy: Option<String>,
    features: Vec<Feature>,
    prediction: Option<String>,
    error: Option<String>,
}

/// The project's dataset name, if the viewer has that project.
async fn project(
    state: &AppState,
    viewer: &Viewer,
    short: &str,
) -> Result<(String, lectern_train::Dataset), PageError> {
    let prefix = prefix(viewer)?;
    let dataset = format!("{}{}", own_prefix(viewer, &prefix), short.to_ascii_lowercase());
    let missing = || PageError::not_found(format!("you have no project named '{short}'"));
    match state.manager.read_dataset(&dataset).await {
        Ok(data) => Ok((dataset, data)),
        Err(lectern_manage::ManageError::DatasetNotFound(_)) => Err(missing()),
        Err(e) => Err(e.into()),
    }
}

/// `GET /ui/projects/{name}`
pub async fn detail(State(state): State<Arc<AppState>>, viewer: Viewer, Path(name): Path<String>) -> PageResult {
    project_page(&state, &viewer, &name, &Posted::default(), StatusCode::OK, None, None).await
}

async fn project_page(
    state: &AppState,
    viewer: &Viewer,
    short: &str,
    form: &Posted,
    status: StatusCode,
    prediction: Option<String>,
    error: Option<String>,
) -> PageResult {
    let (dataset, data) = project(state, viewer, short).await?;
    let all: Vec<usize> = (0..data.rows).collect();
    let examples = super::datasets::rows_table(&data, &all);
    let job = state.training.jobs(Some(&dataset), 1).await?.into_iter().next();
    let accuracy = job.as_ref().and_then(|j| j.metrics.as_ref()).and_then(lectern_manage::headline_metric).map(
        |(metric, value)| {
            if metric == "accuracy" {
                format!("{:.0}%", value * 100.0)
            } else {
                format!("{metric} {value:.3}")
            }
        },
    );
    let names: Vec<String> = data.columns.iter().map(|c| c.schema.name.clone()).collect();
    let label = names.last().cloned().unwrap_or_default();
    let features = names[..names.len().saturating_sub(1)]
        .iter()
        .map(|n| Feature { name: n.clone(), value: form.text(n).to_string() })
        .collect();
    let running = job.as_ref().is_some_and(|j| matches!(j.state.as_str(), "queued" | "running"));
    let page = ProjectPage {
        nav: Nav::of(viewer),
        name: short.to_string(),
        label,
        examples,
        job,
        running,
        accuracy,
        features,
        prediction,
        error,
    };
    Ok(html(status, &page))
}

/// `POST /ui/projects/{name}/train`: a decision tree predicting the last column.
pub async fn train(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(name): Path<String>,
    request: Request,
) -> PageResult {
    viewer.pressed(Role::Trainer, request).await?;
    let (dataset, data) = project(&state, &viewer, &name).await?;
    let Some(target) = data.columns.last().map(|c| c.schema.name.clone()) else {
        return Err(PageError::bad("the project has no columns"));
    };
    match super::training::submit_training(&state, &viewer, &dataset, &target, &dataset, "decision_tree").await {
        Ok(_) => Ok(see_other(&format!("/ui/projects/{}", encode(&name)))),
        Err(e) => project_page(&state, &viewer, &name, &Posted::default(), e.status, None, Some(e.message)).await,
    }
}

/// `POST /ui/projects/{name}/try`: the trained model's answer for the typed numbers.
pub async fn try_it(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(name): Path<String>,
    request: Request,
) -> PageResult {
    let form = read_form(&viewer.csrf, request, crate::http::SMALL_FORM).await?;
    let (dataset, data) = project(&state, &viewer, &name).await?;
    match predict(&state, &dataset, &data, &form).await {
        Ok(label) => project_page(&state, &viewer, &name, &form, StatusCode::OK, Some(label), None).await,
        Err(e) => project_page(&state, &viewer, &name, &form, e.status, None, Some(e.message)).await,
    }
}

async fn predict(
    state: &AppState,
    model: &str,
    data: &lectern_train::Dataset,
    form: &Posted,
) -> Result<String, PageError> {
    let loaded = state.registry.model(model, None).await.map_err(|e| match e {
        lectern_runtime::RuntimeError::ModelNotFound(_) => {
            PageError::bad("train the project first: it has no model yet")
        }
        other => other.into(),
    })?;
    let features = &data.columns[..data.columns.len().saturating_sub(1)];
    let mut values = Vec::with_capacity(features.len());
    for column in features {
        let name = &column.schema.name;
        let text = form.text(name);
        let x = text.parse::<f64>().ok().filter(|x| x.is_finite());
        values.push(x.ok_or_else(|| PageError::bad(format!("'{name}' needs a number")))?);
    }
    let input = loaded.signature.inputs.first().ok_or_else(|| PageError::bad("the model takes no input"))?;
    let body =
        json!({"inputs": [{"name": input.name, "datatype": "FP32", "shape": [1, values.len()], "data": values}]});
    let answer = super::models::infer_json(&loaded, &body).await?;
    let label = answer["outputs"]
        .as_array()
        .and_then(|outs| outs.iter().find(|o| o["name"] == "output_label"))
        .and_then(|o| o["data"].get(0).cloned())
        .ok_or_else(|| PageError::bad("the model answered no label"))?;
    Ok(match (label.as_u64(), loaded.labels.as_deref()) {
        (Some(i), Some(labels)) if (i as usize) < labels.len() => labels[i as usize].clone(),
        _ => label.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_users_projects_are_redacted() {
        let mine = |name: &str| name.starts_with("kids-ann-");
        let text = "deleted 3 datasets (kids-ann-pets, kids-bob-zoo, xkids-bob-a) \"kids-bob\"";
        assert_eq!(
            redact_names(text, "kids-", mine),
            "deleted 3 datasets (kids-ann-pets, (a project), xkids-bob-a) \"(a project)\""
        );
        assert_eq!(redact_names("kids-", "kids-", mine), "(a project)");
        assert_eq!(redact_names("nothing here", "kids-", mine), "nothing here");
    }
}
