"""Load generator and report of bench/ocr.sh (issue 17): photo -> OCR -> analysis -> lookup.

Renders the clean pages of tests/python/ocr_pages.page_sets() to PNG once, then for each server
given (already running; bench/ocr.sh starts them):
  1. checks its answers: one request per page, the word accuracy of the answer's "text" against
     the page's sentences (ocr_pages.word_accuracy), and how far its word list agrees with the
     other server's (difflib on the "word" values);
  2. for each concurrency C: WARMUP seconds unmeasured, then SECONDS seconds measured, C client
     threads (one requests.Session each, a closed loop: the next page as soon as the answer is
     in), pages sent round-robin, each thread from its own offset. Pages/s = answered pages /
     measured time; p50 and p95 of the per-request latency; errors (non-200 answers) counted.
Prints one row per server and concurrency, then Lectern / peer (pages/s) and peer / Lectern
(p50), each > 1 when Lectern is better. --json PATH writes the numbers too.

  python bench/ocr_bench.py --peer http://127.0.0.1:P [--lectern http://127.0.0.1:Q]
         [--seconds 30] [--warmup 5] [--concurrency 1 2]

Requests: peer     POST /read                    multipart file part "photo" (PNG)
          Lectern  POST /v1/pipelines/read-page  multipart file part "photo" (PNG)
Both answer {"text": "...", "words": [{"word", ...}, ...]}.
"""

import argparse
import difflib
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "python"))
import ocr_pages  # noqa: E402

ROUTES = {"peer": "/read", "lectern": "/v1/pipelines/read-page"}


def post_page(session: requests.Session, url: str, png: bytes, timeout: float = 60.0):
    return session.post(url, files={"photo": ("page.png", png, "image/png")}, timeout=timeout)


def check_answers(name: str, url: str, pages: list, pngs: list) -> dict:
    """One request per page; word accuracy of the answer's text against the sentences."""
    session = requests.Session()
    matched = total = 0.0
    words_per_page = []
    for lines, png in zip(pages, pngs):
        resp = post_page(session, url, png)
        if resp.status_code != 200:
            raise SystemExit(f"{name}: {url} answered {resp.status_code}: {resp.text[:300]}")
        body = resp.json()
        expected = ocr_pages.page_text(lines)
        n = len(ocr_pages.split_words(expected))
        # The answer's text; its words joined when it has no text.
        text = body.get("text")
        if text is None:
            text = " ".join(w.get("word", "") for w in body.get("words", []))
        matched += ocr_pages.word_accuracy(expected, [text]) * n
        total += n
        words_per_page.append([w.get("word", "") for w in body.get("words", [])])
    return {"accuracy": matched / total, "words": words_per_page}


def agreement(a: list, b: list) -> float:
    """Share of the words of `a` found, in order, in `b`, over all pages."""
    m = n = 0
    for wa, wb in zip(a, b):
        sm = difflib.SequenceMatcher(None, wa, wb, autojunk=False)
        m += sum(block.size for block in sm.get_matching_blocks())
        n += len(wa)
    return m / n if n else 1.0


def load(url: str, pngs: list, concurrency: int, warmup: float, seconds: float) -> dict:
    """Closed-loop load with `concurrency` threads; latencies of the measured window only."""
    lock = threading.Lock()
    latencies: list = []
    errors = [0]
    phase = {"measure": False, "stop": False}

    def worker(k: int):
        session = requests.Session()
        i = k * max(1, len(pngs) // max(1, concurrency))
        while not phase["stop"]:
            png = pngs[i % len(pngs)]
            i += 1
            t0 = time.perf_counter()
            try:
                ok = post_page(session, url, png).status_code == 200
            except requests.RequestException:
                ok = False
            dt = time.perf_counter() - t0
            if phase["measure"] and not phase["stop"]:
                with lock:
                    if ok:
                        latencies.append(dt)
                    else:
                        errors[0] += 1

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    time.sleep(warmup)
    phase["measure"] = True
    start = time.perf_counter()
    time.sleep(seconds)
    phase["stop"] = True
    elapsed = time.perf_counter() - start
    for t in threads:
        t.join(timeout=120)
    lat = sorted(latencies)

    def pct(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {
        "concurrency": concurrency,
        "pages": len(lat),
        "errors": errors[0],
        "seconds": elapsed,
        "pages_per_s": len(lat) / elapsed,
        "p50_ms": statistics.median(lat) * 1000 if lat else float("nan"),
        "p95_ms": pct(0.95),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description="OCR pipeline benchmark (bench/ocr.sh)")
    ap.add_argument("--peer", help="base URL of bench/ocr_peer.py")
    ap.add_argument("--lectern", help="base URL of Lectern serving examples/vocabulary-junior")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    servers = {name: base.rstrip("/") + ROUTES[name]
               for name, base in (("lectern", args.lectern), ("peer", args.peer)) if base}
    if not servers:
        ap.error("give --peer and/or --lectern")

    pages = ocr_pages.page_sets()
    pngs = [ocr_pages.render_page(lines) for lines in pages]
    words = sum(len(ocr_pages.split_words(ocr_pages.page_text(p))) for p in pages)
    print(f"pages: {len(pngs)} clean PNG pages (DejaVuSans 34 px), {words} words, "
          f"{sum(len(b) for b in pngs) // len(pngs) // 1024} KiB on average", flush=True)

    results: dict = {"pages": len(pngs), "words": words, "servers": {}}
    checks = {}
    for name, url in servers.items():
        checks[name] = check_answers(name, url, pages, pngs)
        print(f"{name:8s} word accuracy of its text against the sentences: "
              f"{checks[name]['accuracy'] * 100:.1f}%", flush=True)
        results["servers"][name] = {"accuracy": checks[name]["accuracy"], "runs": []}
    if len(checks) == 2:
        agree = agreement(checks["peer"]["words"], checks["lectern"]["words"])
        print(f"word lists: {agree * 100:.1f}% of the peer's words are in Lectern's, in order",
              flush=True)
        results["agreement"] = agree

    for name, url in servers.items():
        for c in args.concurrency:
            r = load(url, pngs, c, args.warmup, args.seconds)
            results["servers"][name]["runs"].append(r)
            print(f"{name:8s} concurrency {c}: {r['pages_per_s']:6.2f} pages/s  "
                  f"p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms  "
                  f"({r['pages']} pages, {r['errors']} errors, {r['seconds']:.0f} s)", flush=True)

    print()
    print(f"{'server':8s} {'conc':>4s} {'pages/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s} {'errors':>6s}")
    for name, res in results["servers"].items():
        for r in res["runs"]:
            print(f"{name:8s} {r['concurrency']:4d} {r['pages_per_s']:8.2f} {r['p50_ms']:8.1f} "
                  f"{r['p95_ms']:8.1f} {r['errors']:6d}")
    if len(results["servers"]) == 2:
        print()
        for lr, pr in zip(results["servers"]["lectern"]["runs"], results["servers"]["peer"]["runs"]):
            tput = lr["pages_per_s"] / pr["pages_per_s"] if pr["pages_per_s"] else float("nan")
            lat = pr["p50_ms"] / lr["p50_ms"] if lr["p50_ms"] else float("nan")
            print(f"concurrency {lr['concurrency']}: throughput Lectern/peer {tput:.2f}x, "
                  f"p50 peer/Lectern {lat:.2f}x")
    else:
        print("\n(one server only: no ratio)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    bad = [n for n, res in results["servers"].items() if any(r["errors"] or not r["pages"] for r in res["runs"])]
    if bad:
        print(f"errors or no answers from: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
