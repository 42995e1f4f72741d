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

/// The vectors of one collection at one generation of the database.
#[derive(Debug, Default)]
pub struct Index {
    pub generation: i64,
    dimension: usize,
    items: Vec<Item>,
    by_id: HashMap<String, usize>,
}

impl Index {
    pub fn new(generation: i64, dimension: usize, items: Vec<Item>) -> Index {
        let mut index = Index { generation, dimension, items: Vec::with_capacity(items.len()), by_id: HashMap::new() };
        items.into_iter().for_each(|item| index.put(item));
        index
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds an item or replaces the one with its id.
    pub fn put(&mut self, item: Item) {
        debug_assert_eq!(item.vector.len(), self.dimension);
        match self.by_id.get(&item.id) {
            Some(&at) => self.items[at] = item,
            None => {
                self.by_id.insert(item.id.clone(), self.items.len());
                self.items.push(item);
            }
        }
    }

    /// Removes an item by id, if there.
    pub fn remove(&mut self, id: &str) {
        let Some(at) = self.by_id.remove(id) else { return };
        self.items.swap_remove(at);
        if let Some(moved) = self.items.get(at) {
            self.by_id.insert(moved.id.clone(), at);
        }
    }

    /// The best `k` items that pass the filter, best first (ties by id).
    pub fn search(&self, query: &Query<'_>) -> Vec<Hit> {
        let filtering = !query.filter.0.is_empty();
        let excluding = !query.exclude_ids.is_empty();
        let mut best: BinaryHeap<Ranked<'_>> = BinaryHeap::with_capacity(query.k + 1);
        for item in &self.items {
            if (excluding && query.exclude_ids.contains(&item.id))
                || (filtering && !query.filter.accepts(&item.metadata))
            {
                continue;
            }
            let candidate = Ranked { score: dot(query.vector, &item.vector), item };
            if best.len() < query.k {
                best.push(candidate);
            } else if best.peek().is_some_and(|worst| candidate < *worst) {
                best.pop();
                best.push(candidate);
            }
        }
        best.into_sorted_vec()
            .into_iter()
            .map(|r| Hit {
                id: r.item.id.clone(),
                score: r.score,
                text: r.item.text.clone(),
                metadata: r.item.metadata.clone(),
            })
            .collect()
    }
}

/// An item with its score, ordered best first: a higher score, then a smaller id, is "less",
/// so that the heap's top is the worst kept and a sorted vector starts with the best.
struct Ranked<'a> {
    score: f32,
    item: &'a Item,
}

impl Ord for Ranked<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        other.score.total_cmp(&self.score).then_with(|| self.item.id.cmp(&other.item.id))
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

/// The dot product, in eight lanes so that the compiler vectorises it.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
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
            vec![
                item("a", [1.0, 0.0], json!({"level": "easy", "n": 1})),
                item("b", [0.6, 0.8], json!({"level": "hard", "n": 2})),
                item("c", [0.0, 1.0], json!({"level": "easy"})),
                item("d", [0.6, 0.8], json!({"level": "easy", "n": 2.0})),
            ],
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
