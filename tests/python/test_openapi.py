"""`GET /openapi.json`: a valid OpenAPI 3.1 document generated from the route table.

The document is the only description of the routes: the router, the access gate and this
document all come from the one declaration of each route in
crates/lectern-server/src/routes/mod.rs. So these tests read the served document and hold the
server to it: every operation it names is routed, every method it does not name is 405, every
operation declares who may call it and the answers of the gate, and statuses the server really
gives (a known model that is not ready: 400) are listed.
"""
from __future__ import annotations

import re

import pytest
import requests

openapi_spec_validator = pytest.importorskip("openapi_spec_validator")

LEVELS = {"open", "client", "trainer", "admin"}
METHODS = {"get", "post", "put", "delete", "patch", "head", "options", "trace"}
SAMPLE = {"model": "no-such-model", "version": "1", "name": "no-such-pipeline", "id": "000000000000",
          "upstream": "no-such-upstream", "path": "x"}


@pytest.fixture(scope="module")
def document(server) -> dict:
    response = server.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def concrete(path: str) -> str:
    return path.format(**SAMPLE)


def test_the_served_document_is_valid_openapi_3_1(document):
    openapi_spec_validator.validate(document)
    assert document["openapi"].startswith("3.1.")
    ops = list(operations(document))
    assert len(ops) >= 30, f"only {len(ops)} operations described"
    ids = [op["operationId"] for _, _, op in ops]
    assert len(ids) == len(set(ids)), f"operation ids repeat: {sorted(ids)}"


def test_every_described_operation_is_routed_and_every_other_method_is_405(server, document):
    for path, item in document["paths"].items():
        url = server.url + concrete(path)
        described = {m for m in item if m in METHODS}
        for method in described:
            # a body that is neither JSON nor TOML nor a model: every route answers it with its
            # own status (400, 404, ...) and changes nothing; never the router's 404 or 405
            r = requests.request(method.upper(), url, data=b"{" if method in ("post", "put") else None, timeout=30)
            assert r.status_code != 405, f"{method.upper()} {path} is described but not routed"
            if r.status_code == 404:
                assert not r.json()["error"].startswith("no route for"), f"{method.upper()} {path} is not routed"
        for method in {"get", "post", "put", "delete", "patch"} - described:
            r = requests.request(method.upper(), url, timeout=30)
            assert r.status_code == 405, f"{method.upper()} {path} answers {r.status_code}, yet is not described"


def test_every_operation_declares_its_access_and_the_gate_answers(document):
    components = document["components"]
    error = components["schemas"]["Error"]
    assert error["required"] == ["error", "code"], error
    codes = error["properties"]["code"]["enum"]
    assert {"invalid_input", "model_not_found", "database_unavailable", "queue_full"} <= set(codes), codes
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", c) for c in codes), codes
    bearer = components["securitySchemes"]["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert components["securitySchemes"]["apiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert "WWW-Authenticate" in components["responses"]["Unauthorized"]["headers"]
    assert "Retry-After" in components["responses"]["TooManyRequests"]["headers"]
    seen = set()
    for path, method, operation in operations(document):
        what = f"{method.upper()} {path}"
        access = operation.get("x-lectern-access")
        assert access in LEVELS, f"{what}: x-lectern-access {access!r}"
        seen.add(access)
        codes = set(operation["responses"])
        if access == "open":
            assert operation.get("security") == [], f"{what} is open"
        else:
            assert operation.get("security"), f"{what} needs a credential"
            assert {"401", "403", "429", "503"} <= codes, f"{what}: {sorted(codes)}"
        if "{" in path:
            assert "400" in codes, f"{what}: a path parameter that cannot be read is 400"
        for code, answer in operation["responses"].items():
            if code.startswith(("4", "5")):
                if "$ref" in answer:
                    answer = components["responses"][answer["$ref"].rsplit("/", 1)[1]]
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, f"{what} {code}: {schema}"
    assert seen == LEVELS, seen
    paths = document["paths"]
    assert paths["/v2/health/live"]["get"]["x-lectern-access"] == "open"
    assert paths["/v2/models/{model}/infer"]["post"]["x-lectern-access"] == "client"
    assert paths["/v1/pipelines/{name}"]["post"]["x-lectern-access"] == "client"
    assert paths["/v1/pipelines/{name}"]["put"]["x-lectern-access"] == "trainer"
    assert paths["/v1/keys"]["post"]["x-lectern-access"] == "admin"
    upload = paths["/v1/models/{model}/versions"]["post"]
    assert {"201", "400", "404", "409", "413"} <= set(upload["responses"])
    assert "application/octet-stream" in upload["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(paths["/v1/pipelines/{name}"]["post"]["requestBody"]["content"])
    infer = paths["/v2/models/{model}/infer"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/InferRequest"}


def test_request_schemas_are_the_serde_types(document):
    """The bodies the server refuses unknown fields in say so (`deny_unknown_fields`)."""
    schemas = document["components"]["schemas"]
    for name in ("CreateModel", "SetConfig", "SetDefault", "CreateKey"):
        assert schemas[name].get("additionalProperties") is False, f"{name}: {schemas[name]}"
    assert schemas["CreateKey"]["required"] == ["name", "role"]
    assert set(schemas["Model"]["properties"]) == {
        "name", "default_version", "config", "labels", "versions", "created_at_ms", "updated_at_ms"}
    assert set(schemas["InferRequest"]["properties"]) == {"id", "parameters", "inputs", "outputs"}


def broken_model(models_dir):
    (models_dir / "broken" / "1").mkdir(parents=True)
    (models_dir / "broken" / "1" / "model.onnx").write_bytes(b"not an onnx file")


def test_a_known_model_that_is_not_ready_answers_400_and_the_document_lists_it(start_server):
    srv = start_server(prepare=broken_model)
    doc = srv.get("/openapi.json").json()
    for path, template in (("/v2/models/broken", "/v2/models/{model}"),
                           ("/v2/models/broken/versions/1", "/v2/models/{model}/versions/{version}"),
                           ("/v2/models/broken/ready", "/v2/models/{model}/ready"),
                           ("/v2/models/broken/versions/1/ready", "/v2/models/{model}/versions/{version}/ready")):
        r = srv.get(path)
        assert r.status_code == 400, f"{path}: {r.status_code} {r.text}"
        assert set(r.json()) >= {"error"}
        assert "400" in doc["paths"][template]["get"]["responses"], f"GET {template} does not list 400"
