"""Assertions and waiting helpers shared by the end-to-end tests.

- `assert_error(resp, status, *mentions)`: the answer has that status and the contract's error
  body: `Content-Type: application/json`, a JSON object with a non-empty `error` string and a
  machine-readable snake_case `code` (other keys are tolerated), and an `x-request-id` header. Each
  mention is a case-insensitive substring of the message, or a compiled `re.Pattern` searched in
  it. Returns the message.
- `ok(resp, status=200)`: the answer has that status; returns its JSON body (None when empty).
  `assert_status(resp, status=200)`: the same for any body (binary tensors); returns `resp`.
- `assert_not_5xx(resp)`: no request may get a 5xx but the documented 503s; for tests that
  accept several outcomes.
- `wait_until(predicate, what, timeout=...)`: polls until `predicate()` returns a true value
  (which it returns), failing the test with `what` otherwise.
- `scrape(server)`: the parsed samples of `GET /metrics`.
- `free_port()`: a TCP port on 127.0.0.1 that nothing listens on right now.
"""
from __future__ import annotations

import re
import socket
import time
from typing import Callable, TypeVar

import pytest
import requests

from lectern_v2 import parse_metrics

T = TypeVar("T")

WAIT_S = 20.0


def describe(resp: requests.Response) -> str:
    """`METHOD /path -> STATUS: body` (shortened), for assertion messages."""
    request = resp.request
    where = f"{request.method} {request.path_url}" if request is not None else "response"
    return f"{where} -> {resp.status_code}: {resp.text[:500]!r}"


def assert_error(resp: requests.Response, status: int, *mentions: str | re.Pattern) -> str:
    """`resp` is `status` with the contract's JSON error body; returns the message."""
    assert resp.status_code == status, f"expected HTTP {status}: {describe(resp)}"
    content_type = resp.headers.get("Content-Type", "")
    assert content_type.split(";")[0].strip().lower() == "application/json", (
        f"error answer's Content-Type is {content_type!r}, not application/json: {describe(resp)}")
    try:
        body = resp.json()
    except ValueError:
        pytest.fail(f"error body is not JSON: {describe(resp)}")
    assert isinstance(body, dict), f"error body is not a JSON object: {body!r}"
    message = body.get("error")
    assert isinstance(message, str) and message.strip(), f"error body lacks a non-empty 'error' string: {body!r}"
    code = body.get("code")
    assert isinstance(code, str) and re.fullmatch(r"[a-z][a-z0-9_]*", code), f"error body lacks a snake_case 'code': {body!r}"
    assert resp.headers.get("x-request-id"), f"error answer lacks x-request-id: {describe(resp)}"
    for m in mentions:
        if isinstance(m, re.Pattern):
            assert m.search(message), f"error message {message!r} does not match {m.pattern!r}"
        else:
            assert m.lower() in message.lower(), f"error message {message!r} does not mention {m!r}"
    return message


def assert_status(resp: requests.Response, status: int = 200) -> requests.Response:
    """`resp` has `status` (the body is shown when not); returns it, whatever its body."""
    assert resp.status_code == status, f"expected HTTP {status}: {describe(resp)}"
    return resp


def ok(resp: requests.Response, status: int = 200):
    """`resp` has `status`; returns its JSON body (None when it has none)."""
    assert resp.status_code == status, f"expected HTTP {status}: {describe(resp)}"
    return resp.json() if resp.content else None


def assert_not_5xx(resp: requests.Response, allowed: tuple[int, ...] = ()) -> requests.Response:
    """The contract: no request gets a 500 (or any 5xx other than the documented `allowed`)."""
    assert resp.status_code < 500 or resp.status_code in allowed, f"a server error: {describe(resp)}"
    return resp


def wait_until(predicate: Callable[[], T], what: str, timeout: float = WAIT_S, interval: float = 0.01) -> T:
    """Polls `predicate` until it returns a true value and returns that value; fails the test
    (saying `what` did not happen) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s (last value {value!r})")
        time.sleep(interval)


def scrape(server) -> list:
    """The samples of the server's `GET /metrics` (see `lectern_v2.metric_value`)."""
    resp = server.get("/metrics")
    assert resp.status_code == 200, describe(resp)
    return parse_metrics(resp.text)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
