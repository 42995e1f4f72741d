"""End-to-end test of examples/ml-for-kids, its start (docs/contract.md: "Authentication and access
control", "Scheduled jobs" (cleanup), "Caching proxy").

The example's `lectern.toml`, copied, with three changes for the test: the OIDC issuer is the
local one of test_access.py (given as flags, which win over the file), the proxy's URL points at
`third_party.py` on a free port, and the cleanup's `older_than` is 3 s instead of 30 days.
Checked:
- children sign in with bearer tokens; without one nothing is created (401);
- a child's project is a dataset `kids-<user>-<project>` recorded as made by `jwt:<user>`;
- the hourly cleanup job is as the file says (next run on the hour) and, run now, deletes the
  expired projects only (not a fresh one, not a teacher's dataset);
- a proxied call reaches the third-party API with its key, which never reaches the child (the
  answer) or the logs; the second call is a cache hit.
Runs on SQLite and on PostgreSQL (LECTERN_TEST_DATABASE).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
import requests

from lectern_checks import ok, wait_until
from lectern_v2 import REPO_ROOT
from test_access import Issuer

KIDS = REPO_ROOT / "examples" / "ml-for-kids"
AUDIENCE = "ml-for-kids"
KEY = "words-key-4d2a9c81e7"
JOB = "expire-projects"
PETS = "name,legs,sound\ncat,4,meow\ndog,4,woof\nhen,2,cluck\n"


class ThirdParty:
    """examples/ml-for-kids/third_party.py, run as the README says, on a free port."""

    def __init__(self):
        env = {**os.environ, "WORDS_API_KEY": KEY}
        self.proc = subprocess.Popen([sys.executable, str(KIDS / "third_party.py"), "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                                     stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().strip()
        assert line.startswith("third-party API listening on http://127.0.0.1:"), line
        self.url = line.rsplit(" ", 1)[1]  # http://127.0.0.1:PORT/v1/

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def kids(tmp_path, start_config_server):
    issuer = Issuer()
    third = ThirdParty()
    try:
        folder = shutil.copytree(KIDS, tmp_path / "ml-for-kids", ignore=shutil.ignore_patterns("__pycache__"))
        config = folder / "lectern.toml"
        text = config.read_text()
        for old in ('url = "http://127.0.0.1:9100/v1/"', 'older_than = "30d"'):
            assert old in text, old
        text = text.replace('url = "http://127.0.0.1:9100/v1/"', f'url = "{third.url}"')
        text = text.replace('older_than = "30d"', 'older_than = "3s"')
        config.write_text(text)
        srv = start_config_server(config, extra_args=["--oidc-issuer", issuer.url, "--oidc-audience", AUDIENCE,
                                                      "--log", "debug"],
                                  env={"WORDS_API_KEY": KEY})
        yield srv, issuer, third
    finally:
        third.stop()
        issuer.close()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def child(issuer: Issuer, name: str) -> dict:
    return bearer(issuer.token("trainer", sub=name, aud=AUDIENCE))


def create_project(srv, headers: dict, name: str) -> dict:
    resp = srv.post(f"/v1/datasets/{name}", data=PETS.encode(), headers={**headers, "Content-Type": "text/csv"})
    assert resp.status_code == 201, f"{name}: {resp.status_code} {resp.text[:300]}"
    return resp.json()


def datasets(srv, headers: dict) -> set[str]:
    return {d["name"] for d in ok(srv.get("/v1/datasets", headers=headers))["datasets"]}


def test_children_sign_in_make_projects_that_expire_and_call_the_third_party_api_without_its_key(kids):
    srv, issuer, third = kids
    alice, bob = child(issuer, "alice"), child(issuer, "bob")
    teacher = bearer(issuer.token("admin", sub="ms-okafor", aud=AUDIENCE))

    # sign-in: no token, or a token for another audience, creates nothing
    resp = srv.post("/v1/datasets/kids-mallory-x", data=PETS.encode(), headers={"Content-Type": "text/csv"})
    assert resp.status_code == 401, resp.text
    other = bearer(issuer.token("trainer", sub="mallory", aud="another-app"))
    assert srv.post("/v1/datasets/kids-mallory-x", data=PETS.encode(), headers=other).status_code == 401

    # projects per child
    pets = create_project(srv, alice, "kids-alice-pets")
    assert pets["rows"] == 3 and pets["created_by"] == "jwt:alice", pets
    assert create_project(srv, bob, "kids-bob-weather")["created_by"] == "jwt:bob"
    assert create_project(srv, teacher, "class-3b-roster")["created_by"] == "jwt:ms-okafor"

    # the hourly cleanup, as the file says
    job = ok(srv.get(f"/v1/jobs/{JOB}", headers=teacher))
    assert (job["kind"], job["source"], job["cron"], job["timezone"]) == ("cleanup", "config", "0 * * * *", "UTC"), job
    assert job["spec"]["target"] == "datasets" and job["spec"]["match"] == "kids-*", job["spec"]
    hour = 3_600_000
    now = int(time.time() * 1000)
    assert job["next_run_at_ms"] % hour == 0 and now < job["next_run_at_ms"] <= now + hour, job

    # alice's and bob's first projects expire (older than 3 s); a new one does not
    time.sleep(3.5)
    create_project(srv, alice, "kids-alice-robots")
    run = ok(srv.post(f"/v1/jobs/{JOB}/run", headers=teacher), 202)

    def ended():
        found = [r for r in ok(srv.get(f"/v1/jobs/{JOB}/runs", headers=teacher))["runs"] if r["id"] == run["id"]]
        return found[0] if found and found[0]["state"] != "running" else None
    done = wait_until(ended, "the cleanup run ends", timeout=30, interval=0.1)
    assert done["state"] == "succeeded" and done["items"] == 2, done
    assert "kids-alice-pets" in done["detail"] and "kids-bob-weather" in done["detail"], done
    assert datasets(srv, teacher) == {"class-3b-roster", "kids-alice-robots"}
    gone = srv.get("/v1/datasets/kids-alice-pets", headers=alice)
    assert gone.status_code == 404 and gone.json()["code"] == "dataset_not_found", gone.text

    # the third-party API through Lectern: the key is added on the server
    assert requests.get(third.url + "words/elephant", timeout=10).status_code == 401, "the API wants its key"
    assert srv.get("/proxy/words/words/elephant").status_code == 401, "the proxy needs a signed-in child"
    first = srv.get("/proxy/words/words/elephant", headers=alice)
    assert first.status_code == 200, first.text
    assert first.json() == {"word": "elephant", "letters": 8, "vowels": 3, "syllables": 3, "first_letter": "e",
                            "rhymes": []}, first.json()
    assert first.headers.get("x-lectern-cache") == "miss", dict(first.headers)
    second = srv.get("/proxy/words/words/elephant", headers=bob)
    assert second.status_code == 200 and second.json() == first.json()
    assert second.headers.get("x-lectern-cache") == "hit", dict(second.headers)
    rhymes = ok(srv.get("/proxy/words/words/cat", headers=alice))
    assert rhymes["rhymes"] == ["bat", "hat"], rhymes
    for resp in (first, second):
        assert KEY not in resp.text and not any(KEY in v for v in resp.headers.values()), dict(resp.headers)
        assert "x-api-key" not in {k.lower() for k in resp.headers}
    assert KEY not in srv.stderr_text(), "the third-party key is in Lectern's log"
    # a path out of the base URL is refused, never forwarded
    escape = srv.get("/proxy/words/..%2Fhealth", headers=alice)
    assert escape.status_code == 400, escape.text
