//! The datasets: list, upload, and one dataset's schema, filtered rows and a chart per column.

use super::{Cell, Table};
use crate::charts;
use crate::http::{encode, html, ok, read_form, PageError, PageResult, Posted};
use crate::templates::Nav;
use crate::viewer::Viewer;
use askama::Template;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use bytes::Bytes;
use lectern_server::AppState;
use lectern_store::Role;
use lectern_train::dataset::{Column, ColumnValues, MISSING_CODE};
use lectern_train::{Dataset, Format};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Rows shown on a dataset's page.
const SHOWN_ROWS: usize = 200;
/// Bars in a chart of text values.
const TOP_VALUES: usize = 12;

#[derive(Template)]
#[template(path = "datasets.html")]
struct DatasetsPage {
    nav: Nav,
    t: Table,
    error: Option<String>,
    name: String,
}

/// `GET /ui/datasets`
pub async fn list(State(state): State<Arc<AppState>>, viewer: Viewer) -> PageResult {
    datasets_page(&state, &viewer, StatusCode::OK, None, String::new()).await
}

async fn datasets_page(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    error: Option<String>,
    name: String,
) -> PageResult {
    let mut t =
        Table::new("datasets", &["Dataset", "Rows", "Columns", "Size", "Created by", "Created"], "No datasets yet.");
    t.sortable = true;
    for d in state.manager.datasets().await? {
        if !crate::pages::projects::visible(viewer, &d.name) {
            continue;
        }
        let columns = d.columns.as_array().map_or(0, Vec::len);
        t.push(vec![
            Cell::link(d.name.clone(), format!("/ui/datasets/{}", encode(&d.name))),
            Cell::text(d.rows.to_string()),
            Cell::text(columns.to_string()),
            Cell::text(crate::http::size(d.size as usize)),
            Cell::text(d.created_by.clone()),
            Cell::text(super::when(d.created_at_ms)),
        ]);
    }
    Ok(html(status, &DatasetsPage { nav: Nav::of(viewer), t, error, name }))
}

/// `POST /ui/datasets`: a trainer uploads a CSV or JSON file as a dataset.
pub async fn upload(State(state): State<Arc<AppState>>, viewer: Viewer, request: Request) -> PageResult {
    viewer.require(Role::Trainer)?;
    let form = read_form(&viewer.csrf, request, upload_limit(&state)).await?;
    let name = form.text("name").to_string();
    match store_upload(&state, &viewer, &name, &form).await {
        Ok(()) => Ok(crate::http::see_other(&format!("/ui/datasets/{}", encode(&name)))),
        Err(e) => datasets_page(&state, &viewer, e.status, Some(e.message), name).await,
    }
}

/// The largest file a page accepts.
pub fn upload_limit(state: &AppState) -> usize {
    state.settings.max_body_bytes.min(state.manager.max_upload_bytes() as usize)
}

/// Stores the form's `file` as dataset `name` (CSV, or JSON when it starts with `[`).
pub async fn store_upload(state: &AppState, viewer: &Viewer, name: &str, form: &Posted) -> Result<(), PageError> {
    let file = form.file("file").ok_or_else(|| PageError::bad("choose a CSV or JSON file"))?;
    store_bytes(state, viewer, name, file.clone()).await
}

/// Stores `bytes` as dataset `name`.
pub async fn store_bytes(state: &AppState, viewer: &Viewer, name: &str, bytes: Bytes) -> Result<(), PageError> {
    if name.is_empty() {
        return Err(PageError::bad("give the dataset a name"));
    }
    state.check_owner(&viewer.principal, name)?;
    let format =
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') { Format::Json } else { Format::Csv };
    let body = futures_util::stream::iter([Ok::<Bytes, std::convert::Infallible>(bytes)]);
    state.manager.push_dataset(viewer.actor(), name, format, body).await?;
    Ok(())
}

#[derive(Deserialize)]
pub struct Filter {
    #[serde(default)]
    column: String,
    #[serde(default)]
    contains: String,
}

#[derive(Template)]
#[template(path = "dataset.html")]
struct DatasetPage {
    nav: Nav,
    name: String,
    updated: String,
    created_by: String,
    rows: usize,
    matching: usize,
    shown: usize,
    columns: Vec<String>,
    column: String,
    contains: String,
    schema: Table,
    table: Table,
    charts: Vec<String>,
}

/// `GET /ui/datasets/{name}[?column=&contains=]`
pub async fn detail(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(filter): Query<Filter>,
) -> PageResult {
    if !crate::pages::projects::visible(&viewer, &name) {
        return Err(PageError::not_found(format!("no dataset named '{name}'")));
    }
    let view = state.manager.dataset(&name).await?;
    let data = state.manager.read_dataset(&name).await?;
    let columns: Vec<String> = data.columns.iter().map(|c| c.schema.name.clone()).collect();
    let picked = matching_rows(&data, &filter)?;
    let charted: Vec<&Column> = match viewer.web.config.charts.get(&name) {
        Some(chosen) => chosen.iter().filter_map(|c| data.columns.iter().find(|d| d.schema.name == *c)).collect(),
        None => data.columns.iter().collect(),
    };
    let page = DatasetPage {
        nav: Nav::of(&viewer),
        updated: super::when(view.created_at_ms),
        created_by: view.created_by,
        rows: data.rows,
        matching: picked.len(),
        shown: picked.len().min(SHOWN_ROWS),
        schema: schema_table(&data),
        table: rows_table(&data, &picked),
        charts: charted.into_iter().map(|c| chart(c, &picked)).collect(),
        column: filter.column,
        contains: filter.contains,
        columns,
        name,
    };
    ok(&page)
}

/// The rows whose `column` holds `contains` (case-insensitive); every row without a filter.
pub fn matching_rows(data: &Dataset, filter: &Filter) -> Result<Vec<usize>, PageError> {
    if filter.column.is_empty() || filter.contains.is_empty() {
        return Ok((0..data.rows).collect());
    }
    let column =
        data.column(&filter.column).map_err(|_| PageError::bad(format!("no column named '{}'", filter.column)))?;
    let wanted = filter.contains.to_lowercase();
    Ok((0..data.rows).filter(|&r| column.text(r).is_some_and(|t| t.to_lowercase().contains(&wanted))).collect())
}

fn schema_table(data: &Dataset) -> Table {
    let mut t = Table::new("schema", &["Column", "Type", "Missing", "Distinct"], "No columns.");
    for c in &data.columns {
        let kind =
            serde_json::to_value(c.schema.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let distinct = match c.schema.distinct {
            Some(51) => "more than 50".to_string(),
            Some(n) => n.to_string(),
            None => "—".to_string(),
        };
        t.push(vec![
            Cell::text(c.schema.name.clone()),
            Cell::text(kind),
            Cell::text(c.schema.missing.to_string()),
            Cell::text(distinct),
        ]);
    }
    t
}

pub fn rows_table(data: &Dataset, picked: &[usize]) -> Table {
    let headers: Vec<&str> = data.columns.iter().map(|c| c.schema.name.as_str()).collect();
    let mut t = Table::new("rows", &headers, "No rows match.");
    t.sortable = true;
    for &r in picked.iter().take(SHOWN_ROWS) {
        let cells = data
            .columns
            .iter()
            .map(|c| {
                let text = c.text(r).unwrap_or_default();
                match &c.values {
                    ColumnValues::Numbers(_) => Cell { sort: Some(text.clone()), text, ..Cell::default() },
                    ColumnValues::Strings { .. } => Cell::text(text),
                }
            })
            .collect();
        t.push(cells);
    }
    t
}

/// A column's chart over the picked rows: a histogram of numbers, else the most frequent values.
fn chart(column: &Column, picked: &[usize]) -> String {
    let title = &column.schema.name;
    match &column.values {
        ColumnValues::Numbers(values) => {
            let chosen: Vec<f64> = picked.iter().map(|&r| values[r]).collect();
            charts::histogram(title, &chosen, 12)
        }
        ColumnValues::Strings { dictionary, codes } => {
            let mut counts: HashMap<u32, u64> = HashMap::new();
            for &r in picked {
                if codes[r] != MISSING_CODE {
                    *counts.entry(codes[r]).or_default() += 1;
                }
            }
            let mut counts: Vec<(String, u64)> =
                counts.into_iter().map(|(code, n)| (dictionary[code as usize].clone(), n)).collect();
            counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            counts.truncate(TOP_VALUES);
            charts::bars(title, &counts)
        }
    }
}
