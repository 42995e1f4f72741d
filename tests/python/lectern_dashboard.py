"""Helpers for the dashboard tests (docs/contract.md, "The dashboard (issue 14)"):

- `parse_html(text)`: a small DOM (stdlib html.parser) with CSS-like `select("table#rows tr")`
  (tag, #id, .class, [attr], [attr=value], descendant combinator) and `text()`.
- `Ui(base_url)`: a `requests.Session` that behaves like a browser without JavaScript: it keeps
  the cookies, sends `Origin` on POST, and `submit(page, "#form-id", fields, files)` posts a
  form as a browser would (its `action`, `method` and `enctype`, every named field with its
  value, hidden `csrf` included, an empty file part for a file input left empty). Redirects are
  never followed on their own (`follow(resp)` takes one step).
- `check_page_headers(resp)`: the headers every dashboard page carries.
- `KeyedWorld` / `start_keyed_world(root)`: a server over a copy of examples/models with an
  admin, a trainer and a client API key (sign-in is required).
- `KidsWorld` / `start_kids_world(root)`: a server whose sign-in is the OIDC issuer of
  oidc_issuer.py (client `lectern-dashboard`) and whose `[dashboard] projects = "kids-"`.
"""
from __future__ import annotations

import csv
import io
import re
import uuid
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import requests

from conftest import LecternServer, copy_models
from oidc_issuer import OIDCIssuer

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'")
CSRF_MESSAGE = "the form has expired or did not come from this site; reload the page"
INVALID_KEY_MESSAGE = "invalid or revoked API key"
OIDC_CLIENT_ID = "lectern-dashboard"
KIDS_AUDIENCE = "lectern-kids"
PROJECT_PREFIX = "kids-"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# =========================================================================== a small DOM

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
        "track", "wbr"}


class Node:
    """An element: `tag`, `attrs` (names lower-case; a bare attribute has value ""),
    `children` (Nodes and strings), `parent`."""

    def __init__(self, tag: str, attrs: dict, parent: "Node | None" = None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list = []

    def __repr__(self):
        attrs = " ".join(f'{k}="{v}"' for k, v in self.attrs.items())
        return f"<{self.tag}{' ' + attrs if attrs else ''}>"

    def get(self, name: str, default=None):
        return self.attrs.get(name, default)

    @property
    def id(self) -> str | None:
        return self.attrs.get("id")

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def iter(self):
        """This node and every element under it, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def raw_text(self) -> str:
        return "".join(c if isinstance(c, str) else c.raw_text() for c in self.children)

    def text(self) -> str:
        """The text under this node, whitespace collapsed."""
        return " ".join(self.raw_text().split())

    def ancestors(self):
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def select(self, selector: str) -> list["Node"]:
        """Elements under (not including) this node matching a simple CSS selector."""
        parts = [_compound(p) for p in _SELECTOR_PARTS.findall(selector)]
        assert parts, f"empty selector {selector!r}"
        found = []
        for node in self.iter():
            if node is self or not parts[-1](node):
                continue
            rest = parts[:-1]
            for anc in node.ancestors():
                if not rest:
                    break
                if rest[-1](anc):
                    rest = rest[:-1]
            if not rest:
                found.append(node)
        return found

    def first(self, selector: str) -> "Node | None":
        found = self.select(selector)
        return found[0] if found else None

    def one(self, selector: str) -> "Node":
        """The single element matching `selector` (fails when there are none or several)."""
        found = self.select(selector)
        assert len(found) == 1, f"{len(found)} elements match {selector!r} (wanted one)"
        return found[0]

    # tables
    def body_rows(self) -> list["Node"]:
        """The rows of a table that hold data cells (td), in order."""
        return [tr for tr in self.select("tr") if any(isinstance(c, Node) and c.tag == "td" for c in tr.children)]

    def header(self) -> list[str]:
        """The texts of a table's header cells (th of its first row holding th)."""
        for tr in self.select("tr"):
            cells = [c for c in tr.children if isinstance(c, Node) and c.tag == "th"]
            if cells and not any(isinstance(c, Node) and c.tag == "td" for c in tr.children):
                return [c.text() for c in cells]
        return []

    def cells(self) -> list[str]:
        """The texts of a row's cells (th and td)."""
        return [c.text() for c in self.children if isinstance(c, Node) and c.tag in ("td", "th")]


_SELECTOR_PARTS = re.compile(r"(?:[^\s\[]+|\[[^\]]*\])+")
_COMPOUND = re.compile(r"([a-zA-Z][a-zA-Z0-9-]*|\*)?((?:[#.][A-Za-z0-9_-]+|\[[^\]]*\])*)$")
_PIECE = re.compile(r"#([A-Za-z0-9_-]+)|\.([A-Za-z0-9_-]+)|\[\s*([^\]=~*^$\s]+)\s*(?:([*^$]?=)\s*(\"[^\"]*\"|'[^']*'|[^\]]*?))?\s*\]")


def _compound(text: str):
    m = _COMPOUND.match(text)
    assert m, f"unsupported selector part {text!r}"
    tag = m.group(1)
    checks = []
    for pid, pcls, aname, op, aval in _PIECE.findall(m.group(2)):
        if pid:
            checks.append(lambda n, v=pid: n.attrs.get("id") == v)
        elif pcls:
            checks.append(lambda n, v=pcls: v in n.classes)
        else:
            aname = aname.lower()
            if not op:
                checks.append(lambda n, a=aname: a in n.attrs)
            else:
                value = aval[1:-1] if aval[:1] in ("'", '"') else aval
                if op == "=":
                    checks.append(lambda n, a=aname, v=value: n.attrs.get(a) == v)
                elif op == "*=":
                    checks.append(lambda n, a=aname, v=value: v in (n.attrs.get(a) or ""))
                elif op == "^=":
                    checks.append(lambda n, a=aname, v=value: (n.attrs.get(a) or "").startswith(v))
                else:
                    checks.append(lambda n, a=aname, v=value: (n.attrs.get(a) or "").endswith(v))

    def match(node: Node) -> bool:
        if tag and tag != "*" and node.tag != tag.lower():
            return False
        return all(c(node) for c in checks)
    return match


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k.lower(): (v if v is not None else "") for k, v in attrs}, self.stack[-1])
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        node = Node(tag, {k.lower(): (v if v is not None else "") for k, v in attrs}, self.stack[-1])
        self.stack[-1].children.append(node)

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse_html(text: str) -> Node:
    builder = _Builder()
    builder.feed(text)
    builder.close()
    return builder.root


# =========================================================================== pages and checks

@dataclass
class Page:
    """An answer of the dashboard with its parsed document."""
    resp: requests.Response
    doc: Node

    @property
    def status(self) -> int:
        return self.resp.status_code

    @property
    def html(self) -> str:
        return self.resp.text

    def text(self) -> str:
        return self.doc.text()

    def select(self, selector: str) -> list[Node]:
        return self.doc.select(selector)

    def one(self, selector: str) -> Node:
        found = self.doc.select(selector)
        assert len(found) == 1, f"{len(found)} elements match {selector!r} on {describe(self.resp)}"
        return found[0]

    def first(self, selector: str) -> Node | None:
        return self.doc.first(selector)

    def error(self) -> str:
        """The text of the page's `class="error"` element(s); fails when there is none."""
        found = [n for n in self.doc.iter() if "error" in n.classes and n.text()]
        assert found, f"no non-empty element with class=\"error\" on {describe(self.resp)}"
        return " ".join(n.text() for n in found)

    def links(self) -> set[str]:
        return {a.get("href") for a in self.doc.select("a[href]")}


def describe(resp: requests.Response) -> str:
    req = resp.request
    where = f"{req.method} {req.path_url}" if req is not None else "response"
    return f"{where} -> {resp.status_code} (Location {resp.headers.get('Location')!r}): {resp.text[:600]!r}"


def _csp_directives(value: str) -> dict[str, list[str]]:
    out = {}
    for part in value.split(";"):
        words = part.split()
        if words:
            out[words[0].lower()] = words[1:]
    return out


def check_page_headers(resp: requests.Response):
    """The headers the contract gives every dashboard page."""
    h = resp.headers
    where = describe(resp)
    content_type = " ".join(h.get("Content-Type", "").lower().split())
    assert content_type.replace("; ", ";") == "text/html;charset=utf-8", f"Content-Type {content_type!r}: {where}"
    assert h.get("Cache-Control", "").strip().lower() == "no-store", f"Cache-Control {h.get('Cache-Control')!r}: {where}"
    assert h.get("X-Content-Type-Options", "").strip().lower() == "nosniff", where
    assert h.get("X-Frame-Options", "").strip().upper() == "DENY", f"X-Frame-Options {h.get('X-Frame-Options')!r}: {where}"
    assert h.get("Referrer-Policy", "").strip().lower() == "same-origin", f"Referrer-Policy: {where}"
    csp = h.get("Content-Security-Policy")
    assert csp is not None, f"no Content-Security-Policy: {where}"
    assert _csp_directives(csp) == _csp_directives(CSP), f"Content-Security-Policy {csp!r}, contract: {CSP!r}"


def set_cookies(resp: requests.Response) -> dict[str, dict]:
    """The cookies a response sets: name -> {"value", and each attribute lower-cased: value}."""
    out = {}
    try:
        headers = resp.raw.headers.getlist("Set-Cookie")
    except AttributeError:
        headers = [resp.headers["Set-Cookie"]] if "Set-Cookie" in resp.headers else []
    for header in headers:
        first, *attrs = [p.strip() for p in header.split(";")]
        name, _, value = first.partition("=")
        cookie = {"value": value}
        for attr in attrs:
            k, _, v = attr.partition("=")
            cookie[k.strip().lower()] = v.strip()
        out[name.strip()] = cookie
    return out


def local_target(resp: requests.Response, base: str) -> str:
    """The path (and query) a redirect leads to, which must stay on `base`'s origin."""
    assert resp.status_code in (301, 302, 303, 307, 308), f"not a redirect: {describe(resp)}"
    location = resp.headers.get("Location")
    assert location, f"a redirect without Location: {describe(resp)}"
    absolute = urljoin(base + "/", location)
    b, t = urlsplit(base), urlsplit(absolute)
    assert (t.scheme, t.netloc) == (b.scheme, b.netloc), f"redirect off the site: {location!r} (from {base})"
    return t.path + (f"?{t.query}" if t.query else "")


def login_redirect_next(resp: requests.Response, base: str) -> str:
    """The `next` of a redirect (303) to the sign-in page."""
    assert resp.status_code == 303, f"expected 303 to /ui/login: {describe(resp)}"
    target = local_target(resp, base)
    parts = urlsplit(target)
    assert parts.path == "/ui/login", f"redirected to {target!r}, not /ui/login"
    return parse_qs(parts.query).get("next", [""])[0]


# =========================================================================== the client

class Ui:
    """A browser without JavaScript, on one Lectern server (see the module docstring)."""

    def __init__(self, base: str):
        self.base = base.rstrip("/")
        self.s = requests.Session()
        self.s.headers["User-Agent"] = "lectern-dashboard-tests"

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base + path

    @property
    def origin(self) -> str:
        p = urlsplit(self.base)
        return f"{p.scheme}://{p.netloc}"

    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 60)
        kw.setdefault("allow_redirects", False)
        return self.s.get(self.url(path), **kw)

    def page(self, path: str, status: int | tuple = 200) -> Page:
        resp = self.get(path)
        statuses = status if isinstance(status, tuple) else (status,)
        assert resp.status_code in statuses, f"expected {statuses}: {describe(resp)}"
        return Page(resp, parse_html(resp.text))

    @staticmethod
    def as_page(resp: requests.Response) -> Page:
        return Page(resp, parse_html(resp.text))

    def follow(self, resp: requests.Response) -> requests.Response:
        """One step of a redirect (GET its Location)."""
        assert resp.status_code in (301, 302, 303, 307, 308), f"not a redirect: {describe(resp)}"
        return self.get(urljoin(resp.url, resp.headers["Location"]))

    # cookies
    def cookie(self, name: str) -> str | None:
        for c in self.s.cookies:
            if c.name == name:
                return c.value
        return None

    def set_cookie(self, name: str, value: str):
        host = urlsplit(self.base).hostname
        for c in list(self.s.cookies):
            if c.name == name:
                self.s.cookies.clear(c.domain, c.path, c.name)
        self.s.cookies.set(name, value, domain=host, path="/")

    def csrf(self) -> str:
        """The `lectern_csrf` cookie (a page is fetched first when there is none yet)."""
        if self.cookie("lectern_csrf") is None:
            self.get("/ui/login")
        value = self.cookie("lectern_csrf")
        assert value, "no lectern_csrf cookie after GET /ui/login"
        return value

    # posts
    def post(self, path: str, fields=None, files=None, *, csrf=True, origin=True, headers=None,
             multipart: bool = False, **kw) -> requests.Response:
        """POST a form. `csrf`: True sends the cookie's value as the `csrf` field, a string
        sends that, None sends none. `origin`: True sends this site's Origin, a string that
        one, None none. `files` (name -> (filename, bytes, type)) or `multipart` make it
        multipart/form-data."""
        pairs = list(fields.items()) if isinstance(fields, dict) else list(fields or [])
        if csrf is True:
            pairs.append(("csrf", self.csrf()))
        elif isinstance(csrf, str):
            pairs.append(("csrf", csrf))
        hdrs = dict(headers or {})
        if origin is True:
            hdrs["Origin"] = self.origin
        elif isinstance(origin, str):
            hdrs["Origin"] = origin
        kw.setdefault("timeout", 120)
        kw.setdefault("allow_redirects", False)
        if files or multipart:
            parts = [(k, (None, str(v))) for k, v in pairs] + list((files or {}).items())
            return self.s.post(self.url(path), files=parts, headers=hdrs, **kw)
        return self.s.post(self.url(path), data=pairs, headers=hdrs, **kw)

    def submit(self, page: Page | str, form: str, fields: dict | None = None, files: dict | None = None,
               origin=True) -> requests.Response:
        """Submits the form `form` (a selector, e.g. "#train") of `page` (a Page or a path to
        GET) as a browser would, with `fields` typed in and `files` (name -> (filename, bytes,
        type)) chosen."""
        if isinstance(page, str):
            page = self.page(page)
        node = page.one(form)
        assert node.tag == "form", f"{form} is a <{node.tag}>, not a form"
        action = urljoin(page.resp.url, node.get("action") or page.resp.url)
        method = (node.get("method") or "get").lower()
        enctype = (node.get("enctype") or "application/x-www-form-urlencoded").lower()
        values: list[tuple[str, str]] = []
        file_inputs: list[str] = []
        for el in node.iter():
            name = el.get("name")
            if not name or "disabled" in el.attrs:
                continue
            if el.tag == "input":
                kind = (el.get("type") or "text").lower()
                if kind in ("submit", "button", "image", "reset"):
                    continue
                if kind == "file":
                    file_inputs.append(name)
                    continue
                if kind in ("checkbox", "radio") and "checked" not in el.attrs:
                    continue
                values.append((name, el.get("value", "on" if kind in ("checkbox", "radio") else "")))
            elif el.tag == "textarea":
                values.append((name, el.raw_text().removeprefix("\n")))
            elif el.tag == "select":
                options = el.select("option")
                chosen = [o for o in options if "selected" in o.attrs] or options[:1]
                for o in chosen:
                    values.append((name, o.get("value", o.text())))
        fields = dict(fields or {})
        files = dict(files or {})
        for name in list(fields):
            if name in file_inputs:
                raise AssertionError(f"{name} is a file input: give it in files")
        unknown = [n for n in list(fields) + list(files) if n not in {k for k, _ in values} | set(file_inputs)]
        assert not unknown, f"form {form} has no field named {unknown} (fields: {[k for k, _ in values]}, files: {file_inputs})"
        pairs = [(k, v) for k, v in values if k not in fields] + [(k, str(v)) for k, v in fields.items()]
        assert any(k == "csrf" for k, _ in pairs) or method == "get", f"form {form} carries no hidden csrf field"
        if method == "get":
            return self.get(action, params=pairs)
        if enctype == "multipart/form-data":
            parts = [(k, (None, v)) for k, v in pairs]
            for name in file_inputs:
                parts.append((name, files.get(name, ("", b"", "application/octet-stream"))))
            headers = {"Origin": self.origin} if origin is True else ({"Origin": origin} if origin else {})
            return self.s.post(action, files=parts, headers=headers, timeout=120, allow_redirects=False)
        assert not files, f"form {form} is not multipart: it cannot carry files"
        return self.post(action, pairs, csrf=None, origin=origin)

    # sign-in
    def login_key(self, key: str, next_path: str | None = None) -> requests.Response:
        """Signs in with an API key through the sign-in form; returns the form's answer."""
        path = "/ui/login" + (f"?next={quote(next_path, safe='')}" if next_path is not None else "")
        return self.submit(path, "#login-key", {"api_key": key})

    def login_oidc(self, issuer: OIDCIssuer, username: str, next_path: str | None = None) -> requests.Response:
        """Signs in through the OIDC issuer: start, the issuer's page (as `username`), the
        callback; returns the callback's answer."""
        start = self.get("/ui/oidc/start" + (f"?next={quote(next_path, safe='')}" if next_path is not None else ""))
        assert start.status_code == 303, f"/ui/oidc/start: {describe(start)}"
        callback = issuer.approve(start.headers["Location"], username)
        return self.get(callback)


# =========================================================================== worlds

def api_call(srv: LecternServer, method: str, path: str, headers: dict | None = None, **kw) -> requests.Response:
    kw.setdefault("timeout", 60)
    return requests.request(method, srv.url + path, headers=headers or {}, **kw)


@dataclass
class KeyedWorld:
    """A server with an admin, a trainer and a client key (sign-in required)."""
    srv: LecternServer
    keys: dict[str, str] = field(default_factory=dict)   # role -> key text
    ids: dict[str, str] = field(default_factory=dict)    # role -> key id

    @property
    def url(self) -> str:
        return self.srv.url

    def auth(self, role: str = "admin") -> dict:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def api(self, method: str, path: str, role: str | None = "admin", **kw) -> requests.Response:
        headers = {**(self.auth(role) if role else {}), **kw.pop("headers", {})}
        return api_call(self.srv, method, path, headers, **kw)

    def new_key(self, role: str, name: str | None = None) -> tuple[str, str]:
        resp = self.api("POST", "/v1/keys", json={"name": name or unique(f"dash-{role}"), "role": role})
        assert resp.status_code == 201, describe(resp)
        return resp.json()["key"], resp.json()["id"]

    def ui(self, role: str | None = None) -> Ui:
        """A client signed in with the key of `role` (None: not signed in)."""
        ui = Ui(self.url)
        if role is not None:
            resp = ui.login_key(self.keys[role])
            assert resp.status_code in (302, 303), f"sign-in as {role}: {describe(resp)}"
            assert ui.cookie("lectern_session"), f"sign-in as {role} set no lectern_session cookie"
        return ui


def add_first_keys(srv: LecternServer, world: KeyedWorld):
    """The first admin key (the loopback caller may, while no key exists), then the others."""
    resp = requests.post(srv.url + "/v1/keys", json={"name": "dash-admin", "role": "admin"}, timeout=30)
    assert resp.status_code == 201, f"the first key: {describe(resp)}"
    world.keys["admin"], world.ids["admin"] = resp.json()["key"], resp.json()["id"]
    for role in ("trainer", "client"):
        world.keys[role], world.ids[role] = world.new_key(role, f"dash-{role}")


def start_keyed_world(root: Path, extra_args=(), config: Path | None = None, env=None) -> KeyedWorld:
    """A server over a copy of examples/models (or the config file's models) with keys."""
    data = root / "data"
    data.mkdir(parents=True)
    if config is None:
        srv = LecternServer(copy_models(root / "models"), data, extra_args=extra_args, env=env)
    else:
        srv = LecternServer(None, data, extra_args=["--config", str(config), *extra_args], env=env)
    world = KeyedWorld(srv)
    try:
        add_first_keys(srv, world)
    except BaseException:
        srv.cleanup()
        raise
    return world


def user_slug(subject: str) -> str:
    """`<user>` of a project dataset for an OIDC subject: a-z0-9 kept, every other byte `_xx`."""
    keep = set("abcdefghijklmnopqrstuvwxyz0123456789")
    return "".join(chr(b) if chr(b) in keep else f"_{b:02x}" for b in subject.encode())


def project_dataset(subject: str, project: str) -> str:
    return f"{PROJECT_PREFIX}{user_slug(subject)}-{project}"


@dataclass
class KidsWorld:
    """A server signing in through `issuer` (OIDC), with the Projects page (`kids-`)."""
    srv: LecternServer
    issuer: OIDCIssuer
    config: Path

    @property
    def url(self) -> str:
        return self.srv.url

    def api(self, method: str, path: str, user: str, **kw) -> requests.Response:
        """The API as `user` (a bearer token of the issuer, with the user's role)."""
        return api_call(self.srv, method, path, self.issuer.bearer(user), **kw)

    def child(self, username: str) -> Ui:
        ui = Ui(self.url)
        resp = ui.login_oidc(self.issuer, username)
        assert resp.status_code in (302, 303), f"OIDC sign-in of {username}: {describe(resp)}"
        assert ui.cookie("lectern_session"), f"OIDC sign-in of {username} set no lectern_session cookie"
        return ui


def kids_config(folder: Path, issuer: OIDCIssuer, extra: str = "") -> Path:
    (folder / "models").mkdir(parents=True, exist_ok=True)
    config = folder / "lectern.toml"
    config.write_text(f"""[repository]
models = "models"

[auth]
oidc_issuer = "{issuer.url}"
oidc_audience = "{issuer.audience}"
oidc_role_claim = "role"
oidc_client_id = "{issuer.client_id}"

[dashboard]
projects = "{PROJECT_PREFIX}"
{extra}""")
    return config


def start_kids_world(root: Path, roles: dict | None = None) -> KidsWorld:
    issuer = OIDCIssuer(audience=KIDS_AUDIENCE, client_id=OIDC_CLIENT_ID, roles=roles or {"teacher": "admin"})
    try:
        config = kids_config(root / "kids", issuer)
        data = root / "data"
        data.mkdir(parents=True)
        srv = LecternServer(None, data, extra_args=["--config", str(config)])
    except BaseException:
        issuer.close()
        raise
    return KidsWorld(srv, issuer, config)


def close_kids_world(world: KidsWorld):
    world.srv.cleanup()
    world.issuer.close()


# =========================================================================== data

def csv_text(header: list[str], rows: list[list]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return out.getvalue()


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def animals_rows(labels: tuple[str, str] = ("bird", "cat"), n: int = 20) -> tuple[list[str], list[list]]:
    """A project's examples: `wings` alone decides the label (a tree learns it exactly)."""
    header = ["legs", "wings", "animal"]
    rows = []
    for i in range(n):
        if i % 2 == 0:
            rows.append([2, 1, labels[0]])
        else:
            rows.append([4, 0, labels[1]])
    return header, rows
