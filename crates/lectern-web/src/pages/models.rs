//! The models: list with live rate and p99, a model's versions and signature, its try-it form.

use super::{Cell, Table};
use crate::http::{html, json, ok, read_form, PageError, PageResult, Posted};
use crate::templates::Nav;
use crate::viewer::Viewer;
use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use lectern_server::AppState;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Template)]
#[template(path = "models.html")]
struct ModelsPage {
    nav: Nav,
    t: Table,
}

/// `GET /ui/models`
pub async fn list(State(state): State<Arc<AppState>>, viewer: Viewer) -> PageResult {
    let live = viewer.web.stats.live(state.registry.metrics());
    let mut t =
        Table::new("models", &["Model", "State", "Versions", "Default", "Requests/s", "p99 (ms)"], "No models yet.");
    t.key_attr = "model";
    t.sortable = true;
    for model in state.manager.list().await? {
        if !crate::pages::projects::visible(&viewer, &model.name) {
            continue;
        }
        let ready = model.versions.iter().filter(|v| v.serving).count();
        let state_text = if ready > 0 { "READY".to_string() } else { first_state(&model.versions) };
        let numbers = live.get(&model.name);
        let rate = numbers.map_or("0.00".to_string(), |l| format!("{:.2}", l.rate));
        let p99 = numbers.and_then(|l| l.p99_ms).map_or("—".to_string(), |ms| format!("{ms:.1}"));
        let default = model.default_version.map_or("newest".to_string(), |v| v.to_string());
        t.rows.push(super::Row {
            key: model.name.clone(),
            cells: vec![
                Cell::link(model.name.clone(), format!("/ui/models/{}", crate::http::encode(&model.name))),
                Cell::text(state_text),
                Cell::text(model.versions.len().to_string()),
                Cell::text(default),
                Cell::text(rate).class("rate"),
                Cell::text(p99).class("p99"),
            ],
            ..super::Row::default()
        });
    }
    ok(&ModelsPage { nav: Nav::of(&viewer), t })
}

fn first_state(versions: &[lectern_manage::VersionView]) -> String {
    versions.last().map_or("NO VERSIONS".to_string(), |v| v.state.to_string())
}

/// `GET /ui/stats`: the live numbers as JSON, for the script.
pub async fn stats(State(state): State<Arc<AppState>>, viewer: Viewer) -> Response {
    let live = viewer.web.stats.live(state.registry.metrics());
    let models: serde_json::Map<String, Value> = live
        .into_iter()
        .filter(|(name, _)| crate::pages::projects::visible(&viewer, name))
        .map(|(name, l)| (name, json!({"rate": l.rate, "p99_ms": l.p99_ms, "requests": l.requests})))
        .collect();
    json(StatusCode::OK, &json!({ "models": models }))
}

/// One input of the try-it form.
struct InputField {
    name: String,
    datatype: String,
    shape: String,
    value: String,
}

#[derive(Template)]
#[template(path = "model.html")]
struct ModelPage {
    nav: Nav,
    name: String,
    versions: Table,
    signature: Table,
    inputs: Vec<InputField>,
    error: Option<String>,
    result: Option<Table>,
    /// SVG drawn by `charts` (its text escaped there).
    rate_chart: String,
}

/// `GET /ui/models/{name}`
pub async fn detail(State(state): State<Arc<AppState>>, viewer: Viewer, Path(name): Path<String>) -> PageResult {
    model_page(&state, &viewer, &name, &Posted::default(), StatusCode::OK, None, None).await
}

async fn model_page(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
    form: &Posted,
    status: StatusCode,
    error: Option<String>,
    result: Option<Table>,
) -> Result<Response, PageError> {
    if !crate::pages::projects::visible(viewer, name) {
        return Err(PageError::not_found(format!("no model named '{name}'")));
    }
    let model = state.manager.describe(name).await?;
    let mut versions =
        Table::new("versions", &["Version", "State", "Serving", "Size", "Created", "Reason"], "No versions.");
    for v in &model.versions {
        versions.push(vec![
            Cell::text(v.version.to_string()),
            Cell::text(v.state),
            Cell::text(if v.serving { "yes" } else { "no" }),
            Cell::text(format!("{} bytes", v.size)),
            Cell::text(super::when(v.created_at_ms)),
            Cell::text(v.reason.clone()),
        ]);
    }
    let mut signature = Table::new("signature", &["Tensor", "Kind", "Datatype", "Shape"], "The model is not loaded.");
    let mut inputs = Vec::new();
    if let Ok(loaded) = state.registry.resolve(name, None) {
        for (kind, list) in [("input", &loaded.signature.inputs), ("output", &loaded.signature.outputs)] {
            for t in list {
                let shape = format!("{:?}", t.shape);
                signature.push(vec![
                    Cell::text(t.name.clone()),
                    Cell::text(kind),
                    Cell::text(t.datatype.as_str()),
                    Cell::text(shape.clone()),
                ]);
                if kind == "input" {
                    let value = form.text(&format!("input.{}", t.name)).to_string();
                    inputs.push(InputField {
                        name: t.name.clone(),
                        datatype: t.datatype.as_str().into(),
                        shape,
                        value,
                    });
                }
            }
        }
    }
    let series = viewer.web.stats.series(state.registry.metrics(), name);
    let rate_chart = crate::charts::line("Requests per second, last minute", "seconds ago", "requests/s", &series);
    let page = ModelPage {
        nav: Nav::of(viewer),
        name: name.to_string(),
        versions,
        signature,
        inputs,
        error,
        result,
        rate_chart,
    };
    Ok(html(status, &page))
}

/// `POST /ui/models/{name}/try`: one inference from the form's numbers.
pub async fn try_it(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(name): Path<String>,
    request: Request,
) -> PageResult {
    let form = read_form(&viewer.csrf, request, 1024 * 1024).await?;
    if !crate::pages::projects::visible(&viewer, &name) {
        return Err(PageError::not_found(format!("no model named '{name}'")));
    }
    match infer(&state, &name, &form).await {
        Ok(result) => model_page(&state, &viewer, &name, &form, StatusCode::OK, None, Some(result)).await,
        Err(e) => model_page(&state, &viewer, &name, &form, e.status, Some(e.message), None).await,
    }
}

/// Runs the model on the form's inputs; the outputs as a table.
async fn infer(state: &AppState, name: &str, form: &Posted) -> Result<Table, PageError> {
    let loaded = state.registry.model(name, None).await?;
    let mut inputs = Vec::new();
    for input in &loaded.signature.inputs {
        let text = form.text(&format!("input.{}", input.name));
        inputs.push(tensor_json(&input.name, input.datatype.as_str(), &input.shape, text)?);
    }
    let answer = infer_json(&loaded, &json!({ "inputs": inputs })).await?;
    Ok(outputs_table(&answer, loaded.labels.as_deref()))
}

/// Runs a V2 JSON request on a loaded model; its V2 JSON answer.
pub async fn infer_json(loaded: &lectern_runtime::LoadedModel, request: &Value) -> Result<Value, PageError> {
    let request = lectern_core::decode_request(request.to_string().as_bytes(), None)?;
    let response = loaded.infer(request).await?;
    let encoded = lectern_core::encode_response(&response);
    serde_json::from_slice(&encoded.body).map_err(|e| PageError::bad(e.to_string()))
}

/// The V2 JSON of one input from the form's text: rows separated by `;` or new lines, numbers
/// by commas or spaces; `BYTES` inputs take the text as it is.
pub fn tensor_json(name: &str, datatype: &str, shape: &[i64], text: &str) -> Result<Value, PageError> {
    if text.is_empty() {
        return Err(PageError::bad(format!("enter a value for input '{name}'")));
    }
    if datatype == "BYTES" {
        let shape: Vec<i64> = shape.iter().map(|_| 1).collect();
        return Ok(json!({"name": name, "datatype": datatype, "shape": shape, "data": [text]}));
    }
    let rows: Vec<Vec<f64>> = text
        .split([';', '\n'])
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|row| {
            row.split([',', ' ', '\t'])
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    v.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| PageError::bad(format!("input '{name}': '{}' is not a number", v.trim())))
                })
                .collect()
        })
        .collect::<Result<_, _>>()?;
    let Some(width) = rows.first().map(Vec::len) else {
        return Err(PageError::bad(format!("enter a value for input '{name}'")));
    };
    if rows.iter().any(|r| r.len() != width) {
        return Err(PageError::bad(format!("input '{name}': every row needs the same count of numbers")));
    }
    let data: Vec<f64> = rows.concat();
    let shape: Vec<usize> = match shape.len() {
        0 | 1 => vec![data.len()],
        _ => {
            let per_row: i64 = shape[1..].iter().map(|d| if *d < 0 { 1 } else { *d }).product();
            if per_row as usize != width && shape[1..].iter().all(|d| *d >= 0) {
                return Err(PageError::bad(format!(
                    "input '{name}' takes {per_row} numbers per row (shape {shape:?}), not {width}"
                )));
            }
            let mut dims = vec![rows.len()];
            dims.extend(shape[1..].iter().map(|d| if *d < 0 { width } else { *d as usize }));
            dims
        }
    };
    Ok(json!({"name": name, "datatype": datatype, "shape": shape, "data": data}))
}

/// The outputs of a V2 answer, one table row per input row (when every output has one entry
/// per row), class indices shown as the model's labels.
fn outputs_table(answer: &Value, labels: Option<&[String]>) -> Table {
    let outputs: Vec<&Value> = answer.get("outputs").and_then(Value::as_array).into_iter().flatten().collect();
    let rows = |o: &Value| o.get("shape").and_then(|s| s.get(0)).and_then(Value::as_u64).unwrap_or(0) as usize;
    let n = outputs.first().map_or(0, |o| rows(o));
    let names: Vec<&str> = outputs.iter().map(|o| o.get("name").and_then(Value::as_str).unwrap_or("")).collect();
    let mut headers = vec!["Row"];
    headers.extend(&names);
    let mut t = Table::new("try-result", &headers, "No outputs.");
    if n == 0 || outputs.iter().any(|o| rows(o) != n) {
        t.headers.truncate(1);
        t.headers[0].text = "Output".into();
        t.headers.push(super::Header { text: "Values".into(), sort_href: None });
        for (o, name) in outputs.iter().zip(&names) {
            let data = o.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
            t.push(vec![Cell::text(*name), Cell::text(shown(&data, o, labels))]);
        }
        return t;
    }
    for row in 0..n {
        let mut cells = vec![Cell::text((row + 1).to_string())];
        for o in &outputs {
            let data = o.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
            let per_row = data.len() / n;
            let slice = &data[row * per_row..(row + 1) * per_row];
            cells.push(Cell::text(shown(slice, o, labels)));
        }
        t.push(cells);
    }
    t
}

/// Values as text (at most 64): a class index of a label output as its label.
fn shown(values: &[Value], output: &Value, labels: Option<&[String]>) -> String {
    let datatype = output.get("datatype").and_then(Value::as_str).unwrap_or("");
    let label_output = matches!(datatype, "INT64" | "INT32") && labels.is_some();
    let mut texts: Vec<String> = values
        .iter()
        .take(64)
        .map(|v| match (labels, v.as_u64()) {
            (Some(labels), Some(i)) if label_output && (i as usize) < labels.len() => labels[i as usize].clone(),
            _ => match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        })
        .collect();
    if values.len() > 64 {
        texts.push(format!("… ({} values)", values.len()));
    }
    texts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_text_becomes_a_tensor() {
        let t = tensor_json("X", "FP32", &[-1, 4], "1, 2 3,4; 5 6 7 8").unwrap();
        assert_eq!(t["shape"], json!([2, 4]));
        assert_eq!(t["data"], json!([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]));
        assert!(tensor_json("X", "FP32", &[-1, 4], "1,2,3").is_err());
        assert!(tensor_json("X", "FP32", &[-1, 4], "1,2,x,4").is_err());
        assert!(tensor_json("X", "FP32", &[-1, 2], "1,2;3").is_err());
        assert!(tensor_json("X", "FP32", &[-1, 2], "").is_err());
        assert!(tensor_json("X", "FP32", &[-1, 2], ";").is_err());
        assert!(tensor_json("X", "FP32", &[-1, 2], " ;\n; ").is_err());
    }
}
