"""Property-based test of the whole HTTP API from the document the server serves.

schemathesis reads `GET /openapi.json` (generated from the route table and the serde types) and
sends a few generated requests to every operation of a running server (over a copy of
examples/models, `--auth none` so that a generated key does not lock the rest out). Every
answer must be no 5xx and conform to the document: a declared status, a declared content type,
a body that fits the declared schema, the declared headers. Bounded: a few examples per
operation, derandomized, under two minutes.

Run on SQLite and on PostgreSQL (LECTERN_TEST_DATABASE=postgres).
"""
from __future__ import annotations

import time

import pytest
import requests

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import LecternServer, copy_models  # noqa: E402

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES_PER_OPERATION = 4


@schemathesis.serializer("application/toml")
def toml_text(ctx, value):
    """A pipeline definition is TOML text: generated strings are sent as they are."""
    return value.encode() if isinstance(value, str) else str(value).encode()


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("properties")
    models = copy_models(root / "models")
    data = root / "data"
    data.mkdir()
    srv = LecternServer(models, data, extra_args=["--auth", "none"])
    # wait for the start-up load, so that readiness is stable
    deadline = time.monotonic() + 60
    while requests.get(srv.url + "/v2/health/ready", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the server never became ready"
        time.sleep(0.1)
    yield srv
    srv.cleanup()


@pytest.fixture(scope="module")
def api_schema(api_server):
    return schemathesis.openapi.from_url(api_server.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_the_document_says(case, api_server):
    case.call_and_validate(base_url=api_server.url, checks=CHECKS, timeout=30)
