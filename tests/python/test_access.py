"""Access control end to end: API keys with roles, OIDC bearer tokens from an issuer played by
this test process, open inference, per-key rate limits, the loopback-only rule, and secrets
that never reach a log.

Every declared route (read from the served OpenAPI document, whose `x-lectern-access` comes
from the one route table in crates/lectern-server/src/routes/mod.rs) is called with no key, a
client, a trainer, an admin and a revoked key, and each answer is compared with its declared
level. A hand-written list of routes with their expected answers is also called with: no
credential, malformed ones, a revoked key, a key of each role, a valid token of each role, an
expired token, one from another issuer, one for another audience, one with a forged signature
and one without a role; the levels it expects (the contract's access table) must be the ones
the document declares. Open routes answer everyone; inference, model metadata and running
pipelines need any role; models, the repository and defining pipelines need trainer or admin;
keys and the audit log need admin; an undeclared path or method needs a valid credential of
any role (then 404 or 405). A refused call is 401 (no or bad credential, with
`WWW-Authenticate: Bearer`) or 403 (wrong role), and changes nothing; an allowed call answers
what the route answers.

Run on SQLite and on PostgreSQL (LECTERN_TEST_DATABASE=postgres).
"""
from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import EXAMPLE_MODELS, LecternServer, ServerState, TestDatabase, database_engine, lectern_binary
from lectern_v2 import iris_x, json_input, model_file

IRIS_V1 = model_file(EXAMPLE_MODELS, "iris-logreg", 1).read_bytes()
IRIS_V2 = model_file(EXAMPLE_MODELS, "iris-logreg", 2).read_bytes()
AUDIENCE = "lectern-tests"
INFER_BODY = {"inputs": [json_input("X", iris_x()[:2], "FP32")]}


# =========================================================================== the OIDC issuer

class Issuer:
    """An OIDC issuer on 127.0.0.1: discovery document, JWKS, and RS256 tokens."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "lectern-test-key"
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        self.jwks = {"keys": [jwk]}
        self.requests: list[str] = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                issuer.requests.append(self.path)
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks",
                            "id_token_signing_alg_values_supported": ["RS256"]}
                elif self.path == "/jwks":
                    body = issuer.jwks
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def token(self, role=None, *, sub=None, iss=None, aud=AUDIENCE, expires_in=600, key=None) -> str:
        now = int(time.time())
        claims = {"iss": iss or self.url, "aud": aud, "sub": sub or f"user-{role or 'none'}",
                  "iat": now - 5, "exp": now + expires_in}
        if role is not None:
            claims["role"] = role
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": self.kid})

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# =========================================================================== the world

@dataclass
class World:
    state: ServerState
    issuer: Issuer
    keys: dict[str, str] = field(default_factory=dict)      # name -> key text
    key_ids: dict[str, str] = field(default_factory=dict)   # name -> id
    secrets: set[str] = field(default_factory=set)          # every key and token used
    servers: list[LecternServer] = field(default_factory=list)
    oidc: LecternServer | None = None

    def remember(self, secret: str) -> str:
        self.secrets.add(secret)
        if secret.startswith("lk_"):
            self.secrets.add(secret.split("_", 2)[2])  # the secret part alone
        elif secret.count(".") == 2:
            self.secrets.add(secret.rsplit(".", 1)[1])  # the signature alone
        return secret

    def start(self, *extra, log="info") -> LecternServer:
        srv = self.state.start(extra_args=["--log", log, *extra], models=False)
        self.servers.append(srv)
        return srv

    def admin(self) -> dict:
        return {"Authorization": f"Bearer {self.keys['admin']}"}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("access")
    state = ServerState(root, None, TestDatabase())
    issuer = Issuer()
    w = World(state, issuer)
    try:
        # 1. a fresh server on loopback with no key is open; the first key turns auth on
        srv = w.start()
        r = requests.get(srv.url + "/v1/models", timeout=30)
        assert r.status_code == 200, f"no key, no issuer, loopback: open ({r.status_code} {r.text})"
        r = requests.post(srv.url + "/v1/keys", json={"name": "admin", "role": "admin"}, timeout=30)
        assert r.status_code == 201, r.text
        body = r.json()
        assert set(body) >= {"id", "name", "role", "created_at_ms", "key"}, body
        assert body["role"] == "admin" and body["key"].startswith("lk_") and body["id"] in body["key"]
        w.keys["admin"], w.key_ids["admin"] = w.remember(body["key"]), body["id"]
        r = requests.get(srv.url + "/v1/models", timeout=30)
        assert r.status_code == 401, f"after the first key, credentials are required at once: {r.status_code}"
        for name, role in (("trainer", "trainer"), ("client", "client"), ("revoked", "client"),
                           ("other-client", "client")):
            r = requests.post(srv.url + "/v1/keys", json={"name": name, "role": role}, headers=w.admin(), timeout=30)
            assert r.status_code == 201, r.text
            w.keys[name], w.key_ids[name] = w.remember(r.json()["key"]), r.json()["id"]
        # a key works until it is revoked, and stops at once
        assert requests.get(srv.url + "/v2/models/none", headers=bearer(w.keys["revoked"]), timeout=30).status_code == 404
        r = requests.delete(f"{srv.url}/v1/keys/{w.key_ids['revoked']}", headers=w.admin(), timeout=30)
        assert r.status_code == 204, r.text
        r = requests.get(srv.url + "/v2/models/none", headers=bearer(w.keys["revoked"]), timeout=30)
        assert r.status_code == 401, f"a revoked key still works: {r.status_code} {r.text}"
        # the models the walk uses
        for name in ("walk", "walk-scratch"):
            r = requests.post(srv.url + "/v1/models", json={"name": name}, headers=w.admin(), timeout=30)
            assert r.status_code == 201, r.text
            r = requests.post(f"{srv.url}/v1/models/{name}/versions", data=IRIS_V1, headers=w.admin(), timeout=60)
            assert r.status_code == 201, r.text
        srv.kill()
        # 2. the same state with an OIDC issuer, debug logs
        w.oidc = w.start("--oidc-issuer", issuer.url, "--oidc-audience", AUDIENCE, log="debug")
        yield w
    finally:
        state.cleanup()
        issuer.close()


# =========================================================================== the walk

OPEN, INFER, MODELS, ADMIN, UNDECLARED = "open", "client", "trainer", "admin", "undeclared"
ROLES_ALLOWED = {OPEN: {"client", "trainer", "admin"}, INFER: {"client", "trainer", "admin"},
                 MODELS: {"trainer", "admin"}, ADMIN: {"admin"}, UNDECLARED: {"client", "trainer", "admin"}}
_unique = itertools.count(1)


@dataclass
class Route:
    method: str
    path: str                   # may hold {target}, made by prepare
    access: str
    ok: int                     # the status when allowed
    body: object = None         # json (dict), bytes, or a callable returning either
    prepare: object = None      # callable(world, url) -> target; target must survive a refusal
    survives: object = None     # callable(world, url, target) -> bool: the target is still there


def make_model(w, url):
    name = f"walk-del-{next(_unique)}"
    assert requests.post(url + "/v1/models", json={"name": name}, headers=w.admin(), timeout=30).status_code == 201
    return name


def model_exists(w, url, name):
    return requests.get(f"{url}/v1/models/{name}", headers=w.admin(), timeout=30).status_code == 200


def make_version(w, url):
    r = requests.post(url + "/v1/models/walk-scratch/versions", data=IRIS_V2, headers=w.admin(), timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["version"]["version"]


def version_exists(w, url, version):
    view = requests.get(url + "/v1/models/walk-scratch", headers=w.admin(), timeout=30).json()
    return version in [v["version"] for v in view["versions"]]


def make_key(w, url):
    r = requests.post(url + "/v1/keys", json={"name": f"walk-victim-{next(_unique)}", "role": "client"},
                      headers=w.admin(), timeout=30)
    assert r.status_code == 201, r.text
    w.remember(r.json()["key"])
    return r.json()["id"]


PIPELINE_TOML = b'steps = [{ id = "m", model = "walk", inputs = ["a", "b", "c", "d"] }]\n'


def make_pipeline(w, url):
    name = f"walk-pipe-{next(_unique)}"
    r = requests.put(f"{url}/v1/pipelines/{name}", data=PIPELINE_TOML, headers=w.admin(), timeout=30)
    assert r.status_code == 200, r.text
    return name


def pipeline_exists(w, url, name):
    listed = requests.get(url + "/v1/pipelines", headers=w.admin(), timeout=30).json()["pipelines"]
    return any(p["name"] == name for p in listed)


def key_live(w, url, key_id):
    keys = requests.get(url + "/v1/keys", headers=w.admin(), timeout=30).json()["keys"]
    return any(k["id"] == key_id and k["revoked_at_ms"] is None for k in keys)


ROUTES = [
    # open
    Route("GET", "/v2", OPEN, 200),
    Route("GET", "/v2/health/live", OPEN, 200),
    Route("GET", "/v2/health/ready", OPEN, 200),
    Route("GET", "/metrics", OPEN, 200),
    Route("GET", "/openapi.json", OPEN, 200),
    Route("GET", "/no/such/route", UNDECLARED, 404),
    Route("DELETE", "/v2/health/live", UNDECLARED, 405),
    Route("OPTIONS", "/v2/models/walk/infer", UNDECLARED, 405),
    # inference and model metadata
    Route("GET", "/v2/models/walk", INFER, 200),
    Route("GET", "/v2/models/walk/versions/1", INFER, 200),
    Route("GET", "/v2/models/walk/ready", INFER, 200),
    Route("GET", "/v2/models/walk/versions/1/ready", INFER, 200),
    Route("POST", "/v2/models/walk/infer", INFER, 200, INFER_BODY),
    Route("POST", "/v2/models/walk/versions/1/infer", INFER, 200, INFER_BODY),
    Route("GET", "/v1/pipelines", INFER, 200),
    Route("POST", "/v1/pipelines/no-such-pipeline", INFER, 404, {"x": 1}),
    Route("PUT", "/v1/pipelines/walk-pipe", MODELS, 200, PIPELINE_TOML),
    Route("DELETE", "/v1/pipelines/{target}", MODELS, 204, None, make_pipeline, pipeline_exists),
    # models and the repository
    Route("POST", "/v2/repository/index", MODELS, 200),
    Route("POST", "/v2/repository/models/walk-scratch/load", MODELS, 200),
    Route("POST", "/v2/repository/models/walk-scratch/unload", MODELS, 200),
    Route("GET", "/v1/models", MODELS, 200),
    Route("POST", "/v1/models", MODELS, 201, lambda: {"name": f"walk-new-{next(_unique)}"}),
    Route("PATCH", "/v1/models", UNDECLARED, 405, {}),
    Route("GET", "/v1/models/walk", MODELS, 200),
    Route("DELETE", "/v1/models/{target}", MODELS, 204, None, make_model, model_exists),
    Route("PUT", "/v1/models/walk-scratch/config", MODELS, 200, {"config": {}}),
    Route("PUT", "/v1/models/walk-scratch/default", MODELS, 200, {"version": None}),
    Route("POST", "/v1/models/walk-scratch/versions", MODELS, 201, IRIS_V1),
    Route("DELETE", "/v1/models/walk-scratch/versions/{target}", MODELS, 200, None, make_version, version_exists),
    # keys and the audit log
    Route("GET", "/v1/keys", ADMIN, 200),
    Route("POST", "/v1/keys", ADMIN, 201, lambda: {"name": f"walk-key-{next(_unique)}", "role": "client"}),
    Route("DELETE", "/v1/keys/{target}", ADMIN, 204, None, make_key, key_live),
    Route("GET", "/v1/audit", ADMIN, 200),
]


def credentials(w: World) -> dict[str, tuple[dict, object]]:
    """name -> (headers, role): a role name, or "401" / "403" for every protected route."""
    iss = w.issuer
    t = lambda token: bearer(w.remember(token))  # noqa: E731
    return {
        "no credential": ({}, "401"),
        "empty bearer": ({"Authorization": "Bearer "}, "401"),
        "basic auth": ({"Authorization": "Basic YWRtaW46YWRtaW4="}, "401"),
        "malformed bearer": ({"Authorization": "Bearer not-a-key-or-token"}, "401"),
        "malformed key": (bearer("lk_000000000000_" + "0" * 48), "401"),
        "truncated key": (bearer(w.keys["admin"][:-4]), "401"),
        "revoked key": (bearer(w.keys["revoked"]), "401"),
        "client key": (bearer(w.keys["client"]), "client"),
        "client key as X-API-Key": ({"X-API-Key": w.keys["client"]}, "client"),
        "trainer key": (bearer(w.keys["trainer"]), "trainer"),
        "admin key": (bearer(w.keys["admin"]), "admin"),
        "client token": (t(iss.token("client")), "client"),
        "trainer token": (t(iss.token("trainer")), "trainer"),
        "admin token": (t(iss.token("admin")), "admin"),
        "expired admin token": (t(iss.token("admin", expires_in=-600)), "401"),
        "admin token of another issuer": (t(iss.token("admin", iss="http://127.0.0.1:9/other-issuer")), "401"),
        "admin token for another audience": (t(iss.token("admin", aud="someone-else")), "401"),
        "admin token with a forged signature": (t(iss.token("admin", key=iss.other_key)), "401"),
        "token without a role": (t(iss.token(None)), "403"),
    }


def newest_audit_id(w: World, url: str) -> int:
    entries = requests.get(url + "/v1/audit", params={"limit": 1}, headers=w.admin(), timeout=30).json()["entries"]
    return entries[0]["id"] if entries else 0


def call_route(w: World, url: str, route: Route, headers: dict, target=None):
    path = route.path.format(target=target)
    body = route.body() if callable(route.body) else route.body
    kw = {"json": body} if isinstance(body, dict) else ({"data": body} if body is not None else {})
    r = requests.request(route.method, url + path, headers=headers, timeout=60, **kw)
    if r.status_code == 201 and path == "/v1/keys":
        w.remember(r.json()["key"])
    return r, path, target


def test_every_route_answers_each_credential_as_the_access_table_says(world):
    w, url = world, world.oidc.url
    mismatches = []
    for cred_name, (headers, who) in credentials(w).items():
        for route in ROUTES:
            if route.access == OPEN:
                expected = route.ok
            elif who in ("401", "403"):
                expected = int(who)
            else:
                expected = route.ok if who in ROLES_ALLOWED[route.access] else 403
            target = route.prepare(w, url) if route.prepare else None
            before = newest_audit_id(w, url) if expected in (401, 403) and route.method != "GET" else None
            r, path, target = call_route(w, url, route, headers, target)
            what = f"{cred_name}: {route.method} {path}"
            if r.status_code != expected:
                mismatches.append(f"{what} -> {r.status_code} (expected {expected}) {r.text[:200]!r}")
                continue
            if expected in (401, 403):
                body = r.json()
                if set(body) != {"error", "code"} or not body["error"] or body["code"] != ("unauthorized" if expected == 401 else "forbidden"):
                    mismatches.append(f"{what}: error body {body!r}")
                if expected == 401 and r.headers.get("WWW-Authenticate", "").split(" ")[0].lower() != "bearer":
                    mismatches.append(f"{what}: 401 without WWW-Authenticate: Bearer ({dict(r.headers)})")
                if before is not None and newest_audit_id(w, url) != before:
                    mismatches.append(f"{what}: refused, yet the audit log grew")
                if route.survives and not route.survives(w, url, target):
                    mismatches.append(f"{what}: refused, yet {target} is gone")
    assert not mismatches, f"{len(mismatches)} calls answered otherwise than the access table:\n" + "\n".join(mismatches)
    assert any(p == "/jwks" for p in w.issuer.requests), "the server never fetched the issuer's keys"


# =========================================================================== the declared routes

# Path parameters of the walk from the document: names that exist nowhere, so that an allowed
# call answers the route's own 4xx (or 200) and changes nothing.
SAMPLE_PARAMS = {"model": "walk-nothing", "version": "1", "name": "walk-nothing", "id": "000000000000",
                 "upstream": "walk-nothing", "path": "x"}
METHODS = ("get", "post", "put", "delete", "patch", "head", "options", "trace")


def declared_operations(url: str) -> list[tuple[str, str, str]]:
    """(METHOD, path template, access) of every operation of the served document."""
    document = requests.get(url + "/openapi.json", timeout=30).json()
    ops = [(method.upper(), path, op.get("x-lectern-access"))
           for path, item in document["paths"].items() for method, op in item.items() if method in METHODS]
    assert len(ops) >= 30, f"the document declares only {len(ops)} operations"
    return ops


def test_every_declared_route_answers_each_key_as_its_declared_access(world):
    w, url = world, world.oidc.url
    keys = {"no key": ({}, None), "revoked key": (bearer(w.keys["revoked"]), None),
            "client key": (bearer(w.keys["client"]), "client"),
            "trainer key": (bearer(w.keys["trainer"]), "trainer"),
            "admin key": (bearer(w.keys["admin"]), "admin")}
    operations = declared_operations(url)
    assert {access for _, _, access in operations} == {"open", "client", "trainer", "admin"}, operations
    mismatches = []
    for method, template, access in operations:
        path = template.format(**SAMPLE_PARAMS)
        for key_name, (headers, role) in keys.items():
            body = b"{" if method in ("POST", "PUT") else None  # neither JSON, TOML nor a model: changes nothing
            r = requests.request(method, url + path, headers=headers, data=body, timeout=60)
            what = f"{key_name}: {method} {path} ({access}) -> {r.status_code} {r.text[:160]!r}"
            if access == "open":
                ok = r.status_code not in (401, 403)
            elif role is None:
                ok = r.status_code == 401 and r.headers.get("WWW-Authenticate", "").lower().startswith("bearer")
            elif role in ROLES_ALLOWED[access]:
                ok = r.status_code not in (401, 403) and r.status_code < 500
            else:
                ok = r.status_code == 403
            if not ok:
                mismatches.append(what)
    assert not mismatches, f"{len(mismatches)} answers differ from the declared access:\n" + "\n".join(mismatches)


def test_the_hand_written_walk_expects_the_levels_the_document_declares(world):
    declared = {(method, template): access for method, template, access in declared_operations(world.oidc.url)}
    templates = [(template.format(**{k: "(?P<%s>[^/]+)" % k for k in SAMPLE_PARAMS}), (method, template))
                 for method, template in declared]
    for route in ROUTES:
        path = route.path.format(target="walk-target")
        matched = [(m, t) for pattern, (m, t) in templates if m == route.method and re.fullmatch(pattern, path)]
        if route.access == UNDECLARED:
            assert not matched, f"{route.method} {route.path} is declared: {matched}"
        else:
            assert len(matched) == 1, f"{route.method} {route.path}: {matched}"
            assert declared[matched[0]] == route.access, f"{route.method} {route.path}: declared {declared[matched[0]]}"


UNDECLARED_PATHS = [
    "/ui/nothing", "/v1", "/v1/", "/v2/", "/v1/model", "/v1/models/", "/v1/modelsx", "/v1/models/walk/extra",
    "/v1/keys/x/y", "/v1/audit/1", "/v1/pipelines/", "/v1/pipelines/x/y", "/v2/models", "/v2/models/",
    "/v2/models/walk/infer/x", "/v2/models/walk/versions", "/v2/health", "/v2/health/started",
    "/v2/repository", "/v2/repository/models/walk", "/admin", "/metrics/x", "/openapi.yaml", "/.env",
]


def test_undeclared_paths_are_401_or_404_never_200(world, server_state):
    w, url = world, world.oidc.url
    assert len(UNDECLARED_PATHS) >= 20
    declared = {template for _, template, _ in declared_operations(url)}
    wrong = []
    for path in UNDECLARED_PATHS:
        assert path not in declared
        for method in ("GET", "POST"):
            for key_name, headers, expected in (("no key", {}, {401}), ("revoked key", bearer(w.keys["revoked"]), {401}),
                                                ("client key", bearer(w.keys["client"]), {404, 405}),
                                                ("admin key", bearer(w.keys["admin"]), {404, 405})):
                r = requests.request(method, url + path, headers=headers, timeout=30)
                if r.status_code not in expected:
                    wrong.append(f"auth on, {key_name}: {method} {path} -> {r.status_code} {r.text[:120]!r}")
    off = server_state(models=False).start(extra_args=["--auth", "none"])
    try:
        for path in UNDECLARED_PATHS:
            for method in ("GET", "POST"):
                r = requests.request(method, off.url + path, timeout=30)
                if r.status_code not in (404, 405) or set(r.json()) < {"error"}:
                    wrong.append(f"auth off: {method} {path} -> {r.status_code} {r.text[:120]!r}")
    finally:
        off.kill()
    assert not wrong, f"{len(wrong)} undeclared paths answered otherwise:\n" + "\n".join(wrong)


def test_the_audit_log_names_the_key_or_token_subject_that_made_each_change(world):
    w, url = world, world.oidc.url
    r = requests.post(url + "/v1/models", json={"name": "audit-by-key"}, headers=bearer(w.keys["trainer"]), timeout=30)
    assert r.status_code == 201, r.text
    token = w.remember(w.issuer.token("trainer", sub="alice@example.org"))
    r = requests.post(url + "/v1/models", json={"name": "audit-by-token"}, headers=bearer(token), timeout=30)
    assert r.status_code == 201, r.text
    entries = requests.get(url + "/v1/audit", params={"limit": 10000}, headers=w.admin(), timeout=30).json()["entries"]
    by_target = {e["target"]: e for e in entries if e["action"] == "model.create"}
    assert by_target["audit-by-key"]["actor"] == f"key:{w.key_ids['trainer']}"
    assert by_target["audit-by-token"]["actor"] == "jwt:alice@example.org"
    revoke = [e for e in entries if e["action"] == "key.revoke" and e["target"] == w.key_ids["revoked"]]
    assert [e["actor"] for e in revoke] == [f"key:{w.key_ids['admin']}"]
    first_key = [e for e in entries if e["action"] == "key.create" and e["target"] == w.key_ids["admin"]]
    assert [e["actor"] for e in first_key] == ["local"], "the first key is made by the loopback caller"


def test_keys_are_listed_without_their_secret_and_bad_key_requests_are_400_or_404(world):
    w, url = world, world.oidc.url
    r = requests.get(url + "/v1/keys", headers=w.admin(), timeout=30)
    assert r.status_code == 200
    keys = r.json()["keys"]
    by_id = {k["id"]: k for k in keys}
    assert by_id[w.key_ids["admin"]]["role"] == "admin" and by_id[w.key_ids["revoked"]]["revoked_at_ms"]
    for k in keys:
        assert set(k) == {"id", "name", "role", "created_at_ms", "revoked_at_ms"}, k
    assert not any(s in r.text for s in w.secrets), "GET /v1/keys shows a secret"
    for body in ({"name": "x", "role": "root"}, {"name": "", "role": "client"}, {"role": "client"},
                 {"name": "x", "role": "client", "extra": 1}, "not an object"):
        r = requests.post(url + "/v1/keys", json=body, headers=w.admin(), timeout=30)
        assert r.status_code == 400 and set(r.json()) == {"error", "code"}, (body, r.status_code, r.text)
    assert requests.delete(url + "/v1/keys/nope", headers=w.admin(), timeout=30).status_code == 404
    r = requests.delete(f"{url}/v1/keys/{w.key_ids['revoked']}", headers=w.admin(), timeout=30)
    assert r.status_code == 404, f"revoking a revoked key: {r.status_code} {r.text}"


def test_open_inference_lets_anyone_infer_but_management_still_needs_a_credential(world):
    w = world
    w.oidc.kill()
    srv = w.start("--open-inference", "true")
    try:
        for method, path, body in (("GET", "/v2/models/walk", None), ("GET", "/v2/models/walk/ready", None),
                                   ("POST", "/v2/models/walk/infer", INFER_BODY),
                                   ("POST", "/v2/models/walk/versions/1/infer", INFER_BODY),
                                   ("GET", "/v1/pipelines", None)):
            r = requests.request(method, srv.url + path, json=body, timeout=30)
            assert r.status_code == 200, f"open inference: {method} {path} -> {r.status_code} {r.text[:200]}"
        for method, path, body in (("GET", "/v1/models", None), ("POST", "/v2/repository/index", None),
                                   ("POST", "/v1/models", {"name": "open-nope"}),
                                   ("POST", "/v2/repository/models/walk/unload", None),
                                   ("GET", "/v1/keys", None), ("GET", "/v1/audit", None)):
            r = requests.request(method, srv.url + path, json=body, timeout=30)
            assert r.status_code == 401, f"open inference: {method} {path} without a credential -> {r.status_code}"
            r = requests.request(method, srv.url + path, json=body, headers=bearer(w.keys["client"]), timeout=30)
            assert r.status_code == 403, f"open inference: {method} {path} with a client key -> {r.status_code}"
        assert requests.get(srv.url + "/v1/models", headers=bearer(w.keys["trainer"]), timeout=30).status_code == 200
        r = requests.post(srv.url + "/v2/models/walk/infer", json=INFER_BODY, timeout=30)
        assert r.status_code == 200 and r.json()["model_version"] in ("1", 1), r.text
    finally:
        srv.kill()


def test_the_rate_limit_answers_429_with_retry_after_per_key(world):
    w = world
    srv = w.start("--rate-limit", "2", "--rate-burst", "2")
    try:
        s = requests.Session()
        path = srv.url + "/v2/models/walk/infer"
        statuses = []
        for _ in range(4):
            r = s.post(path, json=INFER_BODY, headers=bearer(w.keys["client"]), timeout=30)
            statuses.append((r.status_code, r.headers.get("Retry-After"), r.text[:200]))
        assert [st for st, _, _ in statuses[:2]] == [200, 200], statuses
        status, retry_after, text = statuses[3]
        assert status == 429, f"the fourth fast request of one key: {statuses}"
        assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1, statuses
        assert json.loads(text)["code"] == "rate_limited" and set(json.loads(text)) == {"error", "code"}, text
        # another key is not affected, nor are the open routes
        r = s.post(path, json=INFER_BODY, headers=bearer(w.keys["other-client"]), timeout=30)
        assert r.status_code == 200, f"another key was limited too: {r.status_code} {r.text}"
        r = s.get(srv.url + "/v2/health/ready", headers=bearer(w.keys["client"]), timeout=30)
        assert r.status_code == 200
        # after Retry-After, the key is served again
        time.sleep(int(retry_after) + 0.1)
        r = s.post(path, json=INFER_BODY, headers=bearer(w.keys["client"]), timeout=30)
        assert r.status_code == 200, f"still limited after Retry-After: {r.status_code} {r.text}"
    finally:
        srv.kill()


def test_no_secret_reaches_a_log_or_the_database_in_clear(world):
    """Runs after the tests above (same module): every key and token they used, valid or not."""
    w = world
    assert len(w.secrets) > 20
    leaks = []
    for srv in w.servers:
        text = "\n".join(srv.stdout_lines) + "\n" + srv.stderr_text()
        assert text.strip(), "the server logged nothing at all?"
        for secret in w.secrets:
            if secret in text:
                line = next(l for l in text.splitlines() if secret in l)
                leaks.append(f"server {' '.join(srv.args[-4:])}: {line[:300]}")
    assert not leaks, "secrets in the server's output:\n" + "\n".join(leaks)

    # keys are stored hashed: no key text in the database
    if database_engine() == "sqlite":
        blob = b"".join(p.read_bytes() for p in w.state.data_dir.glob("lectern.db*"))
        found = [s for s in w.secrets if s.encode() in blob]
    else:
        import psycopg
        with psycopg.connect(w.state.database.url) as conn:
            rows = conn.execute("SELECT * FROM api_keys").fetchall() + conn.execute("SELECT * FROM audit_log").fetchall()
        dump = repr(rows)
        found = [s for s in w.secrets if s in dump]
    assert not found, f"{len(found)} secrets are stored in clear in the database"


# =========================================================================== loopback only

def run_refused(state: ServerState, *args) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(lectern_binary()), "serve", "--listen", "0.0.0.0:0", "--data", str(state.data_dir),
         *state.database.args(), *args],
        cwd=str(state.data_dir), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("LECTERN_")},
    )
    return proc


def test_a_non_loopback_address_without_keys_is_refused_with_a_clear_message(server_state):
    state = server_state(models=False)
    proc = run_refused(state)
    assert proc.returncode != 0, f"lectern served 0.0.0.0 without authentication: {proc.stdout!r}"
    assert "listening" not in proc.stdout, proc.stdout
    err = proc.stderr
    for words in ("0.0.0.0", "authentication", "API key", "--auth none"):
        assert words.lower() in err.lower(), f"the refusal does not mention {words!r}:\n{err[-2000:]}"


def test_the_refusal_message_suggests_only_commands_that_exist(server_state):
    state = server_state(models=False)
    proc = run_refused(state)
    assert proc.returncode != 0
    suggested = [line for line in proc.stderr.splitlines() if "`lectern " in line]
    for line in suggested:
        command = line.split("`lectern ", 1)[1].split("`", 1)[0].split()
        words = [a for a in command if not a.startswith("-")][:2]
        check = subprocess.run([str(lectern_binary()), *words, "--help"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, (
            f"the refusal tells the user to run `lectern {' '.join(command)}`, but `lectern {' '.join(words)}` "
            f"does not exist: {check.stderr.strip()[:300]}")


def test_a_non_loopback_address_is_served_with_auth_none_or_with_keys(server_state):
    state = server_state(models=False)
    srv = state.start(extra_args=["--auth", "none"], listen="0.0.0.0:0")
    assert srv.stdout_lines[0].startswith("lectern listening on http://0.0.0.0:"), srv.stdout_lines
    r = requests.get(srv.url + "/v1/models", timeout=30)
    assert r.status_code == 200, "--auth none: no credential needed"
    assert "authentication is off" in srv.stderr_text().lower() or "auth none" in srv.stderr_text().lower()
    srv.kill()

    loop = state.start()
    r = requests.post(loop.url + "/v1/keys", json={"name": "admin", "role": "admin"}, timeout=30)
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    loop.kill()
    wide = state.start(listen="0.0.0.0:0")
    assert requests.get(wide.url + "/v1/models", timeout=30).status_code == 401
    assert requests.get(wide.url + "/v1/models", headers=bearer(key), timeout=30).status_code == 200
    assert key not in wide.stderr_text() and key not in loop.stderr_text()
