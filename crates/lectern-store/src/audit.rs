//! The `audit_log` table: who changed what, written in the transaction of each change.

use crate::records::AuditEntry;
use crate::{now_ms, Store, StoreError};
use sqlx::{Any, Row, Transaction};

impl Store {
    /// Records an action that changes no row (a repository load or unload).
    pub async fn record(&self, actor: &str, action: &str, target: &str, detail: &str) -> Result<(), StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            audit(&mut tx, actor, action, target, detail).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// The newest `limit` audit entries, newest first.
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.run(async {
            let rows =
                sqlx::query("SELECT id, at, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT $1")
                    .bind(limit as i64)
                    .fetch_all(&self.pool)
                    .await?;
            rows.iter()
                .map(|r| {
                    Ok(AuditEntry {
                        id: r.try_get("id")?,
                        at_ms: r.try_get("at")?,
                        actor: r.try_get("actor")?,
                        action: r.try_get("action")?,
                        target: r.try_get("target")?,
                        detail: r.try_get("detail")?,
                    })
                })
                .collect()
        })
        .await
    }
}

/// Writes one audit row inside the change's transaction.
pub(crate) async fn audit(
    tx: &mut Transaction<'_, Any>,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(now_ms())
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail)
        .execute(&mut **tx)
        .await?;
    if tx.backend_name() == "PostgreSQL" {
        // Heard by the other processes on this database when the change commits.
        let notice = crate::changes::Notice {
            origin: crate::changes::origin().to_string(),
            action: action.to_string(),
            target: target.to_string(),
        };
        let payload = serde_json::to_string(&notice).expect("serialising to a String cannot fail");
        sqlx::query("SELECT pg_notify($1, $2)").bind(crate::changes::CHANNEL).bind(payload).execute(&mut **tx).await?;
    }
    Ok(())
}
