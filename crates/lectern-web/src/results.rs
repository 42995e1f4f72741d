//! Pipeline results over an uploaded CSV: kept an hour (at most 100 sets and 256 MB of them,
//! the least recently used leave first) so that their page can be sorted and downloaded; each
//! set is visible only to the session that made it.

use moka::future::Cache;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// One run over a CSV file: the columns in order and one object per row.
#[derive(Debug)]
pub struct ResultSet {
    pub owner: String,
    pub pipeline: String,
    pub columns: Vec<String>,
    pub rows: Vec<Map<String, Value>>,
    /// `column=value`: rows to highlight.
    pub highlight: Option<(String, String)>,
}

/// The sets kept at most, and their size at most (as JSON).
const MAX_SETS: u64 = 100;
const MAX_BYTES: u64 = 256 * 1024 * 1024;

pub struct Results {
    sets: Cache<String, Arc<(ResultSet, u32)>>,
}

impl Results {
    pub fn new() -> Self {
        // Weighed in KB (a set weighs at least 1 / MAX_SETS of the budget, so the count holds
        // too); least recently used first (moka's default admission would refuse new sets
        // once it is full).
        let cache = Cache::builder()
            .max_capacity(MAX_BYTES / 1024)
            .weigher(|_: &String, set: &Arc<(ResultSet, u32)>| set.1)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .time_to_live(Duration::from_secs(3600))
            .build();
        Results { sets: cache }
    }

    /// Keeps a set; returns its id.
    pub async fn keep(&self, set: ResultSet) -> String {
        let id = crate::http::random_token()[..24].to_string();
        let bytes = serde_json::to_vec(&set.rows).map_or(0, |v| v.len()) as u64;
        let weight = (bytes / 1024).max(MAX_BYTES / 1024 / MAX_SETS).min(u32::MAX as u64) as u32;
        self.sets.insert(id.clone(), Arc::new((set, weight))).await;
        id
    }

    /// A set, if it is still kept and `owner` made it for `pipeline`.
    pub async fn get(&self, id: &str, owner: &str, pipeline: &str) -> Option<Arc<(ResultSet, u32)>> {
        self.sets.get(id).await.filter(|s| s.0.owner == owner && s.0.pipeline == pipeline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(owner: &str) -> ResultSet {
        ResultSet {
            owner: owner.into(),
            pipeline: "p".into(),
            columns: vec![],
            rows: vec![Map::new()],
            highlight: None,
        }
    }

    #[tokio::test]
    async fn a_set_is_kept_for_its_owner_and_the_oldest_leave_first() {
        let results = Results::new();
        let first = results.keep(set("a")).await;
        assert!(results.get(&first, "a", "p").await.is_some());
        assert!(results.get(&first, "b", "p").await.is_none());
        assert!(results.get(&first, "a", "q").await.is_none());
        let mut ids = vec![first];
        for _ in 0..(MAX_SETS + 10) {
            ids.push(results.keep(set("a")).await);
        }
        results.sets.run_pending_tasks().await;
        assert!(results.get(ids.last().unwrap(), "a", "p").await.is_some(), "the newest set is kept");
        assert!(results.get(&ids[0], "a", "p").await.is_none(), "the oldest set left");
        assert!(results.sets.entry_count() <= MAX_SETS);
    }
}
