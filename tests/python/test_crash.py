"""Kill -9 in the middle of changes: every change the server acknowledged (answered 2xx) is
there after a restart on the same `--data` and database, and nothing half-written is served.

Each round starts a server on the same state, runs clients that upload versions (good and
corrupt files), change the config and the default version, and create models, all at once;
kills the server with SIGKILL once it has acknowledged a random number of changes in the round
(not after a fixed sleep, which a slow machine would turn into a kill before anything happened);
restarts it; and checks:
- every acknowledged upload is listed under its number with the sha256 of the bytes sent (and
  the audit log has its entry); every listed version is one that some client sent;
- the config and default version are the last acknowledged ones, or the one in flight;
- every acknowledged model creation is there;
- every version is loadable (READY, and answers with its own file's outputs) or UNAVAILABLE
  with a reason, and only the corrupt uploads are UNAVAILABLE: no artifact is half-written.
While the server runs, every change gets its 2xx (no 5xx: the contract allows no 500, and none
of these changes is a client mistake), and no request fails to connect: only the kill may cut a
request off.
Run on SQLite and on PostgreSQL (LECTERN_TEST_DATABASE=postgres).
"""
from __future__ import annotations

import hashlib
import random
import threading

import numpy as np
import requests

from conftest import EXAMPLE_MODELS
from lectern_checks import ok, wait_until
from lectern_v2 import iris_x, json_input, model_file, ort_reference, parse_infer_response

ROUNDS = 3
MODEL = "crash"
GOOD = {name: model_file(EXAMPLE_MODELS, "iris-logreg", v).read_bytes() for name, v in (("v1", 1), ("v2", 2))}
ROWS = iris_x()[[0, 50, 100, 120]]
OPS_PER_THREAD = 400   # bound per client per round (the kill comes long before)
# The kill comes once the round has this many acknowledged changes (drawn per round), and at
# least one upload and one model creation.
KILL_AFTER_ACKS = (12, 60)
ACK_TIMEOUT_S = 120.0


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


GOOD_SHAS = {sha256(b): name for name, b in GOOD.items()}
REFS = {sha256(b): ort_reference(model_file(EXAMPLE_MODELS, "iris-logreg", int(name[1])), {"X": ROWS})
        for name, b in GOOD.items()}


class Ledger:
    """What the clients sent and what the server acknowledged, across rounds."""

    def __init__(self):
        self.lock = threading.Lock()
        self.uploads: dict[int, str] = {}     # acknowledged: version -> sha256
        self.sent_shas: set[str] = set()      # every upload sent, acknowledged or not
        self.models_acked: set[str] = set()
        self.models_sent: set[str] = set()
        # config and default: the last acknowledged value, and the one in flight (if any)
        self.config_acked: dict | None = {}
        self.config_in_flight: list[dict] = []
        self.default_acked: int | None = None
        self.default_in_flight: list[int | None] = []
        self.config_changes = 0
        self.counter = 0
        self.acks = 0                   # changes acknowledged (2xx), every kind
        self.wrong_answers: list = []   # acknowledged uploads whose answer names other bytes

    def ack(self):
        """Counts one acknowledged change (call with `lock` held)."""
        self.acks += 1

    def progress(self) -> tuple[int, int, int]:
        """(acknowledged changes, uploads, models) so far."""
        with self.lock:
            return self.acks, len(self.uploads), len(self.models_acked)

    def next(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter


def client(url: str, kind: str, ledger: Ledger, rng: random.Random, round_no: int, errors: list,
           killed: threading.Event):
    """Sends changes of one kind, one after another, until the server dies. A change refused
    with an error status is not acknowledged: it is noted in `errors` (it may or may not have
    been applied, so it stays among the values allowed afterwards) and the client goes on. A
    request that fails to connect or is cut off ends the client; unless `killed` was set before,
    the server was still running, which is noted in `errors` too (status None)."""
    s = requests.Session()
    try:
        for _ in range(OPS_PER_THREAD):
            n = ledger.next()
            if kind == "upload":
                pick = rng.random()
                if pick < 0.4:
                    data = GOOD["v1"]
                elif pick < 0.8:
                    data = GOOD["v2"]
                else:
                    data = f"corrupt upload {n} ".encode() * rng.randint(1, 64)
                sha = sha256(data)
                with ledger.lock:
                    ledger.sent_shas.add(sha)
                r = s.post(f"{url}/v1/models/{MODEL}/versions", data=data, timeout=30)
                if r.status_code != 201:
                    errors.append(("upload", r.status_code, r.text[:300]))
                    continue
                v = r.json()["version"]
                if v["sha256"] != sha or v["size"] != len(data):
                    ledger.wrong_answers.append((v, sha, len(data)))
                with ledger.lock:
                    ledger.uploads[v["version"]] = sha
                    ledger.ack()
            elif kind == "config":
                if n % 2:
                    config = {"queue_capacity": 1000 + n}
                    with ledger.lock:
                        ledger.config_in_flight.append(config)
                    r = s.put(f"{url}/v1/models/{MODEL}/config", json={"config": config}, timeout=30)
                    if r.status_code != 200:
                        errors.append(("config", r.status_code, r.text[:300]))
                        continue
                    with ledger.lock:
                        ledger.config_acked, ledger.config_in_flight = config, []
                        ledger.config_changes += 1
                        ledger.ack()
                else:
                    with ledger.lock:
                        choices = sorted(v for v, sha in ledger.uploads.items() if sha in GOOD_SHAS)
                    version = rng.choice(choices + [None])
                    with ledger.lock:
                        ledger.default_in_flight.append(version)
                    r = s.put(f"{url}/v1/models/{MODEL}/default", json={"version": version}, timeout=30)
                    if r.status_code != 200:
                        errors.append((f"default {version}", r.status_code, r.text[:300]))
                        continue
                    with ledger.lock:
                        ledger.default_acked, ledger.default_in_flight = version, []
                        ledger.ack()
            elif kind == "create":
                name = f"crash-r{round_no}-{n}"
                with ledger.lock:
                    ledger.models_sent.add(name)
                r = s.post(f"{url}/v1/models", json={"name": name, "labels": ["a", "b", "c"]}, timeout=30)
                if r.status_code != 201:
                    errors.append(("create", r.status_code, r.text[:300]))
                    continue
                with ledger.lock:
                    ledger.models_acked.add(name)
                    ledger.ack()
    except requests.RequestException as e:
        if not killed.is_set():
            errors.append((kind, None, f"the request failed while the server was running: {e!r}"))
        return
    finally:
        s.close()


def call(srv, method, path, expect=200, **kw):
    return ok(requests.request(method, srv.url + path, timeout=60, **kw), expect)


def infer_version(srv, version=None):
    path = f"/v2/models/{MODEL}" + (f"/versions/{version}" if version is not None else "") + "/infer"
    r = requests.post(srv.url + path, json={"inputs": [json_input("X", ROWS, "FP32")]}, timeout=60)
    assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:300]}"
    return parse_infer_response(r)


def assert_outputs_of(sha: str, outputs, what: str):
    ref = REFS[sha]
    assert np.allclose(outputs["output_probability"], ref["output_probability"], rtol=0, atol=1e-5), (
        f"{what}: the outputs are not those of the file uploaded as it (sha256 {sha[:12]})")


def verify(srv, ledger: Ledger, verified: dict[int, str], round_no: int):
    """Checks the restarted server against the ledger; returns nothing, asserts everything."""
    view = call(srv, "GET", f"/v1/models/{MODEL}")
    listed = {v["version"]: v for v in view["versions"]}

    # acknowledged uploads are all there, with the bytes that were sent
    missing = sorted(set(ledger.uploads) - set(listed))
    assert not missing, f"round {round_no}: acknowledged versions {missing} are gone after kill -9"
    for number, sha in ledger.uploads.items():
        assert listed[number]["sha256"] == sha, (number, listed[number], sha)
    strangers = {n: v["sha256"] for n, v in listed.items() if v["sha256"] not in ledger.sent_shas}
    assert not strangers, f"versions whose bytes no client sent: {strangers}"
    for number, sha in verified.items():
        assert listed[number]["sha256"] == sha, (number, listed[number], sha)

    # config and default version: the last acknowledged, or the one in flight
    allowed_configs = [ledger.config_acked] + ledger.config_in_flight
    assert view["config"] in allowed_configs, (
        f"round {round_no}: config {view['config']} is neither the last acknowledged nor the one in flight: "
        f"{allowed_configs}")
    allowed_defaults = [ledger.default_acked] + ledger.default_in_flight
    assert view["default_version"] in allowed_defaults, (view["default_version"], allowed_defaults)

    # models created
    names = {m["name"] for m in call(srv, "GET", "/v1/models")["models"]}
    assert ledger.models_acked <= names, f"acknowledged models gone: {sorted(ledger.models_acked - names)}"
    assert {n for n in names if n.startswith("crash-")} <= ledger.models_sent

    # the audit log has every acknowledged change
    audit = call(srv, "GET", "/v1/audit", params={"limit": 100000})["entries"]
    creates = {e["detail"] for e in audit if e["action"] == "version.create" and e["target"] == MODEL}
    for number, sha in ledger.uploads.items():
        assert f"version {number} sha256 {sha}" in creates, f"no audit entry for version {number}"
    model_creates = {e["target"] for e in audit if e["action"] == "model.create"}
    assert ledger.models_acked <= model_creates
    configs = sum(1 for e in audit if e["action"] == "model.config" and e["target"] == MODEL)
    assert configs >= ledger.config_changes, (configs, ledger.config_changes)

    # what serves right after the restart is a whole, good file
    header, outputs = infer_version(srv)
    served = int(header["model_version"])
    assert listed[served]["sha256"] in GOOD_SHAS, f"version {served} serves, but its bytes are not a good model"
    assert_outputs_of(listed[served]["sha256"], outputs, f"version {served}")

    # every version not checked yet: load it. READY ones answer with their own file's outputs;
    # UNAVAILABLE ones have a reason and are exactly the corrupt uploads.
    new = sorted(set(listed) - set(verified))
    if new:
        config = {"versions": new, "instances": 1}
        call(srv, "PUT", f"/v1/models/{MODEL}/config", json={"config": config})
        ledger.config_acked, ledger.config_changes = config, ledger.config_changes + 1
        states = {v["version"]: v for v in call(srv, "GET", f"/v1/models/{MODEL}")["versions"]}
        good = []
        for number in new:
            v = states[number]
            is_good = v["sha256"] in GOOD_SHAS
            if is_good:
                assert v["state"] == "READY", f"version {number} holds a good upload but is {v['state']}: {v['reason']}"
                good.append(number)
            else:
                assert v["state"] == "UNAVAILABLE" and v["reason"].strip(), f"corrupt version {number}: {v}"
        if good:
            config = {"versions": good, "instances": 1}
            call(srv, "PUT", f"/v1/models/{MODEL}/config", json={"config": config})
            ledger.config_acked, ledger.config_changes = config, ledger.config_changes + 1
            for number in good:
                header, outputs = infer_version(srv, number)
                assert int(header["model_version"]) == number
                assert_outputs_of(states[number]["sha256"], outputs, f"version {number}")
        for number in new:
            verified[number] = listed[number]["sha256"]
        # back to the default policy for the next round
        call(srv, "PUT", f"/v1/models/{MODEL}/config", json={"config": {}})
        ledger.config_acked, ledger.config_changes = {}, ledger.config_changes + 1


def test_acknowledged_changes_survive_kill_9_and_nothing_half_written_is_served(server_state):
    state = server_state(models=False)
    ledger = Ledger()
    rng = random.Random(20261123)
    srv = state.start()
    call(srv, "POST", "/v1/models", expect=201, json={"name": MODEL})
    ok(requests.post(f"{srv.url}/v1/models/{MODEL}/versions", data=GOOD["v1"], timeout=60), 201)
    ledger.uploads[1] = sha256(GOOD["v1"])
    ledger.sent_shas.add(sha256(GOOD["v1"]))
    verified: dict[int, str] = {}
    summary = []

    for round_no in range(1, ROUNDS + 1):
        errors: list = []
        killed = threading.Event()
        before = (len(ledger.uploads), len(ledger.models_acked), ledger.config_changes)
        acks_before, uploads_before, models_before = ledger.progress()
        kill_after = rng.randint(*KILL_AFTER_ACKS)
        kinds = ["upload", "upload", "config", "create"]
        threads = [threading.Thread(target=client, args=(srv.url, kind, ledger, random.Random(rng.random()),
                                                          round_no, errors, killed), daemon=True) for kind in kinds]
        for t in threads:
            t.start()

        def enough_acknowledged():
            acks, uploads, models = ledger.progress()
            return (acks - acks_before >= kill_after and uploads > uploads_before and models > models_before) \
                or bool(errors)  # refused or cut off: fails below, no need to wait

        wait_until(enough_acknowledged, f"round {round_no}: {kill_after} acknowledged changes (with an upload and "
                   f"a model creation) before the kill; {ledger.progress()} then, refusals {errors[:3]}",
                   timeout=ACK_TIMEOUT_S, interval=0.002)
        assert srv.is_running(), f"round {round_no}: the server died before the kill: {srv.stderr_text()[-3000:]}"
        killed.set()
        srv.kill()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a client hung after the kill"
        # Every change sent to the running server was acknowledged: none of them is a client
        # mistake, and no request gets a 5xx (docs/contract.md: no request produces a 500).
        assert not errors, f"round {round_no}: changes refused or cut off while the server ran: {errors[:5]}"
        assert not ledger.wrong_answers, f"uploads answered with another sha256 or size: {ledger.wrong_answers[:3]}"
        after = (len(ledger.uploads), len(ledger.models_acked), ledger.config_changes)
        assert after[0] > before[0] and after[1] > before[1], (
            f"round {round_no}: too few changes were acknowledged before the kill to test anything: {before} -> {after}")
        summary.append(tuple(a - b for a, b in zip(after, before)))

        srv = state.start()
        verify(srv, ledger, verified, round_no)

    print(f"kill -9: {ROUNDS} rounds, acknowledged (uploads, models, config changes) per round: {summary}; "
          f"{len(verified)} versions checked")
