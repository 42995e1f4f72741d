//! Scale-out over NATS. `lectern worker` processes join a cluster by its NATS address and name:
//! each announces itself (labels, memory, load) in the cluster's JetStream key-value bucket
//! every heartbeat, serves the models placed on it (artifacts fetched from the object store and
//! checked by SHA-256), and answers their inference requests as one queue group per model.
//! Gateways (`lectern serve --nats`) keep the models' definitions and the placement map in the
//! same bucket and send inference to the workers by NATS request/reply. Nothing here knows
//! about HTTP.

pub mod conn;
pub mod gateway;
pub mod placement;
pub mod records;
pub mod source;
pub mod status;
pub mod wire;
pub mod worker;

pub use conn::{ClusterAddress, Connection};
pub use gateway::{Gateway, GatewaySettings};
pub use status::ClusterStatus;
pub use worker::{WorkerSettings, WorkerStats};

use std::time::Duration;

/// How often a worker writes its record.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A worker whose record has not changed for this long is taken for gone.
pub const WORKER_TIMEOUT: Duration = Duration::from_secs(3);

/// What can go wrong joining or running a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach NATS: {0}")]
    Unreachable(String),
    #[error("cannot use the cluster's key-value {0}")]
    Bucket(String),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "a worker named '{0}' is already in the cluster (another process wrote its record within the last \
         {1} ms); give this one another --name"
    )]
    DuplicateName(String, u128),
    #[error("cluster key-value: {0}")]
    Kv(String),
    #[error("cannot subscribe: {0}")]
    Subscribe(String),
}

/// A random 64-bit identifier in hex.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).expect("the system's random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
