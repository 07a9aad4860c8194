"""gateway.proxy's pure parts: routing, the headers that cross, the upstream URL."""

from __future__ import annotations

import email.utils

import pytest

from gateway.config import GatewayConfig
from gateway.forwarded import Origin
from gateway.proxy import (
    Proxy,
    Route,
    RouteTable,
    downstream_headers,
    routes_from_config,
    upstream_headers,
)
from gateway.server import absolute_form_host

TABLE = RouteTable(
    (
        Route("crm", "crm.corp.example", "/", "https://crm.saas.example"),
        Route("api", "crm.corp.example", "/api/", "https://api.saas.example/v2"),
        Route("wiki", "wiki.corp.example", "/", "https://wiki.saas.example"),
    )
)


@pytest.mark.parametrize(
    ("host", "path", "app"),
    [
        ("crm.corp.example", "/", "crm"),
        ("CRM.Corp.Example", "/deals", "crm"),
        ("crm.corp.example:8443", "/api", "api"),
        ("crm.corp.example.", "/api/x", "api"),
        ("crm.corp.example", "/apiary", "crm"),
        ("wiki.corp.example", "/api/x", "wiki"),
        ("evil.example", "/", None),
        ("crm.corp.example.evil.example", "/", None),
        ("", "/", None),
    ],
)
def test_route_by_host_and_longest_prefix(host: str, path: str, app: str | None) -> None:
    route = TABLE.match(host, path)
    assert (route.app if route else None) == app


def test_upstream_url_keeps_the_normalised_path_encoded() -> None:
    route = TABLE.routes[1]
    url = Proxy.url(route, "/api/a%20b", "q=%2F")
    assert str(url) == "https://api.saas.example/v2/api/a%20b?q=%2F"
    assert str(Proxy.url(route, "/api/ws", "", websocket=True)).startswith("wss://")


ORIGIN = Origin("203.0.113.9", "https", "crm.corp.example")


def test_upstream_headers_order_and_content() -> None:
    client = [
        (b"host", b"crm.corp.example"),
        (b"connection", b"keep-alive, X-Secret-Hop"),
        (b"x-secret-hop", b"1"),
        (b"te", b"trailers"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"h2c"),
        (b"x-forwarded-for", b"6.6.6.6"),
        (b"x_auth_request_email", b"admin@corp.example"),
        (b"accept", b"*/*"),
    ]
    out = upstream_headers(client, TABLE.routes[0], ORIGIN, [(b"x-overcast-assertion", b"jwt")])
    assert out == [
        (b"accept", b"*/*"),
        (b"x-forwarded-for", b"203.0.113.9"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"crm.corp.example"),
        (b"x-overcast-assertion", b"jwt"),
    ]


def test_websocket_handshake_headers_are_redone_not_copied() -> None:
    client = [
        (b"sec-websocket-key", b"abc"),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-protocol", b"chat"),
        (b"origin", b"https://crm.corp.example"),
    ]
    out = upstream_headers(client, TABLE.routes[0], ORIGIN, websocket=True)
    assert out[0] == (b"origin", b"https://crm.corp.example")
    assert not any(k.startswith(b"sec-websocket") for k, _ in out)


def test_downstream_headers() -> None:
    upstream = [
        (b"Date", b"Thu, 26 Nov 2026 16:00:00 GMT"),
        (b"Content-Type", b"text/html"),
        (b"Connection", b"close"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Set-Cookie", b"__Host-overcast=fixated; Path=/"),
        (b"Set-Cookie", b"__host-overcast-1=chunk"),
        (b"Set-Cookie", b"app=1"),
    ]
    assert downstream_headers(upstream, ["__Host-overcast"], TABLE.routes[0]) == [
        (b"date", b"Thu, 26 Nov 2026 16:00:00 GMT"),
        (b"content-type", b"text/html"),
        (b"set-cookie", b"app=1"),
    ]


@pytest.mark.parametrize(
    ("location", "public"),
    [
        (b"https://api.saas.example/v2/login?x=1", b"/login?x=1"),
        (b"HTTPS://API.saas.example/v2", b"/"),
        (b"https://api.saas.example/v2?next=/", b"/?next=/"),
        (b"https://api.saas.example/v2x", b"https://api.saas.example/v2x"),
        (b"https://api.saas.example/other", b"https://api.saas.example/other"),
        (b"https://api.saas.example.evil.example/v2", b"https://api.saas.example.evil.example/v2"),
        (b"https://idp.example/authorize", b"https://idp.example/authorize"),
        (b"/relative", b"/relative"),
        (
            b"https://api.saas.example/v2//evil.example",
            b"https://api.saas.example/v2//evil.example",
        ),
        (
            b"https://api.saas.example/v2/\\evil.example",
            b"https://api.saas.example/v2/\\evil.example",
        ),
    ],
)
def test_upstream_self_redirects_point_back_at_gateway(location: bytes, public: bytes) -> None:
    out = downstream_headers([(b"Location", location), (b"Date", b"d")], [], TABLE.routes[1])
    assert out == [(b"location", public), (b"date", b"d")]


def test_a_response_without_date_gets_one() -> None:
    out = downstream_headers([(b"content-length", b"0")], [], TABLE.routes[0])
    assert out[0] == (b"content-length", b"0")
    assert out[1][0] == b"date" and email.utils.parsedate_to_datetime(out[1][1].decode())


def test_pass_authorization_reaches_the_route() -> None:
    config = GatewayConfig.model_validate(
        {
            "issuer": "https://idp.example/",
            "apps": {
                "api": {"upstream": "https://api.example", "pass_authorization": True},
                "crm": {"upstream": "https://crm.example"},
            },
        }
    )
    routes = {r.app: r for r in routes_from_config(config).routes}
    bearer = [(b"authorization", b"Bearer t")]
    assert upstream_headers(bearer, routes["api"], ORIGIN)[0] == bearer[0]
    assert bearer[0] not in upstream_headers(bearer, routes["crm"], ORIGIN)


@pytest.mark.parametrize(
    ("target", "host"),
    [
        (b"https://App.Test/x", b"App.Test"),
        (b"http://app.test:8443/x?y", b"app.test:8443"),
        (b"https://[2001:db8::1]:8443/", b"[2001:db8::1]:8443"),
        (b"https://alice@app.test/", None),
        (b"ftp://app.test/", None),
        (b"app.test:443", None),
        (b"https:///x", None),
    ],
)
def test_absolute_form_host(target: bytes, host: bytes | None) -> None:
    headers = [(b"host", b"other.test"), (b"accept", b"*/*")]
    expected = [(b"accept", b"*/*")] + ([(b"host", host)] if host else [])
    assert absolute_form_host(target, headers) == expected
