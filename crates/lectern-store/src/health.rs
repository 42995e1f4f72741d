//! Whether the database answers, known without asking it on every request.
//!
//! An operation that cannot reach the database marks it down; while it is down, operations
//! fail at once (no connection attempt, no wait for the pool) and a background probe pings it
//! every [`PROBE_EVERY`] until it answers. Readiness asks [`Health::available`], which pings
//! at most once per [`PING_EVERY`] while the database is up.

use sqlx::AnyPool;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a database known to be down is probed.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long a readiness answer is trusted.
const PING_EVERY: Duration = Duration::from_secs(1);
/// How long a ping may take before the database counts as unavailable.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(crate) struct Health {
    down: AtomicBool,
    /// A recovery probe is running.
    probing: AtomicBool,
    /// When readiness last pinged.
    last_ping: tokio::sync::Mutex<Option<Instant>>,
}

impl Health {
    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Records that the database could not be reached, and starts the probe that notices it
    /// coming back.
    pub(crate) fn mark_down(self: &Arc<Self>, pool: &AnyPool, cause: &dyn std::fmt::Display) {
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(error = %cause, "the database is unavailable; answering 503 until it is back");
        }
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.probing.store(false, Ordering::Release);
            return;
        };
        let (health, pool) = (self.clone(), pool.clone());
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                if pool.is_closed() || ping(&pool).await {
                    break;
                }
            }
            health.down.store(false, Ordering::Release);
            health.probing.store(false, Ordering::Release);
            tracing::info!("the database is available again");
        });
    }

    /// True when the database answers: the cached answer, refreshed by a ping at most once a
    /// second while it is up (while it is down, the probe refreshes it).
    pub(crate) async fn available(self: &Arc<Self>, pool: &AnyPool) -> bool {
        if self.is_down() {
            return false;
        }
        let Ok(mut last) = self.last_ping.try_lock() else { return true };
        if last.is_some_and(|at| at.elapsed() < PING_EVERY) {
            return true;
        }
        let up = ping(pool).await;
        *last = Some(Instant::now());
        if !up {
            self.mark_down(pool, &"a health check got no answer");
        }
        up
    }
}

/// One round trip, bounded in time.
pub(crate) async fn ping(pool: &AnyPool) -> bool {
    matches!(tokio::time::timeout(PING_TIMEOUT, sqlx::query("SELECT 1").execute(pool)).await, Ok(Ok(_)))
}
