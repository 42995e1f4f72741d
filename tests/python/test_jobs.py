"""Scheduled jobs end to end (docs/contract.md, "Scheduled jobs and the caching proxy (issue 13)",
"Jobs"), against the real binary with short intervals (`every = "1s"`, cron with seconds).

- Schedule: config jobs fire on time (`every` on its grid, a 6-field cron on its seconds, a
  5-field cron in its time zone), record their runs (state, items, times, owner), `enabled =
  false` never fires on its own; pause/resume (no catch-up of what was missed while paused).
- The API: create/get/list/put/delete/pause/resume/run-now and their errors (409 `job_exists`,
  `job_from_config`, `job_running`; 404 `job_not_found`; 400 for each bad field), roles.
- Config errors stop the start-up, naming the job.
- Restarts on the same data and database: one catch-up run within `misfire_grace` (each missed
  firing with `coalesce = false`), none outside it (a `missed` record instead), API jobs and next
  firings kept, config jobs no longer in the file deleted; a run whose process was killed is
  failed once its lease expired.
- Two processes on one PostgreSQL: each of 25 firings runs exactly once; kill -9 the process
  running a job: the run is failed after its lease and the next firing runs on the other one.
  (These make their own PostgreSQL database, as test_example_vocabulary_quiz does, so they run
  in both passes.)
- Timeouts fail a run; failing runs never stop the other jobs.
- Kinds: http-ingest against `Upstream` (below) in each pagination mode, with a page failing
  once in three and rows repeated across pages; resuming from the last good page; secret
  headers; garbage pages. cleanup of each target (and dry runs); retrain with `min_metric` /
  `beat_default` (and `register_if` on POST /v1/training-jobs); pipeline-batch with a failing
  row.
- The CLI: `lectern job list|show|run --wait|pause|resume|history`.

Datasets cannot be downloaded through the API, so ingested data is checked through what the API
shows: `rows`, the columns' `distinct` counts (exact up to 50: the data sets here stay under
that) and `preview` (the first 10 rows by key), against rows computed from the upstream's data.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import threading
import time
import zoneinfo
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from conftest import LecternServer, TestDatabase, copy_models, lectern_binary
from lectern_checks import assert_error, ok, wait_until
from lectern_training import Lectern, assert_code, iris_csv
from test_cli import cli, only_iris, refused
from test_cli import ok as succeeded_cli

# A job that always succeeds at once and touches nothing: a cleanup of datasets no test makes.
TICK = {"kind": "cleanup", "target": "datasets", "match": "no-such-dataset-*", "older_than": "1d"}
RUN_KEYS = {"id", "job", "trigger", "scheduled_for_ms", "started_at_ms", "finished_at_ms", "state", "items",
            "error", "detail", "owner"}
JOB_KEYS = {"name", "kind", "source", "cron", "timezone", "every", "misfire_grace_ms", "coalesce", "timeout_ms",
            "lease_ms", "enabled", "paused", "next_run_at_ms", "spec", "running", "last_run"}
LEASE_EXPIRED = "its lease expired"
SECRET = "Bearer s3cret-portal-token-5b1f0e"


def now_ms() -> int:
    return int(time.time() * 1000)


# =========================================================================== config files

def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def jobs_toml(jobs: dict[str, dict]) -> str:
    lines = []
    for name, fields in jobs.items():
        lines.append(f"[jobs.{name}]")
        lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in fields.items()]
        lines.append("")
    return "\n".join(lines)


def write_config(folder: Path, jobs: dict[str, dict], name: str = "lectern.toml") -> Path:
    path = Path(folder) / name
    path.write_text(jobs_toml(jobs))
    return path


# =========================================================================== the API

def job(srv, name: str) -> dict:
    return ok(srv.get(f"/v1/jobs/{name}"))


def create(srv, **body) -> dict:
    created = ok(srv.post("/v1/jobs", json=body), 201)
    assert created["name"] == body["name"] and created["source"] == "api", created
    return created


def runs(srv, name: str, limit: int = 1000) -> list[dict]:
    body = ok(srv.get(f"/v1/jobs/{name}/runs", params={"limit": limit}))
    assert isinstance(body, dict) and isinstance(body.get("runs"), list), body
    for run in body["runs"]:
        check_run(run, name)
    return body["runs"]


def run_now(srv, name: str) -> dict:
    run = ok(srv.post(f"/v1/jobs/{name}/run"), 202)
    assert run["state"] == "running" and run["trigger"] == "manual" and run["job"] == name, run
    return run


def find_run(srv, name: str, run_id: str) -> dict | None:
    return next((r for r in runs(srv, name) if r["id"] == run_id), None)


def wait_run(srv, name: str, run_id: str, timeout: float = 30) -> dict:
    """Polls the job's history until the run has ended; returns it."""
    def ended():
        run = find_run(srv, name, run_id)
        return run if run is not None and run["state"] != "running" else None
    return wait_until(ended, f"run {run_id} of {name} ends", timeout=timeout, interval=0.1)


def run_and_wait(srv, name: str, timeout: float = 30) -> dict:
    return wait_run(srv, name, run_now(srv, name)["id"], timeout)


def scheduled(srv, name: str, n: int, timeout: float = 20) -> list[dict]:
    """Waits until the job has at least `n` finished scheduled runs; returns them, oldest first."""
    def enough():
        done = [r for r in runs(srv, name) if r["trigger"] == "schedule" and r["state"] != "running"]
        return sorted(done, key=lambda r: r["scheduled_for_ms"]) if len(done) >= n else None
    return wait_until(enough, f"{n} scheduled runs of {name}", timeout=timeout, interval=0.1)


def check_run(run: dict, name: str):
    assert set(run) >= RUN_KEYS, f"a run lacks {RUN_KEYS - set(run)}: {run}"
    assert run["job"] == name and isinstance(run["id"], str) and run["id"], run
    assert run["trigger"] in ("schedule", "manual"), run
    assert run["state"] in ("running", "succeeded", "failed", "missed"), run
    assert isinstance(run["owner"], str) or run["state"] == "missed", run
    if run["trigger"] == "schedule":
        assert isinstance(run["scheduled_for_ms"], int), run
    if run["state"] in ("succeeded", "failed"):
        assert isinstance(run["items"], int) and run["items"] >= 0, run
        assert isinstance(run["started_at_ms"], int) and run["started_at_ms"] > 1_600_000_000_000, run
        assert isinstance(run["finished_at_ms"], int) and run["finished_at_ms"] >= run["started_at_ms"], run
    if run["state"] == "failed":
        assert isinstance(run["error"], str) and run["error"].strip(), run
    if run["state"] == "succeeded":
        assert run["error"] is None, run


def succeeded(run: dict) -> dict:
    assert run["state"] == "succeeded", f"the run did not succeed: {run}"
    return run


def dataset(srv, name: str) -> dict:
    return ok(srv.get(f"/v1/datasets/{name}"))


def columns(ds: dict) -> dict[str, dict]:
    return {c["name"]: c for c in ds["columns"]}


def upload_csv(srv, name: str, text: str) -> dict:
    resp = srv.post(f"/v1/datasets/{name}", data=text.encode(), headers={"Content-Type": "text/csv"})
    assert resp.status_code in (200, 201), resp.text
    return resp.json()


def upload_json(srv, name: str, rows: list[dict]) -> dict:
    resp = srv.post(f"/v1/datasets/{name}", params={"format": "json"}, data=json.dumps(rows).encode(),
                    headers={"Content-Type": "application/json"})
    assert resp.status_code in (200, 201), resp.text
    return resp.json()


def config_server(start_server, folder: Path, jobs: dict[str, dict], env=None, extra=()) -> LecternServer:
    return start_server(prepare=only_iris, extra_args=["--config", str(write_config(folder, jobs)), *extra], env=env)


# =========================================================================== the upstream

def make_rows(n: int, prefix: str = "r") -> list[dict]:
    cities = ["Lyon", "Lille", "Nantes", "Brest"]
    return [{"id": f"{prefix}{i:03d}", "name": f"record {i}", "score": i * 1.5, "rank": i,
             "place": {"city": cities[i % 4], "zip": f"{69000 + i}"}, "tags": ["t", str(i)]}
            for i in range(1, n + 1)]


class Upstream:
    """A paginated JSON API on 127.0.0.1 (a thread of this process).

    Logical page `idx` (0-based) holds `page_size` rows and, after the first, repeats the last row
    of the page before (a duplicate across pages); in `offset` mode the window is shifted back by
    one row instead, so every page has `limit` rows and the first repeats the previous window's
    last. The modes read the request as the contract's pagination kinds send it: `page`
    (?page=N from 1), `offset` (?offset=N&limit=M), `cursor` (?cursor=C, the next cursor at
    /next), `link` (a `Link: <...>; rel="next"` header). Pages are `{"data": [...], "next": ...}`.

    Knobs: `fail_every` (page idx+1 divisible by it answers 500 the first time it is asked),
    `down_from` (pages from this idx on answer 503, always), `garbage_at` (that page answers text
    that is not JSON), `keyless_at` (that page has an item without `id`), `delay` (seconds
    before each answer). `requests` records (idx, query, headers, status) of every request.
    """

    def __init__(self, rows: list[dict], page_size: int = 4, mode: str = "page", fail_every: int = 3):
        self.rows = rows
        self.page_size = page_size
        self.mode = mode
        self.fail_every = fail_every
        self.down_from: int | None = None
        self.garbage_at: int | None = None
        self.keyless_at: int | None = None
        self.delay = 0.0
        self.failed_once: set[int] = set()
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                upstream.answer(self)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = self.base + "/records"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    # ----------------------------------------------------------------- pages
    @property
    def pages(self) -> int:
        return math.ceil(len(self.rows) / self.page_size)

    def page(self, idx: int) -> list[dict]:
        start = idx * self.page_size
        if idx < 0 or start >= len(self.rows):
            return []
        if self.mode == "offset":
            low = max(0, start - 1)
            return self.rows[low:low + self.page_size]
        items = self.rows[start:start + self.page_size]
        return ([self.rows[start - 1]] if idx > 0 else []) + items

    def expected(self) -> dict[str, dict]:
        """Every row the pages hold, by id, the last seen winning."""
        out: dict[str, dict] = {}
        for idx in range(self.pages):
            for item in self.page(idx):
                out[item["id"]] = item
        return out

    def asked(self, status: int | None = None) -> list[int]:
        with self.lock:
            return [r["idx"] for r in self.requests if status is None or r["status"] == status]

    def clear(self):
        with self.lock:
            self.requests.clear()

    # ----------------------------------------------------------------- answering
    def answer(self, h: BaseHTTPRequestHandler):
        q = {k: v[-1] for k, v in parse_qs(urlsplit(h.path).query).items()}
        if self.mode == "page":
            idx = int(q.get("page", "1")) - 1
        elif self.mode == "offset":
            idx = int(q.get("offset", "0")) // max(1, int(q.get("limit", str(self.page_size))))
        elif self.mode == "cursor":
            idx = int(q["cursor"][1:]) if q.get("cursor") else 0
        else:
            idx = int(q.get("pg", "0"))
        if self.delay:
            time.sleep(self.delay)
        status, body, headers = self.respond(idx, q)
        with self.lock:
            self.requests.append({"idx": idx, "query": q, "headers": dict(h.headers), "status": status})
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def respond(self, idx: int, q: dict) -> tuple[int, bytes, dict]:
        if self.down_from is not None and idx >= self.down_from:
            return 503, b'{"error": "down for maintenance"}', {}
        with self.lock:
            if self.fail_every and (idx + 1) % self.fail_every == 0 and idx not in self.failed_once:
                self.failed_once.add(idx)
                return 500, b'{"error": "try again"}', {}
        if self.garbage_at == idx:
            return 200, b"<html>this is not JSON", {}
        if self.mode == "offset":
            offset, limit = int(q.get("offset", "0")), int(q.get("limit", str(self.page_size)))
            low = max(0, offset - 1) if offset else 0
            items = self.rows[low:low + limit] if offset < len(self.rows) else []
        else:
            items = self.page(idx)
        items = [dict(i) for i in items]
        if self.keyless_at == idx and items:
            del items[0]["id"]
        has_next = idx + 1 < self.pages
        body = {"data": items, "next": f"c{idx + 1}" if has_next and self.mode == "cursor" else None}
        headers = {}
        if self.mode == "link" and has_next:
            headers["Link"] = f'<{self.url}?pg={idx + 1}>; rel="next"'
        return 200, json.dumps(body).encode(), headers

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def upstreams():
    made: list[Upstream] = []

    def make(*args, **kw) -> Upstream:
        made.append(Upstream(*args, **kw))
        return made[-1]

    yield make
    for u in made:
        u.close()


FIELDS = {"id": "/id", "name": "/name", "score": "/score", "rank": "/rank", "city": "/place/city"}


def ingest_job(upstream: Upstream, dataset: str, **extra) -> dict:
    spec = {"kind": "http-ingest", "every": "1h", "url": upstream.url, "dataset": dataset, "key": "id",
            "items": "/data", "fields": FIELDS, "pagination": upstream.mode, "retries": 3, "backoff": "100ms",
            "request_timeout": "5s"}
    if upstream.mode == "offset":
        spec["page_size"] = upstream.page_size
    if upstream.mode == "cursor":
        spec["next_cursor"] = "/next"
    spec.update(extra)
    return spec


def mapped(item: dict) -> dict:
    """A row as FIELDS maps it (the dataset's preview shows it so)."""
    return {"id": item["id"], "name": item["name"], "score": item["score"], "rank": item["rank"],
            "city": item["place"]["city"]}


def check_ingested(srv, name: str, expected: dict[str, dict], to_row=mapped):
    """The dataset holds each expected row once: `rows`, the key's distinct count, the preview."""
    ds = dataset(srv, name)
    assert ds["format"] == "json", ds
    assert ds["rows"] == len(expected), f"{ds['rows']} rows, expected {len(expected)} (one per key)"
    assert len(expected) <= 50
    assert columns(ds)["id"]["distinct"] == len(expected) and columns(ds)["id"]["missing"] == 0, ds["columns"]
    first = [to_row(expected[k]) for k in sorted(expected)[:10]]
    assert ds["preview"] == first, f"preview {ds['preview']!r}\nexpected {first!r}"
    return ds


# =========================================================================== the schedule

def next_local(hour: int, minute: int, tz: str, t_ms: int) -> int:
    zone = zoneinfo.ZoneInfo(tz)
    now = datetime.fromtimestamp(t_ms / 1000, zone)
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at <= now:
        at = (now + timedelta(days=1)).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return int(at.timestamp() * 1000)


def test_config_jobs_fire_on_time_and_record_their_history(start_server, tmp_path):
    before = now_ms()
    srv = config_server(start_server, tmp_path, {
        "tick": {**TICK, "every": "1s"},
        "even-seconds": {**TICK, "cron": "*/2 * * * * *"},
        "nightly": {**TICK, "cron": "0 3 * * *", "timezone": "Europe/Paris"},
        "off": {**TICK, "every": "1s", "enabled": False},
    })
    after = now_ms()
    ticks = scheduled(srv, "tick", 4)
    evens = scheduled(srv, "even-seconds", 2)

    for run in ticks + evens:
        succeeded(run)
        late = run["started_at_ms"] - run["scheduled_for_ms"]
        assert 0 <= late <= 2000, f"a firing ran {late} ms after its time: {run}"
        assert run["items"] == 0 and run["finished_at_ms"] >= run["started_at_ms"], run
        assert run["owner"], run
    gaps = [b["scheduled_for_ms"] - a["scheduled_for_ms"] for a, b in zip(ticks, ticks[1:])]
    assert gaps and all(g == 1000 for g in gaps), f"`every = 1s` fired at gaps {gaps}"
    # every: t0 + k * every, t0 when the job was first stored (during start-up), first firing one interval later
    assert before + 1000 <= ticks[0]["scheduled_for_ms"] <= now_ms(), (before, ticks[0])
    assert all(r["scheduled_for_ms"] % 2000 == 0 for r in evens), [r["scheduled_for_ms"] for r in evens]

    tick = job(srv, "tick")
    assert set(tick) >= JOB_KEYS, JOB_KEYS - set(tick)
    assert (tick["kind"], tick["source"], tick["every"], tick["cron"]) == ("cleanup", "config", 1000, None)
    assert (tick["misfire_grace_ms"], tick["coalesce"], tick["timeout_ms"], tick["lease_ms"]) == \
        (60_000, True, 3_600_000, 30_000), tick
    assert tick["enabled"] is True and tick["paused"] is False
    assert tick["spec"] == {k: v for k, v in TICK.items() if k != "kind"}, tick["spec"]
    assert tick["next_run_at_ms"] > ticks[-1]["scheduled_for_ms"], tick
    assert tick["last_run"] is not None and tick["last_run"]["job"] == "tick"
    history = runs(srv, "tick")
    assert tick["last_run"]["id"] in [r["id"] for r in history], (tick["last_run"], history[:3])
    starts = [r["started_at_ms"] for r in history]
    assert starts == sorted(starts, reverse=True), "runs are listed newest first"
    assert len(runs(srv, "tick", limit=2)) == 2

    nightly = job(srv, "nightly")
    assert (nightly["cron"], nightly["timezone"], nightly["every"]) == ("0 3 * * *", "Europe/Paris", None)
    expected = {next_local(3, 0, "Europe/Paris", before), next_local(3, 0, "Europe/Paris", after)}
    assert nightly["next_run_at_ms"] in expected, (nightly["next_run_at_ms"], expected)
    assert job(srv, "even-seconds")["timezone"] == "UTC"

    off = job(srv, "off")
    assert off["enabled"] is False and off["next_run_at_ms"] is None, off
    assert runs(srv, "off") == [], "a disabled job fired on its own"
    manual = succeeded(run_and_wait(srv, "off"))
    assert manual["trigger"] == "manual", manual

    listed = ok(srv.get("/v1/jobs"))["jobs"]
    assert [j["name"] for j in listed] == ["even-seconds", "nightly", "off", "tick"]


def test_pause_stops_firings_and_resume_starts_over_from_now(start_server, tmp_path):
    srv = config_server(start_server, tmp_path, {"tick": {**TICK, "every": "1s"}})
    scheduled(srv, "tick", 1)
    paused = ok(srv.post("/v1/jobs/tick/pause"))
    paused_at = now_ms()
    assert paused["paused"] is True and paused["next_run_at_ms"] is None, paused
    time.sleep(3.2)
    assert job(srv, "tick")["paused"] is True
    resumed = ok(srv.post("/v1/jobs/tick/resume"))
    resumed_at = now_ms()
    assert resumed["paused"] is False and resumed["next_run_at_ms"] is not None, resumed
    assert resumed_at + 500 <= resumed["next_run_at_ms"] <= resumed_at + 1500, (resumed_at, resumed)
    wait_until(lambda: [r for r in runs(srv, "tick") if r["scheduled_for_ms"] and r["scheduled_for_ms"] > resumed_at
                        and r["state"] == "succeeded"], "a firing after resume")
    # nothing was run or recorded for the firings that fell while it was paused
    during = [r for r in runs(srv, "tick") if r["scheduled_for_ms"] and paused_at + 1000 < r["scheduled_for_ms"] < resumed_at]
    assert during == [], f"firings missed while paused were caught up: {during}"
    # a paused job still runs now
    ok(srv.post("/v1/jobs/tick/pause"))
    assert succeeded(run_and_wait(srv, "tick"))["trigger"] == "manual"
    assert job(srv, "tick")["paused"] is True


# =========================================================================== the API

def test_jobs_through_the_api_create_get_list_put_delete_run(start_server, tmp_path):
    srv = config_server(start_server, tmp_path, {"from-config": {**TICK, "every": "1h"}})
    before = now_ms()
    made = create(srv, name="hourly", **TICK, every="1h", misfire_grace="5m", coalesce=False, timeout="90s",
                  lease="6s")
    assert set(made) >= JOB_KEYS, JOB_KEYS - set(made)
    assert made["kind"] == "cleanup" and made["every"] == 3_600_000 and made["cron"] is None
    assert (made["misfire_grace_ms"], made["coalesce"], made["timeout_ms"], made["lease_ms"]) == \
        (300_000, False, 90_000, 6_000), made
    assert before + 3_600_000 <= made["next_run_at_ms"] <= now_ms() + 3_600_000, made
    assert made["running"] is None and made["last_run"] is None and made["paused"] is False
    assert made["spec"] == {k: v for k, v in TICK.items() if k != "kind"}, made["spec"]
    assert job(srv, "hourly") == made

    # numbers of seconds are durations too; a cron job in a time zone
    cron = create(srv, name="at-three", **TICK, cron="0 3 * * *", timezone="America/New_York", timeout=120)
    assert cron["timeout_ms"] == 120_000 and cron["timezone"] == "America/New_York" and cron["every"] is None
    assert cron["next_run_at_ms"] in {next_local(3, 0, "America/New_York", before),
                                      next_local(3, 0, "America/New_York", now_ms())}, cron

    assert_code(srv.post("/v1/jobs", json={"name": "hourly", **TICK, "every": "1h"}), 409, "job_exists")
    assert_code(srv.post("/v1/jobs", json={"name": "from-config", **TICK, "every": "1h"}), 409, "job_exists")
    assert [j["name"] for j in ok(srv.get("/v1/jobs"))["jobs"]] == ["at-three", "from-config", "hourly"]

    # PUT replaces an API job's schedule and fields; a changed schedule starts over from now
    changed_at = now_ms()
    put = ok(requests.put(f"{srv.url}/v1/jobs/hourly", json={**TICK, "match": "other-*", "every": "2h"}, timeout=30))
    assert put["every"] == 7_200_000 and put["spec"]["match"] == "other-*", put
    assert changed_at + 7_200_000 <= put["next_run_at_ms"] <= now_ms() + 7_200_000, put
    assert put["coalesce"] is True and put["lease_ms"] == 30_000, "PUT replaces the fields (defaults again)"
    assert job(srv, "hourly")["spec"]["match"] == "other-*"

    # config jobs: not changed or deleted through the API, but paused, resumed and run
    assert_code(requests.put(f"{srv.url}/v1/jobs/from-config", json={**TICK, "every": "2h"}, timeout=30),
                409, "job_from_config")
    assert_code(requests.delete(f"{srv.url}/v1/jobs/from-config", timeout=30), 409, "job_from_config")
    assert job(srv, "from-config")["every"] == 3_600_000
    assert ok(srv.post("/v1/jobs/from-config/pause"))["paused"] is True
    assert ok(srv.post("/v1/jobs/from-config/resume"))["paused"] is False
    succeeded(run_and_wait(srv, "from-config"))

    # run now, history, delete (the history goes too)
    first = succeeded(run_and_wait(srv, "hourly"))
    assert first["scheduled_for_ms"] is None or isinstance(first["scheduled_for_ms"], int)
    assert job(srv, "hourly")["last_run"]["id"] == first["id"]
    ok(requests.delete(f"{srv.url}/v1/jobs/hourly", timeout=30), 204)
    assert_code(srv.get("/v1/jobs/hourly"), 404, "job_not_found")
    assert_code(srv.get("/v1/jobs/hourly/runs"), 404, "job_not_found")
    create(srv, name="hourly", **TICK, every="1h")
    assert runs(srv, "hourly") == [], "a deleted job's history came back"

    # unknown jobs
    for method, path in [("GET", "/v1/jobs/nope"), ("PUT", "/v1/jobs/nope"), ("DELETE", "/v1/jobs/nope"),
                         ("POST", "/v1/jobs/nope/run"), ("POST", "/v1/jobs/nope/pause"),
                         ("POST", "/v1/jobs/nope/resume"), ("GET", "/v1/jobs/nope/runs")]:
        body = {**TICK, "every": "1h"} if method == "PUT" else None
        assert_code(requests.request(method, srv.url + path, json=body, timeout=30), 404, "job_not_found")


def test_run_now_while_a_run_is_in_progress_is_409_job_running(start_server, tmp_path, upstreams):
    upstream = upstreams(make_rows(12), page_size=4, fail_every=0)
    upstream.delay = 1.0
    srv = start_server(prepare=only_iris)
    create(srv, name="slow", **ingest_job(upstream, "slow-rows"))
    run = run_now(srv, "slow")
    assert_code(srv.post("/v1/jobs/slow/run"), 409, "job_running")
    running = job(srv, "slow")["running"]
    assert running is not None and running["id"] == run["id"] and running["state"] == "running", running
    done = succeeded(wait_run(srv, "slow", run["id"]))
    assert done["items"] == 12
    assert job(srv, "slow")["running"] is None


BAD_JOBS = [
    ("cron does not parse", {**TICK, "cron": "not a cron"}, ["cron"]),
    ("cron out of range", {**TICK, "cron": "61 * * * *"}, ["cron"]),
    ("every zero", {**TICK, "every": "0s"}, ["every"]),
    ("every under 100 ms", {**TICK, "every": "50ms"}, ["every"]),
    ("every and cron", {**TICK, "every": "1h", "cron": "0 3 * * *"}, ["every", "cron"]),
    ("neither every nor cron", {**TICK}, ["every", "cron"]),
    ("unknown time zone", {**TICK, "cron": "0 3 * * *", "timezone": "Mars/Olympus_Mons"}, ["Mars/Olympus_Mons"]),
    ("unknown kind", {**TICK, "kind": "send-email", "every": "1h"}, ["send-email"]),
    ("cleanup without older_than", {"kind": "cleanup", "target": "datasets", "every": "1h"}, ["older_than"]),
    ("http-ingest without key", {"kind": "http-ingest", "every": "1h", "url": "http://127.0.0.1:9/x",
                                 "dataset": "d"}, ["key"]),
    ("retrain without model", {"kind": "retrain", "every": "1h", "dataset": "iris", "target": "species",
                               "algorithm": "decision_tree"}, ["model"]),
    ("pipeline-batch without output", {"kind": "pipeline-batch", "every": "1h", "pipeline": "p",
                                       "dataset": "d"}, ["output"]),
    ("unknown field", {**TICK, "every": "1h", "colour": "blue"}, ["colour"]),
    ("bad duration", {**TICK, "every": "1h", "timeout": "soon"}, ["timeout"]),
    ("bad cleanup target", {**TICK, "every": "1h", "target": "everything"}, ["target"]),
]


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory):
    """A server with a config job `tick` firing every second (for the refusals)."""
    root = tmp_path_factory.mktemp("jobs-refusals")
    models = copy_models(root / "models")
    only_iris(models)
    data = root / "data"
    data.mkdir()
    cfg = write_config(root, {"tick": {**TICK, "every": "1s"}})
    srv = LecternServer(models, data, extra_args=["--config", str(cfg)])
    yield srv
    srv.cleanup()


@pytest.mark.parametrize("what, body, mentions", BAD_JOBS, ids=[b[0] for b in BAD_JOBS])
def test_a_bad_job_is_400_and_nothing_is_stored(busy_server, what, body, mentions):
    srv = busy_server
    assert_code(srv.post("/v1/jobs", json={"name": "bad", **body}), 400, "invalid_request", *mentions)
    assert_code(srv.get("/v1/jobs/bad"), 404, "job_not_found")
    # and as the replacement of an existing API job (PUT): refused, the job unchanged
    if "name-ok" not in [j["name"] for j in ok(srv.get("/v1/jobs"))["jobs"]]:
        create(srv, name="name-ok", **TICK, every="1h")
    assert_code(requests.put(f"{srv.url}/v1/jobs/name-ok", json=body, timeout=30), 400, "invalid_request", *mentions)
    assert job(srv, "name-ok")["every"] == 3_600_000


def test_bad_names_and_bodies_are_400(busy_server):
    srv = busy_server
    assert_code(srv.post("/v1/jobs", json={"name": ".hidden", **TICK, "every": "1h"}), 400, "invalid_request")
    assert_code(srv.post("/v1/jobs", json={**TICK, "every": "1h"}), 400, "invalid_request", "name")
    assert_code(srv.post("/v1/jobs", data=b"{not json", headers={"Content-Type": "application/json"}), 400,
                "invalid_request")
    assert_code(srv.get("/v1/jobs/tick/runs", params={"limit": "many"}), 400, "invalid_request")


def test_the_scheduler_kept_firing_through_the_refusals(busy_server):
    srv = busy_server
    mark = now_ms()
    wait_until(lambda: [r for r in runs(srv, "tick") if r["state"] == "succeeded" and r["started_at_ms"] > mark],
               "tick fires after the refusals")
    assert srv.is_running()
    assert "panic" not in srv.stderr_text().lower()


def test_jobs_need_a_trainer(start_server):
    srv = start_server(prepare=only_iris)
    admin = ok(srv.post("/v1/keys", json={"name": "admin", "role": "admin"}), 201)["key"]
    keys = {role: ok(srv.post("/v1/keys", json={"name": role, "role": role},
                              headers={"Authorization": f"Bearer {admin}"}), 201)["key"]
            for role in ("trainer", "client")}
    def call(method, path, key=None, **kw):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return requests.request(method, srv.url + path, headers=headers, timeout=30, **kw)
    assert_code(call("GET", "/v1/jobs"), 401, "unauthorized")
    assert_code(call("GET", "/v1/jobs", keys["client"]), 403, "forbidden")
    assert_code(call("POST", "/v1/jobs", keys["client"], json={"name": "j", **TICK, "every": "1h"}), 403, "forbidden")
    assert ok(call("POST", "/v1/jobs", keys["trainer"], json={"name": "j", **TICK, "every": "1h"}), 201)
    assert ok(call("GET", "/v1/jobs", keys["trainer"]))["jobs"][0]["name"] == "j"
    assert_code(call("POST", "/v1/jobs/j/run", keys["client"]), 403, "forbidden")
    assert ok(call("POST", "/v1/jobs/j/run", admin), 202)["state"] == "running"


# =========================================================================== config errors

CONFIG_ERRORS = [
    ("bad-cron", {**TICK, "cron": "every day at three"}, ["cron"]),
    ("zero-every", {**TICK, "every": 0}, ["every"]),
    ("bad-zone", {**TICK, "cron": "0 3 * * *", "timezone": "Europe/Atlantis"}, ["Europe/Atlantis"]),
    ("bad-kind", {**TICK, "kind": "mine-bitcoin", "every": "1h"}, ["mine-bitcoin"]),
    ("no-older-than", {"kind": "cleanup", "target": "datasets", "every": "1h"}, ["older_than"]),
    ("stray-field", {**TICK, "every": "1h", "colour": "blue"}, ["colour"]),
    ("no-schedule", {**TICK}, ["every"]),
]


@pytest.mark.parametrize("name, fields, mentions", CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_a_bad_config_job_stops_the_start_up_naming_the_job(server_state, name, fields, mentions):
    state = server_state(models=False)
    cfg = write_config(state.root, {"fine": {**TICK, "every": "1h"}, name: fields})
    proc = subprocess.run(
        [str(lectern_binary()), "serve", "--config", str(cfg), "--listen", "127.0.0.1:0", "--data",
         str(state.data_dir), *state.database.args()],
        cwd=str(state.data_dir), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("LECTERN_")})
    assert proc.returncode != 0, f"lectern started with a bad job {name}: {proc.stdout!r}"
    assert "listening" not in proc.stdout, proc.stdout
    assert name in proc.stderr, f"the start-up error does not name the job {name!r}:\n{proc.stderr[-2000:]}"
    for m in mentions:
        assert m.lower() in proc.stderr.lower(), f"the start-up error does not mention {m!r}:\n{proc.stderr[-2000:]}"
    assert "panicked" not in proc.stderr, proc.stderr[-2000:]


# =========================================================================== restarts

def restart_config(state, jobs: dict[str, dict], name: str = "lectern.toml") -> list:
    return ["--config", str(write_config(state.root, jobs, name))]


def finished_after(srv, name: str, after_ms: int) -> list[dict]:
    """The job's ended runs scheduled after `after_ms`, in the order of their firings."""
    return sorted((r for r in runs(srv, name) if (r["scheduled_for_ms"] or 0) > after_ms and r["state"] != "running"),
                  key=lambda r: r["scheduled_for_ms"])


def test_after_downtime_within_the_grace_one_catch_up_run(server_state):
    state = server_state(prepare=only_iris)
    args = restart_config(state, {"tick": {**TICK, "every": "2s", "misfire_grace": "30s"}})
    srv = state.start(extra_args=args)
    last = scheduled(srv, "tick", 1)[-1]
    srv.kill()
    grid = last["scheduled_for_ms"]
    # down across at least two firings
    wait_until(lambda: now_ms() > grid + 2 * 2000 + 700, "two firings pass", timeout=10, interval=0.05)
    restart_at = now_ms()
    srv = state.start(extra_args=args)
    after = wait_until(lambda: (runs_ := finished_after(srv, "tick", grid)) and len(runs_) >= 2 and runs_,
                       "the catch-up run and the next firing", timeout=20)
    catch_up, following = after[0], after[1]
    succeeded(catch_up)
    assert catch_up["started_at_ms"] >= restart_at, catch_up
    assert catch_up["scheduled_for_ms"] >= grid + 2 * 2000, (
        f"the missed firings collapse into the latest one (grid {grid}): {catch_up}")
    assert (catch_up["scheduled_for_ms"] - grid) % 2000 == 0, "a restart keeps the schedule's grid"
    assert not [r for r in after if r["state"] == "missed"], after
    # no other run for the firings it stands for; then the schedule goes on
    assert following["scheduled_for_ms"] == catch_up["scheduled_for_ms"] + 2000, (catch_up, following)
    succeeded(following)


def test_after_downtime_each_missed_firing_runs_when_not_coalesced(server_state):
    state = server_state(prepare=only_iris)
    args = restart_config(state, {"tick": {**TICK, "every": "1s", "misfire_grace": "30s", "coalesce": False}})
    srv = state.start(extra_args=args)
    last = scheduled(srv, "tick", 1)[-1]
    srv.kill()
    grid = last["scheduled_for_ms"]
    wait_until(lambda: now_ms() > grid + 3 * 1000 + 500, "three firings pass", timeout=10, interval=0.05)
    srv = state.start(extra_args=args)
    mark = now_ms()
    def caught_up():
        done = sorted((r for r in runs(srv, "tick") if r["scheduled_for_ms"] >= grid and r["state"] != "running"),
                      key=lambda r: r["scheduled_for_ms"])
        return done if done and done[-1]["scheduled_for_ms"] >= mark else None
    done = wait_until(caught_up, "the missed firings and one after the restart", timeout=20)
    times = [r["scheduled_for_ms"] for r in done]
    assert times == list(range(grid, times[-1] + 1, 1000)), f"each firing once, none missing: {times}"
    assert all(r["state"] == "succeeded" for r in done), done


def test_after_downtime_beyond_the_grace_no_run_but_a_missed_record(server_state):
    state = server_state(prepare=only_iris)
    args = restart_config(state, {"tick": {**TICK, "every": "5s", "misfire_grace": "1500ms"}})
    srv = state.start(extra_args=args)
    last = scheduled(srv, "tick", 1, timeout=15)[-1]
    srv.kill()
    grid = last["scheduled_for_ms"]
    # down across two firings; back 2.5 s after the latest (beyond its grace, 2.5 s before the next)
    wait_until(lambda: now_ms() > grid + 2 * 5000 + 2500, "two firings pass", timeout=20, interval=0.05)
    restart_at = now_ms()
    srv = state.start(extra_args=args)
    later = wait_until(lambda: [r for r in finished_after(srv, "tick", restart_at) if r["state"] == "succeeded"],
                       "a firing after the restart", timeout=20)
    down = [r for r in finished_after(srv, "tick", grid) if r["scheduled_for_ms"] < restart_at]
    assert not [r for r in down if r["state"] != "missed"], f"a firing beyond its grace ran after the restart: {down}"
    assert len(down) == 1, f"the missed firings are one `missed` record (coalesce = true): {down}"
    assert down[0]["scheduled_for_ms"] == grid + 2 * 5000, down
    assert isinstance(down[0]["error"], str) and down[0]["error"].strip(), down
    assert (later[0]["scheduled_for_ms"] - grid) % 5000 == 0, "a restart keeps the schedule's grid"


def test_a_restart_keeps_api_jobs_and_next_firings_and_drops_config_jobs_no_longer_in_the_file(server_state):
    state = server_state(prepare=only_iris)
    srv = state.start(extra_args=restart_config(state, {"kept": {**TICK, "every": "1h"},
                                                        "dropped": {**TICK, "every": "1h"}}))
    api = create(srv, name="from-api", **TICK, every="1h")
    kept = job(srv, "kept")
    ok(srv.post("/v1/jobs/from-api/pause"))
    srv.kill()
    srv = state.start(extra_args=restart_config(state, {"kept": {**TICK, "every": "1h"}}, "second.toml"))
    assert job(srv, "kept")["next_run_at_ms"] == kept["next_run_at_ms"], "the next firing of an unchanged schedule"
    again = job(srv, "from-api")
    assert again["source"] == "api" and again["paused"] is True and again["spec"] == api["spec"], again
    assert_code(srv.get("/v1/jobs/dropped"), 404, "job_not_found")
    srv.kill()
    # a changed schedule starts over from now
    changed_at = now_ms()
    srv = state.start(extra_args=restart_config(state, {"kept": {**TICK, "every": "2h"}}, "third.toml"))
    changed = job(srv, "kept")
    assert changed["every"] == 7_200_000 and changed["next_run_at_ms"] >= changed_at + 7_200_000, changed


def test_a_run_whose_server_was_killed_is_failed_once_its_lease_expired(server_state, upstreams):
    upstream = upstreams(make_rows(30), page_size=3, fail_every=0)
    upstream.delay = 1.0
    state = server_state(prepare=only_iris)
    args = restart_config(state, {"slow": ingest_job(upstream, "slow-rows", enabled=False, lease="2s")})
    srv = state.start(extra_args=args)
    run = run_now(srv, "slow")
    wait_until(lambda: upstream.asked(200), "the run fetched a page", timeout=10)
    srv.kill()
    upstream.delay = 0.0
    srv = state.start(extra_args=args)
    failed = wait_until(lambda: (r := find_run(srv, "slow", run["id"])) and r["state"] == "failed" and r,
                        "the killed run is marked failed", timeout=15)
    assert LEASE_EXPIRED in failed["error"], failed
    assert job(srv, "slow")["running"] is None
    # the job runs again (and resumes where the killed run stopped)
    succeeded(run_and_wait(srv, "slow"))
    assert dataset(srv, "slow-rows")["rows"] == 30


# =========================================================================== several processes

def pg_pair(tmp_path: Path, jobs: dict[str, dict]):
    """Two servers on one fresh PostgreSQL database, each with its own --data and models."""
    db = TestDatabase("postgres")
    cfg = write_config(tmp_path, jobs)
    servers = []
    try:
        for name in ("a", "b"):
            models = copy_models(tmp_path / f"models-{name}")
            only_iris(models)
            data = tmp_path / f"data-{name}"
            data.mkdir()
            servers.append(LecternServer(models, data, extra_args=["--config", str(cfg)], database=db))
    except BaseException:
        for s in servers:
            s.cleanup()
        db.drop()
        raise
    return db, servers


def test_two_processes_on_one_postgresql_run_each_firing_exactly_once(tmp_path):
    db, (a, b) = pg_pair(tmp_path, {"tick": {**TICK, "every": "1s", "coalesce": False, "misfire_grace": "30s"}})
    try:
        done = scheduled(a, "tick", 25, timeout=45)
        history = runs(b, "tick")
        finished = [r for r in history if r["trigger"] == "schedule" and r["state"] != "running"]
        times = sorted(r["scheduled_for_ms"] for r in finished)
        assert len(times) == len(set(times)), f"a firing ran twice: {sorted(t for t in times if times.count(t) > 1)}"
        assert times == list(range(times[0], times[-1] + 1, 1000)), f"a firing is missing between first and last: {times}"
        assert all(r["state"] == "succeeded" for r in finished), [r for r in finished if r["state"] != "succeeded"]
        assert len(done) >= 25
        owners = {r["owner"] for r in finished}
        print(f"owners of the {len(finished)} runs: {sorted(owners)}")
    finally:
        a.cleanup()
        b.cleanup()
        db.drop()


def test_kill_9_mid_run_fails_the_run_after_its_lease_and_the_other_process_runs_the_next_firing(tmp_path, upstreams):
    upstream = upstreams(make_rows(30), page_size=3, fail_every=0)
    db, (a, b) = pg_pair(tmp_path, {})
    try:
        create(a, name="slow", **ingest_job(upstream, "slow-rows", every="5s", lease="2s"))
        upstream.delay = 1.0
        run = run_now(a, "slow")
        wait_until(lambda: upstream.asked(200), "the run fetched a page", timeout=10)
        assert job(b, "slow")["running"]["id"] == run["id"]
        a.kill()
        killed_at = now_ms()
        upstream.delay = 0.0
        failed = wait_until(lambda: (r := find_run(b, "slow", run["id"])) and r["state"] == "failed" and r,
                            "the killed run is marked failed by the other process", timeout=15)
        assert LEASE_EXPIRED in failed["error"], failed
        noticed = failed["finished_at_ms"] - killed_at
        assert noticed <= 2000 + 1000 + 2500, f"the run was marked failed {noticed} ms after the kill (lease 2 s)"
        nxt = wait_until(lambda: [r for r in runs(b, "slow") if r["trigger"] == "schedule" and r["state"] == "succeeded"
                                  and r["started_at_ms"] > killed_at], "the next firing runs on the other process",
                         timeout=20)
        assert nxt[-1]["owner"] != run["owner"], (run, nxt[-1])
        assert dataset(b, "slow-rows")["rows"] == 30
    finally:
        a.cleanup()
        b.cleanup()
        db.drop()


# =========================================================================== timeouts and failures

def test_a_run_over_its_timeout_is_failed_and_the_others_keep_firing(start_server, tmp_path, upstreams):
    upstream = upstreams(make_rows(30), page_size=3, fail_every=0)
    upstream.delay = 1.0
    srv = config_server(start_server, tmp_path, {
        "slow": ingest_job(upstream, "slow-rows", enabled=False, timeout="2s"),
        "tick": {**TICK, "every": "1s"},
    })
    run = run_now(srv, "slow")
    failed = wait_run(srv, "slow", run["id"], timeout=15)
    assert failed["state"] == "failed" and "timed out" in failed["error"], failed
    took = failed["finished_at_ms"] - failed["started_at_ms"]
    assert 1500 <= took <= 5000, f"a 2 s timeout stopped the run after {took} ms"
    assert job(srv, "slow")["running"] is None
    mark = failed["finished_at_ms"]
    wait_until(lambda: [r for r in runs(srv, "tick") if r["state"] == "succeeded" and r["started_at_ms"] > mark],
               "tick fires after the timeout")


# =========================================================================== http-ingest

@pytest.mark.parametrize("mode", ["page", "offset", "cursor", "link"])
def test_ingest_pages_through_each_pagination_and_stores_every_row_once(start_server, upstreams, mode):
    upstream = upstreams(make_rows(22), page_size=4, mode=mode, fail_every=3)
    srv = start_server(prepare=only_iris)
    create(srv, name="ingest", **ingest_job(upstream, "records"))
    run = succeeded(run_and_wait(srv, "ingest"))
    expected = upstream.expected()
    assert len(expected) == 22
    assert run["items"] == 22, f"22 rows inserted (duplicates across pages are no change): {run}"
    assert run["detail"], run
    check_ingested(srv, "records", expected)
    ds = dataset(srv, "records")
    assert set(columns(ds)) == set(FIELDS), ds["columns"]
    assert columns(ds)["score"]["type"] == "number" and columns(ds)["rank"]["type"] == "integer", ds["columns"]
    # the pages failing once were asked again (retries), and each page came in
    failing = [i for i in range(upstream.pages) if (i + 1) % 3 == 0]
    assert sorted(upstream.asked(500)) == failing, upstream.asked()
    for i in range(upstream.pages):
        assert upstream.asked(200).count(i) >= 1, f"page {i} was never fetched: {upstream.asked()}"

    # a second run: the changed row wins, unchanged rows count nothing
    upstream.rows[1] = {**upstream.rows[1], "name": "renamed"}
    upstream.failed_once.clear()
    again = succeeded(run_and_wait(srv, "ingest"))
    assert again["items"] == 1, f"one row changed: {again}"
    check_ingested(srv, "records", upstream.expected())
    assert dataset(srv, "records")["preview"][1]["name"] == "renamed"


def test_ingest_default_fields_and_nested_values_as_json_text(start_server, upstreams):
    upstream = upstreams(make_rows(9), page_size=5, fail_every=0)
    srv = start_server(prepare=only_iris)
    spec = ingest_job(upstream, "plain")
    del spec["fields"]
    create(srv, name="plain", **spec)
    succeeded(run_and_wait(srv, "plain"))
    ds = dataset(srv, "plain")
    assert set(columns(ds)) == {"id", "name", "score", "rank"}, "default: the item's top-level scalars"
    assert ds["rows"] == 9
    create(srv, name="nested", **ingest_job(upstream, "nested", fields={"id": "/id", "place": "/place", "tags": "/tags"}))
    succeeded(run_and_wait(srv, "nested"))
    first = dataset(srv, "nested")["preview"][0]
    assert json.loads(first["place"]) == upstream.rows[0]["place"], first
    assert json.loads(first["tags"]) == upstream.rows[0]["tags"], first


def test_a_failed_ingest_resumes_from_the_last_good_page(start_server, upstreams):
    upstream = upstreams(make_rows(22), page_size=4, fail_every=3)
    upstream.down_from = 3
    srv = start_server(prepare=only_iris)
    create(srv, name="ingest", **ingest_job(upstream, "records", retries=1))
    failed = wait_run(srv, "ingest", run_now(srv, "ingest")["id"])
    assert failed["state"] == "failed", failed
    assert failed["items"] == 3 * 4, f"three good pages were stored: {failed}"
    assert set(upstream.asked(200)) == {0, 1, 2}, upstream.asked()

    upstream.down_from = None
    upstream.clear()
    resumed = succeeded(run_and_wait(srv, "ingest"))
    asked = upstream.asked()
    assert min(asked) == 3, f"the pages stored before the failure were asked again: {asked}"
    assert resumed["items"] == 22 - 12, resumed
    check_ingested(srv, "records", upstream.expected())


def test_secret_headers_reach_the_upstream_only(start_server, upstreams):
    upstream = upstreams(make_rows(6), page_size=4, fail_every=0)
    srv = start_server(prepare=only_iris, env={"PORTAL_TOKEN": SECRET}, extra_args=["--log", "debug"])
    create(srv, name="secret", **ingest_job(upstream, "secret-rows", headers={"Accept": "application/json"},
                                             secret_headers={"Authorization": "PORTAL_TOKEN"}))
    succeeded(run_and_wait(srv, "secret"))
    with upstream.lock:
        seen = [r["headers"] for r in upstream.requests]
    seen = [{k.lower(): v for k, v in h.items()} for h in seen]
    assert seen and all(h.get("authorization") == SECRET for h in seen), seen
    assert all(h.get("accept") == "application/json" for h in seen), seen
    shown = job(srv, "secret")
    assert shown["spec"]["secret_headers"] == {"Authorization": "PORTAL_TOKEN"}, shown["spec"]
    for text in (srv.get("/v1/jobs").text, srv.get("/v1/jobs/secret").text, srv.get("/v1/jobs/secret/runs").text,
                 srv.get("/v1/audit").text, srv.stderr_text()):
        assert SECRET not in text and "s3cret-portal" not in text, "the secret header value leaked"


@pytest.mark.parametrize("fault", ["garbage", "keyless", "too-big", "unreachable"])
def test_a_bad_upstream_fails_the_run_and_the_scheduler_goes_on(start_server, tmp_path, upstreams, fault):
    upstream = upstreams(make_rows(12), page_size=4, fail_every=0)
    extra = {"retries": 0}
    if fault == "garbage":
        upstream.garbage_at = 1
    elif fault == "keyless":
        upstream.keyless_at = 1
    elif fault == "too-big":
        upstream.rows[5] = {**upstream.rows[5], "name": "x" * 20_000}
        extra["max_page_bytes"] = 4096
    spec = ingest_job(upstream, "records", enabled=False, **extra)
    if fault == "unreachable":
        upstream.close()
    srv = config_server(start_server, tmp_path, {"ingest": spec, "tick": {**TICK, "every": "1s"}})
    failed = wait_run(srv, "ingest", run_now(srv, "ingest")["id"])
    assert failed["state"] == "failed", failed
    if fault in ("garbage", "keyless"):
        assert "page" in failed["error"].lower(), f"the error names the page: {failed}"
    if fault == "keyless":
        assert "id" in failed["error"], failed
    mark = failed["finished_at_ms"]
    wait_until(lambda: [r for r in runs(srv, "tick") if r["state"] == "succeeded" and r["started_at_ms"] > mark],
               "tick fires after the failed run")
    assert srv.is_running()


# =========================================================================== cleanup

def cleanup_job(srv, name: str, **spec) -> dict:
    return create(srv, name=name, kind="cleanup", every="1h", **spec)


def test_cleanup_of_datasets_with_a_dry_run_first(start_server):
    srv = start_server(prepare=only_iris)
    for name in ("kids-ann-cats", "kids-bob-dogs", "keep-me"):
        upload_csv(srv, name, "a,b\n1,x\n2,y\n")
    # The new data set must stay younger than older_than until the wet run: a margin of seconds
    # for a busy machine (under a load of 16 the runs took over 2 s).
    time.sleep(8.2)
    upload_csv(srv, "kids-cy-new", "a,b\n1,x\n2,y\n")
    cleanup_job(srv, "dry", target="datasets", match="kids-*", older_than="8s", dry_run=True)
    dry = succeeded(run_and_wait(srv, "dry"))
    assert dry["items"] == 2, dry
    names = {d["name"] for d in ok(srv.get("/v1/datasets"))["datasets"]}
    assert names == {"kids-ann-cats", "kids-bob-dogs", "keep-me", "kids-cy-new"}, "a dry run deleted something"

    cleanup_job(srv, "wet", target="datasets", match="kids-*", older_than="8s")
    wet = succeeded(run_and_wait(srv, "wet"))
    assert wet["items"] == 2 and "kids-ann-cats" in wet["detail"], wet
    names = {d["name"] for d in ok(srv.get("/v1/datasets"))["datasets"]}
    assert names == {"keep-me", "kids-cy-new"}, names
    assert_code(srv.get("/v1/datasets/kids-bob-dogs"), 404, "dataset_not_found")


def test_cleanup_of_versions_keeps_the_default_and_the_last(start_server):
    srv = start_server(prepare=only_iris)
    iris = (Path(srv.models_dir) / "iris-logreg" / "1" / "model.onnx").read_bytes()
    ok(srv.post("/v1/models", json={"name": "old-model"}), 201)
    for _ in range(4):
        ok(srv.post("/v1/models/old-model/versions", data=iris, headers={"Content-Type": "application/octet-stream"}), 201)
    ok(requests.put(f"{srv.url}/v1/models/old-model/default", json={"version": 2}, timeout=30))
    time.sleep(2.2)
    cleanup_job(srv, "versions", target="versions", match="old-*", older_than="2s")
    run = succeeded(run_and_wait(srv, "versions"))
    assert run["items"] == 2, run
    versions = [v["version"] for v in ok(srv.get("/v1/models/old-model"))["versions"]]
    assert versions == [2, 4], f"the default (2) and the last (4) stay: {versions}"
    # iris-logreg (not matched) keeps both of its versions
    assert [v["version"] for v in ok(srv.get("/v1/models/iris-logreg"))["versions"]] == [1, 2]


def test_cleanup_of_training_jobs_and_job_runs(start_server):
    srv = start_server(prepare=only_iris)
    client = Lectern(srv)
    client.upload_ok("iris", iris_csv(), status=201)
    for _ in range(2):
        client.train(dataset="iris", target="species", model="tree-a", algorithm="decision_tree", params={"max_depth": 2})
    create(srv, name="tick", **TICK, every="200ms")
    wait_until(lambda: len(runs(srv, "tick")) >= 3, "tick ran thrice", timeout=90)
    ok(srv.post("/v1/jobs/tick/pause"))
    time.sleep(1.2)
    ticked = len(runs(srv, "tick"))

    cleanup_job(srv, "old-training", target="training_jobs", match="tree-*", older_than="1s")
    run = succeeded(run_and_wait(srv, "old-training"))
    assert run["items"] == 2, run
    assert client.jobs(model="tree-a") == []
    assert [v["version"] for v in client.versions("tree-a")] == [1, 2], "the models they made stay"

    cleanup_job(srv, "old-runs-dry", target="job_runs", older_than="1s", dry_run=True)
    dry = succeeded(run_and_wait(srv, "old-runs-dry"))
    assert dry["items"] >= ticked, dry
    assert len(runs(srv, "tick")) == ticked
    cleanup_job(srv, "old-runs", target="job_runs", older_than="1s")
    wet = succeeded(run_and_wait(srv, "old-runs"))
    assert wet["items"] >= ticked, wet
    assert runs(srv, "tick") == [], "finished runs older than the cut are gone"


def test_cleanup_of_dataset_rows_deletes_rows_not_upserted_since_the_cut(start_server, upstreams):
    upstream = upstreams(make_rows(10), page_size=5, fail_every=0)
    srv = start_server(prepare=only_iris)
    create(srv, name="ingest", **ingest_job(upstream, "records"))
    succeeded(run_and_wait(srv, "ingest"))
    time.sleep(2.2)
    # the upstream now has r006..r015, r006..r010 changed: r001..r005 were not upserted since
    newer = make_rows(15)[5:]
    upstream.rows = [{**r, "name": r["name"] + " v2"} for r in newer]
    succeeded(run_and_wait(srv, "ingest"))
    assert dataset(srv, "records")["rows"] == 15
    cleanup_job(srv, "prune", target="dataset_rows", dataset="records", older_than="2s")
    run = succeeded(run_and_wait(srv, "prune"))
    assert run["items"] == 5, run
    ds = dataset(srv, "records")   # republished
    assert ds["rows"] == 10 and ds["preview"][0]["id"] == "r006", ds


# =========================================================================== retrain

RETRAIN = {"kind": "retrain", "every": "1h", "dataset": "iris", "target": "species", "algorithm": "decision_tree",
           "params": {"max_depth": 3}, "seed": 7}


def training_job_of(srv, run: dict, model: str) -> dict:
    jobs = Lectern(srv).jobs(model=model)
    assert jobs, f"no training job for {model}"
    newest = jobs[0]
    assert newest["id"] in (run["detail"] or ""), f"the run's detail names its training job: {run}"
    return newest


def test_retrain_registers_only_when_the_metric_qualifies(start_server):
    srv = start_server(prepare=only_iris)
    client = Lectern(srv)
    client.upload_ok("iris", iris_csv(), status=201)

    create(srv, name="too-demanding", **RETRAIN, model="iris-retrain", min_metric=1.01)
    run = succeeded(run_and_wait(srv, "too-demanding", timeout=120))
    assert run["items"] == 0, run
    tj = training_job_of(srv, run, "iris-retrain")
    assert tj["state"] == "succeeded" and tj["version"] is None, tj
    assert isinstance(tj["error"], str) and "1.01" in tj["error"], f"the error says why: {tj}"
    assert client.versions("iris-retrain") == []

    create(srv, name="fair", **RETRAIN, model="iris-retrain", min_metric=0.5)
    run = succeeded(run_and_wait(srv, "fair", timeout=120))
    assert run["items"] == 1, run
    tj = training_job_of(srv, run, "iris-retrain")
    assert tj["state"] == "succeeded" and tj["version"] == 1 and tj["metrics"]["accuracy"] >= 0.5, tj
    ok(requests.put(f"{srv.url}/v1/models/iris-retrain/default", json={"version": 1}, timeout=30))

    # a stump does worse than the default (a depth-3 tree): not registered with beat_default
    create(srv, name="worse", **{**RETRAIN, "params": {"max_depth": 1}}, model="iris-retrain", min_metric=0.0,
           beat_default=True)
    run = succeeded(run_and_wait(srv, "worse", timeout=120))
    tj = training_job_of(srv, run, "iris-retrain")
    assert run["items"] == 0 and tj["version"] is None and tj["error"], (run, tj)
    assert [v["version"] for v in client.versions("iris-retrain")] == [1]


def test_register_if_on_a_training_request(start_server):
    srv = start_server(prepare=only_iris)
    client = Lectern(srv)
    client.upload_ok("iris", iris_csv(), status=201)
    request = dict(dataset="iris", target="species", model="iris-gated", algorithm="decision_tree", seed=7)
    refused_job = client.train(**request, register_if={"min_metric": 1.01})
    assert refused_job["version"] is None and "1.01" in refused_job["error"], refused_job
    assert client.versions("iris-gated") == []
    accepted = client.train(**request, register_if={"min_metric": 0.5, "beat_default": True})
    assert accepted["version"] == 1 and accepted["error"] is None, accepted
    assert_error(client.submit(**request, register_if={"min_metric": "high"}), 400, "min_metric")


# =========================================================================== pipeline-batch

SPECIES_PIPELINE = b'''steps = [
  { id = "flower", model = "iris-logreg", inputs = ["sepal_length", "sepal_width", "petal_length", "petal_width"] },
]
shape = { species = "flower.label", probability = "flower.probability" }
'''
FLOWERS = [
    {"name": "f1", "sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"name": "f2", "sepal_length": 7.0, "sepal_width": 3.2, "petal_length": 4.7, "petal_width": 1.4},
    {"name": "f3", "sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5},
    {"name": "f4", "sepal_length": 4.9, "sepal_width": 3.0, "petal_length": 1.4, "petal_width": None},
    {"name": "f5", "sepal_length": 5.8, "sepal_width": 2.7, "petal_length": 5.1, "petal_width": 1.9},
    {"name": "f6", "sepal_length": 5.7, "sepal_width": 2.8, "petal_length": 4.1, "petal_width": 1.3},
]


def test_pipeline_batch_runs_a_pipeline_over_a_dataset_into_another(start_server):
    srv = start_server(prepare=only_iris)
    ok(requests.put(f"{srv.url}/v1/pipelines/species", data=SPECIES_PIPELINE, timeout=30))
    upload_json(srv, "flowers", FLOWERS)
    create(srv, name="classify", kind="pipeline-batch", every="1h", pipeline="species", dataset="flowers",
           output="flowers-species", concurrency=2)
    run = succeeded(run_and_wait(srv, "classify"))
    assert run["items"] == 6, run

    out = dataset(srv, "flowers-species")
    assert out["rows"] == 6 and out["format"] == "json", out
    names = [c["name"] for c in out["columns"]]
    assert names[:5] == list(FLOWERS[0]), f"the input row's columns come first: {names}"
    assert {"species", "probability", "error"} <= set(names), names
    by_name = {r["name"]: r for r in out["preview"]}
    for flower in FLOWERS:
        row = by_name[flower["name"]]
        if flower["petal_width"] is None:
            assert isinstance(row["error"], str) and row["error"], f"the refused row carries its error: {row}"
            assert row["species"] is None, row
            continue
        body = {k: v for k, v in flower.items()}
        direct = ok(srv.post("/v1/pipelines/species", json=body))
        assert row["species"] == direct["species"], (row, direct)
        assert row["probability"] == pytest.approx(direct["probability"], abs=1e-6), (row, direct)
        assert row["error"] is None, row
    assert by_name["f1"]["species"] == "setosa"


def test_pipeline_batch_where_every_row_fails_is_failed(start_server):
    srv = start_server(prepare=only_iris)
    ok(requests.put(f"{srv.url}/v1/pipelines/species", data=SPECIES_PIPELINE, timeout=30))
    upload_json(srv, "wrong-columns", [{"a": 1, "b": 2}, {"a": 3, "b": 4}])
    create(srv, name="hopeless", kind="pipeline-batch", every="1h", pipeline="species", dataset="wrong-columns",
           output="nothing")
    run = wait_run(srv, "hopeless", run_now(srv, "hopeless")["id"])
    assert run["state"] == "failed", run
    # an unknown pipeline or dataset fails the run too, and nothing stops
    create(srv, name="no-pipeline", kind="pipeline-batch", every="1h", pipeline="nope", dataset="wrong-columns",
           output="nothing")
    assert wait_run(srv, "no-pipeline", run_now(srv, "no-pipeline")["id"])["state"] == "failed"
    assert srv.is_running()


# =========================================================================== the CLI

def test_the_job_commands(start_server, tmp_path):
    srv = config_server(start_server, tmp_path, {
        "tick": {**TICK, "every": "1h"},
        "broken": {"kind": "http-ingest", "every": "1h", "url": "http://127.0.0.1:9/nothing", "dataset": "d",
                   "key": "id", "retries": 0, "request_timeout": "2s"},
    })
    listed = succeeded_cli(cli("job", "list", url=srv.url)).stdout
    assert "tick" in listed and "broken" in listed, listed
    as_json = json.loads(succeeded_cli(cli("job", "list", "--json", url=srv.url)).stdout)
    assert [j["name"] for j in as_json["jobs"]] == ["broken", "tick"], as_json
    shown = json.loads(succeeded_cli(cli("job", "show", "tick", "--json", url=srv.url)).stdout)
    assert shown["name"] == "tick" and shown["kind"] == "cleanup", shown
    assert "tick" in succeeded_cli(cli("job", "show", "tick", url=srv.url)).stdout

    succeeded_cli(cli("job", "run", "tick", "--wait", url=srv.url, timeout=60))
    history = json.loads(succeeded_cli(cli("job", "history", "tick", "--limit", "1", "--json", url=srv.url)).stdout)
    assert len(history["runs"]) == 1 and history["runs"][0]["state"] == "succeeded", history
    assert history["runs"][0]["trigger"] == "manual"
    assert "succeeded" in succeeded_cli(cli("job", "history", "tick", url=srv.url)).stdout

    failed = cli("job", "run", "broken", "--wait", url=srv.url, timeout=60)
    assert failed.returncode == 1, f"a failed run exits 1: {failed.returncode}\n{failed.stdout}\n{failed.stderr}"
    assert runs(srv, "broken")[0]["state"] == "failed"

    succeeded_cli(cli("job", "pause", "tick", url=srv.url))
    assert job(srv, "tick")["paused"] is True
    succeeded_cli(cli("job", "resume", "tick", url=srv.url))
    assert job(srv, "tick")["paused"] is False
    refused(cli("job", "show", "nope", url=srv.url), 404)
    refused(cli("job", "run", "nope", url=srv.url), 404)
    usage = cli("job", "run", url=srv.url)
    assert usage.returncode == 2, usage.stderr
