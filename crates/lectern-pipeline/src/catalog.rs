//! The local resource catalog: what an LLM step answers when the LLM cannot.

use crate::PipelineError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// A learning resource: a title and a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub title: String,
    pub url: String,
}

/// Resources by skill (lower case); the skill `*` answers skills without rows of their own.
#[derive(Debug, Default)]
pub struct Catalog {
    by_skill: HashMap<String, Vec<Resource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    skill: String,
    title: String,
    url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlCatalog {
    #[serde(default)]
    resource: Vec<Row>,
}

/// The skill `*`: answers skills that have no rows.
const ANY_SKILL: &str = "*";

impl Catalog {
    /// Reads a `.toml` (`[[resource]]` tables) or `.csv` (`skill,title,url`) catalog.
    pub fn load(path: &Path) -> Result<Self, PipelineError> {
        let fail = |m: String| PipelineError::File(format!("catalog {}: {m}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let rows = match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => parse_csv(&text).map_err(fail)?,
            Some("toml") => toml::from_str::<TomlCatalog>(&text).map_err(|e| fail(e.to_string()))?.resource,
            _ => return Err(fail("must be a .toml or .csv file".into())),
        };
        Ok(Self::from_rows(rows))
    }

    fn from_rows(rows: Vec<Row>) -> Self {
        let mut by_skill: HashMap<String, Vec<Resource>> = HashMap::new();
        for row in rows {
            by_skill.entry(normalise(&row.skill)).or_default().push(Resource { title: row.title, url: row.url });
        }
        Catalog { by_skill }
    }

    /// The resources for a skill: its own rows, else the `*` rows, else none.
    pub fn lookup(&self, skill: &str) -> &[Resource] {
        self.by_skill.get(&normalise(skill)).or_else(|| self.by_skill.get(ANY_SKILL)).map(Vec::as_slice).unwrap_or(&[])
    }
}

fn normalise(skill: &str) -> String {
    skill.trim().to_lowercase()
}

fn parse_csv(text: &str) -> Result<Vec<Row>, String> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| e.to_string())?.clone();
    if headers.iter().collect::<Vec<_>>() != ["skill", "title", "url"] {
        return Err("the header must be skill,title,url".into());
    }
    reader.deserialize().map(|row| row.map_err(|e| e.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_toml_rows_match_case_insensitively_with_a_wildcard() {
        let rows = parse_csv("skill,title,url\nFractions,\"Halves, quarters\",https://a\n*,Any,https://b\n").unwrap();
        let c = Catalog::from_rows(rows);
        assert_eq!(c.lookup(" fractions ")[0].title, "Halves, quarters");
        assert_eq!(c.lookup("algebra")[0].url, "https://b");
        let t: TomlCatalog = toml::from_str("[[resource]]\nskill='x'\ntitle='T'\nurl='u'\n").unwrap();
        assert_eq!(Catalog::from_rows(t.resource).lookup("X").len(), 1);
        assert!(Catalog::default().lookup("x").is_empty());
        assert!(parse_csv("name,link\n").is_err());
    }
}
