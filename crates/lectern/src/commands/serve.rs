//! `lectern serve`: load the repository and answer V2 requests until stopped.

use crate::settings::{ServeArgs, ServeSettings};
use anyhow::Context;
use lectern_pipeline::Engine;
use lectern_runtime::{MetricsRegistry, Registry};
use lectern_server::{AppState, HttpSettings};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::path::Path;
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

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("invalid --log filter")?;
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    Ok(())
}

async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data)
        .with_context(|| format!("cannot create data folder {}", settings.data.display()))?;
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let address = listener.local_addr()?;
    let registry = Arc::new(Registry::from_folder(settings.models.clone(), Arc::new(MetricsRegistry::default())));
    let state = Arc::new(AppState {
        registry: registry.clone(),
        settings: HttpSettings { max_body_bytes: settings.max_body_bytes },
        ready: AtomicBool::new(false),
        pipelines: OnceLock::new(),
    });
    let app = lectern_server::router(state.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await
    });
    registry.load_all().await.context("cannot load the model repository")?;
    let engine = pipelines(settings.config.as_deref(), registry.clone())?;
    if engine.pipelines().next().is_some() {
        let names: Vec<&str> = engine.pipelines().map(|p| p.name.as_str()).collect();
        tracing::info!(pipelines = %names.join(", "), "pipelines ready");
    }
    let _ = state.pipelines.set(Arc::new(engine));
    state.ready.store(true, Ordering::Release);
    tracing::info!(%address, models = %settings.models.display(), "ready");
    println!("lectern listening on http://{address}");
    std::io::stdout().flush().ok();
    server.await.context("server task failed")?.context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// The pipelines of the config file, checked against the loaded models.
fn pipelines(config: Option<&Path>, registry: Arc<Registry>) -> anyhow::Result<Engine> {
    let Some(path) = config else { return Ok(Engine::build("", "(no config file)", Path::new("."), registry)?) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    Engine::build(&text, &path.display().to_string(), base, registry).context("invalid pipeline configuration")
}

async fn shutdown_signal() {
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
