//! Request coalescing: identical misses in flight share one upstream request. The first
//! caller of a key runs the fetch; the others wait for its outcome. Should the running
//! caller go away (its client hung up), a waiting one takes the fetch over. The key leaves
//! the table when its last caller does.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::OnceCell;

/// The fetches in flight, by key.
pub struct Coalescer<T> {
    inflight: Mutex<HashMap<String, Arc<OnceCell<T>>>>,
}

impl<T> Default for Coalescer<T> {
    fn default() -> Self {
        Coalescer { inflight: Mutex::new(HashMap::new()) }
    }
}

impl<T: Clone> Coalescer<T> {
    /// The outcome of `fetch` for `key`, run once for all the callers that overlap; and
    /// whether this caller ran it.
    pub async fn run<F, Fut>(&self, key: &str, fetch: F) -> (T, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let cell = self.join(key);
        let _leave = Leave { coalescer: self, key, cell: &cell };
        let mut ran = false;
        let value = cell
            .get_or_init(|| {
                ran = true;
                fetch()
            })
            .await
            .clone();
        (value, ran)
    }

    /// The number of keys in flight (tests).
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.lock().len()
    }

    fn join(&self, key: &str) -> Arc<OnceCell<T>> {
        let mut inflight = self.lock();
        match inflight.get(key) {
            Some(cell) => cell.clone(),
            None => inflight.entry(key.to_owned()).or_default().clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<OnceCell<T>>>> {
        // The map stays consistent whatever panicked while it was held (one insert or remove).
        self.inflight.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes the key when its last caller leaves (done or dropped).
struct Leave<'a, T: Clone> {
    coalescer: &'a Coalescer<T>,
    key: &'a str,
    cell: &'a Arc<OnceCell<T>>,
}

impl<T: Clone> Drop for Leave<'_, T> {
    fn drop(&mut self) {
        let mut inflight = self.coalescer.lock();
        let last = inflight.get(self.key).is_some_and(|c| Arc::ptr_eq(c, self.cell) && Arc::strong_count(c) == 2);
        if last {
            inflight.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn overlapping_callers_share_one_fetch() {
        let coalescer = Arc::new(Coalescer::<u32>::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (coalescer, fetches, gate) = (coalescer.clone(), fetches.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                coalescer
                    .run("k", || async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        7
                    })
                    .await
            }));
        }
        while fetches.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        gate.notify_waiters();
        let mut leaders = 0;
        for task in tasks {
            let (value, ran) = task.await.unwrap();
            assert_eq!(value, 7);
            leaders += usize::from(ran);
        }
        assert_eq!((fetches.load(Ordering::SeqCst), leaders), (1, 1));
        assert_eq!(coalescer.in_flight(), 0, "the key stayed in flight");
        // later callers fetch again
        let (value, ran) = coalescer.run("k", || async { 8 }).await;
        assert_eq!((value, ran), (8, true));
    }

    #[tokio::test]
    async fn different_keys_do_not_wait_for_each_other() {
        let coalescer = Coalescer::<&str>::default();
        let (a, b) = tokio::join!(coalescer.run("a", || async { "a" }), coalescer.run("b", || async { "b" }));
        assert_eq!((a, b), (("a", true), ("b", true)));
    }

    #[tokio::test]
    async fn a_waiter_takes_over_when_the_fetching_caller_goes_away() {
        let coalescer = Arc::new(Coalescer::<u32>::default());
        let first = {
            let coalescer = coalescer.clone();
            tokio::spawn(async move { coalescer.run("k", std::future::pending::<u32>).await })
        };
        while coalescer.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        let second = {
            let coalescer = coalescer.clone();
            tokio::spawn(async move { coalescer.run("k", || async { 5 }).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        first.abort();
        assert_eq!(second.await.unwrap(), (5, true));
        assert_eq!(coalescer.in_flight(), 0);
    }
}
