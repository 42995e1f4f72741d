//! Expressions (`when`, `route`, `topic`, `shape`) and templates (`prompt`, `output`), both
//! minijinja, evaluated against the variables of one pipeline run.

use minijinja::value::Value;
use minijinja::{Environment, UndefinedBehavior};
use std::collections::{BTreeMap, HashSet};

/// The variables one run of the steps sees: `input`, `request` and each finished step.
pub type Scope = BTreeMap<String, Value>;

/// The minijinja environment every pipeline shares.
pub struct Evaluator {
    env: Environment<'static>,
}

impl Default for Evaluator {
    fn default() -> Self {
        let mut env = Environment::new();
        // `advice.resources` is undefined (not an error) when the step `advice` was skipped.
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_recursion_limit(64);
        Evaluator { env }
    }
}

impl Evaluator {
    /// The top-level names an expression reads, or why it does not compile.
    pub fn expression_names(&self, source: &str) -> Result<HashSet<String>, String> {
        let compiled = self.env.compile_expression(source).map_err(describe)?;
        Ok(compiled.undeclared_variables(false))
    }

    /// The top-level names a template reads, or why it does not compile.
    pub fn template_names(&self, source: &str) -> Result<HashSet<String>, String> {
        let template = self.env.template_from_str(source).map_err(describe)?;
        Ok(template.undeclared_variables(false))
    }

    /// The value of an expression.
    pub fn eval(&self, source: &str, scope: &Scope) -> Result<Value, String> {
        let compiled = self.env.compile_expression(source).map_err(describe)?;
        compiled.eval(scope).map_err(describe)
    }

    /// The text of a template.
    pub fn render(&self, source: &str, scope: &Scope) -> Result<String, String> {
        self.env.render_str(source, scope).map_err(describe)
    }
}

/// A minijinja error in one line, without the template name it invents for inline sources.
fn describe(e: minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// A value as JSON; undefined and none become `null`.
pub fn to_json(value: &Value) -> serde_json::Value {
    if value.is_undefined() {
        return serde_json::Value::Null;
    }
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// A value as the text that keys a route or a catalog: strings as they are, numbers printed.
pub fn to_key(value: &Value) -> Option<String> {
    if value.is_undefined() || value.is_none() {
        return None;
    }
    Some(match value.as_str() {
        Some(s) => s.to_string(),
        None => value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(json: serde_json::Value) -> Scope {
        json.as_object().unwrap().iter().map(|(k, v)| (k.clone(), Value::from_serialize(v))).collect()
    }

    #[test]
    fn conditions_read_step_results_and_skipped_steps_are_undefined() {
        let ev = Evaluator::default();
        let s = scope(serde_json::json!({"strength": {"label": "weak", "probability": 0.9}}));
        assert!(ev.eval("strength.label == 'weak' and strength.probability > 0.5", &s).unwrap().is_true());
        assert!(!ev.eval("advice is defined", &s).unwrap().is_true());
        assert_eq!(to_json(&ev.eval("advice.resources", &s).unwrap()), serde_json::Value::Null);
        assert_eq!(ev.render("Hi {{ strength.label }}!", &s).unwrap(), "Hi weak!");
    }

    #[test]
    fn names_are_the_top_level_variables() {
        let ev = Evaluator::default();
        let names = ev.expression_names("strength.label == 'weak' and input.x > 1").unwrap();
        assert_eq!(names, HashSet::from(["strength".to_string(), "input".to_string()]));
        assert!(ev.expression_names("strength.label ==").is_err());
        assert!(ev.template_names("{{ topic }").is_err());
    }
}
