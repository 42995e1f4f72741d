//! Pipeline results over an uploaded CSV: kept an hour (at most 100 sets, the least recently
//! used leave first) so that their page can be sorted and downloaded; each set is visible only
//! to the actor who made it.

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

pub struct Results {
    sets: Cache<String, Arc<ResultSet>>,
}

impl Results {
    pub fn new() -> Self {
        Results { sets: Cache::builder().max_capacity(100).time_to_live(Duration::from_secs(3600)).build() }
    }

    /// Keeps a set; returns its id.
    pub async fn keep(&self, set: ResultSet) -> String {
        let id = crate::http::random_token()[..24].to_string();
        self.sets.insert(id.clone(), Arc::new(set)).await;
        id
    }

    /// A set, if it is still kept and `actor` made it for `pipeline`.
    pub async fn get(&self, id: &str, actor: &str, pipeline: &str) -> Option<Arc<ResultSet>> {
        self.sets.get(id).await.filter(|s| s.owner == actor && s.pipeline == pipeline)
    }
}
