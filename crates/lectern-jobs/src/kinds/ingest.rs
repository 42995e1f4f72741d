//! `http-ingest`: pages through a JSON REST API and upserts its items into a dataset by key.
//! Each page's rows and the position of the next page are written in one transaction, so a run
//! that fails resumes at the next run from the last good page; after a run that reached the end
//! the dataset is published as a training dataset.

use super::{flat, publish_rows, Deps, Detail, RunCtx};
use crate::spec::Dur;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Longest wait between retries of a page.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How the API is paged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pagination {
    None,
    Page,
    Offset,
    Cursor,
    Link,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSpec {
    pub url: String,
    pub dataset: String,
    pub key: String,
    #[serde(default)]
    pub items: String,
    #[serde(default)]
    pub fields: Option<BTreeMap<String, String>>,
    #[serde(default = "no_pagination")]
    pub pagination: Pagination,
    #[serde(default = "page_param")]
    pub page_param: String,
    #[serde(default = "one")]
    pub start_page: u64,
    #[serde(default = "offset_param")]
    pub offset_param: String,
    #[serde(default = "limit_param")]
    pub limit_param: String,
    #[serde(default = "page_size")]
    pub page_size: u64,
    #[serde(default = "cursor_param")]
    pub cursor_param: String,
    #[serde(default)]
    pub next_cursor: Option<String>,
    #[serde(default = "max_pages")]
    pub max_pages: u64,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub secret_headers: BTreeMap<String, String>,
    #[serde(default = "retries")]
    pub retries: u32,
    #[serde(default = "backoff")]
    pub backoff: Dur,
    #[serde(default = "request_timeout")]
    pub request_timeout: Dur,
    #[serde(default = "max_page_bytes")]
    pub max_page_bytes: u64,
}

fn no_pagination() -> Pagination {
    Pagination::None
}
fn page_param() -> String {
    "page".into()
}
fn one() -> u64 {
    1
}
fn offset_param() -> String {
    "offset".into()
}
fn limit_param() -> String {
    "limit".into()
}
fn page_size() -> u64 {
    100
}
fn cursor_param() -> String {
    "cursor".into()
}
fn max_pages() -> u64 {
    10_000
}
fn retries() -> u32 {
    5
}
fn backoff() -> Dur {
    Dur(Duration::from_millis(500))
}
fn request_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}
fn max_page_bytes() -> u64 {
    16 << 20
}

/// Where the next page is: written with each page's rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Position {
    Page(u64),
    Offset(u64),
    Cursor(Option<String>),
    Url(String),
}

/// One page as fetched.
struct Page {
    body: Vec<u8>,
    /// The `rel="next"` target of its `Link` header.
    link_next: Option<String>,
}

/// Why fetching a page failed, and whether trying again may help.
struct FetchError {
    message: String,
    retry: bool,
}

impl IngestSpec {
    pub fn check(&self) -> Result<(), String> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| format!("invalid 'url' '{}': {e}", self.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("'url' must be http or https, not '{}'", url.scheme()));
        }
        lectern_manage::check_model_name(&self.dataset)
            .map_err(|_| format!("invalid 'dataset' name '{}'", self.dataset))?;
        if self.key.is_empty() {
            return Err("'key' must name the column rows are upserted by".into());
        }
        let pointer = |field: &str, p: &str| -> Result<(), String> {
            if p.is_empty() || p.starts_with('/') {
                Ok(())
            } else {
                Err(format!(
                    "'{field}' must be a JSON pointer such as \"/data\" (or \"\" for the whole page), not '{p}'"
                ))
            }
        };
        pointer("items", &self.items)?;
        for (column, p) in self.fields.iter().flatten() {
            pointer(&format!("fields.{column}"), p)?;
        }
        if let Some(fields) = &self.fields {
            if !fields.contains_key(&self.key) {
                return Err(format!("'fields' must map the key column '{}'", self.key));
            }
        }
        match (&self.pagination, &self.next_cursor) {
            (Pagination::Cursor, None) => return Err("pagination 'cursor' needs 'next_cursor' (a JSON pointer)".into()),
            (Pagination::Cursor, Some(p)) => pointer("next_cursor", p)?,
            _ => {}
        }
        if self.page_size == 0 || self.max_pages == 0 || self.max_page_bytes == 0 {
            return Err("'page_size', 'max_pages' and 'max_page_bytes' must be more than zero".into());
        }
        for name in self.headers.keys().chain(self.secret_headers.keys()) {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid header name '{name}'"))?;
        }
        Ok(())
    }

    /// The secret headers' environment variables must be set (checked when the job is stored
    /// and at start-up; never says a value).
    pub fn check_environment(&self) -> Result<(), String> {
        for (header, variable) in &self.secret_headers {
            if std::env::var_os(variable).is_none() {
                return Err(format!("secret header '{header}': the environment variable '{variable}' is not set"));
            }
        }
        Ok(())
    }

    pub async fn run(&self, deps: &Deps, ctx: &RunCtx) -> Result<Detail, String> {
        let headers = self.headers()?;
        let checkpoint = ctx.store.job_checkpoint(&ctx.job).await.map_err(|e| e.to_string())?;
        let resumed = checkpoint.as_deref().and_then(|c| serde_json::from_str::<Position>(c).ok());
        let mut position = resumed.clone().unwrap_or_else(|| self.start());
        let (mut pages, mut seen) = (0u64, 0u64);
        while pages < self.max_pages {
            let url = self.page_url(&position)?;
            let page = self.fetch(&ctx.http, &url, &headers).await.map_err(|e| format!("page {}: {e}", pages + 1))?;
            let body: Value = serde_json::from_slice(&page.body)
                .map_err(|e| format!("page {} ({url}) is not JSON: {e}", pages + 1))?;
            let items = self.items_of(&body).map_err(|e| format!("page {} ({url}): {e}", pages + 1))?;
            if items.is_empty() {
                break;
            }
            let rows = items
                .iter()
                .map(|item| self.row(item))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("page {} ({url}): {e}", pages + 1))?;
            let next = self.next_position(&position, &body, items.len() as u64, page.link_next)?;
            let checkpoint = next.as_ref().map(|p| serde_json::to_string(p).expect("json"));
            let changed = ctx
                .store
                .upsert_rows(&ctx.job, &ctx.run_id, &self.dataset, &rows, checkpoint.as_deref())
                .await
                .map_err(|e| format!("storing page {}: {e}", pages + 1))?
                .ok_or("the run lost its lease; another process took the job over")?;
            ctx.add_items(changed);
            pages += 1;
            seen += items.len() as u64;
            match next {
                Some(next) => position = next,
                None => break,
            }
        }
        let published = publish_rows(deps, ctx, &self.dataset, std::slice::from_ref(&self.key)).await?;
        let changed = ctx.items.load(std::sync::atomic::Ordering::Relaxed);
        let from = if resumed.is_some() { ", resumed from the last good page" } else { "" };
        Ok(format!(
            "{changed} rows inserted or changed from {pages} pages ({seen} items{from}); dataset '{}' has {published} rows",
            self.dataset
        ))
    }

    fn headers(&self) -> Result<reqwest::header::HeaderMap, String> {
        use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            let value = HeaderValue::from_str(value).map_err(|_| format!("invalid value for header '{name}'"))?;
            map.insert(HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?, value);
        }
        for (name, variable) in &self.secret_headers {
            let secret = std::env::var(variable)
                .map_err(|_| format!("secret header '{name}': the environment variable '{variable}' is not set"))?;
            let mut value = HeaderValue::from_str(&secret)
                .map_err(|_| format!("secret header '{name}': its value is not a valid header value"))?;
            value.set_sensitive(true);
            map.insert(HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?, value);
        }
        Ok(map)
    }

    fn start(&self) -> Position {
        match self.pagination {
            Pagination::Page => Position::Page(self.start_page),
            Pagination::Offset => Position::Offset(0),
            Pagination::Cursor => Position::Cursor(None),
            Pagination::None | Pagination::Link => Position::Url(self.url.clone()),
        }
    }

    fn page_url(&self, position: &Position) -> Result<String, String> {
        let mut url = reqwest::Url::parse(&self.url).map_err(|e| e.to_string())?;
        match position {
            Position::Page(n) => {
                url.query_pairs_mut().append_pair(&self.page_param, &n.to_string());
            }
            Position::Offset(n) => {
                url.query_pairs_mut()
                    .append_pair(&self.offset_param, &n.to_string())
                    .append_pair(&self.limit_param, &self.page_size.to_string());
            }
            Position::Cursor(Some(cursor)) => {
                url.query_pairs_mut().append_pair(&self.cursor_param, cursor);
            }
            Position::Cursor(None) => {}
            Position::Url(next) => return Ok(next.clone()),
        }
        Ok(url.to_string())
    }

    /// Where the page after this one is; `None`: this was the last.
    fn next_position(
        &self,
        position: &Position,
        body: &Value,
        items: u64,
        link_next: Option<String>,
    ) -> Result<Option<Position>, String> {
        Ok(match position {
            Position::Page(n) => Some(Position::Page(n + 1)),
            Position::Offset(n) => Some(Position::Offset(n + items)),
            Position::Cursor(_) => {
                let pointer = self.next_cursor.as_deref().unwrap_or_default();
                match body.pointer(pointer) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if s.is_empty() => None,
                    Some(Value::String(s)) => Some(Position::Cursor(Some(s.clone()))),
                    Some(Value::Number(n)) => Some(Position::Cursor(Some(n.to_string()))),
                    Some(other) => return Err(format!("the next cursor at '{pointer}' is not a string: {other}")),
                }
            }
            Position::Url(_) if self.pagination == Pagination::Link => match link_next {
                Some(next) => Some(Position::Url(self.same_origin(&next)?)),
                None => None,
            },
            Position::Url(_) => None,
        })
    }

    /// A `Link` target, resolved against the base URL; it must stay on the base URL's origin.
    fn same_origin(&self, next: &str) -> Result<String, String> {
        let base = reqwest::Url::parse(&self.url).map_err(|e| e.to_string())?;
        let next = base.join(next).map_err(|e| format!("the next page link '{next}' is not a URL: {e}"))?;
        if next.origin() != base.origin() {
            return Err(format!("the next page link leaves {} for another host", base.origin().ascii_serialization()));
        }
        Ok(next.to_string())
    }

    fn items_of<'a>(&self, body: &'a Value) -> Result<&'a Vec<Value>, String> {
        match body.pointer(&self.items) {
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(format!("'{}' is not a list of items but {}", self.items, kind_of(other))),
            None => Err(format!("the page has no '{}'", self.items)),
        }
    }

    /// An item as a row: (its key, the row as JSON text).
    fn row(&self, item: &Value) -> Result<(String, String), String> {
        let row: Map<String, Value> = match &self.fields {
            Some(fields) => fields
                .iter()
                .map(|(column, pointer)| (column.clone(), flat(item.pointer(pointer).cloned().unwrap_or(Value::Null))))
                .collect(),
            None => match item {
                Value::Object(object) => object
                    .iter()
                    .filter(|(_, v)| !matches!(v, Value::Object(_) | Value::Array(_)))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                other => return Err(format!("an item is {}, not an object", kind_of(other))),
            },
        };
        let key = match row.get(&self.key) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            _ => return Err(format!("an item has no key '{}'", self.key)),
        };
        Ok((key, Value::Object(row).to_string()))
    }

    /// Fetches one page, retrying after connection errors, timeouts, 429 and 5xx with a
    /// doubling backoff.
    async fn fetch(
        &self,
        http: &reqwest::Client,
        url: &str,
        headers: &reqwest::header::HeaderMap,
    ) -> Result<Page, String> {
        let mut wait = self.backoff.0;
        let mut attempt = 0;
        loop {
            match self.fetch_once(http, url, headers).await {
                Ok(page) => return Ok(page),
                Err(e) if e.retry && attempt < self.retries => {
                    tracing::debug!(url, attempt, error = %e.message, "retrying a page");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
                Err(e) => {
                    let tries = if e.retry { format!(" (after {} attempts)", attempt + 1) } else { String::new() };
                    return Err(format!("{}{tries}", e.message));
                }
            }
        }
    }

    async fn fetch_once(
        &self,
        http: &reqwest::Client,
        url: &str,
        headers: &reqwest::header::HeaderMap,
    ) -> Result<Page, FetchError> {
        let retry = |message: String| FetchError { message, retry: true };
        let response = http
            .get(url)
            .headers(headers.clone())
            .timeout(self.request_timeout.0)
            .send()
            .await
            .map_err(|e| retry(describe(&e)))?;
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(retry(format!("{url} answered HTTP {status}")));
        }
        if !status.is_success() {
            return Err(FetchError { message: format!("{url} answered HTTP {status}"), retry: false });
        }
        let link_next =
            response.headers().get_all(reqwest::header::LINK).iter().find_map(|v| next_link(v.to_str().ok()?));
        if response.content_length().is_some_and(|n| n > self.max_page_bytes) {
            return Err(FetchError {
                message: format!("{url} sent more than {} bytes", self.max_page_bytes),
                retry: false,
            });
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| retry(describe(&e)))?;
            if (body.len() + chunk.len()) as u64 > self.max_page_bytes {
                return Err(FetchError {
                    message: format!("{url} sent more than {} bytes", self.max_page_bytes),
                    retry: false,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Page { body, link_next })
    }
}

/// A reqwest error without anything secret (it never holds header values).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not be reached"
    } else {
        "failed"
    };
    match e.url() {
        Some(url) => format!("{url} {what}"),
        None => format!("the request {what}"),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The `rel="next"` target of a `Link` header value.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
            })
            .then(|| target.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(extra: Value) -> IngestSpec {
        let mut given = json!({"url": "http://127.0.0.1:9/items", "dataset": "d", "key": "id"});
        given.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let spec: IngestSpec = serde_json::from_value(given).unwrap();
        spec.check().unwrap();
        spec
    }

    #[test]
    fn link_headers_give_their_next_page() {
        assert_eq!(
            next_link(r#"<http://h/p?page=2>; rel="next", <http://h/p?page=9>; rel="last""#).as_deref(),
            Some("http://h/p?page=2")
        );
        assert_eq!(next_link(r#"<http://h/p?page=9>; rel="last""#), None);
    }

    #[test]
    fn items_become_rows_keyed_and_flat() {
        let s = spec(json!({"items": "/data", "fields": {"id": "/id", "city": "/place/city", "tags": "/tags"}}));
        let body = json!({"data": [{"id": 7, "place": {"city": "Lyon"}, "tags": ["a"]}]});
        let items = s.items_of(&body).unwrap();
        let (key, row) = s.row(&items[0]).unwrap();
        assert_eq!(key, "7");
        assert_eq!(serde_json::from_str::<Value>(&row).unwrap(), json!({"id": 7, "city": "Lyon", "tags": "[\"a\"]"}));
        assert!(s.row(&json!({"place": {}})).unwrap_err().contains("no key"));
    }

    #[test]
    fn pages_offsets_and_cursors_move_on() {
        let s = spec(json!({"pagination": "offset", "page_size": 10}));
        assert_eq!(s.page_url(&Position::Offset(20)).unwrap(), "http://127.0.0.1:9/items?offset=20&limit=10");
        assert_eq!(s.next_position(&Position::Offset(20), &json!([]), 10, None).unwrap(), Some(Position::Offset(30)));
        let c = spec(json!({"pagination": "cursor", "next_cursor": "/next"}));
        assert_eq!(
            c.next_position(&Position::Cursor(None), &json!({"next": "abc"}), 3, None).unwrap(),
            Some(Position::Cursor(Some("abc".into())))
        );
        assert_eq!(c.next_position(&Position::Cursor(None), &json!({"next": null}), 3, None).unwrap(), None);
        let l = spec(json!({"pagination": "link"}));
        assert!(l
            .next_position(&Position::Url(l.url.clone()), &json!([]), 1, Some("http://evil.example/x".into()))
            .is_err());
        assert_eq!(
            l.next_position(&Position::Url(l.url.clone()), &json!([]), 1, Some("/items?page=2".into())).unwrap(),
            Some(Position::Url("http://127.0.0.1:9/items?page=2".into()))
        );
    }

    #[test]
    fn bad_specs_are_refused() {
        let bad = |extra: Value| {
            let mut given = json!({"url": "http://h/x", "dataset": "d", "key": "id"});
            given.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            serde_json::from_value::<IngestSpec>(given).map_err(|e| e.to_string()).and_then(|s| s.check())
        };
        assert!(bad(json!({"url": "ftp://h/x"})).is_err());
        assert!(bad(json!({"pagination": "cursor"})).is_err());
        assert!(bad(json!({"items": "data"})).is_err());
        assert!(bad(json!({"pagination": "sideways"})).is_err());
        assert!(bad(json!({"fields": {"name": "/name"}})).is_err());
    }
}
