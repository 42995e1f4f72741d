"""The dashboard over HTTP, as a browser without JavaScript sees it (docs/contract.md, "The
dashboard (issue 14)"), with `requests` and the small DOM of lectern_dashboard.py.

Servers (one per module where possible):
- `world`: a copy of examples/models with an admin, a trainer and a client API key (sign-in
  required);
- `open_srv`: no key, loopback, no models, `--max-upload-bytes 4096` (open: every page acts as
  `local`, an admin; the upload limit);
- `kids`: sign-in through the local OIDC issuer of oidc_issuer.py (client `lectern-dashboard`,
  PKCE), `[dashboard] projects = "kids-"`;
- function-scoped servers for `[dashboard] enabled = false` and `session_ttl`.
Checked: the headers of every page, sign-in with a key and through OIDC (PKCE, state, error,
missing cookie, a token that fails verification), sessions (cookie attributes, forged,
revoked, expired, logout), CSRF and Origin checks, roles, `next` redirects, HTML escaping,
the upload limit, `/ui/stats`, the models table, the try-it form, the dataset page (filter,
charts), training from the form to the tree picture, scheduled jobs (run now), the audit log
and keys pages, and the privacy of ML-for-Kids projects (pages and API).
Expected values come from the API, onnxruntime or the data the test made, never the pages.
"""
from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

import numpy as np
import pytest
import requests

from conftest import EXAMPLE_MODELS, LecternServer, database_engine
from lectern_checks import wait_until
from lectern_dashboard import (CSRF_MESSAGE, INVALID_KEY_MESSAGE, OIDC_CLIENT_ID, Node, Page, Ui, animals_rows,
                               check_page_headers, close_kids_world, csv_text, describe, local_target,
                               login_redirect_next, project_dataset, set_cookies, start_keyed_world,
                               start_kids_world, unique)
from lectern_training import iris_csv, parse_svg
from lectern_v2 import iris_x, json_input, labels_file, model_file, ort_reference

UPLOAD_LIMIT = 4096
KEY_RE = re.compile(r"lk_[0-9a-f]{12}_[0-9a-f]{48}")
MAIN_PAGES = ["/", "/ui/models", "/ui/pipelines", "/ui/datasets", "/ui/training", "/ui/jobs"]
ADMIN_PAGES = ["/ui/audit", "/ui/keys"]
JOB_TIMEOUT_S = 120


# =========================================================================== servers

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = start_keyed_world(tmp_path_factory.mktemp("dashboard"))
    yield w
    w.srv.cleanup()


@pytest.fixture(scope="module")
def open_srv(tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboard-open")
    (root / "models").mkdir()
    (root / "data").mkdir()
    srv = LecternServer(root / "models", root / "data", extra_args=["--max-upload-bytes", str(UPLOAD_LIMIT)])
    yield srv
    srv.cleanup()


@pytest.fixture(scope="module")
def kids(tmp_path_factory):
    w = start_kids_world(tmp_path_factory.mktemp("dashboard-kids"))
    yield w
    close_kids_world(w)


def empty_models(tmp_path: Path) -> Path:
    folder = tmp_path / "empty-models"
    folder.mkdir(exist_ok=True)
    return folder


# =========================================================================== helpers

def check_no_inline_code(page: Page):
    """What the page's CSP would refuse is not there: inline scripts, event handler
    attributes, <style> and style attributes, third-party scripts or stylesheets."""
    where = describe(page.resp)
    for n in page.doc.iter():
        handlers = [a for a in n.attrs if a.startswith("on")]
        assert not handlers, f"<{n.tag}> has event handler attributes {handlers} (script-src 'self' refuses them): {where}"
        assert "style" not in n.attrs, f"<{n.tag} style=...> (style-src 'self' refuses it): {where}"
        assert n.tag != "style", f"a <style> element (style-src 'self' refuses it): {where}"
        if n.tag == "script":
            src = n.get("src")
            assert src, f"an inline <script> (script-src 'self' refuses it): {where}"
            assert src.startswith("/") and not src.startswith("//"), f"a script from elsewhere: {src!r}: {where}"
        if n.tag == "link" and "stylesheet" in (n.get("rel") or "").lower():
            href = n.get("href") or ""
            assert href.startswith("/") and not href.startswith("//"), f"a stylesheet from elsewhere: {href!r}"
        if n.tag == "img":
            src = n.get("src") or ""
            assert (src.startswith("/") and not src.startswith("//")) or src.startswith("data:"), \
                f"an image from elsewhere: {src!r}: {where}"
        if n.tag == "a":
            assert not (n.get("href") or "").strip().lower().startswith("javascript:"), f"a javascript: link: {where}"


def hrefs_to(page: Page, path: str) -> list[str]:
    """Links of the page to `path` (exactly, or with a query)."""
    return [h for h in page.links() if h and (h == path or h.startswith(path + "?"))]


def served_version(srv_url: str, model: str, headers: dict) -> int:
    resp = requests.get(f"{srv_url}/v2/models/{model}", headers=headers, timeout=30)
    assert resp.status_code == 200, describe(resp)
    return max(int(v) for v in resp.json()["versions"])


def label_cells(table: Node, labels: list[str]) -> list[list[str]]:
    return [[c for c in row.cells() if c in labels] for row in table.body_rows()]


def check_predicted_labels(table: Node, labels: list[str], expected: list[str]):
    """`expected` labels appear in the result table, one row per input row (row-major) or
    all in one row (output-major)."""
    per_row = label_cells(table, labels)
    row_major = [cells[0] for cells in per_row if cells]
    assert row_major == expected or any(cells == expected for cells in per_row), (
        f"the try-it result does not show the labels {expected} (onnxruntime's): "
        f"{[r.cells() for r in table.body_rows()]}")


def number_in(text: str) -> float:
    m = re.search(r"-?\d+(?:\.\d+)?", text)
    assert m, f"no number in {text!r}"
    return float(m.group(0))


def key_names(world) -> dict[str, dict]:
    resp = world.api("GET", "/v1/keys")
    assert resp.status_code == 200, describe(resp)
    return {k["name"]: k for k in resp.json()["keys"]}


def upload_via_api(world, name: str, text: str, role: str = "trainer") -> dict:
    resp = world.api("POST", f"/v1/datasets/{name}", role, data=text.encode(), headers={"Content-Type": "text/csv"})
    assert resp.status_code in (200, 201), describe(resp)
    return resp.json()


def wait_job(world, job_id: str, role="trainer") -> dict:
    def done():
        job = world.api("GET", f"/v1/training-jobs/{job_id}", role).json()
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None
    return wait_until(done, f"training job {job_id} ends", timeout=JOB_TIMEOUT_S, interval=0.2)


# =========================================================================== headers, assets

def test_every_page_carries_the_security_headers_and_no_inline_code(world):
    admin = world.ui("admin")
    ds = unique("headers")
    upload_via_api(world, ds, "a,b\n1,x\n2,y\n3,x\n4,y\n")
    pages = MAIN_PAGES + ADMIN_PAGES + ["/ui/models/iris-logreg", f"/ui/datasets/{ds}"]
    for path in pages:
        page = admin.page(path)
        check_page_headers(page.resp)
        check_no_inline_code(page)
    # the sign-in page, and pages that answer an error, carry them too
    signed_out = Ui(world.url)
    login = signed_out.page("/ui/login")
    check_page_headers(login.resp)
    check_no_inline_code(login)
    check_page_headers(admin.page("/ui/models/no-such-model", 404).resp)
    check_page_headers(world.ui("client").page("/ui/keys", 403).resp)
    check_page_headers(signed_out.login_key("lk_" + "0" * 12 + "_" + "0" * 48))

    # the one stylesheet and the one script, our own, reachable before signing in
    stylesheets = {n.get("href") for n in login.select("link[href]") if "stylesheet" in (n.get("rel") or "")}
    assert stylesheets == {"/ui/assets/lectern.css"}, f"the sign-in page's stylesheets: {stylesheets}"
    scripts = {n.get("src") for p in (login, admin.page("/ui/models")) for n in p.select("script")}
    assert scripts <= {"/ui/assets/lectern.js"}, f"scripts: {scripts}"
    for path, kind in (("/ui/assets/lectern.css", "text/css"), ("/ui/assets/lectern.js", "javascript")):
        resp = requests.get(world.url + path, timeout=30)
        assert resp.status_code == 200 and resp.content, describe(resp)
        assert kind in resp.headers.get("Content-Type", ""), f"{path}: Content-Type {resp.headers.get('Content-Type')!r}"
        assert resp.headers.get("X-Content-Type-Options", "").lower() == "nosniff", path
        assert "//cdn" not in resp.text and "googleapis" not in resp.text, f"{path} loads third-party code"


def test_the_overview_links_every_page_and_ui_redirects_to_it(world):
    admin = world.ui("admin")
    overview = admin.page("/")
    for path in ["/ui/models", "/ui/pipelines", "/ui/datasets", "/ui/training", "/ui/jobs"]:
        assert hrefs_to(overview, path), f"the overview has no link to {path}: {sorted(overview.links())}"
    models = world.api("GET", "/v1/models").json()["models"]
    assert str(len(models)) in overview.text(), f"the overview does not show the count of models ({len(models)})"
    for path in ("/ui", "/ui/"):
        resp = admin.get(path)
        assert local_target(resp, world.url) == "/", f"{path}: {describe(resp)}"


# =========================================================================== signing in

def test_signed_out_pages_redirect_to_the_sign_in_page_and_posts_and_json_are_401(world):
    ui = Ui(world.url)
    for path in MAIN_PAGES + ADMIN_PAGES + ["/ui/models/iris-logreg"]:
        assert login_redirect_next(ui.get(path), world.url) == path, path
    stats = ui.get("/ui/stats")
    assert stats.status_code == 401, describe(stats)
    assert stats.headers.get("Content-Type", "").startswith("application/json") and "error" in stats.json(), describe(stats)
    name = unique("signed-out-key")
    resp = ui.post("/ui/keys", {"name": name, "role": "admin"})
    assert resp.status_code == 401, f"a form post without a session: {describe(resp)}"
    assert Ui.as_page(resp).first("form#login-key") is not None, "the 401 answer is not the sign-in page"
    assert name not in key_names(world)
    login = ui.page("/ui/login")
    form = login.one("form#login-key")
    assert (form.get("method") or "").lower() == "post" and form.get("action") == "/ui/login", form
    assert form.first("input[name=api_key]") is not None and form.first("input[name=csrf]") is not None
    assert login.first("#login-oidc") is None, "no OIDC client is configured: no OIDC link"


def test_an_open_server_on_loopback_needs_no_sign_in_and_acts_as_admin(open_srv):
    ui = Ui(open_srv.url)
    for path in MAIN_PAGES + ADMIN_PAGES:
        page = ui.page(path)
        check_page_headers(page.resp)
    assert ui.page("/ui/keys").first("form#new-key") is not None, "local is an admin: the keys form"
    assert ui.page("/ui/datasets").first("form#upload") is not None


def test_a_key_signs_in_with_an_httponly_samesite_session_cookie(world):
    ui = Ui(world.url)
    login_page = ui.get("/ui/login?next=" + quote("/ui/datasets", safe=""))
    csrf_cookie = set_cookies(login_page).get("lectern_csrf")
    assert csrf_cookie and csrf_cookie["value"], f"the sign-in page sets no lectern_csrf cookie: {login_page.headers}"
    assert "httponly" in csrf_cookie and csrf_cookie.get("samesite", "").lower() == "strict", csrf_cookie
    resp = ui.submit(Ui.as_page(login_page), "#login-key", {"api_key": world.keys["trainer"]})
    assert local_target(resp, world.url) == "/ui/datasets", "the sign-in follows next"
    session = set_cookies(resp).get("lectern_session")
    assert session, f"no lectern_session cookie: {describe(resp)}"
    assert "httponly" in session and session.get("samesite", "").lower() == "lax", session
    assert session.get("path") == "/" and "secure" not in session, session
    token = session["value"]
    assert len(token) >= 43 and re.fullmatch(r"[A-Za-z0-9_\-+/=.%]+", token), f"a session token of {len(token)} characters"
    assert ui.page("/ui/datasets").status == 200
    # another sign-in, another token; the store keeps only the SHA-256 (not the token)
    other = world.ui("trainer")
    assert other.cookie("lectern_session") != token
    if database_engine() == "sqlite":
        blob = b"".join(p.read_bytes() for p in world.srv.data_dir.glob("lectern.db*"))
        assert token.encode() not in blob, "the session token is stored in clear in the database"


def test_a_wrong_or_revoked_key_is_401_without_echoing_it(world):
    revoked, revoked_id = world.new_key("client")
    assert world.api("DELETE", f"/v1/keys/{revoked_id}").status_code == 204
    wrong = "lk_" + secrets.token_hex(6) + "_" + secrets.token_hex(24)
    for key in (wrong, revoked, "not-a-key-at-all", world.keys["admin"][:-3] + "abc"):
        ui = Ui(world.url)
        resp = ui.login_key(key)
        assert resp.status_code == 401, describe(resp)
        page = Ui.as_page(resp)
        assert INVALID_KEY_MESSAGE in page.text(), f"the message: {page.text()[:500]}"
        assert key not in resp.text and key.split("_")[-1] not in resp.text, "the page echoes the key"
        assert page.first("form#login-key") is not None
        assert "lectern_session" not in set_cookies(resp) or not set_cookies(resp)["lectern_session"]["value"]
        assert login_redirect_next(ui.get("/ui/models"), world.url) == "/ui/models", "a wrong key signed in"


def test_forged_or_unknown_session_cookies_count_as_no_session(world):
    real = world.ui("client")
    token = real.cookie("lectern_session")
    digest = hashlib.sha256(token.encode()).digest()
    forged = ["0" * 64, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), token + "x", token.upper(),
              hashlib.sha256(token.encode()).hexdigest(), base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
              secrets.token_urlsafe(32)]
    for value in forged:
        if value == token:
            continue
        ui = Ui(world.url)
        ui.set_cookie("lectern_session", value)
        assert login_redirect_next(ui.get("/ui/models"), world.url) == "/ui/models", f"forged cookie {value!r} works"
        assert ui.get("/ui/stats").status_code == 401
    copy = Ui(world.url)
    copy.set_cookie("lectern_session", token)
    assert copy.page("/ui/models").status == 200, "the real token (control) does not work"


def test_posts_without_the_csrf_token_or_from_another_origin_are_403_and_change_nothing(world):
    admin = world.ui("admin")
    other = world.ui("admin")
    admin.page("/ui/keys")
    cases = {
        "no csrf field": dict(csrf=None),
        "a wrong csrf": dict(csrf="x" * 43),
        "another session's csrf": dict(csrf=other.csrf()),
        "another origin": dict(origin="http://evil.example"),
        "origin null": dict(origin="null"),
        "the same host, another port": dict(origin="http://127.0.0.1:1"),
    }
    for what, kw in cases.items():
        name = unique("csrf")
        resp = admin.post("/ui/keys", {"name": name, "role": "client"}, **kw)
        assert resp.status_code == 403, f"{what}: {describe(resp)}"
        assert CSRF_MESSAGE in Ui.as_page(resp).text(), f"{what}: the message: {resp.text[:400]}"
        check_page_headers(resp)
        assert name not in key_names(world), f"{what}: the key was created anyway"
    # a multipart upload without the token
    ds = unique("csrf-ds")
    trainer = world.ui("trainer")
    resp = trainer.post("/ui/datasets", {"name": ds}, files={"file": ("a.csv", b"a,b\n1,2\n3,4\n", "text/csv")}, csrf=None)
    assert resp.status_code == 403, describe(resp)
    assert world.api("GET", f"/v1/datasets/{ds}").status_code == 404
    # logout without the token keeps the session
    assert trainer.post("/ui/logout", csrf=None).status_code == 403
    assert trainer.page("/ui/models").status == 200
    # controls: the right token (field or header), with or without Origin
    for what, kw in {"field and origin": {}, "field, no origin": dict(origin=None),
                     "X-CSRF-Token header": dict(csrf=None, headers={"X-CSRF-Token": admin.csrf()})}.items():
        name = unique("csrf-ok")
        resp = admin.post("/ui/keys", {"name": name, "role": "client"}, **kw)
        assert resp.status_code == 200, f"{what}: {describe(resp)}"
        assert name in key_names(world), f"{what}: no key was created"


def test_roles_decide_what_each_page_offers_and_accepts(world):
    client, trainer, admin = world.ui("client"), world.ui("trainer"), world.ui("admin")
    ds = unique("roles")
    upload_via_api(world, ds, iris_csv().decode())
    # navigation: only what the role may use
    for ui, role in ((client, "client"), (trainer, "trainer")):
        page = ui.page("/ui/models")
        for path in ADMIN_PAGES:
            assert not hrefs_to(page, path), f"a {role} is shown a link to {path}"
        for path in ADMIN_PAGES:
            resp = ui.get(path)
            assert resp.status_code == 403, f"{role} {path}: {describe(resp)}"
            check_page_headers(resp)
    admin_page = admin.page("/ui/models")
    for path in ADMIN_PAGES:
        assert hrefs_to(admin_page, path), f"an admin is not shown a link to {path}"
    # a client sees the pages, without the trainer's forms, and uses try-it forms
    assert client.page("/ui/training").first("form#train") is None
    assert client.page("/ui/datasets").first("form#upload") is None
    assert trainer.page("/ui/training").first("form#train") is not None
    assert trainer.page("/ui/datasets").first("form#upload") is not None
    model = unique("by-client")
    resp = client.post("/ui/training", {"dataset": ds, "target": "species", "model": model,
                                        "algorithm": "decision_tree"}, multipart=True)
    assert resp.status_code == 403, describe(resp)
    jobs = world.api("GET", "/v1/training-jobs", params={"model": model}).json()["jobs"]
    assert jobs == [], f"a client's training form queued a job: {jobs}"
    resp = client.post("/ui/datasets", {"name": unique("by-client")}, files={"file": ("a.csv", b"a,b\n1,2\n", "text/csv")})
    assert resp.status_code == 403, describe(resp)
    name = unique("by-trainer")
    assert trainer.post("/ui/keys", {"name": name, "role": "admin"}).status_code == 403
    assert name not in key_names(world)
    try_page = client.page("/ui/models/iris-logreg")
    resp = client.submit(try_page, "#try", {"input.X": "5.1, 3.5, 1.4, 0.2"})
    assert resp.status_code == 200, f"a client's try-it form: {describe(resp)}"


def test_revoking_a_key_ends_its_sessions(world):
    key, key_id = world.new_key("trainer")
    ui = Ui(world.url)
    assert ui.login_key(key).status_code in (302, 303)
    assert ui.page("/ui/models").status == 200
    assert world.api("DELETE", f"/v1/keys/{key_id}").status_code == 204
    assert login_redirect_next(ui.get("/ui/models"), world.url) == "/ui/models", "the revoked key's session lives on"
    resp = ui.post("/ui/datasets", {"name": unique("revoked")}, files={"file": ("a.csv", b"a,b\n1,2\n", "text/csv")})
    assert resp.status_code == 401, describe(resp)


def test_logout_deletes_the_session(world):
    ui = world.ui("client")
    token = ui.cookie("lectern_session")
    resp = ui.post("/ui/logout")
    assert resp.status_code == 303 and local_target(resp, world.url).startswith("/ui/login"), describe(resp)
    replay = Ui(world.url)
    replay.set_cookie("lectern_session", token)
    assert login_redirect_next(replay.get("/ui/models"), world.url) == "/ui/models", "the session survived logout"


@pytest.mark.parametrize("next_path, expected", [
    ("//evil.example/x", "/"),
    ("https://evil.example/", "/"),
    ("/\\evil.example", "/"),
    ("\\\\evil.example", "/"),
    ("http:/evil.example", "/"),
    ("evil.example", "/"),
    ("", "/"),
    ("/ui/datasets", "/ui/datasets"),
])
def test_next_is_followed_only_to_a_local_path(world, next_path, expected):
    ui = Ui(world.url)
    resp = ui.post("/ui/login", {"api_key": world.keys["client"], "next": next_path})
    assert resp.status_code in (302, 303), describe(resp)
    assert local_target(resp, world.url) == expected, f"next={next_path!r} -> {resp.headers.get('Location')!r}"


# =========================================================================== escaping, limits, errors

def test_what_users_typed_or_uploaded_is_html_escaped(world):
    trainer = world.ui("trainer")
    name = unique("xss")
    rows = [[i, ["alpha", "beta"][i % 2], "plain"] for i in range(12)]
    rows[3][2] = "<script>alert(1)</script>"
    rows[5][2] = 'x" onmouseover="alert(2)'
    upload_via_api(world, name, csv_text(["n", "kind", "<i>note</i>"], rows))
    page = trainer.page(f"/ui/datasets/{name}")
    raw = page.html
    assert "<script>alert(1)" not in raw and "<i>note</i>" not in raw, "a CSV cell or column name is not escaped"
    assert "&lt;script" in raw, "the cell is not shown escaped"
    assert "<script>alert(1)</script>" in page.one("table#rows").text()
    assert "<i>note</i>" in page.text()
    check_no_inline_code(page)
    # names in URLs and filters are echoed escaped
    payload = "<script>alert(3)</script>"
    for path in (f"/ui/models/{quote(payload, safe='')}", f"/ui/datasets/{quote(payload, safe='')}",
                 f"/ui/training/{quote(payload, safe='')}", f"/ui/jobs/{quote(payload, safe='')}",
                 f"/ui/datasets/{name}?column=kind&contains={quote(payload, safe='')}",
                 f"/ui/datasets/{name}?column={quote(payload, safe='')}&contains=x",
                 "/ui/login?next=" + quote('"><script>alert(3)</script>', safe="")):
        resp = trainer.get(path)
        assert resp.status_code < 500, describe(resp)
        assert "<script>alert(3)" not in resp.text, f"{path} echoes the text unescaped"
        check_no_inline_code(Ui.as_page(resp))
    # labels of a model, shown by the try-it form
    model = unique("labels-xss")
    labels = ["<b>setosa</b>", 'versi"color', "<img src=x onerror=alert(4)>"]
    resp = world.api("POST", "/v1/models", json={"name": model, "labels": labels})
    assert resp.status_code == 201, describe(resp)
    resp = world.api("POST", f"/v1/models/{model}/versions", data=model_file(EXAMPLE_MODELS, "iris-logreg", 2).read_bytes(),
                     headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 201, describe(resp)
    x = iris_x()[[0, 149]]
    expected = [labels[i] for i in ort_reference(model_file(EXAMPLE_MODELS, "iris-logreg", 2), {"X": x})["output_label"]]
    text = "; ".join(", ".join(f"{v:.1f}" for v in row) for row in x)
    resp = trainer.submit(f"/ui/models/{model}", "#try", {"input.X": text})
    assert resp.status_code == 200, describe(resp)
    result = Ui.as_page(resp)
    assert "<b>setosa</b>" not in resp.text and "<img src=x" not in resp.text, "a label is not escaped"
    check_predicted_labels(result.one("#try-result"), labels, expected)
    check_no_inline_code(result)


def test_a_csv_over_the_upload_limit_or_that_does_not_parse_is_a_4xx_page_and_nothing_is_stored(open_srv):
    ui = Ui(open_srv.url)
    big = unique("too-big")
    text = csv_text(["n", "word"], [[i, f"word{i:05d}"] for i in range(1200)]).encode()
    assert len(text) > 3 * UPLOAD_LIMIT
    try:
        resp = ui.submit("/ui/datasets", "#upload", {"name": big}, files={"file": ("big.csv", text, "text/csv")})
    except requests.ConnectionError as e:
        pytest.fail(f"the server dropped the connection instead of answering the over-limit upload with a page: {e}")
    assert 400 <= resp.status_code < 500, describe(resp)
    page = Ui.as_page(resp)
    page.error()
    check_page_headers(resp)
    assert requests.get(f"{open_srv.url}/v1/datasets/{big}", timeout=30).status_code == 404, "the big upload was stored"
    # a CSV that does not parse
    broken = unique("broken")
    resp = ui.submit("/ui/datasets", "#upload", {"name": broken},
                     files={"file": ("broken.csv", b"a,b\n1,2\n3,4,5\n", "text/csv")})
    assert resp.status_code == 400, describe(resp)
    Ui.as_page(resp).error()
    assert requests.get(f"{open_srv.url}/v1/datasets/{broken}", timeout=30).status_code == 404
    # control: a small one goes in
    small = unique("small")
    resp = ui.submit("/ui/datasets", "#upload", {"name": small},
                     files={"file": ("small.csv", b"a,b\n1,x\n2,y\n3,x\n", "text/csv")})
    assert resp.status_code in (200, 303), describe(resp)
    stored = requests.get(f"{open_srv.url}/v1/datasets/{small}", timeout=30)
    assert stored.status_code == 200 and stored.json()["rows"] == 3, describe(stored)


def test_bad_input_answers_a_4xx_page_with_the_message_and_changes_nothing(world):
    trainer = world.ui("trainer")
    for path in ("/ui/models/no-such-model", "/ui/datasets/no-such-dataset", "/ui/training/no-such-job",
                 "/ui/jobs/no-such-job", "/ui/pipelines/no-such-pipeline"):
        resp = trainer.get(path)
        assert resp.status_code == 404, describe(resp)
        Ui.as_page(resp).error()
        # drawn for the signed-in viewer: the navigation and the sign-out, not "sign in"
        assert 'action="/ui/logout"' in resp.text and 'href="/ui/models"' in resp.text, resp.text[:800]
    ds = unique("bad-input")
    upload_via_api(world, ds, iris_csv().decode())
    model = unique("bad-input-model")
    resp = trainer.submit("/ui/training", "#train", {"dataset": ds, "target": "no_such_column", "model": model,
                                                     "algorithm": "decision_tree"})
    assert resp.status_code == 400, describe(resp)
    Ui.as_page(resp).error()
    assert world.api("GET", "/v1/training-jobs", params={"model": model}).json()["jobs"] == []
    resp = trainer.submit("/ui/datasets", "#upload", {"name": "bad name!"},
                          files={"file": ("a.csv", b"a,b\n1,2\n", "text/csv")})
    assert resp.status_code == 400, describe(resp)
    Ui.as_page(resp).error()
    for bad in ("1, 2, 3", "a, b, c, d", "1, 2, 3, 4; 5, 6", ";", " ;\n; "):
        resp = trainer.submit("/ui/models/iris-logreg", "#try", {"input.X": bad})
        assert resp.status_code == 400, f"input.X={bad!r}: {describe(resp)}"
        Ui.as_page(resp).error()


def test_a_disabled_dashboard_is_404(start_server, tmp_path):
    config = tmp_path / "disabled.toml"
    config.write_text("[dashboard]\nenabled = false\n")
    srv = start_server(models_dir=empty_models(tmp_path), extra_args=["--config", str(config)])
    for path in ("/", "/ui", "/ui/login", "/ui/models", "/ui/assets/lectern.css", "/ui/stats"):
        resp = requests.get(srv.url + path, timeout=30, allow_redirects=False)
        assert resp.status_code == 404, describe(resp)
    assert requests.get(srv.url + "/v2/health/live", timeout=30).status_code == 200


def test_sessions_expire_after_the_session_ttl(start_server, tmp_path):
    config = tmp_path / "ttl.toml"
    config.write_text('[dashboard]\nsession_ttl = "2s"\n')
    srv = start_server(models_dir=empty_models(tmp_path), extra_args=["--config", str(config)])
    resp = requests.post(srv.url + "/v1/keys", json={"name": "admin", "role": "admin"}, timeout=30)
    assert resp.status_code == 201, describe(resp)
    ui = Ui(srv.url)
    assert ui.login_key(resp.json()["key"]).status_code in (302, 303)
    assert ui.page("/ui/models").status == 200
    time.sleep(3)
    assert login_redirect_next(ui.get("/ui/models"), srv.url) == "/ui/models", "the session outlived session_ttl"


# =========================================================================== models

def test_stats_json_and_the_models_table(world):
    body = {"inputs": [json_input("X", iris_x()[:2], "FP32")]}
    for _ in range(8):
        resp = world.api("POST", "/v2/models/iris-logreg/infer", "client", json=body)
        assert resp.status_code == 200, describe(resp)
    client = world.ui("client")
    resp = client.get("/ui/stats")
    assert resp.status_code == 200 and resp.headers.get("Content-Type", "").startswith("application/json"), describe(resp)
    stats = resp.json()
    assert set(stats) == {"models"} and isinstance(stats["models"], dict), stats
    for name, entry in stats["models"].items():
        assert set(entry) == {"rate", "p99_ms", "requests"}, (name, entry)
        assert isinstance(entry["rate"], (int, float)) and entry["rate"] >= 0, (name, entry)
        assert entry["p99_ms"] is None or (isinstance(entry["p99_ms"], (int, float)) and entry["p99_ms"] >= 0), entry
        assert isinstance(entry["requests"], int) and entry["requests"] >= 0, (name, entry)
    iris = stats["models"].get("iris-logreg")
    assert iris and iris["requests"] >= 8 and iris["rate"] > 0 and iris["p99_ms"] and iris["p99_ms"] > 0, iris
    unused = stats["models"].get("dtypes")
    if unused is not None:
        assert unused["requests"] == 0 and unused["rate"] == 0 and unused["p99_ms"] is None, unused

    names = {m["name"] for m in world.api("GET", "/v1/models").json()["models"]}
    table = client.page("/ui/models").one("table#models")
    rows = table.select("tr[data-model]")
    assert {r.get("data-model") for r in rows} == names, "the models table's rows are not the API's models"
    for row in rows:
        name = row.get("data-model")
        assert row.first(f"a[href='/ui/models/{name}']") is not None, f"{name}: no link to its page"
        assert row.first("td.rate") is not None and row.first("td.p99") is not None, f"{name}: no rate/p99 cell"


def test_the_model_page_and_its_try_it_form_answer_what_onnxruntime_says(world):
    client = world.ui("client")
    version = served_version(world.url, "iris-logreg", world.auth("client"))
    page = client.page("/ui/models/iris-logreg")
    text = page.text()
    for word in ("X", "FP32", "output_label", "output_probability", str(version)):
        assert word in text, f"the model page does not show {word!r}"
    form = page.one("form#try")
    assert form.first("[name='input.X']") is not None, "the try-it form has no field input.X"
    rows = iris_x()[[120, 0, 60]]
    typed = "\n".join(" ".join(f"{v:.1f}" for v in row) for row in rows)
    x = np.array([[float(f"{v:.1f}") for v in row] for row in rows], dtype=np.float32)
    labels = labels_file(EXAMPLE_MODELS, "iris-logreg")
    expected = [labels[i] for i in ort_reference(model_file(EXAMPLE_MODELS, "iris-logreg", version), {"X": x})["output_label"]]
    assert len(set(expected)) > 1, expected
    resp = client.submit(page, "#try", {"input.X": typed})
    assert resp.status_code == 200, describe(resp)
    check_predicted_labels(Ui.as_page(resp).one("#try-result"), labels, expected)


# =========================================================================== datasets

def test_the_dataset_page_shows_schema_rows_filter_and_charts(world):
    trainer = world.ui("trainer")
    name = unique("shapes")
    kinds = ["alpha", "beta", "gamma"]
    rows = [[i, round(0.5 + (i * 37 % 100) / 10, 2), kinds[(i * 7) % 3]] for i in range(250)]
    text = csv_text(["n", "size", "kind"], rows)
    resp = trainer.submit("/ui/datasets", "#upload", {"name": name}, files={"file": (f"{name}.csv", text.encode(), "text/csv")})
    assert resp.status_code in (200, 303), describe(resp)
    shown = world.api("GET", f"/v1/datasets/{name}", "trainer")
    assert shown.status_code == 200 and shown.json()["rows"] == 250, describe(shown)
    assert shown.json()["created_by"] == f"key:{world.ids['trainer']}", shown.json()
    listed = trainer.page("/ui/datasets")
    assert hrefs_to(listed, f"/ui/datasets/{name}"), "the datasets page does not link the new dataset"

    page = trainer.page(f"/ui/datasets/{name}")
    schema = page.one("table#schema")
    schema_rows = {r.cells()[0]: r.cells() for r in schema.body_rows()}
    for col in shown.json()["columns"]:
        cells = schema_rows.get(col["name"])
        assert cells, f"column {col['name']} is not in the schema table: {schema_rows}"
        assert col["type"] in cells, f"{col['name']}: type {col['type']} not shown in {cells}"
        if col["distinct"] <= 50:   # 51 means "more than 50": shown as the page likes
            assert str(col["distinct"]) in cells, f"{col['name']}: distinct {col['distinct']} not shown in {cells}"
    assert len(page.one("table#rows").body_rows()) == 200, "the first 200 rows"
    assert "250" in page.text(), "the count of rows is not shown"
    charts = page.select("svg.chart")
    assert len(charts) == 3, f"{len(charts)} charts for 3 columns"
    for chart in charts:
        title = chart.first("title")
        assert title is not None and title.text(), "a chart without a <title>"
    assert any(all(k in c.text() for k in kinds) for c in charts), "no chart shows the categories"

    expected = sum(1 for r in rows if "beta" in r[2])
    filtered = trainer.page(f"/ui/datasets/{name}?column=kind&contains=beta")
    body = filtered.one("table#rows").body_rows()
    assert len(body) == expected, f"{len(body)} rows shown, {expected} match"
    assert all("beta" in r.cells() for r in body), "a row that does not match the filter"
    assert str(expected) in filtered.text()
    charts = filtered.select("svg.chart")
    assert len(charts) == 3 and any("beta" in c.text() for c in charts), "the filtered charts"
    assert not any("alpha" in c.text() or "gamma" in c.text() for c in charts), \
        "the charts are not drawn over the matching rows only"


# =========================================================================== training

def test_training_from_the_form_reaches_100_percent_with_a_tree_picture(world):
    trainer = world.ui("trainer")
    ds, model = unique("iris-ui"), unique("iris-tree-ui")
    resp = trainer.submit("/ui/training", "#train", {"dataset": ds, "target": "species", "model": model,
                                                     "algorithm": "decision_tree"},
                          files={"file": ("iris.csv", iris_csv(), "text/csv")})
    assert resp.status_code == 303, describe(resp)
    target = local_target(resp, world.url)
    m = re.fullmatch(r"/ui/training/([^/?#]+)", target)
    assert m, f"redirected to {target!r}"
    job_id = m.group(1)
    job = world.api("GET", f"/v1/training-jobs/{job_id}", "trainer")
    assert job.status_code == 200, describe(job)
    assert (job.json()["dataset"], job.json()["model"]) == (ds, model), job.json()
    assert job.json()["created_by"] == f"key:{world.ids['trainer']}", job.json()
    assert world.api("GET", f"/v1/datasets/{ds}").json()["rows"] == 150, "the file did not make the dataset"

    def finished():
        page = trainer.page(f"/ui/training/{job_id}")
        progress = page.one("progress#progress")
        assert progress.get("max") == "100", progress
        return page if progress.get("value") == "100" else None
    page = wait_until(finished, "the training page shows progress 100", timeout=JOB_TIMEOUT_S, interval=0.5)
    final = wait_job(world, job_id)
    assert final["state"] == "succeeded", final
    assert "100%" in page.text()
    assert page.first("table#metrics") is not None, "no metrics table"
    tree = page.one("img.picture[alt=tree]")
    assert tree.get("src") == f"/ui/training/{job_id}/tree.svg", tree
    parse_svg(trainer.get(tree.get("src")))
    for img in page.select("img.picture"):
        assert img.get("alt") in final["pictures"], f"a picture the job does not have: {img}"
    assert not [s for s in page.select("svg") if "chart" not in s.classes], "a training picture is inlined"
    anonymous = requests.get(world.url + tree.get("src"), timeout=30, allow_redirects=False)
    assert anonymous.status_code in (303, 401), f"the picture without a session: {describe(anonymous)}"
    status = trainer.get(f"/ui/training/{job_id}/status")
    assert status.status_code == 200 and status.json()["id"] == job_id and status.json()["state"] == "succeeded", \
        describe(status)
    assert status.json()["percent"] == 100
    first = trainer.page("/ui/training").one("table#training-jobs").body_rows()[0]
    assert job_id in first.text() or model in first.text() or first.first(f"a[href='/ui/training/{job_id}']"), \
        f"the newest job is not first in the training jobs table: {first.cells()}"


# =========================================================================== jobs, audit, keys

def test_the_jobs_pages_and_run_now(world):
    trainer = world.ui("trainer")
    name = unique("dash-job")
    resp = world.api("POST", "/v1/jobs", "trainer", json={"name": name, "kind": "cleanup", "target": "datasets",
                                                           "match": "no-such-dataset-*", "older_than": "1d",
                                                           "every": "1h"})
    assert resp.status_code == 201, describe(resp)
    jobs = trainer.page("/ui/jobs").one("table#jobs")
    row = [r for r in jobs.body_rows() if name in r.text()]
    assert row and "cleanup" in row[0].text(), f"the job is not listed: {[r.cells() for r in jobs.body_rows()]}"
    page = trainer.page(f"/ui/jobs/{name}")
    assert page.first("#run-now") is not None, "no run-now button for a trainer"
    assert not any("succeeded" in r.text() for r in page.one("table#runs").body_rows()), "a new job has runs already"
    resp = trainer.post(f"/ui/jobs/{name}/run")
    assert resp.status_code in (200, 303), describe(resp)

    def ran():
        runs = world.api("GET", f"/v1/jobs/{name}/runs", "trainer").json()["runs"]
        return runs if runs and runs[0]["state"] != "running" else None
    runs = wait_until(ran, "the manual run ends", timeout=30, interval=0.2)
    assert runs[0]["trigger"] == "manual" and runs[0]["state"] == "succeeded", runs
    rows = trainer.page(f"/ui/jobs/{name}").one("table#runs").body_rows()
    assert [r for r in rows if "succeeded" in r.text()], f"the run is not in the history: {[r.cells() for r in rows]}"


def test_the_keys_page_shows_a_new_key_once_and_the_audit_log_names_its_maker(world):
    admin = world.ui("admin")
    page = admin.page("/ui/keys")
    table = page.one("table#keys")
    for role, key_id in world.ids.items():
        assert key_id in table.text(), f"the {role} key's id is not listed"
    for key in world.keys.values():
        assert key not in page.html and key.split("_")[-1] not in page.html, "the keys page shows a secret"
    name = unique("made-in-ui")
    resp = admin.submit(page, "#new-key", {"name": name, "role": "client"})
    assert resp.status_code == 200, describe(resp)
    secret = Ui.as_page(resp).one("#new-key-secret").text()
    assert KEY_RE.fullmatch(secret), f"#new-key-secret holds {secret!r}"
    check_page_headers(resp)
    made = key_names(world)[name]
    assert made["role"] == "client" and made["id"] in secret
    ok = requests.get(world.url + "/v2/models/iris-logreg", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    assert ok.status_code == 200, describe(ok)
    again = admin.page("/ui/keys")
    assert again.first("#new-key-secret") is None and secret not in again.html, "the new key is shown again"

    audit = admin.page("/ui/audit").one("table#audit")
    lines = [r.text() for r in audit.body_rows() if made["id"] in r.text() and "key.create" in r.text()]
    assert lines and f"key:{world.ids['admin']}" in lines[0], f"the audit page: {[r.cells() for r in audit.body_rows()[:5]]}"
    entries = world.api("GET", "/v1/audit", params={"limit": 1000}).json()["entries"]
    created = [e for e in entries if e["action"] == "key.create" and e["target"] == made["id"]]
    assert [e["actor"] for e in created] == [f"key:{world.ids['admin']}"], created

    resp = admin.post(f"/ui/keys/{made['id']}/revoke")
    assert resp.status_code in (200, 303), describe(resp)
    gone = requests.get(world.url + "/v2/models/iris-logreg", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    assert gone.status_code == 401, "the key revoked on the keys page still works"
    assert key_names(world)[name]["revoked_at_ms"], "not revoked"


# =========================================================================== OIDC

def test_oidc_sign_in_is_the_code_flow_with_pkce(kids):
    issuer = kids.issuer
    ui = Ui(kids.url)
    login = ui.page("/ui/login?next=" + quote("/ui/projects", safe=""))
    link = login.one("a#login-oidc").get("href")
    assert urlsplit(link).path == "/ui/oidc/start", link
    start = ui.get(link)
    assert start.status_code == 303, describe(start)
    location = start.headers["Location"]
    assert location.startswith(issuer.authorization_endpoint + "?"), location
    q = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert q["response_type"] == "code" and q["client_id"] == OIDC_CLIENT_ID, q
    assert q["redirect_uri"] == kids.url + "/ui/oidc/callback", q
    assert {"openid", "profile"} <= set(q["scope"].split()), q
    assert q["code_challenge_method"] == "S256" and re.fullmatch(r"[A-Za-z0-9_-]{43}", q["code_challenge"]), q
    assert len(q["state"]) >= 16 and len(q.get("nonce", "")) >= 16, q
    cookie = set_cookies(start).get("lectern_oidc")
    assert cookie and "httponly" in cookie and cookie.get("samesite", "").lower() == "lax", cookie
    assert "max-age" in cookie or "expires" in cookie, f"lectern_oidc must last 10 minutes: {cookie}"
    if "max-age" in cookie:
        assert 0 < int(cookie["max-age"]) <= 600, cookie

    user = unique("Pat.Ada")
    before = len(issuer.successful_exchanges())
    callback = ui.get(issuer.approve(location, user))
    assert callback.status_code in (302, 303), describe(callback)
    assert local_target(callback, kids.url) == "/ui/projects", "the OIDC sign-in does not follow next"
    session = set_cookies(callback).get("lectern_session")
    assert session and "httponly" in session and session.get("samesite", "").lower() == "lax", session
    exchanges = issuer.successful_exchanges()
    assert len(exchanges) == before + 1, f"token requests: {issuer.exchanges[-3:]}, errors: {issuer.errors[-3:]}"
    form = exchanges[-1].form
    assert form["grant_type"] == "authorization_code" and form["client_id"] == OIDC_CLIENT_ID, form
    assert form["redirect_uri"] == q["redirect_uri"] and "client_secret" not in form, form
    assert ui.page("/ui/projects").status == 200
    # next is local only, through OIDC too
    other = Ui(kids.url)
    start = other.get("/ui/oidc/start?next=" + quote("//evil.example/", safe=""))
    callback = other.get(issuer.approve(start.headers["Location"], unique("pat")))
    assert local_target(callback, kids.url) == "/", describe(callback)


def _replace_query(url: str, **changes) -> str:
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    q.update(changes)
    return urlunsplit(parts._replace(query=urlencode(q)))


def _not_signed_in(ui: Ui, resp: requests.Response, base: str, what: str):
    assert resp.status_code in (400, 401), f"{what}: {describe(resp)}"
    page = Ui.as_page(resp)
    assert page.first("#login-oidc") is not None or page.first("form#login-key") is not None, \
        f"{what}: the answer is not the sign-in page"
    page.error()
    assert not set_cookies(resp).get("lectern_session", {}).get("value"), f"{what}: a session cookie was set"
    assert login_redirect_next(ui.get("/ui/projects"), base) == "/ui/projects", f"{what}: signed in anyway"


def test_oidc_failures_sign_nobody_in(kids):
    issuer = kids.issuer
    # a state that is not the cookie's: the code is never exchanged
    ui = Ui(kids.url)
    start = ui.get("/ui/oidc/start")
    callback = issuer.approve(start.headers["Location"], unique("mallory"))
    before = len(issuer.exchanges)
    _not_signed_in(ui, ui.get(_replace_query(callback, state="forged-" + secrets.token_urlsafe(16))), kids.url,
                   "state mismatch")
    assert len(issuer.exchanges) == before, "the code was exchanged although the state did not match"
    # the user cancelled at the issuer: ?error=access_denied
    ui = Ui(kids.url)
    start = ui.get("/ui/oidc/start")
    _not_signed_in(ui, ui.get(issuer.approve(start.headers["Location"], "x", deny=True)), kids.url, "error=access_denied")
    # no lectern_oidc cookie (the callback reached from another browser)
    ui, other = Ui(kids.url), Ui(kids.url)
    start = ui.get("/ui/oidc/start")
    callback = issuer.approve(start.headers["Location"], unique("mallory"))
    _not_signed_in(other, other.get(callback), kids.url, "no lectern_oidc cookie")
    # an access token that fails verification (another audience)
    ui = Ui(kids.url)
    start = ui.get("/ui/oidc/start")
    callback = issuer.approve(start.headers["Location"], unique("mallory"))
    issuer.override_next_access_token(aud="someone-else")
    before = len(issuer.successful_exchanges())
    _not_signed_in(ui, ui.get(callback), kids.url, "a token for another audience")
    assert len(issuer.successful_exchanges()) == before + 1, "the exchange did not happen (the test is wrong)"
    # the same code a second time
    ui = Ui(kids.url)
    start = ui.get("/ui/oidc/start")
    callback = issuer.approve(start.headers["Location"], unique("pat"))
    assert ui.get(callback).status_code in (302, 303)
    again = Ui(kids.url)
    again.get("/ui/oidc/start")
    resp = again.get(callback)
    assert resp.status_code in (400, 401), f"a used code / another state: {describe(resp)}"


# =========================================================================== projects

def test_projects_are_private_to_their_creator_on_pages_and_the_api(kids):
    alice_sub, bob_sub = unique("Alice.Liddell"), unique("bob")
    alice, bob = kids.child(alice_sub), kids.child(bob_sub)
    project = "pets" + secrets.token_hex(4)
    header, rows = animals_rows(("bird", "cat"))
    page = alice.page("/ui/projects")
    resp = alice.submit(page, "#new-project", {"name": project, "rows": csv_text(header, rows)})
    assert resp.status_code == 303 and local_target(resp, kids.url) == f"/ui/projects/{project}", describe(resp)
    ds = project_dataset(alice_sub, project)
    shown = kids.api("GET", f"/v1/datasets/{ds}", alice_sub)
    assert shown.status_code == 200, f"alice's project is not the dataset {ds}: {describe(shown)}"
    assert shown.json()["rows"] == len(rows) and shown.json()["created_by"] == f"jwt:{alice_sub}", shown.json()
    assert project in alice.page("/ui/projects").text()
    mine = alice.page(f"/ui/projects/{project}")
    assert len(mine.one("table#rows").body_rows()) == len(rows)

    # bob sees nothing of it, on the pages or through the API
    assert project not in bob.page("/ui/projects").text()
    assert bob.get(f"/ui/projects/{project}").status_code == 404
    assert ds not in bob.page("/ui/datasets").text()
    assert bob.get(f"/ui/datasets/{ds}").status_code == 404
    assert bob.post(f"/ui/projects/{project}/train").status_code == 404
    assert ds not in {d["name"] for d in kids.api("GET", "/v1/datasets", bob_sub).json()["datasets"]}
    resp = kids.api("GET", f"/v1/datasets/{ds}", bob_sub)
    assert resp.status_code == 404 and resp.json()["code"] == "dataset_not_found", describe(resp)
    resp = kids.api("POST", "/v1/training-jobs", bob_sub, json={"dataset": ds, "target": "animal", "model": unique("steal"),
                                                                "algorithm": "decision_tree"})
    assert resp.status_code == 404, f"bob trains from alice's project: {describe(resp)}"
    # the teacher (admin) sees it
    assert ds in {d["name"] for d in kids.api("GET", "/v1/datasets", "teacher").json()["datasets"]}

    # alice trains it, reads the accuracy and the tree, and tries it
    resp = alice.post(f"/ui/projects/{project}/train")
    assert resp.status_code in (200, 303), describe(resp)

    def trained():
        page = alice.page(f"/ui/projects/{project}")
        acc = page.first("#accuracy")
        return page if acc is not None and re.search(r"\d", acc.text()) and page.first("img[alt=tree]") else None
    page = wait_until(trained, "the project's accuracy and tree", timeout=JOB_TIMEOUT_S, interval=0.5)
    jobs = kids.api("GET", "/v1/training-jobs", alice_sub, params={"model": ds}).json()["jobs"]
    assert jobs and jobs[0]["state"] == "succeeded" and jobs[0]["target"] == "animal", jobs
    assert abs(number_in(page.one("#accuracy").text()) - 100 * jobs[0]["metrics"]["accuracy"]) < 0.6
    parse_svg(alice.get(page.one("img[alt=tree]").get("src")))
    for features, label in (({"legs": "2", "wings": "1"}, "bird"), ({"legs": "4", "wings": "0"}, "cat")):
        resp = alice.submit(f"/ui/projects/{project}", "#try", features)
        assert resp.status_code == 200, describe(resp)
        assert label in Ui.as_page(resp).one("#prediction").text(), f"{features}: {resp.text[:300]}"
    # the model is private too
    assert kids.api("GET", f"/v1/models/{ds}", alice_sub).status_code == 200
    assert kids.api("GET", f"/v1/models/{ds}", bob_sub).status_code == 404
    assert ds not in {m["name"] for m in kids.api("GET", "/v1/models", bob_sub).json()["models"]}
    assert not bob.page("/ui/models").select(f"tr[data-model='{ds}']"), "bob sees alice's model"
