"""The LLM answer cache is bounded, expires, and the LLM client retries rate-limited calls
(docs/contract.md, "Pipelines and LLM helpers": `cache_ttl_s`, `cache_max_entries`, `retries`,
`backoff_ms`).

Each test runs the real binary with a config whose only pipeline, `advice`, asks the LLM
`[llm.tutor]` about every item of `skills`; the LLM is `llm_mock.LLMMock` (Ollama's wire format).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import requests

from llm_mock import OLLAMA_PATH, LLMMock, resources_for

REPO_ROOT = Path(__file__).resolve().parents[2]
SKILL_COACH = REPO_ROOT / "examples" / "skill-coach"
PROMPT = "List learning resources for {{ topic }} as JSON."


def prompt_for(skill: str) -> str:
    return PROMPT.replace("{{ topic }}", skill)


def write_config(folder: Path, llm_url: str, **tutor) -> Path:
    """A config over a copy of the skill-coach models and catalog, with `[llm.tutor]` at
    `llm_url` (settings in `tutor` override the defaults below) and the `advice` pipeline."""
    shutil.copytree(SKILL_COACH / "models", folder / "models")
    shutil.copy(SKILL_COACH / "resources.toml", folder / "resources.toml")
    settings = {"provider": "ollama", "url": llm_url, "model": "mock", "timeout_ms": 5000,
                "retries": 1, "backoff_ms": 50, "concurrency": 4, "catalog": "resources.toml"}
    settings.update(tutor)
    lines = ['[repository]', 'models = "models"', '', '[llm.tutor]']
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    lines += [
        "",
        "[pipelines.advice]",
        'for_each = "skills"',
        "steps = [",
        f'  {{ id = "advice", llm = "tutor", topic = "input.skill", prompt = {json.dumps(PROMPT)} }},',
        "]",
        'shape = { skill = "input.skill", source = "advice.source", resources = "advice.resources", '
        'reason = "advice.reason" }',
    ]
    path = folder / "lectern.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def llm_mock():
    # One piece per answer and no pause: tens of thousands of calls must go fast.
    mock = LLMMock(pieces=1, piece_pause=0.0).start()
    yield mock
    mock.stop()


@pytest.fixture
def advice_server(tmp_path, start_config_server, llm_mock):
    """`advice_server(**tutor)` -> a server whose `[llm.tutor]` talks to the mock."""
    counter = [0]

    def start(**tutor):
        counter[0] += 1
        folder = tmp_path / f"advice{counter[0]}"
        folder.mkdir()
        return start_config_server(write_config(folder, llm_mock.url, **tutor))

    return start


def advise(server, skills: list[str], timeout: float = 120) -> list[dict]:
    """The `advice` pipeline's results for `skills`, checked to be one per skill, in order."""
    resp = requests.post(f"{server.url}/v1/pipelines/advice", json={"skills": [{"skill": s} for s in skills]},
                         timeout=timeout)
    assert resp.status_code == 200, (
        f"POST /v1/pipelines/advice: {resp.status_code} {resp.text[:500]!r}\n"
        f"--- server stderr (tail) ---\n{server.stderr_text()[-3000:]}"
    )
    results = resp.json()["results"]
    assert [r["skill"] for r in results] == skills, "results out of order or missing"
    return results


def assert_from_llm(result: dict):
    assert result["source"] == "llm", f"{result['skill']}: answered from the catalog: {result.get('reason')!r}"
    assert result["resources"] == resources_for(prompt_for(result["skill"])), (
        f"{result['skill']}: {result['resources']!r} is not the LLM's answer"
    )


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


# =========================================================================== bounded cache

CAP = 1_000
PER_REQUEST = 1_000
EARLY_PROMPTS = 5_000
TOTAL_PROMPTS = 50_000
# With a cap of 1,000 the cache holds at most ~1 MB (a prompt, two resources and moka's entry:
# well under 1 KB each). 12 MB leaves room for the allocator's own growth (per-thread arenas,
# fragmentation) and is far below what the 45,000 prompts sent after the first 5,000 cost an
# unbounded cache (~0.9 KB each: ~40 MB).
GROWTH_BOUND_KB = 12 * 1024


def test_fifty_thousand_distinct_prompts_leave_memory_bounded_by_the_cache_cap(advice_server, llm_mock):
    srv = advice_server(cache_max_entries=CAP, concurrency=8)
    pid = srv.proc.pid
    rss = {}
    started = time.monotonic()
    for first in range(0, TOTAL_PROMPTS, PER_REQUEST):
        skills = [f"skill {n}" for n in range(first, first + PER_REQUEST)]
        results = advise(srv, skills)
        for result in results[:: PER_REQUEST // 10]:
            assert_from_llm(result)
        assert sum(r["source"] == "llm" for r in results) == PER_REQUEST, "some answers came from the catalog"
        # Every prompt is new: each is asked exactly once.
        assert llm_mock.count(OLLAMA_PATH) == PER_REQUEST, f"{llm_mock.count(OLLAMA_PATH)} calls for {PER_REQUEST} prompts"
        llm_mock.reset()
        done = first + PER_REQUEST
        if done in (EARLY_PROMPTS, TOTAL_PROMPTS):
            rss[done] = rss_kb(pid)
    elapsed = time.monotonic() - started
    growth = rss[TOTAL_PROMPTS] - rss[EARLY_PROMPTS]
    print(f"RSS after {EARLY_PROMPTS} prompts: {rss[EARLY_PROMPTS] / 1024:.1f} MB, after {TOTAL_PROMPTS}: "
          f"{rss[TOTAL_PROMPTS] / 1024:.1f} MB (growth {growth / 1024:.1f} MB); {TOTAL_PROMPTS / elapsed:.0f} prompts/s")
    assert growth < GROWTH_BOUND_KB, (
        f"resident memory grew {growth / 1024:.1f} MB from prompt {EARLY_PROMPTS} to {TOTAL_PROMPTS} with "
        f"cache_max_entries = {CAP} (bound {GROWTH_BOUND_KB / 1024:.0f} MB): the cache is not bounded"
    )


# =========================================================================== TTL

def test_an_answer_is_asked_again_after_its_ttl(advice_server, llm_mock):
    srv = advice_server(cache_ttl_s=1)
    assert_from_llm(advise(srv, ["fractions"])[0])
    assert_from_llm(advise(srv, ["fractions"])[0])
    assert llm_mock.count(OLLAMA_PATH) == 1, "the second identical prompt within the TTL called the LLM"
    time.sleep(1.5)
    assert_from_llm(advise(srv, ["fractions"])[0])
    assert llm_mock.count(OLLAMA_PATH) == 2, "the answer was not asked again after cache_ttl_s"


@pytest.mark.parametrize("setting", [{"cache_ttl_s": 0}, {"cache_max_entries": 0}], ids=["ttl-0", "cap-0"])
def test_a_zero_ttl_or_cap_caches_nothing(setting, advice_server, llm_mock):
    srv = advice_server(**setting)
    for n in range(1, 4):
        assert_from_llm(advise(srv, ["fractions"])[0])
        assert llm_mock.count(OLLAMA_PATH) == n, f"{setting}: request {n} was answered from a cache"


def test_identical_prompts_in_flight_share_one_call_even_without_a_cache(advice_server, llm_mock):
    llm_mock.delay = 0.3
    srv = advice_server(cache_ttl_s=0)
    results = advise(srv, ["fractions"] * 20)
    for result in results:
        assert_from_llm(result)
    assert llm_mock.count(OLLAMA_PATH) == 1, f"{llm_mock.count(OLLAMA_PATH)} calls for 20 identical prompts in flight"


# =========================================================================== retries on 429

def test_a_rate_limited_call_is_retried_with_exponential_backoff(advice_server, llm_mock):
    backoff_s = 0.3
    srv = advice_server(retries=2, backoff_ms=int(backoff_s * 1000))
    llm_mock.fail_next(2, status=429)
    assert_from_llm(advise(srv, ["fractions"])[0])
    calls = llm_mock.calls(OLLAMA_PATH)
    assert [c.failed_with for c in calls] == [429, 429, None], "not two 429s then an answer"
    assert all(c.prompt == prompt_for("fractions") for c in calls)
    gaps = [later.at - earlier.at for earlier, later in zip(calls, calls[1:])]
    # backoff_ms, then twice that (a little slack for the clocks, none for skipping the wait).
    assert gaps[0] >= backoff_s * 0.9, f"the first retry came {gaps[0]:.3f} s after the 429"
    assert gaps[1] >= 2 * backoff_s * 0.9, f"the second retry came {gaps[1]:.3f} s after the second 429 (not doubled)"
    assert gaps[1] < 2 * backoff_s + 2.0, f"the second retry waited {gaps[1]:.3f} s"


def test_when_the_retries_are_spent_the_catalog_answers_and_nothing_is_cached(advice_server, llm_mock):
    srv = advice_server(retries=1, backoff_ms=50)
    llm_mock.fail_next(2, status=429)
    result = advise(srv, ["fractions"])[0]
    assert result["source"] == "catalog", f"expected the catalog after two 429s: {result!r}"
    assert "429" in (result["reason"] or ""), f"the reason does not name the 429: {result['reason']!r}"
    assert result["resources"], "the catalog gave no resources"
    assert llm_mock.count(OLLAMA_PATH) == 2, "retries = 1 must make exactly two calls"
    # The failure was not cached: the next identical prompt asks again and gets the LLM's answer.
    assert_from_llm(advise(srv, ["fractions"])[0])
    assert llm_mock.count(OLLAMA_PATH) == 3
