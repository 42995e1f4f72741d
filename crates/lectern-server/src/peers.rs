//! Several gateways on one PostgreSQL database: what another gateway changes (models and
//! their versions, pipelines, API keys) is served here as soon as its transaction commits,
//! heard through the store's change notifications. What every request reads from the database
//! anyway (datasets, jobs, collections' generations, sessions) needs nothing more.

use crate::AppState;
use lectern_store::{Change, Changes};
use std::sync::Arc;

/// Follows the other gateways' changes for as long as the process runs.
pub async fn follow_peers(state: Arc<AppState>, mut changes: Changes) {
    // Keys are followed at once; models and pipelines in order, on their own task (a model's
    // load may take a while, and must not hold a revocation back).
    let (queue, mut queued) = tokio::sync::mpsc::unbounded_channel::<Change>();
    let follower = state.clone();
    tokio::spawn(async move {
        while let Some(change) = queued.recv().await {
            match change {
                Change::Made { action, target } => apply(&follower, &action, &target).await,
                Change::Missed => catch_up(&follower).await,
            }
        }
    });
    loop {
        let change = changes.next().await;
        match &change {
            Change::Made { action, target } => {
                tracing::debug!(%action, %target, "change made by another gateway");
                if action.starts_with("key.") {
                    keys_changed(&state).await;
                    continue;
                }
            }
            Change::Missed => {
                tracing::info!("change notifications may have been missed; reading models, pipelines and keys again");
                keys_changed(&state).await;
            }
        }
        if queue.send(change).is_err() {
            return;
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
            let stored: Vec<String> = models.into_iter().map(|m| m.name).collect();
            // Models deleted meanwhile, then every stored one as it is now.
            let mut served: Vec<String> = state.registry.index().into_iter().map(|r| r.name).collect();
            served.dedup();
            for name in served.iter().filter(|n| !stored.contains(n)) {
                state.registry.remove(name).await;
            }
            for name in &stored {
                state.manager.follow_model(name).await;
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
