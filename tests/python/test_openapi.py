"""`GET /openapi.json`: a valid OpenAPI 3.0 document that describes every route the server has.

The route table is read from crates/lectern-server/src/routes/mod.rs, so a route added there
without a description here fails this test.
"""
from __future__ import annotations

import json
import re

import pytest

from conftest import REPO_ROOT

openapi_spec_validator = pytest.importorskip("openapi_spec_validator")

ROUTES_FILE = REPO_ROOT / "crates" / "lectern-server" / "src" / "routes" / "mod.rs"
ROUTE_RE = re.compile(r'\.route\(\s*"([^"]+)"\s*,\s*(.+?)\)\s*$', re.MULTILINE)
METHOD_RE = re.compile(r"\b(get|post|put|delete|patch|head|options)\(")
# Routes any caller may use; every other route needs a credential once authentication is on.
OPEN = {"/v2", "/v2/health/live", "/v2/health/ready", "/metrics", "/openapi.json"}


def server_routes() -> dict[str, set[str]]:
    routes: dict[str, set[str]] = {}
    for path, handlers in ROUTE_RE.findall(ROUTES_FILE.read_text()):
        routes.setdefault(path, set()).update(METHOD_RE.findall(handlers))
    assert routes, f"no routes found in {ROUTES_FILE}"
    return routes


@pytest.fixture(scope="module")
def document(server) -> dict:
    response = server.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def test_the_served_document_is_valid_openapi_3_0(document):
    openapi_spec_validator.validate(document)
    assert document["openapi"].startswith("3.0.")
    assert document == json.loads((REPO_ROOT / "docs" / "openapi.json").read_text())


def test_every_route_and_method_of_the_server_is_described(document):
    routes = server_routes()
    assert "/v1/models/{model}/versions" in routes and "post" in routes["/v1/models/{model}/versions"]
    for path, methods in routes.items():
        assert path in document["paths"], f"{path} is served but not in docs/openapi.json"
        for method in methods:
            assert method in document["paths"][path], f"{method.upper()} {path} is not in docs/openapi.json"
    for path, item in document["paths"].items():
        described = {m for m in item if m != "parameters"}
        assert described <= routes.get(path, set()), f"docs/openapi.json describes {path} {described} the server lacks"


def test_errors_and_security_are_described(document):
    components = document["components"]
    assert components["schemas"]["Error"]["required"] == ["error", "code"]
    bearer = components["securitySchemes"]["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert "WWW-Authenticate" in components["responses"]["Unauthorized"]["headers"]
    assert "Retry-After" in components["responses"]["TooManyRequests"]["headers"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            codes = set(operation["responses"])
            if path in OPEN:
                assert operation.get("security") == [], f"{method} {path} is open"
            else:
                assert operation.get("security"), f"{method} {path} needs a credential"
                assert {"401", "403", "429", "503"} <= codes, f"{method} {path}: {sorted(codes)}"
            for code, answer in operation["responses"].items():
                if code.startswith(("4", "5")):
                    target = components["responses"][answer["$ref"].rsplit("/", 1)[1]]
                    schema = target["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, f"{method} {path} {code}"
    upload = document["paths"]["/v1/models/{model}/versions"]["post"]
    assert {"201", "400", "404", "409", "413"} <= set(upload["responses"])
    assert "application/octet-stream" in upload["requestBody"]["content"]
    pipeline = document["paths"]["/v1/pipelines/{name}"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(pipeline)
