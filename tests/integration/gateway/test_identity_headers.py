"""Issue 11: no identity header of another proxy reaches the upstream, on either lane.

A signed-in user's request, sent byte for byte over a real socket to the real gateway in
front of the echo upstream, carries every header of one family (every exact name and a name
under every prefix) in five spellings, each with a forged value. The upstream reports what
it received: none of the forged values may be there, the gateway's own assertion must be.
GET without a body takes the express lane (counted by `Lane`), POST with a body the ASGI
path. The app's own `strip_headers` are checked the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.app import build
from gateway.assertion import HEADER as ASSERTION_HEADER
from gateway.identity_headers import FAMILIES, Family
from gateway.server import TlsHttpProtocol
from tests.integration.gateway.echo_upstream import Asgi, Upstream, one_app, raw_http, running
from tests.integration.gateway.test_express import Lane, Served
from tests.unit.gateway.test_headers import spellings

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]

APP_STRIPS = ["X-Employee-Id", "X_Acme_*"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    lanes: list[Lane] = []

    def gateway(upstream: Upstream) -> Asgi:
        config = one_app(upstream, {"allow": {"groups": "sales"}, "strip_headers": APP_STRIPS})
        lane = Lane(build(config))
        lane.install()
        lanes.append(lane)
        return lane.gateway

    tmp = tmp_path_factory.mktemp("identity-headers")
    with running(gateway, tmp, TlsHttpProtocol) as (upstream, port):
        yield Served(port, upstream, lanes[0])


def forged(names: list[str]) -> list[tuple[str, str]]:
    return [(s, f"forged-{i}") for i, n in enumerate(names) for s in spellings(n)]


def received(served: Served, method: str, headers: list[tuple[str, str]]) -> list[Any]:
    """What the upstream got for a request carrying `headers` (POST: with a body)."""
    before = served.lane.forwarded
    body = b"payload" if method == "POST" else b""
    fields = [
        ("Host", "app.test"),
        ("Cookie", served.lane.cookie()),
        ("X-Request-Id", "ordinary"),
        *headers,
        *([("Content-Length", str(len(body)))] if body else []),
    ]
    head = f"{method} /echo/who HTTP/1.1\r\n" + "\r\n".join(f"{k}: {v}" for k, v in fields)
    response = raw_http(served.port, head, body)
    assert response.status == 200, response.body
    express = served.lane.forwarded == before + 1
    assert express == (method == "GET"), "the request took the wrong lane"
    seen: list[Any] = json.loads(response.body)["headers"]
    return seen


def assert_only_ours(seen: list[Any]) -> None:
    leaked = [(k, v) for k, v in seen if "forged" in v]
    assert not leaked, f"reached the upstream: {leaked}"
    names = {k.lower(): v for k, v in seen}
    assert names["x-request-id"] == "ordinary"
    assert names[ASSERTION_HEADER].count(".") == 2  # the gateway's own, signed


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name.split()[0])
def test_no_family_header_reaches_the_upstream(served: Served, family: Family, method: str) -> None:
    names = [*sorted(family.names), *(p + "user" for p in family.prefixes)]
    assert_only_ours(received(served, method, forged(names)))


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_issue_11_headers(served: Served, method: str) -> None:
    headers = [
        ("Gap-Auth", "forged admin@corp.example"),
        ("x-goog-iap-jwt-assertion", "forged.unsigned.token"),
        ("X_Goog_Iap_Jwt_Assertion", "forged.unsigned.token"),
    ]
    assert_only_ours(received(served, method, headers))


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_apps_own_strip_headers(served: Served, method: str) -> None:
    headers = forged(["x-employee-id", "x-acme-role", "x-acme-tenant-id"])
    seen = received(served, method, [*headers, ("X-Acmex", "kept")])
    assert_only_ours(seen)
    assert ("x-acmex", "kept") in [(k.lower(), v) for k, v in seen]
