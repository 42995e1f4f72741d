//! The pipelines: their steps, a try-it form, and a run over an uploaded CSV whose results
//! are a sortable, highlightable, downloadable table (the skill coach's class view).

use super::{Cell, Header, Table};
use crate::http::{encode, html, ok, read_form, PageError, PageResult};
use crate::results::ResultSet;
use crate::templates::Nav;
use crate::viewer::Viewer;
use askama::Template;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use lectern_pipeline::{Engine, PipelineRequest};
use lectern_server::AppState;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Rows accepted from one CSV file.
const MAX_ROWS: usize = 10_000;
/// Pipeline runs at once for a CSV of a pipeline without `for_each`.
const PARALLEL_RUNS: usize = 4;

fn engine(state: &AppState) -> Result<&Arc<Engine>, PageError> {
    state.pipelines.get().ok_or_else(|| PageError::new(StatusCode::SERVICE_UNAVAILABLE, "pipelines are starting"))
}

fn pipeline(engine: &Engine, name: &str) -> Result<Arc<lectern_pipeline::Pipeline>, PageError> {
    engine
        .pipelines()
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| PageError::not_found(format!("no pipeline named '{name}'")))
}

#[derive(Template)]
#[template(path = "pipelines.html")]
struct PipelinesPage {
    nav: Nav,
    t: Table,
}

/// `GET /ui/pipelines`
pub async fn list(State(state): State<Arc<AppState>>, viewer: Viewer) -> PageResult {
    let mut t = Table::new("pipelines", &["Pipeline", "For each", "Steps"], "No pipelines.");
    for p in engine(&state)?.pipelines() {
        let steps: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
        t.push(vec![
            Cell::link(p.name.clone(), format!("/ui/pipelines/{}", encode(&p.name))),
            Cell::text(p.for_each.clone().unwrap_or_default()),
            Cell::text(steps.join(" → ")),
        ]);
    }
    ok(&PipelinesPage { nav: Nav::of(&viewer), t })
}

#[derive(Template)]
#[template(path = "pipeline.html")]
struct PipelinePage {
    nav: Nav,
    name: String,
    for_each: Option<String>,
    steps: Table,
    input: String,
    highlight: String,
    error: Option<String>,
    answer: Option<String>,
}

/// `GET /ui/pipelines/{name}`
pub async fn detail(State(state): State<Arc<AppState>>, viewer: Viewer, Path(name): Path<String>) -> PageResult {
    pipeline_page(&state, &viewer, &name, String::new(), StatusCode::OK, None, None)
}

fn pipeline_page(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
    input: String,
    status: StatusCode,
    error: Option<String>,
    answer: Option<String>,
) -> PageResult {
    let pipeline = pipeline(engine(state)?, name)?;
    let mut steps = Table::new("steps", &["Step", "Kind", "When", "Definition"], "No steps.");
    for step in &pipeline.steps {
        let mut definition = serde_json::to_value(step).unwrap_or(Value::Null);
        let kind = definition.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
        if let Some(fields) = definition.as_object_mut() {
            for key in ["id", "kind", "when"] {
                fields.remove(key);
            }
        }
        steps.push(vec![
            Cell::text(step.id.clone()),
            Cell::text(kind),
            Cell::text(step.when.clone().unwrap_or_default()),
            Cell::text(definition.to_string()),
        ]);
    }
    let highlight = viewer.web.config.highlight.get(name).cloned().unwrap_or_default();
    let input = if input.is_empty() { example_input(pipeline.for_each.as_deref()) } else { input };
    let page = PipelinePage {
        nav: Nav::of(viewer),
        name: name.to_string(),
        for_each: pipeline.for_each.clone(),
        steps,
        input,
        highlight,
        error,
        answer,
    };
    Ok(html(status, &page))
}

fn example_input(for_each: Option<&str>) -> String {
    match for_each {
        Some(field) => format!("{{\"{field}\": [{{}}]}}"),
        None => "{}".to_string(),
    }
}

/// `POST /ui/pipelines/{name}/try`: the pipeline's answer to a JSON object.
pub async fn try_it(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(name): Path<String>,
    request: Request,
) -> PageResult {
    let form = read_form(&viewer.csrf, request, state.settings.max_body_bytes).await?;
    let input = form.text("input").to_string();
    let body = match serde_json::from_str::<Value>(&input) {
        Ok(Value::Object(body)) => body,
        Ok(_) => {
            return pipeline_page(
                &state,
                &viewer,
                &name,
                input,
                StatusCode::BAD_REQUEST,
                Some("the input must be a JSON object".into()),
                None,
            )
        }
        Err(e) => {
            let message = format!("the input is not JSON: {e}");
            return pipeline_page(&state, &viewer, &name, input, StatusCode::BAD_REQUEST, Some(message), None);
        }
    };
    match engine(&state)?.run(&name, PipelineRequest { body, files: HashMap::new() }).await {
        Ok(answer) => {
            let text = serde_json::to_string_pretty(&answer).unwrap_or_default();
            pipeline_page(&state, &viewer, &name, input, StatusCode::OK, None, Some(text))
        }
        Err(e) => {
            let e = PageError::from(e);
            pipeline_page(&state, &viewer, &name, input, e.status, Some(e.message), None)
        }
    }
}

/// `POST /ui/pipelines/{name}/csv`: runs the pipeline over each row of a CSV file.
pub async fn csv(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(name): Path<String>,
    request: Request,
) -> PageResult {
    let form = read_form(&viewer.csrf, request, super::datasets::upload_limit(&state)).await?;
    let engine = engine(&state)?;
    let pipeline = pipeline(engine, &name)?;
    let refuse = |message: String| {
        pipeline_page(&state, &viewer, &name, String::new(), StatusCode::BAD_REQUEST, Some(message), None)
    };
    let Some(file) = form.file("file") else { return refuse("choose a CSV file".into()) };
    let (columns, rows) = match read_csv(file) {
        Ok(read) => read,
        Err(message) => return refuse(message),
    };
    let highlight = match form.text("highlight") {
        "" => None,
        rule => match rule.split_once('=') {
            Some((column, value)) => Some((column.trim().to_string(), value.trim().to_string())),
            None => return refuse("highlight: write column=value".into()),
        },
    };
    let answers = match run_rows(engine, &name, pipeline.for_each.as_deref(), &rows).await {
        Ok(answers) => answers,
        Err(e) => return refuse(e.message),
    };
    let mut all_columns = columns;
    let mut merged = Vec::with_capacity(rows.len());
    for (row, answer) in rows.into_iter().zip(answers) {
        let mut out = row;
        match answer {
            Value::Object(fields) => {
                for (key, value) in fields {
                    if !all_columns.contains(&key) {
                        all_columns.push(key.clone());
                    }
                    out.insert(key, value);
                }
            }
            other => {
                if !all_columns.iter().any(|c| c == "answer") {
                    all_columns.push("answer".into());
                }
                out.insert("answer".into(), other);
            }
        }
        merged.push(out);
    }
    let set =
        ResultSet { owner: viewer.owner(), pipeline: name.clone(), columns: all_columns, rows: merged, highlight };
    let id = viewer.web.results.keep(set).await;
    Ok(crate::http::see_other(&format!("/ui/pipelines/{}/results/{id}", encode(&name))))
}

/// One input row: column → value.
type Row = Map<String, Value>;

/// A CSV file as its header and one JSON object per row (numbers as numbers).
fn read_csv(bytes: &[u8]) -> Result<(Vec<String>, Vec<Row>), String> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).trim(csv::Trim::All).from_reader(bytes);
    let header: Vec<String> =
        reader.headers().map_err(|e| format!("the CSV file cannot be read: {e}"))?.iter().map(str::to_string).collect();
    if header.is_empty() || header.iter().any(String::is_empty) {
        return Err("the CSV file needs a header line naming every column".into());
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("line {}: {e}", i + 2))?;
        if rows.len() == MAX_ROWS {
            return Err(format!("the CSV file has more than {MAX_ROWS} rows"));
        }
        let row: Map<String, Value> =
            header.iter().zip(record.iter()).map(|(k, v)| (k.clone(), cell_value(v))).collect();
        rows.push(row);
    }
    if rows.is_empty() {
        return Err("the CSV file has no rows".into());
    }
    Ok((header, rows))
}

fn cell_value(text: &str) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::from(i);
    }
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() => serde_json::Number::from_f64(x).map(Value::Number).unwrap_or(Value::Null),
        _ => Value::String(text.to_string()),
    }
}

/// One answer per row: all rows in one request under `for_each`, else one run per row.
async fn run_rows(
    engine: &Engine,
    name: &str,
    for_each: Option<&str>,
    rows: &[Map<String, Value>],
) -> Result<Vec<Value>, PageError> {
    if let Some(field) = for_each {
        let items = rows.iter().cloned().map(Value::Object).collect();
        let body = Map::from_iter([(field.to_string(), Value::Array(items))]);
        let answer = engine.run(name, PipelineRequest { body, files: HashMap::new() }).await?;
        let results = answer.get("results").and_then(Value::as_array).cloned().unwrap_or_default();
        return Ok(results);
    }
    let runs = rows.iter().cloned().map(|row| run_one(engine, name, row));
    Ok(stream::iter(runs).buffered(PARALLEL_RUNS).collect().await)
}

/// One row's answer, or its error as `{"error"}`.
async fn run_one(engine: &Engine, name: &str, row: Map<String, Value>) -> Value {
    match engine.run(name, PipelineRequest { body: row, files: HashMap::new() }).await {
        Ok(answer) => answer,
        Err(e) => Value::Object(Map::from_iter([("error".to_string(), Value::String(e.to_string()))])),
    }
}

#[derive(Deserialize)]
pub struct SortQuery {
    #[serde(default)]
    sort: String,
    #[serde(default)]
    order: String,
}

#[derive(Template)]
#[template(path = "results.html")]
struct ResultsPage {
    nav: Nav,
    name: String,
    id: String,
    count: usize,
    highlighted: usize,
    t: Table,
}

/// `GET /ui/pipelines/{name}/results/{id}` (`{id}.csv`: the same table as CSV).
pub async fn results(
    viewer: Viewer,
    Path((name, id)): Path<(String, String)>,
    Query(query): Query<SortQuery>,
) -> PageResult {
    let (id, as_csv) = match id.strip_suffix(".csv") {
        Some(id) => (id.to_string(), true),
        None => (id, false),
    };
    let gone = || PageError::not_found("these results are no longer kept (an hour at most); run the file again");
    let kept = viewer.web.results.get(&id, &viewer.owner(), &name).await.ok_or_else(gone)?;
    let set = &kept.0;
    let mut order: Vec<usize> = (0..set.rows.len()).collect();
    if set.columns.contains(&query.sort) {
        order.sort_by(|&a, &b| compare(set.rows[a].get(&query.sort), set.rows[b].get(&query.sort)));
        if query.order == "desc" {
            order.reverse();
        }
    }
    if as_csv {
        return Ok(csv_download(set, &order, &name));
    }
    let base = format!("/ui/pipelines/{}/results/{id}", encode(&name));
    let mut t = Table::new("results", &[], "No rows.");
    t.sortable = true;
    t.headers = set
        .columns
        .iter()
        .map(|c| {
            let next = if query.sort == *c && query.order != "desc" { "desc" } else { "asc" };
            Header { text: c.clone(), sort_href: Some(format!("{base}?sort={}&order={next}", encode(c))) }
        })
        .collect();
    let mut highlighted = 0;
    for &i in &order {
        let row = &set.rows[i];
        let hit = set.highlight.as_ref().is_some_and(|(column, value)| matches(row.get(column), value));
        highlighted += usize::from(hit);
        let cells = set.columns.iter().map(|c| Cell::value(row.get(c).unwrap_or(&Value::Null))).collect();
        t.rows.push(super::Row { key: String::new(), class: if hit { "highlight" } else { "" }, cells });
    }
    let page = ResultsPage { nav: Nav::of(&viewer), name, id, count: set.rows.len(), highlighted, t };
    ok(&page)
}

fn matches(value: Option<&Value>, wanted: &str) -> bool {
    match value {
        Some(Value::String(s)) => s == wanted,
        Some(Value::Null) | None => wanted.is_empty(),
        Some(other) => other.to_string().as_str() == wanted,
    }
}

/// Numbers by value, then text; missing values last.
fn compare(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.and_then(Value::as_f64), b.and_then(Value::as_f64)) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => {
            let text = |v: Option<&Value>| match v {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.to_lowercase()),
                Some(other) => Some(other.to_string()),
            };
            match (text(a), text(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        }
    }
}

/// The results as a CSV download: arrays of links as `title <url>` joined by `; `.
fn csv_download(set: &ResultSet, order: &[usize], name: &str) -> Response {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record(&set.columns);
    for &i in order {
        let row = &set.rows[i];
        let record: Vec<String> = set.columns.iter().map(|c| csv_text(row.get(c))).collect();
        let _ = writer.write_record(&record);
    }
    let body = writer.into_inner().unwrap_or_default();
    let file = format!(
        "attachment; filename=\"{}-results.csv\"",
        name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
    );
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, file)], body)
        .into_response()
}

fn csv_text(value: Option<&Value>) -> String {
    let text = match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.iter().all(|i| i.get("url").is_some()) => items
            .iter()
            .map(|i| {
                let url = i.get("url").and_then(Value::as_str).unwrap_or("");
                match i.get("title").and_then(Value::as_str) {
                    Some(title) => format!("{title} <{url}>"),
                    None => url.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        Some(other) => other.to_string(),
    };
    // A cell starting with a formula character is opened as text by spreadsheets.
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) && text.parse::<f64>().is_err() {
        format!("'{text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_are_typed_objects() {
        let (columns, rows) = read_csv(b"student,score,skill\nann,81,fractions\nbo,4.5,\n").unwrap();
        assert_eq!(columns, vec!["student", "score", "skill"]);
        assert_eq!(rows[0]["score"], Value::from(81));
        assert_eq!(rows[1]["score"], serde_json::json!(4.5));
        assert_eq!(rows[1]["skill"], Value::Null);
        assert!(read_csv(b"a,b\n1\n").is_err());
        assert!(read_csv(b"a,b\n").is_err());
    }

    #[test]
    fn formulas_are_not_exported_as_formulas() {
        assert_eq!(csv_text(Some(&Value::from("=1+1"))), "'=1+1");
        assert_eq!(csv_text(Some(&Value::from("-3"))), "-3");
    }
}
