//! The store as the registry's source: which versions to serve, their artifacts (checksummed)
//! and the record of each load.

use crate::objects::{ArtifactError, Objects};
use lectern_core::{Coded, ErrorCode, ModelConfig};
use lectern_runtime::{ModelDefinition, ModelSource, SourceError, SourceFuture};
use lectern_store::{Store, StoreError, VersionRecord, VersionState};
use std::sync::Arc;

/// A model's definition in the store, with the versions to serve (not their bytes).
#[derive(Debug, Clone)]
pub struct ModelPlan {
    /// The `config.toml` text as stored.
    pub config_text: String,
    pub config: ModelConfig,
    pub labels: Option<Vec<String>>,
    pub default_version: Option<u64>,
    pub versions: Vec<VersionRecord>,
}

/// Models registered in the store, artifacts in the object store.
pub struct StoreSource {
    store: Store,
    objects: Arc<Objects>,
}

impl StoreSource {
    pub fn new(store: Store, objects: Arc<Objects>) -> Self {
        StoreSource { store, objects }
    }

    /// A model as the store defines it, without reading its artifacts: what a cluster gateway
    /// hands to the workers, which fetch the artifacts themselves.
    pub async fn plan(&self, name: &str) -> Result<Option<ModelPlan>, SourceError> {
        let Some(model) = self.store.model(name).await.map_err(store_error)? else { return Ok(None) };
        let config = ModelConfig::parse(&model.config, &format!("config of model '{name}'"))?;
        let labels = model.labels.as_deref().map(|text| text.lines().map(|l| l.trim().to_string()).collect());
        let versions = self.store.versions(name).await.map_err(store_error)?;
        let selected = select(&config, &versions, model.default_version).into_iter().cloned().collect();
        Ok(Some(ModelPlan {
            config_text: model.config,
            config,
            labels,
            default_version: model.default_version,
            versions: selected,
        }))
    }

    /// Every model's name.
    pub async fn names(&self) -> Result<Vec<String>, SourceError> {
        let models = self.store.models().await.map_err(store_error)?;
        Ok(models.into_iter().map(|m| m.name).collect())
    }

    async fn read(&self, name: &str) -> Result<Option<ModelDefinition>, SourceError> {
        let Some(model) = self.store.model(name).await.map_err(store_error)? else { return Ok(None) };
        let config = ModelConfig::parse(&model.config, &format!("config of model '{name}'"))?;
        let labels = model.labels.as_deref().map(|text| text.lines().map(|l| l.trim().to_string()).collect());
        let versions = self.store.versions(name).await.map_err(store_error)?;
        let selected = select(&config, &versions, model.default_version);
        let mut artifacts = Vec::with_capacity(selected.len());
        for record in selected {
            let bytes = self.objects.get_checked(&record.object_key, &record.sha256).await;
            artifacts.push((record.version, bytes.map_err(artifact_error)));
        }
        Ok(Some(ModelDefinition { config, labels, default_version: model.default_version, versions: artifacts }))
    }
}

fn store_error(e: StoreError) -> SourceError {
    SourceError::other(e.code(), e)
}

/// Why an artifact cannot be loaded, as the registry records it.
pub fn artifact_error(e: ArtifactError) -> SourceError {
    let code = match e {
        ArtifactError::Read { .. } => ErrorCode::ObjectStoreUnavailable,
        ArtifactError::Corrupt { .. } => ErrorCode::ModelLoadFailed,
    };
    SourceError::other(code, e)
}

/// The versions to serve: the config's policy over the versions not known to fail (over all
/// of them when every one failed before), plus the default version. The registry reports each
/// load (`loaded`) and asks again when a version failed, so a selected version that fails gives
/// way to the next healthy ones.
fn select<'a>(config: &ModelConfig, versions: &'a [VersionRecord], default: Option<u64>) -> Vec<&'a VersionRecord> {
    let healthy: Vec<u64> =
        versions.iter().filter(|v| v.state != VersionState::Unavailable).map(|v| v.version).collect();
    let candidates = if healthy.is_empty() { versions.iter().map(|v| v.version).collect() } else { healthy };
    let mut chosen = config.version_policy().select(&candidates);
    if let Some(d) = default {
        if versions.iter().any(|v| v.version == d) && !chosen.contains(&d) {
            chosen.push(d);
        }
    }
    versions.iter().filter(|v| chosen.contains(&v.version)).collect()
}

impl ModelSource for StoreSource {
    fn names(&self) -> SourceFuture<'_, Result<Vec<String>, SourceError>> {
        Box::pin(StoreSource::names(self))
    }

    fn definition<'a>(&'a self, name: &'a str) -> SourceFuture<'a, Result<Option<ModelDefinition>, SourceError>> {
        Box::pin(self.read(name))
    }

    fn loaded<'a>(&'a self, name: &'a str, outcomes: Vec<(u64, Result<(), String>)>) -> SourceFuture<'a, ()> {
        Box::pin(async move {
            for (version, outcome) in outcomes {
                let (state, reason) = match &outcome {
                    Ok(()) => (VersionState::Ready, ""),
                    Err(reason) => (VersionState::Unavailable, reason.as_str()),
                };
                if let Err(e) = self.store.set_version_state(name, version, state, reason).await {
                    tracing::warn!(model = name, version, error = %e, "cannot record the state of a version");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: u64, state: VersionState) -> VersionRecord {
        VersionRecord {
            model: "m".into(),
            version,
            sha256: String::new(),
            size: 0,
            object_key: String::new(),
            state,
            reason: String::new(),
            from_folder: false,
            created_at_ms: 0,
        }
    }

    fn chosen(config: &str, versions: &[VersionRecord], default: Option<u64>) -> Vec<u64> {
        let config = ModelConfig::parse(config, "c").unwrap();
        select(&config, versions, default).iter().map(|v| v.version).collect()
    }

    #[test]
    fn known_bad_versions_are_skipped_and_the_default_is_always_served() {
        use VersionState::*;
        let versions = [record(1, Ready), record(2, Ready), record(3, Unavailable)];
        assert_eq!(chosen("", &versions, None), vec![2]);
        assert_eq!(chosen("", &versions, Some(1)), vec![1, 2]);
        assert_eq!(chosen("latest = 5", &versions, None), vec![1, 2]);
        assert_eq!(
            chosen("", &[record(1, Unavailable), record(2, Unavailable)], None),
            vec![2],
            "all bad: try the newest again"
        );
        assert_eq!(chosen("versions = [1]", &versions, Some(2)), vec![1, 2]);
    }
}
