"""A local OpenID Connect provider for the dashboard tests, speaking the real wire protocol
(authorization-code flow with PKCE, RFC 6749 + RFC 7636 + OpenID Connect Core) on 127.0.0.1.

- `GET /.well-known/openid-configuration`: `issuer`, `authorization_endpoint`, `token_endpoint`,
  `jwks_uri` (and the usual `*_supported` lists).
- `GET /jwks`: the RSA public key (kid `oidc-test-key`).
- `GET /authorize?response_type=code&client_id&redirect_uri&scope&state&nonce&code_challenge
  &code_challenge_method=S256`: checks the request and answers a small sign-in page: a form
  (POST `/authorize`) carrying the request's parameters as hidden fields, an input
  `name="username"` and the buttons `id="approve"` and `id="deny"`. A bad request is a 400
  OAuth error JSON (`{"error", "error_description"}`), never a redirect.
- `POST /authorize` (the form): `approve` redirects (302) to `redirect_uri?code=...&state=...`
  with a one-time code valid for `code_ttl` seconds; `deny` redirects with
  `error=access_denied&state=...`.
- `POST /token` (form: `grant_type=authorization_code`, `code`, `redirect_uri`, `client_id`,
  `code_verifier`, and `client_secret` (form field or HTTP Basic) when the issuer has one):
  checks the code (known, not used, not expired, for this client and redirect URI) and that
  base64url(sha256(code_verifier)) is the code's `code_challenge`; answers `{"access_token",
  "token_type": "Bearer", "expires_in", "id_token", "scope"}`. The access token is an RS256
  JWT with `iss`, `aud` (the issuer's `audience`), `sub` (the username typed), `iat`, `exp`
  and the role claim (`role` by default; a dotted name nests) from the per-user table `roles`
  (default role `default_role`, "trainer"; a user mapped to None gets no role claim). The ID
  token has `aud` = the client id and the `nonce` of the authorization request. A code is
  burnt by its first redemption attempt, successful or not. Errors: 400 OAuth error JSON
  (`invalid_request`, `invalid_grant`, `unsupported_grant_type`, ...), 401 `invalid_client`.

Everything is recorded for the tests: `authorize_requests` (the query of each `GET
/authorize`), `exchanges` (each token request: its form and outcome), `errors` (every OAuth
error answered, with its reason). `token(...)` mints a bearer token directly (same signature
as test_access.Issuer.token) for API calls as a given user; `approve(url, username)` plays
the user on the sign-in page over HTTP and returns the redirect (the client's callback URL).

    with OIDCIssuer(audience="lectern-kids", roles={"teacher": "admin"}) as issuer:
        ... --oidc-issuer issuer.url --oidc-audience lectern-kids --oidc-client-id issuer.client_id
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

DEFAULT_CLIENT_ID = "lectern-dashboard"
DEFAULT_AUDIENCE = "lectern-tests"
KID = "oidc-test-key"
# RFC 7636 4.1: code_verifier = 43*128unreserved; the S256 challenge is 43 base64url characters.
VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
CHALLENGE_RE = re.compile(r"^[A-Za-z0-9\-_]{43}$")
AUTHORIZE_PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
                    "code_challenge", "code_challenge_method")


def pkce_challenge(verifier: str) -> str:
    """base64url(sha256(verifier)) without padding: the S256 code challenge (RFC 7636 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_verifier() -> str:
    """A fresh code verifier (64 unreserved characters)."""
    return secrets.token_urlsafe(48)[:64]


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status


@dataclass
class Grant:
    """An authorization code and what it was issued for."""
    code: str
    client_id: str
    redirect_uri: str
    code_challenge: str
    username: str
    nonce: str | None
    scope: str
    issued_at: float
    used: bool = False


@dataclass
class Exchange:
    """One request to the token endpoint."""
    form: dict
    status: int
    error: str | None = None
    username: str | None = None
    at: float = field(default_factory=time.time)


def _set_claim(claims: dict, dotted: str, value):
    parts = dotted.split(".")
    target = claims
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


class OIDCIssuer:
    """An OIDC provider on 127.0.0.1 (a thread); see the module's docstring."""

    def __init__(self, *, audience: str = DEFAULT_AUDIENCE, client_id: str = DEFAULT_CLIENT_ID,
                 client_secret: str | None = None, roles: dict | None = None,
                 default_role: str | None = "trainer", role_claim: str = "role",
                 redirect_uris: list[str] | None = None, token_ttl: int = 600, code_ttl: int = 60):
        self.audience = audience
        self.client_id = client_id
        self.client_secret = client_secret
        self.roles: dict[str, str | None] = dict(roles or {})
        self.default_role = default_role
        self.role_claim = role_claim
        self.redirect_uris = list(redirect_uris) if redirect_uris is not None else None
        self.token_ttl = token_ttl
        self.code_ttl = code_ttl
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # for forgeries
        self.kid = KID
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        self.jwks = {"keys": [jwk]}
        self._lock = threading.Lock()
        self._grants: dict[str, Grant] = {}
        self._next_claims: dict = {}
        self.authorize_requests: list[dict] = []
        self.exchanges: list[Exchange] = []
        self.errors: list[str] = []
        self.requests: list[str] = []   # "METHOD /path" of every request

        issuer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                issuer._handle(self, "GET")

            def do_POST(self):
                issuer._handle(self, "POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ configuration
    @property
    def authorization_endpoint(self) -> str:
        return self.url + "/authorize"

    @property
    def token_endpoint(self) -> str:
        return self.url + "/token"

    @property
    def jwks_uri(self) -> str:
        return self.url + "/jwks"

    def discovery(self) -> dict:
        return {
            "issuer": self.url,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
        }

    def set_role(self, username: str, role: str | None):
        """The role claim `username`'s tokens carry (None: no role claim)."""
        with self._lock:
            self.roles[username] = role

    def role_of(self, username: str) -> str | None:
        with self._lock:
            return self.roles.get(username, self.default_role)

    def override_next_access_token(self, **claims):
        """The next access token the token endpoint issues gets these claims (one shot), e.g.
        `aud="someone-else"` for a token the client must refuse."""
        with self._lock:
            self._next_claims = dict(claims)

    # ------------------------------------------------------------------ tokens
    def token(self, role=None, *, sub: str | None = None, iss: str | None = None, aud: str | None = None,
              expires_in: int | None = None, key=None, claims: dict | None = None) -> str:
        """An RS256 access token (as test_access.Issuer.token): `role` None gives no role claim."""
        now = int(time.time())
        body = {"iss": iss or self.url, "aud": aud or self.audience, "sub": sub or f"user-{role or 'none'}",
                "iat": now - 5, "exp": now + (self.token_ttl if expires_in is None else expires_in)}
        if role is not None:
            _set_claim(body, self.role_claim, role)
        body.update(claims or {})
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": self.kid})

    def bearer(self, username: str, role: str | None = ...) -> dict:
        """`Authorization` header of a token for `username` with its role from the table."""
        role = self.role_of(username) if role is ... else role
        return {"Authorization": f"Bearer {self.token(role, sub=username)}"}

    def _tokens_for(self, grant: Grant) -> dict:
        now = int(time.time())
        with self._lock:
            extra, self._next_claims = self._next_claims, {}
        role = self.role_of(grant.username)
        access = {"iss": self.url, "aud": self.audience, "sub": grant.username, "iat": now - 1,
                  "exp": now + self.token_ttl, "scope": grant.scope, "client_id": grant.client_id,
                  "azp": grant.client_id}
        if role is not None:
            _set_claim(access, self.role_claim, role)
        access.update(extra)
        id_claims = {"iss": self.url, "aud": grant.client_id, "sub": grant.username, "iat": now - 1,
                     "exp": now + self.token_ttl, "auth_time": int(grant.issued_at), "azp": grant.client_id,
                     "name": grant.username, "preferred_username": grant.username}
        if grant.nonce is not None:
            id_claims["nonce"] = grant.nonce
        headers = {"kid": self.kid}
        return {
            "access_token": jwt.encode(access, self.key, algorithm="RS256", headers=headers),
            "token_type": "Bearer",
            "expires_in": self.token_ttl,
            "id_token": jwt.encode(id_claims, self.key, algorithm="RS256", headers=headers),
            "scope": grant.scope,
        }

    # ------------------------------------------------------------------ playing the user
    def approve(self, authorize_url: str, username: str, *, deny: bool = False) -> str:
        """Opens the sign-in page at `authorize_url` (what the client redirected to), types
        `username` and presses approve (or deny); returns the `Location` the issuer redirects
        to (the client's callback with `code` and `state`, or `error`). Fails when the issuer
        refuses the authorization request (its OAuth error is in the message)."""
        s = requests.Session()
        page = s.get(authorize_url, timeout=30, allow_redirects=False)
        assert page.status_code == 200, (
            f"the identity provider refused the authorization request {authorize_url}: "
            f"{page.status_code} {page.text[:500]}")
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
        fields = {k: html.unescape(v) for k, v in fields.items()}
        fields.update(username=username, action="deny" if deny else "approve")
        answer = s.post(self.authorization_endpoint, data=fields, timeout=30, allow_redirects=False)
        assert answer.status_code == 302, f"the sign-in form answered {answer.status_code}: {answer.text[:500]}"
        return answer.headers["Location"]

    def successful_exchanges(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.status == 200]

    # ------------------------------------------------------------------ HTTP
    def _handle(self, h: BaseHTTPRequestHandler, method: str):
        parts = urlsplit(h.path)
        self.requests.append(f"{method} {parts.path}")
        body = b""
        if method == "POST":
            length = int(h.headers.get("Content-Length") or 0)
            body = h.rfile.read(length) if length else b""
        try:
            if method == "GET" and parts.path == "/.well-known/openid-configuration":
                return self._send_json(h, 200, self.discovery())
            if method == "GET" and parts.path == "/jwks":
                return self._send_json(h, 200, self.jwks)
            if parts.path == "/authorize" and method == "GET":
                params = self._single(parse_qsl(parts.query, keep_blank_values=True))
                self.authorize_requests.append(params)
                self._check_authorize(params)
                return self._send(h, 200, self._sign_in_page(params).encode(), "text/html; charset=utf-8")
            if parts.path == "/authorize" and method == "POST":
                form = self._single(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
                return self._approve(h, form)
            if parts.path == "/token" and method == "POST":
                return self._token(h, body)
            if parts.path in ("/authorize", "/token", "/jwks", "/.well-known/openid-configuration"):
                raise OAuthError("invalid_request", f"{method} is not allowed on {parts.path}", 405)
            return self._send_json(h, 404, {"error": "not_found", "error_description": parts.path})
        except OAuthError as e:
            self.errors.append(f"{method} {parts.path}: {e.error}: {e.description}")
            extra = {"WWW-Authenticate": 'Basic realm="token"'} if e.status == 401 else {}
            return self._send_json(h, e.status, {"error": e.error, "error_description": e.description}, extra)

    @staticmethod
    def _single(pairs: list[tuple[str, str]]) -> dict:
        out: dict[str, str] = {}
        for k, v in pairs:
            if k in out:
                raise OAuthError("invalid_request", f"parameter {k!r} given more than once")
            out[k] = v
        return out

    def _check_authorize(self, p: dict):
        if p.get("client_id") != self.client_id:
            raise OAuthError("unauthorized_client", f"unknown client_id {p.get('client_id')!r}")
        redirect = p.get("redirect_uri", "")
        target = urlsplit(redirect)
        if target.scheme not in ("http", "https") or not target.netloc or target.fragment:
            raise OAuthError("invalid_request", f"redirect_uri {redirect!r} is not an absolute http(s) URL")
        if self.redirect_uris is not None and redirect not in self.redirect_uris:
            raise OAuthError("invalid_request", f"redirect_uri {redirect!r} is not registered")
        if p.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", f"response_type {p.get('response_type')!r} (only code)")
        if "openid" not in p.get("scope", "").split():
            raise OAuthError("invalid_scope", f"scope {p.get('scope')!r} lacks openid")
        if not p.get("state"):
            raise OAuthError("invalid_request", "state is missing")
        if p.get("code_challenge_method") != "S256":
            raise OAuthError("invalid_request",
                             f"code_challenge_method {p.get('code_challenge_method')!r}: PKCE with S256 is required")
        if not CHALLENGE_RE.match(p.get("code_challenge", "")):
            raise OAuthError("invalid_request", f"code_challenge {p.get('code_challenge')!r} is not an S256 challenge")

    def _sign_in_page(self, p: dict) -> str:
        hidden = "\n".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(p[k], quote=True)}">'
                           for k in AUTHORIZE_PARAMS if k in p)
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Test identity provider</title></head>
<body>
<h1>Sign in</h1>
<p>to <code>{html.escape(p["client_id"])}</code> (a test identity provider)</p>
<form method="post" action="/authorize">
{hidden}
<p><label for="username">Username</label> <input id="username" name="username" autocomplete="username" required></p>
<p><button type="submit" id="approve" name="action" value="approve">Sign in</button>
<button type="submit" id="deny" name="action" value="deny" formnovalidate>Cancel</button></p>
</form>
</body></html>
"""

    def _approve(self, h, form: dict):
        params = {k: form.get(k, "") for k in AUTHORIZE_PARAMS if k in form}
        self._check_authorize(params)
        redirect, state = params["redirect_uri"], params["state"]
        sep = "&" if "?" in redirect else "?"
        if form.get("action", "approve") == "deny":
            return self._redirect(h, redirect + sep + urlencode({"error": "access_denied", "state": state}))
        username = form.get("username", "").strip()
        if not username:
            raise OAuthError("invalid_request", "username is empty")
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._grants[code] = Grant(code=code, client_id=params["client_id"], redirect_uri=redirect,
                                       code_challenge=params["code_challenge"], username=username,
                                       nonce=params.get("nonce"), scope=params.get("scope", "openid"),
                                       issued_at=time.time())
        return self._redirect(h, redirect + sep + urlencode({"code": code, "state": state}))

    def _token(self, h, body: bytes):
        content_type = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        try:
            form = self._single(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            form = {}
        exchange = Exchange(form=dict(form), status=400)
        self.exchanges.append(exchange)
        try:
            if content_type != "application/x-www-form-urlencoded":
                raise OAuthError("invalid_request", f"Content-Type {content_type!r}: a form post is required")
            client_id, secret = form.get("client_id"), form.get("client_secret")
            basic = h.headers.get("Authorization") or ""
            if basic.lower().startswith("basic "):
                try:
                    user, _, password = base64.b64decode(basic[6:].strip()).decode().partition(":")
                except Exception as e:  # noqa: BLE001
                    raise OAuthError("invalid_client", f"bad Basic authorization: {e}", 401)
                client_id = client_id or user
                secret = password
            if form.get("grant_type") != "authorization_code":
                raise OAuthError("unsupported_grant_type", f"grant_type {form.get('grant_type')!r}")
            if client_id != self.client_id:
                raise OAuthError("invalid_client", f"unknown client_id {client_id!r}", 401)
            if self.client_secret is not None and secret != self.client_secret:
                raise OAuthError("invalid_client", "wrong or missing client_secret", 401)
            for name in ("code", "redirect_uri", "code_verifier"):
                if not form.get(name):
                    raise OAuthError("invalid_request", f"{name} is missing")
            with self._lock:
                grant = self._grants.get(form["code"])
                used = grant.used if grant else None
                if grant is not None:
                    grant.used = True   # a code is redeemed once, whatever the outcome
            if grant is None:
                raise OAuthError("invalid_grant", "unknown code")
            if used:
                raise OAuthError("invalid_grant", "the code was used already")
            if time.time() - grant.issued_at > self.code_ttl:
                raise OAuthError("invalid_grant", "the code expired")
            if grant.client_id != client_id:
                raise OAuthError("invalid_grant", "the code was issued to another client")
            if grant.redirect_uri != form["redirect_uri"]:
                raise OAuthError("invalid_grant",
                                 f"redirect_uri {form['redirect_uri']!r} is not the authorization request's "
                                 f"{grant.redirect_uri!r}")
            verifier = form["code_verifier"]
            if not VERIFIER_RE.match(verifier):
                raise OAuthError("invalid_grant", "code_verifier is not 43-128 unreserved characters")
            if pkce_challenge(verifier) != grant.code_challenge:
                raise OAuthError("invalid_grant", "PKCE: sha256(code_verifier) does not match the code_challenge")
        except OAuthError as e:
            exchange.status, exchange.error = e.status, e.error
            raise
        exchange.status, exchange.username = 200, grant.username
        return self._send_json(h, 200, self._tokens_for(grant))

    # ------------------------------------------------------------------ plumbing
    @staticmethod
    def _send(h, status: int, data: bytes, content_type: str, extra: dict | None = None):
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.send_header("Cache-Control", "no-store")
        h.send_header("Pragma", "no-cache")
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _send_json(self, h, status: int, obj, extra: dict | None = None):
        self._send(h, status, json.dumps(obj).encode(), "application/json", extra)

    @staticmethod
    def _redirect(h, location: str):
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.send_header("Cache-Control", "no-store")
        h.end_headers()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "OIDCIssuer":
        return self

    def __exit__(self, *exc):
        self.close()
