"""End-to-end tests of examples/ml-for-kids (docs/contract.md: "Authentication and access
control", "Scheduled jobs" (cleanup), "Caching proxy", "The dashboard (issue 14)": "Signing in"
and "Projects (ML for Kids)").

The example's `lectern.toml`, copied, with three changes for the test: the OIDC issuer is the
local one of oidc_issuer.py (given as flags, which win over the file; the file's client id
`ml-for-kids` and `[dashboard] projects = "kids-"` are kept), the proxy's URL points at
`third_party.py` on a free port, and the cleanup's `older_than` is 3 s instead of 30 days. The
identity provider's client has a secret, given to Lectern in LECTERN_OIDC_CLIENT_SECRET as the
README says. The hourly cleanup is paused once its schedule is checked (so that an hour turning
during a test cannot run it), and run by hand.
Checked:
- children sign in with bearer tokens; without one nothing is created (401);
- a child's project is a dataset `kids-<user>-<project>` recorded as made by `jwt:<user>`;
- the hourly cleanup job is as the file says (next run on the hour) and, run now, deletes the
  expired projects only (not a fresh one, not a teacher's dataset);
- a proxied call reaches the third-party API with its key, which never reaches the child (the
  answer) or the logs; the second call is a cache hit;
- the classroom as the README tells it, in a browser without JavaScript: two children sign in
  through the school's identity provider (code flow with PKCE and the client secret), each types
  a project's examples, trains it, sees the progress reach 100 %, how often it is right and the
  tree, and tries it; neither sees the other's project (pages, pictures, API); the teacher sees
  both; the cleanup job's `match` takes the projects' names and deletes them when expired (the
  trained models stay, as the README says);
- (expected to fail until fixed) another child's project model is 404 on every `/v1/models...`
  route, as the contract says.
Runs on SQLite and on PostgreSQL (LECTERN_TEST_DATABASE).
"""
from __future__ import annotations

import fnmatch
import os
import secrets
import shutil
import subprocess
import sys
import time
import tomllib
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from lectern_checks import ok, wait_until
from lectern_dashboard import Page, Ui, describe, local_target, login_redirect_next, project_dataset
from lectern_training import parse_svg, svg_text
from lectern_v2 import REPO_ROOT
from oidc_issuer import OIDCIssuer

KIDS = REPO_ROOT / "examples" / "ml-for-kids"
EXAMPLE = tomllib.loads((KIDS / "lectern.toml").read_text())
AUDIENCE = "ml-for-kids"
CLIENT_ID = "ml-for-kids"
CLIENT_SECRET = "oidc-client-secret-" + secrets.token_hex(8)
PREFIX = "kids-"
TEACHER = "ms-okafor"
KEY = "words-key-4d2a9c81e7"
JOB = "expire-projects"
PETS = "name,legs,sound\ncat,4,meow\ndog,4,woof\nhen,2,cluck\n"
TRAIN_TIMEOUT_S = 120


class ThirdParty:
    """examples/ml-for-kids/third_party.py, run as the README says, on a free port."""

    def __init__(self):
        env = {**os.environ, "WORDS_API_KEY": KEY}
        self.proc = subprocess.Popen([sys.executable, str(KIDS / "third_party.py"), "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                                     stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().strip()
        assert line.startswith("third-party API listening on http://127.0.0.1:"), line
        self.url = line.rsplit(" ", 1)[1]  # http://127.0.0.1:PORT/v1/

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_the_example_file_turns_on_the_dashboard_and_keeps_the_cleanup():
    """What the tests below rely on, read from the example's own file."""
    auth, dashboard = EXAMPLE["auth"], EXAMPLE.get("dashboard", {})
    assert auth["oidc_audience"] == AUDIENCE and auth["oidc_role_claim"] == "role", auth
    assert auth.get("oidc_client_id") == CLIENT_ID, auth
    assert "oidc_client_secret" not in auth, "the client secret belongs in LECTERN_OIDC_CLIENT_SECRET, not the file"
    assert dashboard.get("projects") == PREFIX and dashboard.get("enabled", True), dashboard
    job = EXAMPLE["jobs"][JOB]
    assert (job["kind"], job["target"], job["older_than"], job["dry_run"]) == ("cleanup", "datasets", "30d", False), job
    assert fnmatch.fnmatchcase(project_dataset("Alice@School.example", "pets"), job["match"]), job["match"]


@pytest.fixture
def kids(tmp_path, start_config_server):
    issuer = OIDCIssuer(audience=AUDIENCE, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                        roles={TEACHER: "admin"})   # everyone else: trainer (the children)
    third = ThirdParty()
    try:
        folder = shutil.copytree(KIDS, tmp_path / "ml-for-kids", ignore=shutil.ignore_patterns("__pycache__"))
        config = folder / "lectern.toml"
        text = config.read_text()
        for old in ('url = "http://127.0.0.1:9100/v1/"', 'older_than = "30d"'):
            assert old in text, old
        text = text.replace('url = "http://127.0.0.1:9100/v1/"', f'url = "{third.url}"')
        text = text.replace('older_than = "30d"', 'older_than = "3s"')
        config.write_text(text)
        srv = start_config_server(config, extra_args=["--oidc-issuer", issuer.url, "--oidc-audience", AUDIENCE,
                                                      "--log", "debug"],
                                  env={"WORDS_API_KEY": KEY, "LECTERN_OIDC_CLIENT_SECRET": CLIENT_SECRET})
        yield srv, issuer, third
    finally:
        third.stop()
        issuer.close()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def child(issuer: OIDCIssuer, name: str) -> dict:
    return bearer(issuer.token("trainer", sub=name, aud=AUDIENCE))


def create_project(srv, headers: dict, name: str) -> dict:
    resp = srv.post(f"/v1/datasets/{name}", data=PETS.encode(), headers={**headers, "Content-Type": "text/csv"})
    assert resp.status_code == 201, f"{name}: {resp.status_code} {resp.text[:300]}"
    return resp.json()


def datasets(srv, headers: dict) -> set[str]:
    return {d["name"] for d in ok(srv.get("/v1/datasets", headers=headers))["datasets"]}


def pause_cleanup(srv, teacher: dict):
    """Pauses the hourly cleanup (its 3-s `older_than` would empty the class if an hour turned
    during the test); "run now" still runs it."""
    paused = ok(srv.post(f"/v1/jobs/{JOB}/pause", headers=teacher))
    assert paused["paused"] is True and paused["next_run_at_ms"] is None, paused


def run_cleanup(srv, teacher: dict) -> dict:
    """Runs the cleanup now, as a teacher; returns the run once it ended."""
    run = ok(srv.post(f"/v1/jobs/{JOB}/run", headers=teacher), 202)

    def ended():
        found = [r for r in ok(srv.get(f"/v1/jobs/{JOB}/runs", headers=teacher))["runs"] if r["id"] == run["id"]]
        return found[0] if found and found[0]["state"] != "running" else None
    return wait_until(ended, "the cleanup run ends", timeout=30, interval=0.1)


def test_children_sign_in_make_projects_that_expire_and_call_the_third_party_api_without_its_key(kids):
    srv, issuer, third = kids
    alice, bob = child(issuer, "alice"), child(issuer, "bob")
    teacher = bearer(issuer.token("admin", sub="ms-okafor", aud=AUDIENCE))

    # sign-in: no token, or a token for another audience, creates nothing
    resp = srv.post("/v1/datasets/kids-mallory-x", data=PETS.encode(), headers={"Content-Type": "text/csv"})
    assert resp.status_code == 401, resp.text
    other = bearer(issuer.token("trainer", sub="mallory", aud="another-app"))
    assert srv.post("/v1/datasets/kids-mallory-x", data=PETS.encode(), headers=other).status_code == 401

    # projects per child
    pets = create_project(srv, alice, "kids-alice-pets")
    assert pets["rows"] == 3 and pets["created_by"] == "jwt:alice", pets
    assert create_project(srv, bob, "kids-bob-weather")["created_by"] == "jwt:bob"
    assert create_project(srv, teacher, "class-3b-roster")["created_by"] == "jwt:ms-okafor"

    # the hourly cleanup, as the file says
    job = ok(srv.get(f"/v1/jobs/{JOB}", headers=teacher))
    assert (job["kind"], job["source"], job["cron"], job["timezone"]) == ("cleanup", "config", "0 * * * *", "UTC"), job
    assert job["spec"]["target"] == "datasets" and job["spec"]["match"] == "kids-*", job["spec"]
    hour = 3_600_000
    now = int(time.time() * 1000)
    assert job["next_run_at_ms"] % hour == 0 and now < job["next_run_at_ms"] <= now + hour, job
    pause_cleanup(srv, teacher)

    # alice's and bob's first projects expire (older than 3 s); a new one does not
    time.sleep(3.5)
    create_project(srv, alice, "kids-alice-robots")
    done = run_cleanup(srv, teacher)
    assert done["state"] == "succeeded" and done["items"] == 2, done
    assert "kids-alice-pets" in done["detail"] and "kids-bob-weather" in done["detail"], done
    assert datasets(srv, teacher) == {"class-3b-roster", "kids-alice-robots"}
    gone = srv.get("/v1/datasets/kids-alice-pets", headers=alice)
    assert gone.status_code == 404 and gone.json()["code"] == "dataset_not_found", gone.text

    # the third-party API through Lectern: the key is added on the server
    assert requests.get(third.url + "words/elephant", timeout=10).status_code == 401, "the API wants its key"
    assert srv.get("/proxy/words/words/elephant").status_code == 401, "the proxy needs a signed-in child"
    first = srv.get("/proxy/words/words/elephant", headers=alice)
    assert first.status_code == 200, first.text
    assert first.json() == {"word": "elephant", "letters": 8, "vowels": 3, "syllables": 3, "first_letter": "e",
                            "rhymes": []}, first.json()
    assert first.headers.get("x-lectern-cache") == "miss", dict(first.headers)
    second = srv.get("/proxy/words/words/elephant", headers=bob)
    assert second.status_code == 200 and second.json() == first.json()
    assert second.headers.get("x-lectern-cache") == "hit", dict(second.headers)
    rhymes = ok(srv.get("/proxy/words/words/cat", headers=alice))
    assert rhymes["rhymes"] == ["bat", "hat"], rhymes
    for resp in (first, second):
        assert KEY not in resp.text and not any(KEY in v for v in resp.headers.values()), dict(resp.headers)
        assert "x-api-key" not in {k.lower() for k in resp.headers}
    assert KEY not in srv.stderr_text(), "the third-party key is in Lectern's log"
    # a path out of the base URL is refused, never forwarded
    escape = srv.get("/proxy/words/..%2Fhealth", headers=alice)
    assert escape.status_code == 400, escape.text


# =========================================================================== the classroom, in the browser

# The children's examples, typed as the README shows (a header line, the label last). One
# column decides the label, the other does not (the same leg counts on both sides): the tree
# must split on the deciding column, and the rule says what a new example gets.
ALICE_ROWS = ["legs,wings,flies"] + ["2,2,yes", "6,4,yes", "2,2,yes", "6,2,yes",   # a bird, a bee, a bat, a fly
                                      "4,0,no", "6,0,no", "2,0,no", "8,0,no"] * 2  # a dog, an ant, a child, a spider
ALICE_RULE = "wings"   # 2 or more wings: yes
ALICE_TRIES = [({"legs": "6", "wings": "0"}, "no"), ({"legs": "2", "wings": "2"}, "yes"),
               ({"legs": "4", "wings": "3"}, "yes")]    # never seen: four legs and three wings
BOB_ROWS = ["fins,legs,home"] + ["2,0,sea", "4,0,sea", "2,4,sea",        # a shark, a fish, a turtle
                                  "0,4,land", "0,2,land", "0,0,land"] * 2  # a cat, a hen, a snake
BOB_RULE = "fins"      # 2 or more fins: sea
BOB_TRIES = [({"fins": "0", "legs": "4"}, "land"), ({"fins": "3", "legs": "0"}, "sea"),
             ({"fins": "3", "legs": "2"}, "sea")]     # never seen


def sign_in_at_school(srv, issuer: OIDCIssuer, username: str) -> Ui:
    """A child opens /ui/projects, is sent to the sign-in page, presses "Sign in with your
    school account", types the username at the school's identity provider and is back on
    /ui/projects, signed in."""
    ui = Ui(srv.url)
    sent = ui.get("/ui/projects")
    assert login_redirect_next(sent, srv.url) == "/ui/projects"
    login = ui.page(local_target(sent, srv.url))
    start = ui.get(login.one("a#login-oidc").get("href"))
    assert start.status_code == 303, describe(start)
    location = start.headers["Location"]
    assert location.startswith(issuer.authorization_endpoint + "?"), location
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query["client_id"] == CLIENT_ID and query["code_challenge_method"] == "S256", query
    assert query["redirect_uri"] == srv.url + "/ui/oidc/callback", query
    callback = ui.get(issuer.approve(location, username))
    assert callback.status_code in (302, 303), f"the sign-in of {username}: {describe(callback)}; {issuer.errors[-3:]}"
    assert local_target(callback, srv.url) == "/ui/projects", describe(callback)
    exchange = [e for e in issuer.successful_exchanges() if e.username == username][-1]
    assert exchange.form.get("client_secret") == CLIENT_SECRET, "the code was exchanged without the client secret"
    assert exchange.form.get("client_id") == CLIENT_ID and exchange.form.get("code_verifier"), exchange.form
    assert ui.cookie("lectern_session"), f"no session for {username}"
    return ui


def project_names(ui: Ui) -> list[str]:
    """The first cells of the projects table of /ui/projects."""
    page = ui.page("/ui/projects")
    return [row.cells()[0] for row in page.one("table#projects").body_rows()]


def make_project(ui: Ui, srv, name: str, rows: list[str], newline: str) -> Page:
    page = ui.page("/ui/projects")
    resp = ui.submit(page, "#new-project", {"name": name, "rows": newline.join(rows)})
    assert resp.status_code == 303 and local_target(resp, srv.url) == f"/ui/projects/{name}", describe(resp)
    page = ui.page(f"/ui/projects/{name}")
    table = page.one("table#rows")
    assert table.header() == rows[0].split(","), table.header()
    assert [r.cells() for r in table.body_rows()] == [line.split(",") for line in rows[1:]]
    assert name in project_names(ui)
    return page


def train_project(ui: Ui, name: str) -> Page:
    """Presses Train and reloads the page (as its no-script refresh does) until the progress
    reaches 100 %; returns that page."""
    page = ui.page(f"/ui/projects/{name}")
    form = f"form[action='/ui/projects/{name}/train']"
    assert page.one(f"{form} #train-project").tag == "button", "no Train button"
    resp = ui.submit(page, form)
    assert resp.status_code == 303 and urlsplit(resp.headers["Location"]).path == f"/ui/projects/{name}", describe(resp)
    seen = []

    def finished():
        page = ui.page(f"/ui/projects/{name}")
        progress = page.one("progress#progress")
        assert progress.get("max") == "100", progress
        seen.append(int(progress.get("value")))
        state = page.one("#state").text()
        assert state not in ("failed", "cancelled"), f"the training {state}: {page.text()[:800]}"
        return page if state == "succeeded" else None
    page = wait_until(finished, f"the training of {name} succeeds", timeout=TRAIN_TIMEOUT_S, interval=0.3)
    assert seen == sorted(seen) and seen[-1] == 100, f"the progress went {seen}"
    assert page.one("#progress-text").text() == "100%"
    return page


def test_two_children_make_train_and_try_private_projects_the_teacher_sees_both_and_they_expire(kids):
    srv, issuer, _ = kids
    teacher = issuer.bearer(TEACHER)
    assert issuer.role_of(TEACHER) == "admin"
    pause_cleanup(srv, teacher)
    alice_sub, bob_sub = "alice", "Bob.Okoye"
    alice_project, bob_project = f"flyers-{secrets.token_hex(3)}", f"sea-or-land-{secrets.token_hex(3)}"
    alice_ds, bob_ds = project_dataset(alice_sub, alice_project), project_dataset(bob_sub, bob_project)
    assert (alice_ds, bob_ds) == (f"kids-alice-{alice_project}", f"kids-_42ob_2e_4fkoye-{bob_project}")

    # each child signs in with the school account and makes a project from typed examples
    alice = sign_in_at_school(srv, issuer, alice_sub)
    bob = sign_in_at_school(srv, issuer, bob_sub)
    assert project_names(alice) == [] and project_names(bob) == []
    make_project(alice, srv, alice_project, ALICE_ROWS, "\n")
    make_project(bob, srv, bob_project, BOB_ROWS, "\r\n")     # what a browser sends from a textarea
    made = time.monotonic()
    for sub, ds, rows in ((alice_sub, alice_ds, ALICE_ROWS), (bob_sub, bob_ds, BOB_ROWS)):
        shown = ok(srv.get(f"/v1/datasets/{ds}", headers=issuer.bearer(sub)))
        assert shown["rows"] == len(rows) - 1 and shown["created_by"] == f"jwt:{sub}", shown

    # Train: progress to 100 %, how often it is right, the tree; then try it
    for ui, sub, project, ds, rows, rule, tries in (
            (alice, alice_sub, alice_project, alice_ds, ALICE_ROWS, ALICE_RULE, ALICE_TRIES),
            (bob, bob_sub, bob_project, bob_ds, BOB_ROWS, BOB_RULE, BOB_TRIES)):
        *features, target = rows[0].split(",")
        other = [f for f in features if f != rule][0]
        page = train_project(ui, project)
        jobs = ok(srv.get("/v1/training-jobs", params={"model": ds}, headers=issuer.bearer(sub)))["jobs"]
        assert len(jobs) == 1 and jobs[0]["state"] == "succeeded", jobs
        job = jobs[0]
        assert (job["dataset"], job["model"], job["algorithm"], job["target"]) == (ds, ds, "decision_tree", target), job
        assert sorted(job["classes"]) == sorted({label for _, label in tries}), job["classes"]
        assert job["created_by"] == f"jwt:{sub}" and job["metrics"]["accuracy"] == 1.0, job
        accuracy = page.one("#accuracy").text()
        assert accuracy == "100%", f"#accuracy shows {accuracy!r}; the job's accuracy is {job['metrics']['accuracy']}"
        tree = page.one("img[alt=tree]")
        assert tree.get("src") == f"/ui/training/{job['id']}/tree.svg", tree
        words = svg_text(parse_svg(ui.get(tree.get("src"))))
        assert rule in words and other not in words, f"the tree does not split on {rule} alone: {words!r}"
        assert not page.select("svg"), "the tree is inlined, not an <img>"
        for features, label in tries:
            resp = ui.submit(f"/ui/projects/{project}", "#try", features)
            assert resp.status_code == 200, describe(resp)
            prediction = Ui.as_page(resp).one("#prediction").text()
            assert prediction == label, f"{project} {features}: the model guesses {prediction!r}, the rule {label!r}"

    # neither child sees the other's project: the list, the page, the picture, the API
    for ui, sub, mine, theirs, their_project in ((alice, alice_sub, alice_project, bob_ds, bob_project),
                                                 (bob, bob_sub, bob_project, alice_ds, alice_project)):
        assert project_names(ui) == [mine], f"{sub}'s projects page"
        assert their_project not in ui.page("/ui/projects").text()
        assert ui.get(f"/ui/projects/{their_project}").status_code == 404
        assert ui.get(f"/ui/datasets/{theirs}").status_code == 404
        their_job = ok(srv.get("/v1/training-jobs", params={"model": theirs}, headers=teacher))["jobs"][0]
        assert ui.get(f"/ui/training/{their_job['id']}/tree.svg").status_code == 404, "another child's tree"
        token = issuer.bearer(sub)
        listed = datasets(srv, token)
        assert theirs not in listed and listed == {project_dataset(sub, mine)}, listed
        for path in (f"/v1/datasets/{theirs}", f"/v1/models/{theirs}"):
            resp = srv.get(path, headers=token)
            assert resp.status_code == 404, f"{sub}: {describe(resp)}"
    # the teacher sees both, through the API and on the projects page
    assert {alice_ds, bob_ds} <= datasets(srv, teacher)
    teacher_ui = sign_in_at_school(srv, issuer, TEACHER)
    assert {alice_ds, bob_ds} <= set(project_names(teacher_ui)), project_names(teacher_ui)

    # the hourly cleanup takes these names; run now, it deletes the expired projects
    job = ok(srv.get(f"/v1/jobs/{JOB}", headers=teacher))
    assert job["spec"]["match"] == EXAMPLE["jobs"][JOB]["match"], job["spec"]
    for ds in (alice_ds, bob_ds):
        assert fnmatch.fnmatchcase(ds, job["spec"]["match"]), f"the cleanup's match does not take {ds}"
    time.sleep(max(0.0, made + 3.5 - time.monotonic()))   # older than the test's 3-s older_than
    done = run_cleanup(srv, teacher)
    assert done["state"] == "succeeded" and done["items"] == 2, done
    assert alice_ds in done["detail"] and bob_ds in done["detail"], done
    assert project_names(alice) == [] and project_names(bob) == []
    assert alice.get(f"/ui/projects/{alice_project}").status_code == 404
    assert not {alice_ds, bob_ds} & datasets(srv, teacher)
    for ds in (alice_ds, bob_ds):   # the models stay until a teacher deletes them (the README says so)
        assert ok(srv.get(f"/v1/models/{ds}", headers=teacher))["name"] == ds
    assert CLIENT_SECRET not in srv.stderr_text(), "the OIDC client secret is in Lectern's log"


def test_another_childs_project_model_is_404_on_every_model_route(kids):
    """docs/contract.md, "Projects": the model trained from a project, named like it, answers
    404 to another non-admin on `/v1/models...` and the V2 routes as if it did not exist, and
    no one makes a model in another child's names."""
    srv, issuer, _ = kids
    alice, bob = issuer.bearer("alice"), issuer.bearer("bob")
    theirs = project_dataset("alice", f"pets-{secrets.token_hex(3)}")
    ok(srv.post("/v1/models", json={"name": theirs, "labels": ["bird", "cat", "dog"]}, headers=alice), 201)
    onnx = (REPO_ROOT / "examples" / "models" / "iris-logreg" / "1" / "model.onnx").read_bytes()
    ok(srv.post(f"/v1/models/{theirs}/versions", data=onnx,
                headers={**alice, "Content-Type": "application/octet-stream"}), 201)
    before = ok(srv.get(f"/v1/models/{theirs}", headers=alice))

    answers = {}
    for method, path, kw in (
            ("GET", f"/v1/models/{theirs}", {}),
            ("GET", f"/v1/models/{theirs}/versions/1/artifact", {}),
            ("PUT", f"/v1/models/{theirs}/default", {"json": {"version": 1}}),
            ("PUT", f"/v1/models/{theirs}/config", {"json": {"config": {}, "labels": ["x", "y", "z"]}}),
            ("POST", f"/v1/models/{theirs}/versions", {"data": onnx}),
            ("DELETE", f"/v1/models/{theirs}/versions/1", {}),
            ("GET", f"/v2/models/{theirs}", {}),
            ("GET", f"/v2/models/{theirs}/ready", {}),
            ("POST", f"/v2/models/{theirs}/infer", {"json": {"inputs": [
                {"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}}),
            ("POST", f"/v2/repository/models/{theirs}/unload", {}),
            ("DELETE", f"/v1/models/{theirs}", {})):
        resp = requests.request(method, srv.url + path, headers={**bob, "Content-Type": "application/octet-stream"}
                                if "data" in kw else bob, timeout=30, **kw)
        answers[f"{method} {path}"] = resp.status_code

    wrong = {k: v for k, v in answers.items() if v != 404}
    assert not wrong, f"bob reached alice's project model: {wrong}"
    index = ok(srv.post("/v2/repository/index", json={}, headers=bob))
    assert theirs not in {m["name"] for m in index}, "alice's model is in bob's repository index"
    assert theirs in {m["name"] for m in ok(srv.post("/v2/repository/index", json={}, headers=alice))}
    made = srv.post("/v1/models", json={"name": project_dataset("alice", "bobs-trick")}, headers=bob)
    assert made.status_code == 403, f"bob made a model in alice's names: {made.status_code} {made.text}"
    pushed = requests.post(f"{srv.url}/v1/datasets/{project_dataset('alice', 'bobs-data')}", data=b"a,b\n1,2\n",
                           headers={**bob, "Content-Type": "text/csv"}, timeout=30)
    assert pushed.status_code == 404 and "error" in pushed.json(), f"bob pushed into alice's names: {pushed.text}"
    assert srv.get(f"/v1/datasets/{project_dataset('alice', 'bobs-data')}", headers=alice).status_code == 404

    # the name percent-encoded, as the handlers decode it, is still alice's
    encoded = "%" + format(ord(theirs[0]), "02X") + theirs[1:]
    for method, path in (("GET", f"/v2/models/{encoded}"), ("GET", f"/v1/models/{encoded}/versions/1/artifact"),
                         ("DELETE", f"/v1/models/{encoded}")):
        resp = requests.request(method, srv.url + path, headers=bob, timeout=30)
        assert resp.status_code == 404, f"{method} {path} as bob: {resp.status_code} {resp.text[:200]}"
    # nor through a pipeline's model step or a job's dataset
    spy = f'steps = [{{ id = "m", model = "{theirs}", inputs = ["a", "b", "c", "d"] }}]\n'
    resp = requests.put(f"{srv.url}/v1/pipelines/spy-{secrets.token_hex(3)}", data=spy.encode(),
                        headers={**bob, "Content-Type": "application/toml"}, timeout=30)
    assert resp.status_code == 404, f"bob's pipeline over alice's model: {resp.status_code} {resp.text[:200]}"
    job = {"name": f"grab-{secrets.token_hex(3)}", "kind": "http-ingest", "every": "1h", "url": "http://127.0.0.1:9/x",
           "dataset": theirs, "key": "id"}
    resp = srv.post("/v1/jobs", json=job, headers=bob)
    assert resp.status_code == 403, f"bob's job writing alice's project: {resp.status_code} {resp.text[:200]}"
    # the open metrics name no project
    assert theirs not in requests.get(f"{srv.url}/metrics", timeout=30).text
    after_all = ok(srv.get(f"/v1/models/{theirs}", headers=alice))
    assert len(after_all["versions"]) == len(before["versions"]), after_all
    after = ok(srv.get(f"/v1/models/{theirs}", headers=alice))
    assert (after["labels"], len(after["versions"])) == (before["labels"], len(before["versions"])), after
