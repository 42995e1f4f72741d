"""Helpers of the cluster tests: NATS servers of the tests' own, `lectern worker` processes,
NATS as a foreign client sees it (nats-py), and waiting on `GET /v1/cluster`.

Tests on the machine's NATS (`LECTERN_TEST_NATS`, default nats://127.0.0.1:4222) give every
cluster a name of its own (`cluster_name()`), and delete its key-value stream afterwards.
"""
from __future__ import annotations

import asyncio
import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from conftest import lectern_binary

MACHINE_NATS = os.environ.get("LECTERN_TEST_NATS", "nats://127.0.0.1:4222")
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
WORKER_PREFIX = "lectern worker health on "


def cluster_name() -> str:
    return "t" + uuid.uuid4().hex[:12]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Polls `predicate()` until it returns a true value (returned), failing after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (requests.RequestException, KeyError, ValueError) as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"{what} did not happen within {timeout} s (last: {last!r})", pytrace=False)


class NatsServer:
    """A nats-server with JetStream of the test's own (started here, stopped at cleanup)."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int | None = None, netns: str | None = None):
        self.host = host
        self.port = port or free_port()
        self.store = root / f"nats-{self.port}"
        self.store.mkdir(parents=True, exist_ok=True)
        self.log = root / f"nats-{self.port}.log"
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.proc = subprocess.Popen(
            [*prefix, NATS_SERVER, "-a", host, "-p", str(self.port), "-js", "-sd", str(self.store),
             "-l", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"nats://{host}:{self.port}"
        wait_until(self._listening, 10, f"nats-server on {self.url}")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"nats-server exited: {self.log.read_text(errors='replace')[-2000:]}", pytrace=False)
        # Ready when its log says so (a connect from here would not reach a server in a netns).
        return self.log.exists() and "Server is ready" in self.log.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


class LecternWorker:
    """A running `lectern worker` process."""

    def __init__(self, nats: str, cluster: str, name: str, labels=(), extra_args=(), netns: str | None = None,
                 wait: bool = True, memory: str | None = None):
        self.name = name
        self.args = [
            str(lectern_binary()), "worker", "--nats", nats, "--cluster", cluster, "--name", name,
            *[a for label in labels for a in ("--label", label)],
            *(["--memory", memory] if memory else []),
            "--listen", "0.0.0.0:0" if netns else "127.0.0.1:0",
            *extra_args,
        ]
        if netns:
            self.args = ["ip", "netns", "exec", netns, *self.args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LECTERN_")}
        env.setdefault("LECTERN_LOG", "info,lectern_cluster=debug")
        self._stderr = tempfile.NamedTemporaryFile(prefix=f"lectern-worker-{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=env, text=True, bufsize=1)
        self._lines: "queue.Queue[str | None]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.health: str | None = None
        if wait:
            self.wait_started()

    def _read(self):
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_started(self, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=5)
                pytest.fail(f"worker {self.name} exited ({self.proc.returncode}):\n{self.stderr_text()[-5000:]}",
                            pytrace=False)
            if line.startswith(WORKER_PREFIX):
                self.health = line[len(WORKER_PREFIX):].strip()
                return
        pytest.fail(f"worker {self.name} did not start within {timeout} s:\n{self.stderr_text()[-5000:]}",
                    pytrace=False)

    def stderr_text(self) -> str:
        return Path(self._stderr.name).read_text(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def cleanup(self):
        self.kill()
        try:
            os.unlink(self._stderr.name)
        except OSError:
            pass


def status(gateway) -> dict:
    r = gateway.get("/v1/cluster")
    assert r.status_code == 200, r.text
    return r.json()


def placed_ready(gateway, expected: dict[str, set[str]]) -> bool:
    """Whether each model is ready on exactly the workers named."""
    models = {m["name"]: m for m in status(gateway)["models"]}
    return all(name in models and set(models[name]["ready_on"]) == workers for name, workers in expected.items())


def wait_placed(gateway, expected: dict[str, set[str]], timeout: float = 30, workers=()):
    try:
        wait_until(lambda: placed_ready(gateway, expected), timeout, f"placement {expected}")
    except BaseException:
        logs = "\n".join(f"--- worker {w.name} ---\n{w.stderr_text()[-3000:]}" for w in workers)
        print(f"cluster status: {status(gateway)}\n--- gateway ---\n{gateway.stderr_text()[-3000:]}\n{logs}")
        raise
    # The gateway's registry follows the same records; it is told within one of its ticks.
    for name in expected:
        wait_until(lambda: gateway.get(f"/v2/models/{name}/ready").status_code == 200, 5, f"{name} ready")


def run(coro):
    return asyncio.run(coro)


async def _delete_stream(url: str, cluster: str):
    import nats  # type: ignore

    nc = await nats.connect(url, connect_timeout=5)
    try:
        js = nc.jetstream()
        try:
            await js.delete_stream(f"KV_{cluster}")
        except Exception:  # noqa: BLE001 - already gone
            pass
    finally:
        await nc.close()


def delete_cluster(url: str, cluster: str):
    """Deletes the cluster's key-value stream (tests on the machine's NATS leave nothing)."""
    try:
        run(_delete_stream(url, cluster))
    except Exception as e:  # noqa: BLE001
        print(f"warning: cannot delete the stream of cluster {cluster}: {e}")
