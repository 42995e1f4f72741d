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
- `server_state`: a function-scoped factory of server *states* (a models folder, a `--data`
  folder and a database) on which servers can be started, killed and started again.

Skips (read this before adding one): under CI (`CI=true` in the environment, as CI services
set it) a skipped test is a *failure*, unless its reason starts with `FEATURE_NOT_BUILT`
("feature not built: "), i.e. the binary under test lacks an optional cargo feature (e.g.
`ort`). Skip for that reason with `skip_feature_not_built(feature, why)`; anything else that
cannot run (a missing tool, a queue that did not form, a timing that did not happen) must be
made to run or must fail, never skip: a skip in CI hides exactly the failure it stands for.
Module-level skips (`pytest.skip(..., allow_module_level=True)`, `pytest.importorskip`) follow
the same rule.

Database engine: `LECTERN_TEST_DATABASE=sqlite` (the default) lets every server use its own
SQLite file in `--data`; `LECTERN_TEST_DATABASE=postgres` gives every server the fixtures start
(unless its arguments already name a `--database`) a fresh PostgreSQL database on
`LECTERN_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`), created before the
server starts and dropped (`WITH (FORCE)`) when the server, or the state it runs on, is
cleaned up. The databases are created with `psycopg` when it is installed, else with `psql`.
"""
from __future__ import annotations

import itertools
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_MODELS = REPO_ROOT / "examples" / "models"
STARTUP_TIMEOUT_S = 30.0
LISTEN_PREFIX = "lectern listening on "
GRPC_LISTEN_PREFIX = "lectern gRPC listening on "

# iris-logreg has versions 1 and 2 on disk; the default policy (latest = 1) serves only 2.
IRIS_BOTH_VERSIONS_CONFIG = 'labels = "labels.txt"\nversions = [1, 2]\n'


# --------------------------------------------------------------------------- skips under CI

FEATURE_NOT_BUILT = "feature not built: "


def under_ci() -> bool:
    """True when `CI` is set to true (or 1, yes): skips other than FEATURE_NOT_BUILT fail."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skip_feature_not_built(feature: str, why: str):
    """Skips the test because the binary under test lacks the cargo feature `feature` (the one
    kind of skip that CI accepts)."""
    pytest.skip(f"{FEATURE_NOT_BUILT}{feature} ({why})")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def _fail_skip_under_ci(report):
    if not (under_ci() and report.skipped and not hasattr(report, "wasxfail")):
        return
    reason = _skip_reason(report)
    if reason.startswith(FEATURE_NOT_BUILT):
        return
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI (CI=true), which counts as a failure: {reason}\n"
                       f"(only a skip whose reason starts with {FEATURE_NOT_BUILT!r} is accepted; see conftest.py)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skip_under_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_skip_under_ci(outcome.get_result())


# --------------------------------------------------------------------------- databases

DATABASE_ENGINES = ("sqlite", "postgres")


def database_engine() -> str:
    """The engine of the servers' databases: `LECTERN_TEST_DATABASE` (sqlite or postgres)."""
    engine = os.environ.get("LECTERN_TEST_DATABASE", "sqlite").strip().lower() or "sqlite"
    if engine not in DATABASE_ENGINES:
        raise pytest.UsageError(f"LECTERN_TEST_DATABASE must be one of {DATABASE_ENGINES}, not {engine!r}")
    return engine


def postgres_server_url() -> str:
    """`postgres://USER@HOST:PORT` (no database) of the PostgreSQL server the tests use."""
    return os.environ.get("LECTERN_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432").rstrip("/")


def _postgres_admin(sql: str):
    """Runs one statement (outside a transaction) on the `postgres` database of the server."""
    url = postgres_server_url() + "/postgres"
    try:
        import psycopg  # type: ignore
    except ImportError:
        psycopg = None
    if psycopg is not None:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)
        return
    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("LECTERN_TEST_DATABASE=postgres needs psycopg (pip install 'psycopg[binary]') or psql",
                    pytrace=False)
    proc = subprocess.run([psql, url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"psql {sql!r} failed: {proc.stderr.strip()}")


_DATABASE_COUNTER = itertools.count(1)
_LIVE_DATABASES: set[str] = set()


class TestDatabase:
    """A database of its own for one server (or one server state).

    For SQLite `url` is None: the server's default, `sqlite://DATA/lectern.db`, lives in its
    `--data` folder. For PostgreSQL a fresh database is created here and dropped by `drop()`.
    """

    __test__ = False  # not a test class, despite the name

    def __init__(self, engine: str | None = None):
        self.engine = engine or database_engine()
        self.name: str | None = None
        self.url: str | None = None
        if self.engine == "postgres":
            self.name = f"lectern_test_{os.getpid()}_{next(_DATABASE_COUNTER)}_{uuid.uuid4().hex[:8]}"
            _postgres_admin(f'CREATE DATABASE "{self.name}"')
            _LIVE_DATABASES.add(self.name)
            self.url = f"{postgres_server_url()}/{self.name}"

    def args(self) -> list[str]:
        """The `--database` flag for a server on this database (none for SQLite's default)."""
        return ["--database", self.url] if self.url else []

    def drop(self):
        if self.name and self.name in _LIVE_DATABASES:
            _LIVE_DATABASES.discard(self.name)
            try:
                _postgres_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            except Exception as e:  # noqa: BLE001 - a leftover database must not fail a test
                print(f"warning: cannot drop test database {self.name}: {e}")


def pytest_report_header(config):
    engine = database_engine()
    where = f" ({postgres_server_url()})" if engine == "postgres" else ""
    return f"lectern test database: {engine}{where}"


def pytest_sessionfinish(session, exitstatus):
    # Databases of servers a test never cleaned up (an error between start and teardown).
    for name in list(_LIVE_DATABASES):
        _LIVE_DATABASES.discard(name)
        try:
            _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception:  # noqa: BLE001
            pass


def has_flag(args, flag: str) -> bool:
    return any(a == flag or str(a).startswith(flag + "=") for a in args)


# --------------------------------------------------------------------------- servers

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

    def __init__(self, models_dir: Path | None, data_dir: Path, extra_args=(), env=None,
                 database: "TestDatabase | None" = None, listen: str = "127.0.0.1:0",
                 binary: Path | None = None):
        # models_dir None: no --models flag (a --config file in extra_args names the models).
        # database None: a database of its own per LECTERN_TEST_DATABASE (dropped at cleanup),
        # unless extra_args name a --database; a TestDatabase given is used and left alone.
        # binary None: lectern_binary().
        self.models_dir = Path(models_dir) if models_dir is not None else None
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        self._own_database: TestDatabase | None = None
        if database is None and not has_flag(self.extra_args, "--database") and database_engine() != "sqlite":
            database = self._own_database = TestDatabase()
        self.database = database
        self.url: str | None = None
        self.stdout_lines: list[str] = []
        self._lines: "queue.Queue[str | None]" = queue.Queue()
        self._stderr_file = tempfile.NamedTemporaryFile(
            prefix="lectern-stderr-", suffix=".log", delete=False
        )
        self.binary = Path(binary) if binary is not None else lectern_binary()
        if not self.binary.exists():
            pytest.fail(
                f"lectern binary not found at {self.binary} "
                "(build it with `cargo build`, or set LECTERN_BIN / CARGO_TARGET_DIR)",
                pytrace=False,
            )
        self.args = [
            str(self.binary), "serve",
            *(["--models", str(self.models_dir)] if self.models_dir is not None else []),
            "--listen", listen,
            "--data", str(self.data_dir),
            *(database.args() if database is not None else []),
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
        try:
            self._wait_for_listen_line()
        except BaseException:
            self.cleanup()
            raise

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
                # A wildcard listen address (0.0.0.0) is reached over loopback.
                self.url = re.sub(r"^(https?://)0\.0\.0\.0:", r"\g<1>127.0.0.1:", self.url)
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

    @property
    def grpc_host_port(self) -> str:
        """`127.0.0.1:PORT` of the gRPC listener (`--grpc-listen`), printed before the HTTP line."""
        for line in self.stdout_lines:
            if line.startswith(GRPC_LISTEN_PREFIX):
                return re.sub(r"^0\.0\.0\.0:", "127.0.0.1:", line[len(GRPC_LISTEN_PREFIX):].strip())
        raise AssertionError(f"the server printed no '{GRPC_LISTEN_PREFIX}...' line: {self.stdout_lines!r}")

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

    def kill(self):
        """SIGKILL, keeping the logs (for crash tests); `cleanup()` still runs at teardown."""
        self.stop()

    def cleanup(self):
        self.stop()
        try:
            os.unlink(self._stderr_file.name)
        except OSError:
            pass
        if self._own_database is not None:
            self._own_database.drop()
            self._own_database = None

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

    `start_server(prepare=None, extra_args=(), models_dir=None, env=None, binary=None)`: copies
    examples/models into a fresh temp dir (unless `models_dir` is given), calls
    `prepare(models_dir)` so the test can edit the copy before start-up, starts the server (the
    `binary` given, else `lectern_binary()`) and returns it. All are killed at teardown.
    """
    started: list[LecternServer] = []
    counter = [0]

    def start(prepare=None, extra_args=(), models_dir=None, env=None, binary=None) -> LecternServer:
        counter[0] += 1
        root = tmp_path / f"server{counter[0]}"
        root.mkdir()
        if models_dir is None:
            models_dir = copy_models(root / "models")
        if prepare is not None:
            prepare(Path(models_dir))
        data = root / "data"
        data.mkdir()
        srv = LecternServer(models_dir, data, extra_args=extra_args, env=env, binary=binary)
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


class ServerState:
    """What a server runs on: a models folder (or none), a `--data` folder and a database.

    `start(extra_args=(), env=None, listen="127.0.0.1:0", models=True)` starts a server on it
    (`models=False`: without `--models`, serving only what the store holds); servers started
    on one state share everything, so a test can kill one and start another on the same state.
    """

    def __init__(self, root: Path, models_dir: Path | None, database: TestDatabase):
        self.root = root
        self.models_dir = models_dir
        self.data_dir = root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.database = database
        self.servers: list[LecternServer] = []

    def start(self, extra_args=(), env=None, listen: str = "127.0.0.1:0", models: bool = True) -> LecternServer:
        srv = LecternServer(self.models_dir if models else None, self.data_dir, extra_args=extra_args,
                            env=env, database=self.database, listen=listen)
        self.servers.append(srv)
        return srv

    def cleanup(self):
        for srv in self.servers:
            srv.cleanup()
        self.database.drop()


@pytest.fixture
def server_state(tmp_path):
    """Factory of server states that outlive their servers (restarts, crash tests).

    `server_state(prepare=None, models=True)`: a fresh root folder with a copy of
    examples/models (`models=False`: no models folder at all; `models=PATH`: that folder),
    `prepare(models_dir)` applied to the copy, an empty `--data` folder and a fresh database
    of the engine LECTERN_TEST_DATABASE names. Returns a `ServerState`; `state.start(...)`
    starts a server on it. At teardown every server is killed and the databases are dropped.
    """
    states: list[ServerState] = []
    counter = [0]

    def make(prepare=None, models=True) -> ServerState:
        counter[0] += 1
        root = tmp_path / f"state{counter[0]}"
        root.mkdir()
        if models is True:
            models_dir = copy_models(root / "models")
        elif models is False or models is None:
            models_dir = None
        else:
            models_dir = Path(models)
        if prepare is not None and models_dir is not None:
            prepare(models_dir)
        state = ServerState(root, models_dir, TestDatabase())
        states.append(state)
        return state

    yield make
    for state in states:
        state.cleanup()
