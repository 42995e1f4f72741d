//! A collection's vectors in memory, searched exactly: every vector is compared with the query
//! (cosine similarity of unit vectors = their dot product) and the best `k` are kept.

use serde_json::Value;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// One item as the index holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: String,
    pub text: Option<String>,
    /// A JSON object.
    pub metadata: Value,
    /// Unit length, `dimension` values.
    pub vector: Vec<f32>,
}

/// A search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: String,
    pub score: f32,
    pub text: Option<String>,
    pub metadata: Value,
}

/// A condition on one metadata key.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
}

/// Conditions that must all hold, by metadata key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter(pub Vec<(String, Condition)>);

impl Filter {
    /// Reads `{"key": value | {"$in": [..]} | {"$nin": [..]} | {"$ne": value}}`.
    pub fn parse(value: &Value) -> Result<Filter, String> {
        let Value::Object(map) = value else { return Err("'filter' must be an object of metadata keys".into()) };
        let mut conditions = Vec::with_capacity(map.len());
        for (key, test) in map {
            let condition = match test {
                Value::Object(op) if op.keys().any(|k| k.starts_with('$')) => {
                    let [(name, operand)] = op.iter().collect::<Vec<_>>()[..] else {
                        return Err(format!("filter '{key}': give one operator ($in, $nin or $ne)"));
                    };
                    let list = || match operand {
                        Value::Array(values) => Ok(values.clone()),
                        _ => Err(format!("filter '{key}': {name} takes a list")),
                    };
                    match name.as_str() {
                        "$in" => Condition::In(list()?),
                        "$nin" => Condition::Nin(list()?),
                        "$ne" => Condition::Ne(operand.clone()),
                        "$eq" => Condition::Eq(operand.clone()),
                        other => {
                            return Err(format!("filter '{key}': unknown operator '{other}' ($in, $nin, $ne, $eq)"))
                        }
                    }
                }
                value => Condition::Eq(value.clone()),
            };
            conditions.push((key.clone(), condition));
        }
        Ok(Filter(conditions))
    }

    fn accepts(&self, metadata: &Value) -> bool {
        self.0.iter().all(|(key, condition)| {
            let value = metadata.get(key).unwrap_or(&Value::Null);
            match condition {
                Condition::Eq(v) => same(value, v),
                Condition::Ne(v) => !same(value, v),
                Condition::In(vs) => vs.iter().any(|v| same(value, v)),
                Condition::Nin(vs) => !vs.iter().any(|v| same(value, v)),
            }
        })
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// What to look for.
#[derive(Debug, Clone, Default)]
pub struct Query<'a> {
    /// Unit length, the index's dimension.
    pub vector: &'a [f32],
    pub k: usize,
    pub filter: Filter,
    pub exclude_ids: HashSet<String>,
}

/// An item without its vector (the index keeps the vectors in one array).
#[derive(Debug)]
struct Entry {
    id: String,
    text: Option<String>,
    metadata: Value,
}

/// The vectors of one collection at one generation of the database: one contiguous array
/// (row i is item i), scanned in order.
#[derive(Debug, Default)]
pub struct Index {
    pub generation: i64,
    dimension: usize,
    entries: Vec<Entry>,
    vectors: Vec<f32>,
    by_id: HashMap<String, usize>,
}

impl Index {
    /// An index of `items`, taken one at a time (a caller converting stored rows lazily holds
    /// each row and its item at once, not all rows and all items).
    pub fn new(generation: i64, dimension: usize, items: impl Iterator<Item = Item>) -> Index {
        Index::with_capacity(generation, dimension, items.size_hint().0, items)
    }

    /// As [`Index::new`], with room for `n` items made up front.
    pub fn with_capacity(generation: i64, dimension: usize, n: usize, items: impl Iterator<Item = Item>) -> Index {
        let mut index = Index {
            generation,
            dimension,
            entries: Vec::with_capacity(n),
            vectors: Vec::with_capacity(n * dimension),
            by_id: HashMap::with_capacity(n),
        };
        items.for_each(|item| index.put(item));
        index
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn row(&self, at: usize) -> &[f32] {
        &self.vectors[at * self.dimension..(at + 1) * self.dimension]
    }

    /// Adds an item or replaces the one with its id.
    pub fn put(&mut self, item: Item) {
        debug_assert_eq!(item.vector.len(), self.dimension);
        let entry = Entry { id: item.id, text: item.text, metadata: item.metadata };
        match self.by_id.get(&entry.id) {
            Some(&at) => {
                self.vectors[at * self.dimension..(at + 1) * self.dimension].copy_from_slice(&item.vector);
                self.entries[at] = entry;
            }
            None => {
                self.by_id.insert(entry.id.clone(), self.entries.len());
                self.entries.push(entry);
                self.vectors.extend_from_slice(&item.vector);
            }
        }
    }

    /// Removes an item by id, if there (the last item takes its place).
    pub fn remove(&mut self, id: &str) {
        let Some(at) = self.by_id.remove(id) else { return };
        let last = self.entries.len() - 1;
        self.entries.swap_remove(at);
        if at != last {
            let d = self.dimension;
            self.vectors.copy_within(last * d..(last + 1) * d, at * d);
            self.by_id.insert(self.entries[at].id.clone(), at);
        }
        self.vectors.truncate(last * self.dimension);
    }

    /// The best `k` items that pass the filter, best first (ties by id). The filter and the
    /// exclusions are only looked at for items whose score would enter the best `k`.
    pub fn search(&self, query: &Query<'_>) -> Vec<Hit> {
        let dot = dot_for_this_cpu();
        let excluding = !query.exclude_ids.is_empty();
        let mut best: BinaryHeap<Ranked<'_>> = BinaryHeap::with_capacity(query.k + 1);
        for (at, entry) in self.entries.iter().enumerate() {
            let candidate = Ranked { score: dot(query.vector, self.row(at)), entry };
            let enters = best.len() < query.k || best.peek().is_some_and(|worst| candidate < *worst);
            if !enters || (excluding && query.exclude_ids.contains(&entry.id)) || !query.filter.accepts(&entry.metadata)
            {
                continue;
            }
            if best.len() == query.k {
                best.pop();
            }
            best.push(candidate);
        }
        best.into_sorted_vec()
            .into_iter()
            .map(|r| Hit {
                id: r.entry.id.clone(),
                score: r.score,
                text: r.entry.text.clone(),
                metadata: r.entry.metadata.clone(),
            })
            .collect()
    }
}

/// An item with its score, ordered best first: a higher score, then a smaller id, is "less",
/// so that the heap's top is the worst kept and a sorted vector starts with the best.
struct Ranked<'a> {
    score: f32,
    entry: &'a Entry,
}

impl Ord for Ranked<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        other.score.total_cmp(&self.score).then_with(|| self.entry.id.cmp(&other.entry.id))
    }
}

impl PartialOrd for Ranked<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked<'_> {}

/// The dot product: with AVX2 when the CPU has it (checked at run time), else in
/// lanes the compiler vectorises for the baseline target.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_for_this_cpu()(a, b)
}

/// The fastest dot product this CPU runs (look it up once per search, not per vector).
pub fn dot_for_this_cpu() -> fn(&[f32], &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return dot_avx2;
    }
    dot_lanes
}

#[cfg(target_arch = "x86_64")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    #[target_feature(enable = "avx2")]
    fn inner(a: &[f32], b: &[f32]) -> f32 {
        dot_lanes(a, b)
    }
    // SAFETY: chosen by `dot_for_this_cpu` only when the CPU has AVX2.
    unsafe { inner(a, b) }
}

/// 32 independent sums (four vectors of eight), so that additions do not wait on each other.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 32;
    let mut sums = [0f32; LANES];
    let whole = a.len().min(b.len()) / LANES * LANES;
    for (x, y) in a[..whole].chunks_exact(LANES).zip(b[..whole].chunks_exact(LANES)) {
        for i in 0..LANES {
            sums[i] += x[i] * y[i];
        }
    }
    let tail: f32 = a[whole..].iter().zip(&b[whole..]).map(|(x, y)| x * y).sum();
    sums.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(id: &str, vector: [f32; 2], metadata: Value) -> Item {
        Item { id: id.into(), text: None, metadata, vector: vector.to_vec() }
    }

    fn index() -> Index {
        Index::new(
            1,
            2,
            [
                item("a", [1.0, 0.0], json!({"level": "easy", "n": 1})),
                item("b", [0.6, 0.8], json!({"level": "hard", "n": 2})),
                item("c", [0.0, 1.0], json!({"level": "easy"})),
                item("d", [0.6, 0.8], json!({"level": "easy", "n": 2.0})),
            ]
            .into_iter(),
        )
    }

    fn ids(hits: &[Hit]) -> Vec<&str> {
        hits.iter().map(|h| h.id.as_str()).collect()
    }

    #[test]
    fn the_best_k_come_first_with_ties_by_id() {
        let q = Query { vector: &[1.0, 0.0], k: 3, ..Default::default() };
        let hits = index().search(&q);
        assert_eq!(ids(&hits), ["a", "b", "d"]);
        assert!((hits[1].score - 0.6).abs() < 1e-6);
    }

    #[test]
    fn filters_and_exclusions_leave_items_out() {
        let search = |filter: Value, exclude: &[&str]| {
            let q = Query {
                vector: &[1.0, 0.0],
                k: 10,
                filter: Filter::parse(&filter).unwrap(),
                exclude_ids: exclude.iter().map(|s| s.to_string()).collect(),
            };
            ids(&index().search(&q)).into_iter().map(String::from).collect::<Vec<_>>()
        };
        assert_eq!(search(json!({"level": "easy"}), &[]), ["a", "d", "c"]);
        assert_eq!(search(json!({"level": {"$ne": "easy"}}), &[]), ["b"]);
        assert_eq!(search(json!({"n": {"$in": [2]}}), &[]), ["b", "d"]);
        assert_eq!(search(json!({"n": {"$nin": [1, 2]}}), &[]), ["c"]);
        assert_eq!(search(json!({}), &["a", "b"]), ["d", "c"]);
        assert!(Filter::parse(&json!({"n": {"$gt": 1}})).unwrap_err().contains("unknown operator"));
        assert!(Filter::parse(&json!([1])).is_err());
    }

    #[test]
    fn items_are_replaced_and_removed_by_id() {
        let mut index = index();
        index.put(item("a", [0.0, 1.0], json!({})));
        index.remove("c");
        index.remove("zz");
        assert_eq!(index.len(), 3);
        let q = Query { vector: &[0.0, 1.0], k: 1, ..Default::default() };
        assert_eq!(ids(&index.search(&q)), ["a"]);
    }

    #[test]
    fn dot_handles_lengths_that_are_not_multiples_of_eight() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let expected: f32 = a.iter().map(|x| x * x).sum();
        assert_eq!(dot(&a, &a), expected);
    }
}
