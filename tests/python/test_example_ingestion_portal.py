"""End-to-end test of examples/ingestion-portal (docs/contract.md, "Scheduled jobs", http-ingest).

The example's own steps, as its README gives them: `upstream.py` (the portal stand-in, here
failing every third page once, with an API token) and `lectern serve --config lectern.toml`
(the job's URL pointed at the stand-in's port; the token in PORTAL_TOKEN). Rather than wait for
03:00, the test runs the job now (`POST /v1/jobs/nightly-assessments/run`), then again with
`lectern job run --wait`, and checks against the contract:
- the job is as the file says (config, cron in Europe/Paris, next run the next 03:00 there);
- every assessment is in the dataset once, with the portal's values (the expected rows are read
  from the stand-in directly, never from the answer under test); the retried pages came in;
- a second run with nothing changed on the portal changes nothing (`items` 0);
- the token reaches the portal but not the job's view, the history or the logs.
Runs on SQLite and on PostgreSQL (LECTERN_TEST_DATABASE), like the other tests touching the store.
"""
from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
import time
import zoneinfo
from datetime import datetime, timedelta

import pytest
import requests

from lectern_checks import ok, wait_until
from lectern_v2 import REPO_ROOT
from test_cli import cli

PORTAL = REPO_ROOT / "examples" / "ingestion-portal"
JOB = "nightly-assessments"
TOKEN = "Bearer portal-test-token-93c1d7"
COLUMNS = {"id": "text", "student": "text", "class": "category", "subject": "category", "skill": "category",
           "score": "integer", "max_score": "integer", "assessed_on": "text", "teacher": "category"}


class Upstream:
    """examples/ingestion-portal/upstream.py, run as the README says, on a free port."""

    def __init__(self, *args: str):
        env = {**os.environ, "PORTAL_TOKEN": TOKEN}
        self.proc = subprocess.Popen([sys.executable, str(PORTAL / "upstream.py"), "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().strip()
        assert line.startswith("upstream listening on http://127.0.0.1:"), (line, self.proc.stderr.read())
        self.url = line.rsplit(" ", 1)[1]          # .../api/assessments
        self.origin = self.url.split("/api/")[0]

    def records(self) -> list[dict]:
        """Every assessment, page by page, straight from the stand-in."""
        out, page = [], 1
        while True:
            for _ in range(3):  # --fail-every answers 503 once
                r = requests.get(self.url, params={"page": page}, headers={"Authorization": TOKEN}, timeout=10)
                if r.status_code != 503:
                    break
            data = ok(r)["data"]
            if not data:
                return out
            out += data
            page += 1

    def log(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def portal(tmp_path, start_config_server):
    upstream = Upstream("--fail-every", "3")
    try:
        folder = shutil.copytree(PORTAL, tmp_path / "ingestion-portal", ignore=shutil.ignore_patterns("__pycache__"))
        config = folder / "lectern.toml"
        text = config.read_text()
        assert "http://127.0.0.1:9000/api/assessments" in text
        config.write_text(text.replace("http://127.0.0.1:9000/api/assessments", upstream.url))
        started_at = int(time.time() * 1000)
        srv = start_config_server(config, extra_args=["--log", "debug"], env={"PORTAL_TOKEN": TOKEN})
        yield srv, upstream, started_at
    finally:
        upstream.stop()


def next_three_am_paris(t_ms: int) -> int:
    zone = zoneinfo.ZoneInfo("Europe/Paris")
    now = datetime.fromtimestamp(t_ms / 1000, zone)
    at = now.replace(hour=3, minute=0, second=0, microsecond=0)
    if at <= now:
        at = (now + timedelta(days=1)).replace(hour=3, minute=0, second=0, microsecond=0)
    return int(at.timestamp() * 1000)


def run_to_end(srv, timeout: float = 60) -> dict:
    run = ok(srv.post(f"/v1/jobs/{JOB}/run"), 202)
    assert run["state"] == "running" and run["trigger"] == "manual", run

    def ended():
        found = [r for r in ok(srv.get(f"/v1/jobs/{JOB}/runs"))["runs"] if r["id"] == run["id"]]
        return found[0] if found and found[0]["state"] != "running" else None
    return wait_until(ended, "the nightly job's run ends", timeout=timeout, interval=0.1)


def as_row(record: dict) -> dict:
    return {"id": record["id"], "student": record["student"]["id"], "class": record["student"]["class"],
            "subject": record["subject"], "skill": record["skill"], "score": record["score"],
            "max_score": record["max_score"], "assessed_on": record["assessed_on"],
            "teacher": record["teacher"]["name"]}


def test_the_nightly_ingest_fills_the_dataset_once_per_assessment_and_keeps_the_token_secret(portal):
    srv, upstream, started_at = portal
    job = ok(srv.get(f"/v1/jobs/{JOB}"))
    assert (job["kind"], job["source"], job["cron"], job["timezone"], job["every"]) == \
        ("http-ingest", "config", "0 3 * * *", "Europe/Paris", None), job
    assert job["misfire_grace_ms"] == 6 * 3600 * 1000 and job["coalesce"] is True and job["timeout_ms"] == 1_800_000
    assert job["enabled"] is True and job["paused"] is False
    assert job["next_run_at_ms"] in {next_three_am_paris(started_at), next_three_am_paris(int(time.time() * 1000))}
    assert job["spec"]["secret_headers"] == {"Authorization": "PORTAL_TOKEN"}, job["spec"]
    assert job["spec"]["dataset"] == "assessments" and job["spec"]["key"] == "id"

    run = run_to_end(srv)
    assert run["state"] == "succeeded", f"the ingest failed: {run}"

    records = upstream.records()
    assert len(records) == 347 and len({r["id"] for r in records}) == 347
    assert run["items"] == 347, run
    dataset = ok(srv.get("/v1/datasets/assessments"))
    assert dataset["rows"] == 347 and dataset["format"] == "json", dataset
    columns = {c["name"]: c for c in dataset["columns"]}
    assert {name: c["type"] for name, c in columns.items()} == COLUMNS, dataset["columns"]
    rows = [as_row(r) for r in records]
    for name in ("class", "subject", "skill", "teacher"):
        assert columns[name]["distinct"] == len({r[name] for r in rows}), (name, columns[name])
        assert columns[name]["missing"] == 0
    assert columns["id"]["distinct"] == 51, "more than 50 distinct ids"
    assert dataset["preview"] == sorted(rows, key=lambda r: r["id"])[:10], dataset["preview"]

    # nothing changed on the portal: the second run (through the CLI) changes nothing
    proc = cli("job", "run", JOB, "--wait", url=srv.url, timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    history = json.loads(cli("job", "history", JOB, "--json", url=srv.url).stdout)["runs"]
    assert [r["state"] for r in history[:2]] == ["succeeded", "succeeded"], history
    assert history[0]["items"] == 0, history[0]
    assert ok(srv.get("/v1/datasets/assessments"))["rows"] == 347

    # the token went to the portal (it answers 401 without it) and nowhere else
    assert requests.get(upstream.url, timeout=10).status_code == 401
    for text in (srv.get("/v1/jobs").text, srv.get(f"/v1/jobs/{JOB}/runs").text, srv.stderr_text()):
        assert TOKEN not in text and "portal-test-token" not in text, "the portal's token leaked"
    log = upstream.log()
    assert '" 503 ' in log, f"the stand-in failed no page (--fail-every 3): {log[-2000:]}"


def test_the_dashboard_shows_the_ingested_table_with_a_filter_and_its_two_charts(portal):
    srv, upstream, _ = portal
    page = f"{srv.url}/ui/datasets/assessments"
    before = requests.get(page, timeout=10)
    assert before.status_code == 404 and 'class="error"' in before.text, before.text[:500]

    assert run_to_end(srv)["state"] == "succeeded"
    rows = [as_row(r) for r in upstream.records()]
    shown = requests.get(page, timeout=10)
    assert shown.status_code == 200, shown.text[:500]
    assert re.search(r'id="count">\s*347 of 347 rows', shown.text), shown.text[:2000]
    assert 'id="updated"' in shown.text
    titles = re.findall(r'<svg class="chart"[^>]*>\s*<title[^>]*>([^<]*)</title>', shown.text)
    assert titles == ["subject", "score"], f"the two charts of lectern.toml, in order: {titles}"

    klass = sorted({r["class"] for r in rows})[1]
    wanted = [r for r in rows if klass.lower() in r["class"].lower()]
    filtered = requests.get(page, params={"column": "class", "contains": klass}, timeout=10)
    assert filtered.status_code == 200
    assert re.search(rf'id="count">\s*{len(wanted)} of 347 rows', filtered.text), filtered.text[:2000]
    # the subject chart counts only the matching rows
    subject_chart = re.findall(r'<svg class="chart".*?</svg>', filtered.text, re.S)[0]
    bar_counts = [int(n) for n in re.findall(r'<title>[^<]*?: (\d+)</title>', subject_chart)]
    assert sum(bar_counts) == len(wanted), (bar_counts, len(wanted), subject_chart[:1500])
