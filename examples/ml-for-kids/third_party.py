#!/usr/bin/env python3
"""A stand-in for a third-party API that children's projects call (Python standard library only):
a small word-facts service that wants an API key, as such services do.

    GET /v1/words/{word}    -> {"word": "elephant", "letters": 8, "vowels": 3, "syllables": 3,
                                "first_letter": "e", "rhymes": ["..."]}
    GET /v1/health          -> {"ok": true}

Every request must carry `X-Api-Key: <the value of WORDS_API_KEY>` (else 401): the key Lectern
keeps on the server, so that it never reaches the children's browsers.

    WORDS_API_KEY=demo-key python third_party.py --port 9100
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

WORDS = ["cat", "hat", "bat", "dog", "log", "frog", "tree", "bee", "sea", "elephant", "rain", "train", "plane",
         "star", "car", "jar", "moon", "spoon", "balloon", "whale", "snail", "tail", "robot", "rocket"]
VOWELS = set("aeiouy")


def syllables(word: str) -> int:
    """Groups of vowels, a silent final e left out: good enough for children's words."""
    groups = len(re.findall(r"[aeiouy]+", word))
    if word.endswith("e") and not word.endswith(("le", "ee")) and groups > 1:
        groups -= 1
    return max(1, groups)


def facts(word: str) -> dict:
    return {"word": word, "letters": len(word), "vowels": sum(1 for c in word if c in VOWELS),
            "syllables": syllables(word), "first_letter": word[0],
            "rhymes": sorted(w for w in WORDS if w != word and w[-2:] == word[-2:])}


def make_server(port: int = 9100, key: str | None = None, host: str = "127.0.0.1") -> ThreadingHTTPServer:
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
            path = urlsplit(self.path).path
            if path == "/v1/health":
                return self.send_json(200, {"ok": True})
            if key is None or self.headers.get("X-Api-Key") != key:
                return self.send_json(401, {"error": "a valid X-Api-Key header is required"})
            match = re.fullmatch(r"/v1/words/([^/]+)", path)
            if not match:
                return self.send_json(404, {"error": "no such endpoint"})
            word = unquote(match.group(1)).strip().lower()
            if not re.fullmatch(r"[a-z]{1,40}", word):
                return self.send_json(400, {"error": "a word is 1 to 40 letters"})
            self.send_json(200, facts(word))

        def log_message(self, format, *args):
            sys.stderr.write("third-party: " + (format % args) + "\n")

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9100, help="port on 127.0.0.1 (0: any free one)")
    args = parser.parse_args()
    key = os.environ.get("WORDS_API_KEY")
    if not key:
        sys.exit("set WORDS_API_KEY to the key this service should want")
    server = make_server(args.port, key)
    print(f"third-party API listening on http://127.0.0.1:{server.server_address[1]}/v1/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
