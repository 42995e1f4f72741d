"""Headless Chromium for the dashboard's browser tests, driven with Playwright.

Playwright (the PyPI package `playwright`, in tests/requirements.txt) drives Debian's
Chromium (`/usr/bin/chromium`, apt package `chromium`; `LECTERN_CHROMIUM` names another):
`playwright install` is never run (it downloads a browser build, which cannot be fetched here).
Under CI (`CI=true`) a missing Chromium or Playwright fails the tests that need it (it never
skips them); elsewhere they are skipped with the reason.

Fixtures (import them into the test module: `from browser import chromium, page, new_page`):
- `chromium`: one browser for the session.
- `page`: a new browser context (its own cookies) and page per test; dialogs (alert, confirm)
  are recorded and dismissed, console messages and uncaught page errors recorded; see
  `page_log(page)` and `assert_page_healthy(page)`. At teardown the page's last state is
  saved as `screenshots/last-<test>.png`.
- `new_page`: a factory of more pages, each in a context of its own (a second user).

`screenshot(page, name)` saves `tests/python/screenshots/<name>.png` (full page) and returns
its path; the folder is ignored by git.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import under_ci

try:  # checked by the `chromium` fixture, so that collection never fails on it
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright
except ImportError as e:  # pragma: no cover - the requirement is missing
    sync_playwright = None
    PlaywrightError = Exception
    _IMPORT_ERROR = str(e)
else:
    _IMPORT_ERROR = ""

CHROMIUM = Path(os.environ.get("LECTERN_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
TIMEOUT_MS = 30_000
VIEWPORT = {"width": 1280, "height": 900}


def _unavailable(why: str):
    if under_ci():
        pytest.fail(f"the browser tests cannot run under CI: {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def chromium():
    if sync_playwright is None:
        _unavailable(f"the Python package playwright is not installed ({_IMPORT_ERROR}); "
                     "pip install -r tests/requirements.txt")
    if not CHROMIUM.exists():
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set LECTERN_CHROMIUM)")
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    except BaseException:
        pw.stop()
        raise
    yield browser
    try:
        browser.close()
    finally:
        pw.stop()


@dataclass
class PageLog:
    dialogs: list[str] = field(default_factory=list)        # "type: message"
    console: list[tuple[str, str]] = field(default_factory=list)  # (type, text)
    errors: list[str] = field(default_factory=list)         # uncaught exceptions in the page


_LOGS: dict[int, PageLog] = {}


def page_log(page) -> PageLog:
    return _LOGS[id(page)]


def _open_page(browser):
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    page = context.new_page()
    log = PageLog()
    _LOGS[id(page)] = log

    def on_dialog(dialog):
        log.dialogs.append(f"{dialog.type}: {dialog.message}")
        try:
            dialog.dismiss()
        except PlaywrightError:
            pass

    page.on("dialog", on_dialog)
    page.on("console", lambda m: log.console.append((m.type, m.text)))
    page.on("pageerror", lambda e: log.errors.append(str(e)))
    return context, page


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:120] or "page"


@pytest.fixture
def page(chromium, request):
    context, pg = _open_page(chromium)
    yield pg
    try:
        screenshot(pg, f"last-{request.node.name}")
    except Exception:  # noqa: BLE001 - a closed page has nothing to show
        pass
    _LOGS.pop(id(pg), None)
    context.close()


@pytest.fixture
def new_page(chromium):
    opened = []

    def make():
        context, pg = _open_page(chromium)
        opened.append((context, pg))
        return pg

    yield make
    for context, pg in opened:
        _LOGS.pop(id(pg), None)
        try:
            context.close()
        except PlaywrightError:
            pass


def screenshot(page, name: str) -> Path:
    """Saves the whole page as tests/python/screenshots/<name>.png; returns the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{_safe_name(name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def assert_page_healthy(page, allow_dialogs: bool = False):
    """No dialog opened (unless allowed), no uncaught script error, and nothing refused by the
    page's Content-Security-Policy (an inline style or script the policy blocks)."""
    log = page_log(page)
    if not allow_dialogs:
        assert not log.dialogs, f"dialogs opened: {log.dialogs}"
    assert not log.errors, f"uncaught errors in the page's script: {log.errors}"
    refused = [text for kind, text in log.console if "Content Security Policy" in text]
    assert not refused, "the page's own Content-Security-Policy refused some of it:\n" + "\n".join(refused)


def wait_for(page, expression: str, what: str, timeout: float = 60.0):
    """Evaluates the JavaScript `expression` in the page until it is truthy (the page may
    reload or navigate meanwhile); returns its value, fails the test with `what` otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = page.evaluate(expression)
            if last:
                return last
        except PlaywrightError as e:  # a navigation or reload in progress
            last = f"({str(e).splitlines()[0]})"
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s (last value {last!r}, at {page.url})")
        page.wait_for_timeout(250)


def submit(page, form_selector: str):
    """Clicks the submit button of a form and waits for the page it leads to."""
    button = page.locator(f"{form_selector} button[type=submit], {form_selector} input[type=submit], "
                          f"{form_selector} button:not([type])").first
    with page.expect_navigation():
        button.click()


def fill_field(page, selector: str, value: str):
    """Types `value` into an input or textarea, or chooses it in a select."""
    el = page.locator(selector).first
    tag = el.evaluate("e => e.tagName.toLowerCase()")
    if tag == "select":
        el.select_option(value)
    else:
        el.fill(value)
