"""Bad input: one case or more for every class of public advisory against the anchors.

Classes (advisories they stand for, by class rather than number):
  open-redirect       oauth2-proxy `/\\evil`, `/%09/evil`, `/./\\evil`; Pomerium sign-out `rd`
  suffix-allowlist    oauth2-proxy whitelist-domain suffix match (`evilcorp.example`)
  skip-route          oauth2-proxy skip_auth_routes regex matched against the query string
  header-smuggling    oauth2-proxy `X_Forwarded_Email` underscore variant reaching the app
  forwarded-uri       oauth2-proxy trusting client `X-Forwarded-Uri`; spoofed `X-Forwarded-For`
  email-parsing       `a@evil@corp` split on the wrong '@'; unverified email trusted
  logout              logout or IdP back-channel logout leaving the session usable
  tampered-cookie     bit-flipped, truncated, relabelled or transplanted session cookies
  path-tricks         `%2F`, `%5C`, `%00`, `..`, `;params` and case (Pomerium/Envoy path bypass)
  host-case           case-variant or trailing-dot hosts picking another route or policy
  cookie-fixation     an upstream setting the gateway's own session cookie
  health-check-ua     oauth2-proxy ping-user-agent: a probe's User-Agent skipping auth
  metrics-public      Pomerium metrics/pprof reachable on the public listener
  request-smuggling   TE+CL, doubled Content-Length, absolute-form target, doubled Host
  oversized-head      header fields or request lines no proxy buffers (memory exhaustion)
  websocket-origin    cross-site WebSocket hijacking with the user's cookie

Pure cases call the modules directly. End-to-end cases send raw bytes through a real uvicorn
to a real TLS upstream, first via `mini_gateway` (the request path assembled from its parts:
normalise, route, session, policy, strip, forward), then via `gateway.app` itself.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from gateway.app import Gateway, build
from gateway.assertion import HEADER as ASSERTION_HEADER
from gateway.config import GatewayConfig
from gateway.headers import fold, strip_identity_headers
from gateway.paths import BadPath, normalise
from gateway.policy import Policy
from gateway.proxy import Route, RouteTable
from gateway.redirects import safe_redirect
from gateway.request import Identity, RequestContext
from gateway.server import TlsHttpProtocol
from gateway.session import COOKIE, LOGIN_COOKIE, KeyRing, Session, SessionCodec, SessionStore
from tests.integration.gateway.echo_upstream import (
    ASSERTION,
    Asgi,
    RawResponse,
    Upstream,
    mini_gateway,
    one_app,
    raw_http,
    running,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

ALLOWED_HOSTS = ["app.corp.example"]
APP_POLICY = {
    "allow": {
        "or": [
            {"and": [{"path": {"prefix": "/public"}}, {"anyone": True}]},
            {"groups": "sales"},
        ]
    },
    "deny": {
        "or": [
            {"path": {"prefix": "/admin"}},
            {"and": [{"path": {"prefix": "/internal"}}, {"not": {"source_ip": "10.0.0.0/8"}}]},
            {"and": [{"path": {"prefix": "/corp-only"}}, {"not": {"domain": "corp.example"}}]},
        ]
    },
}


# --- the end-to-end bench --------------------------------------------------------------


@dataclass
class Bench:
    port: int
    upstream: Upstream
    codec: SessionCodec
    store: SessionStore
    keys: KeyRing

    def session(self, **claims: Any) -> tuple[Session, str]:
        now = int(time.time())
        full = {"email": "alice@corp.example", "email_verified": True, "groups": ["sales"]}
        session = Session(
            sid=uuid.uuid4().hex,
            sub=f"user-{uuid.uuid4().hex[:8]}",
            claims=full | claims,
            issued_at=now - 1,
            expires_at=now + 3600,
            refresh_at=now + 3600,
            idp_sid=uuid.uuid4().hex,
        )
        return session, self.codec.seal(session)

    def get(self, path: str, *headers: str, host: str = "app.test") -> RawResponse:
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *headers]
        return raw_http(self.port, "\r\n".join(lines))

    def as_user(
        self, path: str, *headers: str, cookie: str | None = None, host: str = "app.test"
    ) -> RawResponse:
        value = cookie if cookie is not None else self.session()[1]
        return self.get(path, f"Cookie: {COOKIE}={value}", *headers, host=host)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    keys, store = KeyRing.generate(), SessionStore()
    codec = SessionCodec(keys, store)

    def gateway(upstream: Upstream) -> Asgi:
        url = f"https://127.0.0.1:{upstream.port}"
        return mini_gateway(
            [Route("app", "app.test", "/", url, upstream.ca)],
            {"app": Policy.parse(APP_POLICY)},
            codec,
        )

    with running(gateway, tmp_path_factory.mktemp("badinput")) as (upstream, port):
        yield Bench(port, upstream, codec, store, keys)


def reached_upstream(response: RawResponse) -> dict[str, Any] | None:
    """What the upstream saw, or None when the gateway refused the request itself."""
    if response.status != 200:
        return None
    data: dict[str, Any] = json.loads(response.body)
    return data


def upstream_headers(response: RawResponse) -> list[str]:
    data = reached_upstream(response)
    assert data is not None, response
    return [k.lower().replace("_", "-") for k, _ in data["headers"]]


# --- open-redirect (pure) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/\\evil.example",
        "/%09/evil.example",
        "/\t/evil.example",
        "/./\\evil.example",
        "//evil.example",
        "\\/evil.example",
        "/%2F/evil.example",
        "/%5Cevil.example",
        "/%5C%5Cevil.example",
        "/%0d%0aLocation:%20https://evil.example",
        "https:evil.example",
        "https:/\\evil.example",
        "https://app.corp.example@evil.example/",
        "https://evil.example#@app.corp.example/",
        "https://evil.example?@app.corp.example/",
        "https://app.corp.example%40evil.example/",
        "javascript://app.corp.example/%0aalert(1)",
        "/%252F/evil.example",
        " https://evil.example",
    ],
)
def test_open_redirect(target: str) -> None:
    assert safe_redirect(target, ALLOWED_HOSTS) is None


# --- suffix-allowlist ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "https://evilapp.corp.example/",
        "https://app.corp.example.evil.example/",
        "https://app-corp.example/",
        "https://corp.example/",
        "https://x.app.corp.example/",
        "https://app.corp.examplee/",
    ],
)
def test_suffix_allowlist_redirect(target: str) -> None:
    assert safe_redirect(target, ALLOWED_HOSTS) is None


@pytest.mark.parametrize("host", ["evilapp.test", "app.test.evil.example", "x.app.test"])
def test_suffix_allowlist_routing(bench: Bench, host: str) -> None:
    assert RouteTable((Route("app", "app.test", "/", "https://u"),)).match(host, "/") is None
    assert bench.as_user("/", host=host).status == 404


# --- skip-route: a public prefix must match the normalised path, never query or fragment ----


def test_skip_route_control(bench: Bench) -> None:
    assert bench.get("/public/x").status == 200
    assert bench.get("/private").status == 401


@pytest.mark.parametrize(
    "path",
    [
        "/private?/public",
        "/private?x=/public/",
        "/private#/public",
        "/private;/public",
        "/public/../private",
        "/public/%2e%2e/private",
        "/public%2F..%2Fprivate",
        "/publicity",
        "/PUBLIC/x",
    ],
)
def test_skip_route(bench: Bench, path: str) -> None:
    response = bench.get(path)
    assert response.status in (400, 401), response
    assert reached_upstream(response) is None


# --- header-smuggling ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "X-Forwarded-Email: ceo@corp.example",
        "X_Forwarded_Email: ceo@corp.example",
        "X-Forwarded_Email: ceo@corp.example",
        "x_forwarded_user: ceo",
        "X_Forwarded_Groups: admins",
        "X_Auth_Request_Email: ceo@corp.example",
        "X-Pomerium-Jwt-Assertion: forged",
        "X_Overcast_Assertion: forged",
        "Remote_User: ceo",
    ],
)
def test_header_smuggling(bench: Bench, header: str) -> None:
    name = fold(header.split(":")[0])
    data = reached_upstream(bench.as_user("/echo", header))
    assert data is not None
    seen = [v for k, v in data["headers"] if fold(k) == name]
    # Only the gateway's own assertion may carry that name, and only its value.
    assert seen == ([ASSERTION.decode()] if name == "x-overcast-assertion" else [])


def test_header_smuggling_anonymous_gains_nothing(bench: Bench) -> None:
    response = bench.get(
        "/private", "X_Forwarded_Email: alice@corp.example", "X-Forwarded-Groups: sales"
    )
    assert response.status == 401


# --- forwarded-uri ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "X-Forwarded-Uri: /public/x",
        "X-Original-URL: /public/x",
        "X-Rewrite-URL: /public/x",
        "X-Envoy-Original-Path: /public/x",
    ],
)
def test_forwarded_uri_does_not_change_decision(bench: Bench, header: str) -> None:
    assert bench.get("/private", header).status == 401


def test_forwarded_uri_not_passed_upstream(bench: Bench) -> None:
    response = bench.as_user("/x", "X-Forwarded-Uri: /admin", "X-Original-URL: /admin")
    headers = upstream_headers(response)
    assert "x-forwarded-uri" not in headers and "x-original-url" not in headers


def test_forwarded_for_spoof_gains_no_source_ip(bench: Bench) -> None:
    # /internal is for 10.0.0.0/8 only; the test client is 127.0.0.1 and no proxy is trusted.
    response = bench.as_user("/internal/x", "X-Forwarded-For: 10.1.2.3", "X-Real-IP: 10.1.2.3")
    assert response.status == 403
    assert b"denied by deny rule" in response.body


def test_forwarded_for_rebuilt_for_upstream(bench: Bench) -> None:
    data = reached_upstream(bench.as_user("/x", "X-Forwarded-For: 10.1.2.3"))
    assert data is not None
    assert [v for k, v in data["headers"] if k.lower() == "x-forwarded-for"] == ["127.0.0.1"]


def test_method_override_header_stripped(bench: Bench) -> None:
    assert "x-http-method-override" not in upstream_headers(
        bench.as_user("/x", "X-HTTP-Method-Override: DELETE")
    )


# --- email-parsing (pure policy, then through the cookie) -----------------------------------


def _decide(email: str | None, verified: bool, policy: dict[str, Any]) -> bool:
    identity = Identity("u", email, verified, ("staff",), {})
    return (
        Policy.parse(policy)
        .decide(RequestContext("GET", "app.test", "/", identity=identity))
        .allowed
    )


@pytest.mark.parametrize(
    ("email", "verified"),
    [
        ("a@evil.example@corp.example", True),
        ('"a@evil.example"@corp.example', True),
        ("alice@corp.example", False),
        ("alice@corp.example ", True),
        ("alice@corp.example\n", True),
        ("alice@corp.example\x00", True),
        (None, True),
    ],
)
def test_email_unusable(email: str | None, verified: bool) -> None:
    assert not _decide(email, verified, {"allow": {"domain": "corp.example"}})
    assert not _decide(email, verified, {"allow": {"email": "alice@corp.example"}})
    # ... and an address we cannot trust can't slip past an exclusion either.
    assert not _decide(email, verified, {"allow": {"not": {"domain": "evil.example"}}})


@pytest.mark.parametrize(
    "email", ["alice@corp.example.evil.example", "alice@evilcorp.example", "alice@sub.corp.example"]
)
def test_email_domain_is_exact(email: str) -> None:
    assert not _decide(email, True, {"allow": {"domain": "corp.example"}})
    assert _decide("alice@CORP.example", True, {"allow": {"domain": "corp.example"}})


@pytest.mark.parametrize(
    "claims",
    [
        {"email": "a@evil.example@corp.example"},
        {"email_verified": False},
        {"email_verified": "true"},
    ],
)
def test_email_parsing_end_to_end(bench: Bench, claims: dict[str, Any]) -> None:
    _, cookie = bench.session(**claims)
    response = bench.as_user("/corp-only/x", cookie=cookie)
    assert response.status == 403
    assert b"deny rule cannot be ruled out" in response.body


# --- logout: a revoked session stops working at once ----------------------------------------


@pytest.mark.parametrize("how", ["sid", "idp_sid", "sub"])
def test_logout_kills_session(bench: Bench, how: str) -> None:
    session, cookie = bench.session()
    assert bench.as_user("/x", cookie=cookie).status == 200
    bench.store.revoke(**{how: getattr(session, how)}, now=int(time.time()))
    assert bench.as_user("/x", cookie=cookie).status == 401


def test_expired_session_is_anonymous(bench: Bench) -> None:
    session, _ = bench.session()
    expired = bench.codec.seal(Session(**{**session.__dict__, "expires_at": int(time.time()) - 1}))
    assert bench.as_user("/x", cookie=expired).status == 401


# --- tampered-cookie: never a pass, never an error -----------------------------------------


def _flip(value: str) -> str:
    # A character in the middle: each one carries 6 ciphertext bits (the last one may carry
    # only base64 padding bits, which decode to the very same bytes).
    i = len(value) // 2 + 4
    return value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1 :]


@pytest.mark.parametrize(
    "tamper",
    [
        _flip,
        lambda v: v[:-1],
        lambda v: v[: len(v) // 2],
        lambda v: v.split(".")[0],
        lambda v: v.split(".")[0] + ".",
        lambda v: "otherkid." + v.split(".", 1)[1],
        lambda v: v + "A",
        lambda v: "",
        lambda v: "%00" * 8,
        lambda v: "x." + "A" * 5000,
    ],
    ids=[
        "bit-flip",
        "truncated-1",
        "truncated-half",
        "key-id-only",
        "empty-body",
        "relabelled-key-id",
        "extended",
        "empty",
        "nul-bytes",
        "oversized",
    ],
)
def test_tampered_cookie(bench: Bench, tamper: Any) -> None:
    _, cookie = bench.session()
    response = bench.as_user("/x", cookie=tamper(cookie))
    assert response.status == 401, response


def test_cookie_transplanted_from_other_name(bench: Bench) -> None:
    # The cookie name is sealed in as associated data: a value made for the login cookie
    # must not open as a session.
    session, _ = bench.session()
    login_value = bench.keys.seal(LOGIN_COOKIE, session.encode())
    assert bench.as_user("/x", cookie=login_value).status == 401


def test_session_cookie_never_reaches_upstream(bench: Bench) -> None:
    _, cookie = bench.session()
    response = bench.get("/x", f"Cookie: theme=dark; {COOKIE}={cookie}; lang=en")
    data = reached_upstream(response)
    assert data is not None
    assert [v for k, v in data["headers"] if k.lower() == "cookie"] == ["theme=dark; lang=en"]


# --- path-tricks: deny /admin must hold for every spelling ---------------------------------


def test_path_tricks_control(bench: Bench) -> None:
    assert bench.as_user("/ok").status == 200
    assert bench.as_user("/admin").status == 403


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/admin/", 403),
        ("/admin/users", 403),
        ("//admin", 403),
        ("/./admin", 403),
        ("/x/../admin", 403),
        ("/%2e%2e/admin", 403),
        ("/%61dmin", 403),
        ("/ADMIN", 403),
        ("/Admin/users", 403),
        ("/admin;jsessionid=x/users", 403),
        ("/x/..;/admin", 400),
        ("/admin%2Fusers", 400),
        ("/x%2F..%2Fadmin", 400),
        ("/admin%5Cusers", 400),
        ("/admin%00", 400),
        ("/admin%00.html", 400),
        ("/x/%252e%252e/admin", 400),
    ],
)
def test_path_tricks(bench: Bench, path: str, status: int) -> None:
    response = bench.as_user(path)
    assert response.status == status, (path, response)


@pytest.mark.parametrize("raw", ["/admin\\users", "/x\\..\\admin"])
def test_path_tricks_backslash(raw: str) -> None:
    # uvicorn's parser refuses some raw bytes itself; the normaliser refuses them regardless.
    with pytest.raises(BadPath):
        normalise(raw)


# --- host-case ----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["APP.TEST", "App.Test", "app.test.", "app.test:443"])
def test_host_case_same_route_same_policy(bench: Bench, host: str) -> None:
    assert bench.as_user("/ok", host=host).status == 200
    assert bench.as_user("/admin", host=host).status == 403


def test_host_case_redirect() -> None:
    assert (
        safe_redirect("https://APP.CORP.EXAMPLE/x", ALLOWED_HOSTS) == "https://app.corp.example/x"
    )


# --- cookie-fixation ------------------------------------------------------------------------


def test_upstream_cannot_fixate_gateway_cookie(bench: Bench) -> None:
    response = bench.as_user("/set-cookie")
    assert response.header("set-cookie") == ["app=1; Path=/"]
    assert not any(v.startswith(COOKIE) for v in response.header("set-cookie"))


def test_identity_header_names_folded() -> None:
    headers = [(b"X_FORWARDED_EMAIL", b"a"), (b"x-forwarded-EMAIL", b"b"), (b"accept", b"*/*")]
    assert strip_identity_headers(headers) == [(b"accept", b"*/*")]


# --- metrics-public -------------------------------------------------------------------------


def test_metrics_listener_cannot_be_the_public_one() -> None:
    with pytest.raises(ValidationError, match="metrics are never public"):
        GatewayConfig.model_validate(
            {
                "issuer": "https://idp.example/",
                "listen": "0.0.0.0:443",
                "metrics_listen": "0.0.0.0:443",
            }
        )


# --- through gateway.app itself ------------------------------------------------------------
# The same attacks against the real ASGI app (`gateway.app.build`), where the class needs its
# parts: the exact-path health endpoints, the public listener without metrics, RP logout, and
# the real session and assertion. Its IdP is unreachable on purpose: nothing here signs in,
# so an anonymous request gets "sign-in unavailable" (503), never the upstream.


@dataclass
class Real:
    port: int
    gateway: Gateway

    def get(self, path: str, *headers: str, host: str = "app.test") -> RawResponse:
        return raw_http(self.port, "\r\n".join([f"GET {path} HTTP/1.1", f"Host: {host}", *headers]))

    def cookie(self, **claims: Any) -> str:
        now = int(time.time())
        full = {"email": "alice@corp.example", "email_verified": True, "groups": ["sales"]}
        session = Session(
            sid=uuid.uuid4().hex,
            sub="alice",
            claims=full | claims,
            issued_at=now - 1,
            expires_at=now + 3600,
            refresh_at=now + 3600,
        )
        return f"Cookie: {COOKIE}={self.gateway.codec.seal(session)}"


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Real]:
    built: list[Gateway] = []

    def gateway(upstream: Upstream) -> Asgi:
        built.append(build(one_app(upstream, APP_POLICY)))
        return built[0]

    # The gateway's own HTTP protocol (as `overcast gateway serve` runs it), over plain TCP.
    with running(gateway, tmp_path_factory.mktemp("badinput-app"), TlsHttpProtocol) as (_, port):
        yield Real(port, built[0])


def test_absolute_form_target_routes_by_its_authority(real: Real) -> None:
    # RFC 9112 section 3.2.2: the target's authority wins over the Host header, both ways.
    data = reached_upstream(real.get("http://APP.test:8443/x?y=1", real.cookie(), host="gw.test"))
    assert data is not None and data["raw_path"] == "/x?y=1"
    own = real.get("https://gw.test/ping", real.cookie(), host="app.test")
    assert (own.status, own.body) == (200, b"OK\n")


@pytest.mark.parametrize(
    "target", ["https://alice@app.test/x", "ftp://app.test/x", "https:///x", "app.test:443"]
)
def test_absolute_form_target_without_plain_authority_is_refused(real: Real, target: str) -> None:
    response = real.get(target, real.cookie())
    assert response.status == 400 and reached_upstream(response) is None


def not_forwarded(response: RawResponse) -> bool:
    return response.status != 500 and reached_upstream(response) is None


@pytest.mark.parametrize(
    "agent", ["kube-probe/1.29", "ELB-HealthChecker/2.0", "GoogleHC/1.0", "Pingdom.com_bot"]
)
def test_app_health_check_user_agent_is_no_pass(real: Real, agent: str) -> None:
    assert not_forwarded(real.get("/private", f"User-Agent: {agent}"))


@pytest.mark.parametrize(
    ("path", "host", "status"),
    [
        ("/ping", "gw.test", 200),
        ("/ping?probe=1", "gw.test", 200),
        ("/ping/", "gw.test", 404),
        ("/PING", "gw.test", 404),
        ("/pingx", "gw.test", 404),
        ("/ping/../private", "gw.test", 404),
        ("/ping%2F..%2Fprivate", "gw.test", 400),
    ],
)
def test_app_health_check_exact_path(real: Real, path: str, host: str, status: int) -> None:
    response = real.get(path, "User-Agent: kube-probe/1.29", host=host)
    assert response.status == status, response


def test_app_ping_on_app_host_is_the_apps_path(real: Real) -> None:
    assert not_forwarded(real.get("/ping", "User-Agent: kube-probe/1.29"))


@pytest.mark.parametrize("host", ["gw.test", "app.test", "127.0.0.1"])
def test_app_metrics_not_on_public_listener(real: Real, host: str) -> None:
    response = real.get("/metrics", host=host)
    assert b"overcast_gateway" not in response.body and b"# HELP" not in response.body
    assert not_forwarded(response)


def test_app_metrics_path_with_session_is_the_apps_own(real: Real) -> None:
    data = reached_upstream(real.get("/metrics", real.cookie()))
    assert data is not None and data["raw_path"] == "/metrics"


def test_app_logout_kills_session(real: Real) -> None:
    cookie = real.cookie()
    assert reached_upstream(real.get("/x", cookie)) is not None
    out = real.get("/.overcast/logout", cookie)
    assert out.status == 302
    assert any(v.startswith(f"{COOKIE}=;") for v in out.header("set-cookie"))
    assert not_forwarded(real.get("/x", cookie))  # the old cookie, replayed


@pytest.mark.parametrize("tamper", [_flip, lambda v: v[:-4], lambda v: "k." + v.split(".", 1)[1]])
def test_app_tampered_cookie(real: Real, tamper: Any) -> None:
    header = real.cookie()
    name, _, value = header.partition("=")
    assert not_forwarded(real.get("/x", f"{name}={tamper(value)}"))


@pytest.mark.parametrize(
    "header",
    [
        "X_Forwarded_Email: ceo@corp.example",
        "X-Overcast-Jwt-Assertion: forged",
        "X_Overcast_Jwt_Assertion: forged",
    ],
)
def test_app_header_smuggling(real: Real, header: str) -> None:
    data = reached_upstream(real.get("/x", real.cookie(), header))
    assert data is not None
    assert "x-forwarded-email" not in [fold(k) for k, _ in data["headers"]]
    tokens = [v for k, v in data["headers"] if fold(k) == ASSERTION_HEADER]
    assert len(tokens) == 1 and tokens[0] != "forged" and tokens[0].count(".") == 2


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/admin", 403),
        ("/ADMIN", 403),
        ("/admin;x/y", 403),
        ("/admin%2Fy", 400),
        ("/x/..;/admin", 400),
    ],
)
def test_app_path_tricks(real: Real, path: str, status: int) -> None:
    assert real.get(path, real.cookie()).status == status


@pytest.mark.parametrize("host", ["APP.TEST", "app.test."])
def test_app_host_case(real: Real, host: str) -> None:
    assert real.get("/admin", real.cookie(), host=host).status == 403
    assert reached_upstream(real.get("/ok", real.cookie(), host=host)) is not None


# --- request-smuggling and request-target tricks (through gateway.app) ----------------------


@pytest.mark.parametrize(
    ("framing", "body"),
    [
        (
            "Content-Length: 4\r\nTransfer-Encoding: chunked",
            b"0\r\n\r\nGET /admin HTTP/1.1\r\n\r\n",
        ),
        ("Content-Length: 4\r\nContent-Length: 40", b"abcd"),
        ("Transfer-Encoding: xchunked", b"abcd"),
    ],
    ids=["te+cl", "cl+cl", "unknown-te"],
)
def test_app_request_smuggling_refused(real: Real, framing: str, body: bytes) -> None:
    head = f"POST /upload HTTP/1.1\r\nHost: app.test\r\n{real.cookie()}\r\n{framing}"
    assert raw_http(real.port, head, body).status == 400


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/" + "a" * 9000, []),
        ("/", ["X-Pad: " + "b" * 9000]),
        ("/", [f"X-Pad-{i}: " + "c" * 7000 for i in range(5)]),
    ],
    ids=["long-target", "long-field", "long-head"],
)
def test_oversized_request_head_is_431_and_not_forwarded(
    real: Real, path: str, extra: list[str]
) -> None:
    response = real.get(path, real.cookie(), *extra)
    assert response.status == 431 and reached_upstream(response) is None
    assert response.header("connection") == ["close"]


def test_a_head_just_under_the_limits_passes(real: Real) -> None:
    extra = [f"X-Pad-{i}: " + "d" * 7000 for i in range(3)]
    assert reached_upstream(real.get("/" + "e" * 8000, real.cookie(), *extra)) is not None


def test_app_absolute_form_still_decides_on_path(real: Real) -> None:
    head = f"GET https://app.test/admin HTTP/1.1\r\nHost: gw.test\r\n{real.cookie()}"
    assert raw_http(real.port, head).status == 403
    # The authority names no app: the Host header does not smuggle it to one.
    head = f"GET https://evil.example/admin HTTP/1.1\r\nHost: app.test\r\n{real.cookie()}"
    assert not_forwarded(raw_http(real.port, head))


def test_app_duplicate_host_refused(real: Real) -> None:
    head = f"GET /x HTTP/1.1\r\nHost: app.test\r\nHost: evil.test\r\n{real.cookie()}"
    assert raw_http(real.port, head).status == 400


# --- cross-site WebSocket hijacking: the cookie rides along, the Origin gives it away -------


def _websocket(real: Real, origin: str) -> str | int:
    cookie = real.cookie().partition(": ")[2]

    async def go() -> str | int:
        async with aiohttp.ClientSession() as client:
            try:
                async with client.ws_connect(
                    f"http://127.0.0.1:{real.port}/ws",
                    headers={"Host": "app.test", "Origin": origin, "Cookie": cookie},
                ) as ws:
                    await ws.send_str("hi")
                    return await asyncio.wait_for(ws.receive_str(), 20)
            except aiohttp.WSServerHandshakeError as e:
                return e.status

    return asyncio.run(go())


def test_app_websocket_same_origin_passes(real: Real) -> None:
    assert _websocket(real, "https://app.test") == "echo:hi"


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "https://app.test.evil.example", "null"]
)
def test_app_websocket_cross_origin_refused(real: Real, origin: str) -> None:
    assert _websocket(real, origin) == 403
