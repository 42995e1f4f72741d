//! Lectern's dashboard: pages served by the binary beside the API. Server-rendered HTML from
//! templates compiled in (askama: every value escaped), charts drawn as SVG on the server, one
//! stylesheet and one small script of our own for live updates. Sign-in with an API key or an
//! OIDC issuer (authorization code + PKCE) gives a session cookie; every form carries a CSRF
//! token. Pages reach the domain through the same services as the API (the server's
//! [`AppState`]), and its errors through the API's one error table.

pub mod charts;
mod config;
mod http;
mod pages;
mod results;
mod signin;
mod stats;
mod templates;
mod viewer;

pub use config::{DashboardConfig, OidcClient};

use axum::http::Method;
use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Router};
use lectern_server::{AppState, Pages};
use std::sync::Arc;

/// The dashboard's own state, beside the server's.
pub struct Web {
    pub config: DashboardConfig,
    /// Pipeline results over uploaded CSV files, kept for their download.
    results: results::Results,
    /// Request counts sampled for the models page's live rate and p99.
    stats: stats::Sampler,
    /// The OIDC issuer's endpoints, once read.
    discovery: tokio::sync::Mutex<Option<signin::Endpoints>>,
    http: reqwest::Client,
}

type Handler = MethodRouter<Arc<AppState>>;

/// Every page: its path, method and handler. The router and the gate's list of page routes
/// are both derived from it.
fn table() -> Vec<(&'static str, Method, Handler)> {
    use pages::{admin, datasets, jobs, models, overview, pipelines, projects, training};
    vec![
        ("/", Method::GET, get(overview::page)),
        ("/ui", Method::GET, get(overview::to_overview)),
        ("/ui/", Method::GET, get(overview::to_overview)),
        ("/ui/assets/{file}", Method::GET, get(overview::asset)),
        ("/ui/login", Method::GET, get(signin::login_page)),
        ("/ui/login", Method::POST, post(signin::login)),
        ("/ui/logout", Method::POST, post(signin::logout)),
        ("/ui/oidc/start", Method::GET, get(signin::oidc_start)),
        ("/ui/oidc/callback", Method::GET, get(signin::oidc_callback)),
        ("/ui/stats", Method::GET, get(models::stats)),
        ("/ui/models", Method::GET, get(models::list)),
        ("/ui/models/{name}", Method::GET, get(models::detail)),
        ("/ui/models/{name}/try", Method::POST, post(models::try_it)),
        ("/ui/pipelines", Method::GET, get(pipelines::list)),
        ("/ui/pipelines/{name}", Method::GET, get(pipelines::detail)),
        ("/ui/pipelines/{name}/try", Method::POST, post(pipelines::try_it)),
        ("/ui/pipelines/{name}/csv", Method::POST, post(pipelines::csv)),
        ("/ui/pipelines/{name}/results/{id}", Method::GET, get(pipelines::results)),
        ("/ui/datasets", Method::GET, get(datasets::list)),
        ("/ui/datasets", Method::POST, post(datasets::upload)),
        ("/ui/datasets/{name}", Method::GET, get(datasets::detail)),
        ("/ui/training", Method::GET, get(training::list)),
        ("/ui/training", Method::POST, post(training::submit)),
        ("/ui/training/{id}", Method::GET, get(training::detail)),
        ("/ui/training/{id}/status", Method::GET, get(training::status)),
        ("/ui/training/{id}/{picture}", Method::GET, get(training::picture)),
        ("/ui/jobs", Method::GET, get(jobs::list)),
        ("/ui/jobs/{name}", Method::GET, get(jobs::detail)),
        ("/ui/jobs/{name}/run", Method::POST, post(jobs::run_now)),
        ("/ui/jobs/{name}/pause", Method::POST, post(jobs::pause)),
        ("/ui/jobs/{name}/resume", Method::POST, post(jobs::resume)),
        ("/ui/audit", Method::GET, get(admin::audit)),
        ("/ui/keys", Method::GET, get(admin::keys)),
        ("/ui/keys", Method::POST, post(admin::create_key)),
        ("/ui/keys/{id}/revoke", Method::POST, post(admin::revoke_key)),
        ("/ui/projects", Method::GET, get(projects::list)),
        ("/ui/projects", Method::POST, post(projects::create)),
        ("/ui/projects/{name}", Method::GET, get(projects::detail)),
        ("/ui/projects/{name}/train", Method::POST, post(projects::train)),
        ("/ui/projects/{name}/try", Method::POST, post(projects::try_it)),
    ]
}

/// The dashboard's pages for the server (`None` when the config turns them off).
pub fn pages(config: DashboardConfig, state: &Arc<AppState>) -> Option<Pages> {
    if !config.enabled {
        return None;
    }
    let web = Arc::new(Web {
        config,
        results: results::Results::new(),
        stats: stats::Sampler::default(),
        discovery: tokio::sync::Mutex::new(None),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("an HTTP client with rustls"),
    });
    let table = table();
    let routes = table.iter().map(|(path, method, _)| (*path, method.clone())).collect();
    let mut router = Router::new();
    for (path, _, handler) in table {
        router = router.route(path, handler);
    }
    let router =
        router.layer(axum::middleware::from_fn_with_state(state.clone(), http::page_layer)).layer(Extension(web));
    Some(Pages { router, routes })
}
