//! A worker's model source: the definitions placed on it (from the bucket), with their
//! artifacts read from the object store and checked against the SHA-256 in the definition.

use crate::records::ModelSpec;
use lectern_core::ModelConfig;
use lectern_manage::{artifact_error, Objects};
use lectern_runtime::{ModelDefinition, ModelSource, SourceError, SourceFuture};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// The models placed on this worker.
pub struct PlacedSource {
    objects: Arc<Objects>,
    specs: RwLock<BTreeMap<String, ModelSpec>>,
}

impl PlacedSource {
    pub fn new(objects: Arc<Objects>) -> Self {
        PlacedSource { objects, specs: RwLock::new(BTreeMap::new()) }
    }

    /// Serves `spec` from now on (the next load reads it).
    pub fn set(&self, spec: ModelSpec) {
        self.specs.write().unwrap_or_else(|e| e.into_inner()).insert(spec.name.clone(), spec);
    }

    pub fn forget(&self, name: &str) {
        self.specs.write().unwrap_or_else(|e| e.into_inner()).remove(name);
    }

    fn spec(&self, name: &str) -> Option<ModelSpec> {
        self.specs.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    async fn read(&self, name: &str) -> Result<Option<ModelDefinition>, SourceError> {
        let Some(spec) = self.spec(name) else { return Ok(None) };
        let config = ModelConfig::parse(&spec.config, &format!("config of model '{name}'"))?;
        let mut versions = Vec::with_capacity(spec.versions.len());
        for v in &spec.versions {
            let bytes = self.objects.get_checked(&v.key, &v.sha256).await.map_err(artifact_error);
            if let Err(e) = &bytes {
                tracing::warn!(model = name, version = v.version, error = %e, "refusing to serve a version");
            }
            versions.push((v.version, bytes));
        }
        Ok(Some(ModelDefinition { config, labels: spec.labels, default_version: spec.default_version, versions }))
    }
}

impl ModelSource for PlacedSource {
    fn names(&self) -> SourceFuture<'_, Result<Vec<String>, SourceError>> {
        let names = self.specs.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        Box::pin(async move { Ok(names) })
    }

    fn definition<'a>(&'a self, name: &'a str) -> SourceFuture<'a, Result<Option<ModelDefinition>, SourceError>> {
        Box::pin(self.read(name))
    }

    /// The worker's record says how each load went; the gateways' store keeps its own record.
    fn loaded<'a>(&'a self, _name: &'a str, _outcomes: Vec<(u64, Result<(), String>)>) -> SourceFuture<'a, ()> {
        Box::pin(async {})
    }
}
