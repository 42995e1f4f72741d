"""The dashboard in a real browser (headless Chromium through Playwright, see browser.py), end
to end, with a screenshot of each page in tests/python/screenshots/ (docs/contract.md, "The
dashboard (issue 14)").

- Sign in with an API key through the form and visit every page (the script's live refresh of
  the models table included).
- Train from a CSV uploaded on /ui/training, until `#progress` is 100 and the tree is shown.
- The try-it form of a bundled model (the labels onnxruntime predicts).
- The skill coach's class view (examples/skill-coach, its LLM played by llm_mock.py): a class
  CSV through `#csv`, `#results` with the weak skills highlighted (from `[dashboard]
  highlight`) and their resources as links, sorting, the `#download` CSV, an explicit
  highlight, and results private to their session.
- ML for Kids: two children sign in through the OIDC issuer (oidc_issuer.py) in the browser,
  each makes a project, trains it, reads the accuracy and tree, tries it; neither sees the
  other's project; a label holding HTML stays text and runs nothing.
- HTML in an uploaded dataset stays text.
Every page must also run without a script error or anything its CSP refuses.
"""
from __future__ import annotations

import csv
import io
import json
import re
import secrets

import numpy as np
import pytest

from browser import (assert_page_healthy, chromium, fill_field, new_page, page, page_log, screenshot,  # noqa: F401
                     submit, wait_for)
from conftest import EXAMPLE_MODELS, LecternServer
from lectern_dashboard import (KeyedWorld, Ui, add_first_keys, animals_rows, close_kids_world, csv_text, describe,
                               project_dataset, start_keyed_world, start_kids_world, unique)
from lectern_training import iris_csv
from lectern_v2 import iris_x, json_input, labels_file, model_file, ort_reference
from llm_mock import LLMMock, resources_for
from test_pipelines import (AVERAGE, SKILL_COACH, STRONG, WEAK, copy_example, load_config, reference_strengths,
                            toml_dumps, tutor_settings)

JOB_TIMEOUT_S = 120
XSS = "<img src=x onerror=alert(1)>"


# =========================================================================== servers

@pytest.fixture(scope="module")
def bworld(tmp_path_factory):
    w = start_keyed_world(tmp_path_factory.mktemp("dashboard-browser"))
    yield w
    w.srv.cleanup()


@pytest.fixture(scope="module")
def coach(tmp_path_factory):
    """examples/skill-coach, its LLM the mock, weak strengths highlighted by default, with keys."""
    root = tmp_path_factory.mktemp("dashboard-coach")
    mock = LLMMock().start()
    try:
        folder = copy_example(SKILL_COACH, root / "skill-coach")
        doc = load_config(folder)
        doc["llm"]["tutor"].update(tutor_settings("ollama", mock.url, timeout_ms=5000))
        doc.setdefault("dashboard", {})["highlight"] = {"skill-report": "strength=weak"}
        config = folder / "dashboard.toml"
        config.write_text(toml_dumps(doc))
        data = root / "data"
        data.mkdir()
        srv = LecternServer(None, data, extra_args=["--config", str(config)])
        world = KeyedWorld(srv)
        try:
            add_first_keys(srv, world)
            yield world
        finally:
            srv.cleanup()
    finally:
        mock.stop()


@pytest.fixture(scope="module")
def kids(tmp_path_factory):
    w = start_kids_world(tmp_path_factory.mktemp("dashboard-browser-kids"))
    yield w
    close_kids_world(w)


# =========================================================================== helpers

def goto(page, url: str, status: int = 200):
    resp = page.goto(url)
    assert resp is not None and resp.status == status, f"{url}: {resp.status if resp else None} (wanted {status})"
    return resp


def sign_in_with_key(page, base: str, key: str, start: str = "/ui/models", shot: str | None = None):
    """Opens `start` signed out (redirected to the sign-in page), signs in with the form."""
    page.goto(base + start)
    assert "/ui/login" in page.url, f"{start} signed out did not lead to the sign-in page: {page.url}"
    if shot:
        screenshot(page, shot)
    page.fill("#login-key [name=api_key]", key)
    submit(page, "#login-key")
    assert page.url == base + start, f"after signing in: {page.url} (wanted {base + start})"


def sign_in_with_oidc(page, kids, username: str, shot_prefix: str):
    page.goto(kids.url + "/ui/login")
    screenshot(page, f"{shot_prefix}-login")
    with page.expect_navigation(url=re.compile(re.escape(kids.issuer.authorization_endpoint) + r"\?.*")):
        page.click("#login-oidc")
    screenshot(page, f"{shot_prefix}-identity-provider")
    page.fill("input[name=username]", username)
    page.click("#approve")
    page.wait_for_url(lambda url: url.startswith(kids.url) and "/ui/oidc/" not in url and "/ui/login" not in url)
    cookies = {c["name"]: c for c in page.context.cookies(kids.url)}
    assert "lectern_session" in cookies and cookies["lectern_session"]["httpOnly"], cookies.keys()


def table_data(page, selector: str):
    """{"header": [th texts], "rows": [{"cls", "cells", "links"}]} of a table, or None."""
    return page.evaluate("""sel => {
        const t = document.querySelector(sel);
        if (!t) return null;
        const trs = [...t.querySelectorAll('tr')];
        const head = trs.find(r => r.querySelector('th') && !r.querySelector('td'));
        return {
          header: head ? [...head.querySelectorAll('th')].map(c => c.innerText.trim()) : [],
          rows: trs.filter(r => r.querySelector('td')).map(r => ({
            cls: [...r.classList],
            cells: [...r.querySelectorAll('td,th')].map(c => c.innerText.trim()),
            links: [...r.querySelectorAll('a[href]')].map(a => ({href: a.getAttribute('href'), text: a.innerText.trim()})),
          })),
        };
    }""", selector)


def column(header: list[str], name: str) -> int:
    for i, text in enumerate(header):
        words = re.findall(r"[a-z0-9_]+", text.lower())
        if words and words[0] == name:
            return i
    raise AssertionError(f"no column {name!r} in {header}")


def iris_rows_text(indices) -> tuple[str, np.ndarray]:
    rows = iris_x()[list(indices)]
    typed = "; ".join(", ".join(f"{v:.1f}" for v in row) for row in rows)
    x = np.array([[float(f"{v:.1f}") for v in row] for row in rows], dtype=np.float32)
    return typed, x


# =========================================================================== sign-in, pages

def test_sign_in_with_a_key_and_visit_every_page(page, bworld):
    base = bworld.url
    sign_in_with_key(page, base, bworld.keys["admin"], "/ui/models", shot="key-sign-in")
    screenshot(page, "models")
    assert page.locator("table#models tr[data-model='iris-logreg']").count() == 1
    cookies = {c["name"]: c for c in page.context.cookies(base)}
    session = cookies.get("lectern_session")
    assert session and session["httpOnly"] and session["sameSite"] == "Lax", session
    assert "lectern_session" not in page.evaluate("document.cookie"), "the session cookie is readable by scripts"
    assert page.evaluate("[...document.styleSheets].some(s => (s.href || '').endsWith('/ui/assets/lectern.css'))"), \
        "the stylesheet is not applied"

    # the script refreshes the rate every 2 s from /ui/stats
    cell = page.locator("table#models tr[data-model='iris-logreg'] .rate")
    before = cell.inner_text()
    body = {"inputs": [json_input("X", iris_x()[:2], "FP32")]}
    for _ in range(30):
        resp = bworld.api("POST", "/v2/models/iris-logreg/infer", "client", json=body)
        assert resp.status_code == 200, describe(resp)
    wait_for(page, f"""(() => {{
        const c = document.querySelector("table#models tr[data-model='iris-logreg'] .rate");
        return c && c.innerText.trim() !== {json.dumps(before.strip())};
    }})()""", "the models table's rate is refreshed by the script", timeout=15)
    screenshot(page, "models-refreshed")

    ds = unique("visit")
    bworld.api("POST", f"/v1/datasets/{ds}", "trainer", data=iris_csv(), headers={"Content-Type": "text/csv"})
    for path, shot in (("/", "overview"), ("/ui/models/iris-logreg", "model"), ("/ui/pipelines", "pipelines"),
                       ("/ui/datasets", "datasets"), (f"/ui/datasets/{ds}", "dataset"), ("/ui/training", "training"),
                       ("/ui/jobs", "jobs"), ("/ui/audit", "audit"), ("/ui/keys", "keys")):
        goto(page, base + path)
        screenshot(page, shot)
    goto(page, base + f"/ui/datasets/{ds}")
    assert page.locator("svg.chart").count() == 5, "one chart per column of iris"
    assert_page_healthy(page)


def test_train_from_an_uploaded_csv_until_100_percent_and_the_tree(page, bworld):
    base = bworld.url
    sign_in_with_key(page, base, bworld.keys["trainer"], "/ui/training")
    screenshot(page, "training-form")
    ds, model = unique("iris-browser"), unique("iris-tree-browser")
    page.set_input_files("#train input[type=file]", files=[{"name": "iris.csv", "mimeType": "text/csv",
                                                              "buffer": iris_csv()}])
    fill_field(page, "#train [name=dataset]", ds)
    fill_field(page, "#train [name=target]", "species")
    fill_field(page, "#train [name=model]", model)
    fill_field(page, "#train [name=algorithm]", "decision_tree")
    submit(page, "#train")
    m = re.fullmatch(re.escape(base) + r"/ui/training/([^/?#]+)", page.url)
    assert m, f"the training form led to {page.url}"
    job_id = m.group(1)
    screenshot(page, "training-job")
    wait_for(page, "(() => { const p = document.querySelector('#progress'); return !!p && p.value === 100; })()",
             "the progress bar reaches 100", timeout=JOB_TIMEOUT_S)
    wait_for(page, "(() => { const i = document.querySelector('img.picture[alt=tree]');"
                   " return !!i && i.complete && i.naturalWidth > 0; })()", "the tree picture is shown", timeout=30)
    screenshot(page, "training-job-done")
    assert "100%" in page.inner_text("body")
    job = bworld.api("GET", f"/v1/training-jobs/{job_id}", "trainer").json()
    assert job["state"] == "succeeded" and job["model"] == model and job["dataset"] == ds, job
    src = page.get_attribute("img.picture[alt=tree]", "src")
    picture = page.request.get(base + src)
    assert picture.status == 200 and picture.headers["content-type"].startswith("image/svg+xml"), picture.headers
    assert_page_healthy(page)


def test_the_try_it_form_shows_the_labels_onnxruntime_predicts(page, bworld):
    base = bworld.url
    sign_in_with_key(page, base, bworld.keys["client"], "/ui/models/iris-logreg")
    screenshot(page, "try-it-form")
    typed, x = iris_rows_text([0, 130])
    version = max(int(v) for v in bworld.api("GET", "/v2/models/iris-logreg", "client").json()["versions"])
    labels = labels_file(EXAMPLE_MODELS, "iris-logreg")
    expected = [labels[i] for i in ort_reference(model_file(EXAMPLE_MODELS, "iris-logreg", version), {"X": x})["output_label"]]
    fill_field(page, '#try [name="input.X"]', typed)
    submit(page, "#try")
    result = page.locator("#try-result")
    assert result.is_visible(), "no #try-result"
    text = result.inner_text()
    positions = [text.find(label) for label in expected]
    assert all(p >= 0 for p in positions), f"{expected} not all in {text!r}"
    screenshot(page, "try-it-result")
    assert_page_healthy(page)


# =========================================================================== the skill coach's class view

CLASS = [("Ada", "fractions", WEAK, 0), ("Ben", "algebra", STRONG, 0), ("Cleo", "decimals", AVERAGE, 3),
         ("Dev", "geometry", WEAK, 4), ("Eli", "fractions", STRONG, -2), ("Fay", "decimals", AVERAGE, -3),
         ("Gus", "algebra", WEAK, 2)]


def class_csv() -> tuple[str, dict[str, dict]]:
    """The class CSV (scores varied so that they sort) and, per student, the row and its
    strength as onnxruntime computes it from the example's model."""
    items = []
    for student, skill, base, delta in CLASS:
        items.append({"student": student, "skill": skill, **base, "score": base["score"] + delta})
    strengths, _ = reference_strengths(items)
    header = ["student", "skill", "score", "attempts", "time_spent", "hints"]
    text = csv_text(header, [[it[h] for h in header] for it in items])
    expected = {it["student"]: {**it, "strength": s} for it, s in zip(items, strengths)}
    assert {"weak"} < set(strengths), f"the class needs weak and other rows: {strengths}"
    return text, expected


def results_by_student(data) -> dict[str, dict]:
    i = column(data["header"], "student")
    return {row["cells"][i]: row for row in data["rows"]}


def scores(data) -> list[float]:
    i = column(data["header"], "score")
    return [float(row["cells"][i]) for row in data["rows"]]


def test_the_skill_coach_class_view(page, coach):
    base = coach.url
    text, expected = class_csv()
    sign_in_with_key(page, base, coach.keys["trainer"], "/ui/pipelines/skill-report", shot="coach-sign-in")
    screenshot(page, "coach-pipeline")
    page.set_input_files("#csv input[type=file]", files=[{"name": "class.csv", "mimeType": "text/csv",
                                                            "buffer": text.encode()}])
    submit(page, "#csv")
    m = re.fullmatch(re.escape(base) + r"(/ui/pipelines/skill-report/results/[^/?#]+)", page.url)
    assert m, f"the CSV form led to {page.url}"
    results_path = m.group(1)
    page.wait_for_selector("#results")
    screenshot(page, "coach-results")
    data = table_data(page, "#results")
    header_words = [re.findall(r"[a-z0-9_]+", h.lower())[:1] for h in data["header"]]
    for name in ("student", "skill", "score", "attempts", "time_spent", "hints", "strength", "resources"):
        assert [name] in header_words, f"no column {name} in {data['header']}"
    rows = results_by_student(data)
    assert set(rows) == set(expected), f"rows {sorted(rows)}, students {sorted(expected)}"
    strength = column(data["header"], "strength")
    for student, row in rows.items():
        want = expected[student]
        assert row["cells"][strength] == want["strength"], f"{student}: {row['cells']} (onnxruntime: {want['strength']})"
        weak = want["strength"] == "weak"
        assert ("highlight" in row["cls"]) == weak, f"{student} ({want['strength']}): classes {row['cls']}"
        links = [(a["href"], a["text"]) for a in row["links"]]
        if weak:
            wanted = [(r["url"], r["title"]) for r in resources_for(f"List learning resources for {want['skill']} as JSON.")]
            assert links == wanted, f"{student}: links {links}, the LLM's resources {wanted}"
        else:
            assert not links and "Well done!" in row["cells"], f"{student}: {row}"
    # sorting by a header (the script in place, or the server through the link)
    original = scores(data)
    header_link = page.locator("#results th a[href*='sort=score']").first
    href = header_link.get_attribute("href")
    descending = "order=desc" in href
    want = sorted(original, reverse=descending)
    assert want != original, "the class CSV is already in that order (the test would prove nothing)"
    header_link.click()
    wait_for(page, f"""(() => {{
        const t = document.querySelector('#results'); if (!t) return false;
        const head = [...t.querySelectorAll('tr')].find(r => r.querySelector('th') && !r.querySelector('td'));
        const i = [...head.querySelectorAll('th')].findIndex(c => /^\\W*score\\b/i.test(c.innerText.trim()));
        const got = [...t.querySelectorAll('tr')].filter(r => r.querySelector('td'))
                      .map(r => parseFloat(r.querySelectorAll('td,th')[i].innerText));
        const want = {json.dumps(want)};
        return got.length === want.length && got.every((v, k) => v === want[k]);
    }})()""", "the results sorted by score", timeout=15)
    screenshot(page, "coach-results-sorted")
    goto(page, base + results_path + "?sort=score&order=desc")
    assert scores(table_data(page, "#results")) == sorted(original, reverse=True), "server-side sort (desc)"
    goto(page, base + results_path + "?sort=score&order=asc")
    assert scores(table_data(page, "#results")) == sorted(original), "server-side sort (asc)"

    # the download: the same table as CSV
    href = page.get_attribute("#download", "href")
    assert href.split("?")[0] == results_path + ".csv", href
    download = page.request.get(base + href)
    assert download.status == 200, download.status
    table = list(csv.DictReader(io.StringIO(download.text())))
    assert len(table) == len(expected)
    for line in table:
        assert line["strength"] == expected[line["student"]]["strength"], line
        assert float(line["score"]) == expected[line["student"]]["score"], line

    # another session does not see these results
    stranger = Ui(base)
    assert stranger.login_key(coach.keys["client"]).status_code in (302, 303)
    for path in (results_path, results_path + ".csv"):
        resp = stranger.get(path)
        assert resp.status_code in (403, 404), f"another session reads {path}: {describe(resp)}"

    # an explicit highlight
    goto(page, base + "/ui/pipelines/skill-report")
    page.set_input_files("#csv input[type=file]", files=[{"name": "class.csv", "mimeType": "text/csv",
                                                            "buffer": text.encode()}])
    page.fill("#csv [name=highlight]", "strength=strong")
    submit(page, "#csv")
    page.wait_for_selector("#results")
    rows = results_by_student(table_data(page, "#results"))
    for student, row in rows.items():
        assert ("highlight" in row["cls"]) == (expected[student]["strength"] == "strong"), (student, row["cls"])
    screenshot(page, "coach-results-strong")
    assert_page_healthy(page)


# =========================================================================== ML for Kids

def make_and_train_project(page, kids, name: str, labels: tuple[str, str], shot: str):
    goto(page, kids.url + "/ui/projects")
    screenshot(page, f"{shot}-projects")
    header, rows = animals_rows(labels)
    page.fill("#new-project [name=name]", name)
    page.fill("#new-project textarea[name=rows]", csv_text(header, rows))
    submit(page, "#new-project")
    assert page.url == f"{kids.url}/ui/projects/{name}", page.url
    screenshot(page, f"{shot}-project")
    assert page.locator("table#rows tr:has(td)").count() == len(rows)
    page.click("#train-project")
    wait_for(page, "(() => { const a = document.querySelector('#accuracy');"
                   " const i = document.querySelector('img[alt=tree]');"
                   " return !!a && /\\d/.test(a.innerText) && !!i && i.complete && i.naturalWidth > 0; })()",
             f"{name}: the accuracy and the tree", timeout=JOB_TIMEOUT_S)
    screenshot(page, f"{shot}-trained")
    accuracy = float(re.search(r"\d+(?:\.\d+)?", page.inner_text("#accuracy")).group(0))
    assert accuracy == 100, f"{name}: accuracy {accuracy}% on examples a tree learns exactly"


def try_project(page, kids, name: str, legs: int, wings: int) -> str:
    goto(page, f"{kids.url}/ui/projects/{name}")
    page.fill("#try [name=legs]", str(legs))
    page.fill("#try [name=wings]", str(wings))
    submit(page, "#try")
    return page.inner_text("#prediction")


def test_ml_for_kids_two_children_each_with_a_private_project(page, new_page, kids):
    alice_page, bob_page = page, new_page()
    alice, bob = unique("alice"), unique("Bob.Smith")
    alice_project, bob_project = "pets" + secrets.token_hex(3), "zoo" + secrets.token_hex(3)

    sign_in_with_oidc(alice_page, kids, alice, "kids-alice")
    make_and_train_project(alice_page, kids, alice_project, ("bird", "cat"), "kids-alice")
    assert "bird" in try_project(alice_page, kids, alice_project, 2, 1)
    assert "cat" in try_project(alice_page, kids, alice_project, 4, 0)
    screenshot(alice_page, "kids-alice-prediction")

    sign_in_with_oidc(bob_page, kids, bob, "kids-bob")
    make_and_train_project(bob_page, kids, bob_project, ("bird", XSS), "kids-bob")
    prediction = try_project(bob_page, kids, bob_project, 4, 0)
    bob_page.wait_for_timeout(500)   # an injected onerror would have fired by now
    screenshot(bob_page, "kids-bob-prediction")
    assert XSS in prediction, f"the label is not shown as text: {prediction!r}"
    assert bob_page.locator("#prediction img").count() == 0, "the label became an element"
    goto(bob_page, f"{kids.url}/ui/projects/{bob_project}")
    assert XSS in bob_page.inner_text("table#rows") and bob_page.locator("table#rows img").count() == 0
    assert not page_log(bob_page).dialogs, f"a dialog opened: {page_log(bob_page).dialogs}"

    # neither sees the other's project
    goto(bob_page, kids.url + "/ui/projects")
    assert alice_project not in bob_page.inner_text("body")
    goto(bob_page, f"{kids.url}/ui/projects/{alice_project}", status=404)
    screenshot(bob_page, "kids-bob-not-alices")
    goto(alice_page, kids.url + "/ui/projects")
    assert bob_project not in alice_page.inner_text("body")
    goto(alice_page, f"{kids.url}/ui/projects/{bob_project}", status=404)
    for ds, owner in ((project_dataset(alice, alice_project), alice), (project_dataset(bob, bob_project), bob)):
        assert kids.api("GET", f"/v1/datasets/{ds}", owner).status_code == 200, f"{ds} is not {owner}'s project"
    assert_page_healthy(alice_page)
    assert_page_healthy(bob_page)


# =========================================================================== HTML stays text

def test_html_in_an_uploaded_dataset_stays_text(page, bworld):
    base = bworld.url
    sign_in_with_key(page, base, bworld.keys["trainer"], "/ui/datasets")
    name = unique("html")
    script = "<script>alert(2)</script>"
    rows = [[i, [XSS, script, "plain"][i % 3]] for i in range(9)]
    page.fill("#upload [name=name]", name)
    page.set_input_files("#upload input[type=file]", files=[{"name": "html.csv", "mimeType": "text/csv",
                                                             "buffer": csv_text(["n", "label"], rows).encode()}])
    submit(page, "#upload")
    goto(page, f"{base}/ui/datasets/{name}")
    page.wait_for_timeout(500)   # an injected onerror would have fired by now
    screenshot(page, "dataset-with-html")
    text = page.inner_text("table#rows")
    assert XSS in text and script in text, f"the cells are not shown as text: {text[:500]!r}"
    assert page.locator("table#rows img").count() == 0 and page.locator("table#rows script").count() == 0
    assert not page_log(page).dialogs, f"a dialog opened: {page_log(page).dialogs}"
    assert_page_healthy(page)


def test_pages_fit_a_phone_screen_and_the_sign_in_works_from_the_keyboard(page, bworld):
    base = bworld.url
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(base + "/ui/models")
    assert "/ui/login" in page.url
    # the keyboard reaches the key field and submits the form without a mouse
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.name") == "api_key":
            break
    else:
        raise AssertionError("Tab never reached the API key field")
    page.keyboard.type(bworld.keys["trainer"])
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/ui/models")
    for path in ("/", "/ui/models", "/ui/models/iris-logreg", "/ui/datasets", "/ui/training", "/ui/jobs"):
        goto(page, base + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} is {overflow} px wider than a 390 px screen"
        unlabelled = page.evaluate("""[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.name)""")
        assert not unlabelled, f"{path}: fields without a label: {unlabelled}"
        screenshot(page, "phone" + (path.replace("/", "-") if path != "/" else "-overview"))
    assert_page_healthy(page)
