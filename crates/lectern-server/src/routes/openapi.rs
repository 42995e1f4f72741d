//! The OpenAPI document, derived from the route table: each route's `#[utoipa::path]`, the
//! serde types' schemas, and its access level (security, `x-lectern-access`, and the answers
//! of the gate: 401, 403, 429, 503).

use super::Route;
use crate::gate::Access;
use axum::http::{header, HeaderValue, Method};
use axum::response::IntoResponse;
use std::sync::OnceLock;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{HttpMethod, Operation, Paths};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{Object, Schema};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Components, ComponentsBuilder, Content, Info, License, OpenApi, OpenApiBuilder, Ref, RefOr, Tag, Type,
};
use utoipa::{PartialSchema, ToSchema};

/// Every error body: `error` for people, `code` one of the stable names of
/// [`lectern_core::ErrorCode`]. Its schema is [`error_schema`] (the codes listed as an enum).
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)] // a schema: the body itself is written by `ApiError`
pub(crate) struct ErrorBody {
    /// What went wrong, for a person.
    error: String,
    /// A stable machine-readable name of the error.
    code: String,
}

/// The `Error` schema: `error` and `code` required, `code` one of the error table's names.
fn error_schema() -> RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::ObjectBuilder;
    let names = lectern_core::ErrorCode::ALL.iter().map(|c| c.name());
    ObjectBuilder::new()
        .description(Some("Every error body."))
        .property(
            "error",
            ObjectBuilder::new().schema_type(Type::String).description(Some("What went wrong, for a person.")),
        )
        .required("error")
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(names))
                .description(Some("A stable machine-readable name of the error (docs/contract.md, Errors).")),
        )
        .required("code")
        .into()
}

/// The extension naming a route's access level: `open`, `client`, `trainer` or `admin`.
pub const ACCESS_EXTENSION: &str = "x-lectern-access";

const DESCRIPTION: &str = "Lectern serves ONNX models over the KServe Open Inference Protocol \
(V2 REST, `/v2`) and manages them over `/v1`: models, versions (uploaded as raw files), configs, \
default versions, API keys, the audit log, and pipelines. docs/contract.md is the reference for \
behaviour.\n\nAuthentication: `Authorization: Bearer <API key or OIDC token>` (or `X-API-Key: \
<key>`). Each operation's `x-lectern-access` says who may call it: `open` (anyone, always), \
`client` (any role; anyone with `--open-inference`), `trainer` (trainer or admin), `admin`. \
Without any key or OIDC issuer, a loopback-only server answers everything without credentials; \
`--auth none` turns checks off. A path or method not in this document is 404 or 405, and needs a \
valid credential of any role once checks apply (else 401).\n\nEvery error body is \
`{\"error\": \"...\", \"code\": \"...\"}`. Every response carries `x-request-id` (echoed when the request sent one).";

/// The document of the server's route table.
pub fn document() -> OpenApi {
    build(&super::table())
}

/// `GET /openapi.json`: this document (made once).
#[utoipa::path(get, path = "/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "This document (OpenAPI 3.1).", content_type = "application/json", body = Object)))]
pub async fn serve() -> impl IntoResponse {
    static DOCUMENT: OnceLock<bytes::Bytes> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| document().to_json().expect("the document serialises").into()).clone();
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body)
}

pub(crate) fn build(table: &[Route]) -> OpenApi {
    let mut paths = Paths::new();
    let mut schemas = vec![(<ErrorBody as ToSchema>::name().into_owned(), error_schema())];
    for route in table {
        let mut operation = route.operation.clone();
        decorate(&mut operation, route);
        // `{*path}` (a catch-all of the router) is an ordinary parameter in OpenAPI.
        let path = route.path.replace("{*", "{");
        paths.add_path_operation(&path, vec![http_method(&route.method)], operation);
        schemas.extend(route.schemas.iter().cloned());
    }
    schemas.sort_by(|a, b| a.0.cmp(&b.0));
    schemas.dedup_by(|a, b| a.0 == b.0);
    let mut info = Info::new("Lectern", env!("CARGO_PKG_VERSION"));
    info.description = Some(DESCRIPTION.into());
    info.license = Some(License::new("Apache-2.0"));
    OpenApiBuilder::new().info(info).paths(paths).components(Some(components(schemas))).tags(Some(tags())).build()
}

fn http_method(method: &Method) -> HttpMethod {
    match *method {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        Method::HEAD => HttpMethod::Head,
        Method::OPTIONS => HttpMethod::Options,
        _ => HttpMethod::Trace,
    }
}

fn tags() -> Vec<Tag> {
    [
        ("v2", "Open Inference Protocol (V2 REST), as Triton and KServe."),
        ("repository", "The V2 model repository extension."),
        ("pipelines", "Declared pipelines."),
        ("models", "Model management."),
        ("keys", "API keys."),
        ("audit", "Who changed what."),
        ("jobs", "Scheduled jobs: ingest, cleanup, retraining, batch pipelines."),
        ("proxy", "The caching proxy: configured upstreams under /proxy/{name}/."),
        ("cluster", "Scale-out: the workers of the cluster and where models are placed."),
        ("operations", "Metrics and this document."),
    ]
    .into_iter()
    .map(|(name, description)| {
        let mut tag = Tag::new(name);
        tag.description = Some(description.into());
        tag
    })
    .collect()
}

/// The answers of the gate, shared by every protected route.
const GATE_ANSWERS: [(&str, &str); 4] =
    [("401", "Unauthorized"), ("403", "Forbidden"), ("429", "TooManyRequests"), ("503", "ServiceUnavailable")];

/// Adds what the route's access level implies, and the answers every route may give.
fn decorate(operation: &mut Operation, route: &Route) {
    let mut extensions = Extensions::default();
    extensions.insert(ACCESS_EXTENSION.into(), route.access.as_str().into());
    operation.extensions = Some(extensions);
    let responses = &mut operation.responses.responses;
    if route.access == Access::Open {
        operation.security = Some(Vec::new());
    } else {
        operation.security = Some(vec![
            SecurityRequirement::new("bearerAuth", Vec::<String>::new()),
            SecurityRequirement::new("apiKeyHeader", Vec::<String>::new()),
        ]);
        for (status, name) in GATE_ANSWERS {
            responses.entry(status.into()).or_insert_with(|| Ref::from_response_name(name).into());
        }
    }
    if route.path.contains('{') {
        responses
            .entry("400".into())
            .or_insert_with(|| error_response("A path parameter cannot be read (not UTF-8).").into());
    }
    for response in responses.values_mut() {
        if let RefOr::T(response) = response {
            response.headers.insert("x-request-id".into(), RefOr::T(request_id()));
        }
    }
}

fn request_id() -> Header {
    let mut header = Header::new(String::schema());
    header.description = Some("The request's id: the one the request sent, else a new one.".into());
    header
}

fn error_response(description: &str) -> Response {
    let mut response = Response::new(description);
    response.content.insert("application/json".into(), RefOr::T(Content::new(Some(Ref::from_schema_name("Error")))));
    response
}

fn components(schemas: Vec<(String, RefOr<Schema>)>) -> Components {
    let retry_after = || {
        let mut header = Header::new(Object::with_type(Type::Integer));
        header.description = Some("Seconds to wait before trying again.".into());
        header
    };
    let mut unauthorized = error_response("No credential, or one that is unknown, revoked or fails verification.");
    let mut challenge = Header::new(String::schema());
    challenge.description = Some("`Bearer`".into());
    unauthorized.headers.insert("WWW-Authenticate".into(), RefOr::T(challenge));
    let forbidden = error_response("The credential's role may not use this route, or a token carries no role.");
    let mut limited = error_response("The key's rate limit is exceeded.");
    limited.headers.insert("Retry-After".into(), RefOr::T(retry_after()));
    let mut unavailable =
        error_response("A dependency (the database, the OIDC issuer) is unavailable, or the server is starting.");
    unavailable.headers.insert("Retry-After".into(), RefOr::T(retry_after()));
    let builder = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .response("Unauthorized", unauthorized)
        .response("Forbidden", forbidden)
        .response("TooManyRequests", limited)
        .response("ServiceUnavailable", unavailable)
        .security_scheme("bearerAuth", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)))
        .security_scheme("apiKeyHeader", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
    let mut components = builder.build();
    for response in components.responses.values_mut() {
        if let RefOr::T(response) = response {
            response.headers.insert("x-request-id".into(), RefOr::T(request_id()));
        }
    }
    components
}
