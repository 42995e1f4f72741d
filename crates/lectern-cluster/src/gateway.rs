//! The gateway's side of a cluster: it defines the models for the workers (from the store),
//! keeps the placement map, tells its registry what the workers serve, and sends inference to
//! them over NATS request/reply.

use crate::conn::{ClusterAddress, Connection};
use crate::placement::{self, Demand};
use crate::records::{
    infer_subject, model_key, ModelSpec, PlacementMap, SpecVersion, WorkerRecord, OBJECTS_KEY, PLACEMENT_KEY,
};
use crate::status::{ClusterStatus, ModelStatus, WorkerStatus};
use crate::wire;
use crate::{ClusterError, WORKER_TIMEOUT};
use async_nats::client::RequestErrorKind;
use async_nats::jetstream::kv::Operation;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use lectern_core::{ErrorCode, InferRequest, InferResponse, ModelConfig};
use lectern_manage::{ModelPlan, StoreSource};
use lectern_runtime::{LoadedModel, Placer, Registry, RuntimeError, SourceFuture, VersionState};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How a gateway uses the cluster.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub address: ClusterAddress,
    /// Longest wait for a worker's answer to one attempt.
    pub request_timeout: Duration,
    /// Further attempts after a timeout or a worker that cannot serve the request now.
    pub retries: usize,
    /// The object store's address, announced to workers started without `--objects`.
    pub objects: Option<String>,
    /// Longest a load (a push, a repository load) waits for a worker to report the model.
    pub load_wait: Duration,
}

/// A worker's last record and when it arrived here.
struct Seen {
    record: WorkerRecord,
    at: Instant,
}

/// What this gateway knows of the bucket.
#[derive(Default)]
struct View {
    workers: BTreeMap<String, Seen>,
    specs: BTreeMap<String, ModelSpec>,
    placement: PlacementMap,
    placement_revision: u64,
    /// Per model, what was last given to the registry (to give it only changes).
    applied: BTreeMap<String, String>,
}

/// A gateway joined to a cluster.
pub struct Gateway {
    settings: GatewaySettings,
    connection: Connection,
    plans: Arc<StoreSource>,
    registry: Weak<Registry>,
    view: Mutex<View>,
    invalid: AtomicU64,
    /// Wakes the placement loop.
    changed: tokio::sync::Notify,
    this: Weak<Gateway>,
    started: Instant,
}

/// How often placement is recomputed without an event (workers time out between events).
const TICK: Duration = Duration::from_millis(250);
/// A new gateway watches this long (more than a heartbeat) before it places anything, so that
/// it places on the workers that are alive, not on every record the bucket still holds.
const SETTLE: Duration = Duration::from_millis(1500);

impl Gateway {
    /// Joins the cluster (waiting for NATS), reads the bucket, and takes over `registry`:
    /// from now on its models are served by workers.
    pub async fn start(
        settings: GatewaySettings,
        plans: Arc<StoreSource>,
        registry: &Arc<Registry>,
    ) -> Result<Arc<Gateway>, ClusterError> {
        let connection = Connection::open(&settings.address, "lectern-gateway").await;
        if let Some(url) = &settings.objects {
            connection
                .bucket
                .put(OBJECTS_KEY, Bytes::from(url.clone()))
                .await
                .map_err(|e| ClusterError::Kv(e.to_string()))?;
        }
        let gateway = Arc::new_cyclic(|this| Gateway {
            settings,
            connection,
            plans,
            registry: Arc::downgrade(registry),
            view: Mutex::new(View::default()),
            invalid: AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
            this: this.clone(),
            started: Instant::now(),
        });
        let updates = gateway.connection.bucket.watch_all().await.map_err(|e| ClusterError::Kv(e.to_string()))?;
        gateway.read_bucket().await?;
        tokio::spawn(gateway.clone().follow(updates));
        tokio::spawn(gateway.clone().keep_placed());
        registry.serve_elsewhere(gateway.clone());
        tracing::info!(nats = %gateway.settings.address.shown(), cluster = %gateway.settings.address.name,
            "gateway joined the cluster: models are served by workers");
        Ok(gateway)
    }

    /// Reads every key once (the watch then brings the changes).
    async fn read_bucket(&self) -> Result<(), ClusterError> {
        let bucket = &self.connection.bucket;
        let mut keys = bucket.keys().await.map_err(|e| ClusterError::Kv(e.to_string()))?;
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| ClusterError::Kv(e.to_string()))?;
            if let Some(entry) = bucket.entry(key).await.map_err(|e| ClusterError::Kv(e.to_string()))? {
                // A record read now may be a dead worker's: it must change within SETTLE.
                let unproven = Instant::now().checked_sub(WORKER_TIMEOUT - SETTLE).unwrap_or_else(Instant::now);
                self.take(&entry, unproven);
            }
        }
        Ok(())
    }

    async fn follow(self: Arc<Self>, mut updates: async_nats::jetstream::kv::Watch) {
        loop {
            while let Some(entry) = updates.next().await {
                match entry {
                    Ok(entry) => {
                        self.take(&entry, Instant::now());
                        self.changed.notify_one();
                    }
                    Err(e) => tracing::warn!(error = %e, "cluster watch"),
                }
            }
            tracing::warn!("lost the cluster's updates; reading the bucket again");
            tokio::time::sleep(Duration::from_millis(500)).await;
            match self.connection.bucket.watch_all().await {
                Ok(w) => {
                    updates = w;
                    if let Err(e) = self.read_bucket().await {
                        tracing::warn!(error = %e, "cannot read the cluster's bucket");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot watch the cluster's bucket"),
            }
        }
    }

    /// Takes one entry of the bucket into the view; an entry that does not parse is counted.
    fn take(&self, entry: &async_nats::jetstream::kv::Entry, seen: Instant) {
        let put = entry.operation == Operation::Put;
        let mut view = self.lock();
        let key = entry.key.as_str();
        let bad = |e: &dyn std::fmt::Display| {
            self.invalid.fetch_add(1, Relaxed);
            tracing::warn!(key, error = %e, "ignored a cluster record that is not what Lectern writes");
        };
        if key == PLACEMENT_KEY {
            if entry.revision < view.placement_revision {
                return;
            }
            view.placement_revision = entry.revision;
            match (put, serde_json::from_slice::<PlacementMap>(&entry.value)) {
                (false, _) => view.placement = PlacementMap::default(),
                (true, Ok(map)) => view.placement = map,
                (true, Err(e)) => bad(&e),
            }
        } else if let Some(name) = key.strip_prefix("workers.") {
            match (put, serde_json::from_slice::<WorkerRecord>(&entry.value)) {
                (false, _) => {
                    if view.workers.remove(name).is_some() {
                        tracing::info!(worker = name, "worker left the cluster");
                    }
                }
                (true, Ok(record)) if record.name == name => {
                    if !view.workers.contains_key(name) {
                        tracing::info!(worker = name, labels = ?record.labels, "worker in the cluster");
                    }
                    view.workers.insert(name.to_string(), Seen { record, at: seen });
                }
                (true, Ok(_)) => bad(&"the record names another worker"),
                (true, Err(e)) => bad(&e),
            }
        } else if let Some(name) = key.strip_prefix("models.") {
            match (put, serde_json::from_slice::<ModelSpec>(&entry.value)) {
                (false, _) => {
                    view.specs.remove(name);
                }
                (true, Ok(spec)) if spec.name == name => {
                    view.specs.insert(name.to_string(), spec);
                }
                (true, Ok(_)) => bad(&"the definition names another model"),
                (true, Err(e)) => bad(&e),
            }
        } else if key != OBJECTS_KEY {
            bad(&"unknown key");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Recomputes placement on every change and every [`TICK`], and keeps the registry told.
    async fn keep_placed(self: Arc<Self>) {
        let mut settled_at = self.started + SETTLE;
        let mut was_connected = true;
        loop {
            let _ = tokio::time::timeout(TICK, self.changed.notified()).await;
            let connected = self.connection.client.connection_state() == async_nats::connection::State::Connected;
            if !connected {
                // Deaf to heartbeats: nothing this gateway sees says a worker is gone.
                was_connected = false;
                continue;
            }
            if !was_connected {
                // Back: the workers must show a heartbeat again before anything moves.
                was_connected = true;
                settled_at = Instant::now() + SETTLE;
                let unproven = Instant::now().checked_sub(WORKER_TIMEOUT - SETTLE).unwrap_or_else(Instant::now);
                for seen in self.lock().workers.values_mut() {
                    seen.at = seen.at.max(unproven);
                }
            }
            self.forget_silent_workers();
            // Placement waits until every live worker has shown a heartbeat to this gateway.
            if Instant::now() >= settled_at {
                self.write_placement().await;
            }
            self.apply();
        }
    }

    fn forget_silent_workers(&self) {
        let mut view = self.lock();
        let silent: Vec<String> =
            view.workers.iter().filter(|(_, s)| s.at.elapsed() > WORKER_TIMEOUT).map(|(n, _)| n.clone()).collect();
        for name in silent {
            tracing::warn!(worker = %name, "worker silent for {:?}: taken for gone", WORKER_TIMEOUT);
            view.workers.remove(&name);
        }
    }

    /// Writes the placement map when it changes (compare-and-set: a concurrent write by
    /// another gateway wins, and this one recomputes from it).
    async fn write_placement(&self) {
        let (next, revision) = {
            let view = self.lock();
            let workers: Vec<placement::Worker> = view
                .workers
                .values()
                .map(|s| placement::Worker {
                    name: s.record.name.clone(),
                    labels: s.record.labels.clone(),
                    memory_bytes: s.record.memory_bytes,
                    inflight: s.record.inflight,
                })
                .collect();
            let demands: Vec<Demand> = view.specs.values().filter_map(demand).collect();
            let next = placement::place(&view.placement, &workers, &demands);
            if next == view.placement {
                return;
            }
            (next, view.placement_revision)
        };
        let value = Bytes::from(serde_json::to_vec(&next).expect("serialising to a Vec cannot fail"));
        let bucket = &self.connection.bucket;
        let written = if revision == 0 {
            bucket.create(PLACEMENT_KEY, value).await.map_err(|e| e.to_string())
        } else {
            bucket.update(PLACEMENT_KEY, value, revision).await.map_err(|e| e.to_string())
        };
        match written {
            Ok(revision) => {
                let mut view = self.lock();
                if revision > view.placement_revision {
                    log_moves(&view.placement, &next);
                    view.placement = next;
                    view.placement_revision = revision;
                }
            }
            Err(e) => tracing::debug!(error = %e, "placement written by another gateway first"),
        }
    }

    /// Tells the registry, model by model, what the workers serve now.
    fn apply(&self) {
        let Some(registry) = self.registry.upgrade() else { return };
        let mut view = self.lock();
        let mut changes = Vec::new();
        for (name, spec) in &view.specs {
            let (versions, reason, fingerprint) = served(&view, name, spec);
            if view.applied.get(name) != Some(&fingerprint) {
                changes.push((name.clone(), versions, spec.default_version, reason, fingerprint));
            }
        }
        let withdrawn: Vec<String> = view.applied.keys().filter(|n| !view.specs.contains_key(*n)).cloned().collect();
        for name in withdrawn {
            view.applied.remove(&name);
            registry.forget_served_elsewhere(&name);
        }
        for (name, versions, default_version, reason, fingerprint) in changes {
            let states = versions
                .into_iter()
                .map(|(v, state)| {
                    let state = match state {
                        Served::Ready(remote) => {
                            let metrics = registry.metrics().model(&name, &v.to_string());
                            let this = self.this.upgrade().expect("the gateway outlives its tasks");
                            VersionState::Ready(Arc::new(LoadedModel::remote(remote, metrics, this)))
                        }
                        Served::Not(reason) => VersionState::Unavailable(reason),
                    };
                    (v, state)
                })
                .collect();
            registry.set_served_elsewhere(&name, states, default_version, reason);
            view.applied.insert(name, fingerprint);
        }
    }

    /// Defines `name` for the workers from the store, and waits (up to the load wait) for a
    /// worker that can serve it to report how its load went.
    async fn define(&self, name: &str) -> Result<(), RuntimeError> {
        let spec = self.publish(name).await?;
        let Err(RuntimeError::LoadFailed(model, reason)) = self.wait_loaded(name, &spec.digest()).await else {
            return Ok(());
        };
        // As on one process: the versions that failed are recorded as failing, so that the
        // store's policy selects the newest healthy ones, which are placed instead; the load
        // still answers that it failed.
        let ready = self.ready_artifacts(name);
        let failing: Vec<(u64, Result<(), String>)> = spec
            .versions
            .iter()
            .filter(|v| !ready.contains(&v.sha256))
            .map(|v| (v.version, Err(reason.clone())))
            .collect();
        if !failing.is_empty() {
            lectern_runtime::ModelSource::loaded(&*self.plans, name, failing).await;
            if let Ok(fallback) = self.publish(name).await {
                if fallback != spec {
                    let _ = self.wait_loaded(name, &fallback.digest()).await;
                }
            }
        }
        Err(RuntimeError::LoadFailed(model, reason))
    }

    /// The artifacts (SHA-256) of the model's versions that some worker serves now.
    fn ready_artifacts(&self, name: &str) -> Vec<String> {
        let view = self.lock();
        view.workers
            .values()
            .filter_map(|s| s.record.models.get(name))
            .flat_map(|m| m.versions.values().filter(|v| v.ready).map(|v| v.sha256.clone()))
            .collect()
    }

    /// Writes the model's definition as the store has it now (when it changed); returns it.
    async fn publish(&self, name: &str) -> Result<ModelSpec, RuntimeError> {
        let plan = self
            .plans
            .plan(name)
            .await
            .map_err(|source| RuntimeError::SourceFailed { model: name.to_string(), source })?;
        let Some(plan) = plan else { return Err(RuntimeError::ModelNotFound(name.to_string())) };
        let spec = spec_of(name, plan);
        let value = Bytes::from(serde_json::to_vec(&spec).expect("serialising to a Vec cannot fail"));
        if self.lock().specs.get(name) != Some(&spec) {
            self.connection.bucket.put(model_key(name), value).await.map_err(|e| {
                RuntimeError::NoReplica(name.to_string(), format!("cannot write its definition to the cluster: {e}"))
            })?;
            self.lock().specs.insert(name.to_string(), spec.clone());
            self.changed.notify_one();
        }
        Ok(spec)
    }

    async fn wait_loaded(&self, name: &str, digest: &str) -> Result<(), RuntimeError> {
        let started = Instant::now();
        while started.elapsed() < self.settings.load_wait {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let view = self.lock();
            let Some(placed) = view.placement.models.get(name) else { continue };
            if placed.workers.is_empty() && !view.workers.is_empty() && view.placement_revision > 0 {
                return Ok(()); // no worker can serve it: the index says why
            }
            // A worker that tried this definition has decided every version of it.
            let reports: Vec<&crate::records::ServedModel> = placed
                .workers
                .iter()
                .filter_map(|w| view.workers.get(w))
                .filter_map(|s| s.record.models.get(name))
                .filter(|m| m.tried == digest)
                .collect();
            if reports.iter().any(|m| m.failed.is_empty() && m.digest == digest) {
                return Ok(());
            }
            if let Some(failed) = reports.iter().find(|m| !m.failed.is_empty()) {
                // The worker's message names the model; the error adds it again.
                let prefix = format!("failed to load model '{name}': ");
                let reason = failed.failed.strip_prefix(&prefix).unwrap_or(&failed.failed).to_string();
                return Err(RuntimeError::LoadFailed(name.to_string(), reason));
            }
            if view.workers.is_empty() {
                return Ok(()); // nothing to wait for
            }
        }
        tracing::warn!(
            model = name,
            "no worker reported the model within {:?}; it serves when one does",
            self.settings.load_wait
        );
        Ok(())
    }

    async fn withdraw_model(&self, name: &str) {
        if let Err(e) = self.connection.bucket.delete(model_key(name)).await {
            tracing::warn!(model = name, error = %e, "cannot withdraw the model from the cluster");
        }
        self.lock().specs.remove(name);
        self.changed.notify_one();
    }

    /// Sends one request to the model's workers: bounded retries after a timeout or an answer
    /// that says the worker cannot serve it now (inference is idempotent).
    async fn send(&self, model: &str, version: u64, request: InferRequest) -> Result<InferResponse, RuntimeError> {
        let (body, json_len) = wire::encode_request(&request);
        let body = Bytes::from(body);
        let subject = infer_subject(&self.connection.name, model);
        let mut headers = HeaderMap::new();
        headers.insert(wire::JSON_LENGTH, json_len.to_string().as_str());
        headers.insert(wire::VERSION, version.to_string().as_str());
        let timeout = self.settings.request_timeout;
        let mut last = None;
        for _attempt in 0..=self.settings.retries {
            let sent = async_nats::Request::new().payload(body.clone()).headers(headers.clone()).timeout(Some(timeout));
            match self.connection.client.send_request(subject.clone(), sent).await {
                Ok(answer) => match self.read_answer(model, answer) {
                    Err(e) if retry_elsewhere(&e) => last = Some(e),
                    other => return other,
                },
                Err(e) => match e.kind() {
                    RequestErrorKind::MaxPayloadExceeded => {
                        return Err(RuntimeError::Remote {
                            code: ErrorCode::PayloadTooLarge,
                            message: format!(
                                "the request ({} bytes as sent to a worker) is larger than NATS's max_payload of {} \
                                 bytes: raise max_payload in the NATS server's configuration",
                                body.len(),
                                self.connection.client.max_payload()
                            ),
                        })
                    }
                    RequestErrorKind::NoResponders => {
                        return Err(RuntimeError::NoReplica(model.to_string(), "no worker serves it now".into()))
                    }
                    RequestErrorKind::TimedOut => {
                        last = Some(RuntimeError::Remote {
                            code: ErrorCode::UpstreamTimeout,
                            message: format!("no worker answered for model '{model}' within {timeout:?}"),
                        })
                    }
                    _ => {
                        last = Some(RuntimeError::NoReplica(
                            model.to_string(),
                            format!("the cluster cannot be reached: {e}"),
                        ));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn read_answer(&self, model: &str, answer: async_nats::Message) -> Result<InferResponse, RuntimeError> {
        let header = |name: &str| answer.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        if let Some(code) = header(wire::ERROR) {
            let message = String::from_utf8_lossy(&answer.payload).into_owned();
            return Err(RuntimeError::Remote { code: wire::error_code(&code), message });
        }
        let malformed = |what: String| {
            self.invalid.fetch_add(1, Relaxed);
            RuntimeError::Remote {
                code: ErrorCode::UpstreamError,
                message: format!("the worker serving model '{model}' sent {what}"),
            }
        };
        let json_len = header(wire::JSON_LENGTH).and_then(|v| v.parse::<usize>().ok());
        let Some(json_len) = json_len else { return Err(malformed("an answer with no header length".into())) };
        let flags = header(wire::BINARY).unwrap_or_default();
        wire::decode_response(&answer.payload, json_len, &flags).map_err(|e| malformed(e.to_string()))
    }

    /// What `GET /v1/cluster` shows.
    pub fn status(&self) -> ClusterStatus {
        let view = self.lock();
        let workers = view.workers.values().map(|s| WorkerStatus::of(&s.record, s.at.elapsed())).collect();
        let models = view
            .specs
            .values()
            .map(|spec| {
                let placed = view.placement.models.get(&spec.name).cloned().unwrap_or_default();
                let demand = demand(spec);
                let digest = spec.digest();
                let ready_on = placed
                    .workers
                    .iter()
                    .filter(|w| {
                        view.workers
                            .get(*w)
                            .and_then(|s| s.record.models.get(&spec.name))
                            .is_some_and(|m| m.digest == digest && m.versions.values().any(|v| v.ready))
                    })
                    .cloned()
                    .collect();
                ModelStatus {
                    name: spec.name.clone(),
                    replicas: demand.as_ref().map(|d| d.replicas).unwrap_or(1),
                    placement: demand.map(|d| d.placement).unwrap_or_default(),
                    workers: placed.workers,
                    ready_on,
                    reason: placed.reason,
                }
            })
            .collect();
        ClusterStatus {
            cluster: self.connection.name.clone(),
            nats: self.settings.address.shown(),
            connected: self.connection.client.connection_state() == async_nats::connection::State::Connected,
            workers,
            models,
            invalid_messages: self.invalid.load(Relaxed),
        }
    }
}

/// A version as the registry is to hold it.
enum Served {
    Ready(lectern_runtime::RemoteVersion),
    Not(String),
}

/// What the workers serve of a model now; the reason when none serves it; and a fingerprint
/// of both (equal fingerprints: nothing changed).
fn served(view: &View, name: &str, spec: &ModelSpec) -> (BTreeMap<u64, Served>, Option<String>, String) {
    let digest = spec.digest();
    let placed = view.placement.models.get(name);
    let assigned: Vec<&Seen> =
        placed.map(|p| p.workers.iter().filter_map(|w| view.workers.get(w)).collect()).unwrap_or_default();
    let mut versions = BTreeMap::new();
    let mut fingerprint = digest.clone();
    for wanted in &spec.versions {
        let v = wanted.version;
        // A version loaded from the same artifact serves while a changed definition loads.
        let reports: Vec<(&str, &crate::records::ServedVersion)> = assigned
            .iter()
            .filter_map(|s| {
                let m = s.record.models.get(name)?;
                let version = m.versions.get(&v).filter(|r| r.sha256 == wanted.sha256)?;
                (version.ready || m.digest == digest).then_some((s.record.name.as_str(), version))
            })
            .collect();
        let ready = reports.iter().find_map(|(_, s)| s.ready.then_some(()).and(s.meta.as_ref()));
        let state = match ready.and_then(|meta| meta.to_remote(name, v)) {
            Some(remote) => {
                fingerprint.push_str(&format!(
                    "|{v}:ready:{}",
                    serde_json::to_string(&crate::records::VersionMeta::of(&remote)).unwrap_or_default()
                ));
                Served::Ready(remote)
            }
            None => {
                let reason = match (reports.iter().find(|(_, s)| !s.ready), assigned.first()) {
                    (Some((w, s)), _) => format!("on worker {w}: {}", s.reason),
                    (None, Some(s)) => format!("loading on worker {}", s.record.name),
                    (None, None) => placed
                        .map(|p| p.reason.clone())
                        .filter(|r| !r.is_empty())
                        .unwrap_or_else(|| "waiting for a worker".into()),
                };
                fingerprint.push_str(&format!("|{v}:{reason}"));
                Served::Not(reason)
            }
        };
        versions.insert(v, state);
    }
    let none_ready = !versions.values().any(|s| matches!(s, Served::Ready(_)));
    // With no worker at all for it, the model lists no versions: requests are told why.
    let unplaced = assigned.is_empty();
    let reason = if none_ready && unplaced {
        let why =
            placed.map(|p| p.reason.clone()).filter(|r| !r.is_empty()).unwrap_or_else(|| "waiting for a worker".into());
        fingerprint.push_str(&format!("|none:{why}"));
        versions.clear();
        Some(why)
    } else {
        None
    };
    (versions, reason, fingerprint)
}

/// The placement a model's definition asks for; `None` when its config does not parse (it
/// was checked when stored, so only a definition Lectern did not write).
fn demand(spec: &ModelSpec) -> Option<Demand> {
    let config = ModelConfig::parse(&spec.config, &spec.name).ok()?;
    Some(Demand {
        name: spec.name.clone(),
        placement: config.placement,
        replicas: config.replicas.unwrap_or(1),
        memory_bytes: spec.memory_bytes(),
    })
}

fn spec_of(name: &str, plan: ModelPlan) -> ModelSpec {
    ModelSpec {
        name: name.to_string(),
        config: plan.config_text,
        labels: plan.labels,
        default_version: plan.default_version,
        versions: plan
            .versions
            .into_iter()
            .map(|v| SpecVersion { version: v.version, key: v.object_key, sha256: v.sha256, size: v.size })
            .collect(),
    }
}

/// Whether an answer says the worker cannot serve the request now, so another may.
fn retry_elsewhere(e: &RuntimeError) -> bool {
    match e {
        // A full queue is back-pressure: sending the request elsewhere would defeat it.
        RuntimeError::Remote { code, .. } => {
            (code.is_retryable() && *code != ErrorCode::QueueFull) || *code == ErrorCode::ModelNotFound
        }
        _ => false,
    }
}

fn log_moves(before: &PlacementMap, after: &PlacementMap) {
    for (model, placed) in &after.models {
        let was = before.models.get(model).map(|p| p.workers.clone()).unwrap_or_default();
        if was != placed.workers {
            tracing::info!(model = %model, workers = ?placed.workers, was = ?was, reason = %placed.reason, "placed");
        }
    }
}

impl Placer for Gateway {
    fn place<'a>(&'a self, name: &'a str) -> SourceFuture<'a, Result<(), RuntimeError>> {
        Box::pin(self.define(name))
    }

    fn withdraw<'a>(&'a self, name: &'a str) -> SourceFuture<'a, ()> {
        Box::pin(self.withdraw_model(name))
    }

    fn keep_only<'a>(&'a self, names: &'a [String]) -> SourceFuture<'a, ()> {
        Box::pin(async move {
            let stale: Vec<String> = self.lock().specs.keys().filter(|n| !names.contains(n)).cloned().collect();
            for name in stale {
                tracing::info!(model = %name, "withdrawing a definition the store does not have");
                self.withdraw_model(&name).await;
            }
        })
    }
}

impl lectern_runtime::Remote for Gateway {
    fn infer<'a>(
        &'a self,
        model: &'a str,
        version: u64,
        request: InferRequest,
    ) -> SourceFuture<'a, Result<InferResponse, RuntimeError>> {
        Box::pin(self.send(model, version, request))
    }
}
