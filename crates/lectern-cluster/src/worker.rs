//! `lectern worker`: joins a cluster, writes its record every heartbeat, loads the models the
//! placement map gives it, and answers their inference requests.

use crate::conn::{ClusterAddress, Connection};
use crate::records::{
    infer_subject, worker_key, ModelSpec, PlacementMap, ServedModel, ServedVersion, VersionMeta, WorkerRecord,
    OBJECTS_KEY, PLACEMENT_KEY,
};
use crate::source::PlacedSource;
use crate::wire;
use crate::{random_id, ClusterError, HEARTBEAT, WORKER_TIMEOUT};
use async_nats::jetstream::kv::{Operation, UpdateErrorKind};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use lectern_core::{decode_request, Coded};
use lectern_manage::Objects;
use lectern_runtime::{MetricsRegistry, Registry, VersionState};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// A pause in the bucket's entries this long ends a burst.
const BURST_GAP: Duration = Duration::from_millis(20);
/// The longest a change waits for its burst to end.
const MAX_SETTLE_DELAY: Duration = Duration::from_millis(250);

/// The longest a clean stop waits for the requests in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// How a worker joins.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub address: ClusterAddress,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Memory offered to models.
    pub memory_bytes: u64,
    /// The object store; `None`: the one the gateways announce.
    pub objects: Option<String>,
}

/// Counters of a worker's requests.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub inflight: AtomicU64,
    pub answered: AtomicU64,
    /// Messages that were not what Lectern sends: ignored.
    pub invalid: AtomicU64,
}

/// What a model's last load left: the definition that serves, and the one last tried.
#[derive(Clone)]
struct Loaded {
    spec: ModelSpec,
    tried: String,
    failed: String,
}

/// A model this worker serves: the definition loaded, and the task answering its subject.
struct Serving {
    spec: ModelSpec,
    answering: Option<JoinHandle<()>>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(task) = self.answering.take() {
            task.abort();
        }
    }
}

/// A joined worker.
pub struct Worker {
    settings: WorkerSettings,
    connection: Connection,
    registry: Arc<Registry>,
    source: Arc<PlacedSource>,
    instance: String,
    pub stats: Arc<WorkerStats>,
    serving: tokio::sync::Mutex<BTreeMap<String, Serving>>,
    /// The definition each model was last loaded from (what the record reports; read without
    /// waiting for a load in progress, so that heartbeats never stop).
    loaded: Mutex<BTreeMap<String, Loaded>>,
    /// The task following the bucket (stopped on leave).
    watcher: Mutex<Option<JoinHandle<()>>>,
    /// The placement map and definitions as last read.
    view: Mutex<(PlacementMap, BTreeMap<String, ModelSpec>)>,
    /// Set once the worker has read the placement and loaded its models.
    ready: AtomicBool,
    /// The revision of this worker's record.
    revision: AtomicU64,
}

impl Worker {
    /// Joins the cluster: waits for NATS (retrying with backoff), finds the object store, and
    /// refuses a name that another live worker holds.
    pub async fn join(settings: WorkerSettings, metrics: Arc<MetricsRegistry>) -> Result<Arc<Worker>, ClusterError> {
        let connection = Connection::open(&settings.address, &format!("lectern-worker-{}", settings.name)).await;
        let objects = objects(&connection, settings.objects.as_deref()).await?;
        let source = Arc::new(PlacedSource::new(Arc::new(objects)));
        let registry = Arc::new(Registry::new(source.clone(), metrics));
        let worker = Arc::new(Worker {
            settings,
            connection,
            registry,
            source,
            instance: random_id(),
            stats: Arc::new(WorkerStats::default()),
            serving: tokio::sync::Mutex::new(BTreeMap::new()),
            loaded: Mutex::new(BTreeMap::new()),
            watcher: Mutex::new(None),
            view: Mutex::new(Default::default()),
            ready: AtomicBool::new(false),
            revision: AtomicU64::new(0),
        });
        worker.claim_name().await?;
        tracing::info!(worker = %worker.settings.name, nats = %worker.settings.address.shown(),
            cluster = %worker.settings.address.name, labels = ?worker.settings.labels, "joined the cluster");
        Ok(worker)
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Whether the worker has read its placement and loaded what it was given.
    pub fn ready(&self) -> bool {
        self.ready.load(Relaxed)
    }

    /// Writes the first record, unless another live process holds the name: a record that
    /// changes within [`WORKER_TIMEOUT`] belongs to a live worker.
    async fn claim_name(&self) -> Result<(), ClusterError> {
        let key = worker_key(&self.settings.name);
        let bucket = &self.connection.bucket;
        let first = bucket.entry(key.clone()).await.map_err(|e| ClusterError::Kv(e.to_string()))?;
        let value = self.record_bytes().await;
        let revision = match first {
            Some(entry) if entry.operation == Operation::Put => {
                let started = std::time::Instant::now();
                tokio::time::sleep(WORKER_TIMEOUT).await;
                let now = bucket.entry(key.clone()).await.map_err(|e| ClusterError::Kv(e.to_string()))?;
                match now {
                    Some(later) if later.revision != entry.revision => {
                        return Err(ClusterError::DuplicateName(
                            self.settings.name.clone(),
                            started.elapsed().as_millis(),
                        ))
                    }
                    _ => {}
                }
                bucket.update(&key, value, entry.revision).await.map_err(|e| self.claim_error(e.kind(), &e))?
            }
            Some(deleted) => {
                bucket.update(&key, value, deleted.revision).await.map_err(|e| self.claim_error(e.kind(), &e))?
            }
            None => bucket.create(&key, value).await.map_err(|e| match e.kind() {
                async_nats::jetstream::kv::CreateErrorKind::AlreadyExists => {
                    ClusterError::DuplicateName(self.settings.name.clone(), 0)
                }
                _ => ClusterError::Kv(e.to_string()),
            })?,
        };
        self.revision.store(revision, Relaxed);
        Ok(())
    }

    fn claim_error(&self, kind: UpdateErrorKind, e: &dyn std::fmt::Display) -> ClusterError {
        match kind {
            UpdateErrorKind::WrongLastRevision => ClusterError::DuplicateName(self.settings.name.clone(), 0),
            _ => ClusterError::Kv(e.to_string()),
        }
    }

    /// Runs until the process stops or another process takes the name (an error).
    pub async fn run(self: &Arc<Self>) -> Result<(), ClusterError> {
        let watcher = tokio::spawn(self.clone().watch());
        *self.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(watcher);
        let result = self.heartbeat().await;
        self.stop_watching();
        result
    }

    fn stop_watching(&self) {
        if let Some(watcher) = self.watcher.lock().unwrap_or_else(|e| e.into_inner()).take() {
            watcher.abort();
        }
    }

    /// Removes the worker's record (a clean stop): the gateways place its models elsewhere at
    /// once instead of after [`WORKER_TIMEOUT`].
    pub async fn leave(&self) {
        self.stop_watching();
        // No new requests (the subscriptions end); those in flight are answered first.
        self.serving.lock().await.clear();
        let started = std::time::Instant::now();
        while self.stats.inflight.load(Relaxed) > 0 && started.elapsed() < DRAIN {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.connection.client.flush().await;
        if let Err(e) = self.connection.bucket.delete(worker_key(&self.settings.name)).await {
            tracing::warn!(error = %e, "cannot remove this worker's record");
        }
        let _ = self.connection.client.flush().await;
    }

    async fn heartbeat(&self) -> Result<(), ClusterError> {
        let key = worker_key(&self.settings.name);
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let value = self.record_bytes().await;
            let last = self.revision.load(Relaxed);
            match self.connection.bucket.update(&key, value, last).await {
                Ok(revision) => self.revision.store(revision, Relaxed),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                    let entry = self.connection.bucket.entry(key.clone()).await.ok().flatten();
                    let other = entry.as_ref().and_then(|e| serde_json::from_slice::<WorkerRecord>(&e.value).ok());
                    match (entry, other) {
                        (Some(_), Some(r)) if r.instance != self.instance => {
                            return Err(ClusterError::DuplicateName(self.settings.name.clone(), 0));
                        }
                        (Some(entry), _) => self.revision.store(entry.revision, Relaxed),
                        (None, _) => self.revision.store(0, Relaxed),
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot write this worker's record; retrying"),
            }
        }
    }

    async fn record_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.record().await).expect("serialising to a Vec cannot fail"))
    }

    async fn record(&self) -> WorkerRecord {
        let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut models = BTreeMap::new();
        let mut used = 0;
        for (name, l) in loaded.iter() {
            used += l.spec.memory_bytes();
            let mut served = self.served(name, &l.spec);
            served.tried = l.tried.clone();
            served.failed = l.failed.clone();
            models.insert(name.clone(), served);
        }
        WorkerRecord {
            name: self.settings.name.clone(),
            instance: self.instance.clone(),
            labels: self.settings.labels.clone(),
            memory_bytes: self.settings.memory_bytes,
            used_bytes: used,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            inflight: self.stats.inflight.load(Relaxed),
            answered: self.stats.answered.load(Relaxed),
            invalid_messages: self.stats.invalid.load(Relaxed),
            models,
        }
    }

    fn served(&self, name: &str, spec: &ModelSpec) -> ServedModel {
        let mut served = ServedModel { digest: spec.digest(), ..Default::default() };
        let sha_of =
            |v: u64| spec.versions.iter().find(|s| s.version == v).map(|s| s.sha256.clone()).unwrap_or_default();
        match self.registry.versions(name) {
            Ok(versions) if !versions.is_empty() => {
                for (v, state) in versions {
                    let version = match state {
                        VersionState::Ready(m) => ServedVersion {
                            ready: true,
                            reason: String::new(),
                            meta: Some(VersionMeta::of(&m.describe())),
                            sha256: sha_of(v),
                        },
                        VersionState::Unavailable(reason) => {
                            ServedVersion { ready: false, reason, meta: None, sha256: sha_of(v) }
                        }
                    };
                    served.versions.insert(v, version);
                }
            }
            _ => {
                let reason = self.registry.index().into_iter().find(|r| r.name == name).map(|r| r.reason);
                served.reason = reason.unwrap_or_else(|| "loading".into());
            }
        }
        served
    }

    /// Follows the placement map and the definitions, loading and dropping models to match.
    async fn watch(self: Arc<Self>) {
        loop {
            if let Err(e) = self.follow().await {
                tracing::warn!(error = %e, "lost the cluster's placement; reading it again");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn follow(self: &Arc<Self>) -> Result<(), ClusterError> {
        let bucket = &self.connection.bucket;
        // Every key (NATS 2.9 filters on one subject): workers' records are skipped here.
        let mut updates = bucket.watch_with_history(">").await.map_err(|e| ClusterError::Kv(e.to_string()))?;
        // An empty bucket sends nothing: settle once right away.
        self.reconcile().await;
        // Entries are taken in bursts (the history, a gateway's writes): the models are settled
        // once a burst is read, or after a while of a burst that does not end. (The entries'
        // `delta` cannot tell: NATS 2.9 may count one pending for ever.)
        let mut changed_since: Option<Instant> = None;
        let mut next = updates.next().await;
        while let Some(entry) = next {
            let entry = entry.map_err(|e| ClusterError::Kv(e.to_string()))?;
            if self.take(&entry) {
                changed_since.get_or_insert_with(Instant::now);
            }
            next = match tokio::time::timeout(BURST_GAP, updates.next()).await {
                Ok(more) if changed_since.is_none_or(|t| t.elapsed() < MAX_SETTLE_DELAY) => more,
                waited => {
                    // The first burst is the history: the worker is ready once it is settled.
                    if changed_since.take().is_some() || !self.ready() {
                        self.reconcile().await;
                        self.ready.store(true, Relaxed);
                    }
                    match waited {
                        Ok(more) => more,
                        Err(_) => updates.next().await,
                    }
                }
            };
        }
        Ok(())
    }

    /// Takes a placement or definition entry into the view; whether it was one.
    fn take(&self, entry: &async_nats::jetstream::kv::Entry) -> bool {
        tracing::trace!(key = %entry.key, revision = entry.revision, "cluster record");
        let put = entry.operation == Operation::Put;
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        if entry.key == PLACEMENT_KEY {
            match (put, serde_json::from_slice::<PlacementMap>(&entry.value)) {
                (false, _) => view.0 = PlacementMap::default(),
                (true, Ok(map)) => view.0 = map,
                (true, Err(e)) => self.invalid(&entry.key, &e),
            }
        } else if let Some(name) = entry.key.strip_prefix("models.") {
            match (put, serde_json::from_slice::<ModelSpec>(&entry.value)) {
                (false, _) => {
                    view.1.remove(name);
                }
                (true, Ok(spec)) if spec.name == name => {
                    view.1.insert(name.to_string(), spec);
                }
                (true, Ok(_)) => self.invalid(&entry.key, &"the definition names another model"),
                (true, Err(e)) => self.invalid(&entry.key, &e),
            }
        } else {
            return false;
        }
        true
    }

    fn invalid(&self, key: &str, e: &dyn std::fmt::Display) {
        self.stats.invalid.fetch_add(1, Relaxed);
        tracing::warn!(key, error = %e, "ignored a cluster record that is not what Lectern writes");
    }

    /// Loads what the placement gives this worker and drops what it no longer gives.
    async fn reconcile(self: &Arc<Self>) {
        let desired: BTreeMap<String, ModelSpec> = {
            let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
            let (placement, specs) = &*view;
            placement
                .models
                .iter()
                .filter(|(_, p)| p.workers.contains(&self.settings.name))
                .filter_map(|(name, _)| specs.get(name).map(|s| (name.clone(), s.clone())))
                .collect()
        };
        let mut serving = self.serving.lock().await;
        let gone: Vec<String> = serving.keys().filter(|n| !desired.contains_key(*n)).cloned().collect();
        for name in gone {
            serving.remove(&name);
            self.loaded.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
            self.registry.remove(&name).await;
            self.source.forget(&name);
            tracing::info!(model = %name, "model withdrawn from this worker");
        }
        for (name, spec) in desired {
            if serving.get(&name).is_some_and(|s| s.spec == spec) {
                continue;
            }
            self.source.set(spec.clone());
            let mut entry = serving.remove(&name).unwrap_or(Serving { spec: spec.clone(), answering: None });
            entry.spec = spec;
            // The record keeps reporting what was loaded before; a failure leaves it serving.
            let tried = entry.spec.digest();
            let failed = match self.registry.load(&name).await {
                Ok(()) => {
                    tracing::info!(model = %name, "model placed on this worker is ready");
                    String::new()
                }
                Err(e) => {
                    tracing::warn!(model = %name, error = %e, "model placed on this worker did not load");
                    e.to_string()
                }
            };
            {
                let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
                let keeps_serving = !failed.is_empty() && self.registry.resolve(&name, None).is_ok();
                let spec = match loaded.get(&name) {
                    Some(before) if keeps_serving => before.spec.clone(),
                    _ => entry.spec.clone(),
                };
                loaded.insert(name.clone(), Loaded { spec, tried, failed });
            }
            let serves = self.registry.resolve(&name, None).is_ok();
            match (serves, entry.answering.take()) {
                (true, None) => entry.answering = self.answer_model(&name).await,
                (false, Some(task)) => task.abort(),
                (_, kept) => entry.answering = kept,
            }
            serving.insert(name, entry);
        }
    }

    /// Starts answering a model's subject, in the model's queue group.
    async fn answer_model(self: &Arc<Self>, name: &str) -> Option<JoinHandle<()>> {
        let subject = infer_subject(&self.connection.name, name);
        let queue = self.connection.name.clone();
        let mut requests = match self.connection.client.queue_subscribe(subject, queue).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(model = name, error = %e, "cannot subscribe to the model's requests");
                return None;
            }
        };
        let (worker, model) = (self.clone(), name.to_string());
        Some(tokio::spawn(async move {
            while let Some(message) = requests.next().await {
                let (worker, model) = (worker.clone(), model.clone());
                tokio::spawn(async move { worker.answer(&model, message).await });
            }
        }))
    }

    async fn answer(&self, model: &str, message: async_nats::Message) {
        let Some(reply) = message.reply.clone() else {
            return self.ignore(model, "a message with no reply subject");
        };
        let headers = message.headers.as_ref();
        let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        let json_len = match header(wire::JSON_LENGTH).map(|v| v.parse::<usize>()) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => return self.ignore(model, "a bad header length"),
        };
        let version = match header(wire::VERSION).map(|v| v.parse::<u64>()) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => return self.ignore(model, "a bad version"),
        };
        let request = match decode_request(&message.payload, json_len) {
            Ok(r) => r,
            Err(_) => return self.ignore(model, "a body that is not an inference request"),
        };
        self.stats.inflight.fetch_add(1, Relaxed);
        let result = match self.registry.resolve(model, version) {
            Ok(loaded) => loaded.infer(request).await,
            Err(e) => Err(e),
        };
        self.stats.inflight.fetch_sub(1, Relaxed);
        self.stats.answered.fetch_add(1, Relaxed);
        let mut headers = HeaderMap::new();
        headers.insert(wire::WORKER, self.settings.name.as_str());
        let body = match result {
            Ok(response) => {
                let (body, json_len, flags) = wire::encode_response(&response);
                headers.insert(wire::JSON_LENGTH, json_len.to_string().as_str());
                headers.insert(wire::BINARY, flags.as_str());
                body
            }
            Err(e) => {
                headers.insert(wire::ERROR, e.code().name());
                e.to_string().into_bytes()
            }
        };
        let sent = self.connection.client.publish_with_headers(reply.clone(), headers, Bytes::from(body)).await;
        match sent {
            Ok(()) => {}
            Err(e) if e.kind() == async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
                // Tell the gateway why instead of leaving it to time out.
                let mut headers = HeaderMap::new();
                headers.insert(wire::WORKER, self.settings.name.as_str());
                headers.insert(wire::ERROR, lectern_core::ErrorCode::PayloadTooLarge.name());
                let message = format!(
                    "the answer of model '{model}' is larger than NATS's max_payload of {} bytes: raise \
                     max_payload in the NATS server's configuration",
                    self.connection.client.max_payload()
                );
                let _ = self.connection.client.publish_with_headers(reply, headers, Bytes::from(message)).await;
            }
            Err(e) => tracing::warn!(model, error = %e, "cannot send an answer"),
        }
    }

    fn ignore(&self, model: &str, what: &str) {
        self.stats.invalid.fetch_add(1, Relaxed);
        tracing::debug!(model, what, "ignored a message that is not what Lectern sends");
    }
}

/// The object store: the one given, or the one the gateways announce (waited for).
async fn objects(connection: &Connection, given: Option<&str>) -> Result<Objects, ClusterError> {
    let url = match given {
        Some(url) => url.to_string(),
        None => loop {
            match connection.bucket.get(OBJECTS_KEY).await {
                Ok(Some(value)) => break String::from_utf8_lossy(&value).into_owned(),
                Ok(None) => tracing::info!("waiting for a gateway to announce the object store (or pass --objects)"),
                Err(e) => tracing::warn!(error = %e, "cannot read the object store's address; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        },
    };
    Objects::open(&url).map_err(|e| ClusterError::Invalid(format!("cannot open the object store: {e}")))
}
