//! The registry of loaded models, filled from a [`ModelSource`] (a repository folder or the
//! store). Loading a model builds every selected version first and swaps them in at once, so
//! the versions already serving answer until the new ones are ready, and a failed load leaves
//! them serving.
//!
//! Models may load on demand: a lazy one (its config's `lazy`) is not loaded at start-up, and
//! under a memory budget the least recently used unpinned models are unloaded to make room for
//! a load; the next request for such a model loads it again ([`Registry::model`]).

use crate::metrics::MetricsRegistry;
use crate::model::LoadedModel;
use crate::source::{ModelDefinition, ModelSource, SourceError, SourceFuture};
use crate::worker::{SchedulerConfig, Worker, WorkerError};
use crate::RuntimeError;
use lectern_core::config::DEFAULT_MAX_BATCH_SIZE;
use lectern_core::{ConfigChange, ModelConfig};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

/// What a model's first load is expected to take at its peak, in multiples of its files' size
/// (the engine parses, converts and optimises the graph, holding several copies of the
/// weights for a while); later loads expect what the previous one took.
const FIRST_LOAD_FACTOR: u64 = 4;
/// How long a load waits for the versions unloaded to make room for it to stop.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// How long a request waits, by default, for a model that loads on demand; then it is told
/// to retry (the load goes on).
pub const ON_DEMAND_WAIT: Duration = Duration::from_secs(30);

/// Why a lazy model serves nothing yet.
const LAZY: &str = "lazy: the first request loads it";
/// Why a model the memory budget unloaded serves nothing now.
const EVICTED: &str = "unloaded to stay within the memory budget: the next request loads it again";

/// The state of one version of a model.
#[derive(Clone)]
pub enum VersionState {
    Ready(Arc<LoadedModel>),
    Unavailable(String),
}

/// A model known to the registry, with the versions it serves or failed to serve.
#[derive(Clone, Default)]
struct ModelEntry {
    versions: BTreeMap<u64, VersionState>,
    /// Why nothing is served, when `versions` is empty.
    reason: Option<String>,
    /// The version unversioned requests use, when set and ready.
    default_version: Option<u64>,
    /// Served by other processes, none of which serves it now: requests are told to retry.
    retry_later: bool,
    /// Serves nothing now, and the next request loads it (lazy, or unloaded by the budget).
    on_demand: bool,
    /// Never unloaded to make room (its config's `pinned`).
    pinned: bool,
    /// What its versions' loads took at their peak, when the budget last unloaded it (the
    /// estimate of its next load).
    last_load_bytes: u64,
    /// The config override it was loaded with (a load on demand applies it again).
    change: Option<ConfigChange>,
}

impl ModelEntry {
    /// A model that loads on its first request.
    fn lazy(definition: &ModelDefinition) -> Self {
        ModelEntry {
            reason: Some(LAZY.into()),
            default_version: definition.default_version,
            on_demand: true,
            pinned: definition.config.pinned,
            ..Default::default()
        }
    }

    /// Bytes its versions loaded here hold.
    fn resident_bytes(&self) -> u64 {
        self.versions
            .values()
            .map(|s| match s {
                VersionState::Ready(m) => m.resident_bytes,
                VersionState::Unavailable(_) => 0,
            })
            .sum()
    }

    /// What the loads of its versions took at their peak.
    fn load_bytes(&self) -> u64 {
        self.versions
            .values()
            .map(|s| match s {
                VersionState::Ready(m) => m.load_peak_bytes,
                VersionState::Unavailable(_) => 0,
            })
            .sum()
    }

    /// When a request last used one of its versions; `None` when none is loaded here.
    fn last_used(&self) -> Option<u64> {
        self.versions
            .values()
            .filter_map(|s| match s {
                VersionState::Ready(m) if m.resident_bytes > 0 => Some(m.last_used()),
                _ => None,
            })
            .max()
    }
}

/// Loads and budget unloads of one model, since start-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LoadCounts {
    loads: u64,
    evictions: u64,
}

/// One model's part of [`MemoryReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMemory {
    pub name: String,
    /// Times it was loaded here (at start-up, on request, or on demand).
    pub loads: u64,
    /// Times the memory budget unloaded it.
    pub evictions: u64,
    /// Bytes its loaded versions hold now.
    pub resident_bytes: u64,
}

/// The memory budget and what each model holds of it (for metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryReport {
    /// The budget, when set.
    pub budget: Option<u64>,
    pub models: Vec<ModelMemory>,
}

/// Places models on other processes instead of loading them here (a cluster gateway): the
/// registry then holds what those processes serve, set with [`Registry::set_served_elsewhere`].
pub trait Placer: Send + Sync {
    /// The model is new or its definition changed: have it served as it is now defined.
    fn place<'a>(&'a self, name: &'a str) -> SourceFuture<'a, Result<(), RuntimeError>>;
    /// The model was deleted or unloaded: stop serving it.
    fn withdraw<'a>(&'a self, name: &'a str) -> SourceFuture<'a, ()>;
    /// The source holds exactly `names` (at start-up): stop serving any other model.
    fn keep_only<'a>(&'a self, _names: &'a [String]) -> SourceFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// One row of the repository index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    pub name: String,
    pub version: Option<u64>,
    pub ready: bool,
    pub reason: String,
}

/// The loaded models of one source.
pub struct Registry {
    source: Arc<dyn ModelSource>,
    models: RwLock<BTreeMap<String, ModelEntry>>,
    metrics: Arc<MetricsRegistry>,
    /// Serialises loads and unloads; inference never takes it.
    changes: tokio::sync::Mutex<()>,
    /// When set, models are served elsewhere and placed through it.
    placer: OnceLock<Arc<dyn Placer>>,
    /// Bytes the loaded models may hold together, when set.
    budget: OnceLock<u64>,
    /// How long a request waits for an on-demand load (default [`ON_DEMAND_WAIT`]).
    load_wait: OnceLock<Duration>,
    counts: Mutex<BTreeMap<String, LoadCounts>>,
    /// A version's resident bytes from its file's size and the growth of the process's
    /// resident memory across its load.
    measure: fn(u64, u64) -> u64,
    /// A first load's expected peak in multiples of the files' size ([`FIRST_LOAD_FACTOR`]).
    first_load_factor: u64,
    /// Whether making room also looks at the process's resident memory (off in unit tests,
    /// whose sizes are exact).
    watch_rss: bool,
    /// The process's resident memory with no model loaded: taken before the first load under
    /// the budget, plus each engine's one-time set-up.
    base_rss: Mutex<Option<u64>>,
}

/// The larger of a version's file size and the process's growth across its load: concurrent
/// requests make the growth noisy, and the file is a floor.
fn file_or_growth(file: u64, grown: u64) -> u64 {
    file.max(grown)
}

impl Registry {
    /// A registry over `source`; nothing is loaded yet.
    pub fn new(source: Arc<dyn ModelSource>, metrics: Arc<MetricsRegistry>) -> Self {
        Registry {
            source,
            models: RwLock::new(BTreeMap::new()),
            metrics,
            changes: tokio::sync::Mutex::new(()),
            placer: OnceLock::new(),
            budget: OnceLock::new(),
            load_wait: OnceLock::new(),
            counts: Mutex::default(),
            measure: file_or_growth,
            first_load_factor: FIRST_LOAD_FACTOR,
            watch_rss: true,
            base_rss: Mutex::new(None),
        }
    }

    /// From now on, loaded models hold at most `bytes` together: a load first unloads the least
    /// recently used unpinned models, which load again on their next request.
    pub fn set_memory_budget(&self, bytes: u64) {
        let _ = self.budget.set(bytes);
    }

    /// How long a request waits for a model that loads on demand before it is told to retry.
    pub fn set_load_wait(&self, wait: Duration) {
        let _ = self.load_wait.set(wait);
    }

    /// The budget, and each model's loads, unloads by the budget and resident bytes.
    pub fn memory(&self) -> MemoryReport {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let models = self
            .read()
            .iter()
            .map(|(name, entry)| {
                let c = counts.get(name).copied().unwrap_or_default();
                ModelMemory {
                    name: name.clone(),
                    loads: c.loads,
                    evictions: c.evictions,
                    resident_bytes: entry.resident_bytes(),
                }
            })
            .collect();
        MemoryReport { budget: self.budget.get().copied(), models }
    }

    /// A registry over a repository folder laid out as Triton's.
    pub fn from_folder(root: std::path::PathBuf, metrics: Arc<MetricsRegistry>) -> Self {
        Self::new(Arc::new(crate::source::FolderSource::new(root)), metrics)
    }

    /// The metrics of every model version.
    pub fn metrics(&self) -> &Arc<MetricsRegistry> {
        &self.metrics
    }

    /// From now on, models are served elsewhere: loads, unloads and removals go to `placer`.
    pub fn serve_elsewhere(&self, placer: Arc<dyn Placer>) {
        let _ = self.placer.set(placer);
    }

    /// Whether models are served by other processes (a cluster gateway).
    pub fn serves_elsewhere(&self) -> bool {
        self.placer.get().is_some()
    }

    /// Sets what other processes serve of a model: `versions` (ready ones hold a
    /// [`LoadedModel::remote`]), or, when none, why (`reason`); requests then get
    /// [`RuntimeError::NoReplica`] until some process serves it.
    pub fn set_served_elsewhere(
        &self,
        name: &str,
        versions: BTreeMap<u64, VersionState>,
        default_version: Option<u64>,
        reason: Option<String>,
    ) {
        let retry_later = !versions.values().any(|s| matches!(s, VersionState::Ready(_)));
        let entry = ModelEntry { versions, reason, default_version, retry_later, ..Default::default() };
        self.write().insert(name.to_string(), entry);
    }

    /// Forgets a model served elsewhere whose definition was withdrawn (by another gateway).
    /// An entry unloaded or made unavailable here stays as it is.
    pub fn forget_served_elsewhere(&self, name: &str) {
        let mut models = self.write();
        let elsewhere = models.get(name).is_some_and(|e| {
            e.retry_later || e.versions.values().any(|s| matches!(s, VersionState::Ready(m) if m.is_remote()))
        });
        if elsewhere {
            models.remove(name);
        }
    }

    /// Loads every model of the source, keeping whatever loads and recording why the rest did not.
    pub async fn load_all(self: &Arc<Self>) -> Result<(), RuntimeError> {
        let _guard = self.changes.lock().await;
        let names = self.source.names().await?;
        if let Some(placer) = self.placer.get() {
            placer.keep_only(&names).await;
            for name in names {
                if let Err(e) = placer.place(&name).await {
                    tracing::warn!(model = %name, error = %e, "cannot place the model");
                }
            }
            return Ok(());
        }
        for name in names {
            let definition = self.source.definition(&name).await;
            if let Ok(Some(definition)) = &definition {
                // a model this build or machine cannot run (lazy or not) stops the start-up
                for bytes in definition.versions.iter().filter_map(|(_, bytes)| bytes.as_ref().ok()) {
                    lectern_backends::check_available(&definition.config.engine, bytes)
                        .map_err(|e| RuntimeError::LoadFailed(name.clone(), e.to_string()))?;
                }
            }
            match definition {
                Ok(Some(definition)) if definition.config.lazy && !definition.versions.is_empty() => {
                    self.write().insert(name, ModelEntry::lazy(&definition));
                }
                Ok(Some(definition)) => {
                    // a failure is in the model's entry (and logged)
                    let _ = self.install(&name, definition, None).await;
                }
                Ok(None) => continue,
                Err(e) => {
                    let entry = ModelEntry { reason: Some(e.to_string()), ..Default::default() };
                    log_entry(&name, &entry);
                    self.write().insert(name, entry);
                }
            }
        }
        Ok(())
    }

    /// (Re)loads one model from the source. All selected versions must load; otherwise the
    /// versions already serving keep serving and the error says why.
    pub async fn load(self: &Arc<Self>, name: &str) -> Result<(), RuntimeError> {
        self.load_changed(name, None).await
    }

    /// [`Self::load`] with `change` applied to the model's config (until it is loaded again).
    pub async fn load_changed(self: &Arc<Self>, name: &str, change: Option<&ConfigChange>) -> Result<(), RuntimeError> {
        self.load_with(name, change, false).await
    }

    /// Follows a change of the model in the source: loads it again, except a lazy model that
    /// serves nothing now, which stays to be loaded by its first request.
    pub async fn refresh(self: &Arc<Self>, name: &str) -> Result<(), RuntimeError> {
        self.load_with(name, None, true).await
    }

    async fn load_with(
        self: &Arc<Self>,
        name: &str,
        change: Option<&ConfigChange>,
        lazy_stays: bool,
    ) -> Result<(), RuntimeError> {
        let _guard = self.changes.lock().await;
        if let Some(placer) = self.placer.get() {
            if change.is_some() {
                return Err(RuntimeError::BadRequest(
                    "a config override cannot be loaded in a cluster: change the model's config".into(),
                ));
            }
            return placer.place(name).await;
        }
        let definition = self.definition(name).await?;
        if lazy_stays && self.stays_on_demand(name, &definition) {
            return Ok(());
        }
        self.install(name, definition, change).await
    }

    /// After a change: a model serving nothing that is lazy or loads on demand (the budget
    /// unloaded it, or its load on demand failed) stays to be loaded by its next request; true
    /// when it does. The change ends a config override.
    fn stays_on_demand(&self, name: &str, definition: &ModelDefinition) -> bool {
        let mut models = self.write();
        let current = models.get(name);
        if current.is_some_and(serves) || !(definition.config.lazy || current.is_some_and(|e| e.on_demand)) {
            return false;
        }
        let mut entry = ModelEntry::lazy(definition);
        if let Some(current) = current {
            entry.last_load_bytes = current.last_load_bytes;
            if current.on_demand && !definition.config.lazy {
                entry.reason = current.reason.clone();
            }
        }
        models.insert(name.to_string(), entry);
        true
    }

    async fn definition(&self, name: &str) -> Result<ModelDefinition, RuntimeError> {
        match self.source.definition(name).await {
            Ok(Some(d)) => Ok(d),
            Ok(None) => Err(RuntimeError::ModelNotFound(name.to_string())),
            Err(source) => Err(RuntimeError::SourceFailed { model: name.to_string(), source }),
        }
    }

    /// Loads the selected versions of `definition` and serves them (called with `changes`
    /// held). Under a memory budget, room is made first; a model that cannot fit is refused.
    async fn install(
        self: &Arc<Self>,
        name: &str,
        definition: ModelDefinition,
        change: Option<&ConfigChange>,
    ) -> Result<(), RuntimeError> {
        let pinned = definition.config.pinned;
        if let Err(reason) = self.make_room(name, self.estimate(name, &definition)).await {
            self.refuse(name, &reason);
            return Err(RuntimeError::LoadFailed(name.to_string(), reason));
        }
        let mut entry = self.load_selected(name, definition, change).await;
        entry.pinned = pinned;
        entry.change = change.cloned();
        let failure = entry_failure(&entry);
        {
            let mut models = self.write();
            match &failure {
                Some(reason) if models.get(name).is_some_and(serves) => {
                    tracing::warn!(model = name, %reason, "load failed; previous versions keep serving");
                }
                // A model serving nothing takes the outcome: the versions that loaded in place
                // of the failed ones serve, and the failed ones are listed with why.
                _ => {
                    if let Some(previous) = models.get(name) {
                        // a load on demand that failed is tried again by the next request
                        entry.on_demand = failure.is_some() && previous.on_demand;
                        entry.last_load_bytes = previous.last_load_bytes;
                    }
                    log_entry(name, &entry);
                    if serves(&entry) {
                        self.count(name, |c| c.loads += 1);
                    }
                    models.insert(name.to_string(), entry);
                }
            }
        }
        if let Err(reason) = self.make_room(name, 0).await {
            tracing::warn!(model = name, %reason, "the loaded models hold more than the memory budget");
        }
        match failure {
            Some(reason) => Err(RuntimeError::LoadFailed(name.to_string(), reason)),
            None => Ok(()),
        }
    }

    /// Records why a model could not be loaded, unless it still serves.
    fn refuse(&self, name: &str, reason: &str) {
        tracing::warn!(model = name, %reason, "not loaded");
        let mut models = self.write();
        let entry = models.entry(name.to_string()).or_default();
        if !serves(entry) {
            entry.versions.clear();
            entry.reason = Some(reason.to_string());
        }
    }

    /// Bytes a load of the model is expected to need at its peak (its files read, and what the
    /// engine holds while it loads): what its previous load took, or [`FIRST_LOAD_FACTOR`] times
    /// its files' size.
    fn estimate(&self, name: &str, definition: &ModelDefinition) -> u64 {
        let files: u64 = definition.versions.iter().filter_map(|(_, b)| b.as_ref().ok()).map(|b| b.len() as u64).sum();
        match self.read().get(name).map_or(0, |e| e.last_load_bytes.max(e.load_bytes())) {
            0 => files.saturating_mul(self.first_load_factor),
            last => last.max(files),
        }
    }

    /// Under a memory budget: unloads the least recently used unpinned models (other than
    /// `name`), waiting for each to stop, until `need` more bytes fit, counting the larger of
    /// what the loaded models hold and how much the process grew over its base. For a load
    /// (`need` > 0), nothing is unloaded when it could not fit even then (the pinned models and
    /// `name` hold too much). With nothing left to unload, growth that is not the models'
    /// (connections, caches) does not refuse a load that fits.
    async fn make_room(&self, name: &str, need: u64) -> Result<(), String> {
        let Some(&budget) = self.budget.get() else { return Ok(()) };
        let kept: u64 = {
            let models = self.read();
            models.iter().filter(|(n, e)| *n == name || e.pinned).map(|(_, e)| e.resident_bytes()).sum()
        };
        if need > 0 && kept.saturating_add(need) > budget {
            return Err(format!(
                "model '{name}' needs about {}, and the memory budget of {} leaves {} beside the pinned models",
                size_text(need),
                size_text(budget),
                size_text(budget.saturating_sub(kept))
            ));
        }
        loop {
            let (held, victim) = {
                let models = self.read();
                let held: u64 = models.values().map(ModelEntry::resident_bytes).sum();
                let victim = models
                    .iter()
                    .filter(|(n, e)| *n != name && !e.pinned)
                    .filter_map(|(n, e)| e.last_used().map(|t| (t, n.clone())))
                    .min()
                    .map(|(_, n)| n);
                (held, victim)
            };
            let used = held.max(self.growth().await.unwrap_or(0));
            if used.saturating_add(need) <= budget {
                return Ok(());
            }
            match victim {
                Some(victim) => wait_stopped(self.evict(&victim)).await,
                None if held.saturating_add(need) <= budget => return Ok(()),
                None => {
                    return Err(format!(
                        "the loaded models hold {} of a budget of {}",
                        size_text(held),
                        size_text(budget)
                    ))
                }
            }
        }
    }

    /// How much the process's resident memory grew over its base (taken now when not yet),
    /// after the freed memory is handed back; `None` when not watched or unknown.
    async fn growth(&self) -> Option<u64> {
        if !self.watch_rss {
            return None;
        }
        let rss = tokio::task::spawn_blocking(crate::memory::trimmed_resident_bytes).await.ok().flatten()?;
        let base = *self.base_rss.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(rss);
        Some(rss.saturating_sub(base))
    }

    /// Unloads a model to make room (its next request loads it again); its versions that were
    /// loaded.
    fn evict(&self, name: &str) -> Vec<Arc<LoadedModel>> {
        let (bytes, versions) = {
            let mut models = self.write();
            let Some(entry) = models.get_mut(name) else { return Vec::new() };
            let bytes = entry.resident_bytes();
            entry.last_load_bytes = entry.load_bytes();
            entry.on_demand = true;
            entry.reason = Some(EVICTED.into());
            (bytes, std::mem::take(&mut entry.versions))
        };
        self.count(name, |c| c.evictions += 1);
        tracing::info!(model = name, bytes, "unloaded to stay within the memory budget");
        // in-flight requests keep their version; its threads stop (and give the memory back)
        // when the last one ends
        versions
            .into_values()
            .filter_map(|s| match s {
                VersionState::Ready(m) => Some(m),
                VersionState::Unavailable(_) => None,
            })
            .collect()
    }

    fn count(&self, name: &str, add: impl FnOnce(&mut LoadCounts)) {
        add(self.counts.lock().unwrap_or_else(|e| e.into_inner()).entry(name.to_string()).or_default());
    }

    /// The model version to serve a request, loading the model first when it loads on demand
    /// (lazy, or unloaded by the memory budget): the request waits for the load up to the
    /// load wait, then gets [`RuntimeError::Loading`] while the load goes on. Marks the version
    /// used.
    pub async fn model(self: &Arc<Self>, name: &str, version: Option<u64>) -> Result<Arc<LoadedModel>, RuntimeError> {
        let found = match self.resolve(name, version) {
            Err(_) if self.loads_on_demand(name) => self.load_on_demand(name, version).await?,
            other => other?,
        };
        found.touch();
        Ok(found)
    }

    fn loads_on_demand(&self, name: &str) -> bool {
        self.read().get(name).is_some_and(|e| e.on_demand && !serves(e))
    }

    async fn load_on_demand(
        self: &Arc<Self>,
        name: &str,
        version: Option<u64>,
    ) -> Result<Arc<LoadedModel>, RuntimeError> {
        let (this, owned) = (self.clone(), name.to_string());
        // its own task: a request that gives up does not stop the load
        let loading = tokio::spawn(async move {
            let _guard = this.changes.lock().await;
            // another request may have loaded it meanwhile (or someone unloaded it)
            if this.loads_on_demand(&owned) {
                let definition = this.definition(&owned).await?;
                let change = this.read().get(&owned).and_then(|e| e.change.clone());
                this.install(&owned, definition, change.as_ref()).await?;
            }
            // resolved under the lock: no other load can unload it before the request has it
            this.resolve(&owned, version)
        });
        let wait = self.load_wait.get().copied().unwrap_or(ON_DEMAND_WAIT);
        match tokio::time::timeout(wait, loading).await {
            Ok(Ok(found)) => found,
            Ok(Err(stopped)) => {
                Err(RuntimeError::LoadFailed(name.to_string(), format!("the loader stopped: {stopped}")))
            }
            Err(_) => Err(RuntimeError::Loading(name.to_string())),
        }
    }

    /// Makes a model known but not serving, with the reason (a model with no versions yet).
    pub async fn set_unavailable(&self, name: &str, reason: &str) {
        let _guard = self.changes.lock().await;
        if let Some(placer) = self.placer.get() {
            placer.withdraw(name).await;
        }
        let entry = ModelEntry { reason: Some(reason.to_string()), ..Default::default() };
        self.write().insert(name.to_string(), entry);
    }

    /// Forgets a model entirely (it was deleted); in-flight requests still complete.
    pub async fn remove(&self, name: &str) {
        let _guard = self.changes.lock().await;
        if let Some(placer) = self.placer.get() {
            placer.withdraw(name).await;
        }
        if self.write().remove(name).is_some() {
            tracing::info!(model = name, "removed");
        }
    }

    /// Loads the versions the source selects. A version that fails is reported (so the source
    /// knows it fails) and the source is asked again: its policy over the versions not known to
    /// fail may select older ones, which are loaded in turn, until a selection loads or brings
    /// no version not tried yet. Versions are loaded once; the entry holds the last selection
    /// plus every version that failed (UNAVAILABLE with its reason).
    /// `change`, when given, applies to every selection's config.
    async fn load_selected(
        self: &Arc<Self>,
        name: &str,
        mut definition: ModelDefinition,
        change: Option<&ConfigChange>,
    ) -> ModelEntry {
        if definition.versions.is_empty() {
            return ModelEntry { reason: Some("no version to serve".into()), ..Default::default() };
        }
        let mut tried: BTreeMap<u64, VersionState> = BTreeMap::new();
        loop {
            if let Some(change) = change {
                change.apply(&mut definition.config);
            }
            let selected: Vec<u64> = definition.versions.iter().map(|(v, _)| *v).collect();
            let default_version = definition.default_version;
            definition.versions.retain(|(v, _)| !tried.contains_key(v));
            let mut failed_now = false;
            if !definition.versions.is_empty() {
                let built = self.build_entry_off_runtime(name, definition).await;
                if built.reason.is_some() {
                    return built;
                }
                self.report(name, &built).await;
                failed_now = built.versions.values().any(|s| matches!(s, VersionState::Unavailable(_)));
                tried.extend(built.versions);
            }
            let reselected = if failed_now {
                match self.source.definition(name).await {
                    Ok(Some(next)) if !next.versions.is_empty() => Some(next),
                    Ok(_) => None,
                    Err(reason) => {
                        tracing::warn!(model = name, %reason, "cannot select versions again after a failed load");
                        None
                    }
                }
            } else {
                None
            };
            match reselected {
                Some(next) => definition = next,
                None => {
                    tried.retain(|v, s| selected.contains(v) || matches!(s, VersionState::Unavailable(_)));
                    return ModelEntry { versions: tried, default_version, ..Default::default() };
                }
            }
        }
    }

    /// Tells the source how each version's load went.
    async fn report(&self, name: &str, entry: &ModelEntry) {
        let outcomes = entry
            .versions
            .iter()
            .map(|(v, state)| match state {
                VersionState::Ready(_) => (*v, Ok(())),
                VersionState::Unavailable(reason) => (*v, Err(reason.clone())),
            })
            .collect();
        self.source.loaded(name, outcomes).await;
    }

    /// Stops serving every version of a model; in-flight requests still complete.
    pub async fn unload(&self, name: &str) -> Result<(), RuntimeError> {
        let _guard = self.changes.lock().await;
        if let Some(placer) = self.placer.get() {
            if self.read().contains_key(name) {
                placer.withdraw(name).await;
            }
        }
        let mut models = self.write();
        let entry = models.get_mut(name).ok_or_else(|| RuntimeError::ModelNotFound(name.to_string()))?;
        entry.versions.clear();
        entry.reason = Some("unloaded".into());
        entry.retry_later = false;
        entry.on_demand = false;
        tracing::info!(model = name, "unloaded");
        Ok(())
    }

    /// The model version to run: `version`, or the newest ready one.
    pub fn resolve(&self, name: &str, version: Option<u64>) -> Result<Arc<LoadedModel>, RuntimeError> {
        let models = self.read();
        let entry = models.get(name).ok_or_else(|| RuntimeError::ModelNotFound(name.to_string()))?;
        let found = Self::resolve_in(name, entry, version);
        match found {
            Err(RuntimeError::NotReady(_, reason)) if entry.retry_later => {
                Err(RuntimeError::NoReplica(name.to_string(), reason))
            }
            other => other,
        }
    }

    fn resolve_in(name: &str, entry: &ModelEntry, version: Option<u64>) -> Result<Arc<LoadedModel>, RuntimeError> {
        match version {
            Some(v) => match entry.versions.get(&v) {
                Some(VersionState::Ready(m)) => Ok(m.clone()),
                Some(VersionState::Unavailable(reason)) => {
                    Err(RuntimeError::NotReady(format!("{name}:{v}"), reason.clone()))
                }
                None if entry.versions.is_empty() => {
                    Err(RuntimeError::NotReady(format!("{name}:{v}"), not_ready_reason(entry)))
                }
                None => Err(RuntimeError::VersionNotFound(name.to_string(), v)),
            },
            None => entry
                .default_version
                .and_then(|d| match entry.versions.get(&d) {
                    Some(VersionState::Ready(m)) => Some(m.clone()),
                    _ => None,
                })
                .or_else(|| {
                    entry.versions.values().rev().find_map(|s| match s {
                        VersionState::Ready(m) => Some(m.clone()),
                        VersionState::Unavailable(_) => None,
                    })
                })
                .ok_or_else(|| RuntimeError::NotReady(name.to_string(), not_ready_reason(entry))),
        }
    }

    /// The versions of a model that are ready, oldest first.
    pub fn ready_versions(&self, name: &str) -> Result<Vec<Arc<LoadedModel>>, RuntimeError> {
        let models = self.read();
        let entry = models.get(name).ok_or_else(|| RuntimeError::ModelNotFound(name.to_string()))?;
        Ok(entry
            .versions
            .values()
            .filter_map(|s| match s {
                VersionState::Ready(m) => Some(m.clone()),
                VersionState::Unavailable(_) => None,
            })
            .collect())
    }

    /// The versions of a model with their states (for metadata).
    pub fn versions(&self, name: &str) -> Result<Vec<(u64, VersionState)>, RuntimeError> {
        let models = self.read();
        let entry = models.get(name).ok_or_else(|| RuntimeError::ModelNotFound(name.to_string()))?;
        Ok(entry.versions.iter().map(|(v, s)| (*v, s.clone())).collect())
    }

    /// Every model and version with its state, as the repository index shows them.
    pub fn index(&self) -> Vec<IndexEntry> {
        let models = self.read();
        let mut rows = Vec::new();
        for (name, entry) in models.iter() {
            if entry.versions.is_empty() {
                rows.push(IndexEntry {
                    name: name.clone(),
                    version: None,
                    ready: false,
                    reason: entry.reason.clone().unwrap_or_default(),
                });
            }
            for (version, state) in &entry.versions {
                let (ready, reason) = match state {
                    VersionState::Ready(_) => (true, String::new()),
                    VersionState::Unavailable(r) => (false, r.clone()),
                };
                rows.push(IndexEntry { name: name.clone(), version: Some(*version), ready, reason });
            }
        }
        rows
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ModelEntry>> {
        self.models.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ModelEntry>> {
        self.models.write().unwrap_or_else(|e| e.into_inner())
    }

    /// [`Self::build_entry`] on the blocking pool: loading parses and optimises model files.
    async fn build_entry_off_runtime(self: &Arc<Self>, name: &str, definition: ModelDefinition) -> ModelEntry {
        let (this, owned) = (self.clone(), name.to_string());
        tokio::task::spawn_blocking(move || this.build_entry(&owned, definition))
            .await
            .unwrap_or_else(|e| ModelEntry { reason: Some(format!("loader crashed: {e}")), ..Default::default() })
    }

    /// Builds the entry of one model: every selected version, loaded or failed.
    fn build_entry(&self, name: &str, definition: ModelDefinition) -> ModelEntry {
        let ModelDefinition { config, labels, default_version, versions } = definition;
        if versions.is_empty() {
            return ModelEntry { reason: Some("no version to serve".into()), ..Default::default() };
        }
        // one copy shared by the versions loaded with it
        let config = Arc::new(config);
        let versions = versions
            .into_iter()
            .map(|(v, bytes)| {
                let loaded = bytes
                    .map_err(LoadError::from)
                    .and_then(|b| self.load_measured(name, v, &b, &config, labels.clone()));
                let state = match loaded {
                    Ok(m) => VersionState::Ready(Arc::new(m)),
                    Err(e) => VersionState::Unavailable(e.to_string()),
                };
                (v, state)
            })
            .collect();
        ModelEntry { versions, default_version, ..Default::default() }
    }

    /// [`Self::load_version`], counting the memory the version takes. Under a budget, the first
    /// load of each engine is made twice (see [`Self::prime_engine`]).
    fn load_measured(
        &self,
        name: &str,
        version: u64,
        bytes: &[u8],
        config: &Arc<ModelConfig>,
        labels: Option<Vec<String>>,
    ) -> Result<LoadedModel, LoadError> {
        if self.budget.get().is_some() {
            self.prime_engine(&config.engine, || {
                if let Ok(first) = self.load_version(name, version, bytes, config, labels.clone()) {
                    first.stop(Duration::from_secs(5));
                }
            });
        }
        let before = crate::memory::trimmed_resident_bytes();
        let (loaded, peak) = crate::memory::peak_during(|| self.load_version(name, version, bytes, config, labels));
        let mut model = loaded?;
        let growth = |to: Option<u64>| to.zip(before).map_or(0, |(a, b)| a.saturating_sub(b));
        let file = bytes.len() as u64;
        model.resident_bytes = (self.measure)(file, growth(crate::memory::trimmed_resident_bytes())).max(1);
        // the file's bytes are held across the load, before the growth is measured
        model.load_peak_bytes = file + (self.measure)(file, growth(peak)).max(model.resident_bytes);
        tracing::debug!(
            model = name,
            version,
            file,
            resident = model.resident_bytes,
            peak = model.load_peak_bytes,
            "memory of a load"
        );
        Ok(model)
    }

    /// Runs `load_once` (a load whose copy is stopped at once) the first time `engine` loads in
    /// this process: it pays the engine's one-time set-up, which is added to the server's base,
    /// not counted to the model.
    fn prime_engine(&self, engine: &str, load_once: impl FnOnce()) {
        static PRIMED: Mutex<Vec<String>> = Mutex::new(Vec::new());
        {
            let mut primed = PRIMED.lock().unwrap_or_else(|e| e.into_inner());
            if primed.iter().any(|e| e == engine) {
                return;
            }
            primed.push(engine.to_string());
        }
        let before = crate::memory::trimmed_resident_bytes();
        load_once();
        let set_up = crate::memory::resident_bytes().zip(before).map_or(0, |(a, b)| a.saturating_sub(b));
        if let Some(base) = self.base_rss.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            *base += set_up;
        }
    }

    fn load_version(
        &self,
        name: &str,
        version: u64,
        bytes: &[u8],
        config: &Arc<ModelConfig>,
        labels: Option<Vec<String>>,
    ) -> Result<LoadedModel, LoadError> {
        let backend = lectern_backends::load_backend(&config.engine, bytes)?;
        let signature = apply_declared(backend.signature().clone(), config);
        let max_batch_size = config
            .max_batch_size
            .or(backend.default_max_batch_size())
            .unwrap_or_else(|| default_max_batch_size(&signature));
        let metrics = self.metrics.model(name, &version.to_string());
        let scheduler = SchedulerConfig {
            capacity: config.queue_capacity,
            instances: config.instance_count(),
            max_batch_size,
            mode: config.batching,
            max_delay: Duration::from_micros(config.max_queue_delay_us),
        };
        let warmup =
            crate::warmup::samples(name, &signature, max_batch_size, &config.warmup).map_err(LoadError::Warmup)?;
        let worker =
            Worker::start_warmed(&format!("{name}:{version}"), scheduler, backend.clone(), metrics.clone(), &warmup)?;
        let mut model =
            LoadedModel::new(name.to_string(), version, signature, max_batch_size, metrics, backend, worker)
                .described(labels, config.image.clone());
        model.matryoshka = config.matryoshka;
        model.config = Some(config.clone());
        Ok(model)
    }
}

/// Why one version could not be loaded (its reason in the index).
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Engine(#[from] lectern_backends::BackendError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("warmup failed: {0}")]
    Warmup(String),
}

/// Batching is on by default only when every input and output has a free first dimension.
fn default_max_batch_size(signature: &lectern_backends::Signature) -> usize {
    let free_first = |infos: &[lectern_backends::TensorInfo]| infos.iter().all(|i| i.shape.first() == Some(&-1));
    if free_first(&signature.inputs) && free_first(&signature.outputs) {
        DEFAULT_MAX_BATCH_SIZE
    } else {
        0
    }
}

/// Fills in names and shapes declared in the config where the file's are missing.
fn apply_declared(mut signature: lectern_backends::Signature, config: &ModelConfig) -> lectern_backends::Signature {
    let pairs =
        signature.inputs.iter_mut().zip(&config.inputs).chain(signature.outputs.iter_mut().zip(&config.outputs));
    for (info, spec) in pairs {
        if info.name.is_empty() {
            info.name = spec.name.clone();
        }
        if let Some(shape) = &spec.shape {
            if shape.len() == info.shape.len() {
                info.shape = shape.clone();
            }
        }
    }
    signature
}

fn entry_failure(entry: &ModelEntry) -> Option<String> {
    if let Some(reason) = &entry.reason {
        return Some(reason.clone());
    }
    let failures: Vec<String> = entry
        .versions
        .iter()
        .filter_map(|(v, s)| match s {
            VersionState::Unavailable(r) => Some(format!("version {v}: {r}")),
            VersionState::Ready(_) => None,
        })
        .collect();
    (!failures.is_empty()).then(|| failures.join("; "))
}

/// Whether some version of the entry answers requests.
fn serves(entry: &ModelEntry) -> bool {
    entry.versions.values().any(|s| matches!(s, VersionState::Ready(_)))
}

/// Waits, at most [`STOP_WAIT`] in all, for the requests still using `versions` to end and for
/// their threads to stop, so that a load after them finds their memory free.
async fn wait_stopped(versions: Vec<Arc<LoadedModel>>) {
    let deadline = tokio::time::Instant::now() + STOP_WAIT;
    for mut model in versions {
        loop {
            match Arc::try_unwrap(model) {
                Ok(alone) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let _ = tokio::task::spawn_blocking(move || alone.stop(left)).await;
                    break;
                }
                Err(shared) if tokio::time::Instant::now() < deadline => {
                    model = shared;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                // still in use: it stops when its last request ends
                Err(_) => break,
            }
        }
    }
}

/// Bytes in the largest binary unit that keeps a number of at least 1, one decimal.
fn size_text(bytes: u64) -> String {
    let units = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    match units.iter().find(|(_, scale)| bytes >= *scale) {
        Some((unit, scale)) => format!("{:.1} {unit}", bytes as f64 / *scale as f64),
        None => format!("{bytes} bytes"),
    }
}

fn not_ready_reason(entry: &ModelEntry) -> String {
    entry_failure(entry).unwrap_or_else(|| "no version is ready".into())
}

fn log_entry(name: &str, entry: &ModelEntry) {
    for (version, state) in &entry.versions {
        match state {
            VersionState::Ready(_) => tracing::info!(model = name, version, "model ready"),
            VersionState::Unavailable(reason) => tracing::warn!(model = name, version, %reason, "model unavailable"),
        }
    }
    if let Some(reason) = &entry.reason {
        tracing::warn!(model = name, %reason, "model unavailable");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{SourceError, SourceFuture};
    use std::sync::Mutex;

    /// A source like the store: its policy (`latest = n`) runs over the versions not reported
    /// as failing, and it remembers every outcome.
    struct StoreLike {
        latest: usize,
        files: BTreeMap<u64, Vec<u8>>,
        failing: Mutex<Vec<u64>>,
        reported: Mutex<Vec<(u64, bool)>>,
    }

    impl ModelSource for StoreLike {
        fn names(&self) -> SourceFuture<'_, Result<Vec<String>, SourceError>> {
            Box::pin(async { Ok(vec!["m".to_string()]) })
        }

        fn definition<'a>(&'a self, _name: &'a str) -> SourceFuture<'a, Result<Option<ModelDefinition>, SourceError>> {
            Box::pin(async move {
                let failing = self.failing.lock().unwrap().clone();
                let healthy: Vec<u64> = self.files.keys().copied().filter(|v| !failing.contains(v)).collect();
                let candidates = if healthy.is_empty() { self.files.keys().copied().collect() } else { healthy };
                let chosen = &candidates[candidates.len().saturating_sub(self.latest)..];
                let versions = chosen.iter().map(|v| (*v, Ok(self.files[v].clone()))).collect();
                let config = ModelConfig::parse(&format!("latest = {}", self.latest), "c").unwrap();
                Ok(Some(ModelDefinition { config, labels: None, default_version: None, versions }))
            })
        }

        fn loaded<'a>(&'a self, _name: &'a str, outcomes: Vec<(u64, Result<(), String>)>) -> SourceFuture<'a, ()> {
            Box::pin(async move {
                for (v, outcome) in outcomes {
                    if outcome.is_err() {
                        self.failing.lock().unwrap().push(v);
                    }
                    self.reported.lock().unwrap().push((v, outcome.is_ok()));
                }
            })
        }
    }

    fn setup(latest: usize, good: &[u64], bad: &[u64]) -> (Arc<Registry>, Arc<StoreLike>) {
        let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/models/iris-logreg/1")
            .join(crate::source::MODEL_FILE);
        let bytes = std::fs::read(model).unwrap();
        let mut files: BTreeMap<u64, Vec<u8>> = good.iter().map(|v| (*v, bytes.clone())).collect();
        files.extend(bad.iter().map(|v| (*v, b"not an onnx model".to_vec())));
        let source = Arc::new(StoreLike { latest, files, failing: Mutex::default(), reported: Mutex::default() });
        (Arc::new(Registry::new(source.clone(), Arc::new(MetricsRegistry::default()))), source)
    }

    fn states(registry: &Registry) -> Vec<(u64, bool)> {
        let versions = registry.versions("m").unwrap();
        versions.into_iter().map(|(v, s)| (v, matches!(s, VersionState::Ready(_)))).collect()
    }

    #[tokio::test]
    async fn a_selected_version_that_fails_gives_way_to_the_newest_loadable_ones() {
        let (registry, source) = setup(1, &[1, 2], &[3, 4]);
        registry.load_all().await.unwrap();
        assert_eq!(states(&registry), vec![(2, true), (3, false), (4, false)]);
        assert_eq!(registry.resolve("m", None).unwrap().version, 2);
        assert_eq!(*source.reported.lock().unwrap(), vec![(4, false), (3, false), (2, true)]);

        let (registry, source) = setup(2, &[1, 2], &[3]);
        let err = registry.load("m").await.unwrap_err();
        assert!(err.to_string().contains("version 3"), "{err}");
        assert_eq!(states(&registry), vec![(1, true), (2, true), (3, false)], "a model serving nothing takes them");
        // version 2 loaded once, kept over the second selection
        assert_eq!(*source.reported.lock().unwrap(), vec![(2, true), (3, false), (1, true)]);
    }

    #[tokio::test]
    async fn when_every_version_fails_each_is_tried_once() {
        let (registry, source) = setup(1, &[], &[1, 2]);
        registry.load_all().await.unwrap();
        assert_eq!(states(&registry), vec![(1, false), (2, false)]);
        assert_eq!(*source.reported.lock().unwrap(), vec![(2, false), (1, false)]);
    }

    /// Models of exactly the given file sizes (the iris model padded with a field ONNX does
    /// not define, which the parser skips), each with its config.
    struct Sized {
        models: BTreeMap<String, (String, Vec<u8>)>,
    }

    impl Sized {
        fn new(models: &[(&str, usize, &str)]) -> Arc<Self> {
            let iris = std::fs::read(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../examples/models/iris-logreg/1")
                    .join(crate::source::MODEL_FILE),
            )
            .unwrap();
            let models = models
                .iter()
                .map(|(name, size, config)| {
                    let mut bytes = iris.clone();
                    // field 1000, length-delimited: a 2-byte tag, a 3-byte length, the padding
                    let pad = size - iris.len() - 5;
                    bytes.extend_from_slice(&[0xc2, 0x3e]);
                    bytes.extend_from_slice(&varint3(pad));
                    bytes.resize(bytes.len() + pad, 0);
                    assert_eq!(bytes.len(), *size);
                    (name.to_string(), (config.to_string(), bytes))
                })
                .collect();
            Arc::new(Sized { models })
        }
    }

    /// `n` as a varint of exactly three bytes.
    fn varint3(n: usize) -> [u8; 3] {
        assert!(n < 1 << 21);
        [(n & 0x7f) as u8 | 0x80, ((n >> 7) & 0x7f) as u8 | 0x80, (n >> 14) as u8]
    }

    impl ModelSource for Sized {
        fn names(&self) -> SourceFuture<'_, Result<Vec<String>, SourceError>> {
            Box::pin(async { Ok(self.models.keys().cloned().collect()) })
        }

        fn definition<'a>(&'a self, name: &'a str) -> SourceFuture<'a, Result<Option<ModelDefinition>, SourceError>> {
            Box::pin(async move {
                Ok(self.models.get(name).map(|(config, bytes)| ModelDefinition {
                    config: ModelConfig::parse(config, "config.toml").unwrap(),
                    labels: None,
                    default_version: None,
                    versions: vec![(1, Ok(bytes.clone()))],
                }))
            })
        }

        fn loaded<'a>(&'a self, _: &'a str, _: Vec<(u64, Result<(), String>)>) -> SourceFuture<'a, ()> {
            Box::pin(async {})
        }
    }

    /// A registry over `models` whose versions count their file sizes exactly.
    fn budgeted(models: &[(&str, usize, &str)], budget: u64) -> Arc<Registry> {
        let mut registry = Registry::new(Sized::new(models), Arc::new(MetricsRegistry::default()));
        registry.measure = |file, _| file;
        registry.first_load_factor = 1;
        registry.watch_rss = false;
        registry.set_memory_budget(budget);
        Arc::new(registry)
    }

    fn loaded(registry: &Registry) -> Vec<String> {
        registry.memory().models.into_iter().filter(|m| m.resident_bytes > 0).map(|m| m.name).collect()
    }

    fn counts(registry: &Registry, name: &str) -> (u64, u64) {
        let m = registry.memory().models.into_iter().find(|m| m.name == name).unwrap();
        (m.loads, m.evictions)
    }

    const K: usize = 1 << 10;

    fn refused(result: Result<Arc<LoadedModel>, RuntimeError>) -> RuntimeError {
        match result {
            Ok(m) => panic!("{} was served", m.name),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn loads_past_the_budget_unload_the_least_recently_used_models() {
        let models = [("a", 10 * K, ""), ("b", 10 * K, ""), ("c", 10 * K, ""), ("d", 10 * K, "")];
        let registry = budgeted(&models, 30 * K as u64);
        registry.load_all().await.unwrap();
        assert_eq!(loaded(&registry), ["b", "c", "d"], "a, loaded first, made room for d");
        assert_eq!(counts(&registry, "a"), (1, 1));
        let index = registry.index();
        assert!(index[0].reason.contains("memory budget"), "{index:?}");

        registry.model("b", None).await.unwrap();
        registry.model("c", None).await.unwrap();
        // a's load took its file and as much again (the measure of these tests): 20 KiB
        let a = registry.model("a", None).await.unwrap();
        assert_eq!((a.resident_bytes, a.load_peak_bytes), (10 * K as u64, 20 * K as u64));
        assert_eq!(loaded(&registry), ["a", "c"], "d, then b, were the least recently used");
        assert_eq!(counts(&registry, "a"), (2, 1));
        assert_eq!(counts(&registry, "b"), (1, 1));
        assert_eq!(counts(&registry, "d"), (1, 1));
        assert_eq!(registry.memory().budget, Some(30 * K as u64));
    }

    #[tokio::test]
    async fn pinned_models_stay_and_a_model_that_cannot_fit_unloads_nothing() {
        let models = [
            ("a", 10 * K, "pinned = true"),
            ("b", 10 * K, ""),
            ("c", 10 * K, ""),
            ("d", 10 * K, ""),
            ("huge", 40 * K, "lazy = true"),
        ];
        let registry = budgeted(&models, 30 * K as u64);
        registry.load_all().await.unwrap();
        assert_eq!(loaded(&registry), ["a", "c", "d"], "b made room for d; a is pinned");
        registry.model("b", None).await.unwrap();
        assert_eq!(loaded(&registry), ["a", "b"], "b's load needs 20 KiB: c and d made room");

        let err = refused(registry.model("huge", None).await);
        assert!(matches!(err, RuntimeError::LoadFailed(..)), "{err}");
        let expected = "model 'huge' needs about 40.0 KiB, and the memory budget of 30.0 KiB leaves 20.0 KiB \
                        beside the pinned models";
        assert!(err.to_string().ends_with(expected), "{err}");
        assert_eq!(loaded(&registry), ["a", "b"], "nothing was unloaded for it");
        assert_eq!(counts(&registry, "huge"), (0, 0));
    }

    #[tokio::test]
    async fn a_lazy_model_loads_on_its_first_request_and_an_unloaded_one_does_not() {
        let registry = budgeted(&[("lazy", 10 * K, "lazy = true"), ("eager", 10 * K, "")], 1 << 30);
        registry.load_all().await.unwrap();
        assert_eq!(loaded(&registry), ["eager"]);
        assert!(matches!(registry.resolve("lazy", None), Err(RuntimeError::NotReady(_, r)) if r.contains("lazy")));
        registry.model("lazy", None).await.unwrap();
        assert_eq!(counts(&registry, "lazy"), (1, 0));

        registry.unload("lazy").await.unwrap();
        let err = refused(registry.model("lazy", None).await);
        assert!(matches!(err, RuntimeError::NotReady(_, ref r) if r == "unloaded"), "{err}");
        // a change in the source keeps a lazy model that serves nothing unloaded
        registry.refresh("lazy").await.unwrap();
        assert_eq!(loaded(&registry), ["eager"]);
        registry.load("lazy").await.unwrap();
        assert_eq!(loaded(&registry), ["eager", "lazy"]);
    }

    #[tokio::test]
    async fn a_request_that_waits_too_long_is_told_to_retry_while_the_load_goes_on() {
        let registry = budgeted(&[("lazy", 10 * K, "lazy = true")], 1 << 30);
        registry.set_load_wait(Duration::ZERO);
        registry.load_all().await.unwrap();
        let err = refused(registry.model("lazy", None).await);
        assert!(matches!(err, RuntimeError::Loading(_)), "{err}");
        for _ in 0..500 {
            if registry.resolve("lazy", None).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        registry.model("lazy", None).await.unwrap();
        assert_eq!(counts(&registry, "lazy"), (1, 0), "loaded once");
    }

    #[tokio::test]
    async fn a_first_load_makes_room_for_its_expected_peak_and_a_later_one_for_what_it_took() {
        let mut registry = Registry::new(
            Sized::new(&[("a", 10 * K, "lazy = true"), ("b", 10 * K, "lazy = true")]),
            Default::default(),
        );
        registry.measure = |file, _| file;
        registry.watch_rss = false;
        registry.set_memory_budget(45 * K as u64);
        let registry = Arc::new(registry);
        registry.load_all().await.unwrap();
        registry.model("a", None).await.unwrap();
        registry.model("b", None).await.unwrap();
        assert_eq!(loaded(&registry), ["b"], "b's first load expected 4 x 10 KiB: a made room");
        registry.model("a", None).await.unwrap();
        assert_eq!(loaded(&registry), ["a", "b"], "a's load needs what it took last time: 20 KiB");
    }

    #[tokio::test]
    async fn an_evicted_model_keeps_its_override_and_a_change_leaves_it_to_its_next_request() {
        let registry = budgeted(&[("a", 10 * K, ""), ("b", 10 * K, "")], 1 << 30);
        registry.load_all().await.unwrap();
        let change = ConfigChange { max_batch_size: Some(3), ..Default::default() };
        registry.load_changed("a", Some(&change)).await.unwrap();
        drop(registry.evict("a"));
        assert_eq!(registry.model("a", None).await.unwrap().max_batch_size, 3, "reloaded with its override");

        drop(registry.evict("a"));
        registry.refresh("a").await.unwrap();
        assert_eq!(loaded(&registry), ["b"], "a change does not load an evicted model");
        assert!(registry.index()[0].reason.contains("memory budget"));
        let a = registry.model("a", None).await.unwrap();
        assert_eq!(a.max_batch_size, 64, "the change ended the override");
        assert_eq!(counts(&registry, "a"), (4, 2));
    }
}
