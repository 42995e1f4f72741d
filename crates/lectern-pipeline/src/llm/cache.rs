//! The LLM answer cache: answers by rendered prompt, at most `max_entries` of them, each for
//! `ttl`. Identical prompts asked while a call is in flight wait for that call instead of
//! making their own; a failed call is handed to the prompts waiting on it and not kept.

use moka::future::Cache;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The longest TTL kept as given (the cache refuses longer ones); any longer is as good as
/// forever.
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Answers of type `V` by prompt.
pub(crate) struct AnswerCache<V> {
    answers: Cache<String, V>,
}

impl<V: Clone + Send + Sync + 'static> AnswerCache<V> {
    /// At most `max_entries` answers (0: none kept), each for `ttl` (zero: none kept). Calls
    /// in flight are shared either way.
    pub(crate) fn new(ttl: Duration, max_entries: u64) -> Self {
        let answers = Cache::builder().max_capacity(max_entries).time_to_live(ttl.min(MAX_TTL)).build();
        AnswerCache { answers }
    }

    /// The answer to `prompt`: cached, or shared with an identical call in flight, or what
    /// `ask` gives (kept if it succeeds).
    pub(crate) async fn get_or_ask<E>(&self, prompt: &str, ask: impl Future<Output = Result<V, E>>) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        self.answers.try_get_with_by_ref(prompt, ask).await
    }

    /// Answers kept now, after pending evictions (for tests).
    #[cfg(test)]
    async fn len(&self) -> u64 {
        self.answers.run_pending_tasks().await;
        self.answers.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    /// A call to the LLM that takes `delay`, counts itself and answers `answer`.
    async fn call(calls: &AtomicUsize, delay: Duration, answer: Result<u64, &'static str>) -> Result<u64, String> {
        calls.fetch_add(1, SeqCst);
        tokio::time::sleep(delay).await;
        answer.map_err(str::to_string)
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn an_answer_is_kept_for_the_next_identical_prompt() {
        let cache = AnswerCache::new(HOUR, 100);
        let calls = AtomicUsize::new(0);
        assert_eq!(cache.get_or_ask("p", call(&calls, Duration::ZERO, Ok(1))).await.unwrap(), 1);
        assert_eq!(cache.get_or_ask("p", call(&calls, Duration::ZERO, Ok(2))).await.unwrap(), 1);
        assert_eq!(cache.get_or_ask("q", call(&calls, Duration::ZERO, Ok(3))).await.unwrap(), 3);
        assert_eq!(calls.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn identical_prompts_in_flight_share_one_call_and_its_failure() {
        for ttl in [HOUR, Duration::ZERO] {
            let cache = AnswerCache::<u64>::new(ttl, 100);
            let calls = AtomicUsize::new(0);
            let asks = (0..20).map(|_| cache.get_or_ask("p", call(&calls, Duration::from_millis(50), Err("down"))));
            let answers = futures_util::future::join_all(asks).await;
            assert_eq!(calls.load(SeqCst), 1, "ttl {ttl:?}: 20 identical prompts in flight made several calls");
            assert!(answers.iter().all(|a| a.as_ref().is_err_and(|e| e.as_str() == "down")), "{answers:?}");
            // The failure is not kept: the next prompt asks again.
            assert_eq!(cache.get_or_ask("p", call(&calls, Duration::ZERO, Ok(7))).await.unwrap(), 7);
            assert_eq!(calls.load(SeqCst), 2);
        }
    }

    #[tokio::test]
    async fn an_answer_is_asked_again_after_its_ttl() {
        let cache = AnswerCache::new(Duration::from_millis(100), 100);
        let calls = AtomicUsize::new(0);
        cache.get_or_ask("p", call(&calls, Duration::ZERO, Ok(1))).await.unwrap();
        cache.get_or_ask("p", call(&calls, Duration::ZERO, Ok(1))).await.unwrap();
        assert_eq!(calls.load(SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(cache.get_or_ask("p", call(&calls, Duration::ZERO, Ok(2))).await.unwrap(), 2);
        assert_eq!(calls.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn a_zero_ttl_or_capacity_keeps_nothing() {
        for (ttl, cap) in [(Duration::ZERO, 100), (HOUR, 0)] {
            let cache = AnswerCache::new(ttl, cap);
            let calls = AtomicUsize::new(0);
            for _ in 0..3 {
                cache.get_or_ask("p", call(&calls, Duration::ZERO, Ok(1))).await.unwrap();
            }
            assert_eq!(calls.load(SeqCst), 3, "ttl {ttl:?}, capacity {cap}: an answer was kept");
        }
    }

    #[tokio::test]
    async fn the_cache_holds_at_most_its_capacity() {
        let cache = AnswerCache::new(HOUR, 1_000);
        let calls = AtomicUsize::new(0);
        for i in 0..20_000u64 {
            cache.get_or_ask(&format!("prompt {i}"), call(&calls, Duration::ZERO, Ok(i))).await.unwrap();
        }
        let kept = cache.len().await;
        assert!(kept <= 1_000, "{kept} answers kept with a capacity of 1,000");
    }

    #[tokio::test]
    async fn a_huge_ttl_is_accepted() {
        let cache = AnswerCache::new(Duration::from_secs(u64::MAX), 10);
        let calls = AtomicUsize::new(0);
        cache.get_or_ask("p", call(&calls, Duration::ZERO, Ok(1))).await.unwrap();
        cache.get_or_ask("p", call(&calls, Duration::ZERO, Ok(1))).await.unwrap();
        assert_eq!(calls.load(SeqCst), 1);
    }
}
