"""End-to-end tests of the caching proxy (docs/contract.md, "Caching proxy").

The real binary runs with `--config` naming upstreams on `Upstream`, a small threaded HTTP
server in this process that counts what it receives and misbehaves on request: down, slow,
silent, garbage, a 10 GB body, redirects. Checked: hits, misses and stale answers
(`x-lectern-cache`), stale-if-error while the upstream is down, coalescing of identical
misses, rate and concurrency limits (503 `upstream_busy` with `Retry-After`), 502 and 504 for
bad upstreams, path escapes refused before anything is sent, no forwarding anywhere but the
configured base URL, the secret header sent upstream but never shown (responses, `GET
/v1/proxy`, the server's log), client credentials and cookies not forwarded, access per
upstream by role, and the metrics.
"""
from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from conftest import LecternServer
from lectern_checks import assert_error

SECRET = "proxy-secret-9f3b27c1d0"
SECRET_ENV = "LECTERN_TEST_PROXY_SECRET"


class Upstream:
    """A local upstream: `/api/...` answers by path; `down` makes it drop every connection."""

    def __init__(self):
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, headers by lower-case name)
        self.lock = threading.Lock()
        self.down = False
        self.failing = False  # every answer a 500
        self.release = threading.Event()  # ends the silent answers at teardown
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with upstream.lock:
                    upstream.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                if upstream.down:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if upstream.failing:
                    self.send(500, b"upstream broke")
                    return
                name = self.path.split("?")[0].rsplit("/", 1)[-1]
                getattr(self, "answer_" + name.replace("-", "_"), self.answer_default)()

            do_GET = do_HEAD = do_POST = do_DELETE = handle_one

            def send(self, status: int, body: bytes, **headers):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "text/plain")
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def answer_default(self):
                with upstream.lock:
                    n = len(upstream.requests)
                # echoes the secret in a header: the proxy must drop it
                self.send(200, f"hello {self.path} #{n}".encode(), Set_Cookie="session=upstream",
                          X_Echo=f"key={self.headers.get('X-Api-Key')}", Cache_Control="max-age=3600")

            def answer_slow(self):
                time.sleep(0.5)
                self.answer_default()

            def answer_silent(self):
                upstream.release.wait(30)

            def answer_fail(self):
                self.send(500, b"upstream broke")

            def answer_garbage(self):
                self.wfile.write(b"this is not HTTP at all\r\n\r\n")
                self.close_connection = True

            def answer_huge(self):
                self.send_response(200)
                self.send_header("Content-Length", str(10 * 1000 ** 3))
                self.end_headers()
                try:
                    for _ in range(10_000):  # at most 640 MB, never 10 GB
                        self.wfile.write(b"x" * 65536)
                except OSError:
                    pass
                self.close_connection = True

            def answer_endless(self):
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for _ in range(10_000):
                        self.wfile.write(b"10000\r\n" + b"y" * 65536 + b"\r\n")
                except OSError:
                    pass
                self.close_connection = True

            def answer_away(self):
                self.send(302, b"", Location="http://127.0.0.1:9/stolen")

            def answer_nearby(self):
                self.send(301, b"", Location="/api/moved/here?x=1")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, path_part: str = "") -> int:
        with self.lock:
            return sum(1 for _, path, _ in self.requests if path_part in path)

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def config(upstream: Upstream, bystander: Upstream) -> str:
    base = upstream.url + "/api/"
    return f"""
[proxy.cached]
url = "{base}"
secret_headers = {{ "X-Api-Key" = "{SECRET_ENV}" }}
headers = {{ Accept = "text/plain" }}
cache_ttl = "400ms"
stale_if_error = "1h"

[proxy.coalesced]
url = "{base}"
cache_ttl = "1m"

[proxy.honest]
url = "{base}"
cache_ttl = 0.4
honor_cache_control = true

[proxy.uncached]
url = "{base}"
cache_ttl = 0
methods = ["GET", "HEAD", "POST"]

[proxy.limited]
url = "{base}"
cache_ttl = 0
rate_limit = 0.2
rate_burst = 1

[proxy.narrow]
url = "{base}"
cache_ttl = 0
max_concurrency = 1
timeout = "800ms"

[proxy.fragile]
url = "{base}"
timeout = "600ms"
max_response_bytes = 1048576

[proxy.counted]
url = "{base}"
cache_ttl = "1h"

[proxy.bystander-only]
url = "{bystander.url}/other/"
access = "admin"
"""


@pytest.fixture(scope="module")
def upstreams():
    up, bystander = Upstream(), Upstream()
    yield up, bystander
    up.close()
    bystander.close()


@pytest.fixture(scope="module")
def proxy_server(tmp_path_factory, upstreams):
    """A server without keys (everyone may call), logging at debug level."""
    up, bystander = upstreams
    root = tmp_path_factory.mktemp("proxy")
    cfg = root / "lectern.toml"
    cfg.write_text(config(up, bystander))
    data = root / "data"
    data.mkdir()
    srv = LecternServer(None, data, extra_args=["--config", str(cfg), "--log", "debug"], env={SECRET_ENV: SECRET})
    yield srv
    srv.cleanup()


def raw_get(srv: LecternServer, target: str) -> tuple[int, dict, bytes]:
    """GET with the target sent exactly as written (requests would normalise `..`)."""
    host, port = srv.host_port.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


# ------------------------------------------------------------------------------- caching


def test_miss_then_hit_then_stale_while_the_upstream_is_down(proxy_server, upstreams):
    up, _ = upstreams
    before = up.count("/api/weather/today")
    r = proxy_server.get("/proxy/cached/weather/today?city=Paris")
    assert r.status_code == 200, r.text
    assert r.headers["x-lectern-cache"] == "miss"
    body = r.content
    assert body.startswith(b"hello /api/weather/today?city=Paris")
    r = proxy_server.get("/proxy/cached/weather/today?city=Paris")
    assert (r.status_code, r.headers["x-lectern-cache"], r.content) == (200, "hit", body)
    assert up.count("/api/weather/today") == before + 1, "a hit went upstream"
    assert proxy_server.get("/proxy/cached/weather/today?city=Lyon").headers["x-lectern-cache"] == "miss"
    time.sleep(0.5)  # past the 400 ms of freshness
    up.down = True
    try:
        r = proxy_server.get("/proxy/cached/weather/today?city=Paris")
        assert (r.status_code, r.headers["x-lectern-cache"], r.content) == (200, "stale", body)
        # never cached: the upstream's failure is the answer
        assert_error(proxy_server.get("/proxy/cached/weather/tomorrow"), 502)
    finally:
        up.down = False
    # an upstream 5xx also brings the stale answer out; without one it passes through
    up.failing = True
    try:
        r = proxy_server.get("/proxy/cached/weather/today?city=Paris")
        assert (r.status_code, r.headers["x-lectern-cache"], r.content) == (200, "stale", body)
        r = proxy_server.get("/proxy/cached/weather/never-cached")
        assert (r.status_code, r.content) == (500, b"upstream broke")
    finally:
        up.failing = False
    r = proxy_server.get("/proxy/cached/weather/today?city=Paris")
    assert r.headers["x-lectern-cache"] == "miss" and r.content != body, "a fresh answer once the upstream is back"


def test_head_and_cache_control(proxy_server, upstreams):
    up, _ = upstreams
    r = proxy_server.get("/proxy/honest/cc")
    assert r.headers["x-lectern-cache"] == "miss"
    time.sleep(0.5)  # past cache_ttl, within the upstream's max-age=3600
    assert proxy_server.get("/proxy/honest/cc").headers["x-lectern-cache"] == "hit"
    r = requests.head(proxy_server.url + "/proxy/honest/cc", timeout=30)
    assert r.status_code == 200 and r.headers["x-lectern-cache"] == "hit" and r.content == b""
    before = up.count("/api/open")
    for _ in range(2):
        r = proxy_server.get("/proxy/uncached/open")
        assert r.headers["x-lectern-cache"] == "bypass"
    assert up.count("/api/open") == before + 2
    r = proxy_server.post("/proxy/uncached/open", data=b"payload")
    assert r.status_code == 200 and r.headers["x-lectern-cache"] == "bypass"
    assert_error(proxy_server.post("/proxy/cached/open", data=b"x"), 405)


def test_identical_misses_share_one_upstream_request(proxy_server, upstreams):
    up, _ = upstreams
    path = "/proxy/coalesced/slow?n=coalesce"
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda _: proxy_server.get(path), range(16)))
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    assert len({r.content for r in answers}) == 1, "the callers got different answers"
    assert up.count("slow?n=coalesce") == 1, f"{up.count('slow?n=coalesce')} upstream requests for 16 misses"


# ------------------------------------------------------------------------- failures, limits


def test_an_upstream_that_never_answers_is_504(proxy_server):
    started = time.monotonic()
    assert_error(proxy_server.get("/proxy/fragile/silent"), 504, "fragile")
    assert time.monotonic() - started < 5


def test_huge_endless_and_garbage_answers_are_502(proxy_server, upstreams):
    up, _ = upstreams
    started = time.monotonic()
    assert_error(proxy_server.get("/proxy/fragile/huge"), 502, "max_response_bytes")
    assert time.monotonic() - started < 5, "the declared 10 GB were read"
    assert_error(proxy_server.get("/proxy/fragile/endless"), 502, "max_response_bytes")
    assert_error(proxy_server.get("/proxy/fragile/garbage"), 502)
    # the server is still fine
    assert proxy_server.get("/v2/health/live").status_code == 200


def test_rate_and_concurrency_limits_are_503_with_retry_after(proxy_server):
    assert proxy_server.get("/proxy/limited/a").status_code == 200
    r = proxy_server.get("/proxy/limited/b")
    assert_error(r, 503, "rate limit")
    assert r.json()["code"] == "upstream_busy" and r.headers["Retry-After"] == "1"
    # one slot, taken by a request the upstream never answers (for the 800 ms timeout), then by
    # the next in line: a third waits its 800 ms for a slot and is refused
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(proxy_server.get, "/proxy/narrow/silent?1")
        time.sleep(0.1)
        second = pool.submit(proxy_server.get, "/proxy/narrow/silent?2")
        time.sleep(0.1)
        third = proxy_server.get("/proxy/narrow/x")
        assert_error(third, 503, "concurrency")
        assert third.json()["code"] == "upstream_busy"
        assert_error(first.result(), 504)
        assert_error(second.result(), 504)


# ------------------------------------------------------------------------------- safety


@pytest.mark.parametrize("target", [
    "/proxy/cached/../admin", "/proxy/cached/a/../../x", "/proxy/cached/%2e%2e/x", "/proxy/cached/.%2E/x",
    "/proxy/cached/a/%2F../x", "/proxy/cached/%2F..%2Fx", "/proxy/cached/a%5C..%5Cx", "/proxy/cached/a\\..\\x",
    "/proxy/cached/./x",
])
def test_paths_that_leave_the_base_url_are_400(proxy_server, upstreams, target):
    up, _ = upstreams
    before = len(up.requests)
    status, headers, body = raw_get(proxy_server, target)
    assert status == 400, (target, status, body)
    assert b'"invalid_request"' in body
    assert len(up.requests) == before, f"{target} reached the upstream"


def test_only_the_configured_base_url_is_ever_reached(proxy_server, upstreams):
    up, bystander = upstreams
    assert_error(proxy_server.get("/proxy/nowhere/x"), 404, "nowhere")
    assert proxy_server.get("/proxy/nowhere/x").json()["code"] == "upstream_not_found"
    before = len(up.requests)
    # an absolute URL as the path is only a path under the base URL
    r = proxy_server.get(f"/proxy/uncached/{bystander.url}/other/x")
    assert r.status_code == 200
    assert up.requests[before][1].startswith("/api/http:"), up.requests[before][1]
    # redirects are not followed; a Location outside the base is dropped, one inside mapped
    r = proxy_server.get("/proxy/uncached/away", allow_redirects=False)
    assert r.status_code == 302 and "location" not in r.headers
    r = proxy_server.get("/proxy/uncached/nearby", allow_redirects=False)
    assert r.status_code == 301 and r.headers["location"] == "/proxy/uncached/moved/here?x=1"
    assert all(path.startswith("/api/") for _, path, _ in up.requests), "a request left the base path"
    assert bystander.requests == [], "the bystander (another upstream's host) was reached"


def test_the_secret_goes_upstream_only(proxy_server, upstreams):
    up, _ = upstreams
    client_key = "lk_0123456789ab_" + "c" * 48
    r = proxy_server.get("/proxy/cached/secret-check", headers={
        "Authorization": f"Bearer {client_key}", "Cookie": "mine=1", "X-API-Key": client_key, "X-Trace": "t-1"})
    assert r.status_code == 200
    method, path, headers = [req for req in up.requests if "secret-check" in req[1]][-1]
    assert headers.get("x-api-key") == SECRET, headers
    assert headers.get("accept") == "text/plain" and headers.get("x-trace") == "t-1", headers
    assert "authorization" not in headers and "cookie" not in headers, headers
    assert client_key not in str(headers)
    assert "set-cookie" not in r.headers and "x-echo" not in r.headers, dict(r.headers)
    listing = proxy_server.get("/v1/proxy")
    assert listing.status_code == 200
    cached = next(u for u in listing.json()["upstreams"] if u["name"] == "cached")
    assert cached["secret_headers"] == ["x-api-key"] and cached["headers"] == {"accept": "text/plain"}
    assert cached["cache_ttl_ms"] == 400 and cached["stale_if_error_ms"] == 3_600_000
    for text in (r.text, str(r.headers), listing.text, proxy_server.stderr_text()):
        assert SECRET not in text


def test_metrics_count_by_cache_outcome(proxy_server):
    for _ in range(3):
        assert proxy_server.get("/proxy/counted/m").status_code == 200
    text = proxy_server.get("/metrics").text

    def value(pattern):
        m = re.search(pattern + r" (\S+)", text)
        assert m, f"{pattern} not in /metrics"
        return float(m.group(1))

    assert value(r'lectern_proxy_requests_total\{upstream="counted",cache="miss"\}') == 1
    assert value(r'lectern_proxy_requests_total\{upstream="counted",cache="hit"\}') == 2
    assert value(r'lectern_proxy_upstream_seconds_count\{upstream="counted"\}') == 1
    assert value(r'lectern_proxy_cache_bytes\{upstream="counted"\}') > 0
    assert value(r'lectern_proxy_requests_total\{upstream="fragile",cache="error"\}') >= 0
    stats = next(u for u in proxy_server.get("/v1/proxy").json()["upstreams"] if u["name"] == "counted")["cache"]
    assert (stats["hits"], stats["misses"], stats["entries"]) == (2, 1, 1)


# ------------------------------------------------------------------------------ start-up


def test_a_missing_secret_variable_stops_start_up_naming_it(tmp_path, upstreams):
    up, bystander = upstreams
    cfg = tmp_path / "lectern.toml"
    cfg.write_text(config(up, bystander))
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(pytest.fail.Exception) as failed:
        LecternServer(None, data, extra_args=["--config", str(cfg)])
    assert SECRET_ENV in str(failed.value)
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[proxy.x]\nurl = "{up.url}/"\ncache_ttl = "soon"\n')
    with pytest.raises(pytest.fail.Exception) as failed:
        LecternServer(None, data, extra_args=["--config", str(bad)])
    assert "cache_ttl" in str(failed.value) or "duration" in str(failed.value)


# -------------------------------------------------------------------------------- access


def test_access_is_per_upstream_by_role(tmp_path, upstreams):
    up, _ = upstreams
    base = up.url + "/api/"
    cfg = tmp_path / "lectern.toml"
    cfg.write_text("".join(f'[proxy.{level}]\nurl = "{base}"\naccess = "{level}"\n\n'
                           for level in ("open", "client", "trainer", "admin")))
    data = tmp_path / "data"
    data.mkdir()
    srv = LecternServer(None, data, extra_args=["--config", str(cfg)])
    try:
        r = requests.post(srv.url + "/v1/keys", json={"name": "admin", "role": "admin"}, timeout=30)
        assert r.status_code == 201, r.text
        keys = {"admin": r.json()["key"]}
        for role in ("client", "trainer"):
            r = requests.post(srv.url + "/v1/keys", json={"name": role, "role": role},
                              headers={"Authorization": f"Bearer {keys['admin']}"}, timeout=30)
            assert r.status_code == 201, r.text
            keys[role] = r.json()["key"]
        allowed = {"open": {None, "client", "trainer", "admin"}, "client": {"client", "trainer", "admin"},
                   "trainer": {"trainer", "admin"}, "admin": {"admin"}}
        for level, who in allowed.items():
            for role in (None, "client", "trainer", "admin"):
                headers = {"Authorization": f"Bearer {keys[role]}"} if role else {}
                r = requests.get(f"{srv.url}/proxy/{level}/x", headers=headers, timeout=30)
                if role in who:
                    assert r.status_code == 200, (level, role, r.status_code, r.text)
                else:
                    assert r.status_code == (401 if role is None else 403), (level, role, r.status_code)
        # an unknown upstream needs a credential, like any undeclared path
        assert requests.get(srv.url + "/proxy/nope/x", timeout=30).status_code == 401
        r = requests.get(srv.url + "/proxy/nope/x", headers={"Authorization": f"Bearer {keys['client']}"}, timeout=30)
        assert_error(r, 404)
        assert requests.get(srv.url + "/v1/proxy", headers={"Authorization": f"Bearer {keys['trainer']}"},
                            timeout=30).status_code == 403
        assert requests.get(srv.url + "/v1/proxy", headers={"Authorization": f"Bearer {keys['admin']}"},
                            timeout=30).status_code == 200
        # the client's key never reaches the upstream
        assert not any(keys[role] in str(h) for _, _, h in up.requests for role in keys)
    finally:
        srv.cleanup()


def test_the_base_url_itself_is_reachable(proxy_server, upstreams):
    up, _ = upstreams
    before = up.count("/api/")
    r = proxy_server.get("/proxy/cached/?q=1")
    assert r.status_code == 200, r.text
    assert r.content.startswith(b"hello /api/?q=1"), r.content[:80]
    assert up.count("/api/") == before + 1
    assert_error(proxy_server.get("/proxy/no-such-upstream/"), 404, "no-such-upstream")
