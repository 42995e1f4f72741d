//! The `web_sessions` table: the dashboard's signed-in sessions. The cookie holds a random
//! 256-bit token; only its SHA-256 is stored, so a copy of the database signs no one in.

use crate::keys::{hash, hex};
use crate::{now_ms, Role, Store, StoreError};
use sqlx::Row;

/// A live session: who signed in and with which role.
#[derive(Debug, Clone, PartialEq)]
pub struct WebSession {
    pub actor: String,
    pub role: Role,
    pub expires_at_ms: i64,
}

impl Store {
    /// Starts a session for `actor` lasting `ttl_ms`; returns the token for the cookie (shown
    /// once, never stored).
    pub async fn create_session(&self, actor: &str, role: Role, ttl_ms: i64) -> Result<String, StoreError> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(StoreError::Randomness)?;
        let token = hex(&bytes);
        let now = now_ms();
        self.run(async {
            sqlx::query("DELETE FROM web_sessions WHERE expires_at < $1").bind(now).execute(&self.pool).await?;
            sqlx::query(
                "INSERT INTO web_sessions (token_hash, actor, role, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(hash(&token))
            .bind(actor)
            .bind(role.as_str())
            .bind(now)
            .bind(now.saturating_add(ttl_ms))
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await?;
        Ok(token)
    }

    /// The live session a cookie token belongs to; `None` for unknown, forged or expired ones.
    pub async fn session(&self, token: &str) -> Result<Option<WebSession>, StoreError> {
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        self.run(async {
            let row = sqlx::query("SELECT actor, role, expires_at FROM web_sessions WHERE token_hash = $1")
                .bind(hash(token))
                .fetch_optional(&self.pool)
                .await?;
            let Some(row) = row else { return Ok(None) };
            let session = WebSession {
                actor: row.try_get("actor")?,
                role: row.try_get::<String, _>("role")?.parse()?,
                expires_at_ms: row.try_get("expires_at")?,
            };
            Ok((session.expires_at_ms > now_ms()).then_some(session))
        })
        .await
    }

    /// Ends the session of a cookie token (signing out); unknown tokens are ignored.
    pub async fn delete_session(&self, token: &str) -> Result<(), StoreError> {
        self.run(async {
            sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1").bind(hash(token)).execute(&self.pool).await?;
            Ok(())
        })
        .await
    }
}
