//! `/`: what runs, in numbers, with links; and the compiled-in assets.

use crate::http::{ok, PageResult};
use crate::templates::Nav;
use crate::viewer::Viewer;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use lectern_server::AppState;
use std::sync::Arc;

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    nav: Nav,
    counts: Vec<(&'static str, &'static str, usize)>,
}

/// `GET /`
pub async fn page(State(state): State<Arc<AppState>>, viewer: Viewer) -> PageResult {
    let seen = |name: &str| crate::pages::projects::visible(&viewer, name);
    let models = state.manager.list().await?.iter().filter(|m| seen(&m.name)).count();
    let pipelines = state.pipelines.get().map_or(0, |p| p.pipelines().len());
    let datasets = state.manager.datasets().await?.iter().filter(|d| seen(&d.name)).count();
    let training = match state.projects {
        Some(_) => state.visible_training_jobs(&viewer.principal, None, u32::MAX).await?.len(),
        None => state.training.job_count().await? as usize,
    };
    let jobs = match state.jobs.get() {
        Some(jobs) => jobs.list().await?.len(),
        None => 0,
    };
    let counts = vec![
        ("Models", "/ui/models", models),
        ("Pipelines", "/ui/pipelines", pipelines),
        ("Datasets", "/ui/datasets", datasets),
        ("Training jobs", "/ui/training", training),
        ("Scheduled jobs", "/ui/jobs", jobs),
    ];
    ok(&Overview { nav: Nav::of(&viewer), counts })
}

/// `GET /ui`: the overview.
pub async fn to_overview() -> Redirect {
    Redirect::to("/")
}

const CSS: &str = include_str!("../../assets/lectern.css");
const JS: &str = include_str!("../../assets/lectern.js");

/// `GET /ui/assets/{file}`: the stylesheet and the script, compiled in.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "lectern.css" => (CSS, "text/css; charset=utf-8"),
        "lectern.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}
