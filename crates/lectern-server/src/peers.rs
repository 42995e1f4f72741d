//! Several gateways on one PostgreSQL database: what another gateway changes (models and
//! their versions, pipelines, API keys) is served here as soon as its transaction commits,
//! heard through the store's change notifications. What every request reads from the database
//! anyway (datasets, jobs, collections' generations, sessions) needs nothing more.

use crate::AppState;
use lectern_store::{Change, Changes};
use std::sync::Arc;

/// Follows the other gateways' changes for as long as the process runs.
pub async fn follow_peers(state: Arc<AppState>, mut changes: Changes) {
    loop {
        match changes.next().await {
            Change::Made { action, target } => {
                tracing::debug!(%action, %target, "change made by another gateway");
                apply(&state, &action, &target).await;
            }
            Change::Missed => {
                tracing::info!("change notifications may have been missed; reading models, pipelines and keys again");
                catch_up(&state).await;
            }
        }
    }
}

async fn apply(state: &AppState, action: &str, target: &str) {
    let kind = action.split_once('.').map_or(action, |(kind, _)| kind);
    match (kind, action) {
        (_, "model.unload") => {
            let _ = state.registry.unload(target).await;
        }
        ("model" | "version", _) => state.manager.follow_model(target).await,
        ("pipeline", _) => {
            if let Some(engine) = state.pipelines.get() {
                state.manager.follow_pipeline(engine, target).await;
            }
        }
        ("key", _) => keys_changed(state).await,
        _ => {}
    }
}

async fn keys_changed(state: &AppState) {
    match state.manager.store().has_keys().await {
        Ok(live) => state.auth.keys_changed(live),
        // Keep checking keys: the cache is emptied, so revoked ones are refused.
        Err(_) => state.auth.keys_changed(true),
    }
}

async fn catch_up(state: &AppState) {
    match state.manager.store().models().await {
        Ok(models) => {
            for model in models {
                state.manager.follow_model(&model.name).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the models again"),
    }
    if let Some(engine) = state.pipelines.get() {
        if let Err(e) = state.manager.serve_stored_pipelines(engine).await {
            tracing::warn!(error = %e, "cannot read the pipelines again");
        }
    }
    keys_changed(state).await;
}
