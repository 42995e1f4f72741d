//! What the management API shows of a model: the store's record joined with what is serving.

use lectern_runtime::{Registry, VersionState as Serving};
use lectern_store::{ModelRecord, VersionRecord};
use serde::Serialize;
use serde_json::Value;

/// A model as the API describes it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Model))]
pub struct ModelView {
    pub name: String,
    /// The version unversioned requests use; `null`: the newest ready one.
    pub default_version: Option<u64>,
    /// The model's config (the keys of its `config.toml`).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: Value,
    pub labels: Option<Vec<String>>,
    pub versions: Vec<VersionView>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A version as the API describes it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Version))]
pub struct VersionView {
    pub version: u64,
    /// PENDING (never loaded), READY or UNAVAILABLE: the outcome of its last load.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^(PENDING|READY|UNAVAILABLE)$"))]
    pub state: &'static str,
    /// Why it is unavailable.
    pub reason: String,
    /// True while it answers requests.
    pub serving: bool,
    pub sha256: String,
    pub size: u64,
    pub created_at_ms: i64,
}

impl ModelView {
    pub fn new(model: ModelRecord, versions: Vec<VersionRecord>, registry: &Registry) -> Self {
        let serving: Vec<u64> = registry
            .versions(&model.name)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, s)| matches!(s, Serving::Ready(_)))
            .map(|(v, _)| v)
            .collect();
        let config = toml::from_str::<toml::Table>(&model.config)
            .ok()
            .map(|mut t| {
                // Configs imported before labels were kept out of the stored config still name
                // the folder's labels file; labels are shown as `labels`, never inside `config`.
                t.remove("labels");
                t
            })
            .and_then(|t| serde_json::to_value(t).ok())
            .unwrap_or_else(|| Value::String(model.config.clone()));
        ModelView {
            name: model.name,
            default_version: model.default_version,
            config,
            labels: model.labels.map(|l| l.lines().map(str::to_string).collect()),
            versions: versions
                .into_iter()
                .map(|v| VersionView {
                    version: v.version,
                    state: v.state.as_str(),
                    reason: v.reason,
                    serving: serving.contains(&v.version),
                    sha256: v.sha256,
                    size: v.size,
                    created_at_ms: v.created_at_ms,
                })
                .collect(),
            created_at_ms: model.created_at_ms,
            updated_at_ms: model.updated_at_ms,
        }
    }
}
