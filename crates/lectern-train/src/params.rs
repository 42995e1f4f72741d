//! Algorithm parameters from a request (`{"max_depth": 4}`) or a command line (`max_depth=4`),
//! read with range checks; a parameter the algorithm does not take is refused.

use crate::error::TrainError;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The parameters of one training request, consumed as they are read.
pub struct Params {
    given: BTreeMap<String, Value>,
    read: BTreeSet<String>,
    /// The value each parameter took (given or default), for the job's record.
    pub resolved: BTreeMap<String, Value>,
}

impl Params {
    /// Wraps the given parameters.
    pub fn new(given: BTreeMap<String, Value>) -> Self {
        Params { given, read: BTreeSet::new(), resolved: BTreeMap::new() }
    }

    fn number(&mut self, name: &str) -> Result<Option<f64>, TrainError> {
        self.read.insert(name.to_string());
        match self.given.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| TrainError::param(name, format!("'{s}' is not a number"))),
            Some(other) => Err(TrainError::param(name, format!("{other} is not a number"))),
        }
    }

    /// A whole number in `min..=max`, or `default` when not given (`None`: no limit).
    pub fn integer(&mut self, name: &str, default: Option<u64>, min: u64, max: u64) -> Result<Option<u64>, TrainError> {
        let value = match self.number(name)? {
            None => default,
            Some(x) => {
                if x.fract() != 0.0 || x < min as f64 || x > max as f64 {
                    return Err(TrainError::param(
                        name,
                        format!("must be a whole number from {min} to {max}, got {x}"),
                    ));
                }
                Some(x as u64)
            }
        };
        self.resolved.insert(name.to_string(), value.map(Value::from).unwrap_or(Value::Null));
        Ok(value)
    }

    /// A number greater than `min_exclusive` and at most `max`, or `default`.
    pub fn positive(&mut self, name: &str, default: f64, min_exclusive: f64, max: f64) -> Result<f64, TrainError> {
        let value = match self.number(name)? {
            None => default,
            Some(x) if x > min_exclusive && x <= max => x,
            Some(x) => {
                return Err(TrainError::param(
                    name,
                    format!("must be more than {min_exclusive} and at most {max}, got {x}"),
                ))
            }
        };
        self.resolved.insert(name.to_string(), Value::from(value));
        Ok(value)
    }

    /// One of `choices` (the first is the default).
    pub fn choice(&mut self, name: &str, choices: &[&'static str]) -> Result<&'static str, TrainError> {
        self.read.insert(name.to_string());
        let value = match self.given.get(name) {
            None | Some(Value::Null) => choices[0],
            Some(Value::String(s)) => {
                choices.iter().find(|c| c.eq_ignore_ascii_case(s.trim())).copied().ok_or_else(|| {
                    TrainError::param(name, format!("must be one of {}, got '{s}'", choices.join(", ")))
                })?
            }
            Some(other) => {
                return Err(TrainError::param(name, format!("must be one of {}, got {other}", choices.join(", "))))
            }
        };
        self.resolved.insert(name.to_string(), Value::from(value));
        Ok(value)
    }

    /// Refuses parameters that were given but never read.
    pub fn finish(&self, algorithm: &str) -> Result<(), TrainError> {
        match self.given.keys().find(|k| !self.read.contains(*k)) {
            None => Ok(()),
            Some(unknown) => Err(TrainError::param(
                unknown,
                format!(
                    "{algorithm} does not take this parameter (it takes: {})",
                    self.read.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }
}
