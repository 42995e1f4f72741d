"""Training jobs over their life (docs/contract.md, "Training (issue 11)"): cancelling a running
or a queued job, the bounded queue, a server killed while a job runs (the job is failed at the
next start, a queued one is run, everything that succeeded survives), and who may do what
(client, trainer, admin keys). Run on SQLite and on PostgreSQL (LECTERN_TEST_DATABASE=postgres).

The long job is a random forest of 1000 trees on a generated data set of 50,000 rows and 20
columns: it runs for minutes, so it is reliably `running` when it is cancelled or the server is
killed. The training processes of a server are found by their working directory (the fixtures
start each server in its `--data` folder, and a child inherits it): none may outlive its job.
"""
from __future__ import annotations

import os
import signal
import time
import uuid

import numpy as np
import pytest
import requests

from conftest import LecternServer, copy_models
from lectern_checks import ok, wait_until
from lectern_training import (IRIS_CLASSES, SERVER_STOPPED, TERMINAL, Lectern, assert_code, big_csv,
                              check_classification_metrics, check_progression, iris_csv, iris_x32, parse_svg,
                              process_line, processes_in)

LONG = dict(dataset="big", target="label", algorithm="random_forest", params={"n_trees": 1000},
            test_fraction=0.25, seed=0)
QUICK = dict(dataset="iris", target="species", algorithm="decision_tree", params={"max_depth": 2})
RUNNING_TIMEOUT_S = 60.0


def start_long(client: Lectern, model: str) -> dict:
    """Submits the long job and waits until it is `running`; returns that answer."""
    job = client.submit_ok(**LONG, model=model)
    running = client.wait_job(job["id"], timeout=RUNNING_TIMEOUT_S, until=("running",) + TERMINAL)
    assert running["state"] == "running", f"the long job ended before it could be stopped: {running}"
    return running


def no_training_process(srv: LecternServer):
    """Fails unless the server has no process but itself within 10 s (a killed job's process is gone)."""
    wait_until(lambda: not processes_in(srv.data_dir, exclude=(srv.proc.pid,)),
               "the training process ends with its job", timeout=10, interval=0.1)


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    """A server with `big` (the long job's data) and `iris` uploaded."""
    root = tmp_path_factory.mktemp("training-jobs")
    models = copy_models(root / "models")
    data = root / "data"
    data.mkdir()
    srv = LecternServer(models, data)
    try:
        client = Lectern(srv)
        client.upload_ok("big", big_csv(), status=201)
        client.upload_ok("iris", iris_csv(), status=201)
        yield client
    finally:
        srv.cleanup()


# =========================================================================== cancelling

def test_cancelling_a_running_job_ends_it_at_once_and_registers_nothing(busy):
    client = busy
    seen = [client.submit_ok(**LONG, model="long-cancelled")]
    job_id = seen[0]["id"]
    running = client.wait_job(job_id, timeout=RUNNING_TIMEOUT_S, until=("running",) + TERMINAL, seen=seen)
    assert running["state"] == "running", running
    started = time.monotonic()
    resp = client.cancel(job_id)
    took = time.monotonic() - started
    cancelled = ok(resp)
    assert took < 5, f"DELETE of a running job took {took:.1f} s"
    assert cancelled["id"] == job_id and cancelled["state"] == "cancelled", cancelled
    assert cancelled["stage"] == "done", cancelled
    assert isinstance(cancelled["error"], str) and cancelled["error"].strip(), cancelled
    assert cancelled.get("version") is None and cancelled.get("metrics") is None, cancelled
    seen.append(cancelled)
    check_progression(seen)

    time.sleep(2)   # the killed process must not finish or register anything afterwards
    assert client.job(job_id)["state"] == "cancelled"
    assert client.versions("long-cancelled") == []
    assert_code(client.picture(job_id, "tree"), 404, "picture_not_found")
    assert_code(client.cancel(job_id), 409, "job_finished")
    assert client.job(job_id)["state"] == "cancelled"
    no_training_process(client.srv)

    # the worker is free again: the next job runs
    quick = client.train(**QUICK, model="after-cancel")
    assert quick["version"] == 1


def test_cancelling_or_reading_an_unknown_job_is_404(busy):
    unknown = uuid.uuid4().hex
    assert_code(busy.cancel(unknown), 404, "job_not_found")
    assert_code(busy.call("GET", f"/v1/training-jobs/{unknown}"), 404, "job_not_found")


def test_a_cancelled_queued_job_never_runs(busy):
    client = busy
    blocker = start_long(client, "long-blocker")
    queued = client.submit_ok(**QUICK, model="never-trained")
    try:
        assert client.job(queued["id"])["state"] == "queued"
        cancelled = ok(client.cancel(queued["id"]))
        assert cancelled["state"] == "cancelled" and cancelled["stage"] == "done", cancelled
        assert cancelled.get("started_at_ms") is None, cancelled
    finally:
        client.cancel(blocker["id"])
    assert client.job(blocker["id"])["state"] == "cancelled"
    # with the worker free, the cancelled job still does not run
    after = client.train(**QUICK, model="after-queued-cancel")
    assert after["state"] == "succeeded"
    assert client.job(queued["id"])["state"] == "cancelled"
    assert client.versions("never-trained") == []
    assert_code(client.cancel(queued["id"]), 409, "job_finished")


def test_at_most_100_jobs_wait_then_503_queue_full(busy):
    client = busy
    blocker = start_long(client, "long-queue")
    waiting: list[str] = []
    try:
        for _ in range(100):
            waiting.append(client.submit_ok(**QUICK, model="queued")["id"])
        resp = client.submit(**QUICK, model="queued-over")
        assert_code(resp, 503, "queue_full")
        assert resp.headers.get("Retry-After") == "1", dict(resp.headers)
        assert client.jobs(model="queued-over") == []
        assert len(client.jobs(model="queued", limit=1000)) == 100
    finally:
        for job_id in reversed(waiting):
            client.cancel(job_id)
        client.cancel(blocker["id"])
    states = {j["state"] for j in client.jobs(model="queued", limit=1000)}
    assert states == {"cancelled"}, states


# =========================================================================== restart

def test_a_job_running_when_the_server_is_killed_is_failed_at_the_next_start_and_the_rest_survives(server_state):
    state = server_state()
    srv = state.start()
    client = Lectern(srv)
    iris = client.upload_ok("iris", iris_csv(), status=201)
    done = client.train(**QUICK, model="survivor", seed=2)
    pictures = list(done["pictures"])
    assert pictures, done
    served = client.infer("survivor", iris_x32())
    client.upload_ok("big", big_csv(), status=201)
    long = start_long(client, "long-killed")
    queued = client.submit_ok(**QUICK, model="after-restart")
    assert client.job(queued["id"])["state"] == "queued"

    srv.kill()
    # no training process may outlive the server (it would train on, unseen)
    deadline = time.monotonic() + 10
    while processes_in(state.data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    orphans = {pid: process_line(pid) for pid in processes_in(state.data_dir)}
    for pid in orphans:   # started by the server this test started: end them before going on
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

    srv = state.start()
    client = Lectern(srv)
    failed = client.job(long["id"])
    assert failed["state"] == "failed", failed
    assert isinstance(failed["error"], str) and SERVER_STOPPED.search(failed["error"]), failed
    assert failed["stage"] == "done", failed
    assert client.versions("long-killed") == []
    assert_code(client.cancel(long["id"]), 409, "job_finished")

    # what had succeeded is all there
    assert client.job(done["id"]) == done
    for picture in pictures:
        parse_svg(client.picture(done["id"], picture))
    again = client.infer("survivor", iris_x32())
    assert again["output_label"].tolist() == served["output_label"].tolist()
    np.testing.assert_allclose(again["output_probability"], served["output_probability"], atol=1e-6)
    shown = ok(client.dataset("iris"))
    assert {k: v for k, v in shown.items() if k != "preview"} == {k: v for k, v in iris.items() if k != "preview"}
    assert ok(client.dataset("big"))["rows"] == 50_000

    # the job that was still queued is run
    after = client.wait_job(queued["id"])
    assert after["state"] == "succeeded", after
    assert after["version"] == 1
    check_classification_metrics(after, IRIS_CLASSES)
    assert client.infer("after-restart", iris_x32()[:3])["output_label"].shape == (3,)

    assert not orphans, f"training processes outlived the killed server: {orphans}"


# =========================================================================== roles

def make_key(url: str, role: str, admin_key: str | None) -> tuple[str, str]:
    headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
    resp = requests.post(url + "/v1/keys", json={"name": f"training-{role}", "role": role}, headers=headers,
                         timeout=30)
    body = ok(resp, 201)
    return body["key"], body["id"]


def test_clients_read_datasets_and_jobs_and_only_trainers_change_them(start_server):
    srv = start_server()
    admin_key, _ = make_key(srv.url, "admin", None)   # the first key turns the checks on
    trainer_key, trainer_id = make_key(srv.url, "trainer", admin_key)
    client_key, _ = make_key(srv.url, "client", admin_key)
    nobody, admin = Lectern(srv), Lectern(srv, admin_key)
    trainer, client = Lectern(srv, trainer_key), Lectern(srv, client_key)

    # a trainer uploads and trains, as themself
    ds = trainer.upload_ok("iris", iris_csv(), status=201)
    assert ds["created_by"] == f"key:{trainer_id}", ds

    # a client may not change anything, and a refusal changes nothing
    assert_code(client.upload("iris-by-client", iris_csv()), 403, "forbidden")
    assert_code(trainer.dataset("iris-by-client"), 404, "dataset_not_found")
    assert_code(client.call("DELETE", "/v1/datasets/iris"), 403, "forbidden")
    assert ok(trainer.dataset("iris"))["sha256"] == ds["sha256"]
    assert_code(client.submit(**QUICK, model="by-client"), 403, "forbidden")
    assert trainer.jobs() == []

    job = trainer.submit_ok(**QUICK, model="iris-roles")
    assert job["created_by"] == f"key:{trainer_id}", job

    # a client reads datasets, jobs and pictures, and infers
    assert [d["name"] for d in client.datasets()] == ["iris"]
    assert ok(client.dataset("iris"))["rows"] == 150
    final = client.wait_job(job["id"])
    assert final["state"] == "succeeded", final
    assert [j["id"] for j in client.jobs()] == [job["id"]]
    parse_svg(client.picture(job["id"], "tree"))
    assert client.infer("iris-roles", iris_x32()[:4])["output_label"].shape == (4,)
    assert_code(client.cancel(job["id"]), 403, "forbidden")
    assert_code(client.artifact("iris-roles", 1), 403, "forbidden")
    assert trainer.artifact("iris-roles", 1).status_code == 200

    # no credential: 401
    for method, path in (("GET", "/v1/datasets"), ("GET", "/v1/datasets/iris"), ("GET", "/v1/training-jobs"),
                         ("GET", f"/v1/training-jobs/{job['id']}"), ("POST", "/v1/datasets/anonymous")):
        assert_code(nobody.call(method, path, data=b"a,b\n1,2\n" if method == "POST" else None), 401,
                    "unauthorized")
    assert_code(trainer.dataset("anonymous"), 404, "dataset_not_found")

    # an admin may do what a trainer does; a trainer deletes
    assert admin.upload_ok("iris-admin", iris_csv(), status=201)["created_by"].startswith("key:")
    assert trainer.call("DELETE", "/v1/datasets/iris-admin").status_code == 204

    # the version was registered by the trainer's key
    entries = ok(admin.call("GET", "/v1/audit", params={"limit": 10000}))["entries"]
    creates = [e for e in entries if e["action"] == "version.create" and e["target"] == "iris-roles"]
    assert [e["actor"] for e in creates] == [f"key:{trainer_id}"], creates
