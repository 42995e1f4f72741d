//! spaCy's `FrenchLemmatizer` in "rule" mode (`spacy/lang/fr/lemmatizer.py`), with the tables
//! from the model's `lemmatizer/lookups/lookups.bin` (keys hashed with spaCy's string hash).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rmpv::Value;

use crate::msgpack::{self, bad};
use crate::symbols::string_id;
use crate::FrenchError;

/// The POS values the rule lemmatizer handles; others use the lookup table.
const RULE_POS: [&str; 11] = ["noun", "verb", "adj", "adp", "adv", "aux", "cconj", "det", "pron", "punct", "sconj"];

#[derive(Default)]
struct PosTables {
    index: HashSet<String>,
    exceptions: HashMap<String, Vec<String>>,
    rules: Vec<(String, String)>,
}

pub struct Lemmatizer {
    lookup: HashMap<u64, String>,
    by_pos: HashMap<&'static str, PosTables>,
}

impl Lemmatizer {
    pub fn load(bytes: &[u8], path: &Path) -> Result<Lemmatizer, FrenchError> {
        let value = msgpack::decode(bytes, path)?;
        let table = |name: &str| match msgpack::get(&value, name) {
            Some(Value::Map(entries)) => Ok(entries),
            _ => Err(bad(path, format!("no {name} table"))),
        };
        let mut lookup = HashMap::new();
        for (key, forms) in table("lemma_lookup")? {
            if let (Some(key), Some(form)) = (key.as_u64(), first_string(forms)) {
                lookup.insert(key, form);
            }
        }
        let (index, exc, rules) = (table("lemma_index")?, table("lemma_exc")?, table("lemma_rules")?);
        let mut by_pos = HashMap::new();
        for pos in RULE_POS {
            let id = string_id(pos);
            let tables = PosTables {
                index: entry(index, id).map(strings).unwrap_or_default().into_iter().collect(),
                exceptions: entry(exc, id).map(exceptions).unwrap_or_default(),
                rules: entry(rules, id).map(pairs).unwrap_or_default(),
            };
            by_pos.insert(pos, tables);
        }
        Ok(Lemmatizer { lookup, by_pos })
    }

    /// The lemma of a token with text `text` and universal POS `pos` (e.g. "NOUN").
    pub fn lemmatize(&self, text: &str, pos: &str) -> String {
        let pos_lower = pos.to_ascii_lowercase();
        if pos_lower.is_empty() || pos_lower == "eol" || pos_lower == "space" {
            return text.to_lowercase();
        }
        let Some(tables) = self.by_pos.get(pos_lower.as_str()) else {
            return self.lookup_form(text);
        };
        let lower = text.to_lowercase();
        if tables.index.contains(&lower) {
            return lower;
        }
        if let Some(form) = tables.exceptions.get(&lower).and_then(|f| f.first()) {
            return form.clone();
        }
        let mut oov = None;
        for (old, new) in &tables.rules {
            let Some(stem) = lower.strip_suffix(old.as_str()) else {
                continue;
            };
            let form = format!("{stem}{new}");
            if form.is_empty() {
                continue;
            }
            if tables.index.contains(&form) || !is_py_alpha(&form) {
                return form;
            }
            oov.get_or_insert(form);
        }
        if let Some(form) = oov {
            return form;
        }
        self.lookup.get(&string_id(&lower)).cloned().unwrap_or(lower)
    }

    /// spaCy's `lookup_lemmatize`: the lookup table with the original case, else the text.
    fn lookup_form(&self, text: &str) -> String {
        self.lookup.get(&string_id(text)).cloned().unwrap_or_else(|| text.to_string())
    }
}

/// Python's `str.isalpha`: non-empty and every character a letter.
fn is_py_alpha(text: &str) -> bool {
    !text.is_empty() && text.chars().all(crate::features::is_py_alpha)
}

type Entries = Vec<(Value, Value)>;

fn entry(entries: &Entries, id: u64) -> Option<&Value> {
    entries.iter().find(|(k, _)| k.as_u64() == Some(id)).map(|(_, v)| v)
}

fn first_string(value: &Value) -> Option<String> {
    match value {
        Value::Array(items) => items.first().and_then(msgpack::as_str).map(str::to_string),
        other => msgpack::as_str(other).map(str::to_string),
    }
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(msgpack::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

fn exceptions(value: &Value) -> HashMap<String, Vec<String>> {
    let Value::Map(entries) = value else {
        return HashMap::new();
    };
    entries.iter().filter_map(|(k, v)| Some((msgpack::as_str(k)?.to_string(), strings(v)))).collect()
}

fn pairs(value: &Value) -> Vec<(String, String)> {
    let Value::Array(items) = value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match strings(item).as_slice() {
            [old, new] => Some((old.clone(), new.clone())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> HashSet<String> {
        list.iter().map(|w| w.to_string()).collect()
    }

    fn rules(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    /// Small tables in the shape of fr_core_news_sm's.
    fn lemmatizer() -> Lemmatizer {
        let mut by_pos: HashMap<&'static str, PosTables> =
            RULE_POS.iter().map(|p| (*p, PosTables::default())).collect();
        let noun = by_pos.entry("noun").or_default();
        noun.index = words(&["école", "père"]);
        noun.rules = rules(&[("s", ""), ("aux", "al")]);
        let verb = by_pos.entry("verb").or_default();
        verb.index = words(&["manger"]);
        verb.exceptions = [("est".to_string(), vec!["être".to_string()])].into();
        verb.rules = rules(&[("ées", "er"), ("é", "er")]);
        let det = by_pos.entry("det").or_default();
        det.exceptions = [("l'".to_string(), vec!["le".to_string()])].into();
        let lookup = [("Noël", "Noël"), ("vite", "vite"), ("jouaient", "jouer")]
            .iter()
            .map(|(k, v)| (string_id(k), v.to_string()))
            .collect();
        Lemmatizer { lookup, by_pos }
    }

    #[test]
    fn rule_lemmatizer_follows_spacy() {
        let l = lemmatizer();
        assert_eq!(l.lemmatize("École", "NOUN"), "école");
        assert_eq!(l.lemmatize("Est", "VERB"), "être");
        assert_eq!(l.lemmatize("L'", "DET"), "le");
        assert_eq!(l.lemmatize("mangées", "VERB"), "manger");
        // No rule result in the index: the first out-of-vocabulary form.
        assert_eq!(l.lemmatize("zorglubées", "VERB"), "zorgluber");
        // A form that is not purely alphabetic counts as known.
        assert_eq!(l.lemmatize("grands-pères", "NOUN"), "grands-père");
        // No rule applies: the lookup table on the lowercase form, else the form.
        assert_eq!(l.lemmatize("Jouaient", "ADV"), "jouer");
        assert_eq!(l.lemmatize("Xyz", "ADV"), "xyz");
    }

    #[test]
    fn other_pos_use_the_lookup_with_case() {
        let l = lemmatizer();
        assert_eq!(l.lemmatize("Noël", "PROPN"), "Noël");
        assert_eq!(l.lemmatize("Paris", "PROPN"), "Paris");
        assert_eq!(l.lemmatize("12", "NUM"), "12");
        assert_eq!(l.lemmatize("\n", "SPACE"), "\n");
        assert_eq!(l.lemmatize("ABC", ""), "abc");
    }
}
