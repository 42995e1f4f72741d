//! The pages, one file per area. Each handler takes a [`Viewer`](crate::viewer::Viewer) (so it
//! is never reached signed out), checks the role its forms need, and renders its template.

pub mod admin;
pub mod datasets;
pub mod jobs;
pub mod models;
pub mod overview;
pub mod pipelines;
pub mod projects;
pub mod training;

use serde_json::Value;

/// A table as the `table.html` partial draws it.
#[derive(Debug, Default)]
pub struct Table {
    pub id: &'static str,
    pub caption: String,
    pub headers: Vec<Header>,
    pub rows: Vec<Row>,
    /// `data-<key_attr>="<row key>"` on each row with a key.
    pub key_attr: &'static str,
    /// The script may sort it in place.
    pub sortable: bool,
    /// Shown when there are no rows.
    pub empty: &'static str,
}

#[derive(Debug, Default)]
pub struct Header {
    pub text: String,
    /// A link that sorts by this column (done on the server).
    pub sort_href: Option<String>,
}

#[derive(Debug, Default)]
pub struct Row {
    pub key: String,
    pub class: &'static str,
    pub cells: Vec<Cell>,
}

#[derive(Debug, Default)]
pub struct Cell {
    pub text: String,
    pub href: Option<String>,
    pub class: &'static str,
    /// Numeric sort key for the script.
    pub sort: Option<String>,
    /// Links listed under the text: (title, http/https URL).
    pub links: Vec<(String, String)>,
}

impl Table {
    pub fn new(id: &'static str, headers: &[&str], empty: &'static str) -> Table {
        let headers = headers.iter().map(|h| Header { text: h.to_string(), sort_href: None }).collect();
        Table { id, headers, empty, ..Table::default() }
    }

    pub fn push(&mut self, cells: Vec<Cell>) {
        self.rows.push(Row { cells, ..Row::default() });
    }
}

impl Cell {
    pub fn text(text: impl Into<String>) -> Cell {
        Cell { text: text.into(), ..Cell::default() }
    }

    pub fn link(text: impl Into<String>, href: impl Into<String>) -> Cell {
        Cell { text: text.into(), href: Some(href.into()), ..Cell::default() }
    }

    pub fn class(mut self, class: &'static str) -> Cell {
        self.class = class;
        self
    }

    /// A JSON value: numbers and strings as they are, arrays of `{title, url}` as links,
    /// anything else as compact JSON.
    pub fn value(value: &Value) -> Cell {
        match value {
            Value::Null => Cell::text(""),
            Value::String(s) => Cell::text(s.clone()),
            Value::Number(n) => Cell { text: n.to_string(), sort: Some(n.to_string()), ..Cell::default() },
            Value::Bool(b) => Cell::text(b.to_string()),
            Value::Array(items) if !items.is_empty() && items.iter().all(|i| link_of(i).is_some()) => {
                Cell { links: items.iter().filter_map(link_of).collect(), ..Cell::default() }
            }
            other => Cell::text(other.to_string()),
        }
    }
}

/// `{title, url}` with an http(s) URL.
fn link_of(item: &Value) -> Option<(String, String)> {
    let url = item.get("url")?.as_str()?;
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return None;
    }
    let title = item.get("title").and_then(Value::as_str).unwrap_or(url);
    Some((title.to_string(), url.to_string()))
}

/// A time in milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn when(ms: i64) -> String {
    format!("{} UTC", lectern_core::time::utc_text(ms))
}

/// An optional time, or a dash.
pub fn maybe_when(ms: Option<i64>) -> String {
    ms.map(when).unwrap_or_else(|| "—".into())
}

/// A duration in milliseconds for people.
pub fn duration(ms: i64) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms < 120_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms if ms < 7_200_000 => format!("{} min", ms / 60_000),
        ms => format!("{:.1} h", ms as f64 / 3_600_000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_links_become_links() {
        let v = serde_json::json!([{"title": "<b>", "url": "https://x.org"}]);
        assert_eq!(Cell::value(&v).links, vec![("<b>".to_string(), "https://x.org".to_string())]);
        let bad = serde_json::json!([{"title": "x", "url": "javascript:alert(1)"}]);
        assert!(Cell::value(&bad).links.is_empty());
    }
}
