//! API keys and the audit log: the management operations behind `/v1/keys` and `/v1/audit`.

use crate::{ManageError, Manager};
use lectern_store::{ApiKey, AuditEntry, Role};

impl Manager {
    /// Makes a key; returns it with its secret text (shown once, stored only as a hash).
    pub async fn create_key(&self, actor: &str, name: &str, role: Role) -> Result<(ApiKey, String), ManageError> {
        Ok(self.store().create_key(actor, name, role).await?)
    }

    /// Every key (revoked ones included), without secrets.
    pub async fn keys(&self) -> Result<Vec<ApiKey>, ManageError> {
        Ok(self.store().keys().await?)
    }

    /// Revokes a key; returns whether any live key remains (none: checks turn off).
    pub async fn revoke_key(&self, actor: &str, id: &str) -> Result<bool, ManageError> {
        self.store().revoke_key(actor, id).await?;
        Ok(self.store().has_keys().await?)
    }

    /// The key whose secret text is `presented`, if it is live.
    pub async fn verify_key(&self, presented: &str) -> Result<Option<ApiKey>, ManageError> {
        Ok(self.store().verify_key(presented).await?)
    }

    /// The newest `limit` audit entries.
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, ManageError> {
        Ok(self.store().audit_log(limit).await?)
    }
}
