//! The connection to NATS and the cluster's key-value bucket.

use crate::ClusterError;
use async_nats::jetstream;
use async_nats::jetstream::kv;
use std::time::Duration;

/// Where a cluster lives: the NATS server and the cluster's name (its bucket and the prefix of
/// its subjects, so that several clusters can share one NATS).
#[derive(Debug, Clone)]
pub struct ClusterAddress {
    pub url: String,
    pub name: String,
}

/// Default cluster name.
pub const DEFAULT_NAME: &str = "lectern";

impl ClusterAddress {
    pub fn new(url: impl Into<String>, name: Option<String>) -> Result<Self, ClusterError> {
        let name = name.unwrap_or_else(|| DEFAULT_NAME.to_string());
        if !crate::records::valid_worker_name(&name) {
            return Err(ClusterError::Invalid(format!(
                "invalid cluster name '{name}': use letters, digits, '-' and '_' (at most 64)"
            )));
        }
        Ok(ClusterAddress { url: url.into(), name })
    }

    /// The server's address without any user name or password (for logs and errors).
    pub fn shown(&self) -> String {
        redact(&self.url)
    }
}

/// `nats://user:pass@host:4222` → `nats://host:4222`.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").map(|(s, r)| (format!("{s}://"), r)).unwrap_or_default();
    let rest = if scheme.is_empty() { url } else { rest };
    let host = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    format!("{scheme}{host}")
}

/// The user and password (or the token) in `scheme://user:password@host`.
fn credentials(url: &str) -> Option<(String, Option<String>)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (userinfo, _) = rest.rsplit_once('@')?;
    match userinfo.split_once(':') {
        Some((user, password)) => Some((user.to_string(), Some(password.to_string()))),
        None => Some((userinfo.to_string(), None)),
    }
}

/// A live connection: the client, and the cluster's bucket.
#[derive(Clone)]
pub struct Connection {
    pub client: async_nats::Client,
    pub bucket: kv::Store,
    pub name: String,
}

/// Longest wait between two attempts to reach NATS.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Connection {
    /// Connects, retrying with backoff (and a log line each time) until NATS answers; once
    /// connected, the client reconnects by itself for ever.
    pub async fn open(address: &ClusterAddress, client_name: &str) -> Connection {
        let mut backoff = Duration::from_millis(250);
        loop {
            match Self::try_open(address, client_name).await {
                Ok(connection) => return connection,
                Err(e) => {
                    tracing::warn!(nats = %address.shown(), error = %e, retry_in = ?backoff,
                        "cannot reach the cluster; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn try_open(address: &ClusterAddress, client_name: &str) -> Result<Connection, ClusterError> {
        // Credentials go to the client apart from the address, which is then safe to log.
        let mut options = match credentials(&address.url) {
            Some((user, Some(password))) => async_nats::ConnectOptions::with_user_and_password(user, password),
            Some((token, None)) => async_nats::ConnectOptions::with_token(token),
            None => async_nats::ConnectOptions::new(),
        };
        options = options.name(client_name);
        let client = options
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
                    async_nats::Event::Connected => tracing::info!("connected to NATS"),
                    other => tracing::debug!(event = %other, "NATS"),
                }
            })
            .connect(address.shown().as_str())
            .await
            .map_err(|e| ClusterError::Unreachable(redact(&e.to_string())))?;
        let bucket = open_bucket(&client, &address.name).await?;
        Ok(Connection { client, bucket, name: address.name.clone() })
    }
}

/// The cluster's bucket, created when missing. The stream is made by hand, as a key-value
/// bucket's stream is, so that servers older than the client's account query (2.9) serve it.
async fn open_bucket(client: &async_nats::Client, name: &str) -> Result<kv::Store, ClusterError> {
    let js = jetstream::new(client.clone());
    let bucket_error = |e: &dyn std::fmt::Display| ClusterError::Bucket(format!("bucket '{name}': {e}"));
    js.get_or_create_stream(jetstream::stream::Config {
        name: format!("KV_{name}"),
        description: Some("Lectern cluster: workers, models, placement".into()),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        storage: jetstream::stream::StorageType::File,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .map_err(|e| bucket_error(&e))?;
    js.get_key_value(name).await.map_err(|e| bucket_error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_addresses_hold_no_credentials() {
        assert_eq!(redact("nats://alice:s3cret@nats.example:4222"), "nats://nats.example:4222");
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact("tok3n@host:4222"), "host:4222");
        assert!(ClusterAddress::new("nats://x", Some("a.b".into())).is_err());
        assert_eq!(credentials("nats://alice:s3cret@h:4222"), Some(("alice".into(), Some("s3cret".into()))));
        assert_eq!(credentials("nats://tok@h:4222"), Some(("tok".into(), None)));
        assert_eq!(credentials("nats://h:4222"), None);
    }
}
