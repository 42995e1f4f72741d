//! The API keys verified recently, so that a request does not look its key up in the database
//! every time: at most [`KEY_CACHE_MAX`] keys, each trusted for [`KEY_CACHE_TTL`]. Only keys
//! that exist are kept (an unknown key or a failed check is asked again next time), by
//! fingerprint, never by the key text.

use lectern_store::ApiKey;
use moka::future::Cache;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

/// How long a verified API key is trusted without asking the database again. Revoking through
/// this server clears the cache at once; other replicas see a revocation within this time.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Keys kept at most (the least used go first).
pub const KEY_CACHE_MAX: u64 = 10_000;

/// Verified keys by fingerprint.
pub struct KeyCache {
    keys: Cache<String, ApiKey>,
    /// Moved by every [`KeyCache::clear`]: a check that started before a clear does not keep
    /// what it read.
    generation: AtomicU64,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::new(KEY_CACHE_TTL, KEY_CACHE_MAX)
    }
}

impl KeyCache {
    /// A cache of at most `max_entries` keys, each kept for `ttl`.
    pub fn new(ttl: Duration, max_entries: u64) -> Self {
        KeyCache {
            keys: Cache::builder().max_capacity(max_entries).time_to_live(ttl).build(),
            generation: AtomicU64::new(0),
        }
    }

    /// The key `presented` stands for: cached, else what `verify` says (kept when it names a
    /// key). `verify`'s error is handed back as it is.
    pub async fn get_or_verify<E>(
        &self,
        presented: &str,
        verify: impl Future<Output = Result<Option<ApiKey>, E>>,
    ) -> Result<Option<ApiKey>, E> {
        let fingerprint = lectern_store::key_fingerprint(presented);
        if let Some(key) = self.keys.get(&fingerprint).await {
            return Ok(Some(key));
        }
        let generation = self.generation.load(SeqCst);
        let key = verify.await?;
        if let Some(found) = &key {
            self.keys.insert(fingerprint.clone(), found.clone()).await;
            // A clear since the check began (a revocation) may predate what was read: drop it.
            // A clear after this load removes the entry itself.
            if self.generation.load(SeqCst) != generation {
                self.keys.invalidate(&fingerprint).await;
            }
        }
        Ok(key)
    }

    /// Forgets every key (after keys are created or revoked).
    pub fn clear(&self) {
        self.generation.fetch_add(1, SeqCst);
        self.keys.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lectern_store::Role;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    const PRESENTED: &str = "lk_abc_secret";

    fn key() -> ApiKey {
        ApiKey { id: "abc".into(), name: "test".into(), role: Role::Client, created_at_ms: 0, revoked_at_ms: None }
    }

    /// A verification that counts its calls and answers `answer`.
    async fn counted(calls: &AtomicUsize, answer: Option<ApiKey>) -> Result<Option<ApiKey>, String> {
        calls.fetch_add(1, SeqCst);
        Ok(answer)
    }

    #[tokio::test]
    async fn a_verified_key_is_served_from_the_cache_until_cleared() {
        let cache = KeyCache::default();
        let calls = AtomicUsize::new(0);
        assert_eq!(cache.get_or_verify(PRESENTED, counted(&calls, Some(key()))).await, Ok(Some(key())));
        assert_eq!(cache.get_or_verify(PRESENTED, counted(&calls, None)).await, Ok(Some(key())));
        assert_eq!(calls.load(SeqCst), 1);
        cache.clear();
        assert_eq!(cache.get_or_verify(PRESENTED, counted(&calls, None)).await, Ok(None));
        assert_eq!(calls.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn unknown_keys_and_failures_are_not_cached() {
        let cache = KeyCache::default();
        let calls = AtomicUsize::new(0);
        assert_eq!(cache.get_or_verify(PRESENTED, counted(&calls, None)).await, Ok(None));
        let failed = cache.get_or_verify(PRESENTED, async { Err::<Option<ApiKey>, _>("database down") }).await;
        assert_eq!(failed, Err("database down"));
        assert_eq!(cache.get_or_verify(PRESENTED, counted(&calls, Some(key()))).await, Ok(Some(key())));
        assert_eq!(calls.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn entries_expire_after_the_ttl() {
        let cache = KeyCache::new(Duration::from_millis(100), 10);
        let calls = AtomicUsize::new(0);
        cache.get_or_verify(PRESENTED, counted(&calls, Some(key()))).await.unwrap();
        cache.get_or_verify(PRESENTED, counted(&calls, Some(key()))).await.unwrap();
        assert_eq!(calls.load(SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        cache.get_or_verify(PRESENTED, counted(&calls, Some(key()))).await.unwrap();
        assert_eq!(calls.load(SeqCst), 2, "an expired key was not checked again");
    }

    #[tokio::test]
    async fn the_cache_holds_at_most_its_capacity() {
        let cache = KeyCache::new(KEY_CACHE_TTL, 100);
        let calls = AtomicUsize::new(0);
        for i in 0..5_000 {
            let presented = format!("lk_k{i}_secret");
            cache.get_or_verify(&presented, counted(&calls, Some(key()))).await.unwrap();
        }
        cache.keys.run_pending_tasks().await;
        assert!(cache.keys.entry_count() <= 100, "{} keys cached", cache.keys.entry_count());
    }

    #[tokio::test]
    async fn a_check_that_straddles_a_revocation_is_not_cached() {
        let cache = Arc::new(KeyCache::default());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        // A check reads the key from the database, then a revocation clears the cache, then
        // the check finishes: what it read must not be trusted afterwards.
        let slow = tokio::spawn({
            let cache = cache.clone();
            async move {
                let verify = async {
                    started_tx.send(()).unwrap();
                    released.await.unwrap();
                    Ok::<_, String>(Some(key()))
                };
                cache.get_or_verify(PRESENTED, verify).await
            }
        });
        started.await.unwrap();
        cache.clear();
        release.send(()).unwrap();
        assert_eq!(slow.await.unwrap(), Ok(Some(key())));
        let calls = AtomicUsize::new(0);
        assert_eq!(cache.get_or_verify(PRESENTED, counted(&calls, None)).await, Ok(None), "a revoked key was served");
        assert_eq!(calls.load(SeqCst), 1);
    }
}
