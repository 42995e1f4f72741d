//! Scheduled jobs: their next runs, a job's history, run now, pause and resume.

use super::{Cell, Table};
use crate::http::{encode, ok, see_other, PageError, PageResult};
use crate::templates::Nav;
use crate::viewer::Viewer;
use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use lectern_jobs::Jobs;
use lectern_server::AppState;
use lectern_store::Role;
use std::sync::Arc;

/// Runs shown on a job's page.
const SHOWN_RUNS: u32 = 50;

fn jobs(state: &AppState) -> Result<&Arc<Jobs>, PageError> {
    state.jobs.get().ok_or_else(|| PageError::new(StatusCode::SERVICE_UNAVAILABLE, "scheduled jobs are starting"))
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    nav: Nav,
    t: Table,
}

fn schedule(job: &lectern_jobs::JobView) -> String {
    match (&job.cron, job.every) {
        (Some(cron), _) => format!("cron {cron} ({})", job.timezone.as_deref().unwrap_or("UTC")),
        (None, Some(ms)) => format!("every {}", super::duration(ms)),
        _ => "—".into(),
    }
}

/// `GET /ui/jobs`
pub async fn list(State(state): State<Arc<AppState>>, viewer: Viewer) -> PageResult {
    viewer.require(Role::Trainer)?;
    let mut t = Table::new(
        "jobs",
        &["Job", "Kind", "Schedule", "Next run", "Last run", "Enabled"],
        "No scheduled jobs. Add them under [jobs.NAME] in the config file or with POST /v1/jobs.",
    );
    t.key_attr = "job";
    for job in jobs(&state)?.list().await? {
        let last = job
            .last_run
            .as_ref()
            .map_or("never".to_string(), |r| format!("{} ({})", r.state, super::when(r.started_at_ms)));
        let enabled = if job.paused {
            "paused"
        } else if job.enabled {
            "yes"
        } else {
            "no"
        };
        t.rows.push(super::Row {
            key: job.name.clone(),
            cells: vec![
                Cell::link(job.name.clone(), format!("/ui/jobs/{}", encode(&job.name))),
                Cell::text(job.kind.clone()),
                Cell::text(schedule(&job)),
                Cell::text(super::maybe_when(job.next_run_at_ms)),
                Cell::text(last),
                Cell::text(enabled),
            ],
            ..super::Row::default()
        });
    }
    ok(&JobsPage { nav: Nav::of(&viewer), t })
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    nav: Nav,
    name: String,
    kind: String,
    schedule: String,
    next_run: String,
    paused: bool,
    running: bool,
    spec: String,
    runs: Table,
}

/// `GET /ui/jobs/{name}`
pub async fn detail(State(state): State<Arc<AppState>>, viewer: Viewer, Path(name): Path<String>) -> PageResult {
    viewer.require(Role::Trainer)?;
    let jobs = jobs(&state)?;
    let hide = |text: &str| super::projects::redact(&viewer, text);
    let job = jobs.get(&name).await?;
    let mut runs = Table::new(
        "runs",
        &["Started", "Trigger", "State", "Items", "Took", "Error", "Detail"],
        "This job has not run yet.",
    );
    for run in jobs.runs(&name, SHOWN_RUNS).await? {
        let took = run.finished_at_ms.map_or("—".to_string(), |f| super::duration(f - run.started_at_ms));
        runs.push(vec![
            Cell::text(super::when(run.started_at_ms)),
            Cell::text(run.trigger.clone()),
            Cell::text(run.state.clone()).class(super::training::state_class(&run.state)),
            Cell::text(run.items.to_string()),
            Cell::text(took),
            Cell::text(hide(run.error.as_deref().unwrap_or_default())),
            Cell::text(hide(run.detail.as_deref().unwrap_or_default())),
        ]);
    }
    let page = JobPage {
        nav: Nav::of(&viewer),
        kind: job.kind.clone(),
        schedule: schedule(&job),
        next_run: super::maybe_when(job.next_run_at_ms),
        paused: job.paused,
        running: job.running.is_some(),
        spec: hide(&serde_json::to_string_pretty(&job.spec).unwrap_or_default()),
        runs,
        name,
    };
    ok(&page)
}

/// `POST /ui/jobs/{name}/run`
pub async fn run_now(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(name): Path<String>,
    request: Request,
) -> PageResult {
    viewer.pressed(Role::Trainer, request).await?;
    jobs(&state)?.run_now(viewer.actor(), &name).await?;
    Ok(see_other(&format!("/ui/jobs/{}", encode(&name))))
}

/// `POST /ui/jobs/{name}/pause`
pub async fn pause(state: State<Arc<AppState>>, viewer: Viewer, name: Path<String>, request: Request) -> PageResult {
    set_paused(state, viewer, name, request, true).await
}

/// `POST /ui/jobs/{name}/resume`
pub async fn resume(state: State<Arc<AppState>>, viewer: Viewer, name: Path<String>, request: Request) -> PageResult {
    set_paused(state, viewer, name, request, false).await
}

async fn set_paused(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(name): Path<String>,
    request: Request,
    paused: bool,
) -> PageResult {
    viewer.pressed(Role::Trainer, request).await?;
    jobs(&state)?.pause(viewer.actor(), &name, paused).await?;
    Ok(see_other(&format!("/ui/jobs/{}", encode(&name))))
}
