"""End-to-end tests of pipelines and LLM helpers (docs/contract.md, "Pipelines and LLM helpers").

Every test runs the real binary with `--config` pointing at a temporary copy of an example
folder (`examples/skill-coach`, `examples/two-layer`) whose `[llm.tutor]` is rewritten to
point at `llm_mock.LLMMock`, a local server speaking Ollama's and OpenAI's wire formats.
Expected strengths and digits come from onnxruntime on the example's own model files and from
scikit-learn's data set, never from the server.
"""
from __future__ import annotations

import base64
import io
import json
import os
import random
import re
import select
import shutil
import socket
import subprocess
import time
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests

from lectern_checks import assert_error
from llm_mock import OLLAMA_PATH, OPENAI_PATH, LLMMock, closed_port, resources_for, topic_of
from lectern_v2 import REPO_ROOT, ort_reference, zipmap_to_array

# An item index alone in an error message (not inside another number).
WORD_0, WORD_1, WORD_2 = (re.compile(rf"\b{n}\b") for n in range(3))

SKILL_COACH = REPO_ROOT / "examples" / "skill-coach"
TWO_LAYER = REPO_ROOT / "examples" / "two-layer"
FEATURES = ["score", "attempts", "time_spent", "hints"]
API_KEY_ENV = "TUTOR_TEST_API_KEY"
API_KEY = "sk-mock-0123456789"
PROVIDERS = {"ollama": OLLAMA_PATH, "openai": OPENAI_PATH}
MB = 1024 * 1024


# =========================================================================== TOML writing

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k, ensure_ascii=False)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def toml_dumps(doc: dict) -> str:
    """A small TOML writer for what tomllib reads from the example configs: scalars, arrays
    (arrays of tables become inline tables) and nested tables (as `[a.b]` headers)."""
    out: list[str] = []

    def table(d: dict, prefix: list[str]):
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in d.items() if isinstance(v, dict)}
        header = bool(prefix) and (bool(scalars) or not tables)
        if header:
            out.append("[" + ".".join(_key(p) for p in prefix) + "]")
        for k, v in scalars.items():
            out.append(f"{_key(k)} = {_value(v)}")
        if header or scalars:
            out.append("")
        for k, v in tables.items():
            table(v, prefix + [k])

    table(doc, [])
    return "\n".join(out) + "\n"


# =========================================================================== example copies

def copy_example(src: Path, dest: Path) -> Path:
    if not (src / "lectern.toml").exists():
        pytest.fail(f"{src.relative_to(REPO_ROOT)}/lectern.toml does not exist", pytrace=False)
    shutil.copytree(src, dest)
    return dest


def load_config(folder: Path) -> dict:
    with open(folder / "lectern.toml", "rb") as f:
        return tomllib.load(f)


def write_llm_config(folder: Path, name: str = "config.toml", **tutor) -> Path:
    """Write `folder/name`: the folder's lectern.toml with `[llm.tutor]` keys replaced."""
    doc = load_config(folder)
    doc["llm"]["tutor"].update(tutor)
    path = folder / name
    path.write_text(toml_dumps(doc))
    return path


def tutor_settings(provider: str, url: str, timeout_ms: int = 2000) -> dict:
    settings = {"provider": provider, "url": url, "timeout_ms": timeout_ms,
                "retries": 1, "backoff_ms": 50}
    if provider == "openai":
        settings["api_key_env"] = API_KEY_ENV
    return settings


@pytest.fixture
def llm_mock():
    mock = LLMMock().start()
    yield mock
    mock.stop()


@pytest.fixture
def skill_coach(tmp_path, start_config_server):
    """`skill_coach(provider, url, timeout_ms=2000, **tutor)` -> a server over a copy of
    examples/skill-coach whose [llm.tutor] talks to `url` with `provider`."""
    counter = [0]

    def start(provider: str, url: str, timeout_ms: int = 2000, **tutor):
        counter[0] += 1
        folder = copy_example(SKILL_COACH, tmp_path / f"skill-coach{counter[0]}")
        settings = tutor_settings(provider, url, timeout_ms)
        settings.update(tutor)
        config = write_llm_config(folder, **settings)
        srv = start_config_server(config, env={API_KEY_ENV: API_KEY})
        srv.example = folder
        return srv

    return start


@pytest.fixture(scope="module")
def two_layer(tmp_path_factory):
    """One server over a copy of examples/two-layer for the module (read-only tests)."""
    from conftest import LecternServer
    root = tmp_path_factory.mktemp("two-layer")
    folder = copy_example(TWO_LAYER, root / "example")
    data = root / "data"
    data.mkdir()
    srv = LecternServer(None, data, extra_args=["--config", str(folder / "lectern.toml")])
    srv.example = folder
    yield srv
    srv.cleanup()


# =========================================================================== requests

def post_pipeline(server, name: str, **kw) -> requests.Response:
    resp = server.post(f"/v1/pipelines/{name}", **kw)
    assert resp.status_code < 500, (
        f"POST /v1/pipelines/{name} answered {resp.status_code}: {resp.text[:1000]!r}\n"
        f"--- server stderr (tail) ---\n{server.stderr_text()[-4000:]}"
    )
    return resp


def pipeline_ok(server, name: str, **kw) -> dict:
    resp = post_pipeline(server, name, **kw)
    assert resp.status_code == 200, f"POST /v1/pipelines/{name}: {resp.status_code} {resp.text[:1000]!r}"
    return resp.json()


# =========================================================================== skill-coach data

def skill_model_path(folder: Path = SKILL_COACH) -> Path:
    return folder / "models" / "skill-strength" / "1" / "model.onnx"


def skill_labels(folder: Path = SKILL_COACH) -> list[str]:
    return (folder / "models" / "skill-strength" / "labels.txt").read_text().splitlines()


# Rows well inside each class (mastery = score - 3*hints - 2*(attempts-1), see train.py).
WEAK = {"score": 20, "attempts": 5, "time_spent": 30, "hints": 4}
AVERAGE = {"score": 68, "attempts": 2, "time_spent": 40, "hints": 1}
STRONG = {"score": 97, "attempts": 1, "time_spent": 15, "hints": 0}


def item(skill: str, row: dict) -> dict:
    return {"skill": skill, **row}


def reference_strengths(items: list[dict]) -> tuple[list[str], np.ndarray]:
    """(label, probabilities) per item from onnxruntime on the example's model file."""
    x = np.array([[float(it[f]) for f in FEATURES] for it in items], dtype=np.float32)
    ref = ort_reference(skill_model_path(), {"X": x})
    probs = zipmap_to_array(ref["output_probability"])
    labels = skill_labels()
    return [labels[int(i)] for i in probs.argmax(axis=1)], probs


def catalog_for(skill: str, folder: Path = SKILL_COACH) -> list[dict]:
    """The resources the example's catalog gives a skill (case-insensitive; `*` otherwise)."""
    cfg = load_config(folder)
    catalog = folder / cfg["llm"]["tutor"]["catalog"]
    with open(catalog, "rb") as f:
        rows = tomllib.load(f)["resource"]
    own = [r for r in rows if r["skill"].lower() == skill.lower()]
    pick = own or [r for r in rows if r["skill"] == "*"]
    return [{"title": r["title"], "url": r["url"]} for r in pick]


def shape_keys(folder: Path = SKILL_COACH) -> set[str]:
    return set(load_config(folder)["pipelines"]["skill-report"]["shape"])


def check_results(results, items, *, weak_source: str, mock: LLMMock | None = None,
                  path: str | None = None):
    """Every result: shape keys, skill echoed in order, strength as onnxruntime says; weak
    skills carry `weak_source` and its resources; the others "Well done!"."""
    assert isinstance(results, list) and len(results) == len(items), (
        f"{len(results) if isinstance(results, list) else results!r} results for {len(items)} items"
    )
    labels, probs = reference_strengths(items)
    keys = shape_keys()
    for i, (res, it, want) in enumerate(zip(results, items, labels)):
        where = f"result {i} ({it})"
        assert set(res) == keys, f"{where}: keys {sorted(res)} != shape {sorted(keys)}"
        assert res["skill"] == it["skill"], f"{where}: skill {res['skill']!r} (order broken?)"
        assert res["strength"] == want, f"{where}: strength {res['strength']!r}, onnxruntime says {want!r}"
        if "probability" in keys:
            assert abs(res["probability"] - float(probs[i].max())) <= 1e-4, (
                f"{where}: probability {res['probability']}, onnxruntime {probs[i].max()}"
            )
        if want == "weak":
            assert res["message"] is None, f"{where}: a weak skill got message {res['message']!r}"
            assert res["source"] == weak_source, f"{where}: source {res['source']!r}, wanted {weak_source!r}"
            if weak_source == "catalog":
                assert res["resources"] == catalog_for(it["skill"]), (
                    f"{where}: catalog resources {res['resources']!r} != resources.toml's "
                    f"{catalog_for(it['skill'])!r}"
                )
            else:
                asked = [c for c in mock.calls(path) if topic_of(c.prompt or "") == it["skill"]]
                assert asked, f"{where}: the LLM was never asked about {it['skill']!r}: {mock.prompts()}"
                assert res["resources"] == resources_for(asked[0].prompt), (
                    f"{where}: resources {res['resources']!r} are not the LLM's answer "
                    f"{resources_for(asked[0].prompt)!r}"
                )
        else:
            assert res["message"] == "Well done!", f"{where}: message {res['message']!r}"
            assert res["resources"] is None and res["source"] is None, (
                f"{where}: a {want} skill got resources/source {res['resources']!r}/{res['source']!r}"
            )


MIXED = [
    item("fractions", WEAK),
    item("algebra", STRONG),
    item("decimals", AVERAGE),
    item("Geometry", WEAK),            # catalog match is case-insensitive
    item("orbital mechanics", WEAK),   # no catalog row: the `*` rows answer
    item("vocabulary", STRONG),
]
MIXED_WEAK = ["fractions", "Geometry", "orbital mechanics"]


def test_the_reference_rows_are_what_the_tests_think_they_are():
    labels, _ = reference_strengths(MIXED)
    assert labels == ["weak", "strong", "average", "weak", "weak", "strong"], labels


# =========================================================================== skill-coach: LLM answers

@pytest.mark.parametrize("provider", ["ollama", "openai"])
def test_weak_skills_get_the_llm_resources_and_the_others_well_done(provider, llm_mock, skill_coach):
    srv = skill_coach(provider, llm_mock.url)
    path = PROVIDERS[provider]
    body = pipeline_ok(srv, "skill-report", json={"skills": MIXED})
    assert set(body) == {"results"}, f"answer keys {sorted(body)}"
    check_results(body["results"], MIXED, weak_source="llm", mock=llm_mock, path=path)

    calls = llm_mock.calls()
    assert all(c.path == path for c in calls), f"calls went to {[c.path for c in calls]}, wanted {path}"
    assert len(calls) == len(MIXED_WEAK), (
        f"{len(calls)} LLM calls for {len(MIXED_WEAK)} weak skills: {[c.prompt for c in calls]}"
    )
    tutor = load_config(SKILL_COACH)["llm"]["tutor"]
    for c in calls:
        assert c.body.get("model") == tutor["model"], f"model {c.body.get('model')!r}"
        assert c.stream is True, f"{provider} call did not ask for a stream: {c.body!r}"
        if provider == "openai":
            assert c.authorization == f"Bearer {API_KEY}", f"Authorization {c.authorization!r}"
    for skill in MIXED_WEAK:
        assert len(llm_mock.calls_mentioning(skill)) == 1, f"{skill}: {llm_mock.prompts()}"


def test_an_openai_url_ending_in_v1_gets_only_chat_completions(llm_mock, skill_coach):
    srv = skill_coach("openai", llm_mock.url + "/v1")
    items = [item("fractions", WEAK), item("algebra", STRONG)]
    body = pipeline_ok(srv, "skill-report", json={"skills": items})
    check_results(body["results"], items, weak_source="llm", mock=llm_mock, path=OPENAI_PATH)
    assert [c.path for c in llm_mock.calls()] == [OPENAI_PATH]


@pytest.mark.parametrize("provider", ["ollama", "openai"])
@pytest.mark.parametrize("mode", ["fenced", "bare_list"])
def test_a_fenced_or_bare_list_llm_answer_is_accepted(provider, mode, llm_mock, skill_coach):
    llm_mock.set_mode(mode)
    srv = skill_coach(provider, llm_mock.url)
    items = [item("fractions", WEAK)]
    body = pipeline_ok(srv, "skill-report", json={"skills": items})
    check_results(body["results"], items, weak_source="llm", mock=llm_mock, path=PROVIDERS[provider])
    assert llm_mock.count() == 1, llm_mock.prompts()


# =========================================================================== skill-coach: fallbacks

@pytest.mark.parametrize("provider", ["ollama", "openai"])
@pytest.mark.parametrize("failure", ["slow", "stall", "down", "garbage", "error"])
def test_the_catalog_answers_when_the_llm_fails(provider, failure, llm_mock, skill_coach):
    timeout_ms = 1000
    url = llm_mock.url
    if failure == "down":
        url = f"http://127.0.0.1:{closed_port()}"
    else:
        llm_mock.set_mode(failure)
        llm_mock.slow_seconds = 6.0
    srv = skill_coach(provider, url, timeout_ms=timeout_ms)

    started = time.monotonic()
    body = pipeline_ok(srv, "skill-report", json={"skills": MIXED}, timeout=30)
    elapsed = time.monotonic() - started
    check_results(body["results"], MIXED, weak_source="catalog")

    path = PROVIDERS[provider]
    for skill in MIXED_WEAK:
        asked = len(llm_mock.calls_mentioning(skill, path))
        if failure == "down":
            assert asked == 0
        elif failure == "garbage":
            assert asked == 2, f"{skill}: a malformed answer is asked again once; the LLM saw {asked} calls"
        elif failure == "error":
            assert asked == 2, f"{skill}: a 500 is retried `retries` = 1 time; the LLM saw {asked} calls"
        else:
            assert asked >= 1, f"{skill}: the LLM was never asked"
    if failure in ("slow", "stall"):
        # Each attempt is cut at timeout_ms (1 s) although the mock would take 6 s; even if a
        # timeout were retried, two attempts plus backoff stay well under 4.5 s.
        assert elapsed < 4.5, f"the request took {elapsed:.1f} s with timeout_ms = {timeout_ms}"


# =========================================================================== skill-coach: many items

def many_items(n: int = 200, weak_skills=("fractions", "decimals", "orbital mechanics", "Geometry")):
    rng = random.Random(4)
    items = []
    for i in range(n):
        if i % 5 < 3:  # 3 in 5 rows are weak, sharing a few skills (and the same row, so the same prompt)
            items.append(item(weak_skills[rng.randrange(len(weak_skills))], WEAK))
        else:
            items.append(item(f"skill-{i:03d}", dict(rng.choice([STRONG, AVERAGE]))))
    assert {it["skill"] for it in items} >= set(weak_skills)
    return items, list(weak_skills)


def test_two_hundred_skills_make_one_llm_call_per_distinct_weak_skill_and_then_hit_the_cache(
        llm_mock, skill_coach):
    llm_mock.delay = 0.3  # identical prompts are then in flight together and must share a call
    srv = skill_coach("ollama", llm_mock.url, timeout_ms=5000)
    items, weak = many_items()

    started = time.monotonic()
    first = pipeline_ok(srv, "skill-report", json={"skills": items}, timeout=60)
    elapsed = time.monotonic() - started
    check_results(first["results"], items, weak_source="llm", mock=llm_mock, path=OLLAMA_PATH)
    assert llm_mock.count() == len(weak), (
        f"{llm_mock.count()} LLM calls for {len(weak)} distinct weak skills: {llm_mock.prompts()}"
    )
    assert elapsed < 10, f"200 items took {elapsed:.1f} s"

    second = pipeline_ok(srv, "skill-report", json={"skills": items}, timeout=60)
    assert llm_mock.count() == len(weak), "the second identical request called the LLM again (no cache)"
    assert second == first


def test_llm_calls_in_flight_never_exceed_the_concurrency(llm_mock, skill_coach):
    llm_mock.delay = 0.25
    concurrency = load_config(SKILL_COACH)["llm"]["tutor"].get("concurrency", 4)
    srv = skill_coach("ollama", llm_mock.url, timeout_ms=5000)
    items = [item(f"skill number {i}", WEAK) for i in range(3 * concurrency)]
    body = pipeline_ok(srv, "skill-report", json={"skills": items}, timeout=60)
    check_results(body["results"], items, weak_source="llm", mock=llm_mock, path=OLLAMA_PATH)
    assert llm_mock.count() == len(items)
    assert 1 < llm_mock.max_in_flight <= concurrency, (
        f"{llm_mock.max_in_flight} LLM calls in flight at once; concurrency = {concurrency} "
        "(and items run in parallel, so more than one)"
    )


def test_strengths_and_probabilities_agree_with_onnxruntime(llm_mock, skill_coach):
    rng = np.random.default_rng(11)
    n = 60
    rows = np.column_stack([
        np.clip(np.rint(rng.normal(65, 20, n)), 0, 100),
        np.minimum(1 + rng.poisson(3, n), 20),
        rng.integers(1, 121, n),
        np.minimum(rng.poisson(2, n), 10),
    ])
    items = [item(f"topic {i}", {f: int(v) for f, v in zip(FEATURES, r)}) for i, r in enumerate(rows)]
    # a few in other encodings the contract allows: floats, and strings holding numbers
    items[0] = item("topic 0", {"score": 64.5, "attempts": 3.0, "time_spent": 12.25, "hints": 1})
    items[1] = item("topic 1", {"score": "88", "attempts": "1", "time_spent": "30", "hints": "0"})
    items[2] = item("topic 2", {"score": "21.5", "attempts": 4, "time_spent": "7", "hints": "3"})
    labels, probs = reference_strengths(items)
    # keep rows whose two best classes are clearly apart (float noise cannot flip them)
    top2 = np.sort(probs, axis=1)[:, -2:]
    keep = [i for i in range(n) if top2[i, 1] - top2[i, 0] > 1e-3]
    items = [items[i] for i in keep]
    assert len(set(labels[i] for i in keep)) == 3, "the sample should cover all three classes"

    srv = skill_coach("ollama", llm_mock.url)
    body = pipeline_ok(srv, "skill-report", json={"skills": items}, timeout=60)
    check_results(body["results"], items, weak_source="llm", mock=llm_mock, path=OLLAMA_PATH)


# =========================================================================== listing

def expected_steps(folder: Path, pipeline: str) -> list[dict]:
    steps = []
    for s in load_config(folder)["pipelines"][pipeline]["steps"]:
        kind = next(k for k in ("route", "model", "llm", "output") if k in s)
        want = {"id": s["id"], "kind": kind, "when": s.get("when")}
        if kind == "route":
            want["models"] = s["models"]
        else:
            want[kind] = s[kind]
        steps.append(want)
    return steps


def check_listing(srv, folder: Path, names: list[str]):
    resp = srv.get("/v1/pipelines")
    assert resp.status_code == 200, resp.text
    listing = resp.json()
    assert set(listing) == {"pipelines"}, listing
    got = {p["name"]: p for p in listing["pipelines"]}
    assert sorted(got) == sorted(names), f"pipelines {sorted(got)}, wanted {names}"
    cfg = load_config(folder)["pipelines"]
    for name in names:
        p = got[name]
        assert p.get("for_each") == cfg[name].get("for_each"), f"{name}: for_each {p.get('for_each')!r}"
        assert [s["id"] for s in p["steps"]] == [s["id"] for s in cfg[name]["steps"]], p["steps"]
        for have, want in zip(p["steps"], expected_steps(folder, name)):
            for k, v in want.items():
                assert have.get(k) == v, f"{name} step {want['id']}: {k} = {have.get(k)!r}, wanted {v!r}"


def test_the_pipeline_listing_shows_skill_report_steps(llm_mock, skill_coach):
    srv = skill_coach("ollama", llm_mock.url)
    check_listing(srv, srv.example, ["skill-report"])
    skill = {s["id"]: s for s in srv.get("/v1/pipelines").json()["pipelines"][0]["steps"]}
    assert skill["strength"]["kind"] == "model" and skill["strength"]["model"] == "skill-strength"
    assert skill["advice"]["kind"] == "llm" and skill["advice"]["llm"] == "tutor"
    assert skill["advice"]["when"] == "strength.label == 'weak'"
    assert skill["praise"]["kind"] == "output" and skill["praise"]["output"] == "Well done!"


def test_the_pipeline_listing_shows_diagnose_steps(two_layer):
    check_listing(two_layer, two_layer.example, ["diagnose"])


# =========================================================================== bad input: skill-coach

def test_bad_skill_report_requests_are_400_with_the_item_and_field(llm_mock, skill_coach):
    srv = skill_coach("ollama", llm_mock.url)
    good = item("fractions", STRONG)
    missing = {k: v for k, v in item("algebra", STRONG).items() if k != "hints"}
    assert_error(post_pipeline(srv, "skill-report", json={"skills": [good, missing]}), 400,
                 r"hints", WORD_1)
    wrong = item("algebra", dict(STRONG, score="lots"))
    assert_error(post_pipeline(srv, "skill-report", json={"skills": [good, good, wrong]}), 400,
                 r"score", WORD_2)
    nested = item("algebra", dict(STRONG, attempts=[1, 2]))
    assert_error(post_pipeline(srv, "skill-report", json={"skills": [nested]}), 400, r"attempts", WORD_0)
    assert_error(post_pipeline(srv, "skill-report", json={"skills": "fractions"}), 400, r"skills")
    assert_error(post_pipeline(srv, "skill-report", json={"skills": {"0": good}}), 400, r"skills")
    assert_error(post_pipeline(srv, "skill-report", json={"learner": "ada"}), 400, r"skills")
    assert_error(post_pipeline(srv, "skill-report", json={"skills": [good, 7]}), 400, WORD_1)
    assert llm_mock.count() == 0, "a refused request reached the LLM"


@pytest.mark.parametrize("body", [
    b"{not json", b"", b'{"skills": [', b"[1, 2, 3]", b'"skills"', b"\xff\xfe\x00garbage",
], ids=["broken", "empty", "truncated", "array", "string", "binary"])
def test_a_body_that_is_not_a_json_object_is_400(body, llm_mock, skill_coach):
    srv = skill_coach("ollama", llm_mock.url)
    assert_error(post_pipeline(srv, "skill-report", data=body,
                               headers={"Content-Type": "application/json"}), 400)


def test_an_unknown_pipeline_is_404_and_a_get_on_a_pipeline_is_405(llm_mock, skill_coach):
    srv = skill_coach("ollama", llm_mock.url)
    assert_error(post_pipeline(srv, "no-such-pipeline", json={"skills": []}), 404, "no-such-pipeline")
    resp = srv.get("/v1/pipelines/skill-report")
    assert_error(resp, 405)


def test_an_empty_skill_list_answers_no_results(llm_mock, skill_coach):
    srv = skill_coach("ollama", llm_mock.url)
    assert pipeline_ok(srv, "skill-report", json={"skills": []}) == {"results": []}


# =========================================================================== 413

def _raw_request(host: str, port: int, path: str, content_type: str, total: int, chunked: bool,
                 filler: bytes, prefix: bytes = b"") -> tuple[int | None, dict, bytes, int, str]:
    """POST `total` bytes (prefix + filler repeated) without holding them, stopping as soon as
    the server answers. Returns (status, headers, body, bytes sent, what happened)."""
    sock = socket.create_connection((host, port), timeout=10)
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Type: {content_type}"]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    block = (prefix + filler * (MB // len(filler) + 1))[:MB]
    rest = filler * (MB // len(filler) + 1)
    sent, note, first = 0, "sent everything", True
    try:
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                note = "server answered early"
                break
            piece = (block if first else rest[:MB])[: total - sent]
            first = False
            sock.sendall((b"%x\r\n%s\r\n" % (len(piece), piece)) if chunked else piece)
            sent += len(piece)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError) as e:
        note = f"send failed after {sent} bytes: {e!r}"
    except socket.timeout:
        note = f"send blocked after {sent} bytes (server stopped reading without answering?)"

    data = b""
    sock.settimeout(10)
    try:
        while True:
            part = sock.recv(65536)
            if not part:
                break
            data += part
            if b"\r\n\r\n" in data:
                head_raw, _, body = data.partition(b"\r\n\r\n")
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head_raw)
                if m and len(body) >= int(m.group(1)):
                    break
    except (ConnectionResetError, socket.timeout) as e:
        note += f"; recv: {e!r}"
    finally:
        sock.close()
    if not data:
        return None, {}, b"", sent, note
    head_raw, _, body = data.partition(b"\r\n\r\n")
    lines = head_raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    if "chunked" in headers.get("transfer-encoding", "").lower():
        decoded, rest_b = b"", body
        while rest_b:
            size_line, _, rest_b = rest_b.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            decoded, rest_b = decoded + rest_b[:size], rest_b[size + 2:]
        body = decoded
    return status, headers, body, sent, note


def assert_raw_413(result):
    status, headers, body, sent, note = result
    assert status is not None, (
        f"no HTTP answer to a 200 MB upload ({note}); the server must answer 413 before closing"
    )
    assert status == 413, f"got HTTP {status} ({note}): {body[:300]!r}"
    parsed = json.loads(body)
    assert isinstance(parsed, dict) and isinstance(parsed.get("error"), str) and parsed["error"].strip(), parsed
    assert parsed.get("code") == "payload_too_large", parsed


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_200_mb_json_body_is_413(chunked, llm_mock, skill_coach):
    srv = skill_coach("ollama", llm_mock.url)
    u = urlsplit(srv.url)
    one = json.dumps(item("fractions", STRONG)).encode() + b","
    assert_raw_413(_raw_request(u.hostname, u.port, "/v1/pipelines/skill-report", "application/json",
                                200 * MB, chunked, one, prefix=b'{"skills": ['))
    assert srv.is_running()
    assert llm_mock.count() == 0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_200_mb_multipart_upload_is_413(chunked, two_layer):
    u = urlsplit(two_layer.url)
    boundary = "lecternboundary7MA4YWxkTrZu0gW"
    field = image_field(two_layer.example)
    prefix = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"big.png\"\r\n"
              f"Content-Type: image/png\r\n\r\n").encode() + b"\x89PNG\r\n\x1a\n"
    assert_raw_413(_raw_request(u.hostname, u.port, "/v1/pipelines/diagnose",
                                f"multipart/form-data; boundary={boundary}", 200 * MB, chunked,
                                bytes(range(256)), prefix=prefix))
    assert two_layer.is_running()
    assert two_layer.get("/v2/health/live").status_code == 200


class _SizedZeros:
    """A file-like body of `n` bytes that requests sends with a Content-Length, made on the fly."""

    def __init__(self, n: int, head: bytes):
        self.n, self.pos, self.head = n, 0, head

    def __len__(self):
        return self.n - self.pos

    def read(self, size: int = -1) -> bytes:
        size = min(size if size and size > 0 else MB, self.n - self.pos)
        out = (self.head if self.pos == 0 else b"") + b" " * size
        out = out[:size]
        self.pos += len(out)
        return out


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_requests_gets_the_413_for_a_200_mb_body(framing, llm_mock, skill_coach):
    """What a plain `requests` client sees. The server answers 413 once the limit is passed
    (at once when a Content-Length announces it) and may stop reading; urllib3 swallows the
    broken pipe on its side and reads the answer, so the 413 itself must come back: a
    connection error here means the server closed without answering."""
    srv = skill_coach("ollama", llm_mock.url)
    sent = [0]

    def chunks():
        yield b'{"skills": ['
        chunk = (json.dumps(item("fractions", STRONG)) + ",").encode() * 16000
        while sent[0] < 200 * MB:
            sent[0] += len(chunk)
            yield chunk

    body = chunks() if framing == "chunked" else _SizedZeros(200 * MB, b'{"skills": [')
    try:
        resp = srv.post("/v1/pipelines/skill-report", data=body,
                        headers={"Content-Type": "application/json"}, timeout=30)
    except requests.ConnectionError as e:
        done = sent[0] if framing == "chunked" else body.pos
        pytest.fail(f"requests got no answer after sending {done} bytes: {e!r}")
    assert_error(resp, 413)
    assert llm_mock.count() == 0


# =========================================================================== two-layer (digits)

def diagnose_config(folder: Path = TWO_LAYER) -> dict:
    return load_config(folder)["pipelines"]["diagnose"]


def image_field(folder: Path = TWO_LAYER) -> str:
    for step in diagnose_config(folder)["steps"]:
        if "image" in step:
            return step["image"]
    raise AssertionError("no step of [pipelines.diagnose] reads an image")


def digits_test_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    _, x_test, _, y_test = train_test_split(d.images, d.target, test_size=0.2, random_state=0,
                                            stratify=d.target)
    return x_test, y_test


def digit_image(pixels16: np.ndarray, fmt: str = "PNG", **save) -> bytes:
    from PIL import Image
    arr = np.rint(np.asarray(pixels16, dtype=np.float64) * 255.0 / 16.0).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(arr, mode="L")
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def check_diagnosis(answer: dict, where: str = "answer"):
    assert set(answer) == {"category", "probability", "predictions"}, f"{where}: keys {sorted(answer)}"
    assert isinstance(answer["category"], str) and answer["category"], f"{where}: category {answer['category']!r}"
    assert isinstance(answer["probability"], float) and 0.0 <= answer["probability"] <= 1.0, answer
    preds = answer["predictions"]
    assert isinstance(preds, list) and len(preds) == 3, f"{where}: predictions {preds!r}"
    for p in preds:
        assert set(p) == {"label", "probability"}, f"{where}: prediction {p!r}"
        assert isinstance(p["label"], str) and p["label"], f"{where}: label {p['label']!r} is not a string"
        assert isinstance(p["probability"], float) and 0.0 <= p["probability"] <= 1.0, p
    probs = [p["probability"] for p in preds]
    assert probs == sorted(probs, reverse=True), f"{where}: predictions not sorted: {probs}"
    assert len({p["label"] for p in preds}) == 3, f"{where}: repeated labels {preds}"


def route_labels(folder: Path = TWO_LAYER) -> dict[str, set[str]]:
    """category -> the labels of the second-layer model it routes to."""
    route = next(s for s in diagnose_config(folder)["steps"] if "route" in s)
    models = folder / load_config(folder)["repository"]["models"]
    return {cat: set((models / m / "labels.txt").read_text().split())
            for cat, m in route["models"].items()}


def test_diagnose_classifies_the_digits_test_split(two_layer):
    x_test, y_test = digits_test_split()
    field = image_field(two_layer.example)
    routes = route_labels(two_layer.example)
    correct = 0
    session = requests.Session()
    for i, (img, y) in enumerate(zip(x_test, y_test)):
        resp = session.post(two_layer.url + "/v1/pipelines/diagnose",
                            json={field: b64(digit_image(img))}, timeout=30)
        assert resp.status_code == 200, f"image {i}: {resp.status_code} {resp.text[:500]!r}"
        answer = resp.json()
        check_diagnosis(answer, f"image {i}")
        assert answer["category"] in routes, f"image {i}: category {answer['category']!r} not in {sorted(routes)}"
        labels = {p["label"] for p in answer["predictions"]}
        assert labels <= routes[answer["category"]], (
            f"image {i}: predictions {sorted(labels)} are not labels of the model routed to by "
            f"{answer['category']!r} ({sorted(routes[answer['category']])})"
        )
        correct += answer["predictions"][0]["label"] == str(int(y))
    accuracy = correct / len(y_test)
    print(f"\ntwo-layer diagnose accuracy on the digits test split: {accuracy:.4f} "
          f"({correct}/{len(y_test)})")
    assert accuracy >= 0.9, f"accuracy {accuracy:.4f} < 0.9"


def first_test_digit(digit: int):
    x_test, y_test = digits_test_split()
    i = int(np.flatnonzero(y_test == digit)[0])
    return x_test[i]


def test_diagnose_accepts_a_multipart_png_a_jpeg_and_a_data_url(two_layer):
    field = image_field(two_layer.example)
    img = first_test_digit(3)
    png = digit_image(img)
    by_json = pipeline_ok(two_layer, "diagnose", json={field: b64(png)})
    check_diagnosis(by_json, "base64 PNG")

    by_file = pipeline_ok(two_layer, "diagnose", files={field: ("three.png", png, "image/png")})
    check_diagnosis(by_file, "multipart PNG")
    assert by_file == by_json, "the same PNG as a file and as base64 gave different answers"

    by_url = pipeline_ok(two_layer, "diagnose", json={field: "data:image/png;base64," + b64(png)})
    assert by_url == by_json, "the same PNG as a data: URL gave a different answer"

    jpeg = digit_image(img, "JPEG", quality=95)
    check_diagnosis(pipeline_ok(two_layer, "diagnose", json={field: b64(jpeg)}), "base64 JPEG")
    check_diagnosis(pipeline_ok(two_layer, "diagnose", files={field: ("three.jpg", jpeg, "image/jpeg")}),
                    "multipart JPEG")


def test_diagnose_resizes_a_larger_image(two_layer):
    from PIL import Image
    field = image_field(two_layer.example)
    img = Image.open(io.BytesIO(digit_image(first_test_digit(0)))).resize((32, 32), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    check_diagnosis(pipeline_ok(two_layer, "diagnose", json={field: b64(buf.getvalue())}), "32x32 PNG")


def test_bad_diagnose_requests_are_400(two_layer):
    field = image_field(two_layer.example)
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 256, 512, dtype=np.uint8).tobytes()
    assert_error(post_pipeline(two_layer, "diagnose", json={field: b64(noise)}), 400, field)
    assert_error(post_pipeline(two_layer, "diagnose", json={field: "not base64 at all!!"}), 400, field)
    assert_error(post_pipeline(two_layer, "diagnose", json={field: 42}), 400, field)
    assert_error(post_pipeline(two_layer, "diagnose", json={}), 400, field)
    assert_error(post_pipeline(two_layer, "diagnose",
                               files={field: ("notes.txt", b"just some text\n", "text/plain")}), 400, field)
    png = digit_image(first_test_digit(1))
    truncated = png[: len(png) // 2]
    assert_error(post_pipeline(two_layer, "diagnose", json={field: b64(truncated)}), 400, field)
    assert_error(post_pipeline(two_layer, "diagnose", data=b"{oops",
                               headers={"Content-Type": "application/json"}), 400)
    assert two_layer.get("/v2/health/live").status_code == 200


# =========================================================================== start-up checks

BAD_STEP_CASES = {
    "unknown model": ('{ id = "strength", model = "no-such-model", inputs = ["score", "attempts", "time_spent", "hints"] }',
                      "no-such-model"),
    "unknown llm": ('{ id = "advice", llm = "no-such-llm", topic = "input.skill", prompt = "Resources for {{ topic }}" }',
                    "no-such-llm"),
    "later step": ('{ id = "early", when = "advice.source == \'llm\'", output = "x" }', "advice"),
    "bad expression": ('{ id = "broken", when = "strength.label ==", output = "x" }', None),
}


def write_bad_config(case: str, folder: Path) -> tuple[Path, int, list[str]]:
    """`folder/broken.toml`, valid TOML whose pipeline has the bad step of `case`; returns the
    path, the bad step's line number and the lines."""
    bad_step, _ = BAD_STEP_CASES[case]
    cfg = load_config(folder)
    lines = [
        "# a pipeline with one bad step",
        "[repository]",
        f"models = {json.dumps(cfg['repository']['models'])}",
        "",
        "[llm.tutor]",
        'provider = "ollama"',
        f'url = "http://127.0.0.1:{closed_port()}"',
        'model = "llama3.2"',
        f"catalog = {json.dumps(cfg['llm']['tutor']['catalog'])}",
        "",
        "[pipelines.broken-report]",
        'for_each = "skills"',
        "steps = [",
        '  { id = "strength", model = "skill-strength", inputs = ["score", "attempts", "time_spent", "hints"] },',
    ]
    if case == "unknown model":
        lines[-1] = "  " + bad_step + ","
    else:
        lines.append("  " + bad_step + ",")
    if case == "later step":
        lines.append('  { id = "advice", llm = "tutor", topic = "input.skill", prompt = "Resources for {{ topic }}" },')
    bad_line = next(n for n, l in enumerate(lines, 1) if l.strip().startswith(bad_step))
    lines.append("]")
    config = folder / "broken.toml"
    config.write_text("\n".join(lines) + "\n")
    return config, bad_line, lines


@pytest.mark.parametrize("case", list(BAD_STEP_CASES))
def test_a_bad_pipeline_stops_start_up_naming_the_file_and_line(case, tmp_path):
    from conftest import lectern_binary
    _, named = BAD_STEP_CASES[case]
    folder = copy_example(SKILL_COACH, tmp_path / "skill-coach")
    config, bad_line, lines = write_bad_config(case, folder)
    with open(config, "rb") as f:
        tomllib.load(f)  # the file itself is valid TOML: only the pipeline is wrong
    data = tmp_path / "data"
    data.mkdir()
    proc = subprocess.run(
        [str(lectern_binary()), "serve", "--config", str(config), "--listen", "127.0.0.1:0",
         "--data", str(data)],
        cwd=str(data), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("LECTERN_")},
    )
    assert proc.returncode != 0, f"lectern started with a bad pipeline ({case}); stdout {proc.stdout!r}"
    assert "listening" not in proc.stdout, proc.stdout
    err = proc.stderr
    assert "broken.toml" in err, f"stderr does not name the config file:\n{err[-3000:]}"
    assert re.search(rf"(:{bad_line}\b|line {bad_line}\b)", err), (
        f"stderr does not name line {bad_line} ({lines[bad_line - 1].strip()}):\n{err[-3000:]}"
    )
    assert named is None or named in err, f"stderr does not name {named!r}:\n{err[-3000:]}"
