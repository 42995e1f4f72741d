"""Fixtures that run the real `lectern` binary for the end-to-end tests.

The binary is taken from `LECTERN_BIN`, else `$CARGO_TARGET_DIR/debug/lectern`, else
`<repo>/target/debug/lectern`. Every server gets its own temporary copy of
`examples/models` (tests may rewrite it) and its own `--data` directory, listens on
`127.0.0.1:0`, and is killed at teardown.

- `server`: one session-scoped server for read-only tests. Its copy of iris-logreg has
  `versions = [1, 2]` in config.toml so that both bundled versions are served.
- `start_server`: a function-scoped factory for tests that change the repository
  (load/unload, broken model files) or need other flags (`--max-body-bytes`).
- `start_config_server`: a function-scoped factory for a server started with `--config FILE`
  and no `--models` (the file's `[repository] models` applies, relative to its folder).
"""
from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_MODELS = REPO_ROOT / "examples" / "models"
STARTUP_TIMEOUT_S = 30.0
LISTEN_PREFIX = "lectern listening on "

# iris-logreg has versions 1 and 2 on disk; the default policy (latest = 1) serves only 2.
IRIS_BOTH_VERSIONS_CONFIG = 'labels = "labels.txt"\nversions = [1, 2]\n'


def lectern_binary() -> Path:
    explicit = os.environ.get("LECTERN_BIN")
    if explicit:
        path = Path(explicit)
    else:
        target = os.environ.get("CARGO_TARGET_DIR")
        base = Path(target) if target else Path("target")
        path = base / "debug" / "lectern"
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def copy_models(dest: Path) -> Path:
    """Copy examples/models to `dest` (which must not exist yet) and return it."""
    shutil.copytree(EXAMPLE_MODELS, dest)
    return dest


class LecternServer:
    """A running `lectern serve` process."""

    def __init__(self, models_dir: Path | None, data_dir: Path, extra_args=(), env=None):
        # models_dir None: no --models flag (a --config file in extra_args names the models).
        self.models_dir = Path(models_dir) if models_dir is not None else None
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        self.url: str | None = None
        self.stdout_lines: list[str] = []
        self._lines: "queue.Queue[str | None]" = queue.Queue()
        self._stderr_file = tempfile.NamedTemporaryFile(
            prefix="lectern-stderr-", suffix=".log", delete=False
        )
        self.binary = lectern_binary()
        if not self.binary.exists():
            pytest.fail(
                f"lectern binary not found at {self.binary} "
                "(build it with `cargo build`, or set LECTERN_BIN / CARGO_TARGET_DIR)",
                pytrace=False,
            )
        self.args = [
            str(self.binary), "serve",
            *(["--models", str(self.models_dir)] if self.models_dir is not None else []),
            "--listen", "127.0.0.1:0",
            "--data", str(self.data_dir),
            *self.extra_args,
        ]
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("LECTERN_")}
        child_env.update(env or {})
        self.proc = subprocess.Popen(
            self.args,
            cwd=str(self.data_dir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            env=child_env,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self._wait_for_listen_line()

    def _read_stdout(self):
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\r\n")
            self.stdout_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _wait_for_listen_line(self):
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                self._fail(f"did not print '{LISTEN_PREFIX}http://...' within {STARTUP_TIMEOUT_S:.0f} s")
            try:
                line = self._lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=5)
                self._fail(f"exited with status {self.proc.returncode} before listening")
            if line.startswith(LISTEN_PREFIX):
                url = line[len(LISTEN_PREFIX):].strip()
                if not url.startswith(("http://", "https://")):
                    self.stop()
                    self._fail(f"printed a listening line without an http URL: {line!r}")
                self.url = url.rstrip("/")
                return

    def _fail(self, what: str):
        pytest.fail(
            f"lectern server {what}.\ncommand: {' '.join(self.args)}\n"
            f"stdout so far: {self.stdout_lines!r}\n"
            f"--- stderr ---\n{self.stderr_text()[-20000:]}",
            pytrace=False,
        )

    @property
    def host_port(self) -> str:
        """`127.0.0.1:PORT`, the form tritonclient wants."""
        assert self.url is not None
        return self.url.split("://", 1)[1]

    def stderr_text(self) -> str:
        try:
            return Path(self._stderr_file.name).read_text(errors="replace")
        except OSError:
            return ""

    def is_running(self) -> bool:
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr_file.close()

    def cleanup(self):
        self.stop()
        try:
            os.unlink(self._stderr_file.name)
        except OSError:
            pass

    # Small conveniences so tests read well.
    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return requests.get(self.url + path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return requests.post(self.url + path, **kw)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A session-wide server over a copy of examples/models (iris-logreg serves v1 and v2)."""
    root = tmp_path_factory.mktemp("lectern-session")
    models = copy_models(root / "models")
    (models / "iris-logreg" / "config.toml").write_text(IRIS_BOTH_VERSIONS_CONFIG)
    data = root / "data"
    data.mkdir()
    srv = LecternServer(models, data)
    yield srv
    srv.cleanup()


@pytest.fixture
def start_server(tmp_path):
    """Factory for function-scoped servers.

    `start_server(prepare=None, extra_args=(), models_dir=None)`: copies examples/models into a
    fresh temp dir (unless `models_dir` is given), calls `prepare(models_dir)` so the test can edit
    the copy before start-up, starts the server and returns it. All are killed at teardown.
    """
    started: list[LecternServer] = []
    counter = [0]

    def start(prepare=None, extra_args=(), models_dir=None, env=None) -> LecternServer:
        counter[0] += 1
        root = tmp_path / f"server{counter[0]}"
        root.mkdir()
        if models_dir is None:
            models_dir = copy_models(root / "models")
        if prepare is not None:
            prepare(Path(models_dir))
        data = root / "data"
        data.mkdir()
        srv = LecternServer(models_dir, data, extra_args=extra_args, env=env)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.cleanup()


@pytest.fixture
def start_config_server(tmp_path):
    """Factory for function-scoped servers started from a config file.

    `start_config_server(config_path, extra_args=(), env=None)`: runs
    `lectern serve --config CONFIG --listen 127.0.0.1:0 --data <fresh dir>` without `--models`,
    so the file's `[repository] models` (relative to the file's folder) is served. All are
    killed at teardown.
    """
    started: list[LecternServer] = []
    counter = [0]

    def start(config_path, extra_args=(), env=None) -> LecternServer:
        counter[0] += 1
        data = tmp_path / f"config-server{counter[0]}-data"
        data.mkdir()
        srv = LecternServer(None, data, extra_args=["--config", str(config_path), *extra_args], env=env)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.cleanup()
