//! Lectern's HTTP layer: the V2 (Open Inference Protocol) routes, the repository extension,
//! Prometheus metrics and request ids, over the runtime.

pub mod auth;
pub mod conn;
mod encoding;
mod error;
pub mod gate;
pub mod peers;
mod principal;
mod request_id;
mod routes;

pub use error::{status_of, ApiError};
pub use principal::Principal;
pub use routes::{inference_metrics, v2};

use axum::Router;
use lectern_manage::Manager;
use lectern_pipeline::Engine;
use lectern_runtime::Registry;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use tracing::Instrument;

/// How the HTTP layer behaves (not what it serves).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The name `GET /v2` answers (`lectern`, or `triton` for clients that check it).
    pub server_name: String,
}

/// What every handler can reach.
pub struct AppState {
    pub registry: Arc<Registry>,
    /// Model management over the store (the registry's source).
    pub manager: Arc<Manager>,
    /// Datasets' training jobs.
    pub training: Arc<lectern_manage::Training>,
    /// Collections of texts searched by meaning.
    pub collections: Arc<lectern_collections::Collections>,
    /// Who may do what.
    pub auth: gate::AuthState,
    pub settings: HttpSettings,
    /// Set once the start-up load of the repository has finished.
    pub ready: AtomicBool,
    /// The pipelines of the config file, set once the models they name are loaded.
    pub pipelines: OnceLock<Arc<Engine>>,
    /// Scheduled jobs, set once the pipelines they may run are ready.
    pub jobs: OnceLock<Arc<lectern_jobs::Jobs>>,
    /// The upstreams of the caching proxy (`/proxy/{name}/...`).
    pub proxy: Arc<lectern_proxy::Proxy>,
    /// `[dashboard] projects`: datasets and models named with this prefix are private to the
    /// user their name carries (see [`Principal::may_see`]).
    pub projects: Option<String>,
    /// The cluster this server is a gateway of (`--nats`): its models are served by workers.
    pub cluster: Option<Arc<lectern_cluster::Gateway>>,
}

impl AppState {
    /// The caller of a route the gate may let through unchecked (`client` routes: open with
    /// `--open-inference`): without checks in force, `local`; an unchecked caller while checks
    /// apply is an anonymous client, who sees no one's projects.
    pub fn caller(&self, who: Option<axum::Extension<Principal>>) -> Principal {
        match who {
            Some(axum::Extension(who)) => who,
            None if !self.auth.enforced() => Principal::local(),
            None => Principal { actor: "anonymous".into(), role: lectern_store::Role::Client },
        }
    }

    /// Whether `who` may see the dataset or model `name` (projects are private).
    pub fn may_see(&self, who: &Principal, name: &str) -> bool {
        who.may_see(self.projects.as_deref(), name)
    }

    /// A dataset `who` may not see answers as one that does not exist (for names in a body:
    /// the gate already does this for names in the path).
    pub(crate) fn check_dataset(&self, who: &Principal, name: &str) -> Result<(), ApiError> {
        if self.may_see(who, name) {
            return Ok(());
        }
        Err(lectern_manage::ManageError::DatasetNotFound(name.to_string()).into())
    }

    /// `who` may not make (or write) a dataset, model or job target named in another user's
    /// projects: 403.
    pub fn check_owner(&self, who: &Principal, name: &str) -> Result<(), ApiError> {
        if self.may_see(who, name) {
            return Ok(());
        }
        let prefix = self.projects.as_deref().unwrap_or("");
        let message = format!(
            "'{name}': names starting with '{prefix}' belong to their owner's projects; yours start with '{}'",
            who.own_projects(prefix)
        );
        Err(ApiError::new(axum::http::StatusCode::FORBIDDEN, message))
    }

    /// The newest `limit` training jobs (of `model`, if given) `who` may see: other users'
    /// projects are left out before the limit applies.
    pub async fn visible_training_jobs(
        &self,
        who: &Principal,
        model: Option<&str>,
        limit: u32,
    ) -> Result<Vec<lectern_manage::JobView>, ApiError> {
        let fetch = if self.projects.is_some() { 100_000 } else { limit };
        let mut jobs = self.training.jobs(model, fetch).await?;
        jobs.retain(|job| self.may_see(who, &job.dataset));
        jobs.truncate(limit as usize);
        Ok(jobs)
    }
}

/// The whole HTTP application: every request gets its id and span, passes the access gate,
/// then the route table. One service in front of the router (rather than one middleware
/// layer per route) so that the hot path pays for one boxed future per request.
#[derive(Clone)]
pub struct App {
    router: Router,
    state: Arc<AppState>,
    /// Who may call each route: from the same table as the router.
    access: Arc<gate::AccessTable>,
}

/// Routes served beside the API (the dashboard's pages): their router, and the paths and
/// methods the gate lets through to them unchecked, because they check their own sessions.
pub struct Pages {
    pub router: Router<Arc<AppState>>,
    pub routes: Vec<(&'static str, axum::http::Method)>,
}

/// Builds the application over its state.
pub fn app(state: Arc<AppState>) -> App {
    app_with(state, None)
}

/// Builds the application over its state, with pages beside the API.
pub fn app_with(state: Arc<AppState>, pages: Option<Pages>) -> App {
    let table = routes::table();
    let proxy = state.proxy.clone();
    let upstreams: gate::UpstreamAccess = Box::new(move |name| proxy.access(name).map(gate::Access::from));
    let (page_router, page_routes) = pages.map(|p| (p.router, p.routes)).unwrap_or_default();
    let api_routes = table.iter().map(|r| (r.path.as_str(), r.method.clone(), r.access));
    let open_pages = page_routes.iter().map(|(path, method)| (*path, method.clone(), gate::Access::Open));
    let access = Arc::new(gate::AccessTable::new(api_routes.chain(open_pages)).with_upstreams(upstreams));
    let router = routes::router(&table).merge(page_router);
    App { router: router.with_state(state.clone()), state, access }
}

/// The OpenAPI document of every route (what `GET /openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::openapi_document()
}

impl<B> tower_service::Service<axum::http::Request<B>> for App
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let request = request.map(axum::body::Body::new);
        let (id, span) = request_id::assign(&request);
        let (mut router, state, access) = (self.router.clone(), self.state.clone(), self.access.clone());
        Box::pin(
            async move {
                let mut response = match gate::admit(&state, &access, request).await {
                    Ok(request) => match router.call(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                    Err(refused) => axum::response::IntoResponse::into_response(refused),
                };
                response.headers_mut().insert(request_id::REQUEST_ID, id);
                Ok(response)
            }
            .instrument(span),
        )
    }
}
