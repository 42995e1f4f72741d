//! API keys (the `api_keys` table): `lk_<id>_<secret>`. Only the SHA-256 of the whole key is
//! stored; the key is shown once, at creation. Keys are 192 random bits, so a fast hash is
//! enough (nothing to brute-force).

use crate::audit::audit;
use crate::{now_ms, Store, StoreError};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

/// What a credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Inference only.
    Client,
    /// Models and training.
    Trainer,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Trainer => "trainer",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "client" => Ok(Role::Client),
            "trainer" => Ok(Role::Trainer),
            "admin" => Ok(Role::Admin),
            other => Err(StoreError::Invalid(format!("unknown role '{other}' (admin, trainer or client)"))),
        }
    }
}

/// A stored key, without its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// Public id: also the second part of the key text.
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

const PREFIX: &str = "lk_";

/// A new key: (id, full key text).
pub(crate) fn generate() -> Result<(String, String), StoreError> {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 24];
    getrandom::getrandom(&mut id).map_err(StoreError::Randomness)?;
    getrandom::getrandom(&mut secret).map_err(StoreError::Randomness)?;
    let id = hex(&id);
    let key = format!("{PREFIX}{id}_{}", hex(&secret));
    Ok((id, key))
}

/// The id part of a presented key, if it has the key's form.
pub(crate) fn id_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && secret.len() == 48).then_some(id)
}

/// The SHA-256 of a key text: what is stored, and a safe name for it in caches.
pub fn fingerprint(key: &str) -> String {
    hash(key)
}

pub(crate) fn hash(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// Compares two hashes in time that does not depend on where they differ.
pub(crate) fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lower-case hex of bytes (key ids and secrets here; artifact checksums in lectern-manage).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Creates a key; returns it with its full text, which is never stored or shown again.
    pub async fn create_key(&self, actor: &str, name: &str, role: Role) -> Result<(ApiKey, String), StoreError> {
        let (id, key) = generate()?;
        self.run(async {
            let mut tx = self.write_tx().await?;
            sqlx::query(
                "INSERT INTO api_keys (id, name, role, hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, NULL)",
            )
            .bind(&id)
            .bind(name)
            .bind(role.as_str())
            .bind(hash(&key))
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            audit(&mut tx, actor, "key.create", &id, &format!("name {name} role {}", role.as_str())).await?;
            tx.commit().await?;
            let record = self.key(&id).await?.expect("just inserted");
            Ok((record, key))
        })
        .await
    }

    /// Every key (revoked ones too), oldest first.
    pub async fn keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        self.run(async {
            let rows =
                sqlx::query("SELECT id, name, role, created_at, revoked_at FROM api_keys ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await?;
            rows.iter().map(key_row).collect()
        })
        .await
    }

    async fn key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let row = sqlx::query("SELECT id, name, role, created_at, revoked_at FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_row).transpose()
    }

    /// Revokes a key: it stops working at once.
    pub async fn revoke_key(&self, actor: &str, id: &str) -> Result<(), StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now_ms())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::KeyNotFound(id.to_string()));
            }
            // The dashboard sessions signed in with the key end with it.
            sqlx::query("DELETE FROM web_sessions WHERE actor = $1")
                .bind(format!("key:{id}"))
                .execute(&mut *tx)
                .await?;
            audit(&mut tx, actor, "key.revoke", id, "").await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// The live key a presented key text belongs to, if any.
    pub async fn verify_key(&self, presented: &str) -> Result<Option<ApiKey>, StoreError> {
        let Some(id) = id_of(presented) else { return Ok(None) };
        self.run(async {
            let row = sqlx::query("SELECT id, name, role, created_at, revoked_at, hash FROM api_keys WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            let Some(row) = row else { return Ok(None) };
            let stored: String = row.try_get("hash")?;
            let key = key_row(&row)?;
            Ok((same_hash(&stored, &hash(presented)) && key.revoked_at_ms.is_none()).then_some(key))
        })
        .await
    }

    /// True when at least one key is live.
    pub async fn has_keys(&self) -> Result<bool, StoreError> {
        self.run(async {
            let row: (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL").fetch_one(&self.pool).await?;
            Ok(row.0 > 0)
        })
        .await
    }
}

fn key_row(r: &AnyRow) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: r.try_get::<String, _>("role")?.parse()?,
        created_at_ms: r.try_get("created_at")?,
        revoked_at_ms: r.try_get("revoked_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_hash_stably() {
        let (id, key) = generate().unwrap();
        assert_eq!(id_of(&key), Some(id.as_str()));
        assert!(same_hash(&hash(&key), &hash(&key)));
        assert!(!same_hash(&hash(&key), &hash("lk_x")));
        assert_eq!(id_of("lk_short_x"), None);
        assert_eq!("admin".parse::<Role>().unwrap(), Role::Admin);
        assert!("root".parse::<Role>().is_err());
    }
}
