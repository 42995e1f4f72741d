//! What `GET /v1/cluster` and `lectern cluster status` show.

use crate::records::WorkerRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterStatus {
    /// The cluster's name (its bucket and subject prefix).
    pub cluster: String,
    /// The NATS server, without credentials.
    pub nats: String,
    /// Whether this gateway is connected to NATS now.
    pub connected: bool,
    pub workers: Vec<WorkerStatus>,
    pub models: Vec<ModelStatus>,
    /// Cluster messages and records that were not what Lectern sends (ignored).
    pub invalid_messages: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerStatus {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub memory_bytes: u64,
    pub used_bytes: u64,
    pub cores: usize,
    /// Requests being answered now.
    pub inflight: u64,
    pub answered: u64,
    pub invalid_messages: u64,
    /// Milliseconds since its last record arrived.
    pub last_seen_ms: u64,
    /// The models it serves (ready) and those it holds but cannot serve, with why.
    pub models: Vec<String>,
    pub failing: BTreeMap<String, String>,
}

impl WorkerStatus {
    pub fn of(record: &WorkerRecord, since: Duration) -> Self {
        let mut models = Vec::new();
        let mut failing = BTreeMap::new();
        for (name, served) in &record.models {
            if served.versions.values().any(|v| v.ready) {
                models.push(name.clone());
            }
            let reasons: Vec<String> = served
                .versions
                .iter()
                .filter(|(_, v)| !v.ready)
                .map(|(n, v)| format!("version {n}: {}", v.reason))
                .chain((!served.reason.is_empty() && served.versions.is_empty()).then(|| served.reason.clone()))
                .collect();
            if !reasons.is_empty() {
                failing.insert(name.clone(), reasons.join("; "));
            }
        }
        WorkerStatus {
            name: record.name.clone(),
            labels: record.labels.clone(),
            memory_bytes: record.memory_bytes,
            used_bytes: record.used_bytes,
            cores: record.cores,
            inflight: record.inflight,
            answered: record.answered,
            invalid_messages: record.invalid_messages,
            last_seen_ms: since.as_millis() as u64,
            models,
            failing,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelStatus {
    pub name: String,
    pub replicas: usize,
    /// Labels a worker must carry to serve it.
    pub placement: BTreeMap<String, String>,
    /// The workers it is placed on.
    pub workers: Vec<String>,
    /// Those of them that serve it now.
    pub ready_on: Vec<String>,
    /// Why fewer workers than asked serve it.
    pub reason: String,
}
