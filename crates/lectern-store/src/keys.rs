//! API keys: `lk_<id>_<secret>`. Only the SHA-256 of the whole key is stored; the key is shown
//! once, at creation. Keys are 192 random bits, so a fast hash is enough (nothing to brute-force).

use crate::StoreError;
use sha2::{Digest, Sha256};

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
    getrandom::getrandom(&mut id).map_err(|e| StoreError::Database(format!("no randomness: {e}")))?;
    getrandom::getrandom(&mut secret).map_err(|e| StoreError::Database(format!("no randomness: {e}")))?;
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
