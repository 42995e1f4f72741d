//! Changes made by other processes on the same PostgreSQL database (several gateways). Every
//! audited change is announced with `NOTIFY` inside its own transaction (so only committed
//! changes are heard); [`Changes`] hears the other processes' ones. SQLite has one process.

use crate::{Store, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use std::sync::OnceLock;
use std::time::Duration;

/// The `NOTIFY` channel.
pub const CHANNEL: &str = "lectern_changes";

/// This process, as its notifications name it (it does not follow its own changes).
pub(crate) fn origin() -> &'static str {
    static ORIGIN: OnceLock<String> = OnceLock::new();
    ORIGIN.get_or_init(|| {
        let mut bytes = [0u8; 8];
        getrandom::getrandom(&mut bytes).expect("the system's random source works");
        crate::hex(&bytes)
    })
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Notice {
    pub origin: String,
    pub action: String,
    pub target: String,
}

/// A change another process made, or word that some may have been missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An audited action (`model.create`, `version.create`, `key.revoke`, `pipeline.put`...)
    /// and what it named.
    Made { action: String, target: String },
    /// The connection was lost and made again: changes in between were not heard.
    Missed,
}

/// The other processes' changes, as they commit.
pub struct Changes {
    listener: PgListener,
    /// The connection broke since the last change given: some may have been missed.
    broken: bool,
}

impl Store {
    /// Hears the changes other processes make on this database; `None` on SQLite.
    pub async fn changes(&self) -> Result<Option<Changes>, StoreError> {
        let Some(url) = &self.listen_url else { return Ok(None) };
        let mut listener = PgListener::connect(url).await?;
        listener.listen(CHANNEL).await?;
        Ok(Some(Changes { listener, broken: false }))
    }
}

impl Changes {
    /// The next change another process made (waits for it; reconnects when the connection
    /// drops, answering [`Change::Missed`] once it is back).
    pub async fn next(&mut self) -> Change {
        loop {
            let received = self.listener.try_recv().await;
            if received.is_ok() && std::mem::take(&mut self.broken) {
                return Change::Missed;
            }
            match received {
                Ok(Some(notification)) => {
                    let Ok(notice) = serde_json::from_str::<Notice>(notification.payload()) else { continue };
                    if notice.origin == origin() {
                        continue;
                    }
                    return Change::Made { action: notice.action, target: notice.target };
                }
                Ok(None) => return Change::Missed,
                Err(e) => {
                    self.broken = true;
                    tracing::warn!(error = %e, "lost the database's change notifications; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}
