//! `lectern serve`: load the repository and answer V2 requests until stopped.

use crate::settings::{AuthConfig, ServeArgs, ServeSettings};
use anyhow::Context;
use lectern_core::ratelimit::{RateLimit, RateLimiter};
use lectern_manage::{Manager, Objects, StoreSource, Training, TrainingSettings};
use lectern_pipeline::Engine;
use lectern_runtime::{MetricsRegistry, Registry};
use lectern_server::auth::jwt::{OidcConfig, OidcVerifier};
use lectern_server::conn::Timeouts;
use lectern_server::gate::{AuthSettings, AuthState};
use lectern_server::{AppState, HttpSettings};
use lectern_store::Store;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Runs the server with the resolved settings.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = ServeSettings::resolve(args)?;
    init_logging(&settings.log)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(settings))
}

pub(crate) fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("invalid --log filter")?;
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    Ok(())
}

async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    let tls = settings.tls.as_ref().map(|t| crate::tls::load(&t.cert, &t.key)).transpose()?;
    let config = ConfigFile::read(settings.config.as_deref())?;
    let job_defs = lectern_jobs::parse_config(&config.text, &config.name)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let tls_on = tls.is_some();
    std::fs::create_dir_all(&settings.data)
        .with_context(|| format!("cannot create data folder {}", settings.data.display()))?;
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let address = listener.local_addr()?;
    let grpc_listener = match &settings.grpc_listen {
        Some(grpc) => Some(
            tokio::net::TcpListener::bind(grpc).await.with_context(|| format!("cannot listen for gRPC on {grpc}"))?,
        ),
        None => None,
    };
    let (manager, folder, source) = open_models(&settings).await?;
    let registry = manager.registry().clone();
    let cluster = match &settings.cluster {
        Some(cluster) => Some(join_cluster(cluster, &settings.objects, source, &registry).await?),
        None => None,
    };
    let auth = auth_state(&settings.auth, manager.store(), address).await?;
    let training = Training::new(
        manager.clone(),
        TrainingSettings {
            workers: settings.training_workers,
            program: std::env::current_exe().context("cannot find the lectern program for training jobs")?,
            work_dir: settings.data.join("training-jobs"),
        },
    );
    let collections = Arc::new(lectern_collections::Collections::new(manager.store().clone(), registry.clone()));
    let searcher: Arc<dyn lectern_pipeline::Searcher> = collections.clone();
    let proxy = Arc::new(proxy(&config).await?);
    let dashboard = dashboard(&config, &settings.auth)?;
    let state = Arc::new(AppState {
        registry: registry.clone(),
        manager: manager.clone(),
        training: training.clone(),
        collections,
        auth,
        settings: HttpSettings { max_body_bytes: settings.max_body_bytes, server_name: settings.server_name.clone() },
        ready: AtomicBool::new(false),
        pipelines: OnceLock::new(),
        jobs: OnceLock::new(),
        proxy,
        projects: dashboard.projects.clone(),
        cluster,
    });
    state.auth.set_secure(tls.is_some());
    let app = lectern_server::app_with(state.clone(), lectern_web::pages(dashboard, &state));
    let open_files = crate::listen::raise_open_files_limit();
    let max_connections =
        settings.max_connections.unwrap_or_else(|| crate::settings::default_max_connections(open_files));
    if let Some(limit) = open_files.filter(|&l| max_connections as u64 >= l) {
        tracing::warn!(max_connections, open_files = limit, "the connection cap is not below the open-files limit");
    }
    let limits = crate::listen::ConnectionLimits {
        timeouts: Timeouts { header_read: settings.header_read_timeout, idle: settings.idle_timeout },
        max_connections,
    };
    tracing::debug!(?limits, "connection limits");
    let grpc = match grpc_listener {
        Some(listener) => {
            let address = listener.local_addr()?;
            let grpc = lectern_grpc::GrpcSettings { max_message_bytes: settings.max_body_bytes, max_connections };
            let served = lectern_grpc::serve(listener, tls.clone(), state.clone(), grpc, shutdown_signal());
            Some((address, tokio::spawn(served)))
        }
        None => None,
    };
    let server = tokio::spawn(crate::listen::serve(listener, tls, app, limits, shutdown_signal()));
    if let Some(folder) = &folder {
        let imported = manager.import_folder(folder).await?;
        tracing::info!(models = imported, folder = %folder.display(), "imported the model folder");
    }
    registry.load_all().await.context("cannot load the models")?;
    let engine = Engine::build(&config.text, &config.name, &config.base, registry.clone())
        .context("invalid pipeline configuration")?;
    manager.serve_stored_pipelines(&engine).await.context("cannot read the stored pipelines")?;
    if !engine.pipelines().is_empty() {
        let names: Vec<String> = engine.pipelines().iter().map(|p| p.name.clone()).collect();
        tracing::info!(pipelines = %names.join(", "), "pipelines ready");
    }
    engine.set_searcher(searcher);
    let engine = Arc::new(engine);
    let _ = state.pipelines.set(engine.clone());
    training.start().await.context("cannot start the training jobs")?;
    let jobs = lectern_jobs::Jobs::new(lectern_jobs::Deps { manager: manager.clone(), training, pipelines: engine })?;
    jobs.sync_config(&job_defs).await.context("cannot store the config file's jobs")?;
    jobs.start();
    let _ = state.jobs.set(jobs.clone());
    match manager.store().changes().await {
        Ok(Some(changes)) => {
            tokio::spawn(lectern_server::peers::follow_peers(state.clone(), changes));
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot hear other gateways' changes; they reach this one on restart"),
    }
    state.ready.store(true, Ordering::Release);
    tracing::info!(%address, %scheme, models = %settings.models.display(), "ready");
    if let Some((grpc_address, _)) = &grpc {
        // before the HTTP line, which tells a watcher that the server is up
        tracing::info!(address = %grpc_address, tls = tls_on, "gRPC ready");
        println!("lectern gRPC listening on {grpc_address}");
    }
    println!("lectern listening on {scheme}://{address}");
    std::io::stdout().flush().ok();
    let served = server.await;
    if let Some((_, grpc)) = grpc {
        grpc.await.context("gRPC server task failed")?.context("gRPC server failed")?;
    }
    jobs.stop().await;
    served.context("server task failed")?.context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// The store, the object store, and the registry they feed; plus the model folder to import.
async fn open_models(settings: &ServeSettings) -> anyhow::Result<(Arc<Manager>, Option<PathBuf>, Arc<StoreSource>)> {
    // The URL may hold a password: errors name the engine, not the URL.
    let store = Store::open(&settings.database).await.context("cannot open the database")?;
    tracing::info!(engine = ?store.kind(), "database ready");
    let objects = Arc::new(Objects::open(&settings.objects).context("cannot open the object store")?);
    objects.check().await.context("cannot use the object store")?;
    let source = Arc::new(StoreSource::new(store.clone(), objects.clone()));
    let registry = Arc::new(Registry::new(source.clone(), Arc::new(MetricsRegistry::default())));
    if let Some(bytes) = settings.memory_budget {
        anyhow::ensure!(
            settings.cluster.is_none(),
            "--memory-budget applies to the models a server loads itself; in a cluster the workers \
             load them (give each `lectern worker` its --memory)"
        );
        tracing::info!(bytes, "memory budget");
        registry.set_memory_budget(bytes);
    }
    registry.set_load_wait(settings.model_load_wait);
    let folder = settings.models.is_dir().then(|| settings.models.clone());
    if folder.is_none() {
        tracing::warn!(folder = %settings.models.display(), "the model folder does not exist; serving the models in the store");
    }
    let manager = Manager::new(store, objects, registry, folder.clone(), settings.max_upload_bytes);
    Ok((Arc::new(manager), folder, source))
}

/// Joins the cluster as a gateway (waiting for NATS): the registry's models are then placed
/// on workers. Workers started without `--objects` use the object store announced here.
async fn join_cluster(
    cluster: &crate::settings::ClusterSettings,
    objects: &str,
    source: Arc<StoreSource>,
    registry: &Arc<Registry>,
) -> anyhow::Result<Arc<lectern_cluster::Gateway>> {
    let address = lectern_cluster::ClusterAddress::new(cluster.nats.clone(), cluster.name.clone())?;
    let settings = lectern_cluster::GatewaySettings {
        address,
        request_timeout: cluster.request_timeout,
        retries: cluster.retries,
        objects: announced_objects(objects),
        load_wait: std::time::Duration::from_secs(30),
    };
    Ok(lectern_cluster::Gateway::start(settings, source, registry).await?)
}

/// The object store's address as a worker elsewhere can use it: a local folder made absolute.
fn announced_objects(objects: &str) -> Option<String> {
    if objects.starts_with("s3://") {
        return Some(objects.to_string());
    }
    let path = Path::new(objects.strip_prefix("file://").unwrap_or(objects));
    let absolute = std::path::absolute(path).ok()?;
    Some(format!("file://{}", absolute.display()))
}

/// The access gate. Without keys or an issuer, only a loopback address is served (without
/// authentication, said in the log); elsewhere that needs `--auth none`.
async fn auth_state(config: &AuthConfig, store: &Store, address: SocketAddr) -> anyhow::Result<AuthState> {
    if config.disabled {
        tracing::warn!(%address, "authentication is off (--auth none): anyone who reaches this address can change models");
        return Ok(AuthState::disabled());
    }
    let keys_live = store.has_keys().await.context("cannot read the API keys")?;
    let oidc = match &config.oidc {
        Some(o) => {
            let mut c = OidcConfig::new(o.issuer.clone(), o.audience.clone());
            c.role_claim = o.role_claim.clone();
            c.jwks_url = o.jwks_url.clone();
            Some(OidcVerifier::new(c).context("invalid OIDC settings")?)
        }
        None => None,
    };
    if !keys_live && oidc.is_none() {
        anyhow::ensure!(
            address.ip().is_loopback(),
            "refusing to serve {address} without authentication: create an API key first \
             (`lectern keys create --name admin --role admin --data DIR`), configure an OIDC issuer, \
             or pass --auth none explicitly"
        );
        tracing::warn!(%address, "no API keys and no OIDC issuer: serving WITHOUT authentication on this loopback address; \
            creating the first API key turns authentication on");
    }
    let limiter = match config.rate_limit {
        Some((rate, burst)) => Some(RateLimiter::new(RateLimit::new(rate, burst)?)?),
        None => None,
    };
    let settings = AuthSettings { disabled: false, oidc, protect_inference: !config.open_inference, limiter };
    Ok(AuthState::new(settings, keys_live))
}

/// The config file, read once: its `[llm]`/`[pipelines]`, `[jobs]` and `[proxy]` tables are each
/// read by their own crate from this text.
struct ConfigFile {
    text: String,
    /// How messages name it.
    name: String,
    /// Its folder: paths in it are relative to this.
    base: PathBuf,
}

impl ConfigFile {
    /// The file at `path`; without one, an empty config.
    fn read(path: Option<&Path>) -> anyhow::Result<ConfigFile> {
        let Some(path) = path else {
            return Ok(ConfigFile { text: String::new(), name: "(no config file)".into(), base: PathBuf::from(".") });
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(ConfigFile { text, name: path.display().to_string(), base })
    }
}

/// The dashboard's settings: the config file's `[dashboard]` and the OIDC client.
fn dashboard(config: &ConfigFile, auth: &AuthConfig) -> anyhow::Result<lectern_web::DashboardConfig> {
    let mut dashboard = lectern_web::DashboardConfig::from_config(&config.text, &config.name)
        .map_err(|e| anyhow::anyhow!("invalid dashboard configuration: {e}"))?;
    if let Some(client_id) = auth.oidc.as_ref().and_then(|o| o.client_id.clone()) {
        let client_secret = std::env::var("LECTERN_OIDC_CLIENT_SECRET").ok().filter(|s| !s.is_empty());
        dashboard.oidc_client = Some(lectern_web::OidcClient { client_id, client_secret });
    }
    Ok(dashboard)
}

/// The caching proxy's upstreams of the config file (their secret headers read now).
async fn proxy(config: &ConfigFile) -> anyhow::Result<lectern_proxy::Proxy> {
    let proxy = lectern_proxy::Proxy::from_config(&config.text, &config.name);
    let proxy = proxy.context("invalid proxy configuration")?;
    for upstream in proxy.list().await {
        tracing::info!(upstream = %upstream.name, url = %upstream.url, access = %upstream.access, "proxy upstream");
    }
    Ok(proxy)
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down");
}
