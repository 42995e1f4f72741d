#!/usr/bin/env python3
"""A stand-in for the school portal's REST API (Python standard library only).

Serves 347 student assessments, always the same ones (a fixed random seed), one page at a time:

    GET /api/assessments?page=N[&per_page=M]     N from 1; M 1-100, default 50
    -> {"data": [assessment, ...], "meta": {"page": N, "per_page": M, "total": 347, "total_pages": 7}}

A page past the last one has an empty `data` list. An assessment:

    {"id": "A0001", "student": {"id": "S017", "class": "4B"}, "subject": "maths",
     "skill": "fractions", "score": 73, "max_score": 100, "assessed_on": "2024-10-14",
     "teacher": {"name": "Ms Okafor"}}

When the environment variable PORTAL_TOKEN is set, every request must carry the header
`Authorization: <the variable's value>` (else 401), as the real portal wants its API token.
`--fail-every N` makes every N-th page answer 503 the first time it is asked (as a busy portal
does), to see Lectern's retries at work.

    PORTAL_TOKEN="Bearer demo-token" python upstream.py --port 9000
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SKILLS = {
    "maths": ["fractions", "decimals", "geometry", "times tables"],
    "reading": ["phonics", "comprehension", "vocabulary"],
    "science": ["plants", "materials", "forces"],
}
CLASSES = ["3A", "3B", "4A", "4B"]
TEACHERS = {"3A": "Mr Dubois", "3B": "Ms Okafor", "4A": "Mrs Lindqvist", "4B": "Mr Haddad"}
PATH = "/api/assessments"


def assessments(count: int = 347, seed: int = 2024) -> list[dict]:
    """The portal's records, the same for the same count and seed."""
    rng = random.Random(seed)
    records = []
    for i in range(1, count + 1):
        subject = rng.choice(sorted(SKILLS))
        student = rng.randint(1, 60)
        klass = CLASSES[student % len(CLASSES)]
        records.append({
            "id": f"A{i:04d}",
            "student": {"id": f"S{student:03d}", "class": klass},
            "subject": subject,
            "skill": rng.choice(SKILLS[subject]),
            "score": rng.randint(20, 100),
            "max_score": 100,
            "assessed_on": f"2024-{rng.randint(9, 12):02d}-{rng.randint(1, 28):02d}",
            "teacher": {"name": TEACHERS[klass]},
        })
    return records


def make_server(port: int = 9000, count: int = 347, fail_every: int = 0, token: str | None = None,
                host: str = "127.0.0.1") -> ThreadingHTTPServer:
    records = assessments(count)
    failed_once: set[int] = set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def send_json(self, status: int, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urlsplit(self.path)
            if url.path == "/health":
                return self.send_json(200, {"ok": True})
            if url.path != PATH:
                return self.send_json(404, {"error": "no such endpoint"})
            if token is not None and self.headers.get("Authorization") != token:
                return self.send_json(401, {"error": "a valid API token is required"})
            query = parse_qs(url.query)
            try:
                page = int(query.get("page", ["1"])[-1])
                per_page = int(query.get("per_page", ["50"])[-1])
            except ValueError:
                return self.send_json(400, {"error": "page and per_page are numbers"})
            if page < 1 or not 1 <= per_page <= 100:
                return self.send_json(400, {"error": "page >= 1, 1 <= per_page <= 100"})
            if fail_every and page % fail_every == 0:
                with lock:
                    first_time = page not in failed_once
                    failed_once.add(page)
                if first_time:
                    return self.send_json(503, {"error": "busy, try again"})
            start = (page - 1) * per_page
            total_pages = (len(records) + per_page - 1) // per_page
            self.send_json(200, {"data": records[start:start + per_page],
                                 "meta": {"page": page, "per_page": per_page, "total": len(records),
                                          "total_pages": total_pages}})

        def log_message(self, format, *args):
            sys.stderr.write("upstream: " + (format % args) + "\n")

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9000, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--count", type=int, default=347, help="how many assessments")
    parser.add_argument("--fail-every", type=int, default=0, help="every N-th page answers 503 once")
    args = parser.parse_args()
    server = make_server(args.port, args.count, args.fail_every, os.environ.get("PORTAL_TOKEN"))
    print(f"upstream listening on http://127.0.0.1:{server.server_address[1]}{PATH}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
