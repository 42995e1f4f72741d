"""A local stand-in for an LLM server, speaking the real wire formats Lectern talks to.

- Ollama: `POST /api/chat`. Streaming (`"stream": true`, Ollama's default) answers
  `application/x-ndjson`, one `{"model", "created_at", "message": {"role", "content"},
  "done": false}` line per chunk and a final `{"done": true, "done_reason": "stop", ...}` line;
  non-streaming answers one JSON object holding the whole message.
- OpenAI-compatible: `POST /v1/chat/completions`. Streaming answers `text/event-stream`
  `data: {"object": "chat.completion.chunk", "choices": [{"delta": {"content"}}]}` events, a
  final chunk with `finish_reason: "stop"`, then `data: [DONE]`; non-streaming answers a
  `chat.completion` object.

Streamed answers use HTTP/1.1 chunked transfer encoding, the content split into several
pieces with a flush (and a short pause) between them, as a real model produces tokens.

The test picks the behaviour with `mock.mode`:
- "answer": content is JSON `{"resources": [{"title": "Mock guide about <topic>", "url":
  "https://example.org/<slug>"}]}` where <topic> is read from the prompt (`resources_for`
  computes the same thing, so a test can tell the resources came from the LLM);
- "fenced": the same JSON inside a ```json fence, with a sentence before it;
- "bare_list": only the list `[{"title", "url"}]`;
- "slow": sleeps `slow_seconds` before sending anything;
- "stall": sends the status line and a first chunk, then sleeps `slow_seconds`;
- "garbage": content that is not JSON;
- "error": HTTP 500 with the provider's error body.
A test produces "down" by pointing Lectern at `closed_port()`, and a few failures before the
mode applies with `fail_next(n, status)` (default 429 "rate limited", with `Retry-After: 1`).

Every call is recorded (thread-safe): `calls(path)`, `count(path)`, `prompts(path)` (the last
user message of each call), `calls_mentioning(text)`, each `Call` with its headers and body;
`max_in_flight` is the most calls answered at once.
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OLLAMA_PATH = "/api/chat"
OPENAI_PATH = "/v1/chat/completions"
MODES = ("answer", "fenced", "bare_list", "slow", "stall", "garbage", "error")

_TOPIC_RE = re.compile(r"resources\s+(?:for|about|on)\s+(.+?)(?:\s+as\s+JSON|[.?!:;\n]|$)",
                       re.IGNORECASE)


def topic_of(prompt: str) -> str:
    """The topic the prompt asks about: the text after 'resources for' up to ' as JSON' or the
    end of the sentence ("List learning resources for {{ topic }} as JSON.", "Suggest two free
    online learning resources for {{ topic }}. Answer ..."), else the whole prompt."""
    m = _TOPIC_RE.search(prompt)
    return (m.group(1) if m else prompt).strip().strip("\"'`")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "topic"


def resources_for(prompt: str) -> list[dict]:
    """The resources the mock answers in "answer" mode for this prompt."""
    topic = topic_of(prompt)
    return [
        {"title": f"Mock guide about {topic}", "url": f"https://example.org/{slug(topic)}"},
        {"title": f"Mock exercises about {topic}", "url": f"https://example.org/{slug(topic)}/exercises"},
    ]


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Call:
    path: str
    headers: dict
    body: object
    prompt: str | None
    user_messages: list = field(default_factory=list)
    mode: str = ""
    at: float = 0.0
    failed_with: int | None = None  # the status of a `fail_next` failure

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    @property
    def stream(self):
        return self.body.get("stream") if isinstance(self.body, dict) else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, fmt, *args):  # keep pytest output clean
        pass

    # ------------------------------------------------------------------ plumbing
    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send_json(self, status: int, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_failure(self, status: int):
        data = json.dumps({"error": {"message": f"mock LLM: failing with {status} on purpose",
                                     "type": "rate_limit_error" if status == 429 else "server_error"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _start_chunked(self, content_type: str):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.flush()

    def _chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_chunked(self):
        # The call stops counting as in flight before its last bytes go out: a client that
        # reads to the end can only see the end after this (so its next call never overlaps).
        self._leave_once()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _leave_once(self):
        if not getattr(self, "_left", True):
            self._left = True
            self.server.mock._leave()

    # ------------------------------------------------------------------ routes
    def do_GET(self):
        if self.path in ("/", "/api/version", "/api/tags", "/v1/models"):
            self._send_json(200, {"status": "mock"})
        else:
            self._send_json(404, {"error": f"no route {self.path}"})

    def do_POST(self):
        mock = self.server.mock
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        call = mock._record(path, self.headers, body)
        mock._enter()
        self._left = False
        try:
            if path == OLLAMA_PATH:
                self._answer(call, body, self._ollama)
            elif path == OPENAI_PATH:
                self._answer(call, body, self._openai)
            else:
                self._send_json(404, {"error": f"mock LLM has no route {path}"})
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout, OSError):
            # Lectern gave up (timeout) and closed the connection: expected in slow modes.
            self.close_connection = True
        finally:
            self._leave_once()

    def _answer(self, call: Call, body, writer):
        mock = self.server.mock
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._send_json(400, {"error": "mock LLM: body must be a JSON object with messages"})
            return
        mode = call.mode
        if mock.delay:
            mock._stopping.wait(mock.delay)
        if mode == "slow":
            mock._stopping.wait(mock.slow_seconds)
        failure = mock._take_failure()
        if failure is not None:
            call.failed_with = failure
            self._send_failure(failure)
            return
        if mode == "error":
            if writer == self._ollama:
                self._send_json(500, {"error": "mock LLM: model runner crashed"})
            else:
                self._send_json(500, {"error": {"message": "mock LLM: internal error",
                                                "type": "server_error", "code": None}})
            return
        content = mock.content_for(mode, call.prompt or "")
        stream = body.get("stream")
        if writer == self._ollama and stream is None:
            stream = True  # Ollama streams unless told otherwise
        writer(body, content, bool(stream), stall=(mode == "stall"))

    def _pieces(self, content: str) -> list[str]:
        n = max(1, self.server.mock.pieces)
        size = max(1, -(-len(content) // n))
        return [content[i:i + size] for i in range(0, len(content), size)] or [""]

    def _ollama(self, body, content: str, stream: bool, stall: bool):
        mock = self.server.mock
        model = body.get("model", "mock")
        now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        final = {"model": model, "created_at": now,
                 "message": {"role": "assistant", "content": ""},
                 "done": True, "done_reason": "stop", "total_duration": 1234567,
                 "load_duration": 1000, "prompt_eval_count": 12, "prompt_eval_duration": 1000,
                 "eval_count": 34, "eval_duration": 100000}
        if not stream:
            whole = dict(final, message={"role": "assistant", "content": content})
            self._send_json(200, whole)
            return
        self._start_chunked("application/x-ndjson")
        for i, piece in enumerate(self._pieces(content)):
            line = {"model": model, "created_at": now,
                    "message": {"role": "assistant", "content": piece}, "done": False}
            self._chunk(json.dumps(line).encode() + b"\n")
            if stall and i == 0:
                mock._stopping.wait(mock.slow_seconds)
            time.sleep(mock.piece_pause)
        self._chunk(json.dumps(final).encode() + b"\n")
        self._end_chunked()

    def _openai(self, body, content: str, stream: bool, stall: bool):
        mock = self.server.mock
        model = body.get("model", "mock")
        ident = f"chatcmpl-mock{mock.count():04d}"
        created = int(time.time())
        if not stream:
            self._send_json(200, {
                "id": ident, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46},
            })
            return

        def event(delta, finish=None):
            chunk = {"id": ident, "object": "chat.completion.chunk", "created": created,
                     "model": model, "system_fingerprint": "fp_mock",
                     "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                  "finish_reason": finish}]}
            self._chunk(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        self._start_chunked("text/event-stream")
        event({"role": "assistant", "content": ""})
        for i, piece in enumerate(self._pieces(content)):
            event({"content": piece})
            if stall and i == 0:
                mock._stopping.wait(mock.slow_seconds)
            time.sleep(mock.piece_pause)
        event({}, "stop")
        self._chunk(b"data: [DONE]\n\n")
        self._end_chunked()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    mock: "LLMMock"


class LLMMock:
    """The mock LLM server; `start()` it (or use it as a context manager), then point Lectern's
    `[llm.<name>] url` at `mock.url` (Ollama) or `mock.url` / `mock.url + "/v1"` (OpenAI)."""

    def __init__(self, mode: str = "answer", slow_seconds: float = 6.0, pieces: int = 5,
                 piece_pause: float = 0.005, delay: float = 0.0):
        self.mode = mode
        self.slow_seconds = slow_seconds
        self.pieces = pieces
        self.piece_pause = piece_pause
        self.delay = delay  # seconds to wait before answering in every mode
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0  # most calls being answered at once
        self._failures: list[int] = []  # statuses for the next calls (fail_next)
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LLMMock":
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.mock = self
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "mock not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ behaviour
    def set_mode(self, mode: str):
        assert mode in MODES, f"unknown mock mode {mode!r}"
        self.mode = mode

    def fail_next(self, count: int, status: int = 429):
        """Answer the next `count` calls with HTTP `status` whatever the mode, then as before."""
        with self._lock:
            self._failures.extend([status] * count)

    def _take_failure(self) -> int | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def content_for(self, mode: str, prompt: str) -> str:
        resources = resources_for(prompt)
        if mode == "fenced":
            return ("Here are some resources:\n```json\n"
                    + json.dumps({"resources": resources}, indent=2) + "\n```\n")
        if mode == "bare_list":
            return json.dumps(resources)
        if mode == "garbage":
            return "Sure! Here are some great resources: the library, a tutor, and practice. {oops"
        return json.dumps({"resources": resources})

    # ------------------------------------------------------------------ records
    def _record(self, path: str, headers, body) -> Call:
        users = []
        if isinstance(body, dict) and isinstance(body.get("messages"), list):
            for m in body["messages"]:
                if isinstance(m, dict) and m.get("role") == "user":
                    c = m.get("content")
                    if isinstance(c, list):  # OpenAI content parts
                        c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
                    users.append(c if isinstance(c, str) else json.dumps(c))
        call = Call(path=path, headers={k.lower(): v for k, v in headers.items()}, body=body,
                    prompt=users[-1] if users else None, user_messages=users,
                    mode=self.mode, at=time.monotonic())
        with self._lock:
            self._calls.append(call)
        return call

    def _enter(self):
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self):
        with self._lock:
            self.in_flight -= 1

    def calls(self, path: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if path is None or c.path == path]

    def count(self, path: str | None = None) -> int:
        return len(self.calls(path))

    def prompts(self, path: str | None = None) -> list[str | None]:
        return [c.prompt for c in self.calls(path)]

    def calls_mentioning(self, text: str, path: str | None = None) -> list[Call]:
        """Calls whose user messages mention `text` (a re-ask may append a correction message,
        so the original prompt is looked for in every user message, not just the last)."""
        return [c for c in self.calls(path) if any(text in (u or "") for u in c.user_messages)]

    def reset(self):
        with self._lock:
            self._calls.clear()
            self.max_in_flight = self.in_flight


if __name__ == "__main__":  # manual poking: python llm_mock.py [mode]
    import sys
    with LLMMock(mode=sys.argv[1] if len(sys.argv) > 1 else "answer") as m:
        print(f"mock LLM on {m.url} (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
