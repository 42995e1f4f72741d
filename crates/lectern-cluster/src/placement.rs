//! Placement: which workers serve which model. A pure function of the previous map, the live
//! workers and the models, so that every gateway computes the same map from the same bucket:
//! replicas already placed on a live worker that still fits stay (no move, no gap); missing
//! replicas go to the fitting worker with the most free memory, then the fewest requests in
//! flight, then the name.

use crate::records::{Placed, PlacementMap};
use std::collections::BTreeMap;

/// A live worker as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Worker {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub memory_bytes: u64,
    pub inflight: u64,
}

/// A model to place.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand {
    pub name: String,
    /// Labels a worker must carry (all of them, with these values).
    pub placement: BTreeMap<String, String>,
    pub replicas: usize,
    pub memory_bytes: u64,
}

/// The new map. Models are taken in name order, so the result does not depend on the order
/// the inputs came in.
pub fn place(previous: &PlacementMap, workers: &[Worker], models: &[Demand]) -> PlacementMap {
    let mut workers: Vec<&Worker> = workers.iter().collect();
    workers.sort_by(|a, b| a.name.cmp(&b.name));
    let mut models: Vec<&Demand> = models.iter().collect();
    models.sort_by(|a, b| a.name.cmp(&b.name));
    let mut free: BTreeMap<&str, u64> = workers.iter().map(|w| (w.name.as_str(), w.memory_bytes)).collect();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    let mut map = PlacementMap::default();
    // Replicas that stay are booked first, so a new model cannot take the room they hold.
    let mut kept: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for model in &models {
        let before = previous.models.get(&model.name).map(|p| p.workers.as_slice()).unwrap_or(&[]);
        let mut keep = Vec::new();
        for name in before {
            let Some(worker) = workers.iter().find(|w| &w.name == name) else { continue };
            if keep.len() < model.replicas && matches(worker, model) && !keep.contains(name) {
                *free.get_mut(name.as_str()).expect("every worker has a free entry") =
                    free[name.as_str()].saturating_sub(model.memory_bytes);
                *count.entry(worker.name.as_str()).or_default() += 1;
                keep.push(name.clone());
            }
        }
        kept.insert(model.name.as_str(), keep);
    }
    for model in models {
        let mut chosen = kept.remove(model.name.as_str()).unwrap_or_default();
        let eligible: Vec<&&Worker> = workers.iter().filter(|w| matches(w, model)).collect();
        while chosen.len() < model.replicas {
            let best = eligible
                .iter()
                .filter(|w| !chosen.contains(&w.name) && free[w.name.as_str()] >= model.memory_bytes)
                .min_by_key(|w| {
                    let f = free[w.name.as_str()];
                    (std::cmp::Reverse(f), count.get(w.name.as_str()).copied().unwrap_or(0), w.inflight, &w.name)
                });
            let Some(best) = best else { break };
            *free.get_mut(best.name.as_str()).expect("every worker has a free entry") -= model.memory_bytes;
            *count.entry(best.name.as_str()).or_default() += 1;
            chosen.push(best.name.clone());
        }
        let reason = shortfall(model, workers.len(), eligible.len(), chosen.len());
        map.models.insert(model.name.clone(), Placed { workers: chosen, reason });
    }
    map
}

fn matches(worker: &Worker, model: &Demand) -> bool {
    model.placement.iter().all(|(k, v)| worker.labels.get(k) == Some(v))
}

/// Why a model has fewer replicas than it asks for ("" when it has them all).
fn shortfall(model: &Demand, workers: usize, eligible: usize, placed: usize) -> String {
    if placed >= model.replicas {
        return String::new();
    }
    let labels: Vec<String> = model.placement.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let why = if workers == 0 {
        "no worker is in the cluster".to_string()
    } else if eligible == 0 {
        format!("no worker has the labels {}", labels.join(", "))
    } else if eligible < model.replicas && placed == eligible {
        format!("only {eligible} worker(s) can serve it")
    } else {
        format!("no worker that can serve it has {} MiB free", model.memory_bytes.div_ceil(1 << 20))
    };
    if placed == 0 {
        why
    } else {
        format!("{placed} of {} replicas placed: {why}", model.replicas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn worker(name: &str, labels: &[(&str, &str)], memory_mb: u64) -> Worker {
        Worker {
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            memory_bytes: memory_mb * MB,
            inflight: 0,
        }
    }

    fn model(name: &str, labels: &[(&str, &str)], replicas: usize, memory_mb: u64) -> Demand {
        Demand {
            name: name.into(),
            placement: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            replicas,
            memory_bytes: memory_mb * MB,
        }
    }

    fn on(map: &PlacementMap, model: &str) -> Vec<String> {
        map.models[model].workers.clone()
    }

    #[test]
    fn pinned_models_go_to_workers_with_their_labels_and_wait_otherwise() {
        let workers = [worker("a", &[("region", "eu")], 1000), worker("b", &[("region", "us")], 1000)];
        let models = [model("cat", &[("region", "eu")], 1, 10), model("per", &[("region", "us")], 1, 10)];
        let map = place(&PlacementMap::default(), &workers, &models);
        assert_eq!(on(&map, "cat"), ["a"]);
        assert_eq!(on(&map, "per"), ["b"]);
        let map = place(&map, &workers[..1], &models);
        assert_eq!(on(&map, "per"), Vec::<String>::new());
        assert_eq!(map.models["per"].reason, "no worker has the labels region=us");
        let map = place(&map, &[], &models);
        assert_eq!(map.models["cat"].reason, "no worker is in the cluster");
    }

    #[test]
    fn automatic_placement_spreads_by_free_memory_and_keeps_what_is_placed() {
        let workers = [worker("a", &[], 1000), worker("b", &[], 1000)];
        let models = [model("m1", &[], 1, 100), model("m2", &[], 1, 100), model("m3", &[], 2, 100)];
        let map = place(&PlacementMap::default(), &workers, &models);
        assert_eq!(on(&map, "m1"), ["a"]);
        assert_eq!(on(&map, "m2"), ["b"]);
        assert_eq!(on(&map, "m3").len(), 2);
        // The same inputs in another order give the same map; a recomputation moves nothing.
        let mut reversed = models.to_vec();
        reversed.reverse();
        assert_eq!(place(&map, &workers, &reversed), map);
        // Worker a leaves: its models go to b; when a returns, nothing moves back.
        let without_a = place(&map, &workers[1..], &models);
        assert_eq!(on(&without_a, "m1"), ["b"]);
        assert_eq!(on(&without_a, "m3"), ["b"]);
        assert_eq!(without_a.models["m3"].reason, "1 of 2 replicas placed: only 1 worker(s) can serve it");
        let back = place(&without_a, &workers, &models);
        assert_eq!(on(&back, "m1"), ["b"]);
        assert_eq!(on(&back, "m3"), ["b", "a"], "the missing replica returns to a");
    }

    #[test]
    fn a_model_too_large_for_every_worker_is_not_placed() {
        let workers = [worker("a", &[], 100)];
        let map = place(&PlacementMap::default(), &workers, &[model("big", &[], 1, 500), model("small", &[], 1, 50)]);
        assert!(on(&map, "big").is_empty());
        assert_eq!(map.models["big"].reason, "no worker that can serve it has 500 MiB free");
        assert_eq!(on(&map, "small"), ["a"]);
    }
}
